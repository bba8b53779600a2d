//! The embedded backend: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so transactions never race for SQLite's write
//! lock (a deferred transaction that reads and then writes would fail with `SQLITE_BUSY_SNAPSHOT`
//! under concurrency instead of waiting); reads use their own pool and never block writes. The writer
//! runs with `synchronous = FULL`: a write is acknowledged only once it has reached the disk, so a
//! crash, even of the machine, loses nothing that was acknowledged.

use crate::StoreError;
use mandate_core::event::NewEvent;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};
use std::path::Path;

pub(crate) mod ledger;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// A store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    /// Batches `append_event` into shared transactions (see [`ledger::group`]).
    group: crate::group::GroupCommit,
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(d.message().to_owned()),
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes (the low byte).
        sqlx::Error::Database(d)
            if d.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)) =>
        {
            StoreError::Retryable(d.message().to_owned())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Retryable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, refuses a schema newer than this build,
    /// and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, crate::GroupCommitOptions::default()).await
    }

    /// [`SqliteStore::open`] with group commit tuned (benchmarks compare batches against one
    /// transaction per event).
    pub async fn open_with(path: &Path, group: crate::GroupCommitOptions) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(group.busy_timeout);
        // The writer keeps up to 64 MiB of pages: a group-commit batch touches one index page per
        // active chain, agent and tool, and those should stay in memory between batches.
        // It checkpoints the WAL into the database every 8,000 pages (32 MiB at 4 KiB pages) instead of
        // SQLite's 1,000: the pages a stream of appends keeps rewriting (the tail of the events table
        // and of each index) are copied once per checkpoint, not eight times, and a checkpoint runs
        // inside the commit that crosses the mark, so those commits, and the decisions waiting on
        // them, are rarer.
        let writer_options = options.clone().pragma("cache_size", "-65536").pragma("wal_autocheckpoint", "8000");
        // A local file needs no liveness check before each use (a round trip to SQLite's thread).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(writer_options)
            .await
            .map_err(db)?;
        check_schema_version(&writer).await?;
        MIGRATOR.run(&writer).await.map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let reader =
            SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await.map_err(db)?;
        let group = crate::group::GroupCommit::start::<ledger::group::SqliteBatches>(writer.clone(), group.max_batch);
        Ok(Self { writer, reader, group })
    }

    /// Reads go to their own pool and never block writes.
    pub(crate) fn reads(&self) -> &SqlitePool {
        &self.reader
    }

    /// Writes that append nothing go through the one writer connection too.
    pub(crate) fn writes(&self) -> &SqlitePool {
        &self.writer
    }

    /// A transaction on the one writer connection: nothing else writes while it is open, so reading
    /// the head (or the pending approvals) inside it and then writing cannot interleave with another.
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer.begin().await.map_err(db)
    }

    /// Verifies the ledger in one read transaction of the reader pool.
    pub(crate) async fn verify_snapshot(
        &self,
        options: &crate::VerifyOptions,
    ) -> Result<crate::VerifyReport, StoreError> {
        ledger::verify_pool(&self.reader, options).await
    }

    /// Commits the queued appends, then closes both pools, waiting for in-flight statements; the WAL is
    /// checkpointed on the last close.
    pub async fn close(&self) {
        self.group.close().await;
        self.reader.close().await;
        // With every reader gone, copy the whole WAL into the database and empty it, rather than
        // rely on the last connection's close doing it: SQLite skips that when it cannot take the
        // lock it needs at that moment, and then leaves the WAL behind.
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&self.writer).await {
            Ok((0, _, _)) => {}
            Ok((_, log, done)) => {
                tracing::warn!(frames = log, checkpointed = done, "the write-ahead log could not be emptied at close")
            }
            Err(e) => tracing::warn!(error = %e, "the write-ahead log could not be checkpointed at close"),
        }
        self.writer.close().await;
    }
}

/// The newest schema version this build knows.
pub fn supported_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

async fn check_schema_version(pool: &SqlitePool) -> Result<(), StoreError> {
    let exists: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_optional(pool)
            .await
            .map_err(db)?;
    if exists.is_none() {
        return Ok(());
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    crate::rows::refuse_newer_schema(found, supported_schema_version())
}

pub(crate) async fn append(tx: &mut Transaction<'_, Sqlite>, event: &NewEvent) -> Result<i64, StoreError> {
    ledger::group::append_in(tx, event).await
}

crate::sql::impl_sql_store!(SqliteStore, Sqlite);

#[cfg(test)]
mod tests;
