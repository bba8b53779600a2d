use super::*;

fn check(input: &str, expected: Result<&str, ArgumentsError>) {
    let got = CanonicalArguments::parse(input).map(|a| a.canonical().to_owned());
    assert_eq!(got.as_deref().map_err(Clone::clone), expected, "{input}");
}

#[test]
fn canonical_form_is_rfc_8785() {
    // Members sorted by UTF-16 code units, no whitespace, numbers as ECMAScript prints them.
    check(
        r#"{"b": 1, "a": {"y": [2, {"d": 1.0, "c": 0}], "x": null}}"#,
        Ok(r#"{"a":{"x":null,"y":[2,{"c":0,"d":1}]},"b":1}"#),
    );
    check(r#"{"n": 1e2, "m": -0, "f": 0.1, "big": 1e21}"#, Ok(r#"{"big":1e+21,"f":0.1,"m":0,"n":100}"#));
    check(r#"{"€": 1, "\u00e9": 2, "z": 3}"#, Ok(r#"{"z":3,"é":2,"€":1}"#));
    check(r#"{"s": "line\nbreak \u001f \"q\""}"#, Ok(r#"{"s":"line\nbreak \u001f \"q\""}"#));
}

#[test]
fn documents_that_differ_only_in_a_large_number_never_share_a_digest() {
    let a = CanonicalArguments::parse(r#"{"amount": 12345678901234567890123}"#);
    let b = CanonicalArguments::parse(r#"{"amount": 12345678901234567890124}"#);
    assert_eq!(a, Err(ArgumentsError::InexactNumber("12345678901234567890123".into())));
    assert_eq!(b, Err(ArgumentsError::InexactNumber("12345678901234567890124".into())));
    check(r#"{"n": 9007199254740993}"#, Err(ArgumentsError::InexactNumber("9007199254740993".into())));
    // Beyond a double's range: `serde_json` refuses it while parsing.
    assert!(matches!(CanonicalArguments::parse(r#"{"n": 1e400}"#), Err(ArgumentsError::Syntax(_))));
    check(
        r#"{"n": [0.1, 0.30000000000000004, 9007199254740992]}"#,
        Ok(r#"{"n":[0.1,0.30000000000000004,9007199254740992]}"#),
    );
    // Digits inside strings are not numbers.
    check(r#"{"s": "12345678901234567890123"}"#, Ok(r#"{"s":"12345678901234567890123"}"#));
}

#[test]
fn a_duplicated_member_is_refused_at_any_level() {
    check(r#"{"to": "a@example.org", "to": "b@evil.example"}"#, Err(ArgumentsError::DuplicateMember("to".into())));
    check(r#"{"x": [{"to": 1, "\u0074o": 2}]}"#, Err(ArgumentsError::DuplicateMember("to".into())));
}

#[test]
fn what_is_not_one_object_is_refused() {
    check("[1]", Err(ArgumentsError::NotAnObject));
    assert!(matches!(CanonicalArguments::parse("{"), Err(ArgumentsError::Syntax(_))));
    let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
    check(&deep, Err(ArgumentsError::TooDeep));
}

#[test]
fn the_digest_is_the_sha256_of_the_canonical_text() {
    let a = CanonicalArguments::parse(r#"{"b":2,"a":1}"#).unwrap_or_else(|_| CanonicalArguments::empty());
    assert_eq!(a.canonical(), r#"{"a":1,"b":2}"#);
    // sha256('{"a":1,"b":2}')
    assert_eq!(a.sha256_hex(), "43258cff783fe7036d8a43033f830adfc60ec037382473548ac742b888292777");
    assert_eq!(
        CanonicalArguments::empty().sha256_hex(),
        CanonicalArguments::parse("{}").map(|a| a.sha256_hex()).unwrap_or_default()
    );
}
