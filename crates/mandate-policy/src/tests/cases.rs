//! Case files: the shipped cases pass, failing cases are reported, and files that cannot run are
//! refused.
use super::*;

const DEFAULT_CASES: &str = include_str!("../../policies/default.cases.json");

#[test]
fn the_shipped_cases_pass_against_the_default_set() {
    let set = default_set();
    let report = run_cases(&set, DEFAULT_CASES).unwrap();
    assert!(report.all_passed(), "{report}");
    assert!(report.results.len() >= 10);
    for kind in [CaseKind::Grant, CaseKind::Call, CaseKind::Approve] {
        assert!(report.results.iter().any(|r| r.kind == kind), "no {kind:?} case");
    }
    assert_eq!(report.policy_version, set.version());
}

#[test]
fn a_failing_case_is_reported_with_what_happened() {
    let set = default_set();
    let request = serde_json::to_value(CallRequest {
        signals: vec!["exfiltration".to_owned()],
        risk_score: 60,
        ..call(tool("mail/send", "production", "internal", "egress"))
    })
    .unwrap();
    let cases = serde_json::json!({"cases": [
        {"name": "egress passes", "kind": "call", "request": request, "expect": "allow"},
        {"name": "egress is held", "kind": "call", "request": request, "expect": "hold"},
        {"name": "by the wrong policy", "kind": "call", "request": request, "expect": "hold", "matched": ["call.hold-destructive"]},
        {"name": "by the right ones", "kind": "call", "request": request, "expect": "hold",
         "matched": ["call.hold-exfiltration", "call.hold-high-risk", "call.within-mandate"]},
    ]});
    let report = run_cases(&set, &cases.to_string()).unwrap();
    assert_eq!(report.results.iter().map(|r| r.passed).collect::<Vec<_>>(), [false, true, false, true]);
    assert_eq!((report.passed(), report.failed(), report.all_passed()), (2, 2, false));
    let version = set.version();
    assert_eq!(
        report.to_string(),
        format!(
            "FAIL  egress passes: expected allow, got hold [call.within-mandate, call.hold-exfiltration, call.hold-high-risk]\n\
             ok    egress is held: hold [call.within-mandate, call.hold-exfiltration, call.hold-high-risk]\n\
             FAIL  by the wrong policy: expected hold [call.hold-destructive], got hold [call.within-mandate, call.hold-exfiltration, call.hold-high-risk]\n\
             ok    by the right ones: hold [call.within-mandate, call.hold-exfiltration, call.hold-high-risk]\n\
             2 passed, 2 failed (policy set {version})"
        )
    );
}

#[test]
fn case_files_that_cannot_run_are_refused() {
    let set = default_set();
    let table: &[(&str, &str, CaseError)] = &[
        ("not json", "{", CaseError::Malformed("EOF while parsing an object at line 1 column 1".to_owned())),
        ("no cases", r#"{"cases": []}"#, CaseError::NoCases),
        (
            "unknown field",
            r#"{"cases": [], "extra": 1}"#,
            CaseError::Malformed("unknown field `extra`, expected `cases` at line 1 column 21".to_owned()),
        ),
        (
            "unknown outcome",
            r#"{"cases": [{"name": "x", "kind": "call", "request": {}, "expect": "maybe"}]}"#,
            CaseError::Malformed(
                "unknown variant `maybe`, expected one of `allow`, `deny`, `hold` at line 1 column 73".to_owned(),
            ),
        ),
        (
            "requests of the wrong shape",
            r#"{"cases": [{"name": "x", "kind": "call", "request": {}, "expect": "deny"},
                         {"name": "y", "kind": "grant", "request": {"human": 1}, "expect": "deny"}]}"#,
            CaseError::Requests(vec![
                "case `x`: missing field `agent`".to_owned(),
                "case `y`: invalid type: integer `1`, expected struct HumanFacts".to_owned(),
            ]),
        ),
    ];
    for (name, text, expected) in table {
        assert_eq!(run_cases(&set, text).unwrap_err(), *expected, "{name}");
    }
}
