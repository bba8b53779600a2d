//! The ledger through the real server: a chain's story and blast radius built from real grants,
//! delegations, decisions and approvals; every filter of `GET /v1/audit`; checkpoints; exports that
//! verify offline; and tampering with the SQLite file under a running server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mandate_core::event::Event;
use mandate_core::ledger::{Checkpoint, ProblemKind, Verifier};
use mandate_test::{actor_token, agent_jwk, agent_spec, post_form, proof, Client, TestServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};

const ALICE: &str = "user:alice@example.org";
const AUTHORIZE: &str = "https://mandate.test/v1/authorize";
const TOKEN_ENDPOINT: &str = "https://mandate.test/oauth/token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

static JTI: AtomicU32 = AtomicU32::new(0);
fn jti() -> String {
    format!("ledger-{}", JTI.fetch_add(1, Ordering::Relaxed))
}

struct Org {
    dir: tempfile::TempDir,
    server: TestServer,
    alice: Client,
    carol: Client,
    auditor: Client,
}

/// Alice grants finance-close a mandate; it delegates to reconciler; calls are allowed, denied and
/// held; Carol approves the held one and it is used. Returns the org and the chain id.
fn story() -> (Org, String, String) {
    let (dir, server) = TestServer::fresh();
    let alice = server.human("alice@example.org", json!({"groups": ["finance"]}));
    let carol = server.human("carol@example.org", json!({"groups": ["security"], "roles": ["approver"]}));
    let auditor = server.human("audrey@example.org", json!({"roles": ["auditor"]}));
    let admin = server.admin();
    for spec in [
        agent_spec(
            "finance-close",
            ALICE,
            json!({"boundary": {"tools": ["erp/*", "mail/send"], "data_classes": ["internal", "financial"], "may_delegate_to": ["reconciler"], "max_depth": 2}}),
        ),
        agent_spec(
            "reconciler",
            ALICE,
            json!({"public_key_jwk": agent_jwk(2), "boundary": {"tools": ["erp/read_ledger"], "data_classes": ["financial"]}}),
        ),
    ] {
        let (status, body) = admin.post("/v1/agents", &spec);
        assert_eq!(status, 201, "{body}");
    }
    for (tool, class, risk) in [("erp/read_ledger", "financial", "read"), ("mail/send", "internal", "egress")] {
        let body = json!({"data_class": class, "risk": risk, "server_environment": "production"});
        let r = admin.raw("PUT", &format!("/v1/tools/{tool}"), Some(&body.to_string()));
        assert_eq!(r.status(), 200);
    }
    let (status, granted) = alice.post(
        "/v1/mandates",
        &json!({"agent": "finance-close", "purpose": "Prepare the October 2026 close report", "category": "finance.close",
            "authorization_details": [
                {"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/*"], "data_classes": ["financial"], "actions": ["read"]},
                {"type": "mcp_tool", "tools": ["mail/send"], "data_classes": ["internal"], "actions": ["egress"]}],
            "max_calls": 50, "max_depth": 1}),
    );
    assert_eq!(status, 201, "{granted}");
    let org = Org { dir, server, alice, carol, auditor };
    let parent = granted["token"].as_str().unwrap().to_owned();
    let t = org.server.clock.now_secs();
    let details = json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/ap/*"], "data_classes": ["financial"], "actions": ["read"]}]).to_string();
    let (dpop, actor) =
        (proof(1, "POST", TOKEN_ENDPOINT, &parent, t, &jti()), actor_token(2, "reconciler", TOKEN_ENDPOINT, t, &jti()));
    let (status, child) = post_form(
        &format!("{}/oauth/token", org.server.url),
        Some(&dpop),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", &parent),
            ("subject_token_type", JWT),
            ("actor_token", &actor),
            ("actor_token_type", JWT),
            ("authorization_details", &details),
        ],
    );
    assert_eq!(status, 200, "{child}");
    let child = child["access_token"].as_str().unwrap().to_owned();
    assert_eq!(call(&org, &parent, 1, "erp/read_ledger", Some("erp://ledger/2026-10/gl"), None)["decision"], "allow");
    assert_eq!(
        call(&org, &child, 2, "erp/read_ledger", Some("erp://ledger/2026-10/ap/inv"), None)["decision"],
        "allow"
    );
    assert_eq!(call(&org, &child, 2, "erp/read_ledger", Some("erp://ledger/2026-11/ap/inv"), None)["decision"], "deny");
    let held = call(&org, &parent, 1, "mail/send", None, None);
    assert_eq!(held["decision"], "approval_required", "{held}");
    let approval = held["approval_id"].as_str().unwrap().to_owned();
    let (status, body) = org.carol.post(&format!("/v1/approvals/{approval}/approve"), &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(call(&org, &parent, 1, "mail/send", None, Some(&approval))["decision"], "allow");
    (org, granted["chain_id"].as_str().unwrap().to_owned(), approval)
}

fn call(org: &Org, token: &str, seed: u8, tool: &str, resource: Option<&str>, approval: Option<&str>) -> Value {
    let t = org.server.clock.now_secs();
    let body = json!({"token": token, "proof": proof(seed, "POST", AUTHORIZE, token, t, &jti()), "tool": tool,
        "arguments": {"to": "controller@outside.example"}, "resource": resource, "approval_id": approval});
    let (status, decision) = org.server.client(None).post("/v1/authorize", &body);
    assert_eq!(status, 200, "{decision}");
    assert!(decision["ledger_seq"].as_i64().is_some(), "every decision names its event: {decision}");
    decision
}

fn seqs(client: &Client, query: &str) -> Vec<i64> {
    let (status, page) = client.get(&format!("/v1/audit{query}"));
    assert_eq!(status, 200, "{query}: {page}");
    page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

fn events(client: &Client, query: &str) -> Vec<Value> {
    let (status, page) = client.get(&format!("/v1/audit{query}"));
    assert_eq!(status, 200, "{query}: {page}");
    page["events"].as_array().unwrap().clone()
}

#[test]
fn the_story_of_a_chain_reads_as_a_tree_of_grants_delegations_and_calls() {
    let (org, chain, approval) = story();
    let (status, story) = org.auditor.get(&format!("/v1/audit/chains/{chain}"));
    assert_eq!(status, 200, "{story}");
    assert_eq!(story["root"], ALICE);
    assert_eq!(story["decisions"], json!({"allow": 3, "deny": 1, "approval_required": 1}));
    let root = &story["tree"];
    assert_eq!(root["mandate"]["agent"], "finance-close");
    assert_eq!(root["issued"]["kind"], "mandate.granted");
    assert_eq!(root["issued"]["actor"], ALICE);
    let kinds: Vec<(&str, Option<&str>)> = root["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["decision"].as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("decision", Some("allow")),
            ("approval.created", None),
            ("decision", Some("approval_required")),
            ("drift.alert", None),
            ("approval.approved", Some("approved")),
            ("approval.used", None),
            ("decision", Some("allow")),
        ]
    );
    assert_eq!(root["events"][3]["detail"]["signals"], json!(["exfiltration"]));
    assert_eq!(root["events"][3]["detail"]["decision_seq"], root["events"][2]["seq"]);
    assert_eq!(root["events"][4]["detail"]["approval_id"], approval.as_str());
    let child = &root["children"][0];
    assert_eq!(child["mandate"]["agent"], "reconciler");
    assert_eq!(child["issued"]["kind"], "mandate.delegated");
    assert_eq!(child["issued"]["detail"]["from"], "finance-close");
    let denied = &child["events"][1];
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["detail"]["reasons"][0]["code"], "scope.resource_not_in_mandate");
    assert_eq!(root["children"].as_array().unwrap().len(), 1);

    let (status, problem) = org.auditor.get("/v1/audit/chains/mdt_nothing");
    assert_eq!((status, problem["code"].as_str()), (404, Some("chain.not_found")));
    let (status, _) = org.alice.get(&format!("/v1/audit/chains/{chain}"));
    assert_eq!(status, 403, "the ledger is for admins and auditors");
}

#[test]
fn the_blast_radius_follows_authority_down_the_chain() {
    let (org, chain, approval) = story();
    let (status, r) = org.auditor.get("/v1/audit/blast-radius?agent=finance-close");
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["chains"], json!([chain]));
    assert_eq!(r["humans"], json!([ALICE]));
    assert_eq!(r["decisions"], json!({"allow": 3, "deny": 1, "approval_required": 1}));
    let agents: Vec<(&str, i64, &Value)> = r["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["agent"].as_str().unwrap(), a["depth"].as_i64().unwrap(), &a["from"]))
        .collect();
    assert_eq!(agents, [("finance-close", 1, &json!([ALICE])), ("reconciler", 2, &json!(["finance-close"]))]);
    let tools: Vec<(&str, &Value)> =
        r["tools"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap(), &t["calls"])).collect();
    assert_eq!(
        tools,
        [
            ("erp/read_ledger", &json!({"allow": 2, "deny": 1, "approval_required": 0})),
            ("mail/send", &json!({"allow": 1, "deny": 0, "approval_required": 1}))
        ]
    );
    let resources: Vec<&str> = r["resources"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(resources, ["erp://ledger/2026-10/ap/inv", "erp://ledger/2026-10/gl", "erp://ledger/2026-11/ap/inv"]);
    let classes: Vec<&str> =
        r["data_classes"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(classes, ["financial", "internal"]);
    assert_eq!(r["approvals"][0]["approval_id"], approval.as_str());
    assert_eq!(r["approvals"][0]["status"], "used");
    assert_eq!(r["approvals"][0]["decided_by"], "user:carol@example.org");
    assert_eq!(r["live_mandates"].as_array().unwrap().len(), 2);

    // The sub-agent's radius does not climb back up to its delegator.
    let (_, sub) = org.auditor.get("/v1/audit/blast-radius?agent=reconciler");
    assert_eq!(sub["agents"].as_array().unwrap().len(), 1);
    assert_eq!(sub["decisions"], json!({"allow": 1, "deny": 1, "approval_required": 0}));
    let (_, by_human) = org.auditor.get("/v1/audit/blast-radius?human=alice@example.org");
    assert_eq!(by_human["decisions"], r["decisions"]);
    let (_, by_chain) = org.auditor.get(&format!("/v1/audit/blast-radius?chain={chain}"));
    assert_eq!(by_chain["agents"], r["agents"]);
    // Revoking the chain leaves nothing live; `since` after everything leaves no calls.
    let (status, _) = org.alice.post(&format!("/v1/chains/{chain}/revoke"), &json!({"reason": "incident 42"}));
    assert_eq!(status, 200);
    let (_, after) = org.auditor.get("/v1/audit/blast-radius?agent=finance-close");
    assert_eq!(after["live_mandates"], json!([]));
    org.server.clock.advance(time::Duration::hours(1));
    let (_, later) = org.auditor.get("/v1/audit/blast-radius?agent=finance-close&since=2026-11-01T10:00:00Z");
    assert_eq!(later["events"], 0);

    for bad in ["", "?agent=finance-close&human=alice@example.org", "?human=Alice", "?agent=x&since=yesterday"] {
        let (status, problem) = org.auditor.get(&format!("/v1/audit/blast-radius{bad}"));
        assert_eq!(status, 400, "{bad}: {problem}");
    }
}

#[test]
fn every_filter_of_the_audit_query() {
    let (org, chain, _) = story();
    let a = &org.auditor;
    let all = events(a, "?limit=10000");
    let expect = |pred: &dyn Fn(&Value) -> bool| -> Vec<i64> {
        all.iter().filter(|e| pred(e)).map(|e| e["seq"].as_i64().unwrap()).collect()
    };
    assert_eq!(seqs(a, "?agent=reconciler&limit=1000"), expect(&|e| e["agent"] == "reconciler"));
    assert_eq!(seqs(a, &format!("?chain={chain}&limit=1000")), expect(&|e| e["chain_id"] == chain.as_str()));
    let child = all.iter().find(|e| e["kind"] == "mandate.delegated").unwrap()["mandate_id"].as_str().unwrap();
    assert_eq!(seqs(a, &format!("?mandate={child}")), expect(&|e| e["mandate_id"] == child));
    assert_eq!(seqs(a, "?tool=mail/send"), expect(&|e| e["tool"] == "mail/send"));
    assert_eq!(seqs(a, "?decision=deny"), expect(&|e| e["decision"] == "deny"));
    assert_eq!(seqs(a, "?kind=decision&decision=allow").len(), 3);
    // A human's events: the chains they started, what they did, and what was done about them.
    let alice = seqs(a, "?human=alice@example.org&limit=1000");
    assert_eq!(alice, seqs(a, "?human=user:alice@example.org&limit=1000"));
    assert_eq!(alice, expect(&|e| e["chain_id"] == chain.as_str() || e["actor"] == ALICE || e["resource"] == ALICE));
    assert!(seqs(a, "?human=bob@example.org").is_empty());
    // Time and sequence ranges, and the newest page.
    let last = *all.last().unwrap()["seq"].as_i64().as_ref().unwrap();
    assert_eq!(seqs(a, "?since=2026-11-01T09:00:00Z&limit=10000").len(), all.len());
    assert!(seqs(a, "?until=2026-11-01T09:00:00Z").is_empty());
    assert_eq!(seqs(a, &format!("?after={}", last - 2)), [last - 1, last]);
    assert_eq!(seqs(a, "?newest=true&limit=2"), [last - 1, last]);
    assert_eq!(seqs(a, "?before=3&newest=true&limit=10"), [1, 2]);
    for bad in ["?since=yesterday", "?agent=Not_An_Id", "?human=nobody", "?limit=0", "?colour=red", "?chain="] {
        let (status, problem) = a.get(&format!("/v1/audit{bad}"));
        assert_eq!((status, problem["code"].as_str()), (400, Some("request.invalid_query")), "{bad}: {problem}");
    }
}

#[test]
fn exports_stream_every_event_and_the_jsonl_verifies_offline() {
    let (org, _, _) = story();
    let admin = org.server.admin();
    let (status, cp) = admin.post("/v1/audit/checkpoints", &json!({}));
    assert_eq!(status, 200, "{cp}");
    let checkpoint: Checkpoint = serde_json::from_value(cp.clone()).unwrap();
    let r = org.auditor.raw("GET", "/v1/audit/export", None);
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let text = r.into_string().unwrap();
    let exported: Vec<Event> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(exported.len(), events(&org.auditor, "?limit=10000").len());
    let mut v = Verifier::new();
    v.add_checkpoint(&checkpoint.verify().unwrap());
    for e in &exported {
        v.push(e).unwrap();
    }
    assert_eq!(v.finish().unwrap().unwrap().seq, checkpoint.seq);

    let ocsf = org.auditor.raw("GET", "/v1/audit/export?format=ocsf&kind=decision", None).into_string().unwrap();
    let lines: Vec<Value> = ocsf.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5);
    for l in &lines {
        assert_eq!((l["class_uid"].as_u64(), l["category_uid"].as_u64()), (Some(6003), Some(6)));
        assert_eq!(l["metadata"]["product"]["name"], "Mandate");
        assert!(l["time"].as_i64().is_some() && l["actor"]["user"]["uid"].as_str().is_some());
        assert!(l["unmapped"]["mandate"]["hash"].as_str().is_some());
    }
    let (status, problem) = org.auditor.get("/v1/audit/export?format=csv");
    assert_eq!((status, problem["code"].as_str()), (400, Some("request.invalid_query")));
    let (status, _) = org.alice.get("/v1/audit/export");
    assert_eq!(status, 403);
}

#[test]
fn checkpoints_are_signed_by_the_server_and_taken_every_n_events() {
    let (org, _, _) = story();
    let admin = org.server.admin();
    for n in 0..5 {
        org.server.human(&format!("extra{n}@example.org"), json!({}));
    }
    // The test server checkpoints every 20 events; the story and the humans wrote more than that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        let (status, page) = org.auditor.get("/v1/audit/checkpoints");
        assert_eq!(status, 200);
        if !page["checkpoints"].as_array().unwrap().is_empty() {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "no checkpoint after 20 events");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let first: Checkpoint = serde_json::from_value(listed["checkpoints"][0].clone()).unwrap();
    assert!(first.seq >= 20);
    first.verify().unwrap();
    let (_, keys) = admin.get("/v1/keys");
    let kids: Vec<&str> = keys["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&first.kid.as_str()), "signed with the server's mandate key");
    // After a rotation the old checkpoints still verify, and new ones use the new key.
    let (status, _) = admin.post("/v1/keys/rotate", &json!({}));
    assert_eq!(status, 200);
    org.server.human("dave@example.org", json!({}));
    let (_, newest) = admin.post("/v1/audit/checkpoints", &json!({}));
    assert_ne!(newest["kid"].as_str(), Some(first.kid.as_str()));
    let (_, latest) = org.auditor.get("/v1/audit/checkpoints/latest");
    assert_eq!(latest, newest);
    let (_, report) = org.auditor.get("/v1/audit/verify");
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["checkpoints_matched"].as_u64().unwrap() >= 2);
    assert_eq!(report["trust"], "server_keys");
}

/// Runs SQL against the server's database from outside, as an attacker with the file (or with
/// access to the PostgreSQL database) would.
fn tamper(org: &Org, sql: &[&str]) {
    let path = mandate_server::database_path(org.dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        if let Some(url) = mandate_test::database_url(org.dir.path()) {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            for s in sql {
                sqlx::query(s).execute(&mut c).await.unwrap();
            }
            c.close().await.unwrap();
            return;
        }
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        for s in sql {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
    });
}

fn problem(client: &Client, checkpoint: Option<&Value>) -> (i64, String) {
    let (status, report) = match checkpoint {
        None => client.get("/v1/audit/verify"),
        Some(c) => client.post("/v1/audit/verify", &json!({"checkpoints": [c]})),
    };
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], false, "{report}");
    (report["problem"]["seq"].as_i64().unwrap(), report["problem"]["kind"].as_str().unwrap().to_owned())
}

#[test]
fn tampering_under_a_running_server_is_named_at_its_sequence_number() {
    let (org, _, _) = story();
    let a = &org.auditor;
    let (_, report) = a.get("/v1/audit/verify");
    assert_eq!(report["ok"], true, "{report}");
    let (_, exported) = org.server.admin().post("/v1/audit/checkpoints", &json!({}));
    let head = exported["seq"].as_i64().unwrap();
    let code = |k: ProblemKind| k.code().to_owned();

    tamper(&org, &["UPDATE events SET actor = actor || 'x' WHERE seq = 15"]);
    assert_eq!(problem(a, None), (15, code(ProblemKind::EventEdited)));
    tamper(&org, &["UPDATE events SET actor = substr(actor, 1, length(actor) - 1) WHERE seq = 15"]);
    let (_, report) = a.get("/v1/audit/verify");
    assert_eq!(report["ok"], true, "putting the value back restores the hash");

    tamper(
        &org,
        &[
            "UPDATE events SET seq = -1 WHERE seq = 12",
            "UPDATE events SET seq = 12 WHERE seq = 14",
            "UPDATE events SET seq = 14 WHERE seq = -1",
        ],
    );
    assert_eq!(problem(a, None), (12, code(ProblemKind::EventMoved)));
    tamper(
        &org,
        &[
            "UPDATE events SET seq = -1 WHERE seq = 12",
            "UPDATE events SET seq = 12 WHERE seq = 14",
            "UPDATE events SET seq = 14 WHERE seq = -1",
        ],
    );

    tamper(&org, &["CREATE TABLE saved AS SELECT * FROM events WHERE seq = 9", "DELETE FROM events WHERE seq = 9"]);
    assert_eq!(problem(a, None), (9, code(ProblemKind::EventMissing)));
    tamper(&org, &["INSERT INTO events SELECT * FROM saved", "DROP TABLE saved"]);

    // The tail is cut and the stored checkpoints with it: only the exported checkpoint knows.
    tamper(&org, &[&format!("DELETE FROM events WHERE seq > {}", head - 5), "DELETE FROM ledger_checkpoints"]);
    let (_, report) = a.get("/v1/audit/verify");
    assert_eq!(report["ok"], true, "a shorter chain is still a chain: {report}");
    assert_eq!(problem(a, Some(&exported)), (head - 4, code(ProblemKind::Truncated)));

    let mut forged = exported.clone();
    forged["seq"] = json!(head - 5);
    let (status, problem) = a.post("/v1/audit/verify", &json!({"checkpoints": [forged]}));
    assert_eq!((status, problem["code"].as_str()), (400, Some("ledger.checkpoint_invalid")));
}
