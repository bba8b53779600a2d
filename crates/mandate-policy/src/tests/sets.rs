//! Policy sets: the shipped schema and default set, versions, and the sets that are refused, with
//! the line and policy id of every problem.
use super::*;

#[test]
fn the_default_set_parses_and_validates_without_warnings() {
    let set = default_set();
    assert_eq!(set.text(), DEFAULT_POLICIES);
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
    assert_eq!(
        set.ids().collect::<Vec<_>>(),
        [
            "grant.open-classes",
            "grant.financial-by-finance",
            "grant.pii-by-hr",
            "grant.secret-by-security",
            "grant.erp-only-finance",
            "grant.financial-scope-only-finance",
            "grant.pii-scope-only-hr",
            "grant.secret-scope-only-security",
            "call.within-mandate",
            "call.environment-separation",
            "call.hold-exfiltration",
            "call.hold-high-risk",
            "call.deny-extreme-risk",
            "call.hold-destructive",
            "call.hold-financial-write",
            "call.pii-business-hours",
            "call.no-secret-for-coding",
            "approve.approver-role",
            "approve.owner",
            "approve.financial-write-not-root",
        ]
    );
    let holds: Vec<_> = set.policies().iter().filter(|p| p.hold.is_some()).map(|p| p.id.as_str()).collect();
    assert_eq!(
        holds,
        ["call.hold-exfiltration", "call.hold-high-risk", "call.hold-destructive", "call.hold-financial-write"]
    );
    // Every policy of the shipped file is introduced by a comment.
    for policy in set.policies() {
        let above = DEFAULT_POLICIES.lines().nth(policy.line - 2).unwrap_or_default();
        assert!(above.starts_with("//"), "policy `{}` on line {} has no comment above it", policy.id, policy.line);
    }
}

#[test]
fn the_version_is_the_sha256_of_the_text() {
    let a = ValidatedPolicySet::parse("@id(\"a\")\npermit (principal, action, resource);").unwrap();
    assert_eq!(a.version().len(), 64);
    assert_eq!(a.version(), hex::encode(<sha2::Sha256 as sha2::Digest>::digest(a.text().as_bytes())));
    let b = ValidatedPolicySet::parse("@id(\"a\")\npermit (principal, action, resource); ").unwrap();
    assert_ne!(a.version(), b.version());
    assert_eq!(default_set().version(), default_set().version());
}

#[test]
fn a_set_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ValidatedPolicySet>();
    shareable::<std::sync::Arc<ValidatedPolicySet>>();
}

#[test]
fn the_empty_set_is_valid_and_denies_everything() {
    let set = ValidatedPolicySet::parse("// nothing yet\n").unwrap();
    assert_eq!(set.ids().len(), 0);
    check(&set, "empty", call(wiki()), Outcome::Deny, &[]);
}

// ---- refused sets -------------------------------------------------------------------------------

#[test]
fn refused_sets_name_the_policy_and_the_line() {
    // (name, text, expected problems as displayed)
    let cases: &[(&str, String, &[&str])] = &[
        (
            "unknown context field",
            format!("@id(\"a\")\npermit (principal, {CALL}, resource)\nwhen {{ context.nonexistent }};"),
            &["line 3, column 8: policy `a`: attribute `nonexistent` in context for Mandate::Action::\"call\" not found (help: did you mean `binding`?)"],
        ),
        (
            "string compared with a long",
            format!("@id(\"a\")\npermit (principal, {CALL}, resource)\nwhen {{ context.hour < \"ten\" }};"),
            &["line 3, column 23: policy `a`: unexpected type: expected Long but saw String"],
        ),
        (
            "unknown entity attribute",
            format!("@id(\"a\")\nforbid (principal, {CALL}, resource)\nwhen {{ principal.department == \"it\" }};"),
            &["line 3, column 8: policy `a`: attribute `department` on entity type `Mandate::Agent` not found (help: did you mean `environment`?)"],
        ),
        (
            "missing id",
            format!("@id(\"a\") permit (principal, {CALL}, resource);\n\npermit (principal, {CALL}, resource);"),
            &["line 3: the policy has no `@id(\"...\")` annotation"],
        ),
        (
            "duplicate id",
            format!("@id(\"a\") permit (principal, {CALL}, resource);\n@id(\"a\") forbid (principal, {CALL}, resource);"),
            &["line 2: policy `a`: the `@id` is already used by the policy on line 1"],
        ),
        (
            "malformed id",
            format!("@id(\"my policy\") permit (principal, {CALL}, resource);"),
            &["line 1: policy `my policy`: the `@id` contains ` `: use letters, digits, `.`, `_`, `-`, `:` and `/`"],
        ),
        (
            "empty id",
            format!("@id(\"\") permit (principal, {CALL}, resource);"),
            &["line 1: policy ``: the `@id` is empty"],
        ),
        (
            "hold on a forbid",
            format!("@id(\"a\") @hold(\"why\") forbid (principal, {CALL}, resource);"),
            &["line 1: policy `a`: `@hold` is only meaningful on a `permit`: a `forbid` denies"],
        ),
        (
            "hold without a reason",
            format!("@id(\"a\") @hold(\" \") permit (principal, {CALL}, resource);"),
            &["line 1: policy `a`: `@hold` needs a reason, as in `@hold(\"egress needs approval\")`"],
        ),
        (
            "template",
            "@id(\"t\") permit (principal == ?principal, action, resource);".to_owned(),
            &["line 1: policy `t`: templates (policies with `?principal` or `?resource`) are not supported"],
        ),
        (
            "syntax error",
            "@id(\"a\") permit (principal, action, resource) whn { true };".to_owned(),
            &["line 1, column 47: invalid policy condition: whn (help: condition must be either `when` or `unless`)"],
        ),
        (
            "several problems at once",
            format!(
                "@id(\"a\") permit (principal, {CALL}, resource);\n@id(\"a\") permit (principal, {CALL}, resource);\n\
                 @id(\"b\") permit (principal, {CALL}, resource) when {{ 1 }};"
            ),
            &[
                "line 2: policy `a`: the `@id` is already used by the policy on line 1",
                "line 3, column 81: policy `b`: unexpected type: expected Bool but saw Long",
            ],
        ),
    ];
    for (name, text, expected) in cases {
        let problems: Vec<String> = refused(text).iter().map(ToString::to_string).collect();
        assert_eq!(problems, *expected, "{name}");
    }
}

#[test]
fn the_error_message_lists_every_problem() {
    let err = ValidatedPolicySet::parse("permit (principal, action, resource);\npermit (principal, action, resource);")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the policy set was refused: line 1: the policy has no `@id(\"...\")` annotation; \
         line 2: the policy has no `@id(\"...\")` annotation"
    );
}
