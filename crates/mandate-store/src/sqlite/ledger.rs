//! [`crate::Ledger`] over SQLite: queries by what events concern, verification in one read snapshot, the
//! checkpoints table, and the group-committing writer behind `append_event` ([`group`]).

pub(crate) mod group;

use super::{db, SqliteStore};
use crate::ledger::{VerifyOptions, VerifyReport};
use crate::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{SqliteConnection, SqlitePool};
use std::path::Path;

crate::sql::impl_ledger_pages!(SqliteConnection);

async fn has_checkpoints_table(conn: &mut SqliteConnection) -> Result<bool, StoreError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'ledger_checkpoints'")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
    Ok(found.is_some())
}

/// Walks every event of the database behind `pool` in one read transaction.
pub(crate) async fn verify_pool(pool: &SqlitePool, options: &VerifyOptions) -> Result<VerifyReport, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let with_checkpoints = has_checkpoints_table(&mut tx).await?;
    crate::ledger::walk(&mut Pages { conn: &mut tx, with_checkpoints }, options).await
}

/// Reads every event as verification does, without checking anything: the baseline that
/// verification speed is measured against. Returns the number of events read.
async fn scan_pool(pool: &SqlitePool) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    crate::ledger::scan(&mut Pages { conn: &mut tx, with_checkpoints: false }).await
}

/// Verifies the ledger in the SQLite file at `path`, opened read-only (the server may be stopped;
/// nothing is written, and a write-ahead log left by a crash is read, not replayed into the file).
pub async fn verify_file(path: &Path, options: &VerifyOptions) -> Result<VerifyReport, StoreError> {
    if !path.exists() {
        return Err(StoreError::Database(format!("no database at `{}`", path.display())));
    }
    let connect = SqliteConnectOptions::new().filename(path).read_only(true);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(connect).await.map_err(db)?;
    let report = verify_pool(&pool, options).await;
    pool.close().await;
    report
}

impl SqliteStore {
    /// Reads every event without checking anything (see [`Ledger::verify`]); the baseline of the
    /// verification benchmark. Returns how many events were read.
    pub async fn scan_events(&self) -> Result<u64, StoreError> {
        scan_pool(&self.reader).await
    }
}

#[cfg(test)]
mod tests;
