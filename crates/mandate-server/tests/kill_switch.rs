//! The kill switch cannot fail open: revocation and suspension tried against a store that fails on
//! purpose, a caller that goes away mid-revocation, and a revocation written behind a node's back.
//! The engine is driven directly (the same calls the HTTP routes make) over a real SQLite file
//! behind [`FaultyStore`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_core::arguments::CanonicalArguments;
use mandate_engine::caller::Caller;
use mandate_engine::catalogue::Classification;
use mandate_engine::clock::{Clock, ManualClock};
use mandate_engine::decision::{Call, Decision, Presented, ProofBinding, Verdict};
use mandate_engine::keys::KeyRing;
use mandate_engine::mandates::TokenExchangeForm;
use mandate_server::state::AppState;
use mandate_store::{MandateSelector, Revocation, SqliteStore, Store};
use mandate_test::faulty::FaultyStore;
use mandate_test::{actor_token, agent_jwk, agent_spec, proof, settings};
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use time::macros::datetime;

const ALICE: &str = "user:alice@example.org";
const AUTHORIZE: &str = "https://mandate.test/v1/authorize";
const TOKEN_ENDPOINT: &str = "https://mandate.test/oauth/token";

static JTI: AtomicU32 = AtomicU32::new(0);
fn jti() -> String {
    format!("kill-{}", JTI.fetch_add(1, Ordering::Relaxed))
}

struct Org {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    state: AppState,
    store: FaultyStore,
    clock: Arc<ManualClock>,
    alice: Caller,
}

async fn org() -> Org {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("mandate.db");
    let store = FaultyStore::new(SqliteStore::open(&db).await.unwrap());
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-01 09:00 UTC)));
    let keys = KeyRing::open(&dir.path().join("keys"), 3600, clock.now_secs()).unwrap();
    let state = AppState::new(Arc::new(store.clone()), clock.clone(), settings(), Arc::new(keys));
    let classification: Classification =
        serde_json::from_value(json!({"data_class": "financial", "risk": "read", "server_environment": "production"}))
            .unwrap();
    let tool = mandate_core::pattern::ToolName::parse("erp/read_ledger").unwrap();
    state.engine.load_decision_state(&[(tool, classification)]).await.unwrap();
    let now = clock.now();
    let human = serde_json::from_value(json!({"id": "alice@example.org", "groups": ["finance"]})).unwrap();
    let alice = state.create_human(&Caller::Admin, human, now).await.unwrap().human;
    for spec in [
        agent_spec("finance-close", ALICE, json!({})),
        agent_spec(
            "reconciler",
            ALICE,
            json!({"public_key_jwk": agent_jwk(2), "boundary": {"tools": ["erp/read_ledger"], "data_classes": ["financial"]}}),
        ),
    ] {
        state.register_agent(&Caller::Admin, serde_json::from_value(spec).unwrap(), now).await.unwrap();
    }
    Org { _dir: dir, db, state, store, clock, alice: Caller::Human(alice) }
}

impl Org {
    async fn grant(&self) -> (String, String) {
        let request = serde_json::from_value(json!({
            "agent": "finance-close", "purpose": "Prepare the October 2026 close report", "category": "finance.close",
            "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/*"],
                                       "data_classes": ["financial"], "actions": ["read"]}],
            "ttl_seconds": 900, "max_calls": 200, "max_depth": 1}))
        .unwrap();
        let granted = self.state.grant(&self.alice, request).await.unwrap();
        (granted.mandate_id, granted.token)
    }

    /// Delegates from the holder of `parent` (key 1) to the reconciler (key 2).
    async fn delegate(&self, parent: &str) -> (String, String) {
        let r = self.exchange(parent).await.unwrap();
        (r.mandate_id, r.access_token)
    }

    /// The token exchange of [`Org::delegate`], answered as the engine answers it.
    async fn exchange(
        &self,
        parent: &str,
    ) -> Result<mandate_engine::mandates::TokenResponse, mandate_engine::mandates::OAuthError> {
        let t = self.clock.now_secs();
        let form = TokenExchangeForm {
            grant_type: "urn:ietf:params:oauth:grant-type:token-exchange".into(),
            subject_token: Some(parent.into()),
            subject_token_type: Some("urn:ietf:params:oauth:token-type:jwt".into()),
            actor_token: Some(actor_token(2, "reconciler", TOKEN_ENDPOINT, t, &jti())),
            actor_token_type: Some("urn:ietf:params:oauth:token-type:jwt".into()),
            authorization_details: Some(
                json!([{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/ap"],
                        "data_classes": ["financial"], "actions": ["read"]}])
                .to_string(),
            ),
            ttl_seconds: None,
            max_calls: None,
            max_depth: None,
        };
        let dpop = proof(1, "POST", TOKEN_ENDPOINT, parent, t, &jti());
        self.state.delegate(form, &[dpop.as_str()], None).await
    }

    /// One call of `erp/read_ledger` with the key of `seed`, its proof bound to `htu`.
    async fn call_at(&self, token: &str, seed: u8, htu: &str, proof_htu: &str) -> Decision {
        let call = Call {
            tool: "erp/read_ledger".into(),
            arguments: CanonicalArguments::parse(r#"{"period": "2026-10"}"#).unwrap(),
            resource: Some("erp://ledger/2026-10/ap".into()),
            approval_id: None,
            refusal: None,
        };
        let dpop = proof(seed, "POST", proof_htu, token, self.clock.now_secs(), &jti());
        let presented = Presented { token, proof: &dpop, binding: ProofBinding { htm: "POST", htu }, source: None };
        self.state.decide(&presented, &call, false).await
    }

    async fn call(&self, token: &str, seed: u8) -> Decision {
        self.call_at(token, seed, AUTHORIZE, AUTHORIZE).await
    }
}

fn codes(d: &Decision) -> Vec<&str> {
    d.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_whose_reads_fail_after_the_commit_still_denies_the_cached_token() {
    let org = org().await;
    let (id, token) = org.grant().await;
    assert_eq!(org.call(&token, 1).await.verdict, Verdict::Allow, "the token is now in the cache");
    org.store.faults.fail_reads_after_revoke.store(true, Ordering::SeqCst);
    let revoked = org.state.revoke(&Caller::Admin, MandateSelector::Subtree(id.clone()), "incident".into()).await;
    assert_eq!(revoked, Ok(vec![id]), "nothing is read after the commit, so the revocation succeeds");
    let d = org.call(&token, 1).await;
    assert_eq!((d.verdict, codes(&d)), (Verdict::Deny, vec!["mandate.revoked"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_whose_commit_fails_still_denies_on_this_node() {
    let org = org().await;
    let (id, token) = org.grant().await;
    assert_eq!(org.call(&token, 1).await.verdict, Verdict::Allow);
    org.store.faults.fail_writes.store(true, Ordering::SeqCst);
    let revoked = org.state.revoke(&Caller::Admin, MandateSelector::Subtree(id), "incident".into()).await;
    assert_eq!(revoked.map_err(|e| e.code()), Err("internal.error"), "the caller is told it failed");
    org.store.faults.fail_writes.store(false, Ordering::SeqCst);
    let d = org.call(&token, 1).await;
    assert_eq!((d.verdict, codes(&d)), (Verdict::Deny, vec!["mandate.revoked"]), "fail closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_goes_away_mid_revocation_cannot_stop_it() {
    let org = org().await;
    let (id, token) = org.grant().await;
    assert_eq!(org.call(&token, 1).await.verdict, Verdict::Allow);
    org.store.faults.commit_delay_ms.store(300, Ordering::SeqCst);
    // The client disconnects: the handler's future is polled until it waits on the commit, then dropped.
    let revoke = org.state.revoke(&Caller::Admin, MandateSelector::Subtree(id.clone()), "incident".into());
    let dropped = tokio::time::timeout(std::time::Duration::from_millis(50), revoke).await;
    assert!(dropped.is_err(), "the revocation was still committing when its caller went away");
    let d = org.call(&token, 1).await;
    assert_eq!((d.verdict, codes(&d)), (Verdict::Deny, vec!["mandate.revoked"]), "denied at once");
    // And the commit finished on its own task: the revocation is stored, so it survives a restart.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(org.store.mandate(&id).await.unwrap().unwrap().revocation.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_whose_ancestor_was_revoked_in_the_store_behind_the_cache_is_denied() {
    let org = org().await;
    let (root_id, root) = org.grant().await;
    let (_, child) = org.delegate(&root).await;
    assert_eq!(org.call(&child, 2).await.verdict, Verdict::Allow, "the child's token is now in the cache");
    // Another writer (a second node, an operator with the database) revokes the root directly.
    let revocation = Revocation { at: org.clock.now_secs(), by: "admin".into(), reason: "elsewhere".into() };
    let event = mandate_core::event::NewEvent::new("mandate.revoked", "admin", 0, &json!({}));
    org.store.revoke_mandates(std::slice::from_ref(&root_id), &revocation, event).await.unwrap();
    let d = org.call(&child, 2).await;
    assert_eq!((d.verdict, codes(&d)), (Verdict::Deny, vec!["mandate.revoked"]), "{:?}", d.reasons);
    assert_eq!(d.reasons[0].hop, Some(1), "the revoked hop is named");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_and_the_revocation_of_its_mandates_are_one_transaction() {
    let org = org().await;
    let (id, token) = org.grant().await;
    // A fault between the two writes: the revocation's UPDATE fails inside the transaction.
    let mut conn: sqlx::SqliteConnection =
        sqlx::Connection::connect(&format!("sqlite://{}", org.db.display())).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER fail_revoke BEFORE UPDATE OF revoked_at ON mandates BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let agent = mandate_core::id::AgentId::parse("finance-close").unwrap();
    let suspended = org
        .state
        .lifecycle(&org.alice, &agent, mandate_core::lifecycle::LifecycleAction::Suspend, None, org.clock.now())
        .await;
    assert_eq!(suspended.map(|_| ()).map_err(|e| e.code()), Err("internal.error"));
    // Neither happened: the agent is still active in the store, the mandate is not revoked, and the
    // ledger holds no `agent.suspended`.
    assert_eq!(org.store.agent(&agent).await.unwrap().unwrap().state, mandate_core::agent::AgentState::Active);
    assert!(org.store.mandate(&id).await.unwrap().unwrap().revocation.is_none());
    let filter = mandate_store::EventFilter { kind: Some("agent.suspended".into()), limit: 10, ..Default::default() };
    assert!(org.store.events(&filter).await.unwrap().is_empty());
    // This node still refuses the mandate it was asked to cut off (fail closed).
    assert_eq!(org.call(&token, 1).await.verdict, Verdict::Deny);
    // Once the fault clears, the suspension goes through with its revocation, together.
    sqlx::query("DROP TRIGGER fail_revoke").execute(&mut conn).await.unwrap();
    org.state
        .lifecycle(&org.alice, &agent, mandate_core::lifecycle::LifecycleAction::Suspend, None, org.clock.now())
        .await
        .unwrap();
    assert!(org.store.mandate(&id).await.unwrap().unwrap().revocation.is_some());
    assert_eq!(org.store.events(&filter).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_style_caller_binds_proofs_to_its_own_url_through_the_same_entry_point() {
    let org = org().await;
    let (_, token) = org.grant().await;
    let gateway = "https://mandate.test/mcp/erp";
    let d = org.call_at(&token, 1, gateway, gateway).await;
    assert_eq!(d.verdict, Verdict::Allow, "{:?}", d.reasons);
    // A proof made for the authorize endpoint does not pass at the gateway, nor the reverse.
    let d = org.call_at(&token, 1, gateway, AUTHORIZE).await;
    assert_eq!((d.verdict, codes(&d)), (Verdict::Deny, vec!["proof.htu_mismatch"]), "{:?}", d.reasons);
    let d = org.call_at(&token, 1, AUTHORIZE, gateway).await;
    assert_eq!((d.verdict, codes(&d)), (Verdict::Deny, vec!["proof.htu_mismatch"]), "{:?}", d.reasons);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_fault_reaches_the_agent_as_a_documented_code_with_nothing_of_the_inside() {
    let org = org().await;
    let (_, token) = org.grant().await;
    // A token not in the cache yet must be read from the store, which fails.
    org.store.faults.fail_reads.store(true, Ordering::SeqCst);
    let d = org.call(&token, 1).await;
    assert_eq!((d.verdict, codes(&d)), (Verdict::Deny, vec!["internal.error"]));
    assert!(!d.reasons[0].message.contains("injected"), "{:?}", d.reasons);
    org.store.faults.fail_reads.store(false, Ordering::SeqCst);
    // A token exchange whose child mandate cannot be stored is a server error, not a refusal.
    org.store.faults.fail_writes.store(true, Ordering::SeqCst);
    let e = org.exchange(&token).await.unwrap_err();
    assert!(e.is_server_error(), "{e:?}");
    assert_eq!((e.error.as_str(), e.code.as_str()), ("server_error", "internal.error"));
    assert!(!e.error_description.contains("injected"), "{e:?}");
}
