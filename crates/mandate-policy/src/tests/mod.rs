//! Tests: fixtures and the one `check(set, name, request, outcome, matched)` helper every decision
//! test goes through. Here, unlike in production, each request's entities and context are also
//! checked against the schema (see `Engine::request_schema`), and `check` fails on any error, so the
//! tables below also prove that every kind of request fits the schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::*;

mod cases;
mod defaults;
mod semantics;
mod sets;

/// The action scope of a `call` policy, for custom sets.
const CALL: &str = "action == Mandate::Action::\"call\"";

// ---- fixtures ----------------------------------------------------------------------------------

fn human(id: &str, groups: &[&str], roles: &[&str]) -> HumanFacts {
    HumanFacts {
        id: id.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        sandbox: false,
    }
}

/// Alice is in finance and owns `finance-close`.
fn alice() -> HumanFacts {
    human("alice@example.org", &["finance"], &[])
}
/// Bob is in sales and has no role.
fn bob() -> HumanFacts {
    human("bob@example.org", &["sales"], &[])
}
/// Hana is in HR.
fn hana() -> HumanFacts {
    human("hana@example.org", &["hr"], &[])
}
/// Sam is in security.
fn sam() -> HumanFacts {
    human("sam@example.org", &["security"], &[])
}
/// Olga approves held calls.
fn olga() -> HumanFacts {
    human("olga@example.org", &["ops"], &["approver"])
}

fn agent(id: &str, class: &str, environment: &str) -> AgentFacts {
    AgentFacts {
        id: id.to_owned(),
        class: class.to_owned(),
        environment: environment.to_owned(),
        owner: "alice@example.org".to_owned(),
        state: "active".to_owned(),
    }
}

fn finance_close() -> AgentFacts {
    agent("finance-close", "enterprise", "production")
}

fn tool(name: &str, environment: &str, data_class: &str, risk: &str) -> ToolFacts {
    ToolFacts {
        name: name.to_owned(),
        server: name.split('/').next().unwrap().to_owned(),
        server_environment: environment.to_owned(),
        data_class: data_class.to_owned(),
        risk: risk.to_owned(),
    }
}

fn wiki() -> ToolFacts {
    tool("wiki/search", "production", "internal", "read")
}
fn ledger() -> ToolFacts {
    tool("erp/read_ledger", "production", "financial", "read")
}
fn journal() -> ToolFacts {
    tool("erp/post_journal", "production", "financial", "write")
}
fn employees() -> ToolFacts {
    tool("hr/read_employee", "production", "pii", "read")
}
fn vault() -> ToolFacts {
    tool("vault/read_secret", "production", "secret", "read")
}

fn grant(human: HumanFacts, tool: ToolFacts, data_classes: &[&str]) -> Request {
    Request::Grant(GrantRequest {
        human,
        agent: finance_close(),
        tool,
        category: "finance.close".to_owned(),
        purpose: "Prepare the October close".to_owned(),
        data_classes: data_classes.iter().map(|c| (*c).to_owned()).collect(),
        actions: vec!["read".to_owned()],
    })
}

/// A weekday call at 10:00 UTC by `agent`, granted directly by Alice, reading `tool`.
fn call_by(agent: AgentFacts, tool: ToolFacts) -> CallRequest {
    CallRequest {
        agent,
        chain: Vec::new(),
        root: alice(),
        tool,
        category: "finance.close".to_owned(),
        purpose: "Prepare the October close".to_owned(),
        depth: 0,
        action: "read".to_owned(),
        resource_uri: None,
        hour: 10,
        weekday: 2,
        risk_score: 0,
        signals: Vec::new(),
        binding: "agent_key".to_owned(),
    }
}

fn call(tool: ToolFacts) -> CallRequest {
    call_by(finance_close(), tool)
}

/// `approver` answers the held call of `finance-close` (owned by Alice) started by `root`.
fn approve(approver: HumanFacts, root: HumanFacts, tool: ToolFacts, action: &str) -> Request {
    Request::Approve(ApproveRequest {
        approver,
        agent: finance_close(),
        root,
        tool,
        action: action.to_owned(),
        resource_uri: Some("erp://ledger/2026-10/ap".to_owned()),
    })
}

enum Request {
    Grant(GrantRequest),
    Call(CallRequest),
    Approve(ApproveRequest),
}

impl From<CallRequest> for Request {
    fn from(call: CallRequest) -> Self {
        Self::Call(call)
    }
}

fn default_set() -> ValidatedPolicySet {
    match ValidatedPolicySet::default_set() {
        Ok(set) => set,
        Err(e) => panic!("{e}"),
    }
}

fn decide(set: &ValidatedPolicySet, request: &Request) -> PolicyDecision {
    match request {
        Request::Grant(r) => set.decide_grant(r),
        Request::Call(r) => set.decide_call(r),
        Request::Approve(r) => set.decide_approve(r),
    }
}

/// The one assertion of decision tests: the outcome and exactly the determining policies, in order.
#[track_caller]
fn check(set: &ValidatedPolicySet, name: &str, request: impl Into<Request>, outcome: Outcome, matched: &[&str]) {
    let decision = decide(set, &request.into());
    assert_eq!(
        (decision.outcome, decision.matched.iter().map(String::as_str).collect::<Vec<_>>()),
        (outcome, matched.to_vec()),
        "{name}: {decision:?}"
    );
    // Errors include requests that do not fit the schema, which is checked in this crate's tests.
    assert!(decision.errors.is_empty(), "{name}: {decision:?}");
}

#[track_caller]
fn refused(text: &str) -> Vec<Problem> {
    match ValidatedPolicySet::parse(text) {
        Err(PolicyError::Invalid(problems)) => problems,
        other => panic!("expected the set to be refused, got {other:?}"),
    }
}
