//! Drift from intent through the real server: the taxonomy's API, learn and enforce, alerts in the
//! ledger and the metrics, profiles that survive a restart and can be reset, and the attempts to get
//! past each (a bad category, a non-admin, a removed category).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_test::{agent_jwk, agent_spec, proof, Client, TestServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};

const AUTHORIZE: &str = "https://mandate.test/v1/authorize";

static JTI: AtomicU32 = AtomicU32::new(0);
fn jti() -> String {
    format!("drift-{}", JTI.fetch_add(1, Ordering::Relaxed))
}

fn setup(server: &TestServer) -> String {
    let admin = server.admin();
    let (status, h) = admin.post("/v1/humans", &json!({"id": "lena@example.org", "groups": ["legal"]}));
    assert_eq!(status, 201, "{h}");
    let spec = agent_spec(
        "counsel",
        "user:lena@example.org",
        json!({"public_key_jwk": agent_jwk(7), "boundary": {"tools": ["docs/*", "mail/send"], "data_classes": ["internal"]}}),
    );
    assert_eq!(admin.post("/v1/agents", &spec).0, 201);
    for (tool, risk) in [("docs/read", "read"), ("docs/export", "read"), ("mail/send", "egress")] {
        let r = admin.raw(
            "PUT",
            &format!("/v1/tools/{tool}"),
            Some(&json!({"data_class": "internal", "risk": risk}).to_string()),
        );
        assert_eq!(r.status(), 200);
    }
    h["api_key"].as_str().unwrap().to_owned()
}

fn grant(server: &TestServer, key: &str, category: &str) -> String {
    let lena = Client::new(&server.url, Some(key));
    let (status, g) = lena.post(
        "/v1/mandates",
        &json!({"agent": "counsel", "purpose": "Review the supplier contract", "category": category,
                "authorization_details": [{"type": "mcp_tool", "tools": ["docs/*", "mail/send"], "data_classes": ["internal"],
                                           "actions": ["read", "egress"]}], "max_calls": 50}),
    );
    assert_eq!(status, 201, "{g}");
    g["token"].as_str().unwrap().to_owned()
}

fn call(server: &TestServer, token: &str, tool: &str, resource: Option<&str>, args: Value) -> Value {
    let t = server.clock.now_secs();
    let body = json!({"token": token, "proof": proof(7, "POST", AUTHORIZE, token, t, &jti()), "tool": tool,
                      "resource": resource, "arguments": args});
    let (status, d) = server.client(None).post("/v1/authorize", &body);
    assert_eq!(status, 200, "{d}");
    d
}

fn put(client: &Client, path: &str, body: &Value) -> (u16, Value) {
    let r = client.raw("PUT", path, Some(&body.to_string()));
    (r.status(), r.into_json().unwrap_or(Value::Null))
}

/// An event's detail (the audit API carries it as the JSON text that was hashed).
fn detail(event: &Value) -> Value {
    match &event["detail"] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    }
}

fn legal() -> Value {
    json!({"description": "Review contracts", "tools": ["docs/read", "mail/send"], "data_classes": ["internal"],
           "destinations": ["counsel.example"], "max_resources": 5})
}

#[test]
fn the_taxonomy_is_the_organisation_s_and_every_change_is_checked_and_recorded() {
    let (_dir, server) = TestServer::fresh();
    let key = setup(&server);
    let admin = server.admin();
    let (_, list) = admin.get("/v1/intents");
    let names: Vec<&str> = list["categories"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["finance.close", "hr.onboarding", "it.operations", "sales.research"]);
    assert!(list["categories"].as_array().unwrap().iter().all(|c| c["mode"] == "enforce"), "{list}");

    // Refused: a bad category, a bad field, and anyone but an administrator.
    let (status, p) = put(&admin, "/v1/intents/Legal", &legal());
    assert_eq!((status, p["code"].as_str()), (400, Some("intent.invalid")), "{p}");
    let (status, p) = put(&admin, "/v1/intents/legal.review", &json!({"tools": ["*"], "data_classes": ["internal"]}));
    assert_eq!((status, p["code"].as_str()), (400, Some("intent.invalid")), "{p}");
    let (status, _) = put(
        &admin,
        "/v1/intents/legal.review",
        &json!({"tools": ["docs/read"], "data_classes": ["internal"], "colour": "red"}),
    );
    assert_eq!(status, 400);
    let lena = Client::new(&server.url, Some(&key));
    let (status, p) = put(&lena, "/v1/intents/legal.review", &legal());
    assert_eq!((status, p["code"].as_str()), (403, Some("auth.forbidden")), "{p}");
    assert_eq!(lena.get("/v1/intents").0, 200, "anyone may read the taxonomy");
    assert_eq!(lena.get("/v1/drift/finance.close").0, 403, "but not what was learned");

    let (status, c) = put(&admin, "/v1/intents/legal.review", &legal());
    assert_eq!(status, 200, "{c}");
    assert_eq!((c["mode"].as_str(), c["max_calls_per_minute"].as_u64()), (Some("learn"), Some(60)), "defaults: {c}");
    let (_, events) = admin.get("/v1/audit?kind=intent.updated");
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    assert_eq!(put(&admin, "/v1/intents/legal.review", &legal()).0, 200);
    let (_, events) = admin.get("/v1/audit?kind=intent.updated");
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "an unchanged category records nothing");

    // Removed: mandates naming it score `unknown_category`; it stays removed across a restart.
    let r = admin.raw("DELETE", "/v1/intents/legal.review", None);
    assert_eq!(r.status(), 204);
    assert_eq!(admin.raw("DELETE", "/v1/intents/legal.review", None).status(), 404);
    let token = grant(&server, &key, "legal.review");
    let d = call(&server, &token, "docs/read", None, json!({}));
    assert_eq!(d["risk"]["signals"], json!(["unknown_category"]), "{d}");
    let server = server.restart();
    let (_, list) = server.admin().get("/v1/intents");
    assert_eq!(list["categories"].as_array().unwrap().len(), 4, "{list}");
}

#[test]
fn learn_records_and_alerts_enforce_holds_and_what_was_learned_survives_a_restart_until_reset() {
    let (_dir, server) = TestServer::fresh();
    let key = setup(&server);
    let admin = server.admin();
    assert_eq!(put(&admin, "/v1/intents/legal.review", &legal()).0, 200);

    // In `learn`: the exfiltration shape is scored, alerted on and learned from, never held.
    let token = grant(&server, &key, "legal.review");
    assert_eq!(call(&server, &token, "docs/read", Some("docs://contracts/acme"), json!({}))["decision"], "allow");
    let out = json!({"to": "partner@outside.example", "subject": "the contract"});
    let d = call(&server, &token, "mail/send", None, out.clone());
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!((d["risk"]["mode"].as_str(), &d["risk"]["signals"]), (Some("learn"), &json!(["exfiltration"])), "{d}");
    assert_eq!(d["policies"], json!(["call.within-mandate"]), "policy saw a score of 0: {d}");
    let (_, alerts) = admin.get("/v1/audit?kind=drift.alert");
    let alert = detail(&alerts["events"][0]);
    assert_eq!((alert["mode"].as_str(), &alert["signals"]), (Some("learn"), &json!(["exfiltration"])), "{alerts}");
    assert_eq!(alert["decision_seq"], d["ledger_seq"]);
    let metrics = server.client(None).raw("GET", "/metrics", None).into_string().unwrap();
    assert!(
        metrics.contains(r#"mandate_drift_alerts_total{category="legal.review",signal="exfiltration"} 1"#),
        "{}",
        metrics.lines().filter(|l| l.contains("drift")).collect::<Vec<_>>().join("\n")
    );
    let (_, p) = admin.get("/v1/drift/legal.review");
    assert_eq!((p["chains"].as_u64(), p["calls"].as_u64()), (Some(1), Some(2)), "{p}");
    assert_eq!(p["destinations"][0], json!({"name": "outside.example", "count": 1}), "{p}");
    assert!(
        p["transitions"].as_array().unwrap().contains(&json!({"from": "docs/read", "to": "mail/send", "count": 1})),
        "{p}"
    );

    // In `enforce`: the same shape waits for a person, and the approver sees why.
    let mut enforce = legal();
    enforce["mode"] = json!("enforce");
    assert_eq!(put(&admin, "/v1/intents/legal.review", &enforce).0, 200);
    let token = grant(&server, &key, "legal.review");
    call(&server, &token, "docs/read", Some("docs://contracts/acme"), json!({}));
    let d = call(&server, &token, "mail/send", None, out.clone());
    assert_eq!(d["decision"], "approval_required", "{d}");
    assert!(d["policies"].as_array().unwrap().contains(&json!("call.hold-exfiltration")), "{d}");
    let (_, queue) = admin.get("/v1/approvals?status=pending");
    let held = &queue["approvals"][0]["detail"]["risk"];
    assert_eq!(held["signals"], json!(["exfiltration"]), "{queue}");
    assert!(held["details"][0]["why"].as_str().unwrap().contains("`outside.example`"), "{queue}");
    // A destination the category names is ordinary.
    let d = call(&server, &token, "mail/send", None, json!({"to": "firm@counsel.example"}));
    assert_eq!((d["decision"].as_str(), &d["risk"]["signals"]), (Some("allow"), &json!(["sensitive_egress"])), "{d}");

    // What was learned is written to the store and read back at start.
    let server = server.restart();
    let admin = server.admin();
    let (_, p) = admin.get("/v1/drift/legal.review");
    assert_eq!(p["destinations"][0]["name"], "outside.example", "after a restart: {p}");
    let (status, r) = admin.post("/v1/drift/legal.review/reset", &json!({}));
    assert_eq!((status, r["forgot"].as_bool()), (200, Some(true)), "{r}");
    let (_, p) = admin.get("/v1/drift/legal.review");
    assert_eq!((p["calls"].as_u64(), p["warm"].as_bool()), (Some(0), Some(false)), "{p}");
    let (_, events) = admin.get("/v1/audit?kind=drift.reset");
    assert_eq!(detail(&events["events"][0])["calls"], 3, "{events}");
    let server = server.restart();
    let (_, p) = server.admin().get("/v1/drift/legal.review");
    assert_eq!(p["calls"].as_u64(), Some(0), "a reset is durable: {p}");
    assert_eq!(server.admin().get("/v1/drift/no.such").0, 404);
    let lena = Client::new(&server.url, Some(&key));
    assert_eq!(lena.post("/v1/drift/legal.review/reset", &json!({})).0, 403);
}

#[test]
fn an_earlier_shipped_default_is_upgraded_and_an_own_set_that_no_longer_validates_fails_closed() {
    use mandate_store::DecisionStore as _;
    let dir = tempfile::tempdir().unwrap();
    let clock =
        std::sync::Arc::new(mandate_engine::clock::ManualClock::new(time::macros::datetime!(2026-11-02 09:00 UTC)));
    let store_policy = |text: &str| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let event = mandate_core::event::NewEvent::new("policy.updated", "test", 1, &json!({}));
            // On whichever backend the test servers run.
            match mandate_test::database_url(dir.path()) {
                Some(url) => {
                    let store = mandate_store::PostgresStore::connect(&url).await.unwrap();
                    store.insert_policy_version(text, "test", "test", 1, event).await.unwrap();
                    store.close().await;
                }
                None => {
                    let store = mandate_store::SqliteStore::open(&dir.path().join("mandate.db")).await.unwrap();
                    store.insert_policy_version(text, "test", "test", 1, event).await.unwrap();
                    store.close().await;
                }
            }
        });
    };
    // A server that ran the November default, which compares `context.risk` with a string.
    let server = TestServer::start(dir.path(), clock.clone());
    drop(server);
    let november = include_str!("fixtures/default-policy-2026-11.cedar");
    assert!(november.contains("context.risk == \"egress\""));
    store_policy(november);
    let server = TestServer::start(dir.path(), clock.clone());
    let (_, active) = server.admin().get("/v1/policies");
    assert_eq!(active["version"], 3, "today's default was installed as a new version: {active}");
    assert!(active["text"].as_str().unwrap().contains("call.hold-exfiltration"), "{active}");
    let key = setup(&server);
    let token = grant(&server, &key, "finance.close");
    assert_eq!(call(&server, &token, "docs/read", None, json!({}))["decision"], "allow");
    drop(server);

    // An organisation's own set of the same shape: refused by the schema, so the server starts
    // without one and every call is denied until an administrator puts a valid set.
    let own = november.replace("Mandate's default organisation policy", "Our policy");
    store_policy(&own);
    let server = TestServer::start(dir.path(), clock);
    let d = call(&server, &token, "docs/read", None, json!({}));
    assert_eq!(
        (d["decision"].as_str(), d["reasons"][0]["code"].as_str()),
        (Some("deny"), Some("policy.not_loaded")),
        "{d}"
    );
}
