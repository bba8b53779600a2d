//! `POST /v1/authorize` through the real server: each step with a call that passes and one that tries
//! to get past it, approvals, budgets under concurrency, and policy edits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_test::{agent_jwk, agent_spec, proof, Client, TestServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};

const ALICE: &str = "user:alice@example.org";
const AUTHORIZE: &str = "https://mandate.test/v1/authorize";

static JTI: AtomicU32 = AtomicU32::new(0);
fn jti() -> String {
    format!("call-{}", JTI.fetch_add(1, Ordering::Relaxed))
}

struct Org {
    _dir: tempfile::TempDir,
    server: TestServer,
    alice: Client,
    carol: Client,
}

fn org() -> Org {
    let (dir, server) = TestServer::fresh();
    let alice = server.human("alice@example.org", json!({"groups": ["finance"]}));
    let carol = server.human("carol@example.org", json!({"groups": ["security"], "roles": ["approver"]}));
    server.human("lab@example.org", json!({"sandbox": true}));
    let admin = server.admin();
    let register = |spec: Value| {
        let (status, body) = admin.post("/v1/agents", &spec);
        assert_eq!(status, 201, "{body}");
    };
    register(agent_spec(
        "finance-close",
        ALICE,
        json!({"boundary": {"tools": ["erp/*", "fx/convert", "mail/send"], "data_classes": ["internal", "financial", "pii"], "may_delegate_to": ["reconciler"], "max_depth": 2}}),
    ));
    register(agent_spec(
        "reconciler",
        ALICE,
        json!({"public_key_jwk": agent_jwk(2), "boundary": {"tools": ["erp/read_ledger", "erp/match_entries"], "data_classes": ["financial"]}}),
    ));
    register(agent_spec(
        "lab-bot",
        "user:lab@example.org",
        json!({"public_key_jwk": agent_jwk(5), "class": "coding", "environment": "sandbox", "boundary": {"tools": ["everything/*"], "data_classes": ["public"]}}),
    ));
    for (tool, class, risk, env) in [
        ("erp/read_ledger", "financial", "read", "production"),
        ("erp/post_journal", "financial", "write", "production"),
        ("erp/read_employees", "pii", "read", "production"),
        ("fx/convert", "internal", "read", "production"),
        ("mail/send", "internal", "egress", "production"),
        ("everything/echo", "public", "read", "production"),
    ] {
        let (status, body) = admin
            .put(&format!("/v1/tools/{tool}"), &json!({"data_class": class, "risk": risk, "server_environment": env}));
        assert_eq!(status, 200, "{body}");
    }
    Org { _dir: dir, server, alice, carol }
}

trait PutText {
    fn put_text(&self, path: &str, body: &str) -> (u16, Value);
}

impl PutText for Client {
    /// `PUT` of a body that is not JSON (a policy set's Cedar text).
    fn put_text(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self.raw("PUT", path, Some(body));
        (r.status(), r.into_json().unwrap_or(Value::Null))
    }
}

fn grant(client: &Client, agent: &str, details: Value, extra: Value) -> Value {
    let mut body = json!({"agent": agent, "purpose": "Prepare the October 2026 close report", "category": "finance.close",
        "authorization_details": details, "max_calls": 50});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, granted) = client.post("/v1/mandates", &body);
    assert_eq!(status, 201, "{granted}");
    granted
}

fn close_mandate(org: &Org, extra: Value) -> Value {
    grant(
        &org.alice,
        "finance-close",
        json!([{"type": "mcp_tool", "tools": ["erp/read_ledger", "erp/read_employees", "fx/convert"], "resources": ["erp://ledger/2026-10/*"], "data_classes": ["financial", "internal"], "actions": ["read"]},
               {"type": "mcp_tool", "tools": ["erp/post_journal", "mail/send"], "data_classes": ["financial", "internal"], "actions": ["write", "egress"]}]),
        extra,
    )
}

fn call(org: &Org, token: &str, seed: u8, tool: &str, resource: Option<&str>, args: Value, extra: Value) -> Value {
    let t = org.server.clock.now_secs();
    let mut body = json!({"token": token, "proof": proof(seed, "POST", AUTHORIZE, token, t, &jti()), "tool": tool, "arguments": args, "resource": resource});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, decision) = org.server.client(None).post("/v1/authorize", &body);
    assert_eq!(status, 200, "{decision}");
    decision
}

fn codes(decision: &Value) -> Vec<(String, Option<i64>)> {
    decision["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["code"].as_str().unwrap().to_owned(), r["hop"].as_i64()))
        .collect()
}

fn one(code: &str, hop: i64) -> Vec<(String, Option<i64>)> {
    vec![(code.to_owned(), Some(hop))]
}

#[test]
fn an_allowed_call_is_recorded_before_it_is_returned() {
    let org = org();
    let m = close_mandate(&org, json!({}));
    let token = m["token"].as_str().unwrap();
    let d = call(
        &org,
        token,
        1,
        "erp/read_ledger",
        Some("erp://ledger/2026-10/ap"),
        json!({"period": "2026-10"}),
        json!({}),
    );
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(codes(&d), one("decision.allowed", 1));
    assert_eq!(d["policies"], json!(["call.within-mandate"]));
    assert_eq!(d["approval_id"], Value::Null);
    let seq = d["ledger_seq"].as_i64().unwrap();
    let (_, events) = org.server.admin().get(&format!("/v1/audit?kind=decision&after={}", seq - 1));
    let e = &events["events"][0];
    assert_eq!(
        (e["seq"].as_i64(), e["decision"].as_str(), e["tool"].as_str()),
        (Some(seq), Some("allow"), Some("erp/read_ledger"))
    );
    assert_eq!(e["actor"], "spiffe://example.org/agent/finance-close");
    let detail: Value = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["root"], ALICE);
    assert_eq!(detail["arguments"]["bytes"], r#"{"period":"2026-10"}"#.len());
    assert!(!e["detail"].as_str().unwrap().contains("2026-10\""), "argument values are not stored");
    // The same arguments in another order hash the same.
    let d2 = call(&org, token, 1, "fx/convert", Some("erp://ledger/2026-10/x"), json!({"b": 1, "a": 2}), json!({}));
    assert_eq!(d2["decision"], "allow", "{d2}");
}

#[test]
fn scope_is_checked_tool_resource_data_class_and_action() {
    let org = org();
    let m = grant(
        &org.alice,
        "finance-close",
        json!([{"type": "mcp_tool", "tools": ["erp/read_ledger", "erp/post_journal", "erp/read_employees"], "resources": ["erp://ledger/2026-10/*"], "data_classes": ["financial"], "actions": ["read"]}]),
        json!({}),
    );
    let token = m["token"].as_str().unwrap();
    let check = |tool: &str, resource: Option<&str>, expected: &str| {
        let d = call(&org, token, 1, tool, resource, json!({}), json!({}));
        assert_eq!((d["decision"].as_str(), codes(&d)), (Some("deny"), one(expected, 1)), "{d}");
    };
    check("fx/convert", Some("erp://ledger/2026-10/ap"), "scope.tool_not_in_mandate");
    check("erp/read_ledger", Some("erp://ledger/2026-11/ap"), "scope.resource_not_in_mandate");
    check("erp/read_ledger", None, "scope.resource_not_in_mandate");
    check("erp/read_employees", Some("erp://ledger/2026-10/ap"), "scope.data_class_not_in_mandate");
    check("erp/post_journal", Some("erp://ledger/2026-10/ap"), "scope.action_not_in_mandate");
    // Normalisation tricks do not get a resource into scope.
    let d = call(&org, token, 1, "erp/read_ledger", Some("erp://ledger/2026-10/../2026-11/ap"), json!({}), json!({}));
    assert_eq!((d["decision"].as_str(), codes(&d)[0].0.as_str()), (Some("deny"), "request.invalid_resource"), "{d}");
    let d = call(&org, token, 1, "not a tool", None, json!({}), json!({}));
    assert_eq!(codes(&d)[0].0, "request.invalid_tool");
    // An unclassified tool is treated as secret: outside any mandate without `secret`.
    let d = call(&org, token, 1, "erp/unknown_tool", None, json!({}), json!({}));
    assert_eq!(d["decision"], "deny");
}

#[test]
fn proofs_are_required_fresh_and_unreplayed() {
    let org = org();
    let m = close_mandate(&org, json!({}));
    let token = m["token"].as_str().unwrap();
    let t = org.server.clock.now_secs();
    let body = |proof: String| json!({"token": token, "proof": proof, "tool": "erp/read_ledger", "resource": "erp://ledger/2026-10/ap"});
    let anon = org.server.client(None);
    let decide = |b: Value| anon.post("/v1/authorize", &b).1;
    assert_eq!(codes(&decide(body(String::new())))[0].0, "proof.missing");
    assert_eq!(codes(&decide(body(proof(2, "POST", AUTHORIZE, token, t, &jti()))))[0].0, "proof.key_mismatch");
    assert_eq!(
        codes(&decide(body(proof(1, "POST", "https://mandate.test/oauth/token", token, t, &jti()))))[0].0,
        "proof.htu_mismatch"
    );
    let once = proof(1, "POST", AUTHORIZE, token, t, "once");
    assert_eq!(decide(body(once.clone()))["decision"], "allow");
    assert_eq!(codes(&decide(body(once)))[0].0, "proof.replayed");
    // A malformed request is a 400 problem, not a decision.
    let (status, problem) = anon.post("/v1/authorize", &json!({"proof": "x", "tool": "erp/read_ledger"}));
    assert_eq!((status, problem["code"].as_str()), (400, Some("request.invalid_body")));
    // A garbage token is a deny with the token's reason; it names no mandate, so it is counted in the
    // next refusal summary rather than recorded on its own (see hardening.rs).
    let d = decide(json!({"token": "garbage", "proof": "x", "tool": "erp/read_ledger"}));
    assert_eq!((d["decision"].as_str(), codes(&d)[0].0.as_str()), (Some("deny"), "token.malformed"));
    assert!(d["ledger_seq"].is_null(), "{d}");
}

#[test]
fn the_chain_is_checked_from_stored_records_at_every_hop() {
    let org = org();
    let root = close_mandate(&org, json!({"max_depth": 1}));
    let root_token = root["token"].as_str().unwrap();
    let t = org.server.clock.now_secs();
    let endpoint = "https://mandate.test/oauth/token";
    let (status, child) = mandate_test::post_form(
        &format!("{}/oauth/token", org.server.url),
        Some(&proof(1, "POST", endpoint, root_token, t, &jti())),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", root_token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("actor_token", &mandate_test::actor_token(2, "reconciler", endpoint, t, &jti())),
            ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("authorization_details", &json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/ap"], "data_classes": ["financial"], "actions": ["read"]}]).to_string()),
        ],
    );
    assert_eq!(status, 200, "{child}");
    let child_token = child["access_token"].as_str().unwrap();
    let d = call(&org, child_token, 2, "erp/read_ledger", Some("erp://ledger/2026-10/ap"), json!({}), json!({}));
    assert_eq!(d["decision"], "allow", "{d}");
    // Narrowing the reconciler's boundary after the fact is seen at once (hop 2).
    let (status, _) = org.server.admin().patch(
        "/v1/agents/reconciler",
        &json!({"boundary": {"tools": ["erp/match_entries"], "data_classes": ["financial"]}}),
    );
    assert_eq!(status, 200);
    let d = call(&org, child_token, 2, "erp/read_ledger", Some("erp://ledger/2026-10/ap"), json!({}), json!({}));
    assert_eq!(codes(&d), one("chain.outside_boundary", 2), "{d}");
    // A suspended agent in the middle of the chain: the whole chain below it is cut off.
    org.alice.post("/v1/agents/finance-close/suspend", &json!({}));
    let d = call(&org, child_token, 2, "erp/read_ledger", Some("erp://ledger/2026-10/ap"), json!({}), json!({}));
    assert_eq!((d["decision"].as_str(), codes(&d)[0].0.as_str()), (Some("deny"), "mandate.revoked"), "{d}");
}

#[test]
fn a_sandbox_agent_never_reaches_a_production_tool() {
    let org = org();
    let lab = org.server.human("lab2@example.org", json!({}));
    // lab-bot is owned by lab@; lab2 grants it (public data: anyone may grant).
    let m = grant(
        &lab,
        "lab-bot",
        json!([{"type": "mcp_tool", "tools": ["everything/echo"], "data_classes": ["public"], "actions": ["read"]}]),
        json!({"category": "engineering.experiment"}),
    );
    let d = call(&org, m["token"].as_str().unwrap(), 5, "everything/echo", None, json!({}), json!({}));
    assert_eq!((d["decision"].as_str(), codes(&d)), (Some("deny"), one("chain.environment_not_allowed", 1)), "{d}");
    // Moved to a sandbox server, the same call is allowed.
    org.server.admin().put(
        "/v1/tools/everything/echo",
        &json!({"data_class": "public", "risk": "read", "server_environment": "sandbox"}),
    );
    let d = call(&org, m["token"].as_str().unwrap(), 5, "everything/echo", None, json!({}), json!({}));
    assert_eq!(d["decision"], "allow", "{d}");
}

#[test]
fn a_budget_raced_by_32_concurrent_calls_allows_exactly_max_calls_and_survives_restart() {
    let org = org();
    let m = close_mandate(&org, json!({"max_calls": 10}));
    let token = m["token"].as_str().unwrap().to_owned();
    let t = org.server.clock.now_secs();
    let url = format!("{}/v1/authorize", org.server.url);
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let (token, url) = (token.clone(), url.clone());
            std::thread::spawn(move || {
                let body = json!({"token": token, "proof": proof(1, "POST", AUTHORIZE, &token, t, &format!("race-{i}")), "tool": "erp/read_ledger", "resource": "erp://ledger/2026-10/ap"});
                let d: Value = ureq::post(&url).send_json(body).unwrap().into_json().unwrap();
                d
            })
        })
        .collect();
    let decisions: Vec<Value> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let allowed = decisions.iter().filter(|d| d["decision"] == "allow").count();
    assert_eq!(allowed, 10, "{decisions:?}");
    assert!(decisions.iter().filter(|d| d["decision"] == "deny").all(|d| codes(d) == one("budget.exhausted", 1)));
    let (_, shown) = org.alice.get(&format!("/v1/mandates/{}", m["mandate_id"].as_str().unwrap()));
    assert_eq!(shown["used_calls"], 10);
    // Across a restart the spent budget is rebuilt from the ledger.
    let server = org.server.restart();
    let org = Org { server, ..org };
    let d = call(&org, &token, 1, "erp/read_ledger", Some("erp://ledger/2026-10/ap"), json!({}), json!({}));
    assert_eq!(codes(&d), one("budget.exhausted", 1), "{d}");
}

#[test]
fn a_forbid_overrides_a_permit_and_a_broken_policy_never_replaces_a_good_one() {
    let org = org();
    let admin = org.server.admin();
    let m = close_mandate(&org, json!({}));
    let token = m["token"].as_str().unwrap();
    let (_, before) = admin.get("/v1/policies");
    let extra = format!("{}\n@id(\"no-fx-in-close\")\nforbid (principal, action == Mandate::Action::\"call\", resource) when {{ resource.name == \"fx/convert\" && context.category == \"finance.close\" }};\n", before["text"].as_str().unwrap());
    let (status, after) = admin.put_text("/v1/policies", &extra);
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["version"].as_i64(), Some(before["version"].as_i64().unwrap() + 1));
    let d = call(&org, token, 1, "fx/convert", Some("erp://ledger/2026-10/ap"), json!({}), json!({}));
    assert_eq!((d["decision"].as_str(), codes(&d)), (Some("deny"), one("policy.forbid", 1)), "{d}");
    assert_eq!(d["policies"], json!(["no-fx-in-close"]));
    // A set that breaks the schema is refused; the one above keeps deciding.
    let broken = format!("{extra}\n@id(\"broken\")\npermit (principal, action == Mandate::Action::\"call\", resource) when {{ context.no_such_field == 1 }};\n");
    let (status, problem) = admin.put_text("/v1/policies", &broken);
    assert_eq!((status, problem["code"].as_str()), (400, Some("policy.invalid")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("no_such_field"), "{problem}");
    let (_, current) = admin.get("/v1/policies");
    assert_eq!(current["version"], after["version"]);
    let d = call(&org, token, 1, "fx/convert", Some("erp://ledger/2026-10/ap"), json!({}), json!({}));
    assert_eq!(d["policies"], json!(["no-fx-in-close"]));
    let (_, valid) = admin.post("/v1/policies/validate", &json!("not cedar"));
    assert_eq!(valid["valid"], false);
    let (_, events) = admin.get("/v1/audit?kind=policy.refused");
    assert_eq!(events["events"].as_array().unwrap().len(), 1);
    assert_eq!(org.alice.put_text("/v1/policies", &extra).0, 403);
}

#[test]
fn a_held_call_is_approved_used_once_and_never_reused_or_moved() {
    let org = org();
    let m = close_mandate(&org, json!({}));
    let token = m["token"].as_str().unwrap();
    let args = json!({"account": "6100", "amount": 1200, "memo": "October accrual"});
    let d = call(&org, token, 1, "erp/post_journal", None, args.clone(), json!({}));
    assert_eq!(d["decision"], "approval_required", "{d}");
    assert_eq!(codes(&d), one("policy.hold", 1));
    assert_eq!(d["policies"], json!(["call.within-mandate", "call.hold-financial-write"]));
    let approval = d["approval_id"].as_str().unwrap().to_owned();
    // Retrying before anyone answered is still held, with the same approval.
    let d = call(&org, token, 1, "erp/post_journal", None, args.clone(), json!({"approval_id": approval}));
    assert_eq!((d["decision"].as_str(), codes(&d)), (Some("approval_required"), one("approval.pending", 1)));
    let (_, queue) = org.carol.get("/v1/approvals");
    assert_eq!(queue["approvals"][0]["id"], approval.as_str());
    // The agent cannot approve its own call: its mandate is no credential here (a JWT is taken for
    // a human's OIDC ID token, and this server trusts no IdP; tests/oidc.rs has the case with one).
    let agent = org.server.client(Some(token));
    let (status, problem) = agent.post(&format!("/v1/approvals/{approval}/approve"), &json!({}));
    assert_eq!((status, problem["code"].as_str()), (401, Some("auth.oidc_not_configured")));
    // Someone with neither the approver role nor ownership may not either.
    let bob = org.server.human("bob@example.org", json!({}));
    let (status, problem) = bob.post(&format!("/v1/approvals/{approval}/approve"), &json!({}));
    assert_eq!((status, problem["code"].as_str()), (403, Some("approval.not_permitted")), "{problem}");
    let (status, approved) = org.carol.post(&format!("/v1/approvals/{approval}/approve"), &json!({}));
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["decided_by"], "user:carol@example.org");
    // Used for a different call: refused.
    let other = call(
        &org,
        token,
        1,
        "erp/post_journal",
        None,
        json!({"to": "attacker@example.net"}),
        json!({"approval_id": approval}),
    );
    assert_eq!(codes(&other), one("approval.mismatch", 1), "{other}");
    // Used for this call: allowed once.
    let d = call(&org, token, 1, "erp/post_journal", None, args.clone(), json!({"approval_id": approval}));
    assert_eq!((d["decision"].as_str(), codes(&d)), (Some("allow"), one("approval.granted", 1)), "{d}");
    let d = call(&org, token, 1, "erp/post_journal", None, args, json!({"approval_id": approval}));
    assert_eq!(codes(&d), one("approval.used", 1), "{d}");
    let (status, problem) = org.carol.post(&format!("/v1/approvals/{approval}/deny"), &json!({}));
    assert_eq!((status, problem["code"].as_str()), (409, Some("approval.not_pending")));
}

#[test]
fn financial_writes_need_an_approver_other_than_the_root_human() {
    let org = org();
    // Alice is the root human and owns the agent, so she could approve its calls in general...
    let m = close_mandate(&org, json!({}));
    let token = m["token"].as_str().unwrap();
    let d = call(&org, token, 1, "erp/post_journal", None, json!({"amount": 1200}), json!({}));
    assert_eq!(d["decision"], "approval_required", "{d}");
    assert_eq!(d["policies"], json!(["call.within-mandate", "call.hold-financial-write"]));
    let approval = d["approval_id"].as_str().unwrap();
    // ...but not a financial write she started.
    let (status, problem) = org.alice.post(&format!("/v1/approvals/{approval}/approve"), &json!({}));
    assert_eq!((status, problem["code"].as_str()), (403, Some("approval.not_permitted")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("approve.financial-write-not-root"), "{problem}");
    let (status, denied) = org.carol.post(&format!("/v1/approvals/{approval}/deny"), &json!({}));
    assert_eq!((status, denied["status"].as_str()), (200, Some("denied")));
    let d = call(&org, token, 1, "erp/post_journal", None, json!({"amount": 1200}), json!({"approval_id": approval}));
    assert_eq!(codes(&d), one("approval.denied", 1), "{d}");
}

#[test]
fn explain_shows_every_step() {
    let org = org();
    let m = close_mandate(&org, json!({}));
    let token = m["token"].as_str().unwrap();
    let t = org.server.clock.now_secs();
    let body = json!({"token": token, "proof": proof(1, "POST", AUTHORIZE, token, t, &jti()), "tool": "erp/read_ledger", "resource": "erp://ledger/2026-10/ap"});
    let (_, d) = org.server.client(None).post("/v1/authorize?explain=true", &body);
    let steps: Vec<(&str, &str)> = d["explain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("token", "pass"),
            ("proof", "pass"),
            ("revocation", "pass"),
            ("chain", "pass"),
            ("scope", "pass"),
            ("budget", "pass"),
            ("behaviour", "pass"),
            ("policy", "pass"),
            ("ledger", "pass")
        ]
    );
    let (_, plain) = org.server.client(None).post("/v1/authorize", &json!({"token": token, "proof": proof(1, "POST", AUTHORIZE, token, t, &jti()), "tool": "erp/read_ledger", "resource": "erp://ledger/2026-10/ap"}));
    assert!(plain.get("explain").is_none());
}

#[test]
fn a_decided_call_is_activity_so_a_working_agent_is_not_stale() {
    let org = org();
    org.server.clock.advance(time::Duration::days(35));
    let m = close_mandate(&org, json!({}));
    let d = call(
        &org,
        m["token"].as_str().unwrap(),
        1,
        "erp/read_ledger",
        Some("erp://ledger/2026-10/ap"),
        json!({}),
        json!({}),
    );
    assert_eq!(d["decision"], "allow");
    let (_, report) = org.server.admin().get("/v1/review");
    let stale: Vec<&str> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["reasons"].as_array().unwrap().iter().any(|r| r["code"] == "stale"))
        .map(|i| i["agent"].as_str().unwrap())
        .collect();
    assert!(!stale.contains(&"finance-close"), "{report}");
    assert!(stale.contains(&"reconciler"), "an agent that never acted is stale: {report}");
    let (_, agent) = org.server.admin().get("/v1/agents/finance-close");
    assert_eq!(agent["last_active_at"], "2026-12-06T09:00:00Z");
}

#[test]
fn an_expired_mandates_count_leaves_memory_but_still_counts_and_shows() {
    // The reconciler's mandate expires after a minute; the finance agent's lives an hour. Once the
    // child's count is dropped from memory, the parent still carries the child's calls, the views
    // still show them (read from the ledger), and a restart rebuilds the same numbers.
    let org = org();
    let root = close_mandate(&org, json!({"max_depth": 1, "max_calls": 5, "ttl_seconds": 3600}));
    let root_token = root["token"].as_str().unwrap().to_owned();
    let t = org.server.clock.now_secs();
    let endpoint = "https://mandate.test/oauth/token";
    let (status, child) = mandate_test::post_form(
        &format!("{}/oauth/token", org.server.url),
        Some(&proof(1, "POST", endpoint, &root_token, t, &jti())),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", &root_token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("actor_token", &mandate_test::actor_token(2, "reconciler", endpoint, t, &jti())),
            ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("authorization_details", &json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/ap"], "data_classes": ["financial"], "actions": ["read"]}]).to_string()),
            ("ttl_seconds", "60"),
        ],
    );
    assert_eq!(status, 200, "{child}");
    let child_token = child["access_token"].as_str().unwrap();
    let ledger = Some("erp://ledger/2026-10/ap");
    for _ in 0..2 {
        let d = call(&org, child_token, 2, "erp/read_ledger", ledger, json!({}), json!({}));
        assert_eq!(d["decision"], "allow", "{d}");
    }
    let d = call(&org, &root_token, 1, "erp/read_ledger", ledger, json!({}), json!({}));
    assert_eq!(d["decision"], "allow", "{d}");
    let root_id = root["mandate_id"].as_str().unwrap().to_owned();
    let child_id = child["mandate_id"].as_str().map(str::to_owned).unwrap_or_else(|| {
        let (_, chain) = org.alice.get(&format!("/v1/chains/{root_id}"));
        chain["children"][0]["id"].as_str().unwrap().to_owned()
    });
    let used = |reader: &Client| {
        let (_, r) = reader.get(&format!("/v1/mandates/{root_id}"));
        let (_, c) = reader.get(&format!("/v1/mandates/{child_id}"));
        let (_, chain) = reader.get(&format!("/v1/chains/{root_id}"));
        (
            r["used_calls"].clone(),
            c["used_calls"].clone(),
            chain["used_calls"].clone(),
            chain["children"][0]["used_calls"].clone(),
        )
    };
    assert_eq!(used(&org.alice), (json!(3), json!(2), json!(3), json!(2)));

    // Well past the child's expiry: the next call drops its count from memory.
    org.server.clock.advance(time::Duration::minutes(10));
    let d = call(&org, &root_token, 1, "erp/read_ledger", ledger, json!({}), json!({}));
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(used(&org.alice), (json!(4), json!(2), json!(4), json!(2)));
    let d = call(&org, &root_token, 1, "erp/read_ledger", ledger, json!({}), json!({}));
    assert_eq!(d["decision"], "allow", "the fifth call: {d}");
    let d = call(&org, &root_token, 1, "erp/read_ledger", ledger, json!({}), json!({}));
    assert_eq!(codes(&d), one("budget.exhausted", 1), "the child's calls still count: {d}");

    let server = org.server.restart();
    let org = Org { server, ..org };
    assert_eq!(used(&org.server.admin()), (json!(5), json!(2), json!(5), json!(2)));
    let d = call(&org, &root_token, 1, "erp/read_ledger", ledger, json!({}), json!({}));
    assert_eq!(codes(&d), one("budget.exhausted", 1), "after a restart too: {d}");
}

#[test]
fn behaviour_so_far_survives_a_restart() {
    // A chain reads financial data, the server restarts, then the chain mails an outside address:
    // the exfiltration shape is still seen, since the chain's picture is rebuilt from the ledger.
    let org = org();
    let m = close_mandate(&org, json!({}));
    let token = m["token"].as_str().unwrap().to_owned();
    let ledger = Some("erp://ledger/2026-10/ap");
    let d = call(&org, &token, 1, "erp/read_ledger", ledger, json!({}), json!({}));
    assert_eq!((d["decision"].as_str(), &d["risk"]["signals"]), (Some("allow"), &json!([])), "{d}");
    let fresh = close_mandate(&org, json!({}));
    let server = org.server.restart();
    let org = Org { server, ..org };
    let out = json!({"to": "drop@outside.example", "subject": "ledger"});
    let d = call(&org, &token, 1, "mail/send", None, out.clone(), json!({}));
    assert_eq!(d["decision"], "approval_required", "{d}");
    assert_eq!(d["risk"]["signals"], json!(["exfiltration"]), "{d}");
    assert!(d["policies"].as_array().unwrap().contains(&json!("call.hold-exfiltration")), "{d}");
    assert!(d["risk"]["details"][0]["why"].as_str().unwrap().contains("after this chain read `financial` data"), "{d}");
    // A chain that read nothing yet sends to the same address with only a note of the new destination.
    let d = call(&org, fresh["token"].as_str().unwrap(), 1, "mail/send", None, out, json!({}));
    assert_eq!((d["decision"].as_str(), &d["risk"]["signals"]), (Some("allow"), &json!(["new_destination"])), "{d}");
}

#[test]
fn a_held_call_repeated_waits_on_one_approval_and_a_mandate_cannot_flood_approvers() {
    let org = org();
    let m = close_mandate(&org, json!({"ttl_seconds": 3600}));
    let token = m["token"].as_str().unwrap();
    let send = |n: u32| json!({"account": "6100", "amount": 100 + n, "memo": format!("October accrual, part {n}")});
    // The same call, held twice without an approval id: one approval, the same id both times.
    let first = call(&org, token, 1, "erp/post_journal", None, send(0), json!({}));
    let again = call(&org, token, 1, "erp/post_journal", None, send(0), json!({}));
    assert_eq!(
        (first["decision"].as_str(), again["decision"].as_str()),
        (Some("approval_required"), Some("approval_required"))
    );
    assert_eq!(first["approval_id"], again["approval_id"], "{again}");
    assert_eq!(codes(&again), one("policy.hold", 1));
    let (_, queue) = org.carol.get("/v1/approvals?status=pending");
    assert_eq!(queue["approvals"].as_array().unwrap().len(), 1, "{queue}");
    // Different calls each wait on their own, up to 20 per mandate; the 21st is refused.
    for n in 1..20 {
        let d = call(&org, token, 1, "erp/post_journal", None, send(n), json!({}));
        assert_eq!(d["decision"], "approval_required", "call {n}: {d}");
    }
    let d = call(&org, token, 1, "erp/post_journal", None, send(20), json!({}));
    assert_eq!((d["decision"].as_str(), codes(&d)), (Some("deny"), one("approval.too_many_pending", 1)), "{d}");
    assert!(d["approval_id"].is_null(), "{d}");
    // A call already waiting still gets its approval; once a person answers one, there is room again.
    let d = call(&org, token, 1, "erp/post_journal", None, send(0), json!({}));
    assert_eq!(d["approval_id"], first["approval_id"], "{d}");
    let (status, _) =
        org.carol.post(&format!("/v1/approvals/{}/deny", first["approval_id"].as_str().unwrap()), &json!({}));
    assert_eq!(status, 200);
    let d = call(&org, token, 1, "erp/post_journal", None, send(20), json!({}));
    assert_eq!(d["decision"], "approval_required", "{d}");
    let d = call(&org, token, 1, "erp/post_journal", None, send(21), json!({}));
    assert_eq!(codes(&d), one("approval.too_many_pending", 1), "full again: {d}");
    // Another mandate is not held back by this one.
    let (status, fresh) = org.alice.post(
        "/v1/mandates",
        &json!({"agent": "finance-close", "purpose": "Send the close pack", "category": "finance.close", "max_calls": 50,
                "authorization_details": [{"type": "mcp_tool", "tools": ["erp/post_journal"], "data_classes": ["financial"], "actions": ["write"]}]}),
    );
    assert_eq!(status, 201, "{fresh}");
    let d = call(&org, fresh["token"].as_str().unwrap(), 1, "erp/post_journal", None, send(99), json!({}));
    assert_eq!(d["decision"], "approval_required", "{d}");
    // Expired approvals keep nobody waiting.
    org.server.clock.advance(time::Duration::seconds(901));
    let d = call(&org, token, 1, "erp/post_journal", None, send(21), json!({}));
    assert_eq!(d["decision"], "approval_required", "{d}");
}

#[test]
fn approvals_bind_to_the_rfc_8785_digest_of_the_arguments_that_python_reproduces() {
    let org = org();
    let m = close_mandate(&org, json!({}));
    let token = m["token"].as_str().unwrap();
    let args_text = r#"{"to": "controller@example.org", "body": "R\u00e9sum\u00e9 \u20ac \u2713", "amount": 1200.5, "n": 1e2, "nested": {"b": [1, 2.0, -0.0], "a": null}}"#;
    let args: Value = serde_json::from_str(args_text).unwrap();
    let d = call(&org, token, 1, "erp/post_journal", None, args.clone(), json!({}));
    assert_eq!(d["decision"], "approval_required", "{d}");
    let approval = d["approval_id"].as_str().unwrap().to_owned();
    let (_, queue) = org.carol.get("/v1/approvals");
    let recorded = queue["approvals"][0]["arguments_hash"].as_str().unwrap().to_owned();

    // Python's `rfc8785` (another implementation of JCS) computes the same digest from the same text.
    let mut python = std::process::Command::new("python3")
        .args(["-c", "import sys, json, hashlib, rfc8785; print(hashlib.sha256(rfc8785.dumps(json.loads(sys.stdin.read()))).hexdigest())"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(python.stdin.as_mut().unwrap(), args_text.as_bytes()).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 with rfc8785 (installed by the test command): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), recorded);

    // Documents that differ only in a large number, or in a duplicated member, never reach an
    // approval: they are malformed requests.
    let anon = org.server.client(None);
    let t = org.server.clock.now_secs();
    let raw_call = |arguments: &str| {
        let body = format!(
            r#"{{"token": "{token}", "proof": "{}", "tool": "erp/post_journal", "arguments": {arguments}, "approval_id": "{approval}"}}"#,
            proof(1, "POST", AUTHORIZE, token, t, &jti())
        );
        let r = anon.raw("POST", "/v1/authorize", Some(&body));
        (r.status(), r.into_json::<Value>().unwrap_or(Value::Null))
    };
    for (a, b) in [(r#"{"amount": 12345678901234567890123}"#, r#"{"amount": 12345678901234567890124}"#)] {
        for doc in [a, b] {
            let (status, problem) = raw_call(doc);
            assert_eq!((status, problem["code"].as_str()), (400, Some("request.inexact_number")), "{doc}: {problem}");
        }
    }
    let (status, problem) = raw_call(r#"{"to": "controller@example.org", "to": "exfil@evil.example"}"#);
    assert_eq!((status, problem["code"].as_str()), (400, Some("request.duplicate_argument")), "{problem}");

    // The same arguments written otherwise (member order, `100` for `1e2`, `2` for `2.0`) are the same
    // call: once approved, it is allowed once.
    assert_eq!(org.carol.post(&format!("/v1/approvals/{approval}/approve"), &json!({})).0, 200);
    let same = r#"{"nested": {"a": null, "b": [1, 2, 0]}, "n": 100, "amount": 1200.5, "body": "Résumé € ✓", "to": "controller@example.org"}"#;
    let (status, d) = raw_call(same);
    assert_eq!((status, d["decision"].as_str()), (200, Some("allow")), "{d}");
}
