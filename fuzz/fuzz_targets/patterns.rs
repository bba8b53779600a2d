//! Pattern parsing, matching and the subset test on arbitrary text, with the `url` crate as a
//! differential oracle for resource normalisation: never a panic; a normalised resource is a URL
//! `url` parses to the same scheme and authority, with no dot segment left; parsing is idempotent;
//! a subset never matches what its superset does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::pattern::{ResourcePattern, ResourceUri, ToolName, ToolPattern};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Three inputs from one: a pattern, another pattern, and a concrete value.
    let mut parts = text.splitn(3, '\n');
    let (a, b, x) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));

    if let Ok(r) = ResourceUri::parse(x) {
        assert_eq!(ResourceUri::parse(r.as_str()).as_ref(), Ok(&r), "normalisation is idempotent");
        let url = match url::Url::parse(r.as_str()) {
            Ok(url) => url,
            // A special scheme's host that is not valid IDNA (`ws://xn--x`): WHATWG parsers refuse
            // it outright, so there is no other reading of it to disagree with.
            Err(url::ParseError::IdnaError) => return,
            Err(e) => panic!("`{r}` is not a URL to the `url` crate: {e}"),
        };
        let (scheme, rest) = r.as_str().split_once("://").expect("scheme://");
        assert_eq!(url.scheme(), scheme);
        let authority = rest.split('/').next().unwrap_or("");
        let host = url.host_str().unwrap_or("");
        assert!(authority == host || authority.starts_with(&format!("{host}:")), "{authority} vs {host}");
        assert!(!url.path().split('/').any(|s| s == ".." || s == "."), "no dot segment");
        assert!(url.query().is_none() && url.fragment().is_none() && url.username().is_empty());
    }
    if let (Ok(p), Ok(q)) = (ResourcePattern::parse(a), ResourcePattern::parse(b)) {
        assert!(p.is_subset_of(&p));
        if let Ok(r) = ResourceUri::parse(x) {
            if p.is_subset_of(&q) && p.matches(&r) {
                assert!(q.matches(&r), "{p} <= {q} but only {p} matches {r}");
            }
        }
    }
    if let (Ok(p), Ok(q)) = (ToolPattern::parse(a), ToolPattern::parse(b)) {
        assert!(p.is_subset_of(&p));
        if let Ok(t) = ToolName::parse(x) {
            if p.is_subset_of(&q) && p.matches(&t) {
                assert!(q.matches(&t), "{p} <= {q} but only {p} matches {t}");
            }
        }
    }
});
