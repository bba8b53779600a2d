//! Where a call's data goes, and whom a read is about: the domains named in its arguments and
//! resource.
//!
//! An egress tool's destination is whatever its arguments address: an e-mail address
//! (`to: "jane@acme.example"`), a URL (`url: "https://paste.example/new"`). Rather than a per-tool
//! mapping that every new tool would need, every string of the arguments (to a bounded depth and
//! count) is read for addresses and URLs, and their domains are the destinations. A read of
//! sensitive data gets the same treatment: the domains it names are its *subjects*, so that mailing
//! the person just looked up is told apart from mailing their record to somebody else.
//!
//! What cannot be read is not trusted: an egress call whose arguments name no domain has an unknown
//! destination, which scores as external and new.

use serde_json::Value;

/// At most this many domains are taken from one call.
pub const MAX_DOMAINS: usize = 16;
/// Strings looked at per call, and the depth of arguments walked.
const MAX_STRINGS: usize = 256;
const MAX_DEPTH: usize = 8;

/// The domains addressed in `arguments` and `resource`, lowercased, without duplicates, at most
/// [`MAX_DOMAINS`].
pub fn domains(arguments: &Value, resource: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut budget = MAX_STRINGS;
    if let Some(r) = resource {
        scan(r, &mut out);
    }
    walk(arguments, 0, &mut budget, &mut out);
    out
}

fn walk(v: &Value, depth: usize, budget: &mut usize, out: &mut Vec<String>) {
    if depth > MAX_DEPTH || *budget == 0 || out.len() >= MAX_DOMAINS {
        return;
    }
    match v {
        Value::String(s) => {
            *budget -= 1;
            scan(s, out);
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, depth + 1, budget, out)),
        Value::Object(map) => map.values().for_each(|i| walk(i, depth + 1, budget, out)),
        _ => {}
    }
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// Finds `local@domain` and `scheme://host` in `s`.
fn scan(s: &str, out: &mut Vec<String>) {
    let bytes = s.as_bytes();
    // Addresses: the domain after each `@`.
    for (i, _) in s.match_indices('@') {
        push_domain(&bytes[i + 1..], out);
    }
    // URLs: the host after each `://`, past any user info.
    for (i, _) in s.match_indices("://") {
        let rest = &bytes[i + 3..];
        let end = rest.iter().position(|b| b"/?#".contains(b)).unwrap_or(rest.len());
        let authority = &rest[..end];
        let host = match authority.iter().rposition(|b| *b == b'@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        push_domain(host, out);
    }
}

fn push_domain(after: &[u8], out: &mut Vec<String>) {
    if out.len() >= MAX_DOMAINS {
        return;
    }
    let end = after.iter().position(|b| !is_domain_byte(*b)).unwrap_or(after.len());
    let raw = &after[..end];
    let trimmed = raw.strip_suffix(b".").unwrap_or(raw);
    if trimmed.len() < 3 || trimmed.len() > 253 || !trimmed.contains(&b'.') || trimmed.starts_with(b".") {
        return;
    }
    // ASCII by construction (`is_domain_byte`).
    let domain = String::from_utf8_lossy(trimmed).to_ascii_lowercase();
    if !out.contains(&domain) {
        out.push(domain);
    }
}

/// Whether `domain` is `parent` or one of its subdomains.
pub fn within(domain: &str, parent: &str) -> bool {
    domain == parent
        || (domain.len() > parent.len() && domain.ends_with(parent) && {
            let cut = domain.len() - parent.len() - 1;
            domain.as_bytes()[cut] == b'.'
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_and_urls_name_their_domains() {
        let args = json!({
            "to": ["Jane.Doe@Acme.Example", "bob@example.org."],
            "cc": "see https://user:pw@paste.example:443/new?x=1 and mailto:x@evil.example",
            "body": {"nested": [{"deep": "ftp://files.example.net/a"}]},
            "count": 3, "note": "no domain @ here, nor a@b",
        });
        let mut found = domains(&args, Some("crm://contacts/jane@acme.example"));
        found.sort();
        assert_eq!(found, ["acme.example", "evil.example", "example.org", "files.example.net", "paste.example"]);
        assert!(domains(&json!({"to": "the controller"}), None).is_empty());
    }

    #[test]
    fn a_flood_of_strings_is_read_only_so_far() {
        let many: Vec<String> = (0..10_000).map(|i| format!("x@d{i}.example")).collect();
        assert_eq!(domains(&json!({ "to": many }), None).len(), MAX_DOMAINS);
        let mut deep = json!("a@deep.example");
        for _ in 0..20 {
            deep = json!([deep]);
        }
        assert!(domains(&deep, None).is_empty(), "below the walked depth");
    }

    #[test]
    fn subdomains_are_within_their_parent_only() {
        assert!(within("example.org", "example.org"));
        assert!(within("mail.example.org", "example.org"));
        assert!(!within("badexample.org", "example.org"));
        assert!(!within("example.org.evil.example", "example.org"));
    }
}
