//! The store suite: every test here runs on both backends, each on a fresh database of its own (a
//! SQLite file in a temporary directory; a database created on the test run's PostgreSQL server,
//! see [`crate::testing`]). What the SQLite backend alone does (its one writer connection, its
//! busy handling, the offline verification of its file) is tested beside it; what only PostgreSQL
//! does (several nodes on one database) is at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use crate::decisions::{ApprovalRecord, DecisionStore, OpenedApproval, ToolRecord};
use crate::ledger::{LedgerQuery, Reach, VerifyOptions};
use crate::testing::PostgresDatabase;
use crate::{
    AgentChange, AgentFilter, CredentialOwner, EventFilter, MandateSelector, PostgresStore, Revocation, SqliteStore,
    Store, StoreError,
};
use ed25519_dalek::SigningKey;
use mandate_core::agent::{apply_patch, register, AgentPatch, AgentSpec};
use mandate_core::event::{chain_hash, NewEvent, GENESIS_HASH};
use mandate_core::human::{Human, HumanSpec};
use mandate_core::id::{AgentId, Principal};
use mandate_core::ledger::{Checkpoint, ProblemKind, Trust, VerifiedCheckpoint};
use mandate_core::mandate::MandateRecord;
use serde_json::json;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use time::macros::datetime;

/// Both repositories, as the server holds them.
pub(crate) trait Both: Store + DecisionStore {}
impl<T: Store + DecisionStore> Both for T {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

enum Place {
    File(tempfile::TempDir),
    Database(PostgresDatabase),
}

#[derive(Clone)]
enum Open {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// A fresh store of one backend, and where it lives.
pub(crate) struct TestDb {
    kind: Kind,
    place: Place,
    open: Open,
}

impl TestDb {
    /// `None` when the backend is PostgreSQL and no server is configured (the test is skipped).
    pub(crate) async fn new(kind: Kind) -> Option<Self> {
        let place = match kind {
            Kind::Sqlite => Place::File(tempfile::tempdir().unwrap()),
            Kind::Postgres => Place::Database(PostgresDatabase::create().await.unwrap()?),
        };
        let open = Self::open(&place).await;
        Some(Self { kind, place, open })
    }

    async fn open(place: &Place) -> Open {
        match place {
            Place::File(dir) => Open::Sqlite(SqliteStore::open(&dir.path().join("mandate.db")).await.unwrap()),
            Place::Database(db) => Open::Postgres(PostgresStore::connect(&db.url).await.unwrap()),
        }
    }

    /// Another fresh database of the same backend.
    pub(crate) async fn sibling(&self) -> Self {
        Box::pin(Self::new(self.kind)).await.unwrap()
    }

    pub(crate) fn store(&self) -> Arc<dyn Both> {
        match &self.open {
            Open::Sqlite(s) => Arc::new(s.clone()),
            Open::Postgres(s) => Arc::new(s.clone()),
        }
    }

    pub(crate) async fn close(&self) {
        match &self.open {
            Open::Sqlite(s) => s.close().await,
            Open::Postgres(s) => s.close().await,
        }
    }

    /// Closes the store and opens the same database again.
    pub(crate) async fn reopen(&mut self) {
        self.close().await;
        self.open = Self::open(&self.place).await;
    }

    /// A second node on the same database (PostgreSQL only).
    pub(crate) async fn node(&self) -> PostgresStore {
        match &self.place {
            Place::Database(db) => PostgresStore::connect(&db.url).await.unwrap(),
            Place::File(_) => panic!("several nodes share a PostgreSQL database only"),
        }
    }

    /// Runs statements behind the store's back, as someone with access to the database would.
    pub(crate) async fn tamper(&self, sql: &[&str]) {
        use sqlx::Connection as _;
        match &self.place {
            Place::File(dir) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("mandate.db"));
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
                for statement in sql {
                    sqlx::query(statement).execute(&mut conn).await.unwrap();
                }
                conn.close().await.unwrap();
            }
            Place::Database(db) => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                for statement in sql {
                    sqlx::query(statement).execute(&mut conn).await.unwrap();
                }
                conn.close().await.unwrap();
            }
        }
    }

    /// Verifies through the open store (and, for SQLite, the file read offline, which must agree).
    pub(crate) async fn problem(&self, options: &VerifyOptions) -> Option<(i64, ProblemKind)> {
        let online = self.store().verify(options).await.unwrap();
        if let Place::File(dir) = &self.place {
            let offline = crate::verify_file(&dir.path().join("mandate.db"), options).await.unwrap();
            assert_eq!(online, offline);
        }
        assert_eq!(online.ok, online.problem.is_none());
        online.problem.map(|p| (p.seq, p.kind))
    }

    /// Closes the store and removes its database.
    pub(crate) async fn destroy(self) {
        self.close().await;
        if let Place::Database(db) = self.place {
            db.drop_database().await.unwrap();
        }
    }
}

/// Runs `test` on a fresh database of `kind`, then removes it.
pub(crate) async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = TestDb>,
{
    let Some(db) = TestDb::new(kind).await else { return };
    test(db).await.destroy().await;
}

/// One `#[tokio::test]` per backend for each suite function.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(super::Kind::Sqlite, super::$name).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(super::Kind::Postgres, super::$name).await
                }
            )*
        }
    };
}

on_every_backend!(
    agents_round_trip_with_versions_and_conflicts,
    events_form_a_hash_chain,
    credentials_follow_the_human,
    everything_survives_reopening,
    mandates_select_revoke_and_survive,
    a_deferred_append_rides_with_the_next_batch_or_lands_alone_soon_and_survives_a_close,
    tools_policies_and_allow_counts,
    an_approval_opens_once_per_call_and_reasons_and_at_most_max_pending,
    approvals_move_once,
    concurrent_appends_and_transactions_keep_one_gapless_chain,
    a_batch_after_another_transaction_appended_links_to_its_event,
    close_commits_what_is_queued_and_refuses_later_appends,
    tampering_with_the_ledger_is_named_at_its_sequence_number,
    checkpoints_catch_a_truncated_tail_and_foreign_keys,
    queries_filter_by_what_events_concern,
);

fn spec(id: &str) -> AgentSpec {
    serde_json::from_value(json!({
        "id": id, "name": "Agent", "owner": "user:alice@example.org", "purpose": "Testing",
        "class": "enterprise", "environment": "production", "boundary": {"tools": ["erp/*"]},
        "public_key_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    }))
    .unwrap()
}

fn agent(id: &str) -> mandate_core::agent::Agent {
    register(spec(id), time::OffsetDateTime::UNIX_EPOCH).unwrap()
}

pub(crate) fn event(kind: &str, agent: &str) -> NewEvent {
    NewEvent::new(kind, "admin", 1, &json!({})).with_agent(agent)
}

pub(crate) fn decision(n: usize, agent: &str, chain: &str, mandate: &str, tool: &str, outcome: &str) -> NewEvent {
    let mut e = NewEvent::new(
        "decision",
        &format!("spiffe://example.org/agent/{agent}"),
        1_000 + i64::try_from(n).unwrap(),
        &json!({"n": n, "reasons": [], "data_class": "financial", "root": "user:alice@example.org"}),
    )
    .with_agent(agent);
    e.chain_id = Some(chain.into());
    e.mandate_id = Some(mandate.into());
    e.tool = Some(tool.into());
    e.resource = Some(format!("erp://ledger/{n}"));
    e.decision = Some(outcome.into());
    e
}

/// An event with no subject.
fn ev(kind: &str) -> NewEvent {
    NewEvent::new(kind, "admin", 1, &json!({}))
}

pub(crate) fn any_key() -> VerifyOptions {
    VerifyOptions { trust: Trust::AnyKey, anchors: vec![] }
}

/// A sibling of `db` holding `n` decisions.
async fn filled(db: &TestDb, n: usize) -> TestDb {
    let case = db.sibling().await;
    let store = case.store();
    for i in 0..n {
        store.append_event(decision(i, "finance-close", "c1", "m1", "erp/read_ledger", "allow")).await.unwrap();
    }
    case
}

fn mandate(id: &str, chain: &str, lineage: &[&str], agents: &[&str], root: &str, expires_at: i64) -> MandateRecord {
    serde_json::from_value(json!({
        "id": id, "chain_id": chain, "parent_id": lineage.last(), "depth": lineage.len() + 1,
        "agent": agents.last().unwrap(), "chain_agents": agents, "lineage": lineage, "root": root,
        "intent": {"purpose": "p", "category": "finance.close"},
        "scope": [{"type": "mcp_tool", "tools": ["erp/*"], "data_classes": ["financial"], "actions": ["read"]}],
        "max_calls": 10, "max_depth": 1, "issued_at": 100, "expires_at": expires_at, "key_thumbprint": "t"
    }))
    .unwrap()
}

/// The store of `db` with agent `finance-close` and its mandate `m1` (5 calls, expiring at 100).
async fn with_mandate(db: &TestDb) -> Arc<dyn Both> {
    let store = db.store();
    let agent = register(
        serde_json::from_value(json!({
            "id": "finance-close", "name": "a", "owner": "user:alice@example.org", "purpose": "p", "class": "enterprise",
            "environment": "production", "boundary": {"tools": ["erp/*"]},
            "public_key_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        }))
        .unwrap(),
        time::OffsetDateTime::UNIX_EPOCH,
    )
    .unwrap();
    let registered = AgentChange {
        before: None,
        after: &agent,
        action: "register",
        event: event("a", "finance-close"),
        revoke: None,
    };
    store.record_agent_change(registered).await.unwrap();
    let m: MandateRecord = serde_json::from_value(json!({
        "id": "m1", "chain_id": "m1", "parent_id": null, "depth": 1, "agent": "finance-close",
        "chain_agents": ["finance-close"], "lineage": [], "root": "user:alice@example.org",
        "intent": {"purpose": "p", "category": "c"}, "scope": [], "max_calls": 5, "max_depth": 0,
        "issued_at": 0, "expires_at": 100, "key_thumbprint": "t"
    }))
    .unwrap();
    store.insert_mandate(&m, "k", event("mandate.granted", "finance-close")).await.unwrap();
    store
}

async fn agents_round_trip_with_versions_and_conflicts(db: TestDb) -> TestDb {
    let store = db.store();
    let now = datetime!(2026-11-01 09:00 UTC);
    let agent = register(spec("finance-close"), now).unwrap();
    let change = AgentChange {
        before: None,
        after: &agent,
        action: "register",
        event: event("agent.registered", "finance-close"),
        revoke: None,
    };
    assert_eq!(store.record_agent_change(change.clone()).await.unwrap(), 1);
    assert_eq!(
        store.record_agent_change(change).await.unwrap_err(),
        StoreError::Conflict("agent `finance-close` already exists".into())
    );
    assert_eq!(store.agent(&agent.id).await.unwrap().as_ref(), Some(&agent));

    let patch: AgentPatch = serde_json::from_value(json!({"name": "Renamed"})).unwrap();
    let moved = apply_patch(&agent, patch, now).unwrap().agent;
    let update = AgentChange {
        before: Some(&agent),
        after: &moved,
        action: "update",
        event: event("agent.updated", "finance-close"),
        revoke: None,
    };
    store.record_agent_change(update.clone()).await.unwrap();
    // The same change again was computed from a stale read: optimistic concurrency refuses it.
    assert!(matches!(store.record_agent_change(update).await, Err(StoreError::Conflict(_))));

    let history = store.agent_history(&agent.id).await.unwrap();
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(history[1].before.as_ref().unwrap()["name"], "Agent");
    assert_eq!(history[1].after["name"], "Renamed");

    let other = register(spec("reconciler"), now).unwrap();
    let change = AgentChange {
        before: None,
        after: &other,
        action: "register",
        event: event("agent.registered", "reconciler"),
        revoke: None,
    };
    store.record_agent_change(change).await.unwrap();
    let all = store.agents(&AgentFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), vec!["finance-close", "reconciler"]);
    let filter = AgentFilter { state: Some(mandate_core::agent::AgentState::Suspended), ..AgentFilter::default() };
    assert!(store.agents(&filter).await.unwrap().is_empty());
    db
}

async fn events_form_a_hash_chain(db: TestDb) -> TestDb {
    let store = db.store();
    for i in 0..5 {
        store.append_event(event("test.event", &format!("agent-{i}"))).await.unwrap();
    }
    let events = store.events(&EventFilter { limit: 100, ..EventFilter::default() }).await.unwrap();
    assert_eq!(events.len(), 5);
    let mut prev = GENESIS_HASH.to_owned();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
        assert_eq!(e.prev_hash, prev);
        assert_eq!(e.hash, chain_hash(&prev, e.seq, &e.event));
        prev = e.hash.clone();
    }
    let filtered = store
        .events(&EventFilter { agent: Some(AgentId::parse("agent-3").unwrap()), limit: 100, ..EventFilter::default() })
        .await
        .unwrap();
    assert_eq!(filtered.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4]);
    db
}

async fn credentials_follow_the_human(db: TestDb) -> TestDb {
    let store = db.store();
    let spec: HumanSpec = serde_json::from_value(json!({"id": "alice@example.org", "groups": ["finance"]})).unwrap();
    let mut alice = Human::new(spec, datetime!(2026-11-01 09:00 UTC));
    store.create_human(&alice, "hash-a", event("human.created", "x")).await.unwrap();
    assert!(matches!(
        store.create_human(&alice, "hash-b", event("human.created", "x")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.credential("hash-a").await.unwrap(), Some(CredentialOwner::Human(alice.clone())));
    assert_eq!(store.credential("nope").await.unwrap(), None);
    alice.active = false;
    store.update_human(&alice, event("human.deactivated", "x")).await.unwrap();
    assert_eq!(store.credential("hash-a").await.unwrap(), None, "a deactivated human's key stops working");

    assert!(!store.has_admin_credential().await.unwrap());
    store.set_admin_credential("admin-1", event("admin.credential_set", "x")).await.unwrap();
    store.set_admin_credential("admin-2", event("admin.credential_set", "x")).await.unwrap();
    assert_eq!(store.credential("admin-1").await.unwrap(), None, "setting the admin key replaces the old one");
    assert_eq!(store.credential("admin-2").await.unwrap(), Some(CredentialOwner::Admin));
    db
}

async fn everything_survives_reopening(mut db: TestDb) -> TestDb {
    let store = db.store();
    let agent = register(spec("finance-close"), datetime!(2026-11-01 09:00 UTC)).unwrap();
    let change = AgentChange {
        before: None,
        after: &agent,
        action: "register",
        event: event("agent.registered", "finance-close"),
        revoke: None,
    };
    store.record_agent_change(change).await.unwrap();
    store.set_meta("demo", "true").await.unwrap();
    drop(store);
    db.reopen().await;
    let store = db.store();
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(agent));
    assert_eq!(store.meta("demo").await.unwrap().as_deref(), Some("true"));
    db
}

async fn mandates_select_revoke_and_survive(mut db: TestDb) -> TestDb {
    let store = db.store();
    let now = datetime!(2026-11-01 09:00 UTC);
    for id in ["finance-close", "reconciler", "other"] {
        let agent = register(spec(id), now).unwrap();
        let change = AgentChange {
            before: None,
            after: &agent,
            action: "register",
            event: event("agent.registered", id),
            revoke: None,
        };
        store.record_agent_change(change).await.unwrap();
    }
    let alice = "user:alice@example.org";
    let records = [
        mandate("m1", "m1", &[], &["finance-close"], alice, 1000),
        mandate("m2", "m1", &["m1"], &["finance-close", "reconciler"], alice, 1000),
        mandate("m3", "m3", &[], &["other"], "user:bob@example.org", 1000),
        mandate("m4", "m4", &[], &["finance-close"], alice, 150),
    ];
    for r in &records {
        store.insert_mandate(r, "kid-1", event("mandate.granted", r.agent.as_str())).await.unwrap();
    }
    assert!(matches!(store.insert_mandate(&records[0], "kid-1", event("x", "y")).await, Err(StoreError::Conflict(_))));
    let got = store.mandate("m2").await.unwrap().unwrap();
    assert_eq!((got.record, got.kid.as_str(), got.used_calls, got.revocation), (records[1].clone(), "kid-1", 0, None));
    assert_eq!(store.chain("m1").await.unwrap().len(), 2);

    let ids = |sel: MandateSelector, now: i64| {
        let store = store.clone();
        async move { store.live_mandates(&sel, now).await.unwrap().into_iter().map(|(id, _)| id).collect::<Vec<_>>() }
    };
    assert_eq!(ids(MandateSelector::Subtree("m1".into()), 200).await, vec!["m1", "m2"]);
    assert_eq!(ids(MandateSelector::Subtree("m2".into()), 200).await, vec!["m2"]);
    assert_eq!(ids(MandateSelector::Chain("m1".into()), 200).await, vec!["m1", "m2"]);
    assert_eq!(ids(MandateSelector::Root(Principal::parse(alice).unwrap()), 200).await, vec!["m1", "m2"], "m4 expired");
    assert_eq!(ids(MandateSelector::Root(Principal::parse(alice).unwrap()), 120).await, vec!["m1", "m2", "m4"]);
    assert_eq!(ids(MandateSelector::Agent(AgentId::parse("reconciler").unwrap()), 200).await, vec!["m2"]);
    assert_eq!(ids(MandateSelector::Agent(AgentId::parse("finance-close").unwrap()), 200).await, vec!["m1", "m2"]);

    let revocation = Revocation { at: 300, by: alice.into(), reason: "done".into() };
    store
        .revoke_mandates(&["m1".into(), "m2".into()], &revocation, event("mandate.revoked", "finance-close"))
        .await
        .unwrap();
    let again = Revocation { at: 400, by: "admin".into(), reason: "again".into() };
    store.revoke_mandates(&["m2".into()], &again, event("mandate.revoked", "reconciler")).await.unwrap();
    assert_eq!(store.mandate("m2").await.unwrap().unwrap().revocation, Some(revocation), "the first revocation stands");
    assert!(ids(MandateSelector::Subtree("m1".into()), 200).await.is_empty());
    drop(store);
    db.reopen().await;
    let store = db.store();
    let mut revoked = store.revoked_unexpired(200).await.unwrap();
    revoked.sort();
    assert_eq!(revoked, vec![("m1".to_owned(), 1000), ("m2".to_owned(), 1000)]);
    assert!(store.revoked_unexpired(1000).await.unwrap().is_empty(), "expired revocations need not be remembered");
    db
}

async fn a_deferred_append_rides_with_the_next_batch_or_lands_alone_soon_and_survives_a_close(
    mut db: TestDb,
) -> TestDb {
    let store = db.store();
    let all_events = || EventFilter { limit: 100, ..EventFilter::default() };
    // Alone: durable within the deferral (no awaited append comes).
    store.append_event_deferred(event("tool.call_completed", "a")).await.unwrap();
    tokio::time::sleep(crate::group::DEFER * 5).await;
    let all = store.events(&all_events()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.event.kind.as_str()).collect::<Vec<_>>(), ["tool.call_completed"]);
    // With an awaited append: the awaited one gets its own sequence number back, the deferred one
    // follows it in the same batch, and the chain verifies.
    store.append_event_deferred(event("tool.call_completed", "b")).await.unwrap();
    let seq = store.append_event(event("decision", "c")).await.unwrap();
    let all = store.events(&all_events()).await.unwrap();
    let decision = all.iter().find(|e| e.seq == seq).unwrap();
    assert_eq!(decision.event.kind, "decision");
    assert_eq!(all.len(), 3, "{all:?}");
    // A close commits what is deferred.
    store.append_event_deferred(event("tool.call_completed", "d")).await.unwrap();
    drop(store);
    db.reopen().await;
    let reopened = db.store();
    assert_eq!(reopened.events(&all_events()).await.unwrap().len(), 4);
    db
}

async fn tools_policies_and_allow_counts(db: TestDb) -> TestDb {
    let store = with_mandate(&db).await;
    let mut t = ToolRecord {
        name: "erp/read_ledger".into(),
        server: "erp".into(),
        data_class: "financial".into(),
        risk: "read".into(),
        server_environment: "production".into(),
        source: "config".into(),
        updated_ms: 1,
        updated_by: "system".into(),
    };
    store.upsert_tool(&t, ev("tool.classified")).await.unwrap();
    t.risk = "write".into();
    t.source = "api".into();
    store.upsert_tool(&t, ev("tool.classified")).await.unwrap();
    assert_eq!(store.tool("erp/read_ledger").await.unwrap(), Some(t.clone()));
    assert_eq!(store.tools().await.unwrap(), vec![t]);

    assert_eq!(store.latest_policy().await.unwrap(), None);
    assert_eq!(store.insert_policy_version("a", "sha-a", "system", 1, ev("policy.updated")).await.unwrap(), 1);
    assert_eq!(store.insert_policy_version("b", "sha-b", "admin", 2, ev("policy.updated")).await.unwrap(), 2);
    let latest = store.latest_policy().await.unwrap().unwrap();
    assert_eq!((latest.version, latest.text.as_str(), latest.created_by.as_str()), (2, "b", "admin"));

    for (decision, chain) in [("allow", "m1"), ("allow", "m1"), ("deny", "m1"), ("allow", "m1"), ("allow", "other")] {
        let mut e = ev("decision");
        e.mandate_id = Some(if chain == "m1" { "m1" } else { "m2" }.into());
        e.chain_id = Some(chain.into());
        e.decision = Some(decision.into());
        store.append_event(e).await.unwrap();
    }
    // Only chains that are still live count (chain `other` has no root mandate here; m1's expires at 100).
    assert_eq!(store.allow_counts(99).await.unwrap(), vec![("m1".to_owned(), 3)]);
    assert_eq!(store.allow_counts(100).await.unwrap(), vec![]);
    assert_eq!(store.allow_counts_in_chain("m1").await.unwrap(), vec![("m1".to_owned(), 3)]);
    assert_eq!(store.allow_counts_in_chain("none").await.unwrap(), vec![]);
    // Chain m1's root mandate expires at 100: its allowed calls, in order, until then.
    let calls = store.allowed_calls_of_chains_ending_after(99).await.unwrap();
    assert_eq!(
        calls.iter().map(|c| (c.chain_id.as_str(), c.chain_expires_at)).collect::<Vec<_>>(),
        vec![("m1", 100); 3]
    );
    assert_eq!(store.allowed_calls_of_chains_ending_after(100).await.unwrap(), vec![]);
    let mut e = ev("decision");
    e.agent = Some("finance-close".into());
    e.at_ms = 5_000;
    store.append_event(e).await.unwrap();
    assert_eq!(store.last_activity().await.unwrap(), vec![("finance-close".to_owned(), 5_000)]);
    db
}

async fn an_approval_opens_once_per_call_and_reasons_and_at_most_max_pending(db: TestDb) -> TestDb {
    let store = with_mandate(&db).await;
    let held = |id: &str, args: &str, signals: serde_json::Value, at: i64| ApprovalRecord {
        id: id.into(),
        mandate_id: "m1".into(),
        chain_id: "m1".into(),
        agent: "finance-close".into(),
        tool: "mail/send".into(),
        resource: None,
        arguments_hash: args.into(),
        status: "pending".into(),
        created_ms: at,
        expires_ms: at + 1_000,
        decided_by: None,
        decided_ms: None,
        used_ms: None,
        detail: json!({"reasons": ["egress"], "policies": ["call.hold-egress"], "signals": signals, "risk_score": 0}),
    };
    let open = |a: ApprovalRecord, max: usize| {
        let store = &store;
        async move { store.open_approval(&a, ev("approval.created"), max).await.unwrap() }
    };
    assert!(matches!(open(held("a1", "h1", json!([]), 10), 2).await, OpenedApproval::Created(_)));
    // The same call held for the same reasons: the waiting approval.
    assert_eq!(open(held("a2", "h1", json!([]), 20), 2).await, OpenedApproval::Existing("a1".into()));
    // The same call with a new risk signal: an approval of its own, which the approver sees.
    assert!(matches!(open(held("a3", "h1", json!(["volume"]), 30), 2).await, OpenedApproval::Created(_)));
    // Two wait: a third call is refused, and nothing is stored for it.
    assert_eq!(open(held("a4", "h2", json!([]), 40), 2).await, OpenedApproval::Full(2));
    assert_eq!(store.approval("a4").await.unwrap(), None);
    // Once they have expired they keep nobody waiting.
    assert!(matches!(open(held("a5", "h2", json!([]), 1_500), 2).await, OpenedApproval::Created(_)));
    let again = open(held("a6", "h1", json!([]), 1_600), 2).await;
    assert!(matches!(again, OpenedApproval::Created(_)), "a1 has expired: {again:?}");
    db
}

async fn approvals_move_once(db: TestDb) -> TestDb {
    let store = with_mandate(&db).await;
    let a = ApprovalRecord {
        id: "ap1".into(),
        mandate_id: "m1".into(),
        chain_id: "m1".into(),
        agent: "finance-close".into(),
        tool: "erp/post".into(),
        resource: None,
        arguments_hash: "h".into(),
        status: "pending".into(),
        created_ms: 10,
        expires_ms: 1000,
        decided_by: None,
        decided_ms: None,
        used_ms: None,
        detail: json!({"reasons": ["call.hold-egress"]}),
    };
    assert!(matches!(store.open_approval(&a, ev("approval.created"), 1).await.unwrap(), OpenedApproval::Created(_)));
    assert!(store
        .transition_approval("ap1", "pending", "approved", Some("user:carol@example.org"), 20, ev("approval.approved"))
        .await
        .unwrap()
        .is_some());
    // A second decision finds it no longer pending.
    assert!(store
        .transition_approval("ap1", "pending", "denied", Some("user:x@example.org"), 21, ev("approval.denied"))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .transition_approval("ap1", "approved", "used", None, 30, ev("approval.used"))
        .await
        .unwrap()
        .is_some());
    assert!(
        store.transition_approval("ap1", "approved", "used", None, 31, ev("approval.used")).await.unwrap().is_none(),
        "used once"
    );
    let got = store.approval("ap1").await.unwrap().unwrap();
    assert_eq!(
        (got.status.as_str(), got.decided_by.as_deref(), got.decided_ms, got.used_ms),
        ("used", Some("user:carol@example.org"), Some(20), Some(30))
    );
    assert_eq!(store.approvals(Some("pending"), 10).await.unwrap(), vec![]);
    assert_eq!(store.approvals(None, 10).await.unwrap().len(), 1);
    db
}

async fn concurrent_appends_and_transactions_keep_one_gapless_chain(mut db: TestDb) -> TestDb {
    let store = db.store();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for n in 0..100 {
                let e = decision(w * 1000 + n, "finance-close", "c1", "m1", "erp/read_ledger", "allow");
                let seq = store.append_event(e.clone()).await.unwrap();
                acked.push((seq, e));
            }
            acked
        }));
    }
    // State changes that append inside their own transactions, interleaved with the batches.
    let registrations = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..20 {
                let a = agent(&format!("agent-{i}"));
                let event = NewEvent::new("agent.registered", "admin", 1, &json!({})).with_agent(a.id.as_str());
                let change = AgentChange { before: None, after: &a, action: "register", event, revoke: None };
                seqs.push(store.record_agent_change(change).await.unwrap());
            }
            seqs
        })
    };
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let registered = registrations.await.unwrap();

    let total = acked.len() + registered.len();
    let seqs: HashSet<i64> = acked.iter().map(|(s, _)| *s).chain(registered.iter().copied()).collect();
    assert_eq!(seqs.len(), total, "every append got its own sequence number");
    let report = store.verify(&any_key()).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.head.unwrap().seq, i64::try_from(total).unwrap(), "no gaps");
    // Every acknowledged event is in the ledger at the sequence number it was given.
    let mut after = 0;
    let mut stored = std::collections::HashMap::new();
    loop {
        let q = LedgerQuery { after_seq: Some(after), limit: 10_000, ..Default::default() };
        let page = store.query_events(&q).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(page.into_iter().map(|e| (e.seq, e.event)));
    }
    for (seq, event) in &acked {
        assert_eq!(stored.get(seq), Some(event), "seq {seq}");
    }
    drop(store);
    // Opened again, the store sees the same verified chain.
    db.reopen().await;
    let again = db.store();
    assert!(again.verify(&any_key()).await.unwrap().ok);
    db
}

async fn a_batch_after_another_transaction_appended_links_to_its_event(db: TestDb) -> TestDb {
    let store = db.store();
    assert_eq!(store.append_event(decision(1, "a", "c", "m", "t/t", "allow")).await.unwrap(), 1);
    // The group writer remembers seq 1 as the head; this transaction appends seq 2 behind its back.
    let a = agent("agent-1");
    let event = NewEvent::new("agent.registered", "admin", 1, &json!({})).with_agent(a.id.as_str());
    let change = AgentChange { before: None, after: &a, action: "register", event, revoke: None };
    assert_eq!(store.record_agent_change(change).await.unwrap(), 2);
    assert_eq!(store.append_event(decision(3, "a", "c", "m", "t/t", "allow")).await.unwrap(), 3);
    assert_eq!(store.append_event(decision(4, "a", "c", "m", "t/t", "allow")).await.unwrap(), 4);
    assert_eq!(db.problem(&any_key()).await, None);
    db
}

async fn close_commits_what_is_queued_and_refuses_later_appends(mut db: TestDb) -> TestDb {
    let store = db.store();
    let pending: Vec<_> = (0..50)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.append_event(decision(n, "a", "c", "m", "t/t", "allow")).await })
        })
        .collect();
    tokio::task::yield_now().await;
    db.close().await;
    let mut acked = 0;
    for p in pending {
        if p.await.unwrap().is_ok() {
            acked += 1;
        }
    }
    assert!(store.append_event(decision(99, "a", "c", "m", "t/t", "allow")).await.is_err());
    db.reopen().await;
    let report = db.store().verify(&any_key()).await.unwrap();
    assert!(report.ok);
    assert_eq!(report.events, acked, "exactly the acknowledged appends are stored");
    db
}

async fn tampering_with_the_ledger_is_named_at_its_sequence_number(db: TestDb) -> TestDb {
    let options = any_key();

    let case = filled(&db, 10).await;
    let _store = case.store();
    assert_eq!(case.problem(&options).await, None);
    case.tamper(&["UPDATE events SET tool = 'erp/post_entry' WHERE seq = 4"]).await;
    assert_eq!(case.problem(&options).await, Some((4, ProblemKind::EventEdited)));

    case.destroy().await;

    let case = filled(&db, 10).await;
    let _store = case.store();
    case.tamper(&["DELETE FROM events WHERE seq = 7"]).await;
    assert_eq!(case.problem(&options).await, Some((7, ProblemKind::EventMissing)));

    case.destroy().await;

    let case = filled(&db, 10).await;
    let store = case.store();
    case.tamper(&[
        "UPDATE events SET seq = -1 WHERE seq = 3",
        "UPDATE events SET seq = 3 WHERE seq = 6",
        "UPDATE events SET seq = 6 WHERE seq = -1",
    ])
    .await;
    let report = store.verify(&options).await.unwrap();
    let p = report.problem.unwrap();
    assert_eq!((p.seq, p.kind), (3, ProblemKind::EventMoved));
    assert!(p.message.contains("written as 6"), "{}", p.message);

    // Swapping only the contents, keeping the hashes in place, reads as an edit.
    case.destroy().await;

    let case = filled(&db, 10).await;
    let _store = case.store();
    case.tamper(
        &[
            "UPDATE events SET detail = (SELECT detail FROM events WHERE seq = 8), at_ms = (SELECT at_ms FROM events WHERE seq = 8) WHERE seq = 2",
        ],
    )
    .await;
    assert_eq!(case.problem(&options).await, Some((2, ProblemKind::EventEdited)));
    case.destroy().await;
    db
}

async fn checkpoints_catch_a_truncated_tail_and_foreign_keys(db: TestDb) -> TestDb {
    let key = SigningKey::from_bytes(&[5; 32]);
    let case = filled(&db, 10).await;
    let store = case.store();
    let head = store.head().await.unwrap().unwrap();
    assert_eq!(head.seq, 10);
    let cp = Checkpoint::sign(&head, 5_000, &key);
    store.insert_checkpoint(&cp).await.unwrap();
    store.insert_checkpoint(&cp).await.unwrap();
    assert_eq!(store.checkpoints(0, 10).await.unwrap(), vec![cp.clone()]);
    assert_eq!(store.latest_checkpoint().await.unwrap(), Some(cp.clone()));
    let ours = VerifyOptions { trust: Trust::Keys([cp.kid.clone()].into_iter().collect()), anchors: vec![] };
    let report = store.verify(&ours).await.unwrap();
    assert!(report.ok && report.checkpoints_matched == 1 && report.checkpoints_stored == 1, "{report:?}");
    assert_eq!(report.trust, "server_keys");
    // Another key's checkpoint is refused when the server's keys are known.
    let theirs = VerifyOptions { trust: Trust::Keys(HashSet::from(["someone-else".to_owned()])), anchors: vec![] };
    assert_eq!(case.problem(&theirs).await, Some((10, ProblemKind::CheckpointUntrusted)));

    // The tail is dropped, checkpoints included: the exported checkpoint still names the first loss.
    let exported: VerifiedCheckpoint = cp.verify().unwrap();
    case.tamper(&["DELETE FROM events WHERE seq > 6", "DELETE FROM ledger_checkpoints"]).await;
    assert_eq!(case.problem(&any_key()).await, None, "without a checkpoint the shorter chain is valid");
    let anchored = VerifyOptions { trust: Trust::AnyKey, anchors: vec![exported] };
    assert_eq!(case.problem(&anchored).await, Some((7, ProblemKind::Truncated)));

    // A stored checkpoint row with a broken key is reported, not an error.
    case.tamper(
        &["INSERT INTO ledger_checkpoints (seq, hash, at_ms, kid, public_key_jwk, signature) VALUES (3, 'x', 1, 'k', '{}', 's')"],
    )
    .await;
    assert_eq!(case.problem(&any_key()).await, Some((3, ProblemKind::CheckpointInvalid)));
    case.destroy().await;
    db
}

async fn queries_filter_by_what_events_concern(db: TestDb) -> TestDb {
    let store = db.store();
    let a = agent("finance-close");
    let b = agent("reconciler");
    for x in [&a, &b] {
        let event = NewEvent::new("agent.registered", "admin", 1, &json!({})).with_agent(x.id.as_str());
        store
            .record_agent_change(AgentChange { before: None, after: x, action: "register", event, revoke: None })
            .await
            .unwrap();
    }
    let mandate = |id: &str, parent: Option<&str>, agent: &str, agents: &[&str]| -> MandateRecord {
        serde_json::from_value(json!({
            "id": id, "chain_id": "c1", "parent_id": parent, "depth": agents.len(), "agent": agent,
            "chain_agents": agents, "lineage": parent.map(|p| vec![p]).unwrap_or_default(),
            "root": "user:alice@example.org", "intent": {"purpose": "p", "category": "c"}, "scope": [],
            "max_calls": 5, "max_depth": 1, "issued_at": 0, "expires_at": 100, "key_thumbprint": "t"
        }))
        .unwrap()
    };
    let issued = |kind: &str, agent: &str, id: &str| {
        let mut e = NewEvent::new(kind, "user:alice@example.org", 2, &json!({})).with_agent(agent);
        e.chain_id = Some("c1".into());
        e.mandate_id = Some(id.into());
        e
    };
    let granted = issued("mandate.granted", "finance-close", "c1");
    store.insert_mandate(&mandate("c1", None, "finance-close", &["finance-close"]), "k", granted).await.unwrap();
    let delegated = issued("mandate.delegated", "reconciler", "m2");
    store
        .insert_mandate(&mandate("m2", Some("c1"), "reconciler", &["finance-close", "reconciler"]), "k", delegated)
        .await
        .unwrap();
    store.append_event(decision(10, "finance-close", "c1", "c1", "erp/read_ledger", "allow")).await.unwrap();
    store.append_event(decision(20, "reconciler", "c1", "m2", "erp/match", "deny")).await.unwrap();
    store.append_event(decision(30, "reconciler", "c1", "m2", "erp/read_ledger", "allow")).await.unwrap();
    store.append_event(decision(40, "stranger", "c9", "m9", "erp/read_ledger", "allow")).await.unwrap();

    let seqs = |q: LedgerQuery| {
        let store = store.clone();
        async move { store.query_events(&q).await.unwrap().iter().map(|e| e.seq).collect::<Vec<_>>() }
    };
    let q = LedgerQuery::default;
    assert_eq!(seqs(q()).await, (1..=8).collect::<Vec<_>>());
    assert_eq!(seqs(LedgerQuery { agent: Some("reconciler".into()), ..q() }).await, vec![2, 4, 6, 7]);
    assert_eq!(seqs(LedgerQuery { chain: Some("c1".into()), ..q() }).await, vec![3, 4, 5, 6, 7]);
    assert_eq!(seqs(LedgerQuery { mandate: Some("m2".into()), ..q() }).await, vec![4, 6, 7]);
    assert_eq!(seqs(LedgerQuery { tool: Some("erp/read_ledger".into()), ..q() }).await, vec![5, 7, 8]);
    assert_eq!(seqs(LedgerQuery { decision: Some("deny".into()), ..q() }).await, vec![6]);
    assert_eq!(seqs(LedgerQuery { kind: Some("mandate.delegated".into()), ..q() }).await, vec![4]);
    assert_eq!(seqs(LedgerQuery { human: Some("user:alice@example.org".into()), ..q() }).await, vec![3, 4, 5, 6, 7]);
    assert_eq!(seqs(LedgerQuery { since_ms: Some(1_020), until_ms: Some(1_040), ..q() }).await, vec![6, 7]);
    assert_eq!(seqs(LedgerQuery { after_seq: Some(6), ..q() }).await, vec![7, 8]);
    assert_eq!(seqs(LedgerQuery { newest: true, limit: 2, ..q() }).await, vec![7, 8]);
    assert_eq!(seqs(LedgerQuery { before_seq: Some(3), newest: true, limit: 5, ..q() }).await, vec![1, 2]);
    // Reach follows authority down the chain: the reconciler's calls are in the finance agent's reach.
    let reach = |r: Reach| LedgerQuery { reach: Some(r), ..q() };
    assert_eq!(seqs(reach(Reach::Agent("finance-close".into()))).await, vec![1, 3, 4, 5, 6, 7]);
    assert_eq!(seqs(reach(Reach::Agent("reconciler".into()))).await, vec![2, 4, 6, 7]);
    assert_eq!(seqs(reach(Reach::Root("user:alice@example.org".into()))).await, vec![3, 4, 5, 6, 7]);
    assert_eq!(store.chains_reached(&Reach::Agent("reconciler".into())).await.unwrap(), vec!["c1".to_owned()]);
    assert_eq!(store.chains_reached(&Reach::Root("user:bob@example.org".into())).await.unwrap(), Vec::<String>::new());
    db
}

/// What only a shared database does: several nodes writing at once.
mod several_nodes {
    use super::*;

    async fn on_postgres<F, Fut>(test: F)
    where
        F: FnOnce(TestDb) -> Fut,
        Fut: Future<Output = TestDb>,
    {
        run(Kind::Postgres, test).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_appending_at_once_keep_one_gapless_chain() {
        on_postgres(|db| async move {
            let nodes = [db.node().await, db.node().await, db.node().await];
            let mut tasks = Vec::new();
            for (n, node) in nodes.iter().enumerate() {
                for w in 0..6 {
                    let node = node.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut acked = Vec::new();
                        for i in 0..40 {
                            let e = decision(n * 10_000 + w * 100 + i, "finance-close", "c1", "m1", "erp/x", "allow");
                            acked.push((node.append_event(e.clone()).await.unwrap(), e));
                        }
                        acked
                    }));
                }
                // Transactions that change state and append, on every node, between the batches.
                let node = node.clone();
                tasks.push(tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for i in 0..8 {
                        let a = agent(&format!("agent-{n}-{i}"));
                        let e = event("agent.registered", a.id.as_str());
                        let change =
                            AgentChange { before: None, after: &a, action: "register", event: e.clone(), revoke: None };
                        acked.push((node.record_agent_change(change).await.unwrap(), e));
                    }
                    acked
                }));
            }
            let mut acked = Vec::new();
            for t in tasks {
                acked.extend(t.await.unwrap());
            }
            let seqs: HashSet<i64> = acked.iter().map(|(s, _)| *s).collect();
            assert_eq!(seqs.len(), acked.len(), "every append got its own sequence number");
            let report = db.store().verify(&any_key()).await.unwrap();
            assert!(report.ok, "{report:?}");
            assert_eq!(report.head.unwrap().seq, i64::try_from(acked.len()).unwrap(), "no gaps");
            let all = db.store().events(&EventFilter { limit: 10_000, ..EventFilter::default() }).await.unwrap();
            let stored: std::collections::HashMap<i64, NewEvent> = all.into_iter().map(|e| (e.seq, e.event)).collect();
            for (seq, e) in &acked {
                assert_eq!(stored.get(seq), Some(e), "seq {seq} holds what its writer was told");
            }
            for node in &nodes {
                node.close().await;
            }
            db
        })
        .await
    }

    fn held(id: &str, arguments_hash: &str) -> ApprovalRecord {
        ApprovalRecord {
            id: id.into(),
            mandate_id: "m1".into(),
            chain_id: "m1".into(),
            agent: "finance-close".into(),
            tool: "erp/post".into(),
            resource: None,
            arguments_hash: arguments_hash.into(),
            status: "pending".into(),
            created_ms: 10,
            expires_ms: 1_000,
            decided_by: None,
            decided_ms: None,
            used_ms: None,
            detail: json!({"reasons": ["call.hold-financial-write"]}),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_approval_queue_and_an_approval_are_exact_across_nodes() {
        on_postgres(|db| async move {
            with_mandate(&db).await;
            let (a, b) = (db.node().await, db.node().await);
            // Both nodes hold a different call of the same mandate at once, with room for one.
            for round in 0..10 {
                let (x, y) = (
                    held(&format!("x{round}"), &format!("hx{round}")),
                    held(&format!("y{round}"), &format!("hy{round}")),
                );
                let (ra, rb) = tokio::join!(
                    a.open_approval(&x, ev("approval.created"), round + 1),
                    b.open_approval(&y, ev("approval.created"), round + 1)
                );
                let created =
                    [ra.unwrap(), rb.unwrap()].iter().filter(|o| matches!(o, OpenedApproval::Created(_))).count();
                assert_eq!(created, 1, "round {round}: one queue, one free place");
            }
            // The same approval used from two nodes at once: once.
            let id = db.store().approvals(Some("pending"), 1).await.unwrap()[0].id.clone();
            assert!(a
                .transition_approval(
                    &id,
                    "pending",
                    "approved",
                    Some("user:carol@example.org"),
                    20,
                    ev("approval.approved")
                )
                .await
                .unwrap()
                .is_some());
            let (ua, ub) = tokio::join!(
                a.transition_approval(&id, "approved", "used", None, 30, ev("approval.used")),
                b.transition_approval(&id, "approved", "used", None, 30, ev("approval.used"))
            );
            assert_eq!([ua.unwrap(), ub.unwrap()].iter().filter(|u| u.is_some()).count(), 1, "used once");
            assert!(db.store().verify(&any_key()).await.unwrap().ok);
            a.close().await;
            b.close().await;
            db
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_connection_is_retryable_and_the_store_recovers() {
        on_postgres(|db| async move {
            let store = db.store();
            store.append_event(ev("test.first")).await.unwrap();
            store.set_meta("k", "v").await.unwrap();
            // The database server ends every session of this database (a failover, an operator).
            let admin = db.node().await;
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_all(admin.pool())
            .await
            .unwrap();
            assert!(!killed.is_empty());
            admin.close().await;
            // The first statement on a dead connection fails as retryable, never as an opaque error...
            let mut errors = Vec::new();
            let mut recovered = false;
            for _ in 0..20 {
                match store.meta("k").await {
                    Ok(v) => {
                        assert_eq!(v.as_deref(), Some("v"));
                        recovered = true;
                        break;
                    }
                    Err(e) => errors.push(e),
                }
            }
            assert!(recovered, "{errors:?}");
            assert!(errors.iter().all(StoreError::is_retryable), "{errors:?}");
            // ...and the ledger writer carries on, on a fresh connection, after the head it reads.
            let mut seq = None;
            for _ in 0..20 {
                if let Ok(s) = store.append_event(ev("test.after")).await {
                    seq = Some(s);
                    break;
                }
            }
            assert_eq!(seq, Some(2));
            store.ready().await.unwrap();
            db
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_from_a_newer_version_is_refused() {
        on_postgres(|db| async move {
            let node = db.node().await;
            sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (9999, 'future', now(), TRUE, '\\x00', 0)")
                .execute(node.pool())
                .await
                .unwrap();
            node.close().await;
            let Place::Database(pg) = &db.place else { unreachable!() };
            let err = PostgresStore::connect(&pg.url).await.unwrap_err();
            assert_eq!(err, StoreError::SchemaTooNew { found: 9999, supported: crate::postgres::supported_schema_version() });
            db
        })
        .await
    }

    /// An allow of `claim` on `node`, recorded as a deny naming what the claim got when it loses.
    async fn decide(node: &PostgresStore, claim: crate::Claim) -> (i64, crate::ClaimOutcome) {
        let mut allow = ev("decision");
        allow.decision = Some("allow".into());
        let refuse: crate::Refuse = Box::new(|outcome, event| {
            let mut e = event.clone();
            e.decision = Some("deny".into());
            e.detail = json!({"lost": format!("{outcome:?}")}).to_string();
            e
        });
        node.append_claimed(allow, claim, refuse).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claims_raced_from_three_nodes_grant_exactly_the_budget_and_a_proof_once() {
        use crate::{Claim, ClaimOutcome, EventFilter};
        on_postgres(|db| async move {
            let store = db.store();
            for id in ["finance-close", "reconciler"] {
                let a = agent(id);
                let change =
                    AgentChange { before: None, after: &a, action: "register", event: event("r", id), revoke: None };
                store.record_agent_change(change).await.unwrap();
            }
            let alice = "user:alice@example.org";
            let root = mandate("m1", "m1", &[], &["finance-close"], alice, 1000);
            let mut child = mandate("m2", "m1", &["m1"], &["finance-close", "reconciler"], alice, 1000);
            child.max_calls = 4;
            store.insert_mandate(&root, "k", ev("mandate.granted")).await.unwrap();
            store.insert_mandate(&child, "k", ev("mandate.delegated")).await.unwrap();
            let nodes = [db.node().await, db.node().await, db.node().await];
            // 30 calls down the chain from three nodes at once, each with a proof of its own: the
            // claims ride in the nodes' ledger batches, several to a batch.
            let mut tasks = Vec::new();
            for (n, node) in nodes.iter().enumerate() {
                for i in 0..10 {
                    let node = node.clone();
                    tasks.push(tokio::spawn(async move {
                        let claim = Claim {
                            replay: Some((format!("dpop:k:{n}-{i}"), 2_000)),
                            mandates: vec!["m1".into(), "m2".into()],
                        };
                        decide(&node, claim).await
                    }));
                }
            }
            let mut outcomes = Vec::new();
            for t in tasks {
                outcomes.push(t.await.unwrap());
            }
            let granted = outcomes.iter().filter(|(_, o)| *o == ClaimOutcome::Granted).count();
            assert_eq!(granted, 4, "the child's budget, exactly: {outcomes:?}");
            assert!(outcomes
                .iter()
                .all(|(_, o)| *o == ClaimOutcome::Granted || *o == ClaimOutcome::Exhausted("m2".into())));
            // Each answer is the event recorded: an allow where the claim was won, else its deny.
            let decisions = store
                .events(&EventFilter { kind: Some("decision".into()), limit: 100, ..Default::default() })
                .await
                .unwrap();
            assert_eq!(decisions.len(), 30);
            for (seq, outcome) in &outcomes {
                let e = decisions.iter().find(|e| e.seq == *seq).expect("the answer's event is in the ledger");
                let want = if *outcome == ClaimOutcome::Granted { "allow" } else { "deny" };
                assert_eq!(e.event.decision.as_deref(), Some(want), "event {seq}: {outcome:?}");
            }
            let pool = nodes[0].pool().clone();
            let used = |id: &'static str| {
                let pool = pool.clone();
                async move {
                    sqlx::query_scalar::<_, i64>("SELECT used FROM mandate_budgets WHERE id = $1")
                        .bind(id)
                        .fetch_one(&pool)
                        .await
                        .unwrap()
                }
            };
            assert_eq!((used("m1").await, used("m2").await), (4, 4), "a refused claim counts nothing");
            // The root's own calls take the rest of its budget, and no more.
            let root_only = |key: &str| Claim { replay: Some((key.into(), 2_000)), mandates: vec!["m1".into()] };
            for i in 0..6 {
                assert_eq!(decide(&nodes[i % 3], root_only(&format!("r{i}"))).await.1, ClaimOutcome::Granted);
            }
            assert_eq!(decide(&nodes[0], root_only("r6")).await.1, ClaimOutcome::Exhausted("m1".into()));
            assert_eq!(used("m1").await, 10);
            // The same proof on another node: refused, whatever its budget.
            assert_eq!(decide(&nodes[1], root_only("dpop:k:0-0")).await.1, ClaimOutcome::Replayed);
            // One proof twice in one batch: the second is a replay.
            let (a, b) = tokio::join!(decide(&nodes[2], root_only("t")), decide(&nodes[2], root_only("t")));
            let mut got = [a.1, b.1];
            got.sort_by_key(|o| format!("{o:?}"));
            assert_eq!(got, [ClaimOutcome::Exhausted("m1".into()), ClaimOutcome::Replayed]);
            // Proof ids are kept only while the proof could be presented.
            assert_eq!(nodes[0].prune_claims(1_999).await.unwrap(), 0);
            assert!(nodes[0].prune_claims(2_001).await.unwrap() >= 30);
            // A mandate the database does not hold is never a grant, and fails nothing else.
            let ghost = Claim { replay: None, mandates: vec!["ghost".into()] };
            assert_eq!(decide(&nodes[0], ghost).await.1, ClaimOutcome::Unknown("ghost".into()));
            let ghosts = Claim { replay: None, mandates: vec!["m1".into(), "ghost".into()] };
            assert_eq!(decide(&nodes[0], ghosts).await.1, ClaimOutcome::Unknown("ghost".into()));
            assert_eq!(used("m1").await, 10);
            assert!(store.verify(&any_key()).await.unwrap().ok);
            for node in &nodes {
                node.close().await;
            }
            db
        })
        .await
    }

    #[tokio::test]
    async fn a_batch_predicted_wrong_leaves_nothing_and_is_committed_the_long_way() {
        use crate::{Claim, ClaimOutcome};
        on_postgres(|db| async move {
            let store = db.store();
            let a = agent("finance-close");
            let change = AgentChange {
                before: None,
                after: &a,
                action: "register",
                event: event("r", "finance-close"),
                revoke: None,
            };
            store.record_agent_change(change).await.unwrap();
            let alice = "user:alice@example.org";
            let mut one = mandate("m1", "m1", &[], &["finance-close"], alice, 1000);
            one.max_calls = 1;
            let mut roomy = mandate("m2", "m2", &[], &["finance-close"], alice, 1000);
            roomy.max_calls = 100;
            store.insert_mandate(&one, "k", ev("mandate.granted")).await.unwrap();
            store.insert_mandate(&roomy, "k", ev("mandate.granted")).await.unwrap();
            let claim = |key: &str, id: &str| Claim { replay: Some((key.into(), 2_000)), mandates: vec![id.into()] };
            let (node, other) = (db.node().await, db.node().await);
            // The node's first batch reads the head; from its second on it predicts it.
            assert_eq!(decide(&node, claim("k0", "m2")).await.1, ClaimOutcome::Granted);
            assert_eq!(decide(&node, claim("k1", "m1")).await.1, ClaimOutcome::Granted);
            // Another node appends: the head the first one left has moved (MD001).
            assert_eq!(decide(&other, claim("k2", "m2")).await.1, ClaimOutcome::Granted);
            assert_eq!(decide(&node, claim("k3", "m2")).await.1, ClaimOutcome::Granted);
            // After a miss the node takes the long way for a few batches, then predicts again.
            let cold = crate::postgres::COLD_AFTER_MISS as usize;
            for i in 0..=cold {
                assert_eq!(decide(&node, claim(&format!("c{i}"), "m2")).await.1, ClaimOutcome::Granted);
            }
            // A batch with a claim that loses (MD002): the proof ids of the attempt were rolled
            // back with it, so the winner's proof is fresh, and the loser's is kept.
            let (lost, won) = tokio::join!(decide(&node, claim("k4", "m1")), decide(&node, claim("k5", "m2")));
            assert_eq!((lost.1, won.1), (ClaimOutcome::Exhausted("m1".into()), ClaimOutcome::Granted));
            assert_eq!(decide(&other, claim("k5", "m2")).await.1, ClaimOutcome::Replayed);
            assert_eq!(decide(&other, claim("k4", "m2")).await.1, ClaimOutcome::Replayed);
            let used: i64 = sqlx::query_scalar("SELECT used FROM mandate_budgets WHERE id = 'm2'")
                .fetch_one(node.pool())
                .await
                .unwrap();
            assert_eq!(used as usize, 4 + cold + 1, "k0, k2, k3, k5 and the c's, each once");
            // Every answer's sequence number holds the event as answered, in one verified chain.
            let events = store
                .events(&crate::EventFilter { kind: Some("decision".into()), limit: 100, ..Default::default() })
                .await
                .unwrap();
            assert_eq!(events.len(), 8 + cold + 1);
            assert_eq!(events.iter().filter(|e| e.event.decision.as_deref() == Some("allow")).count(), 5 + cold + 1);
            assert!(store.verify(&any_key()).await.unwrap().ok);
            node.close().await;
            other.close().await;
            db
        })
        .await
    }

    #[test]
    fn the_ledger_lock_in_the_schema_is_the_one_documented() {
        for schema in [
            include_str!("../migrations/postgres/0001_schema.sql"),
            include_str!("../migrations/postgres/0003_claims_in_batches.sql"),
        ] {
            assert!(schema.contains(&format!("pg_advisory_xact_lock({})", crate::LEDGER_LOCK)));
        }
        assert_eq!(crate::LEDGER_LOCK.to_be_bytes(), *b"\0mandate");
    }
}
