//! Tests for the pattern grammar, the matchers and the subset test: tables through one `check`
//! helper per feature, and property tests against a naive oracle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;

fn check_tool(input: &str, expected: Result<(&str, &str), PatternError>) {
    let got = ToolName::parse(input);
    assert_eq!(got.as_ref().map(|t| (t.server(), t.tool())).map_err(Clone::clone), expected, "{input}");
    if let Ok(name) = got {
        assert_eq!(name.as_str(), input);
    }
}

#[test]
fn tool_names() {
    use PatternError::*;
    use Segment::*;
    let e = |s: &str| s.to_owned();
    check_tool("erp/read_ledger", Ok(("erp", "read_ledger")));
    check_tool("0-a_b/Tool.v2-x", Ok(("0-a_b", "Tool.v2-x")));
    check_tool("erp", Err(ToolShape(e("erp"))));
    check_tool("erp/a/b", Err(ToolShape(e("erp/a/b"))));
    check_tool("/x", Err(EmptySegment { input: e("/x"), segment: Server }));
    check_tool("erp/", Err(EmptySegment { input: e("erp/"), segment: Tool }));
    check_tool("Erp/x", Err(SegmentChar { input: e("Erp/x"), segment: Server, found: 'E' }));
    check_tool("erp/*", Err(SegmentChar { input: e("erp/*"), segment: Tool, found: '*' }));
    check_tool("erp/r\u{0435}ad", Err(SegmentChar { input: e("erp/r\u{0435}ad"), segment: Tool, found: '\u{0435}' }));
    check_tool("_erp/x", Err(ServerStart(e("_erp/x"))));
    let long = format!("{}/x", "a".repeat(65));
    check_tool(&long, Err(SegmentTooLong { input: long.clone(), segment: Server, max: 64 }));
    check_tool(&format!("{}/x", "a".repeat(64)), Ok((&"a".repeat(64), "x")));
    let long = format!("a/{}", "b".repeat(129));
    check_tool(&long, Err(SegmentTooLong { input: long.clone(), segment: Tool, max: 128 }));
}

fn check_tool_pattern(input: &str, expected: Result<(), PatternError>) {
    let got = ToolPattern::parse(input);
    assert_eq!(got.as_ref().map(|_| ()).map_err(Clone::clone), expected, "{input}");
    if let Ok(pattern) = got {
        assert_eq!(pattern.to_string(), input);
    }
}

#[test]
fn tool_patterns() {
    use PatternError::*;
    let e = |s: &str| s.to_owned();
    for ok in ["erp/*", "*/*", "erp/read_*", "e*/x", "*/read", "erp/read"] {
        check_tool_pattern(ok, Ok(()));
    }
    check_tool_pattern("*", Err(BareStar));
    check_tool_pattern("erp", Err(ToolPatternShape(e("erp"))));
    check_tool_pattern("erp/**", Err(MisplacedStar(e("erp/**"))));
    check_tool_pattern("erp/*x", Err(MisplacedStar(e("erp/*x"))));
    check_tool_pattern("e*p/x", Err(MisplacedStar(e("e*p/x"))));
    check_tool_pattern("-*/x", Err(ServerStart(e("-*/x"))));
    let long = format!("{}*/x", "a".repeat(64));
    check_tool_pattern(&long, Err(SegmentTooLong { input: long.clone(), segment: Segment::Server, max: 64 }));
    assert_eq!(BareStar.to_string(), "tool pattern `*` must name a server: write `*/*` for every tool of every server");
}

#[test]
fn tool_matching_and_subsets() {
    let p = |s: &str| ToolPattern::parse(s).unwrap();
    let n = |s: &str| ToolName::parse(s).unwrap();
    for (pattern, name, expected) in [
        ("erp/*", "erp/read", true),
        ("erp/read*", "erp/read", false),
        ("erp/read*", "erp/read_x", true),
        ("erp/read", "erp/read", true),
        ("erp/read", "erp/Read", false),
        ("*/*", "fx/convert", true),
        ("e*/*", "erp2/x", true),
        ("erp/*", "erpx/a", false),
    ] {
        assert_eq!(p(pattern).matches(&n(name)), expected, "{pattern} ~ {name}");
    }
    for (a, b, expected) in [
        ("erp/read", "erp/*", true),
        ("erp/read_*", "erp/read*", true),
        ("erp/read*", "erp/read_*", false),
        ("erp/*", "erp/read", false),
        ("erp/r*", "erp/r", false),
        ("erp/r", "erp/r*", false),
        ("erp/*", "*/*", true),
        ("*/*", "erp/*", false),
    ] {
        assert_eq!(p(a).is_subset_of(&p(b)), expected, "{a} <= {b}");
    }
}

fn check_resource(input: &str, expected: Result<&str, PatternError>) {
    let got = ResourcePattern::parse(input);
    assert_eq!(got.as_ref().map(|r| r.as_str()).map_err(Clone::clone), expected, "{input}");
    if let Ok(pattern) = got {
        assert_eq!(ResourcePattern::parse(pattern.as_str()).unwrap(), pattern, "idempotent");
        let exact = ResourceUri::parse(input);
        if input.ends_with('*') {
            assert_eq!(exact, Err(PatternError::ResourceStar(input.to_owned())));
        } else {
            assert_eq!(exact.unwrap().as_str(), pattern.as_str());
        }
    }
}

#[test]
fn resources() {
    use PatternError::*;
    let e = |s: &str| s.to_owned();
    check_resource("erp://ledger/2026-10/ap", Ok("erp://ledger/2026-10/ap"));
    check_resource("ERP+x.y-z://LedGer:80/Ap", Ok("erp+x.y-z://ledger:80/Ap"));
    check_resource("erp://%4Cedger/%61p%7e", Ok("erp://ledger/ap~"));
    check_resource("erp://ledger", Ok("erp://ledger"));
    check_resource("erp://ledger/2026-10/*", Ok("erp://ledger/2026-10/*"));
    check_resource("erp://*", Ok("erp://*"));
    check_resource("erp://Led*", Ok("erp://led*"));
    check_resource("erp://ledger:8443/x", Ok("erp://ledger:8443/x"));
    check_resource("erp://ledger:8*", Ok("erp://ledger:8*"));
    check_resource("https://10.0.0.5/x", Ok("https://10.0.0.5/x"));
    check_resource("https://api2.example/x", Ok("https://api2.example/x"));
    check_resource("https://10.0*", Ok("https://10.0*"));
    for bad in [
        "ws://7./x",
        "https://example.com./x",
        "https://0x7f.1/x",
        "https://2130706433/x",
        "https://127.1/x",
        "https://010.0.0.1/x",
        "https://1.2.3.256/x",
        "https://1.2.3.4.5/x",
        "erp://lederp:g/x",
        "erp://ledger:/x",
        "erp://:80/x",
        "erp://ledger:65536/x",
        "erp://a:1:2/x",
        "erp://ledger:080800/x",
    ] {
        check_resource(bad, Err(ResourceAuthority(e(bad))));
    }
    check_resource("erp://ledger/a.b/..x/*", Ok("erp://ledger/a.b/..x/*"));
    check_resource("erp://Ledger/..", Err(ResourceDotSegment(e("erp://Ledger/.."))));
    check_resource("erp://l/a/./b", Err(ResourceDotSegment(e("erp://l/a/./b"))));
    check_resource("erp://l/%2e%2E/x", Err(ResourceDotSegment(e("erp://l/%2e%2E/x"))));
    // `..;` is resolved as `..` by servers that strip path parameters first.
    check_resource("erp://l/2026-10/..;/2026-11", Err(ResourceDotSegment(e("erp://l/2026-10/..;/2026-11"))));
    check_resource("erp://l/%2e%2e;x/y", Err(ResourceDotSegment(e("erp://l/%2e%2e;x/y"))));
    check_resource("erp://l/.;/y", Err(ResourceDotSegment(e("erp://l/.;/y"))));
    check_resource("erp://l/a;b/y", Ok("erp://l/a;b/y"));
    check_resource("erp://l/..*", Err(ResourceDotSegment(e("erp://l/..*"))));
    check_resource("erp://l/a%2Fb", Err(ResourcePercent { input: e("erp://l/a%2Fb"), escape: e("%2F") }));
    for escape in ["%5C", "%25", "%00", "%C3", "%2A", "%2f"] {
        let input = format!("erp://l/{escape}");
        check_resource(&input, Err(ResourcePercent { input: input.clone(), escape: e(escape) }));
    }
    for bad in ["erp://l/%4", "erp://l/%zz", "erp://l/%+1", "erp://l/%4*"] {
        check_resource(bad, Err(ResourceBadPercent(e(bad))));
    }
    for (input, found) in [
        ("erp://l/a b", ' '),
        ("erp://l/a\\b", '\\'),
        ("erp://l/a?b", '?'),
        ("erp://l/a#b", '#'),
        ("erp://l/a\tb", '\t'),
        ("erp://l/a\u{0}", '\u{0}'),
        ("\u{0435}rp://l/a", '\u{0435}'),
        ("erp://l/a\u{2215}b", '\u{2215}'),
        ("erp://l/a\"b", '"'),
    ] {
        check_resource(input, Err(ResourceChar { input: e(input), found }));
    }
    check_resource("erp://ledger//x", Err(ResourceEmptySegment(e("erp://ledger//x"))));
    check_resource("erp://ledger/x/", Err(ResourceEmptySegment(e("erp://ledger/x/"))));
    check_resource("erp://ledger//*", Err(ResourceEmptySegment(e("erp://ledger//*"))));
    check_resource("erp:///x", Err(ResourceEmptyAuthority(e("erp:///x"))));
    check_resource("erp://", Err(ResourceEmptyAuthority(e("erp://"))));
    check_resource("erp://u@ledger/x", Err(ResourceUserinfo(e("erp://u@ledger/x"))));
    check_resource("erp:/x", Err(ResourceShape(e("erp:/x"))));
    check_resource("*", Err(ResourceShape(e("*"))));
    check_resource("1rp://x", Err(ResourceScheme(e("1rp://x"))));
    check_resource("://x", Err(ResourceScheme(e("://x"))));
    check_resource("erp://l/*/x", Err(ResourceMisplacedStar(e("erp://l/*/x"))));
    check_resource("erp://l/**", Err(ResourceMisplacedStar(e("erp://l/**"))));
    let long = format!("erp://l/{}", "a".repeat(1017));
    check_resource(&long, Err(ResourceTooLong { len: 1025 }));
    check_resource(&long[..1024], Ok(&long[..1024]));
    assert_eq!(ResourceUri::parse("erp://l/*"), Err(ResourceStar(e("erp://l/*"))));
}

#[test]
fn resource_matching_and_subsets() {
    let p = |s: &str| ResourcePattern::parse(s).unwrap();
    let r = |s: &str| ResourceUri::parse(s).unwrap();
    for (pattern, resource, expected) in [
        ("erp://ledger/2026-10/*", "erp://ledger/2026-10/ap", true),
        ("erp://ledger/2026-10/*", "ERP://LEDGER/2026-10/%61p", true),
        ("erp://ledger/2026-10/*", "erp://ledger/2026-10", false),
        ("erp://ledger/2026-10/*", "erp://ledger/2026-11/ap", false),
        ("erp://ledger/2026-10*", "erp://ledger/2026-100", true),
        ("erp://ledger/*", "erp://ledger/A/b/c", true),
        // The star at the authority never crosses its end, into a path or onto another host.
        ("erp://led*", "erp://ledger.evil/x", false),
        ("erp://led*", "erp://ledger/x", false),
        ("erp://led*", "erp://ledger", true),
        ("erp://led*", "erp://ledger.evil", true),
        ("erp://*", "erp://ledger/x", false),
        ("erp://*", "erp://ledger", true),
        ("erp://ledger/a", "erp://ledger/A", false),
    ] {
        assert_eq!(p(pattern).matches(&r(resource)), expected, "{pattern} ~ {resource}");
    }
    for (a, b, expected) in [
        ("erp://ledger/2026-10/*", "erp://ledger/*", true),
        ("erp://ledger/*", "erp://ledger/2026-10/*", false),
        ("erp://ledger/x", "erp://ledger/*", true),
        ("erp://ledger/*", "erp://ledger", false),
        // A star in the authority stands for the rest of the authority only.
        ("erp://ledger/*", "erp://*", false),
        ("erp://ledger/*", "erp://led*", false),
        ("erp://ledger", "erp://led*", true),
        ("erp://ledg*", "erp://led*", true),
        ("erp://led*", "erp://ledg*", false),
        ("erp://led*", "erp://*", true),
        ("erp://ledger/*", "fx://*", false),
    ] {
        assert_eq!(p(a).is_subset_of(&p(b)), expected, "{a} <= {b}");
    }
}

#[test]
fn data_classes_and_plain_sets() {
    for (input, ok) in [("financial", true), ("pii-2_x", true), ("Financial", false), ("2x", false), ("", false)] {
        assert_eq!(DataClass::parse(input).is_ok(), ok, "{input}");
    }
    let long = "a".repeat(33);
    assert_eq!(DataClass::parse(&long), Err(PatternError::DataClass(long.clone())));
    assert!(DataClass::parse(&long[..32]).is_ok());
    let set = DataClasses::parse(["financial", "internal", "financial"]).unwrap();
    assert_eq!(set.len(), 2);
    assert!(set.matches(&DataClass::parse("internal").unwrap()));
    assert!(DataClasses::parse(["internal"]).unwrap().is_subset_of(&set));
    assert!(!set.is_subset_of(&DataClasses::parse(["internal"]).unwrap()));
    assert!(is_subset(&["a", "b"], &["b", "c", "a"]));
    assert!(!is_subset(&["a", "d"], &["b", "c", "a"]));
}

#[test]
fn sets_are_conservative_for_unions() {
    let set = |items: &[&str]| ToolPatterns::parse(items).unwrap();
    assert!(set(&["erp/read", "fx/*"]).is_subset_of(&set(&["erp/*", "fx/*"])));
    assert!(!set(&["erp/*"]).is_subset_of(&set(&["erp/read", "fx/*"])));
    assert!(set(&[]).is_subset_of(&set(&[])));
    // `erp/a*` is covered by the union, but by no single element: the rule answers no.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
    let cover: Vec<String> = alphabet.chars().flat_map(|c| [format!("erp/a{c}"), format!("erp/a{c}*")]).collect();
    let names = alphabet.chars().flat_map(|c| [format!("erp/a{c}"), format!("erp/a{c}x")]);
    let cover = ToolPatterns::parse(&cover).unwrap();
    assert!(names.map(|n| ToolName::parse(&n).unwrap()).all(|n| cover.matches(&n)));
    assert!(!set(&["erp/a*"]).is_subset_of(&cover));
}

#[test]
fn serde_and_schema() {
    let set: ToolPatterns = serde_json::from_str(r#"["erp/*", "fx/convert", "erp/*"]"#).unwrap();
    assert_eq!(serde_json::to_string(&set).unwrap(), r#"["erp/*","fx/convert"]"#);
    let err = serde_json::from_str::<ToolPattern>(r#""*""#).unwrap_err().to_string();
    assert!(err.contains("write `*/*`"), "{err}");
    assert!(serde_json::from_str::<ResourcePatterns>(r#"["erp://l/%2F"]"#).is_err());
    let resource: ResourcePattern = serde_json::from_str(r#""ERP://Ledger/X/*""#).unwrap();
    assert_eq!(serde_json::to_string(&resource).unwrap(), r#""erp://ledger/X/*""#);
    assert!(serde_json::from_str::<DataClass>(r#""PII""#).is_err());
    let schema = serde_json::to_value(<ToolPattern as utoipa::PartialSchema>::schema()).unwrap();
    assert_eq!(schema["type"], "string");
    assert_eq!(schema["examples"][0], "erp/*");
    let schema = serde_json::to_value(<ResourcePatterns as utoipa::PartialSchema>::schema()).unwrap();
    assert_eq!(schema["items"]["type"], "string");
    assert_eq!(<ToolPatterns as utoipa::ToSchema>::name(), "ToolPatternSet");
}

/// Naive glob: `*` matches one or more characters, and never a `/` when `cross_slash` is false.
/// A resource pattern's star crosses `/` only in the path, never at the authority.
fn resource_star_crosses_slash(pattern: &str) -> bool {
    pattern.split_once("://").is_some_and(|(_, rest)| rest.contains('/'))
}

fn oracle(pattern: &[u8], s: &[u8], cross_slash: bool) -> bool {
    match pattern.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (1..=s.len())
            .take_while(|&k| cross_slash || s.get(k - 1) != Some(&b'/'))
            .any(|k| oracle(rest, &s[k..], cross_slash)),
        Some((c, rest)) => s.split_first().is_some_and(|(d, tail)| c == d && oracle(rest, tail, cross_slash)),
    }
}

/// Exactness for single patterns: on a universe that holds a witness for every pair, the subset
/// test agrees with "everything `a` matches, `b` matches".
#[test]
fn single_pattern_subsets_are_exact() {
    let segments = ["a", "ab", "*", "a*", "b*", "ab*"];
    let patterns: Vec<ToolPattern> = segments
        .iter()
        .flat_map(|s| segments.iter().map(move |t| ToolPattern::parse(&format!("{s}/{t}")).unwrap()))
        .collect();
    let words: Vec<String> = ["a", "b", "aa", "ab", "ba", "bb", "aaa", "aba", "abb", "bab"].map(String::from).to_vec();
    let names: Vec<ToolName> =
        words.iter().flat_map(|s| words.iter().map(move |t| ToolName::parse(&format!("{s}/{t}")).unwrap())).collect();
    for a in &patterns {
        for b in &patterns {
            let semantic = names.iter().all(|n| !a.matches(n) || b.matches(n));
            assert_eq!(a.is_subset_of(b), semantic, "{a} <= {b}");
        }
    }
}

fn tool_pattern() -> impl Strategy<Value = ToolPattern> {
    "([ab]{1,2}|[ab]?\\*)/([ab]{1,3}|[ab]{0,2}\\*)".prop_map(|s| ToolPattern::parse(&s).unwrap())
}

fn tool_name() -> impl Strategy<Value = ToolName> {
    "[ab]{1,3}/[ab]{1,4}".prop_map(|s| ToolName::parse(&s).unwrap())
}

fn resource_pattern() -> impl Strategy<Value = ResourcePattern> {
    "[sS]://[aA]{1,2}(/([ab]|%61){1,2}){0,2}(/?\\*)?".prop_map(|s| ResourcePattern::parse(&s).unwrap())
}

fn resource() -> impl Strategy<Value = ResourceUri> {
    "[sS]://[aA]{1,2}(/[ab]{1,2}){0,3}".prop_map(|s| ResourceUri::parse(&s).unwrap())
}

proptest! {
    #[test]
    fn tool_pattern_laws(a in tool_pattern(), b in tool_pattern(), c in tool_pattern(), x in tool_name()) {
        prop_assert!(a.is_subset_of(&a));
        if a.is_subset_of(&b) && b.is_subset_of(&c) { prop_assert!(a.is_subset_of(&c)); }
        if a.is_subset_of(&b) && a.matches(&x) { prop_assert!(b.matches(&x)); }
        prop_assert_eq!(a.matches(&x), oracle(a.as_str().as_bytes(), x.as_str().as_bytes(), false));
    }

    #[test]
    fn resource_pattern_laws(a in resource_pattern(), b in resource_pattern(), c in resource_pattern(), x in resource()) {
        prop_assert!(a.is_subset_of(&a));
        if a.is_subset_of(&b) && b.is_subset_of(&c) { prop_assert!(a.is_subset_of(&c)); }
        if a.is_subset_of(&b) && a.matches(&x) { prop_assert!(b.matches(&x)); }
        prop_assert_eq!(a.matches(&x), oracle(a.as_str().as_bytes(), x.as_str().as_bytes(), resource_star_crosses_slash(a.as_str())));
        prop_assert_eq!(ResourcePattern::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn set_laws(
        a in prop::collection::vec(tool_pattern(), 0..4),
        b in prop::collection::vec(tool_pattern(), 0..4),
        c in prop::collection::vec(tool_pattern(), 0..4),
        ra in prop::collection::vec(resource_pattern(), 0..4),
        rb in prop::collection::vec(resource_pattern(), 0..4),
        x in tool_name(),
        y in resource(),
    ) {
        let (a, b, c) = (ToolPatterns::new(a), ToolPatterns::new(b), ToolPatterns::new(c));
        prop_assert!(a.is_subset_of(&a));
        if a.is_subset_of(&b) && b.is_subset_of(&c) { prop_assert!(a.is_subset_of(&c)); }
        if a.is_subset_of(&b) && a.matches(&x) { prop_assert!(b.matches(&x)); }
        prop_assert_eq!(a.matches(&x), a.iter().any(|p| oracle(p.as_str().as_bytes(), x.as_str().as_bytes(), false)));
        let (ra, rb) = (ResourcePatterns::new(ra), ResourcePatterns::new(rb));
        prop_assert!(ra.is_subset_of(&ra));
        if ra.is_subset_of(&rb) && ra.matches(&y) { prop_assert!(rb.matches(&y)); }
    }
}

#[test]
fn method_tools_are_named_exactly_and_no_star_reaches_them() {
    let read = ToolName::parse("erp/resources/read").unwrap();
    assert_eq!((read.server(), read.tool()), ("erp", "resources/read"));
    let get = ToolName::parse("erp/prompts/get").unwrap();
    assert_eq!(get.tool(), "prompts/get");
    // Any other two-segment tool is still refused.
    assert!(ToolName::parse("erp/resources/list").is_err());
    assert!(ToolName::parse("erp/tools/call").is_err());
    assert!(ToolPattern::parse("erp/resources/*").is_err());
    // Only the exact name matches: `erp/*`, `*/*` and `erp/r*` are every tool, none of the methods.
    for p in ["erp/*", "*/*", "erp/r*", "e*/*"] {
        let p = ToolPattern::parse(p).unwrap();
        assert!(!p.matches(&read) && !p.matches(&get), "{p}");
        assert!(p.matches(&ToolName::parse("erp/read_ledger").unwrap()), "{p}");
    }
    let exact = ToolPattern::parse("erp/resources/read").unwrap();
    assert!(exact.matches(&read) && !exact.matches(&get));
    // And the subset test agrees: the exact name is in no starred pattern, the starred ones in it never.
    assert!(!exact.is_subset_of(&ToolPattern::parse("erp/*").unwrap()));
    assert!(exact.is_subset_of(&ToolPattern::parse("erp/resources/read").unwrap()));
    assert!(ToolPattern::parse("erp/r*").unwrap().is_subset_of(&ToolPattern::parse("erp/*").unwrap()));
}
