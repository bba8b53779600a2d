//! The ledger over a real SQLite file: group commit under concurrency, tampering with the file, and
//! the query filters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::ledger::Ledger;
use crate::suite::{any_key, decision};
use crate::Store;
use mandate_core::event::NewEvent;
use mandate_core::ledger::ProblemKind;
use std::path::PathBuf;

async fn open() -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mandate.db");
    let store = SqliteStore::open(&path).await.unwrap();
    (dir, path, store)
}

/// Verifies online (through the open store) and offline (the file, read-only); both must agree.
async fn problem(store: &SqliteStore, path: &Path, options: &VerifyOptions) -> Option<(i64, ProblemKind)> {
    let online = store.verify(options).await.unwrap();
    let offline = verify_file(path, options).await.unwrap();
    assert_eq!(online, offline);
    assert_eq!(online.ok, online.problem.is_none());
    online.problem.map(|p| (p.seq, p.kind))
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
