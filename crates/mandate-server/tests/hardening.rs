//! Attacks found in review, each as the request sequence that used to get through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_test::{actor_token, agent_jwk, agent_spec, post_form, proof, TestServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};

const ALICE: &str = "user:alice@example.org";
const AUTHORIZE: &str = "https://mandate.test/v1/authorize";
const TOKEN_ENDPOINT: &str = "https://mandate.test/oauth/token";

static JTI: AtomicU32 = AtomicU32::new(0);
fn jti() -> String {
    format!("h-{}", JTI.fetch_add(1, Ordering::Relaxed))
}

fn setup() -> (tempfile::TempDir, TestServer, mandate_test::Client) {
    let (dir, server) = TestServer::fresh();
    let alice = server.human("alice@example.org", json!({"groups": ["finance"]}));
    let admin = server.admin();
    for spec in [
        agent_spec("finance-close", ALICE, json!({})),
        agent_spec(
            "reconciler",
            ALICE,
            json!({"public_key_jwk": agent_jwk(2), "boundary": {"tools": ["erp/read_ledger"], "data_classes": ["financial"]}}),
        ),
        agent_spec(
            "anything",
            ALICE,
            json!({"public_key_jwk": agent_jwk(6), "boundary": {"tools": ["*/*"], "data_classes": ["internal", "financial"]}}),
        ),
    ] {
        assert_eq!(admin.post("/v1/agents", &spec).0, 201);
    }
    for (tool, class) in [("erp/read_ledger", "financial"), ("erp/list_vendors", "internal")] {
        let r = admin.raw(
            "PUT",
            &format!("/v1/tools/{tool}"),
            Some(&json!({"data_class": class, "risk": "read"}).to_string()),
        );
        assert_eq!(r.status(), 200);
    }
    (dir, server, alice)
}

fn grant(client: &mandate_test::Client, extra: Value) -> Value {
    let mut body = json!({"agent": "finance-close", "purpose": "October close", "category": "finance.close",
        "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["financial"], "actions": ["read"]}],
        "max_depth": 1});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, granted) = client.post("/v1/mandates", &body);
    assert_eq!(status, 201, "{granted}");
    granted
}

fn decide(server: &TestServer, token: &str, seed: u8) -> Value {
    let t = server.clock.now_secs();
    let body =
        json!({"token": token, "proof": proof(seed, "POST", AUTHORIZE, token, t, &jti()), "tool": "erp/read_ledger"});
    server.client(None).post("/v1/authorize", &body).1
}

fn code(d: &Value) -> &str {
    d["reasons"][0]["code"].as_str().or(d["code"].as_str()).unwrap_or("<none>")
}

#[test]
fn replacing_an_agents_key_cuts_off_the_old_key() {
    let (_dir, server, alice) = setup();
    let m = grant(&alice, json!({}));
    let token = m["token"].as_str().unwrap();
    assert_eq!(decide(&server, token, 1)["decision"], "allow");
    let (status, _) = server.admin().patch("/v1/agents/finance-close", &json!({"public_key_jwk": agent_jwk(9)}));
    assert_eq!(status, 200);
    let d = decide(&server, token, 1);
    assert_eq!((d["decision"].as_str(), code(&d)), (Some("deny"), "mandate.revoked"), "{d}");
}

#[test]
fn a_revoked_mandate_stays_dead_after_its_expiry_and_a_restart() {
    let (_dir, server, alice) = setup();
    let m = grant(&alice, json!({"ttl_seconds": 60}));
    let token = m["token"].as_str().unwrap().to_owned();
    alice.post(&format!("/v1/mandates/{}/revoke", m["mandate_id"].as_str().unwrap()), &json!({}));
    // Past its expiry but within the clock skew the token itself tolerates.
    server.clock.advance(time::Duration::seconds(61));
    let server = server.restart();
    let d = decide(&server, &token, 1);
    assert_eq!((d["decision"].as_str(), code(&d)), (Some("deny"), "token.expired"), "{d}");
}

#[test]
fn a_wildcard_server_cannot_slip_a_tool_past_a_policy_written_for_its_server() {
    let (_dir, server, _alice) = setup();
    let bob = server.human("bob@example.org", json!({"groups": ["sales"]}));
    let body = |tools: Value| {
        json!({"agent": "anything", "purpose": "vendors", "category": "sales.outreach",
            "authorization_details": [{"type": "mcp_tool", "tools": tools, "data_classes": ["internal"], "actions": ["read"]}]})
    };
    for tools in [json!(["erp/list_vendors"]), json!(["*/list_vendors"]), json!(["e*/*"]), json!(["*/*"])] {
        let (status, problem) = bob.post("/v1/mandates", &body(tools.clone()));
        assert_eq!((status, problem["code"].as_str()), (403, Some("grant.not_permitted")), "{tools}: {problem}");
    }
}

#[test]
fn one_grant_cannot_ask_policy_thousands_of_questions() {
    let (_dir, _server, alice) = setup();
    let tools = |from: usize| (from..from + 35).map(|i| format!("erp/tool_{i}")).collect::<Vec<String>>();
    let entry = |from: usize| json!({"type": "mcp_tool", "tools": tools(from), "data_classes": ["internal", "financial"], "actions": ["read", "write"]});
    let body = json!({"agent": "anything", "purpose": "p", "category": "finance.close",
        "authorization_details": [entry(0), entry(35)]});
    let (status, problem) = alice.post("/v1/mandates", &body);
    assert_eq!((status, problem["code"].as_str()), (400, Some("grant.invalid_scope")), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("280"), "{problem}");
}

#[test]
fn an_old_actor_assertion_is_refused_even_if_unexpired() {
    let (_dir, server, alice) = setup();
    let m = grant(&alice, json!({}));
    let parent = m["token"].as_str().unwrap();
    let t = server.clock.now_secs();
    let details =
        json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["financial"], "actions": ["read"]}])
            .to_string();
    let stale_actor = actor_token(2, "reconciler", TOKEN_ENDPOINT, t - 90, &jti());
    let (status, body) = post_form(
        &format!("{}/oauth/token", server.url),
        Some(&proof(1, "POST", TOKEN_ENDPOINT, parent, t, &jti())),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", parent),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("actor_token", &stale_actor),
            ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("authorization_details", &details),
        ],
    );
    assert_eq!((status, body["code"].as_str()), (400, Some("actor.stale")), "{body}");
}

#[test]
fn a_resource_with_a_parameterised_dot_segment_is_refused() {
    let (_dir, server, alice) = setup();
    let m = grant(
        &alice,
        json!({"authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/*"], "data_classes": ["financial"], "actions": ["read"]}]}),
    );
    let token = m["token"].as_str().unwrap();
    let t = server.clock.now_secs();
    for resource in ["erp://ledger/2026-10/..;/2026-11/ap", "erp://ledger/2026-10/%2e%2e;/2026-11/ap"] {
        let body = json!({"token": token, "proof": proof(1, "POST", AUTHORIZE, token, t, &jti()), "tool": "erp/read_ledger", "resource": resource});
        let d = server.client(None).post("/v1/authorize", &body).1;
        assert_eq!((d["decision"].as_str(), code(&d)), (Some("deny"), "request.invalid_resource"), "{resource}: {d}");
    }
}

#[test]
fn argument_values_are_kept_only_when_asked_and_then_redacted() {
    let read = |keep: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = mandate_test::settings();
        settings.arguments = mandate_engine::engine::ArgumentRetention { keep, redact: vec!["password".into()] };
        let server = TestServer::fresh_in(dir.path(), settings);
        let alice = server.human("alice@example.org", json!({"groups": ["finance"]}));
        assert_eq!(server.admin().post("/v1/agents", &agent_spec("finance-close", ALICE, json!({}))).0, 201);
        let m = grant(&alice, json!({}));
        let token = m["token"].as_str().unwrap();
        let t = server.clock.now_secs();
        let args = json!({"period": "2026-10", "auth": {"Password": "hunter2"}});
        let body = json!({"token": token, "proof": proof(1, "POST", AUTHORIZE, token, t, &jti()), "tool": "erp/read_ledger", "arguments": args});
        let d = server.client(None).post("/v1/authorize", &body).1;
        let (_, events) = server.admin().get("/v1/audit?kind=decision");
        let e = events["events"].as_array().unwrap().iter().find(|e| e["seq"] == d["ledger_seq"]).unwrap().clone();
        serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap()["arguments"].clone()
    };
    let hashed = read(false);
    assert_eq!(hashed["value"], Value::Null);
    assert!(hashed["sha256"].as_str().unwrap().len() == 64);
    let kept = read(true);
    assert_eq!(kept["value"], json!({"period": "2026-10", "auth": {"Password": "[redacted]"}}));
    assert_eq!(kept["sha256"], hashed["sha256"], "the hash is of the arguments as sent");
}

/// Sends `POST /oauth/token` as raw HTTP/1.1, so that a test can put in what no client library
/// would send (two `DPoP` headers, a huge form). Returns the status, the content type and the body.
fn raw_token_request(server: &TestServer, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Value) {
    raw_request(server, "POST /oauth/token", "application/x-www-form-urlencoded", headers, body)
}

/// Sends one request as raw HTTP/1.1 and reads the answer even when the server answers before it
/// has read the whole body (as it does for a body over the limit).
fn raw_request(
    server: &TestServer,
    line: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Value) {
    use std::io::{Read, Write};
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "{line} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // The server may answer and close before reading a body over its limit.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    (status, content_type, serde_json::from_str(body.trim()).unwrap_or(Value::Null))
}

fn exchange_form(parent: &str, actor: &str) -> String {
    let details =
        json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["financial"], "actions": ["read"]}]);
    serde_urlencoded::to_string([
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", parent),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("actor_token", actor),
        ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("authorization_details", &details.to_string()),
    ])
    .unwrap()
}

#[test]
fn a_request_with_two_dpop_headers_is_refused_and_recorded() {
    let (_dir, server, alice) = setup();
    let parent = grant(&alice, json!({}))["token"].as_str().unwrap().to_owned();
    let t = server.clock.now_secs();
    let good = proof(1, "POST", TOKEN_ENDPOINT, &parent, t, &jti());
    let other = proof(1, "POST", TOKEN_ENDPOINT, &parent, t, &jti());
    let form = exchange_form(&parent, &actor_token(2, "reconciler", TOKEN_ENDPOINT, t, &jti()));
    let (status, _, body) = raw_token_request(&server, &[("DPoP", &good), ("DPoP", &other)], form.as_bytes());
    assert_eq!((status, body["code"].as_str()), (400, Some("proof.multiple_headers")), "{body}");
    assert_eq!(body["error"], "invalid_request");
    // Refused before any mandate verified: counted in the refusal summary of its source.
    wait_for_summary(&server, "proof.multiple_headers");
    // One header, the same proof: accepted (the first request used nothing up).
    let (status, _, body) = raw_token_request(&server, &[("DPoP", &good)], form.as_bytes());
    assert_eq!(status, 200, "{body}");
}

#[test]
fn an_actor_assertion_that_fails_to_decode_is_named_actor_not_token() {
    let (_dir, server, alice) = setup();
    let parent = grant(&alice, json!({}))["token"].as_str().unwrap().to_owned();
    let url = format!("{}/oauth/token", server.url);
    let t = server.clock.now_secs();
    let valid = actor_token(2, "reconciler", TOKEN_ENDPOINT, t, "dup");
    let oversized = format!("{valid}{}", "A".repeat(20_000));
    for (assertion, code) in [
        ("garbage".to_owned(), "actor.malformed"),
        (oversized, "actor.too_large"),
        (valid.replace('.', ".."), "actor.malformed"),
    ] {
        let dpop = proof(1, "POST", TOKEN_ENDPOINT, &parent, t, &jti());
        let form: Vec<(String, String)> = serde_urlencoded::from_str(&exchange_form(&parent, &assertion)).unwrap();
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, body) = post_form(&url, Some(&dpop), &form);
        assert_eq!((status, body["code"].as_str()), (400, Some(code)), "{body}");
    }
}

#[test]
fn a_body_over_the_limit_is_a_problem_document_on_every_route() {
    let (_dir, server, _alice) = setup();
    let huge = vec![b'a'; 1024 * 1024];
    let (status, content_type, body) = raw_token_request(&server, &[], &huge);
    assert_eq!((status, content_type.as_str()), (413, "application/problem+json"), "{body}");
    assert_eq!(body["code"], "request.too_large");
    let bearer = format!("Bearer {}", mandate_test::ADMIN_TOKEN);
    for line in ["PUT /v1/policies", "POST /v1/agents/finance-close/suspend", "POST /v1/agents", "POST /v1/authorize"] {
        let (status, content_type, body) =
            raw_request(&server, line, "application/json", &[("Authorization", &bearer)], &huge);
        assert_eq!((status, content_type.as_str()), (413, "application/problem+json"), "{line}: {body}");
        assert_eq!(body["code"], "request.too_large", "{line}");
    }
}

#[test]
fn a_proof_or_assertion_used_before_a_restart_is_refused_after_it() {
    let (_dir, server, alice) = setup();
    let parent = grant(&alice, json!({}))["token"].as_str().unwrap().to_owned();
    let t = server.clock.now_secs();
    let used = proof(1, "POST", AUTHORIZE, &parent, t, "before-restart");
    let call = json!({"token": parent, "proof": used, "tool": "erp/read_ledger", "arguments": {}});
    let anon = server.client(None);
    assert_eq!(anon.post("/v1/authorize", &call).1["decision"], "allow");
    let url_dpop = proof(1, "POST", TOKEN_ENDPOINT, &parent, t, "dpop-before-restart");
    let assertion = actor_token(2, "reconciler", TOKEN_ENDPOINT, t, "actor-before-restart");
    let form: Vec<(String, String)> = serde_urlencoded::from_str(&exchange_form(&parent, &assertion)).unwrap();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(post_form(&format!("{}/oauth/token", server.url), Some(&url_dpop), &form).0, 200);

    // Within the proofs' maximum age, the server restarts with an empty cache in memory.
    server.clock.advance(time::Duration::seconds(20));
    let server = server.restart();
    let anon = server.client(None);
    let d = anon.post("/v1/authorize", &call).1;
    assert_eq!(
        (d["decision"].as_str(), d["reasons"][0]["code"].as_str()),
        (Some("deny"), Some("proof.replayed")),
        "{d}"
    );
    let url = format!("{}/oauth/token", server.url);
    let (status, body) = post_form(&url, Some(&url_dpop), &form);
    assert_eq!((status, body["code"].as_str()), (400, Some("proof.replayed")), "{body}");
    // A fresh proof with the used assertion: the assertion is remembered too.
    let fresh = proof(1, "POST", TOKEN_ENDPOINT, &parent, server.clock.now_secs(), &jti());
    let (status, body) = post_form(&url, Some(&fresh), &form);
    assert_eq!((status, body["code"].as_str()), (400, Some("actor.replayed")), "{body}");
    // And a fresh proof for the call is accepted: only used ids are refused.
    let fresh = proof(1, "POST", AUTHORIZE, &parent, server.clock.now_secs(), &jti());
    let call = json!({"token": parent, "proof": fresh, "tool": "erp/read_ledger", "arguments": {}});
    assert_eq!(anon.post("/v1/authorize", &call).1["decision"], "allow");
}

/// Waits (the test servers summarise every second) for a `refusal.summary` that counts `code`.
fn wait_for_summary(server: &TestServer, code: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, events) = server.admin().get("/v1/audit?kind=refusal.summary&limit=100");
        let found = events["events"].as_array().unwrap().iter().rev().find_map(|e| {
            let detail: Value = serde_json::from_str(e["detail"].as_str().unwrap()).unwrap();
            detail["sources"].as_array().unwrap().iter().any(|s| s["codes"].get(code).is_some()).then_some(detail)
        });
        if let Some(detail) = found {
            return detail;
        }
        if std::time::Instant::now() >= deadline {
            let (_, all) = server.admin().get("/v1/audit?kind=refusal.summary&limit=100");
            panic!("no refusal summary counted `{code}`: {all}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_flood_of_garbage_is_summarised_not_recorded_one_by_one_and_its_source_is_limited() {
    let (_dir, server, alice) = setup();
    let token = grant(&alice, json!({}))["token"].as_str().unwrap().to_owned();
    let admin = server.admin();
    let head = |admin: &mandate_test::Client| {
        admin.get("/v1/audit?newest=true&limit=1").1["events"][0]["seq"].as_i64().unwrap()
    };
    let before = head(&admin);
    let anon = server.client(None);
    let garbage = json!({"token": "garbage.token.here", "proof": "x", "tool": "erp/read_ledger"});
    let (mut denied, mut limited) = (0, 0);
    for _ in 0..500 {
        let r = anon.raw("POST", "/v1/authorize", Some(&garbage.to_string()));
        match r.status() {
            200 => denied += 1,
            429 => {
                assert!(r.header("retry-after").is_some());
                assert_eq!(r.header("content-type"), Some("application/problem+json"));
                assert_eq!(r.into_json::<Value>().unwrap()["code"], "request.rate_limited");
                limited += 1;
            }
            other => panic!("{other}"),
        }
    }
    // The test servers allow a burst of 200 such refusals per source, then 20 a second.
    assert!(denied >= 200 && limited > 0, "denied {denied}, limited {limited}");
    let summary = wait_for_summary(&server, "token.bad_encoding");
    let after = head(&admin);
    assert!(after - before <= 3, "500 garbage requests grew the ledger by {} events", after - before);
    assert_eq!(summary["sources"][0]["source"], "127.0.0.1");
    assert!(summary["sources"][0]["limited"].as_u64().unwrap() > 0, "{summary}");

    // A real agent's refusal is still one event of its own: a replayed proof names its mandate.
    server.clock.advance(time::Duration::seconds(60));
    let t = server.clock.now_secs();
    let once = proof(1, "POST", AUTHORIZE, &token, t, &jti());
    let call = json!({"token": token, "proof": once, "tool": "erp/read_ledger", "arguments": {}});
    let first = anon.post("/v1/authorize", &call).1;
    assert_eq!(first["decision"], "allow", "the source's bucket refilled with the clock: {first}");
    let replay = anon.post("/v1/authorize", &call).1;
    assert_eq!(replay["reasons"][0]["code"], "proof.replayed");
    assert!(replay["ledger_seq"].as_i64().is_some(), "a refusal of a verified mandate is recorded: {replay}");
}

#[test]
fn a_source_holds_at_most_its_connections_and_one_more_is_closed_unread() {
    use std::io::{Read as _, Write as _};
    let (_dir, server) = TestServer::fresh();
    let addr = server.url.trim_start_matches("http://").to_owned();
    // The test servers allow 64 open connections per source (production: 1024).
    let held: Vec<std::net::TcpStream> = (0..64).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut extra = std::net::TcpStream::connect(&addr).unwrap();
    extra.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let _ = extra.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
    let mut buf = [0u8; 64];
    let n = extra.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the 65th connection is closed without an answer: {:?}", String::from_utf8_lossy(&buf[..n]));
    // Closing some frees their places.
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (status, _) = server.admin().get("/healthz");
    assert_eq!(status, 200);
}
