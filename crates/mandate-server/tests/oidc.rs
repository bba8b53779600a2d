//! Humans authenticated by OIDC ID tokens through the real server: a local issuer whose JWKS is a file
//! in the test's directory, tokens signed here, grants and approvals decided by the default policies,
//! and every hostile token refused with its code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_core::human::Role;
use mandate_test::oidc::{TestIssuer, IDP_AUDIENCE};
use mandate_test::{agent_spec, proof, Client, TestServer};
use serde_json::{json, Value};

const OWNER: &str = "user:olivia@example.org";
const AUTHORIZE: &str = "https://mandate.test/v1/authorize";

struct Org {
    _dir: tempfile::TempDir,
    server: TestServer,
    idp: TestIssuer,
}

impl Org {
    /// A client presenting a valid ID token for `human` in `groups`.
    fn human(&self, human: &str, groups: &[&str]) -> Client {
        let claims = self.idp.claims(human, groups, self.server.clock.now_secs());
        self.server.client(Some(&self.idp.id_token(&claims)))
    }

    /// The claims of a valid ID token for alice in finance, now.
    fn claims(&self) -> Value {
        self.idp.claims("alice@example.org", &["finance"], self.server.clock.now_secs())
    }
}

/// A server trusting a local IdP whose `finance-approvers` are approvers, with an agent owned by a
/// registered human and four classified tools.
fn org() -> Org {
    let dir = tempfile::tempdir().unwrap();
    let idp = TestIssuer::new(11);
    let mut settings = mandate_test::settings();
    settings.oidc = Some(idp.config(dir.path(), &[(Role::Approver, "finance-approvers")]));
    let server = TestServer::fresh_in(dir.path(), settings);
    server.human("olivia@example.org", json!({"groups": ["finance"]}));
    let admin = server.admin();
    let spec = agent_spec(
        "finance-close",
        OWNER,
        json!({"boundary": {"tools": ["erp/*", "fx/convert", "mail/send"], "data_classes": ["internal", "financial"]}}),
    );
    let (status, body) = admin.post("/v1/agents", &spec);
    assert_eq!(status, 201, "{body}");
    for (tool, class, risk) in [
        ("erp/read_ledger", "financial", "read"),
        ("fx/convert", "internal", "read"),
        ("mail/send", "internal", "egress"),
        ("erp/post_journal", "financial", "write"),
    ] {
        let body = json!({"data_class": class, "risk": risk, "server_environment": "production"});
        let r = admin.raw("PUT", &format!("/v1/tools/{tool}"), Some(&body.to_string()));
        assert_eq!(r.status(), 200);
    }
    Org { _dir: dir, server, idp }
}

fn grant_body(tools: &[&str], data_classes: &[&str], actions: &[&str]) -> Value {
    json!({"agent": "finance-close", "purpose": "Prepare the October 2026 close report", "category": "finance.close",
           "authorization_details": [{"type": "mcp_tool", "tools": tools, "data_classes": data_classes, "actions": actions}]})
}

fn ledger_grant() -> Value {
    grant_body(&["erp/read_ledger"], &["financial"], &["read"])
}

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["code"].as_str().unwrap_or_default())
}

#[test]
fn a_human_with_an_id_token_grants_a_mandate_and_is_the_events_actor() {
    let org = org();
    // Alice is not in the registry: she is accepted just in time, as her ID token describes her.
    let alice = org.human("alice@example.org", &["finance"]);
    let (status, granted) = alice.post("/v1/mandates", &ledger_grant());
    assert_eq!(status, 201, "{granted}");
    let (_, events) = org.server.admin().get("/v1/audit?kind=mandate.granted");
    assert_eq!(events["events"][0]["mandate_id"], granted["mandate_id"]);
    assert_eq!(events["events"][0]["actor"], "user:alice@example.org");
    let (_, mandate) = org.server.admin().get(&format!("/v1/mandates/{}", granted["mandate_id"].as_str().unwrap()));
    assert_eq!(mandate["root"], "user:alice@example.org", "{mandate}");
    // She was not stored.
    let (status, _) = org.server.admin().get("/v1/humans/alice@example.org");
    assert_eq!(status, 404);
}

#[test]
fn an_rs256_id_token_is_accepted_as_well() {
    let org = org();
    let token = org.idp.rs256_token(&org.claims());
    let (status, granted) = org.server.client(Some(&token)).post("/v1/mandates", &ledger_grant());
    assert_eq!(status, 201, "{granted}");
}

#[test]
fn policy_over_the_tokens_groups_refuses_sales_an_erp_grant() {
    let org = org();
    let sam = org.human("sam@example.org", &["sales"]);
    let refused = sam.post("/v1/mandates", &ledger_grant());
    assert_eq!(code(&refused), (403, "grant.not_permitted"), "{}", refused.1);
    // Public or internal tools outside the ERP are anyone's to grant.
    let (status, granted) = sam.post("/v1/mandates", &grant_body(&["fx/convert"], &["internal"], &["read"]));
    assert_eq!(status, 201, "{granted}");
    let (_, events) = org.server.admin().get("/v1/audit?kind=mandate.grant_refused");
    assert_eq!(events["events"][0]["actor"], "user:sam@example.org");
}

#[test]
fn hostile_id_tokens_are_refused_with_their_code() {
    let org = org();
    let now = org.server.clock.now_secs();
    let with = |changes: Value| {
        let mut claims = org.claims();
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let cases = [
        ("expired", org.idp.id_token(&with(json!({"iat": now - 900, "exp": now - 120}))), "oidc.expired"),
        ("wrong audience", org.idp.id_token(&with(json!({"aud": "another-client"}))), "oidc.wrong_audience"),
        (
            "wrong issuer",
            org.idp.id_token(&with(json!({"iss": "https://idp.example.org/realms/other"}))),
            "oidc.wrong_issuer",
        ),
        ("another key", org.idp.forger(12).id_token(&org.claims()), "oidc.bad_signature"),
        ("another issuer's key", TestIssuer::new(13).id_token(&org.claims()), "oidc.unknown_kid"),
        ("alg none", org.idp.unsigned_token(&org.claims()), "oidc.alg_not_allowed"),
        ("unverified email", org.idp.id_token(&with(json!({"email_verified": false}))), "oidc.email_unverified"),
        ("not a human id", org.idp.id_token(&with(json!({"email": "Alice@Example.org"}))), "oidc.invalid_username"),
        ("tampered", org.idp.id_token(&org.claims()).replacen('.', ".e", 1), "oidc.malformed"),
    ];
    for (what, token, expected) in cases {
        let client = org.server.client(Some(&token));
        let refused = client.post("/v1/mandates", &ledger_grant());
        assert_eq!(code(&refused), (401, expected), "{what}: {}", refused.1);
        let response = client.raw("GET", "/v1/approvals", None);
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(
            response.header("www-authenticate"),
            Some(format!(r#"Bearer realm="mandate", error="invalid_token", error_description="{expected}""#).as_str()),
            "{what}"
        );
    }
    // Within the clock skew (60 seconds) an expired token still passes; the audience may be one of several.
    let late = org.idp.id_token(&with(json!({"iat": now - 900, "exp": now - 30})));
    assert_eq!(org.server.client(Some(&late)).get("/v1/approvals").0, 200);
    let several = org.idp.id_token(&with(json!({"aud": ["other", IDP_AUDIENCE], "azp": IDP_AUDIENCE})));
    assert_eq!(org.server.client(Some(&several)).get("/v1/approvals").0, 200);
    // API keys keep working beside ID tokens.
    assert_eq!(org.server.admin().get("/v1/approvals").0, 200);
}

#[test]
fn a_deactivated_human_is_refused_even_with_a_valid_id_token() {
    let org = org();
    org.server.human("dave@example.org", json!({"groups": ["finance"]}));
    let dave = org.human("dave@example.org", &["finance"]);
    assert_eq!(dave.post("/v1/mandates", &ledger_grant()).0, 201);
    let (status, body) = org.server.admin().post("/v1/humans/dave@example.org/deactivate", &json!({}));
    assert_eq!(status, 200, "{body}");
    let refused = dave.post("/v1/mandates", &ledger_grant());
    assert_eq!(code(&refused), (401, "auth.invalid_credentials"));
    assert!(refused.1["detail"].as_str().unwrap().contains("deactivated"), "{}", refused.1);
}

#[test]
fn a_registered_human_takes_groups_from_the_token_and_keeps_registry_roles() {
    let org = org();
    // In the registry Erin is an auditor in finance; her IdP now says sales.
    org.server.human("erin@example.org", json!({"groups": ["finance"], "roles": ["auditor"]}));
    let erin = org.human("erin@example.org", &["sales"]);
    assert_eq!(code(&erin.post("/v1/mandates", &ledger_grant())), (403, "grant.not_permitted"));
    assert_eq!(erin.get("/v1/audit").0, 200, "the registry's auditor role is kept");
    // A human unknown to the registry holds only mapped roles.
    let frank = org.human("frank@example.org", &["finance"]);
    assert_eq!(code(&frank.get("/v1/audit")), (403, "auth.forbidden"));
}

#[test]
fn a_mapped_group_makes_an_approver_and_without_it_a_held_call_cannot_be_approved() {
    let org = org();
    let alice = org.human("alice@example.org", &["finance"]);
    let (status, granted) = alice.post("/v1/mandates", &grant_body(&["erp/post_journal"], &["financial"], &["write"]));
    assert_eq!(status, 201, "{granted}");
    let token = granted["token"].as_str().unwrap();
    let call = json!({"token": token, "proof": proof(1, "POST", AUTHORIZE, token, org.server.clock.now_secs(), "oidc-call-1"),
                      "tool": "erp/post_journal", "arguments": {"account": "6100", "amount": 120}});
    let (status, decision) = org.server.client(None).post("/v1/authorize", &call);
    assert_eq!((status, decision["decision"].as_str()), (200, Some("approval_required")), "{decision}");
    let approval = decision["approval_id"].as_str().unwrap();
    // The agent's mandate is no human's ID token: it cannot approve its own call.
    let refused = org.server.client(Some(token)).post(&format!("/v1/approvals/{approval}/approve"), &json!({}));
    assert_eq!(code(&refused), (401, "oidc.wrong_typ"), "{}", refused.1);
    // Carol's IdP group `finance-approvers` maps to `approver`: she sees the queue and answers it.
    let carol = org.human("carol@example.org", &["finance-approvers"]);
    let (status, queue) = carol.get("/v1/approvals");
    assert_eq!(status, 200, "{queue}");
    assert_eq!(queue["approvals"][0]["id"], approval);
    // Bob has no such group: he sees none of it and may not approve.
    let bob = org.human("bob@example.org", &["finance"]);
    let (status, queue) = bob.get("/v1/approvals");
    assert_eq!((status, queue["approvals"].as_array().unwrap().len()), (200, 0), "{queue}");
    let refused = bob.post(&format!("/v1/approvals/{approval}/approve"), &json!({}));
    assert_eq!(code(&refused), (403, "approval.not_permitted"), "{}", refused.1);
    let (status, approved) = carol.post(&format!("/v1/approvals/{approval}/approve"), &json!({}));
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["decided_by"], "user:carol@example.org");
}

#[test]
fn without_an_issuer_a_jwt_bearer_is_refused_as_not_configured() {
    let (_dir, server) = TestServer::fresh();
    let idp = TestIssuer::new(11);
    let token = idp.id_token(&idp.claims("alice@example.org", &["finance"], server.clock.now_secs()));
    let refused = server.client(Some(&token)).get("/v1/approvals");
    assert_eq!(code(&refused), (401, "auth.oidc_not_configured"), "{}", refused.1);
    // Anything else that is not an API key is an unknown credential, as before.
    let refused = server.client(Some("mnd_a.b.c")).get("/v1/approvals");
    assert_eq!(code(&refused), (401, "auth.invalid_credentials"));
}
