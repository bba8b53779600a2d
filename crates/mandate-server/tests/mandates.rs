//! Mandates through the real server: grants, delegation by token exchange, revocation, chains and
//! keys, each check with a request that tries to get past it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use mandate_core::jose::{Limits, RawToken};
use mandate_test::{actor_token, agent_jwk, agent_spec, post_form, proof, Client, TestServer, ISSUER};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use time::Duration;

const ALICE: &str = "user:alice@example.org";
const ENDPOINT: &str = "https://mandate.test/oauth/token";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

static JTI: AtomicU32 = AtomicU32::new(0);
fn jti() -> String {
    format!("jti-{}", JTI.fetch_add(1, Ordering::Relaxed))
}

struct Org {
    _dir: tempfile::TempDir,
    server: TestServer,
    alice: Client,
}

fn org() -> Org {
    let (dir, server) = TestServer::fresh();
    let alice = server.human("alice@example.org", json!({"groups": ["finance"]}));
    let admin = server.admin();
    let register = |spec: Value| {
        let (status, body) = admin.post("/v1/agents", &spec);
        assert_eq!(status, 201, "{body}");
    };
    register(agent_spec("finance-close", ALICE, json!({})));
    register(agent_spec(
        "reconciler",
        ALICE,
        json!({"public_key_jwk": agent_jwk(2), "boundary": {"tools": ["erp/read_ledger", "erp/match_entries"], "data_classes": ["financial"], "may_delegate_to": ["auditor-bot", "finance-close"], "max_depth": 1}}),
    ));
    register(agent_spec(
        "auditor-bot",
        ALICE,
        json!({"public_key_jwk": agent_jwk(3), "boundary": {"tools": ["erp/read_ledger"], "data_classes": ["financial"]}}),
    ));
    register(agent_spec(
        "stranger",
        ALICE,
        json!({"public_key_jwk": agent_jwk(4), "boundary": {"tools": ["erp/*"], "data_classes": ["financial"]}}),
    ));
    Org { _dir: dir, server, alice }
}

fn grant_body(overrides: Value) -> Value {
    let mut body = json!({"agent": "finance-close", "purpose": "Prepare the October 2026 close report", "category": "finance.close",
        "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger", "fx/convert"], "resources": ["erp://ledger/2026-10/*"], "data_classes": ["financial"], "actions": ["read"]}],
        "ttl_seconds": 900, "max_calls": 200, "max_depth": 1});
    for (k, v) in overrides.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn grant(org: &Org) -> Value {
    let (status, granted) = org.alice.post("/v1/mandates", &grant_body(json!({})));
    assert_eq!(status, 201, "{granted}");
    granted
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn now(org: &Org) -> i64 {
    org.server.clock.now_secs()
}

fn narrow_details() -> String {
    json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/ap"], "data_classes": ["financial"], "actions": ["read"]}]).to_string()
}

/// A token exchange from the holder of `parent` (key `parent_seed`) to `child` (key `child_seed`).
fn exchange(
    org: &Org,
    parent: &str,
    parent_seed: u8,
    child: &str,
    child_seed: u8,
    details: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let t = now(org);
    let dpop = proof(parent_seed, "POST", ENDPOINT, parent, t, &jti());
    let actor = actor_token(child_seed, child, ENDPOINT, t, &jti());
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", parent),
        ("subject_token_type", JWT),
        ("actor_token", actor.as_str()),
        ("actor_token_type", JWT),
        ("authorization_details", details),
    ];
    form.extend_from_slice(extra);
    post_form(&format!("{}/oauth/token", org.server.url), Some(&dpop), &form)
}

fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("<none>")
}

#[test]
fn a_grant_is_a_signed_key_bound_token_that_verifies_from_the_jwks() {
    let org = org();
    let granted = grant(&org);
    let token = granted["token"].as_str().unwrap();
    let (_, jwks) = org.server.client(None).get("/.well-known/jwks.json");
    let kid = RawToken::decode(token, &Limits::TOKEN).unwrap().kid().unwrap().to_owned();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the signing key is published");
    assert_eq!((jwk["alg"].as_str(), jwk["use"].as_str()), (Some("EdDSA"), Some("sig")));
    let key = mandate_core::jwk::Ed25519PublicJwk::from_json(jwk).unwrap();
    let verified = RawToken::decode(token, &Limits::TOKEN)
        .unwrap()
        .verify_with_key(key.verifying_key(), Some("mandate+jwt"))
        .unwrap();
    let c = verified.claims();
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["aud"], ISSUER);
    assert_eq!(c["sub"], "spiffe://example.org/agent/finance-close");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    assert_eq!(c["cnf"]["jkt"], mandate_core::jwk::Ed25519PublicJwk::from_json(&agent_jwk(1)).unwrap().thumbprint());
    assert_eq!(c["jti"], granted["mandate_id"]);
    assert_eq!(c["mandate"]["chain_id"], granted["chain_id"]);
    assert_eq!(c["mandate"]["root"], ALICE);
    assert_eq!(c["mandate"]["depth"], 1);
    assert_eq!(c["mandate"]["intent"]["category"], "finance.close");
    assert_eq!(c["authorization_details"][0]["tools"], json!(["erp/read_ledger", "fx/convert"]));
    assert!(c.get("act").is_none());
    let (_, meta) = org.server.client(None).get("/.well-known/oauth-authorization-server");
    assert_eq!(meta["token_endpoint"], ENDPOINT);
    assert_eq!(meta["authorization_details_types_supported"], json!(["mcp_tool"]));
    assert_eq!(meta["dpop_signing_alg_values_supported"], json!(["EdDSA"]));
    // The grant is in the ledger.
    let (_, events) = org.server.admin().get("/v1/audit?kind=mandate.granted");
    assert_eq!(events["events"][0]["mandate_id"], granted["mandate_id"]);
    assert_eq!(events["events"][0]["actor"], ALICE);
}

#[test]
fn grants_that_ask_too_much_are_refused_and_recorded() {
    let org = org();
    let admin = org.server.admin();
    let check = |client: &Client, body: Value, status: u16, expected: &str| {
        let (got, problem) = client.post("/v1/mandates", &body);
        assert_eq!((got, code(&problem)), (status, expected), "{problem}");
    };
    check(&admin, grant_body(json!({})), 403, "grant.not_a_human");
    check(&org.alice, grant_body(json!({"agent": "nobody"})), 404, "grant.agent_unknown");
    check(&org.alice, grant_body(json!({"ttl_seconds": 3601})), 400, "grant.invalid_ttl");
    check(&org.alice, grant_body(json!({"max_depth": 3})), 400, "grant.depth_exceeds_boundary");
    check(
        &org.alice,
        grant_body(
            json!({"authorization_details": [{"type": "mcp_tool", "tools": ["crm/*"], "data_classes": ["financial"], "actions": ["read"]}]}),
        ),
        400,
        "grant.outside_boundary",
    );
    check(
        &org.alice,
        grant_body(
            json!({"authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["secret"], "actions": ["read"]}]}),
        ),
        400,
        "grant.outside_boundary",
    );
    check(
        &org.alice,
        grant_body(
            json!({"authorization_details": [{"type": "mcp_tool", "tools": ["erp"], "data_classes": ["financial"], "actions": ["read"]}]}),
        ),
        400,
        "request.invalid_body",
    );
    admin.post("/v1/agents/finance-close/suspend", &json!({}));
    check(&org.alice, grant_body(json!({})), 409, "grant.agent_not_active");
    let (_, events) = admin.get("/v1/audit?kind=mandate.grant_refused");
    let codes: Vec<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap()["code"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            "grant.not_a_human",
            "grant.agent_unknown",
            "grant.invalid_ttl",
            "grant.depth_exceeds_boundary",
            "grant.outside_boundary",
            "grant.outside_boundary",
            "grant.agent_not_active"
        ]
    );
}

#[test]
fn delegation_narrows_and_carries_the_chain() {
    let org = org();
    let root = grant(&org);
    let parent = root["token"].as_str().unwrap();
    let (status, child) = exchange(&org, parent, 1, "reconciler", 2, &narrow_details(), &[]);
    assert_eq!(status, 200, "{child}");
    assert_eq!((child["issued_token_type"].as_str(), child["token_type"].as_str()), (Some(JWT), Some("DPoP")));
    let c = claims(child["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], "spiffe://example.org/agent/reconciler");
    assert_eq!(c["act"], json!({"sub": "spiffe://example.org/agent/finance-close"}));
    assert_eq!(c["mandate"]["parent_id"], root["mandate_id"]);
    assert_eq!(c["mandate"]["chain_id"], root["chain_id"]);
    assert_eq!((c["mandate"]["depth"].as_i64(), c["mandate"]["max_depth"].as_i64()), (Some(2), Some(0)));
    assert_eq!(c["mandate"]["root"], ALICE);
    assert_eq!(c["mandate"]["intent"]["purpose"], "Prepare the October 2026 close report");
    assert_eq!(c["exp"], claims(parent)["exp"], "a child never outlives its parent");
    assert_eq!(c["cnf"]["jkt"], mandate_core::jwk::Ed25519PublicJwk::from_json(&agent_jwk(2)).unwrap().thumbprint());
    // The chain as a tree.
    let (status, tree) = org.alice.get(&format!("/v1/chains/{}", root["chain_id"].as_str().unwrap()));
    assert_eq!(status, 200, "{tree}");
    assert_eq!((tree["agent"].as_str(), tree["state"].as_str()), (Some("finance-close"), Some("active")));
    assert_eq!(tree["children"][0]["agent"], "reconciler");
    assert_eq!(tree["children"][0]["authorization_details"][0]["resources"], json!(["erp://ledger/2026-10/ap"]));
    let (_, events) = org.server.admin().get("/v1/audit?kind=mandate.delegated");
    assert_eq!(events["events"][0]["actor"], "spiffe://example.org/agent/finance-close");
}

#[test]
fn delegations_that_try_to_widen_escape_or_loop_are_refused() {
    let org = org();
    let root = grant(&org);
    let parent = root["token"].as_str().unwrap();
    let check = |result: (u16, Value), error: &str, expected: &str| {
        let (status, body) = result;
        assert_eq!((status, body["error"].as_str().unwrap_or(""), code(&body)), (400, error, expected), "{body}");
    };
    let wide = |tools: &str, resources: &str, classes: &str, actions: &str| {
        format!(
            r#"[{{"type": "mcp_tool", "tools": [{tools}], "resources": [{resources}], "data_classes": [{classes}], "actions": [{actions}]}}]"#
        )
    };
    let ok = ("\"erp/read_ledger\"", "\"erp://ledger/2026-10/ap\"", "\"financial\"", "\"read\"");
    check(
        exchange(&org, parent, 1, "reconciler", 2, &wide("\"erp/*\"", ok.1, ok.2, ok.3), &[]),
        "invalid_scope",
        "delegation.scope_widened",
    );
    check(
        exchange(&org, parent, 1, "reconciler", 2, &wide(ok.0, "\"erp://ledger/*\"", ok.2, ok.3), &[]),
        "invalid_scope",
        "delegation.scope_widened",
    );
    check(
        exchange(&org, parent, 1, "reconciler", 2, &wide(ok.0, ok.1, "\"financial\", \"internal\"", ok.3), &[]),
        "invalid_scope",
        "delegation.scope_widened",
    );
    check(
        exchange(&org, parent, 1, "reconciler", 2, &wide(ok.0, ok.1, ok.2, "\"read\", \"write\""), &[]),
        "invalid_scope",
        "delegation.scope_widened",
    );
    check(
        exchange(&org, parent, 1, "reconciler", 2, &narrow_details(), &[("ttl_seconds", "901")]),
        "invalid_grant",
        "delegation.ttl_exceeds_parent",
    );
    check(
        exchange(&org, parent, 1, "reconciler", 2, &narrow_details(), &[("max_calls", "201")]),
        "invalid_grant",
        "delegation.budget_exceeds_parent",
    );
    check(
        exchange(&org, parent, 1, "reconciler", 2, &narrow_details(), &[("max_depth", "1")]),
        "invalid_grant",
        "delegation.depth_too_large",
    );
    check(
        exchange(&org, parent, 1, "stranger", 4, &narrow_details(), &[]),
        "invalid_grant",
        "delegation.not_allowed_delegate",
    );
    check(exchange(&org, parent, 1, "reconciler", 2, "not json", &[]), "invalid_request", "delegation.invalid_scope");
    // Depth: the child has max_depth 0, so it cannot delegate further even to an allowed agent.
    let (_, child) = exchange(&org, parent, 1, "reconciler", 2, &narrow_details(), &[]);
    let child = child["access_token"].as_str().unwrap().to_owned();
    check(
        exchange(&org, &child, 2, "auditor-bot", 3, &narrow_details(), &[]),
        "invalid_grant",
        "delegation.depth_exhausted",
    );
    // A suspended or retired sub-agent receives nothing.
    org.server.admin().post("/v1/agents/stranger/retire", &json!({}));
    org.server.admin().post("/v1/agents/reconciler/suspend", &json!({}));
    check(
        exchange(&org, parent, 1, "reconciler", 2, &narrow_details(), &[]),
        "invalid_grant",
        "delegation.agent_not_active",
    );
    let (_, events) = org.server.admin().get("/v1/audit?kind=mandate.delegation_refused&limit=100");
    assert_eq!(events["events"].as_array().unwrap().len(), 11, "every refusal is recorded");
}

#[test]
fn a_chain_cannot_loop() {
    let org = org();
    let (status, root) = org.alice.post("/v1/mandates", &grant_body(json!({"max_depth": 2, "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["financial"], "actions": ["read"]}]})));
    assert_eq!(status, 201, "{root}");
    let details =
        json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["financial"], "actions": ["read"]}])
            .to_string();
    let (status, child) = exchange(&org, root["token"].as_str().unwrap(), 1, "reconciler", 2, &details, &[]);
    assert_eq!(status, 200, "{child}");
    // reconciler may delegate to finance-close, but finance-close is already in this chain.
    let (status, body) = exchange(&org, child["access_token"].as_str().unwrap(), 2, "finance-close", 1, &details, &[]);
    assert_eq!((status, code(&body)), (400, "delegation.cycle"), "{body}");
}

#[test]
fn tokens_and_proofs_that_are_not_what_they_claim_are_refused() {
    let org = org();
    let root = grant(&org);
    let parent = root["token"].as_str().unwrap().to_owned();
    let url = format!("{}/oauth/token", org.server.url);
    let send = |subject: &str, dpop: Option<String>, actor: String| {
        post_form(
            &url,
            dpop.as_deref(),
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", subject),
                ("subject_token_type", JWT),
                ("actor_token", &actor),
                ("actor_token_type", JWT),
                ("authorization_details", &narrow_details()),
            ],
        )
    };
    let t = now(&org);
    let actor = || actor_token(2, "reconciler", ENDPOINT, t, &jti());
    let check =
        |(status, body): (u16, Value), expected: &str| assert_eq!((status, code(&body)), (400, expected), "{body}");
    // Proofs: none, from another key, for another URL or method, stale, from the future, replayed.
    check(send(&parent, None, actor()), "proof.missing");
    check(send(&parent, Some(proof(9, "POST", ENDPOINT, &parent, t, &jti())), actor()), "proof.key_mismatch");
    check(
        send(&parent, Some(proof(1, "POST", "https://evil.test/oauth/token", &parent, t, &jti())), actor()),
        "proof.htu_mismatch",
    );
    check(send(&parent, Some(proof(1, "GET", ENDPOINT, &parent, t, &jti())), actor()), "proof.htm_mismatch");
    check(send(&parent, Some(proof(1, "POST", ENDPOINT, &parent, t - 600, &jti())), actor()), "proof.stale");
    check(send(&parent, Some(proof(1, "POST", ENDPOINT, &parent, t + 600, &jti())), actor()), "proof.issued_in_future");
    check(send(&parent, Some(proof(1, "POST", ENDPOINT, "another token", t, &jti())), actor()), "proof.ath_mismatch");
    let once = proof(1, "POST", ENDPOINT, &parent, t, "used-once");
    assert_eq!(send(&parent, Some(once.clone()), actor()).0, 200);
    check(send(&parent, Some(once), actor()), "proof.replayed");
    // Subject tokens: forged (signed by another key), alg none, tampered, garbage.
    let forged = mandate_core::jose::sign(
        &claims(&parent),
        &mandate_test::agent_key(7),
        &mandate_core::jose::SignHeader { typ: "mandate+jwt", kid: "attacker" },
    )
    .unwrap();
    check(send(&forged, Some(proof(1, "POST", ENDPOINT, &forged, t, &jti())), actor()), "token.unknown_kid");
    let kid = RawToken::decode(&parent, &Limits::TOKEN).unwrap().kid().unwrap().to_owned();
    let resigned = mandate_core::jose::sign(
        &claims(&parent),
        &mandate_test::agent_key(7),
        &mandate_core::jose::SignHeader { typ: "mandate+jwt", kid: &kid },
    )
    .unwrap();
    check(send(&resigned, Some(proof(1, "POST", ENDPOINT, &resigned, t, &jti())), actor()), "token.bad_signature");
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"mandate+jwt","kid":"x"}"#);
    let none = format!("{header}.{}.", parent.split('.').nth(1).unwrap());
    check(send(&none, Some(proof(1, "POST", ENDPOINT, &none, t, &jti())), actor()), "token.alg_not_allowed");
    let mut c = claims(&parent);
    c["authorization_details"][0]["tools"] = json!(["*/*"]);
    let tampered = format!(
        "{}.{}.{}",
        parent.split('.').next().unwrap(),
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parent.split('.').nth(2).unwrap()
    );
    check(send(&tampered, Some(proof(1, "POST", ENDPOINT, &tampered, t, &jti())), actor()), "token.bad_signature");
    let huge = "a".repeat(20_000);
    check(send(&huge, Some(proof(1, "POST", ENDPOINT, &huge, t, &jti())), actor()), "token.too_large");
    // Actor assertions: signed by the wrong key, for another audience, about an unknown agent.
    check(
        send(
            &parent,
            Some(proof(1, "POST", ENDPOINT, &parent, t, &jti())),
            actor_token(9, "reconciler", ENDPOINT, t, &jti()),
        ),
        "actor.bad_signature",
    );
    check(
        send(
            &parent,
            Some(proof(1, "POST", ENDPOINT, &parent, t, &jti())),
            actor_token(2, "reconciler", "https://elsewhere.test", t, &jti()),
        ),
        "actor.wrong_audience",
    );
    check(
        send(
            &parent,
            Some(proof(1, "POST", ENDPOINT, &parent, t, &jti())),
            actor_token(2, "ghost", ENDPOINT, t, &jti()),
        ),
        "actor.unknown_agent",
    );
    // An expired parent.
    org.server.clock.advance(Duration::seconds(901 + 30));
    let t = now(&org);
    check(
        send(
            &parent,
            Some(proof(1, "POST", ENDPOINT, &parent, t, &jti())),
            actor_token(2, "reconciler", ENDPOINT, t, &jti()),
        ),
        "token.expired",
    );
}

#[test]
fn revoking_a_parent_mid_chain_cuts_off_its_descendants_and_survives_restart() {
    let org = org();
    let (_, root) = org.alice.post("/v1/mandates", &grant_body(json!({"max_depth": 2})));
    let root_token = root["token"].as_str().unwrap().to_owned();
    let (_, child) = exchange(&org, &root_token, 1, "reconciler", 2, &narrow_details(), &[]);
    let child_id = child["mandate_id"].as_str().unwrap().to_owned();
    let child_token = child["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&child_token)["mandate"]["max_depth"], 1);
    // Revoke the root: the child is refused from the next use on.
    let (status, revoked) = org.alice.post(
        &format!("/v1/mandates/{}/revoke", root["mandate_id"].as_str().unwrap()),
        &json!({"reason": "task cancelled"}),
    );
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 2);
    let (status, body) = exchange(&org, &child_token, 2, "auditor-bot", 3, &narrow_details(), &[]);
    assert_eq!((status, code(&body)), (400, "mandate.revoked"), "{body}");
    let (_, shown) = org.alice.get(&format!("/v1/mandates/{child_id}"));
    assert_eq!(shown["state"], "revoked");
    assert_eq!(shown["revocation"]["reason"], "task cancelled");
    assert_eq!(shown["revocation"]["by"], ALICE);
    // Revocation is persisted and reloaded.
    let server = org.server.restart();
    let org = Org { server, ..org };
    let (status, body) = exchange(&org, &root_token, 1, "reconciler", 2, &narrow_details(), &[]);
    assert_eq!((status, code(&body)), (400, "mandate.revoked"), "{body}");
}

#[test]
fn suspending_an_agent_revokes_every_mandate_it_appears_in() {
    let org = org();
    let root = grant(&org);
    let (_, child) = exchange(&org, root["token"].as_str().unwrap(), 1, "reconciler", 2, &narrow_details(), &[]);
    // finance-close is the root's agent; suspending it cuts off the whole chain below it too.
    let (status, _) = org.alice.post("/v1/agents/finance-close/suspend", &json!({"reason": "incident 42"}));
    assert_eq!(status, 200);
    for id in [root["mandate_id"].as_str().unwrap(), child["mandate_id"].as_str().unwrap()] {
        let (_, m) = org.alice.get(&format!("/v1/mandates/{id}"));
        assert_eq!(m["state"], "revoked", "{m}");
        assert_eq!(m["revocation"]["reason"], "agent `finance-close` suspended");
    }
    // Resuming does not revive them.
    org.server.admin().post("/v1/agents/finance-close/resume", &json!({}));
    let (_, m) = org.alice.get(&format!("/v1/mandates/{}", root["mandate_id"].as_str().unwrap()));
    assert_eq!(m["state"], "revoked");
}

#[test]
fn revoking_everything_a_human_granted_and_who_may_revoke() {
    let org = org();
    let first = grant(&org);
    let second = grant(&org);
    let bob = org.server.human("bob@example.org", json!({}));
    let (status, problem) =
        bob.post(&format!("/v1/mandates/{}/revoke", first["mandate_id"].as_str().unwrap()), &json!({}));
    assert_eq!((status, code(&problem)), (403, "auth.forbidden"));
    assert_eq!(bob.get(&format!("/v1/mandates/{}", first["mandate_id"].as_str().unwrap())).0, 403);
    assert_eq!(bob.post("/v1/humans/alice@example.org/revoke-mandates", &json!({})).0, 403);
    let (status, revoked) =
        org.alice.post("/v1/humans/alice@example.org/revoke-mandates", &json!({"reason": "leaving"}));
    assert_eq!(status, 200, "{revoked}");
    let mut ids: Vec<&str> = revoked["revoked"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![first["mandate_id"].as_str().unwrap(), second["mandate_id"].as_str().unwrap()];
    expected.sort();
    assert_eq!(ids, expected);
    // Revoking again revokes nothing new.
    let (_, again) = org.alice.post(&format!("/v1/chains/{}/revoke", first["chain_id"].as_str().unwrap()), &json!({}));
    assert_eq!(again["revoked"], json!([]));
}

#[test]
fn key_rotation_keeps_live_mandates_verifying() {
    let org = org();
    let before = grant(&org);
    let old_kid =
        RawToken::decode(before["token"].as_str().unwrap(), &Limits::TOKEN).unwrap().kid().unwrap().to_owned();
    let (status, keys) = org.server.admin().post("/v1/keys/rotate", &json!({}));
    assert_eq!(status, 200, "{keys}");
    assert_eq!(org.alice.post("/v1/keys/rotate", &json!({})).0, 403);
    let after = grant(&org);
    let new_kid = RawToken::decode(after["token"].as_str().unwrap(), &Limits::TOKEN).unwrap().kid().unwrap().to_owned();
    assert_ne!(old_kid, new_kid);
    let (_, jwks) = org.server.client(None).get("/.well-known/jwks.json");
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{kids:?}");
    // The mandate signed by the old key still works.
    let (status, body) = exchange(&org, before["token"].as_str().unwrap(), 1, "reconciler", 2, &narrow_details(), &[]);
    assert_eq!(status, 200, "{body}");
    // After the longest mandate lifetime the old key leaves the JWKS.
    org.server.clock.advance(Duration::seconds(3601));
    let (_, jwks) = org.server.client(None).get("/.well-known/jwks.json");
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, vec![new_kid.as_str()]);
}

#[test]
fn deactivating_a_human_revokes_what_they_granted() {
    let org = org();
    let granted = grant(&org);
    let (status, _) = org.server.admin().post("/v1/humans/alice@example.org/deactivate", &json!({}));
    assert_eq!(status, 200);
    let (_, m) = org.server.admin().get(&format!("/v1/mandates/{}", granted["mandate_id"].as_str().unwrap()));
    assert_eq!(m["state"], "revoked", "{m}");
    assert_eq!(m["revocation"]["reason"], "`user:alice@example.org` was deactivated");
}
