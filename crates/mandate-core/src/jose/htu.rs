//! The HTTP target URI of a proof (`htu`, RFC 9449 section 4.2), normalised for comparison.
//!
//! RFC 9449 section 4.3 compares `htu` with the request's URI "ignoring any query and fragment
//! parts" and recommends syntax-based and scheme-based normalisation (RFC 3986 sections 6.2.2 and
//! 6.2.3). We apply: lower-case scheme and host, drop the default port, an empty path becomes `/`,
//! percent-encoding triplets in upper case and unreserved characters decoded.
//!
//! Deliberately not applied: dot-segment removal (`/a/../b`), IDNA, and anything else that could
//! make two different resources compare equal. A missed normalisation only refuses a proof (a
//! false negative); an over-eager one could accept a proof made for another URL. Schemes other than
//! `http` and `https`, user information (`user@`), spaces and non-ASCII characters are refused.

use std::fmt;

/// A normalised `scheme://authority/path`, without query or fragment. Built only by [`Htu::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Htu(String);

/// Why a text is not a usable `htu`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtuError {
    /// Not an absolute `http` or `https` URL in the subset we accept.
    #[error("`{0}` is not an absolute http or https URL")]
    Invalid(String),
}

impl HtuError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        "proof.invalid_htu"
    }
}

impl Htu {
    /// Parses and normalises an absolute `http` or `https` URL; query and fragment are dropped.
    pub fn parse(text: &str) -> Result<Self, HtuError> {
        let invalid = || HtuError::Invalid(text.to_owned());
        // Printable ASCII only: no spaces, controls or raw non-ASCII (RFC 3986 section 2).
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid());
        }
        let without_query = text.split(['?', '#']).next().unwrap_or_default();
        let (scheme, rest) = without_query.split_once("://").ok_or_else(invalid)?;
        let scheme = scheme.to_ascii_lowercase();
        // RFC 3986 section 6.2.3: the default port of the scheme is the same as no port.
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => return Err(invalid()),
        };
        let (authority, path) = rest.find('/').map_or((rest, ""), |index| rest.split_at(index));
        let (host, port) = split_host_port(authority).ok_or_else(invalid)?;
        let port = match port {
            None | Some("") => None,
            Some(digits) if digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
                let port: u32 = digits.parse().map_err(|_| invalid())?;
                match u16::try_from(port) {
                    Ok(port) if port == default_port => None,
                    Ok(port) => Some(port),
                    Err(_) => return Err(invalid()),
                }
            }
            Some(_) => return Err(invalid()),
        };
        let mut normalised = format!("{scheme}://{}", host.to_ascii_lowercase());
        if let Some(port) = port {
            normalised.push_str(&format!(":{port}"));
        }
        // RFC 3986 section 6.2.3: an empty path is the same as `/` for http(s).
        if path.is_empty() {
            normalised.push('/');
        } else {
            normalise_percent_encoding(path, &mut normalised).ok_or_else(invalid)?;
        }
        Ok(Self(normalised))
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Htu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Splits `host[:port]` or `[ipv6]:port`; refuses user information and empty or odd hosts.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        let valid = host.len() > 2
            && host
                .get(1..close)
                .is_some_and(|inner| inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'));
        if !valid {
            return None;
        }
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let valid = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !valid {
            return None;
        }
        (host, port)
    };
    Some((host, port))
}

/// Appends `path` with percent-encoding normalised (RFC 3986 section 6.2.2.1 and 6.2.2.2): hex
/// digits in upper case, unreserved characters decoded. `None` for a malformed triplet.
fn normalise_percent_encoding(path: &str, out: &mut String) -> Option<()> {
    let mut bytes = path.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'%' {
            out.push(char::from(byte));
            continue;
        }
        let high = char::from(bytes.next()?).to_digit(16)?;
        let low = char::from(bytes.next()?).to_digit(16)?;
        // Both digits are below 16, so the value fits in a byte.
        let decoded = u8::try_from(high * 16 + low).ok()?;
        if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(decoded));
        } else {
            out.push_str(&format!("%{decoded:02X}"));
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        let got = Htu::parse(input).ok();
        assert_eq!(got.as_ref().map(Htu::as_str), expected, "{input}");
    }

    #[test]
    fn normalises_what_rfc_3986_calls_equivalent() {
        let target = Some("https://mandate.example/v1/authorize");
        check("https://mandate.example/v1/authorize", target);
        check("HTTPS://Mandate.EXAMPLE/v1/authorize", target);
        check("https://mandate.example:443/v1/authorize", target);
        check("https://mandate.example:/v1/authorize", target);
        check("https://mandate.example/v1/authorize?x=1#frag", target);
        check("https://mandate.example/v1/authorize#frag?x", target);
        check("https://mandate.example/v1/%61uthorize", target);
        check("https://mandate.example", Some("https://mandate.example/"));
        check("https://mandate.example?q", Some("https://mandate.example/"));
        check("http://mandate.example:80/", Some("http://mandate.example/"));
        check("http://mandate.example:443/", Some("http://mandate.example:443/"));
        check("https://mandate.example:08443/a", Some("https://mandate.example:8443/a"));
        check("https://mandate.example/a%2fb", Some("https://mandate.example/a%2Fb"));
        check("https://[::1]:8443/mcp", Some("https://[::1]:8443/mcp"));
        check("https://[::1]/mcp", Some("https://[::1]/mcp"));
    }

    #[test]
    fn keeps_apart_what_may_differ() {
        check("https://mandate.example/V1/authorize", Some("https://mandate.example/V1/authorize"));
        check("https://mandate.example/v1/authorize/", Some("https://mandate.example/v1/authorize/"));
        check("https://mandate.example/a/../b", Some("https://mandate.example/a/../b"));
    }

    #[test]
    fn refuses_what_is_not_a_plain_http_url() {
        for input in [
            "",
            "/v1/authorize",
            "mandate.example/v1",
            "ftp://mandate.example/",
            "https://",
            "https:///path",
            "https://user@mandate.example/",
            "https://mandate.example:99999/",
            "https://mandate.example:12ab/",
            "https://mandate.example:1:2/",
            "https://mandate example/",
            "https://mandate.example/a b",
            "https://mandaté.example/",
            "https://mandate.example/%zz",
            "https://mandate.example/%4",
            "https://[::1/",
            "https://[]/",
            "https://[::1]x/",
        ] {
            check(input, None);
        }
        assert_eq!(HtuError::Invalid(String::new()).code(), "proof.invalid_htu");
    }
}
