//! Grants, delegations, scopes and claims: every check with a case that passes and one that tries to
//! get past it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::agent::{register, AgentSpec};
use crate::jwk::Ed25519PublicJwk;
use time::macros::datetime;

const NOW: i64 = 1_793_000_000;

fn agent(id: &str, boundary: Value, seed: u8) -> Agent {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let spec: AgentSpec = serde_json::from_value(json!({
        "id": id, "name": id, "owner": "user:alice@example.org", "purpose": "testing", "class": "enterprise",
        "environment": "production", "boundary": boundary,
        "public_key_jwk": Ed25519PublicJwk::from_verifying_key(key.verifying_key()).to_json()
    }))
    .unwrap();
    register(spec, datetime!(2026-11-01 09:00 UTC)).unwrap()
}

fn finance() -> Agent {
    agent(
        "finance-close",
        json!({"tools": ["erp/*", "fx/convert"], "data_classes": ["internal", "financial"], "may_delegate_to": ["reconciler"], "max_depth": 2}),
        1,
    )
}

fn reconciler() -> Agent {
    agent(
        "reconciler",
        json!({"tools": ["erp/read_ledger", "erp/match_entries"], "data_classes": ["financial"], "may_delegate_to": ["finance-close", "auditor-bot"], "max_depth": 1}),
        2,
    )
}

fn scope(value: Value) -> Scope {
    serde_json::from_value(value).unwrap()
}

fn spec_scope() -> Scope {
    scope(
        json!([{"type": "mcp_tool", "tools": ["erp/read_ledger", "fx/convert"], "resources": ["erp://ledger/2026-10/*"], "data_classes": ["financial"], "actions": ["read"]}]),
    )
}

const LIMITS: MandateLimits =
    MandateLimits { default_ttl_secs: 900, max_ttl_secs: 3600, default_max_calls: 100, max_calls_ceiling: 10_000 };

fn grant_request(overrides: Value) -> GrantRequest {
    let mut base = json!({"agent": "finance-close", "purpose": "Prepare the October 2026 close report", "category": "finance.close",
        "authorization_details": spec_scope(), "ttl_seconds": 900, "max_calls": 200, "max_depth": 1});
    for (k, v) in overrides.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn root() -> MandateRecord {
    let alice = Principal::parse("user:alice@example.org").unwrap();
    plan_grant(&grant_request(json!({})), &finance(), &alice, &LIMITS, NewId { id: "m-root".into(), now: NOW }).unwrap()
}

#[test]
fn the_spec_grant_is_planned() {
    let m = root();
    assert_eq!((m.depth, m.max_depth, m.max_calls, m.expires_at), (1, 1, 200, NOW + 900));
    assert_eq!(m.chain_id, "m-root");
    assert_eq!(m.chain_agents, vec![AgentId::parse("finance-close").unwrap()]);
    assert_eq!(m.key_thumbprint, finance().public_key_jwk.thumbprint());
}

#[test]
fn grant_refusals() {
    let alice = Principal::parse("user:alice@example.org").unwrap();
    let check = |request: GrantRequest, agent: &Agent, code: &str| {
        let err = plan_grant(&request, agent, &alice, &LIMITS, NewId { id: "m".into(), now: NOW }).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    };
    let mut suspended = finance();
    suspended.state = AgentState::Suspended;
    check(grant_request(json!({})), &suspended, "grant.agent_not_active");
    check(grant_request(json!({"ttl_seconds": 3601})), &finance(), "grant.invalid_ttl");
    check(grant_request(json!({"ttl_seconds": 0})), &finance(), "grant.invalid_ttl");
    check(grant_request(json!({"max_calls": 0})), &finance(), "grant.invalid_budget");
    check(grant_request(json!({"max_calls": 10_001})), &finance(), "grant.invalid_budget");
    check(grant_request(json!({"max_depth": 3})), &finance(), "grant.depth_exceeds_boundary");
    check(grant_request(json!({"category": "Finance Close"})), &finance(), "grant.invalid_intent");
    check(grant_request(json!({"purpose": ""})), &finance(), "grant.invalid_intent");
    check(grant_request(json!({"authorization_details": []})), &finance(), "grant.invalid_scope");
    check(
        grant_request(
            json!({"authorization_details": [{"type": "payment", "tools": ["erp/x"], "data_classes": ["financial"], "actions": ["read"]}]}),
        ),
        &finance(),
        "grant.invalid_scope",
    );
    check(
        grant_request(
            json!({"authorization_details": [{"type": "mcp_tool", "tools": ["erp/x"], "data_classes": [], "actions": ["read"]}]}),
        ),
        &finance(),
        "grant.invalid_scope",
    );
    check(
        grant_request(
            json!({"authorization_details": [{"type": "mcp_tool", "tools": ["crm/read"], "data_classes": ["financial"], "actions": ["read"]}]}),
        ),
        &finance(),
        "grant.outside_boundary",
    );
    check(
        grant_request(
            json!({"authorization_details": [{"type": "mcp_tool", "tools": ["*/*"], "data_classes": ["financial"], "actions": ["read"]}]}),
        ),
        &finance(),
        "grant.outside_boundary",
    );
    check(
        grant_request(
            json!({"authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["pii"], "actions": ["read"]}]}),
        ),
        &finance(),
        "grant.outside_boundary",
    );
}

fn delegate(
    parent: &MandateRecord,
    used: u64,
    delegator: &Agent,
    child: &Agent,
    request: &DelegationRequest,
) -> Result<MandateRecord, DelegationError> {
    plan_delegation(parent, used, delegator, child, request, NewId { id: "m-child".into(), now: NOW + 60 })
}

fn narrow() -> DelegationRequest {
    DelegationRequest {
        scope: scope(
            json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/ap"], "data_classes": ["financial"], "actions": ["read"]}]),
        ),
        ttl_seconds: None,
        max_calls: None,
        max_depth: None,
    }
}

#[test]
fn a_narrowing_delegation_carries_the_chain() {
    let child = delegate(&root(), 50, &finance(), &reconciler(), &narrow()).unwrap();
    assert_eq!((child.depth, child.max_depth, child.max_calls, child.expires_at), (2, 0, 150, NOW + 900));
    assert_eq!(child.parent_id.as_deref(), Some("m-root"));
    assert_eq!(child.chain_id, "m-root");
    assert_eq!(child.root.as_str(), "user:alice@example.org");
    assert_eq!(child.intent, root().intent);
    let agents: Vec<&str> = child.chain_agents.iter().map(AgentId::as_str).collect();
    assert_eq!(agents, vec!["finance-close", "reconciler"]);
    assert_eq!(child.lineage, vec!["m-root".to_owned()]);
    assert!(root().lineage.is_empty());
}

#[test]
fn delegations_that_try_to_widen_or_escape_are_refused() {
    let parent = root();
    let check = |request: DelegationRequest, used: u64, delegator: &Agent, child: &Agent, code: &str| {
        let err = delegate(&parent, used, delegator, child, &request).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
    };
    let widen = |s: Value| DelegationRequest { scope: scope(s), ..narrow() };
    // Widening tools, resources, data classes, actions.
    check(
        widen(
            json!([{"type": "mcp_tool", "tools": ["erp/*"], "resources": ["erp://ledger/2026-10/ap"], "data_classes": ["financial"], "actions": ["read"]}]),
        ),
        0,
        &finance(),
        &reconciler(),
        "delegation.scope_widened",
    );
    check(
        widen(
            json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/*"], "data_classes": ["financial"], "actions": ["read"]}]),
        ),
        0,
        &finance(),
        &reconciler(),
        "delegation.scope_widened",
    );
    check(
        widen(
            json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["financial"], "actions": ["read"]}]),
        ),
        0,
        &finance(),
        &reconciler(),
        "delegation.scope_widened",
    );
    check(
        widen(
            json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/ap"], "data_classes": ["financial", "internal"], "actions": ["read"]}]),
        ),
        0,
        &finance(),
        &reconciler(),
        "delegation.scope_widened",
    );
    check(
        widen(
            json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/ap"], "data_classes": ["financial"], "actions": ["read", "write"]}]),
        ),
        0,
        &finance(),
        &reconciler(),
        "delegation.scope_widened",
    );
    // Inside the parent but outside the sub-agent's boundary.
    check(
        widen(
            json!([{"type": "mcp_tool", "tools": ["fx/convert"], "data_classes": ["financial"], "actions": ["read"], "resources": ["erp://ledger/2026-10/x"]}]),
        ),
        0,
        &finance(),
        &reconciler(),
        "delegation.outside_boundary",
    );
    // TTL, budget, depth.
    check(
        DelegationRequest { ttl_seconds: Some(841), ..narrow() },
        0,
        &finance(),
        &reconciler(),
        "delegation.ttl_exceeds_parent",
    );
    check(
        DelegationRequest { max_calls: Some(151), ..narrow() },
        50,
        &finance(),
        &reconciler(),
        "delegation.budget_exceeds_parent",
    );
    check(narrow(), 200, &finance(), &reconciler(), "delegation.budget_spent");
    check(
        DelegationRequest { max_depth: Some(1), ..narrow() },
        0,
        &finance(),
        &reconciler(),
        "delegation.depth_too_large",
    );
    // Who may receive it.
    let stranger = agent("stranger", json!({"tools": ["erp/*"], "data_classes": ["financial"]}), 3);
    check(narrow(), 0, &finance(), &stranger, "delegation.not_allowed_delegate");
    let mut suspended = reconciler();
    suspended.state = AgentState::Suspended;
    check(narrow(), 0, &finance(), &suspended, "delegation.agent_not_active");
    let mut retired = reconciler();
    retired.state = AgentState::Retired;
    check(narrow(), 0, &finance(), &retired, "delegation.agent_not_active");
    let mut delegator = finance();
    delegator.state = AgentState::Suspended;
    check(narrow(), 0, &delegator, &reconciler(), "delegation.delegator_not_active");
}

#[test]
fn depth_is_exhausted_and_chains_cannot_loop() {
    let child = delegate(&root(), 0, &finance(), &reconciler(), &narrow()).unwrap();
    assert_eq!(child.max_depth, 0);
    let err = plan_delegation(&child, 0, &reconciler(), &finance(), &narrow(), NewId { id: "m3".into(), now: NOW })
        .unwrap_err();
    assert_eq!(err.code(), "delegation.depth_exhausted");
    // With depth to spare, handing the mandate back up the chain is a loop.
    let mut deep = child.clone();
    deep.max_depth = 1;
    let err = plan_delegation(&deep, 0, &reconciler(), &finance(), &narrow(), NewId { id: "m3".into(), now: NOW })
        .unwrap_err();
    assert_eq!(err.code(), "delegation.cycle");
}

#[test]
fn scope_matching() {
    let s = spec_scope();
    let tool = ToolName::parse("erp/read_ledger").unwrap();
    let fx = ToolName::parse("fx/convert").unwrap();
    let financial = DataClass::parse("financial").unwrap();
    let pii = DataClass::parse("pii").unwrap();
    let in_range = ResourceUri::parse("erp://ledger/2026-10/ap").unwrap();
    let out_of_range = ResourceUri::parse("erp://ledger/2026-11/ap").unwrap();
    let call = |tool, resource, data_class, action| CallTarget { tool, resource, data_class, action };
    assert!(s.allows(&call(&tool, Some(&in_range), &financial, Action::Read)));
    assert!(!s.allows(&call(&tool, Some(&out_of_range), &financial, Action::Read)));
    assert!(!s.allows(&call(&tool, None, &financial, Action::Read)), "a constrained entry needs a resource");
    assert!(!s.allows(&call(&tool, Some(&in_range), &pii, Action::Read)));
    assert!(!s.allows(&call(&tool, Some(&in_range), &financial, Action::Write)));
    assert!(s.allows(&call(&fx, Some(&in_range), &financial, Action::Read)));
    let post = ToolName::parse("erp/post_journal").unwrap();
    assert!(!s.allows(&call(&post, Some(&in_range), &financial, Action::Read)));
    let unconstrained = scope(
        json!([{"type": "mcp_tool", "tools": ["fx/convert"], "data_classes": ["financial"], "actions": ["read"]}]),
    );
    assert!(unconstrained.allows(&call(&fx, None, &financial, Action::Read)));
    // Subset and match agree: whatever a narrower scope allows, the wider allows.
    assert!(narrow().scope.is_within(&s));
    assert!(!s.is_within(&narrow().scope));
    assert!(s.is_within(&s));
}

#[test]
fn claims_follow_the_spec() {
    let domain = TrustDomain::parse("example.org").unwrap();
    let ctx =
        TokenContext { issuer: "http://127.0.0.1:8080", audience: "http://127.0.0.1:8080", trust_domain: &domain };
    let root = root();
    let c = root.claims(&ctx);
    assert_eq!(c["sub"], "spiffe://example.org/agent/finance-close");
    assert_eq!(c["jti"], "m-root");
    assert_eq!((c["iat"].as_i64(), c["nbf"].as_i64(), c["exp"].as_i64()), (Some(NOW), Some(NOW), Some(NOW + 900)));
    assert_eq!(c["cnf"]["jkt"], finance().public_key_jwk.thumbprint());
    assert_eq!(c["authorization_details"][0]["type"], "mcp_tool");
    assert_eq!(c["mandate"]["root"], "user:alice@example.org");
    assert_eq!(
        c["mandate"]["intent"],
        json!({"purpose": "Prepare the October 2026 close report", "category": "finance.close"})
    );
    assert_eq!(c["mandate"]["budget"], json!({"max_calls": 200}));
    assert_eq!(c["mandate"]["parent_id"], Value::Null);
    assert!(c.get("act").is_none(), "a human's grant has no delegating actor");
    let child = delegate(&root, 0, &finance(), &reconciler(), &narrow()).unwrap();
    let mut grandchild = child.clone();
    grandchild.chain_agents.push(AgentId::parse("auditor-bot").unwrap());
    grandchild.agent = AgentId::parse("auditor-bot").unwrap();
    let c = grandchild.claims(&ctx);
    // Newest actor outermost (RFC 8693 section 4.1).
    assert_eq!(
        c["act"],
        json!({"sub": "spiffe://example.org/agent/reconciler", "act": {"sub": "spiffe://example.org/agent/finance-close"}})
    );
}
