//! The ledger over a real SQLite file: group commit under concurrency, tampering with the file, and
//! the query filters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::ledger::{Ledger, LedgerQuery, Reach};
use crate::{AgentChange, Store};
use ed25519_dalek::SigningKey;
use mandate_core::agent::{register, AgentSpec};
use mandate_core::event::NewEvent;
use mandate_core::ledger::{ProblemKind, Trust, VerifiedCheckpoint};
use mandate_core::mandate::MandateRecord;
use serde_json::json;
use sqlx::Connection as _;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

async fn open() -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mandate.db");
    let store = SqliteStore::open(&path).await.unwrap();
    (dir, path, store)
}

fn decision(n: usize, agent: &str, chain: &str, mandate: &str, tool: &str, outcome: &str) -> NewEvent {
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

fn any_key() -> VerifyOptions {
    VerifyOptions { trust: Trust::AnyKey, anchors: vec![] }
}

async fn tamper(path: &Path, sql: &[&str]) {
    let mut conn = sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path)).await.unwrap();
    for statement in sql {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
}

/// Verifies online (through the open store) and offline (the file, read-only); both must agree.
async fn problem(store: &SqliteStore, path: &Path, options: &VerifyOptions) -> Option<(i64, ProblemKind)> {
    let online = store.verify(options).await.unwrap();
    let offline = verify_file(path, options).await.unwrap();
    assert_eq!(online, offline);
    assert_eq!(online.ok, online.problem.is_none());
    online.problem.map(|p| (p.seq, p.kind))
}

fn agent(id: &str) -> mandate_core::agent::Agent {
    let spec: AgentSpec = serde_json::from_value(json!({
        "id": id, "name": "a", "owner": "user:alice@example.org", "purpose": "p", "class": "enterprise",
        "environment": "production", "boundary": {"tools": ["erp/*"]},
        "public_key_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    }))
    .unwrap();
    register(spec, time::OffsetDateTime::UNIX_EPOCH).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_and_transactions_keep_one_gapless_chain() {
    let (_dir, path, store) = open().await;
    let store = Arc::new(store);
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
    // A fresh open of the file sees the same verified chain.
    let again = SqliteStore::open(&path).await.unwrap();
    assert!(again.verify(&any_key()).await.unwrap().ok);
}

#[tokio::test]
async fn a_batch_after_another_transaction_appended_links_to_its_event() {
    let (_dir, path, store) = open().await;
    assert_eq!(store.append_event(decision(1, "a", "c", "m", "t/t", "allow")).await.unwrap(), 1);
    // The group writer remembers seq 1 as the head; this transaction appends seq 2 behind its back.
    let a = agent("agent-1");
    let event = NewEvent::new("agent.registered", "admin", 1, &json!({})).with_agent(a.id.as_str());
    let change = AgentChange { before: None, after: &a, action: "register", event, revoke: None };
    assert_eq!(store.record_agent_change(change).await.unwrap(), 2);
    assert_eq!(store.append_event(decision(3, "a", "c", "m", "t/t", "allow")).await.unwrap(), 3);
    assert_eq!(store.append_event(decision(4, "a", "c", "m", "t/t", "allow")).await.unwrap(), 4);
    assert_eq!(problem(&store, &path, &any_key()).await, None);
}

#[tokio::test]
async fn a_stale_head_is_caught_and_a_batch_larger_than_one_statement_commits_whole() {
    let (_dir, path, store) = open().await;
    for n in 0..3 {
        store.append_event(decision(n, "a", "c", "m", "t/t", "allow")).await.unwrap();
    }
    let mut conn = store.writer.acquire().await.unwrap();
    // A head two events behind the table's: the batch must not reuse seq 2 or link to its hash.
    let mut head = Some((1, "0".repeat(64)));
    let events: Vec<NewEvent> = (0..600).map(|n| decision(10 + n, "a", "c", "m", "t/t", "allow")).collect();
    assert_eq!(group::commit(&mut conn, &mut head, &events).await.unwrap(), 4);
    assert_eq!(head.as_ref().map(|h| h.0), Some(603));
    // The remembered head is used as is for the next batch.
    assert_eq!(group::commit(&mut conn, &mut head, &events[..1]).await.unwrap(), 604);
    drop(conn);
    assert_eq!(problem(&store, &path, &any_key()).await, None);
    assert_eq!(store.scan_events().await.unwrap(), 604);
}

#[tokio::test]
async fn one_event_per_transaction_is_the_same_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let store =
        SqliteStore::open_with(&path, crate::GroupCommitOptions { max_batch: 1, ..Default::default() }).await.unwrap();
    for n in 0..10 {
        assert_eq!(store.append_event(decision(n, "a", "c", "m", "t/t", "deny")).await.unwrap(), 1 + n as i64);
    }
    assert!(store.verify(&any_key()).await.unwrap().ok);
    assert_eq!(store.scan_events().await.unwrap(), 10);
}

#[tokio::test]
async fn close_commits_what_is_queued_and_refuses_later_appends() {
    let (_dir, path, store) = open().await;
    let pending: Vec<_> = (0..50)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.append_event(decision(n, "a", "c", "m", "t/t", "allow")).await })
        })
        .collect();
    tokio::task::yield_now().await;
    store.close().await;
    let mut acked = 0;
    for p in pending {
        if p.await.unwrap().is_ok() {
            acked += 1;
        }
    }
    assert!(store.append_event(decision(99, "a", "c", "m", "t/t", "allow")).await.is_err());
    let report = verify_file(&path, &any_key()).await.unwrap();
    assert!(report.ok);
    assert_eq!(report.events, acked, "exactly the acknowledged appends are stored");
}

async fn filled(n: usize) -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let (dir, path, store) = open().await;
    for i in 0..n {
        store.append_event(decision(i, "finance-close", "c1", "m1", "erp/read_ledger", "allow")).await.unwrap();
    }
    (dir, path, store)
}

#[tokio::test]
async fn tampering_with_the_file_is_named_at_its_sequence_number() {
    let options = any_key();

    let (_d, path, store) = filled(10).await;
    assert_eq!(problem(&store, &path, &options).await, None);
    tamper(&path, &["UPDATE events SET tool = 'erp/post_entry' WHERE seq = 4"]).await;
    assert_eq!(problem(&store, &path, &options).await, Some((4, ProblemKind::EventEdited)));

    let (_d, path, store) = filled(10).await;
    tamper(&path, &["DELETE FROM events WHERE seq = 7"]).await;
    assert_eq!(problem(&store, &path, &options).await, Some((7, ProblemKind::EventMissing)));

    let (_d, path, store) = filled(10).await;
    tamper(
        &path,
        &[
            "UPDATE events SET seq = -1 WHERE seq = 3",
            "UPDATE events SET seq = 3 WHERE seq = 6",
            "UPDATE events SET seq = 6 WHERE seq = -1",
        ],
    )
    .await;
    let report = store.verify(&options).await.unwrap();
    let p = report.problem.unwrap();
    assert_eq!((p.seq, p.kind), (3, ProblemKind::EventMoved));
    assert!(p.message.contains("written as 6"), "{}", p.message);

    // Swapping only the contents, keeping the hashes in place, reads as an edit.
    let (_d, path, store) = filled(10).await;
    tamper(
        &path,
        &[
            "UPDATE events SET detail = (SELECT detail FROM events WHERE seq = 8), at_ms = (SELECT at_ms FROM events WHERE seq = 8) WHERE seq = 2",
        ],
    )
    .await;
    assert_eq!(problem(&store, &path, &options).await, Some((2, ProblemKind::EventEdited)));
}

#[tokio::test]
async fn checkpoints_catch_a_truncated_tail_and_foreign_keys() {
    let key = SigningKey::from_bytes(&[5; 32]);
    let (_d, path, store) = filled(10).await;
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
    assert_eq!(problem(&store, &path, &theirs).await, Some((10, ProblemKind::CheckpointUntrusted)));

    // The tail is dropped, checkpoints included: the exported checkpoint still names the first loss.
    let exported: VerifiedCheckpoint = cp.verify().unwrap();
    tamper(&path, &["DELETE FROM events WHERE seq > 6", "DELETE FROM ledger_checkpoints"]).await;
    assert_eq!(problem(&store, &path, &any_key()).await, None, "without a checkpoint the shorter chain is valid");
    let anchored = VerifyOptions { trust: Trust::AnyKey, anchors: vec![exported] };
    assert_eq!(problem(&store, &path, &anchored).await, Some((7, ProblemKind::Truncated)));

    // A stored checkpoint row with a broken key is reported, not an error.
    tamper(
        &path,
        &["INSERT INTO ledger_checkpoints (seq, hash, at_ms, kid, public_key_jwk, signature) VALUES (3, 'x', 1, 'k', '{}', 's')"],
    )
    .await;
    assert_eq!(problem(&store, &path, &any_key()).await, Some((3, ProblemKind::CheckpointInvalid)));
}

#[tokio::test]
async fn queries_filter_by_what_events_concern() {
    let (_d, _path, store) = open().await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_panics_is_started_again_and_the_chain_stays_whole() {
    let (_dir, _path, store) = open().await;
    let first = store.append_event(decision(1, "a", "c", "m", "erp/x", "allow")).await.unwrap();
    store.group.panic_for_test().await;
    // Appends go on: the supervisor starts the writer again on the same queue.
    let mut seqs = vec![first];
    for n in 2..6 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match store.append_event(decision(n, "a", "c", "m", "erp/x", "allow")).await {
                Ok(seq) => {
                    seqs.push(seq);
                    break;
                }
                // Appends queued with the panicking batch fail; none is lost silently.
                Err(_) => assert!(std::time::Instant::now() < deadline, "the writer did not come back"),
            }
        }
    }
    assert_eq!(seqs, (first..first + 5).collect::<Vec<_>>(), "gapless after the restart of the writer");
    store.ready().await.unwrap();
    assert!(store.verify(&any_key()).await.unwrap().ok);
}
