//! The agent registry and lifecycle through the real HTTP server over a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_test::{agent_jwk, agent_spec, TestServer};
use serde_json::{json, Value};
use time::Duration;

const ALICE: &str = "user:alice@example.org";

fn with_alice(server: &TestServer) -> mandate_test::Client {
    server.human("alice@example.org", json!({"groups": ["finance"]}))
}

fn register(server: &TestServer, id: &str, overrides: Value) -> Value {
    let (status, body) = server.admin().post("/v1/agents", &agent_spec(id, ALICE, overrides));
    assert_eq!(status, 201, "{body}");
    body
}

fn pending(agent: &Value) -> Vec<String> {
    agent["review"]["pending"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect()
}

#[test]
fn register_answers_the_spec_shape() {
    let (_dir, server) = TestServer::fresh();
    with_alice(&server);
    let agent = register(&server, "finance-close", json!({}));
    assert_eq!(agent["id"], "finance-close");
    assert_eq!(agent["spiffe_id"], "spiffe://example.org/agent/finance-close");
    assert_eq!(agent["state"], "active");
    assert_eq!(agent["owner"], ALICE);
    assert_eq!(agent["boundary"]["tools"], json!(["erp/*", "fx/convert"]));
    assert_eq!(agent["boundary"]["environments"], json!(["production"]));
    assert_eq!(agent["public_key_jwk"], agent_jwk(1));
    assert_eq!(agent["created_at"], "2026-11-01T09:00:00Z");
    assert_eq!(agent["certified_at"], Value::Null);
    assert_eq!(agent["review"], json!({"due_at": "2027-01-30T09:00:00Z", "pending": []}));
    let (status, shown) = server.admin().get("/v1/agents/finance-close");
    assert_eq!(status, 200);
    assert_eq!(shown, agent);
    let location = server.admin().raw("POST", "/v1/agents", Some(&agent_spec("second", ALICE, json!({})).to_string()));
    assert_eq!(location.header("location"), Some("/v1/agents/second"));
}

#[test]
fn refusals_are_specific_problem_documents() {
    let (_dir, server) = TestServer::fresh();
    with_alice(&server);
    register(&server, "finance-close", json!({}));
    let admin = server.admin();
    let check = |body: Value, status: u16, code: &str| {
        let (got, problem) = admin.post("/v1/agents", &body);
        assert_eq!((got, problem["code"].as_str().unwrap()), (status, code), "{problem}");
        assert_eq!(problem["status"], status);
        assert_eq!(problem["type"], format!("urn:mandate:problem:{code}"));
        assert!(!problem["detail"].as_str().unwrap().is_empty());
        problem
    };
    let duplicate = check(agent_spec("finance-close", ALICE, json!({})), 409, "agent.exists");
    assert_eq!(duplicate["detail"], "agent `finance-close` already exists");
    let mut no_owner = agent_spec("no-owner", ALICE, json!({}));
    no_owner.as_object_mut().unwrap().remove("owner");
    let missing = check(no_owner, 400, "request.invalid_body");
    assert!(missing["detail"].as_str().unwrap().contains("missing field `owner`"), "{missing}");
    check(agent_spec("ghost-owned", "user:ghost@example.org", json!({})), 400, "agent.owner_unknown");
    check(agent_spec("Bad_Id", ALICE, json!({})), 400, "request.invalid_body");
    check(agent_spec("typo", ALICE, json!({"enviroment": "production"})), 400, "request.invalid_body");
    check(agent_spec("bad-tool", ALICE, json!({"boundary": {"tools": ["erp"]}})), 400, "request.invalid_body");
    check(
        agent_spec(
            "private-key",
            ALICE,
            json!({"public_key_jwk": {"kty": "OKP", "crv": "Ed25519", "x": agent_jwk(1)["x"], "d": agent_jwk(2)["x"]}}),
        ),
        400,
        "request.invalid_body",
    );
    check(
        agent_spec(
            "escalates",
            ALICE,
            json!({"environment": "sandbox", "boundary": {"tools": ["x/y"], "environments": ["production"]}}),
        ),
        400,
        "agent.environment_escalation",
    );
    let (status, problem) = admin.send_raw_text("/v1/agents", "{not json");
    assert_eq!((status, problem["code"].as_str().unwrap()), (400, "request.malformed_json"));
    // Nothing refused was written.
    let (_, list) = admin.get("/v1/agents");
    assert_eq!(list["agents"].as_array().unwrap().len(), 1);
}

/// Sends a body as-is to check the server's own parsing of bad JSON.
trait RawText {
    fn send_raw_text(&self, path: &str, body: &str) -> (u16, Value);
}

impl RawText for mandate_test::Client {
    fn send_raw_text(&self, path: &str, body: &str) -> (u16, Value) {
        let response = self.raw("POST", path, Some(body));
        assert_eq!(response.content_type(), "application/problem+json");
        (response.status(), response.into_json().unwrap())
    }
}

#[test]
fn only_admins_register_and_change_agents() {
    let (_dir, server) = TestServer::fresh();
    let alice = with_alice(&server);
    let spec = agent_spec("finance-close", ALICE, json!({}));
    let (status, problem) = server.client(None).post("/v1/agents", &spec);
    assert_eq!((status, problem["code"].as_str().unwrap()), (401, "auth.missing_credentials"));
    let (status, problem) = server.client(Some("mnd_not-a-key")).post("/v1/agents", &spec);
    assert_eq!((status, problem["code"].as_str().unwrap()), (401, "auth.invalid_credentials"));
    let unauthorized = server.client(None).raw("GET", "/v1/agents", None);
    assert_eq!(unauthorized.header("www-authenticate"), Some(r#"Bearer realm="mandate""#));
    let (status, problem) = alice.post("/v1/agents", &spec);
    assert_eq!((status, problem["code"].as_str().unwrap()), (403, "auth.forbidden"));
    register(&server, "finance-close", json!({}));
    let (status, _) = alice.patch("/v1/agents/finance-close", &json!({"boundary": {"tools": ["*/*"]}}));
    assert_eq!(status, 403, "an owner may not widen their own agent");
    // Another human sees neither the agent nor the humans list.
    let bob = server.human("bob@example.org", json!({}));
    assert_eq!(bob.get("/v1/agents/finance-close").0, 403);
    assert_eq!(bob.get("/v1/agents").1["agents"], json!([]));
    assert_eq!(bob.get("/v1/humans").0, 403);
    assert_eq!(bob.post("/v1/agents/finance-close/suspend", &json!({})).0, 403);
    // An auditor reads everything and changes nothing.
    let carol = server.human("carol@example.org", json!({"roles": ["auditor"]}));
    assert_eq!(carol.get("/v1/agents").1["agents"].as_array().unwrap().len(), 1);
    assert_eq!(carol.get("/v1/audit").0, 200);
    assert_eq!(carol.post("/v1/agents/finance-close/retire", &json!({})).0, 403);
    // The owner sees their agent.
    assert_eq!(alice.get("/v1/agents/finance-close").0, 200);
    assert_eq!(alice.get("/v1/agents").1["agents"].as_array().unwrap().len(), 1);
}

#[test]
fn mover_puts_the_agent_up_for_review_and_certify_clears_it() {
    let (_dir, server) = TestServer::fresh();
    let alice = with_alice(&server);
    register(&server, "finance-close", json!({}));
    let admin = server.admin();
    // Renaming is not a mover event that needs review.
    let (status, renamed) = admin.patch("/v1/agents/finance-close", &json!({"name": "Close agent"}));
    assert_eq!(status, 200);
    assert_eq!((renamed["version"].as_i64(), pending(&renamed)), (Some(2), vec![]));
    // Widening the boundary is.
    server.clock.advance(Duration::days(3));
    let widened = json!({"boundary": {"tools": ["erp/*", "fx/*"], "data_classes": ["internal", "financial"], "may_delegate_to": ["reconciler"], "max_depth": 2}});
    let (status, agent) = admin.patch("/v1/agents/finance-close", &widened);
    assert_eq!(status, 200, "{agent}");
    assert_eq!(pending(&agent), vec!["boundary_changed"]);
    let (_, agent) = admin.patch("/v1/agents/finance-close", &json!({"public_key_jwk": agent_jwk(9)}));
    assert_eq!(pending(&agent), vec!["boundary_changed", "key_changed"]);
    // The owner certifies.
    let (status, certified) =
        alice.post("/v1/agents/finance-close/certify", &json!({"reason": "reviewed with finance"}));
    assert_eq!(status, 200, "{certified}");
    assert_eq!(pending(&certified), Vec::<String>::new());
    assert_eq!(certified["certified_at"], "2026-11-04T09:00:00Z");
    assert_eq!(certified["review"]["due_at"], "2027-02-02T09:00:00Z");
    // The history shows every version with who and what.
    let (_, history) = admin.get("/v1/agents/finance-close/history");
    let actions: Vec<(&str, &str)> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["action"].as_str().unwrap(), v["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![("register", "admin"), ("update", "admin"), ("update", "admin"), ("update", "admin"), ("certify", ALICE)]
    );
    assert_eq!(history["versions"][2]["before"]["boundary"]["tools"], json!(["erp/*", "fx/convert"]));
    assert_eq!(history["versions"][2]["after"]["boundary"]["tools"], json!(["erp/*", "fx/*"]));
    let kinds: Vec<&str> = history["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["agent.registered", "agent.updated", "agent.updated", "agent.updated", "agent.certified"]);
    // Concurrent edits: a change against a stale version is refused (tested in the store); an
    // unknown agent is a 404.
    assert_eq!(admin.patch("/v1/agents/nobody", &json!({"name": "x"})).0, 404);
}

#[test]
fn suspend_resume_retire_and_retired_is_final() {
    let (_dir, server) = TestServer::fresh();
    let alice = with_alice(&server);
    register(&server, "finance-close", json!({}));
    let admin = server.admin();
    let (status, agent) = alice.post("/v1/agents/finance-close/suspend", &json!({"reason": "incident 42"}));
    assert_eq!((status, agent["state"].as_str()), (200, Some("suspended")));
    assert_eq!(alice.post("/v1/agents/finance-close/resume", &json!({})).0, 403, "resuming needs an admin");
    let (status, agent) = admin.post("/v1/agents/finance-close/resume", &json!({}));
    assert_eq!((status, agent["state"].as_str()), (200, Some("active")));
    let (status, problem) = admin.post("/v1/agents/finance-close/resume", &json!({}));
    assert_eq!((status, problem["code"].as_str().unwrap()), (409, "agent.not_suspended"));
    let (status, agent) = admin.post("/v1/agents/finance-close/retire", &json!({}));
    assert_eq!((status, agent["state"].as_str()), (200, Some("retired")));
    for verb in ["resume", "suspend", "certify", "retire"] {
        let (status, problem) = admin.post(&format!("/v1/agents/finance-close/{verb}"), &json!({}));
        assert_eq!((status, problem["code"].as_str().unwrap()), (409, "agent.retired"), "{verb}");
    }
    let (status, problem) = admin.patch("/v1/agents/finance-close", &json!({"name": "back"}));
    assert_eq!((status, problem["code"].as_str().unwrap()), (409, "agent.retired"));
    let (_, retired) = admin.get("/v1/agents?state=retired");
    assert_eq!(retired["agents"][0]["id"], "finance-close");
    let (_, events) = admin.get("/v1/audit?agent=finance-close");
    let kinds: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["agent.registered", "agent.suspended", "agent.resumed", "agent.retired"]);
    let detail: Value = serde_json::from_str(events["events"][1]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail, json!({"from": "active", "reason": "incident 42", "to": "suspended", "version": 2}));
}

#[test]
fn review_finds_orphans_stale_overdue_sandbox_owned_and_moved_agents() {
    let (_dir, server) = TestServer::fresh();
    with_alice(&server);
    server.human("erin@example.org", json!({}));
    server.human("lab@example.org", json!({"sandbox": true}));
    let admin = server.admin();
    // Registered on day 0 with a 30-day certification: overdue and stale by day 45.
    register(&server, "old-agent", json!({"certify_every_days": 30}));
    let (status, _) = admin.post("/v1/agents", &agent_spec("erins-agent", "user:erin@example.org", json!({})));
    assert_eq!(status, 201);
    server.clock.advance(Duration::days(45));
    register(&server, "fresh-agent", json!({}));
    let (status, _) = admin.post("/v1/agents", &agent_spec("lab-prod", "user:lab@example.org", json!({})));
    assert_eq!(status, 201);
    let (status, _) = admin.post(
        "/v1/agents",
        &agent_spec(
            "lab-sandbox",
            "user:lab@example.org",
            json!({"environment": "sandbox", "boundary": {"tools": ["x/*"]}}),
        ),
    );
    assert_eq!(status, 201);
    register(&server, "moved", json!({}));
    admin.patch("/v1/agents/moved", &json!({"owner": "user:erin@example.org"}));
    let (status, _) = admin.post("/v1/humans/erin@example.org/deactivate", &json!({}));
    assert_eq!(status, 200);

    let (status, report) = admin.get("/v1/review");
    assert_eq!(status, 200, "{report}");
    let found: Vec<(String, Vec<String>)> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let codes =
                i["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap().to_owned()).collect();
            (i["agent"].as_str().unwrap().to_owned(), codes)
        })
        .collect();
    let expect =
        |agent: &str, codes: &[&str]| (agent.to_owned(), codes.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>());
    assert_eq!(
        found,
        vec![
            expect("erins-agent", &["owner_inactive", "stale"]),
            expect("lab-prod", &["sandbox_owner"]),
            expect("moved", &["owner_changed", "owner_inactive"]),
            expect("old-agent", &["certification_overdue", "stale"]),
        ]
    );
    // A sandbox agent on a sandbox owner is fine; fresh agents are not listed.
    // Looking ahead shows what will be due.
    let (_, later) = admin.get("/v1/review?as_of=2027-06-01T00:00:00Z");
    assert!(later["items"].as_array().unwrap().iter().any(|i| i["agent"] == "fresh-agent"));
    let (status, problem) = admin.get("/v1/review?as_of=tomorrow");
    assert_eq!((status, problem["code"].as_str().unwrap()), (400, "request.invalid_query"));
    // The owner of an orphan can no longer act: their key stopped working.
}

#[test]
fn a_deactivated_humans_key_stops_working() {
    let (_dir, server) = TestServer::fresh();
    let alice = with_alice(&server);
    assert_eq!(alice.get("/v1/agents").0, 200);
    server.admin().post("/v1/humans/alice@example.org/deactivate", &json!({}));
    let (status, problem) = alice.get("/v1/agents");
    assert_eq!((status, problem["code"].as_str().unwrap()), (401, "auth.invalid_credentials"));
    // A new agent cannot be given to a deactivated owner.
    let (status, problem) = server.admin().post("/v1/agents", &agent_spec("x-agent", ALICE, json!({})));
    assert_eq!((status, problem["code"].as_str().unwrap()), (400, "agent.owner_inactive"));
}

#[test]
fn restart_keeps_everything() {
    let (_dir, server) = TestServer::fresh();
    with_alice(&server);
    register(&server, "finance-close", json!({}));
    server.admin().post("/v1/agents/finance-close/suspend", &json!({}));
    let (_, before) = server.admin().get("/v1/agents/finance-close");
    let (_, events_before) = server.admin().get("/v1/audit");
    let server = server.restart();
    let (_, after) = server.admin().get("/v1/agents/finance-close");
    assert_eq!(after, before);
    assert_eq!(server.admin().get("/v1/audit").1, events_before);
    // The human's key still works after the restart.
    assert_eq!(server.admin().get("/v1/humans").1["humans"][0]["id"], "alice@example.org");
}

#[test]
fn openapi_describes_every_route() {
    let (_dir, server) = TestServer::fresh();
    let (status, doc) = server.client(None).get("/openapi.json");
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/v1/agents", "get"),
        ("/v1/agents", "post"),
        ("/v1/agents/{id}", "get"),
        ("/v1/agents/{id}", "patch"),
        ("/v1/agents/{id}/history", "get"),
        ("/v1/agents/{id}/suspend", "post"),
        ("/v1/agents/{id}/resume", "post"),
        ("/v1/agents/{id}/retire", "post"),
        ("/v1/agents/{id}/certify", "post"),
        ("/v1/review", "get"),
        ("/v1/humans", "get"),
        ("/v1/humans", "post"),
        ("/v1/humans/{id}", "get"),
        ("/v1/humans/{id}/deactivate", "post"),
        ("/v1/audit", "get"),
        ("/v1/audit/verify", "get"),
        ("/v1/audit/verify", "post"),
        ("/v1/audit/checkpoints", "get"),
        ("/v1/audit/checkpoints", "post"),
        ("/v1/audit/checkpoints/latest", "get"),
        ("/v1/audit/export", "get"),
        ("/v1/audit/chains/{chain_id}", "get"),
        ("/v1/audit/blast-radius", "get"),
        ("/v1/mandates", "post"),
        ("/v1/mandates/{id}", "get"),
        ("/v1/mandates/{id}/revoke", "post"),
        ("/v1/chains/{chain_id}", "get"),
        ("/v1/chains/{chain_id}/revoke", "post"),
        ("/v1/humans/{id}/revoke-mandates", "post"),
        ("/oauth/token", "post"),
        ("/.well-known/jwks.json", "get"),
        ("/.well-known/oauth-authorization-server", "get"),
        ("/v1/keys", "get"),
        ("/v1/keys/rotate", "post"),
        ("/v1/authorize", "post"),
        ("/v1/approvals", "get"),
        ("/v1/approvals/{id}/approve", "post"),
        ("/v1/approvals/{id}/deny", "post"),
        ("/v1/policies", "get"),
        ("/v1/policies", "put"),
        ("/v1/policies/validate", "post"),
        ("/v1/tools", "get"),
        ("/v1/tools/{server}/{tool}", "put"),
        ("/readyz", "get"),
        ("/v1/discovered", "get"),
        ("/v1/tools/pins", "get"),
        ("/v1/intents", "get"),
        ("/v1/intents/{category}", "put"),
        ("/v1/intents/{category}", "delete"),
        ("/v1/drift/{category}", "get"),
        ("/v1/drift/{category}/reset", "post"),
        ("/v1/tools/{server}/{tool}/diff", "get"),
        ("/v1/tools/{server}/{tool}/approve", "post"),
        ("/mcp/{server}", "post"),
        ("/mcp/{server}", "delete"),
        ("/.well-known/oauth-protected-resource/mcp/{server}", "get"),
    ];
    for (path, method) in expected {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not described");
    }
    let described: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(described, expected.len(), "a route is described that this test does not know: {:?}", paths.keys());
    // Every described route answers something other than the no-route fallback.
    for (path, method) in expected {
        let concrete = path
            .replace("{id}", "x-agent")
            .replace("{chain_id}", "x-chain")
            .replace("{server}", "x-server")
            .replace("{tool}", "x-tool");
        let response = server.admin().raw(&method.to_uppercase(), &concrete, Some("{}"));
        let body: Value = response.into_json().unwrap_or(Value::Null);
        assert_ne!(body["code"], "request.no_route", "{method} {path}");
    }
    assert!(doc["components"]["schemas"]["AgentSpec"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[test]
fn unknown_routes_and_methods_are_problems_and_requests_are_counted() {
    let (_dir, server) = TestServer::fresh();
    let (status, problem) = server.admin().get("/v2/nothing");
    assert_eq!((status, problem["code"].as_str().unwrap()), (404, "request.no_route"));
    let (status, problem) = server.admin().send_raw_text("/healthz", "{}");
    assert_eq!((status, problem["code"].as_str().unwrap()), (405, "request.method_not_allowed"));
    let response = server.client(None).raw("GET", "/healthz", None);
    assert_eq!(response.status(), 200);
    assert!(response.header("x-request-id").is_some_and(|id| id.len() == 24));
    let echoed = ureq::get(&format!("{}/healthz", server.url)).set("x-request-id", "trace-me-42").call().unwrap();
    assert_eq!(echoed.header("x-request-id"), Some("trace-me-42"));
    let metrics = server.client(None).raw("GET", "/metrics", None).into_string().unwrap();
    assert!(
        metrics.contains(r#"mandate_http_requests_total{method="GET",route="/healthz",status="200"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"mandate_http_request_duration_seconds_count{method="GET",route="/healthz"} 2"#),
        "{metrics}"
    );
}
