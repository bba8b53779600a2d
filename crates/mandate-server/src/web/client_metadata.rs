//! OAuth Client ID Metadata Documents (the way MCP revision 2026-07-28 identifies clients): the
//! client id is an HTTPS URL, and the document at that URL, fetched by Mandate, names the client
//! and its redirect URIs. What cannot be verified is refused.
//!
//! The fetch is the one request Mandate makes on a stranger's say-so, so it is kept narrow: HTTPS
//! only, no redirects followed, 5 seconds, 5 KiB, and never to a loopback, private, link-local or
//! otherwise non-public address (server-side request forgery), the address checked once and the
//! connection pinned to it (no second DNS answer). Documents are cached for 5 minutes.

use super::WebSettings;
use serde_json::Value;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

/// The largest document accepted.
const MAX_BYTES: usize = 5 * 1024;
/// How long a fetched document is used before it is fetched again.
const CACHE_MS: i64 = 5 * 60 * 1000;
/// The most documents cached.
const CACHE_CAPACITY: usize = 1_000;

/// What Mandate keeps of a client's metadata document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadata {
    /// The client id: the document's own URL.
    pub client_id: String,
    /// The client's name, as it says.
    pub client_name: Option<String>,
    /// The client's home page, as it says.
    pub client_uri: Option<String>,
    /// Where the authorization response may go: matched exactly.
    pub redirect_uris: Vec<String>,
}

/// Why a client id was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// A stable code.
    pub code: &'static str,
    /// What is wrong, for the human at the consent page.
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> ClientError {
    ClientError { code, message: message.into() }
}

/// Fetches and checks client metadata documents.
pub struct Fetcher {
    roots: Vec<reqwest::Certificate>,
    allow_private: bool,
    cache: Mutex<HashMap<String, (ClientMetadata, i64)>>,
}

impl Fetcher {
    /// A fetcher with the settings' extra trust anchors (read now).
    pub fn new(settings: &WebSettings) -> Result<Self, String> {
        let mut fetcher = Self::without_extra_roots(settings);
        if let Some(path) = &settings.client_metadata_ca_file {
            fetcher.roots = super::extra_roots(path, "oauth.client_metadata_ca_file")?;
        }
        Ok(fetcher)
    }

    /// A fetcher trusting the public web's roots only.
    pub fn without_extra_roots(settings: &WebSettings) -> Self {
        Self {
            roots: Vec::new(),
            allow_private: settings.allow_private_client_hosts,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The verified metadata of `client_id`, from the cache or fetched now.
    pub async fn metadata(&self, client_id: &str, now_ms: i64) -> Result<ClientMetadata, ClientError> {
        let url = check_client_id(client_id)?;
        if let Some((m, at)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(client_id) {
            if now_ms - at < CACHE_MS {
                return Ok(m.clone());
            }
        }
        let m = self.fetch(client_id, &url).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, (_, at)| now_ms - *at < CACHE_MS);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(client_id.to_owned(), (m.clone(), now_ms));
        Ok(m)
    }

    async fn fetch(&self, client_id: &str, url: &url::Url) -> Result<ClientMetadata, ClientError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let unreachable = |e: String| {
            refuse(
                "client.metadata_unreachable",
                format!("the client's metadata document at `{client_id}` could not be fetched: {e}"),
            )
        };
        let lookup = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::lookup_host((host.trim_matches(['[', ']']), port)),
        )
        .await
        .map_err(|_| unreachable("its host did not resolve within 5 s".into()))?
        .map_err(|e| unreachable(format!("its host does not resolve: {e}")))?;
        let addrs: Vec<SocketAddr> = lookup.collect();
        let Some(first) = addrs.first().copied() else { return Err(unreachable("its host has no address".into())) };
        if !self.allow_private {
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(refuse(
                    "client.private_address",
                    format!("the client id `{client_id}` resolves to {}, which is not a public address; Mandate does not fetch from its own network", bad.ip()),
                ));
            }
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .https_only(true)
            .resolve(&host, first)
            .user_agent(concat!("mandate/", env!("CARGO_PKG_VERSION")));
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        let client = builder.build().map_err(|e| unreachable(e.to_string()))?;
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(unreachable(format!("it answered {} (redirects are not followed)", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(error_chain(&e)))? {
            if body.len() + chunk.len() > MAX_BYTES {
                return Err(refuse(
                    "client.metadata_invalid",
                    format!("the client's metadata document is over {MAX_BYTES} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        parse_document(client_id, &body)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A client id Mandate will fetch: an HTTPS URL with a path, and no fragment, user, password or
/// dot segments (the Client ID Metadata Document rules).
pub(crate) fn check_client_id(client_id: &str) -> Result<url::Url, ClientError> {
    let bad = |why: &str| refuse("client.invalid_id", format!("the client id `{client_id}` {why}"));
    if client_id.len() > 2048 {
        return Err(bad("is too long"));
    }
    let url = url::Url::parse(client_id)
        .map_err(|_| bad("is not a URL: clients are identified by the URL of their metadata document"))?;
    if url.scheme() != "https" {
        return Err(bad("is not an https URL"));
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(bad("has no path"));
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("carries a fragment or credentials"));
    }
    if client_id.contains("/./") || client_id.contains("/../") || url.as_str() != client_id {
        return Err(bad("is not in its normal form (dot segments, case or escapes)"));
    }
    Ok(url)
}

/// Checks a fetched document: a JSON object whose `client_id` is its own URL, with redirect URIs,
/// for a public client (no secret, `token_endpoint_auth_method` `none`).
pub(crate) fn parse_document(client_id: &str, body: &[u8]) -> Result<ClientMetadata, ClientError> {
    let invalid = |why: String| refuse("client.metadata_invalid", format!("the client's metadata document {why}"));
    let doc: Value = serde_json::from_slice(body).map_err(|e| invalid(format!("is not JSON: {e}")))?;
    let Some(obj) = doc.as_object() else { return Err(invalid("is not a JSON object".into())) };
    if obj.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(invalid(format!("does not name itself: its `client_id` must be `{client_id}`")));
    }
    if obj.contains_key("client_secret") || obj.contains_key("client_secret_expires_at") {
        return Err(invalid("carries a client secret, which a metadata document must not".into()));
    }
    match obj.get("token_endpoint_auth_method").and_then(Value::as_str) {
        None | Some("none") => {}
        Some(other) => {
            return Err(invalid(format!(
                "asks for `token_endpoint_auth_method` `{other}`; Mandate accepts public clients (`none`), with PKCE and DPoP"
            )))
        }
    }
    if let Some(grants) = obj.get("grant_types").and_then(Value::as_array) {
        if !grants.iter().any(|g| g.as_str() == Some("authorization_code")) {
            return Err(invalid("does not list the `authorization_code` grant".into()));
        }
    }
    let redirect_uris: Vec<String> = obj
        .get("redirect_uris")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if redirect_uris.is_empty() || redirect_uris.len() > 20 {
        return Err(invalid("must list between 1 and 20 `redirect_uris`".into()));
    }
    for r in &redirect_uris {
        let ok = url::Url::parse(r).is_ok_and(|u| u.fragment().is_none() && !u.cannot_be_a_base());
        if !ok {
            return Err(invalid(format!("lists `{r}`, which is not an absolute URL without a fragment")));
        }
    }
    let short =
        |k: &str| obj.get(k).and_then(Value::as_str).map(|s| s.chars().filter(|c| !c.is_control()).take(200).collect());
    Ok(ClientMetadata {
        client_id: client_id.to_owned(),
        client_name: short("client_name"),
        client_uri: short("client_uri"),
        redirect_uris,
    })
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared
/// (carrier-grade NAT), documentation, multicast, unspecified or unique-local, IPv4 inside IPv6 too.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_path_in_normal_form_are_client_ids() {
        assert!(check_client_id("https://client.example.com/oauth/metadata.json").is_ok());
        for bad in [
            "http://client.example.com/metadata.json",
            "https://client.example.com",
            "https://client.example.com/",
            "https://client.example.com/a#frag",
            "https://user:pw@client.example.com/a",
            "https://client.example.com/a/../b",
            "https://CLIENT.example.com/a",
            "client-123",
            "javascript:alert(1)",
        ] {
            let e = check_client_id(bad).unwrap_err();
            assert_eq!(e.code, "client.invalid_id", "{bad}");
        }
    }

    #[test]
    fn a_document_must_name_itself_and_be_a_public_client() {
        let id = "https://c.example.com/m.json";
        let good = serde_json::json!({"client_id": id, "client_name": "Example", "redirect_uris": ["http://127.0.0.1:3000/cb"]});
        let m = parse_document(id, good.to_string().as_bytes()).unwrap();
        assert_eq!(m.redirect_uris, ["http://127.0.0.1:3000/cb"]);
        assert_eq!(m.client_name.as_deref(), Some("Example"));
        for (doc, why) in [
            (
                serde_json::json!({"client_id": "https://other.example.com/m.json", "redirect_uris": ["https://c.example.com/cb"]}),
                "names another id",
            ),
            (serde_json::json!({"client_id": id, "redirect_uris": []}), "no redirect"),
            (serde_json::json!({"client_id": id, "redirect_uris": ["https://c.example.com/cb#x"]}), "a fragment"),
            (serde_json::json!({"client_id": id, "redirect_uris": ["/cb"]}), "relative"),
            (
                serde_json::json!({"client_id": id, "client_secret": "s", "redirect_uris": ["https://c.example.com/cb"]}),
                "a secret",
            ),
            (
                serde_json::json!({"client_id": id, "token_endpoint_auth_method": "client_secret_basic", "redirect_uris": ["https://c.example.com/cb"]}),
                "a secret method",
            ),
            (
                serde_json::json!({"client_id": id, "grant_types": ["client_credentials"], "redirect_uris": ["https://c.example.com/cb"]}),
                "no code grant",
            ),
            (serde_json::json!(["not", "an", "object"]), "not an object"),
        ] {
            let e = parse_document(id, doc.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.code, "client.metadata_invalid", "{why}: {}", e.message);
        }
    }

    #[test]
    fn loopback_private_and_mapped_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
