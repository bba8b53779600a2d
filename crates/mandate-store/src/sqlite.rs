//! The embedded backend: one SQLite file in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so transactions never race for SQLite's write
//! lock (a deferred transaction that reads and then writes would fail with `SQLITE_BUSY_SNAPSHOT`
//! under concurrency instead of waiting); reads use their own pool and never block writes. The writer
//! runs with `synchronous = FULL`: a write is acknowledged only once it has reached the disk, so a
//! crash, even of the machine, loses nothing that was acknowledged.

use crate::{
    AgentChange, AgentFilter, AgentVersion, CredentialOwner, EventFilter, MandateSelector, Revocation, Store,
    StoreError, StoredMandate,
};
use async_trait::async_trait;
use mandate_core::agent::Agent;
use mandate_core::event::{Event, NewEvent};
use mandate_core::human::Human;
use mandate_core::id::{AgentId, HumanId};
use mandate_core::mandate::MandateRecord;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use crate::rows::{self, corrupt, MANDATE_COLUMNS};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use std::path::Path;

mod decisions;
pub(crate) mod ledger;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// A store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    /// Batches `append_event` into shared transactions (see [`ledger::group`]).
    group: ledger::group::GroupCommit,
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
        let group = ledger::group::GroupCommit::start(writer.clone(), group.max_batch);
        Ok(Self { writer, reader, group })
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
    let supported = supported_schema_version();
    match found {
        Some(found) if found > supported => Err(StoreError::SchemaTooNew { found, supported }),
        _ => Ok(()),
    }
}

pub(crate) async fn append(tx: &mut Transaction<'_, Sqlite>, event: &NewEvent) -> Result<i64, StoreError> {
    ledger::group::append_in(tx, event).await
}

fn agent_from_doc(doc: &str) -> Result<Agent, StoreError> {
    serde_json::from_str(doc).map_err(|e| corrupt("agent", e))
}

fn human_from_doc(doc: &str) -> Result<Human, StoreError> {
    serde_json::from_str(doc).map_err(|e| corrupt("human", e))
}

#[async_trait]
impl Store for SqliteStore {
    async fn record_agent_change(&self, change: AgentChange<'_>) -> Result<i64, StoreError> {
        let after = change.after;
        let doc = serde_json::to_string(after).map_err(|e| corrupt("agent", e))?;
        let before_doc = change.before.map(serde_json::to_string).transpose().map_err(|e| corrupt("agent", e))?;
        let mut tx = self.writer.begin().await.map_err(db)?;
        match change.before {
            None => {
                sqlx::query(
                    "INSERT INTO agents (id, owner, environment, state, class, version, created_ms, updated_ms, doc) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(after.id.as_str())
                .bind(after.owner.as_str())
                .bind(after.environment.as_str())
                .bind(after.state.as_str())
                .bind(after.class.as_str())
                .bind(after.version)
                .bind(millis(after.created_at))
                .bind(millis(after.updated_at))
                .bind(&doc)
                .execute(&mut *tx)
                .await
                .map_err(|e| match db(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!("agent `{}` already exists", after.id)),
                    other => other,
                })?;
            }
            Some(before) => {
                let updated = sqlx::query(
                    "UPDATE agents SET owner = $1, environment = $2, state = $3, class = $4, version = $5, updated_ms = $6, doc = $7 \
                     WHERE id = $8 AND version = $9",
                )
                .bind(after.owner.as_str())
                .bind(after.environment.as_str())
                .bind(after.state.as_str())
                .bind(after.class.as_str())
                .bind(after.version)
                .bind(millis(after.updated_at))
                .bind(&doc)
                .bind(after.id.as_str())
                .bind(before.version)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                if updated.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!(
                        "agent `{}` changed since version {} was read; read it again and retry",
                        after.id, before.version
                    )));
                }
            }
        }
        sqlx::query(
            "INSERT INTO agent_versions (agent_id, version, at_ms, actor, action, before_doc, after_doc) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(after.id.as_str())
        .bind(after.version)
        .bind(change.event.at_ms)
        .bind(&change.event.actor)
        .bind(change.action)
        .bind(before_doc)
        .bind(&doc)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let seq = append(&mut tx, &change.event).await?;
        if let Some(r) = &change.revoke {
            revoke_in(&mut tx, &r.ids, &r.revocation).await?;
            append(&mut tx, &r.event).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(seq)
    }

    async fn agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM agents WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        doc.as_deref().map(agent_from_doc).transpose()
    }

    async fn agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT doc FROM agents WHERE 1 = 1");
        if let Some(owner) = &filter.owner {
            q.push(" AND owner = ").push_bind(owner.as_str().to_owned());
        }
        if let Some(env) = filter.environment {
            q.push(" AND environment = ").push_bind(env.as_str());
        }
        if let Some(state) = filter.state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        q.push(" ORDER BY id");
        let rows = q.build().fetch_all(&self.reader).await.map_err(db)?;
        rows.iter().map(|r| agent_from_doc(&r.try_get::<String, _>("doc").map_err(db)?)).collect()
    }

    async fn agent_history(&self, id: &AgentId) -> Result<Vec<AgentVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, at_ms, actor, action, before_doc, after_doc FROM agent_versions WHERE agent_id = $1 ORDER BY version",
        )
        .bind(id.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(db)?;
        rows.iter().map(rows::agent_version).collect()
    }

    async fn create_human(&self, human: &Human, key_hash: &str, event: NewEvent) -> Result<i64, StoreError> {
        let doc = serde_json::to_string(human).map_err(|e| corrupt("human", e))?;
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query("INSERT INTO humans (id, active, created_ms, doc) VALUES ($1, $2, $3, $4)")
            .bind(human.id.as_str())
            .bind(human.active)
            .bind(millis(human.created_at))
            .bind(&doc)
            .execute(&mut *tx)
            .await
            .map_err(|e| match db(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("human `{}` already exists", human.id)),
                other => other,
            })?;
        sqlx::query("INSERT INTO credentials (key_hash, kind, human_id, created_ms) VALUES ($1, 'human', $2, $3)")
            .bind(key_hash)
            .bind(human.id.as_str())
            .bind(event.at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let seq = append(&mut tx, &event).await?;
        tx.commit().await.map_err(db)?;
        Ok(seq)
    }

    async fn update_human(&self, human: &Human, event: NewEvent) -> Result<i64, StoreError> {
        let doc = serde_json::to_string(human).map_err(|e| corrupt("human", e))?;
        let mut tx = self.writer.begin().await.map_err(db)?;
        let updated = sqlx::query("UPDATE humans SET active = $1, doc = $2 WHERE id = $3")
            .bind(human.active)
            .bind(&doc)
            .bind(human.id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!("human `{}` does not exist", human.id)));
        }
        let seq = append(&mut tx, &event).await?;
        tx.commit().await.map_err(db)?;
        Ok(seq)
    }

    async fn human(&self, id: &HumanId) -> Result<Option<Human>, StoreError> {
        let doc: Option<String> = sqlx::query_scalar("SELECT doc FROM humans WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        doc.as_deref().map(human_from_doc).transpose()
    }

    async fn humans(&self) -> Result<Vec<Human>, StoreError> {
        let docs: Vec<String> =
            sqlx::query_scalar("SELECT doc FROM humans ORDER BY id").fetch_all(&self.reader).await.map_err(db)?;
        docs.iter().map(|d| human_from_doc(d)).collect()
    }

    async fn credential(&self, key_hash: &str) -> Result<Option<CredentialOwner>, StoreError> {
        let row = sqlx::query(
            "SELECT c.kind, h.doc, h.active FROM credentials c LEFT JOIN humans h ON h.id = c.human_id WHERE c.key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get("kind").map_err(db)?;
        if kind == "admin" {
            return Ok(Some(CredentialOwner::Admin));
        }
        let active: Option<bool> = row.try_get("active").map_err(db)?;
        let doc: Option<String> = row.try_get("doc").map_err(db)?;
        match (active, doc) {
            (Some(true), Some(doc)) => Ok(Some(CredentialOwner::Human(human_from_doc(&doc)?))),
            // A deactivated human's keys stop working at once.
            _ => Ok(None),
        }
    }

    async fn has_admin_credential(&self) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials WHERE kind = 'admin'")
            .fetch_one(&self.reader)
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn set_admin_credential(&self, key_hash: &str, event: NewEvent) -> Result<i64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM credentials WHERE kind = 'admin'").execute(&mut *tx).await.map_err(db)?;
        sqlx::query("INSERT INTO credentials (key_hash, kind, human_id, created_ms) VALUES ($1, 'admin', NULL, $2)")
            .bind(key_hash)
            .bind(event.at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let seq = append(&mut tx, &event).await?;
        tx.commit().await.map_err(db)?;
        Ok(seq)
    }

    async fn append_event_deferred(&self, event: NewEvent) -> Result<(), StoreError> {
        self.group.append_deferred(event).await
    }

    async fn append_event(&self, event: NewEvent) -> Result<i64, StoreError> {
        // Group commit: returns once the batch holding the event has committed (FULL sync).
        self.group.append(event).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            format!("{} WHERE 1 = 1", rows::EVENT_COLUMNS),
        );
        if let Some(agent) = &filter.agent {
            q.push(" AND agent_id = ").push_bind(agent.as_str().to_owned());
        }
        if let Some(kind) = &filter.kind {
            q.push(" AND kind = ").push_bind(kind.clone());
        }
        if let Some(after) = filter.after_seq {
            q.push(" AND seq > ").push_bind(after);
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(filter.limit.clamp(1, 10_000));
        let rows = q.build().fetch_all(&self.reader).await.map_err(db)?;
        rows.iter().map(rows::event).collect()
    }

    async fn insert_mandate(&self, record: &MandateRecord, kid: &str, event: NewEvent) -> Result<i64, StoreError> {
        let doc = serde_json::to_string(record).map_err(|e| corrupt("mandate", e))?;
        let mut tx = self.writer.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO mandates (id, chain_id, parent_id, depth, agent_id, root, issued_at, expires_at, max_calls, kid, doc) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&record.id)
        .bind(&record.chain_id)
        .bind(&record.parent_id)
        .bind(i64::from(record.depth))
        .bind(record.agent.as_str())
        .bind(record.root.as_str())
        .bind(record.issued_at)
        .bind(record.expires_at)
        .bind(i64::try_from(record.max_calls).unwrap_or(i64::MAX))
        .bind(kid)
        .bind(&doc)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for agent in &record.chain_agents {
            sqlx::query("INSERT INTO mandate_agents (mandate_id, agent_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(&record.id)
                .bind(agent.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let seq = append(&mut tx, &event).await?;
        tx.commit().await.map_err(db)?;
        Ok(seq)
    }

    async fn mandate(&self, id: &str) -> Result<Option<StoredMandate>, StoreError> {
        let row = sqlx::query(&format!("{MANDATE_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::mandate).transpose()
    }

    async fn chain(&self, chain_id: &str) -> Result<Vec<StoredMandate>, StoreError> {
        let rows = sqlx::query(&format!("{MANDATE_COLUMNS} WHERE chain_id = $1 ORDER BY depth, issued_at, id"))
            .bind(chain_id)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        rows.iter().map(rows::mandate).collect()
    }

    async fn live_mandates(&self, selector: &MandateSelector, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let live = "revoked_at IS NULL AND expires_at > $2";
        let ids: Vec<(String, i64)> = match selector {
            MandateSelector::Subtree(id) => {
                let Some(top) = self.mandate(id).await? else { return Ok(Vec::new()) };
                self.chain(&top.record.chain_id)
                    .await?
                    .into_iter()
                    .filter(|m| m.record.id == *id || m.record.lineage.contains(id))
                    .filter(|m| m.revocation.is_none() && m.record.expires_at > now)
                    .map(|m| (m.record.id, m.record.expires_at))
                    .collect()
            }
            MandateSelector::Chain(chain) => {
                sqlx::query_as(&format!("SELECT id, expires_at FROM mandates WHERE chain_id = $1 AND {live} ORDER BY id"))
                    .bind(chain)
                    .bind(now)
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db)?
            }
            MandateSelector::Root(root) => {
                sqlx::query_as(&format!("SELECT id, expires_at FROM mandates WHERE root = $1 AND {live} ORDER BY id"))
                    .bind(root.as_str())
                    .bind(now)
                    .fetch_all(&self.reader)
                    .await
                    .map_err(db)?
            }
            MandateSelector::Agent(agent) => sqlx::query_as(&format!(
                "SELECT id, expires_at FROM mandates WHERE id IN (SELECT mandate_id FROM mandate_agents WHERE agent_id = $1) AND {live} ORDER BY id"
            ))
            .bind(agent.as_str())
            .bind(now)
            .fetch_all(&self.reader)
            .await
            .map_err(db)?,
        };
        Ok(ids)
    }

    async fn revoke_mandates(
        &self,
        ids: &[String],
        revocation: &Revocation,
        event: NewEvent,
    ) -> Result<i64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db)?;
        revoke_in(&mut tx, ids, revocation).await?;
        let seq = append(&mut tx, &event).await?;
        tx.commit().await.map_err(db)?;
        Ok(seq)
    }

    async fn revoked_unexpired(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as("SELECT id, expires_at FROM mandates WHERE revoked_at IS NOT NULL AND expires_at > $1")
            .bind(now)
            .fetch_all(&self.reader)
            .await
            .map_err(db)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&self.reader).await.map_err(db)?;
        if !self.group.running() {
            return Err(StoreError::Database("the ledger writer has stopped".into()));
        }
        if !self.group.healthy() {
            // The last batch failed. A write through the same connection, durable like an append,
            // tells whether the fault is gone; it changes only the store's own bookkeeping.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            sqlx::query("INSERT INTO meta (key, value) VALUES ('ready_probe', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(now.to_string())
                .execute(&self.writer)
                .await
                .map_err(db)?;
            self.group.mark_healthy();
        }
        Ok(())
    }

    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(db)
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(())
    }
}

/// Unix milliseconds of a time.
pub(crate) fn millis(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

/// Revokes `ids` inside `tx`; those already revoked keep their first revocation.
async fn revoke_in(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    ids: &[String],
    revocation: &Revocation,
) -> Result<(), StoreError> {
    for id in ids {
        sqlx::query(
            "UPDATE mandates SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 WHERE id = $4 AND revoked_at IS NULL",
        )
        .bind(revocation.at)
        .bind(&revocation.by)
        .bind(&revocation.reason)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}
