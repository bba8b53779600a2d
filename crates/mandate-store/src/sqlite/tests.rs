//! The SQLite backend against a real database file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::{AgentChange, AgentFilter, CredentialOwner, EventFilter, MandateSelector, Revocation, Store};
use mandate_core::agent::{apply_patch, register, AgentPatch, AgentSpec};
use mandate_core::event::NewEvent;
use mandate_core::event::{chain_hash, GENESIS_HASH};
use mandate_core::human::Human;
use mandate_core::human::HumanSpec;
use mandate_core::id::AgentId;
use mandate_core::id::Principal;
use mandate_core::mandate::MandateRecord;
use serde_json::json;
use time::macros::datetime;

fn spec(id: &str) -> AgentSpec {
    serde_json::from_value(json!({
        "id": id, "name": "Agent", "owner": "user:alice@example.org", "purpose": "Testing",
        "class": "enterprise", "environment": "production", "boundary": {"tools": ["erp/*"]},
        "public_key_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    }))
    .unwrap()
}

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("mandate.db")).await.unwrap();
    (dir, store)
}

fn event(kind: &str, agent: &str) -> NewEvent {
    NewEvent::new(kind, "admin", 1, &json!({})).with_agent(agent)
}

#[tokio::test]
async fn agents_round_trip_with_versions_and_conflicts() {
    let (_dir, store) = open().await;
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
}

#[tokio::test]
async fn events_form_a_hash_chain() {
    let (_dir, store) = open().await;
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
}

#[tokio::test]
async fn credentials_follow_the_human() {
    let (_dir, store) = open().await;
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
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let (dir, store) = open().await;
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (9999, 'future', CURRENT_TIMESTAMP, TRUE, X'00', 0)")
        .execute(&store.writer)
        .await
        .unwrap();
    store.close().await;
    let err = SqliteStore::open(&dir.path().join("mandate.db")).await.unwrap_err();
    assert_eq!(err, StoreError::SchemaTooNew { found: 9999, supported: supported_schema_version() });
}

#[tokio::test]
async fn everything_survives_reopening() {
    let (dir, store) = open().await;
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
    store.close().await;
    let store = SqliteStore::open(&dir.path().join("mandate.db")).await.unwrap();
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(agent));
    assert_eq!(store.meta("demo").await.unwrap().as_deref(), Some("true"));
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

#[tokio::test]
async fn mandates_select_revoke_and_survive() {
    let (dir, store) = open().await;
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
    store.close().await;
    let store = SqliteStore::open(&dir.path().join("mandate.db")).await.unwrap();
    let mut revoked = store.revoked_unexpired(200).await.unwrap();
    revoked.sort();
    assert_eq!(revoked, vec![("m1".to_owned(), 1000), ("m2".to_owned(), 1000)]);
    assert!(store.revoked_unexpired(1000).await.unwrap().is_empty(), "expired revocations need not be remembered");
}

#[tokio::test]
async fn a_deferred_append_rides_with_the_next_batch_or_lands_alone_soon_and_survives_a_close() {
    let (dir, store) = open().await;
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
    store.close().await;
    let reopened = SqliteStore::open(&dir.path().join("mandate.db")).await.unwrap();
    assert_eq!(reopened.events(&all_events()).await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_busy_database_is_retryable_and_the_ledger_writer_tries_its_batch_again() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mandate.db");
    let options =
        crate::GroupCommitOptions { busy_timeout: std::time::Duration::from_millis(30), ..Default::default() };
    let store = SqliteStore::open_with(&path, options).await.unwrap();
    store.append_event(event("test.first", "a")).await.unwrap();
    // Another connection takes the write lock for longer than the writer's busy timeout, then lets go.
    let url = format!("sqlite://{}", path.display());
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        other
    });
    // The first attempt meets BUSY after 30 ms; a retry after the lock is gone commits it.
    let seq = store.append_event(event("test.second", "b")).await.unwrap();
    assert_eq!(seq, 2);
    drop(release.await.unwrap());
    // Outside the writer, the same condition is a `Retryable` error, not an opaque one.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
    let e = store.set_meta("k", "v").await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    store.set_meta("k", "v").await.unwrap();
}
