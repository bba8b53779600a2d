//! The SQLite backend against a real database file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::suite::event;
use crate::Store;

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("mandate.db")).await.unwrap();
    (dir, store)
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
