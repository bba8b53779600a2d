//! Decision semantics on small custom sets: forbid beats permit and hold, errors fail closed, facts
//! that cannot be evaluated deny, and ids are data, never syntax.
use super::*;

fn set(text: &str) -> ValidatedPolicySet {
    match ValidatedPolicySet::parse(text) {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn forbid_overrides_permit_and_hold() {
    let set = set(&format!(
        "@id(\"allow\") permit (principal, {CALL}, resource);\n\
         @id(\"hold\") @hold(\"look first\") permit (principal, {CALL}, resource);\n\
         @id(\"stop\") forbid (principal, {CALL}, resource) when {{ context.risk_score > 50 }};"
    ));
    check(&set, "held", call(wiki()), Outcome::Hold, &["allow", "hold"]);
    check(&set, "forbidden", CallRequest { risk_score: 51, ..call(wiki()) }, Outcome::Deny, &["stop"]);
}

#[test]
fn an_evaluation_error_that_could_change_the_outcome_denies() {
    // The agent's owner is a reference: Alice's facts are not part of a call made for Bob, so reading
    // the owner's attributes fails at evaluation time although the policy validates.
    let owner_is_sandbox = "principal.owner.sandbox";
    let bob_call = CallRequest { root: bob(), ..call(wiki()) };
    let table: Vec<(&str, String, Outcome, &[&str], usize)> = vec![
        (
            "an erroring forbid might have denied",
            format!(
                "@id(\"allow\") permit (principal, {CALL}, resource);\n\
                 @id(\"f\") forbid (principal, {CALL}, resource) when {{ {owner_is_sandbox} }};"
            ),
            Outcome::Deny,
            &["f"],
            1,
        ),
        (
            "an erroring hold might have held",
            format!(
                "@id(\"allow\") permit (principal, {CALL}, resource);\n\
                 @id(\"h\") @hold(\"sandbox owners\") permit (principal, {CALL}, resource) when {{ {owner_is_sandbox} }};"
            ),
            Outcome::Deny,
            &["h"],
            1,
        ),
        (
            "an erroring plain permit cannot widen anything",
            format!(
                "@id(\"allow\") permit (principal, {CALL}, resource);\n\
                 @id(\"p\") permit (principal, {CALL}, resource) when {{ {owner_is_sandbox} }};"
            ),
            Outcome::Allow,
            &["allow"],
            1,
        ),
        (
            "an erroring sole permit denies by default",
            format!("@id(\"p\") permit (principal, {CALL}, resource) when {{ !{owner_is_sandbox} }};"),
            Outcome::Deny,
            &[],
            1,
        ),
    ];
    for (name, text, outcome, matched, errors) in table {
        let decision = set(&text).decide_call(&bob_call);
        assert_eq!(decision.outcome, outcome, "{name}: {decision:?}");
        assert_eq!(decision.matched, matched, "{name}: {decision:?}");
        assert_eq!(decision.errors.len(), errors, "{name}: {decision:?}");
        assert!(decision.errors[0].contains("alice@example.org"), "{name}: {decision:?}");
    }
    // With Alice's facts present (she is the root), the same forbid evaluates and does not fire.
    let set = set(&format!(
        "@id(\"allow\") permit (principal, {CALL}, resource);\n\
         @id(\"f\") forbid (principal, {CALL}, resource) when {{ {owner_is_sandbox} }};"
    ));
    check(&set, "owner known", call(wiki()), Outcome::Allow, &["allow"]);
}

#[test]
fn facts_that_cannot_be_evaluated_deny() {
    let set = set(&format!(
        "@id(\"all\") permit (principal, action, resource);\n@id(\"calls\") permit (principal, {CALL}, resource);"
    ));
    let alice_again = HumanFacts { groups: vec!["security".to_owned()], ..alice() };
    let table: Vec<(&str, Request, &str)> = vec![
        ("hour out of range", CallRequest { hour: 24, ..call(wiki()) }.into(), "hour `24` is outside 0 to 23"),
        (
            "weekday zero",
            CallRequest { weekday: 0, ..call(wiki()) }.into(),
            "weekday `0` is outside 1 (Monday) to 7 (Sunday)",
        ),
        (
            "a tool of another server",
            call(ToolFacts { server: "wiki".to_owned(), ..ledger() }).into(),
            "tool `erp/read_ledger` is not a tool of server `wiki`",
        ),
        (
            "one human, two descriptions",
            approve(alice(), alice_again, wiki(), "read"),
            "conflicting facts for `Mandate::Human::\"alice@example.org\"`",
        ),
        (
            "one agent, two descriptions",
            CallRequest { chain: vec![AgentFacts { class: "coding".to_owned(), ..finance_close() }], ..call(wiki()) }
                .into(),
            "conflicting facts for `Mandate::Agent::\"finance-close\"`",
        ),
    ];
    for (name, request, error) in table {
        let decision = decide(&set, &request);
        assert_eq!(decision, PolicyDecision::failed(error.to_owned()), "{name}");
    }
}

#[test]
fn odd_ids_are_data_not_syntax() {
    let set =
        set(&format!("@id(\"alice-only\") permit (principal == Mandate::Agent::\"finance-close\", {CALL}, resource);"));
    let injected = AgentFacts { id: "x\", action, resource); permit(principal".to_owned(), ..finance_close() };
    check(&set, "an id with quotes is only an id", call_by(injected, wiki()), Outcome::Deny, &[]);
    let long = AgentFacts { id: "a".repeat(100_000), ..finance_close() };
    check(&set, "a huge id is only an id", call_by(long, wiki()), Outcome::Deny, &[]);
    let unicode = AgentFacts { id: "ﬁnance-close\u{202e}".to_owned(), ..finance_close() };
    check(&set, "a look-alike id is another id", call_by(unicode, wiki()), Outcome::Deny, &[]);
    check(&set, "the real id", call(wiki()), Outcome::Allow, &["alice-only"]);
}

#[test]
fn the_same_human_twice_with_the_same_facts_is_fine() {
    check(
        &default_set(),
        "root approves",
        approve(olga(), olga(), wiki(), "read"),
        Outcome::Allow,
        &["approve.approver-role"],
    );
}

#[test]
fn answers_remembered_for_some_facts_are_never_those_of_other_facts() {
    // Each policy reads one fact of the request: an entity's attributes or groups (what the entity
    // cache keeps) or the context (what only the decision memo keys on). An agent suspended, a human
    // moved out of a group, a tool reclassified, all under the same ids, and the hour, a risk signal
    // or the resource changing, must each be seen as they are now, in any order, however often the
    // request was decided before. Run with the memo of decisions (the server's path) and without it
    // (the entity cache alone).
    let with_memo = set(&format!(
        "@id(\"allow\") permit (principal, {CALL}, resource);\n\
         @id(\"suspended\") forbid (principal, {CALL}, resource) when {{ principal.state != \"active\" }};\n\
         @id(\"finance-only\") forbid (principal, {CALL}, resource) when {{ !(context.root in Mandate::Group::\"finance\") }};\n\
         @id(\"secret\") forbid (principal, {CALL}, resource) when {{ resource.data_class == \"secret\" }};\n\
         @id(\"night\") forbid (principal, {CALL}, resource) when {{ context.hour < 6 }};\n\
         @id(\"drift\") forbid (principal, {CALL}, resource) when {{ context.signals.contains(\"drift\") }};\n\
         @id(\"payroll\") forbid (principal, {CALL}, resource) when {{ context.resource_uri like \"*payroll*\" }};"
    ));
    let without_memo = with_memo.clone().without_call_memo();
    let suspended = AgentFacts { state: "suspended".into(), ..finance_close() };
    let secret_wiki = ToolFacts { data_class: "secret".into(), ..wiki() };
    let alice_elsewhere = HumanFacts { groups: vec!["engineering".into()], ..alice() };
    for set in [&with_memo, &without_memo] {
        for _ in 0..3 {
            check(set, "as registered", call(wiki()), Outcome::Allow, &["allow"]);
            check(set, "suspended", call_by(suspended.clone(), wiki()), Outcome::Deny, &["suspended"]);
            check(set, "reclassified", call(secret_wiki.clone()), Outcome::Deny, &["secret"]);
            let moved = CallRequest { root: alice_elsewhere.clone(), ..call(wiki()) };
            check(set, "moved", moved, Outcome::Deny, &["finance-only"]);
            check(set, "at night", CallRequest { hour: 3, ..call(wiki()) }, Outcome::Deny, &["night"]);
            let drifting = CallRequest { signals: vec!["drift".into()], risk_score: 40, ..call(wiki()) };
            check(set, "drifting", drifting, Outcome::Deny, &["drift"]);
            let payroll = CallRequest { resource_uri: Some("wiki://hr/payroll".into()), ..call(wiki()) };
            check(set, "payroll", payroll, Outcome::Deny, &["payroll"]);
        }
    }
}

#[test]
fn a_remembered_decision_is_the_one_cedar_gives() {
    let set = ValidatedPolicySet::default_set().unwrap();
    let requests = [call(wiki()), CallRequest { hour: 22, weekday: 7, ..call(wiki()) }];
    for request in &requests {
        let evaluated = set.evaluate_call(request);
        assert_eq!(set.decide_call(request), evaluated, "first decision");
        assert_eq!(set.decide_call(request), evaluated, "remembered decision");
    }
}
