//! [`Ledger`] over SQLite: queries by what events concern, verification in one read snapshot, the
//! checkpoints table, and the group-committing writer behind `append_event` ([`group`]).

pub(crate) mod group;

use super::{corrupt, db, SqliteStore};
use crate::ledger::{Ledger, LedgerQuery, Reach, VerifyOptions, VerifyReport};
use crate::StoreError;
use async_trait::async_trait;
use mandate_core::event::{Event, NewEvent};
use mandate_core::jwk::Ed25519PublicJwk;
use mandate_core::ledger::{moved, written_at, Checkpoint, LedgerHead, Problem, ProblemKind, Trust, Verifier};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use std::path::Path;

const EVENT_COLUMNS: &str = "SELECT seq, at_ms, kind, actor, agent_id, chain_id, mandate_id, tool, resource, \
     decision, detail, prev_hash, hash FROM events";

/// Events read per statement while walking the whole ledger.
const PAGE: i64 = 4096;

/// How far [`written_at`] searches for where a misplaced row was written.
const MOVED_SEARCH: i64 = 5_000_000;

fn event_from_row(r: &SqliteRow) -> Result<Event, StoreError> {
    Ok(Event {
        seq: r.try_get(0).map_err(db)?,
        event: NewEvent {
            at_ms: r.try_get(1).map_err(db)?,
            kind: r.try_get(2).map_err(db)?,
            actor: r.try_get(3).map_err(db)?,
            agent: r.try_get(4).map_err(db)?,
            chain_id: r.try_get(5).map_err(db)?,
            mandate_id: r.try_get(6).map_err(db)?,
            tool: r.try_get(7).map_err(db)?,
            resource: r.try_get(8).map_err(db)?,
            decision: r.try_get(9).map_err(db)?,
            detail: r.try_get(10).map_err(db)?,
        },
        prev_hash: r.try_get(11).map_err(db)?,
        hash: r.try_get(12).map_err(db)?,
    })
}

/// A stored checkpoint row, or why it is unusable.
fn checkpoint_from_row(r: &SqliteRow) -> Result<Result<Checkpoint, String>, StoreError> {
    let seq: i64 = r.try_get("seq").map_err(db)?;
    let jwk_text: String = r.try_get("public_key_jwk").map_err(db)?;
    let jwk = serde_json::from_str::<serde_json::Value>(&jwk_text)
        .map_err(|e| e.to_string())
        .and_then(|v| Ed25519PublicJwk::from_json(&v).map_err(|e| e.to_string()));
    Ok(match jwk {
        Ok(public_key_jwk) => Ok(Checkpoint {
            seq,
            hash: r.try_get("hash").map_err(db)?,
            at_ms: r.try_get("at_ms").map_err(db)?,
            kid: r.try_get("kid").map_err(db)?,
            public_key_jwk,
            signature: r.try_get("signature").map_err(db)?,
        }),
        Err(e) => Err(format!("the stored checkpoint of seq {seq} has an unusable public key: {e}")),
    })
}

fn push_filters(q: &mut QueryBuilder<'_, Sqlite>, f: &LedgerQuery) {
    if let Some(agent) = &f.agent {
        q.push(" AND agent_id = ").push_bind(agent.clone());
    }
    if let Some(human) = &f.human {
        q.push(" AND (chain_id IN (SELECT chain_id FROM mandates WHERE root = ")
            .push_bind(human.clone())
            .push(") OR actor = ")
            .push_bind(human.clone())
            .push(" OR (kind IN ('human.created', 'human.deactivated') AND resource = ")
            .push_bind(human.clone())
            .push("))");
    }
    for (column, value) in [
        ("chain_id", &f.chain),
        ("mandate_id", &f.mandate),
        ("tool", &f.tool),
        ("decision", &f.decision),
        ("kind", &f.kind),
    ] {
        if let Some(v) = value {
            q.push(format_args!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    match &f.reach {
        None => {}
        Some(Reach::Agent(a)) => {
            q.push(" AND (agent_id = ")
                .push_bind(a.clone())
                .push(" OR mandate_id IN (SELECT mandate_id FROM mandate_agents WHERE agent_id = ")
                .push_bind(a.clone())
                .push("))");
        }
        Some(Reach::Chain(c)) => {
            q.push(" AND chain_id = ").push_bind(c.clone());
        }
        Some(Reach::Root(h)) => {
            q.push(" AND chain_id IN (SELECT chain_id FROM mandates WHERE root = ").push_bind(h.clone()).push(")");
        }
    }
    if let Some(t) = f.since_ms {
        q.push(" AND at_ms >= ").push_bind(t);
    }
    if let Some(t) = f.until_ms {
        q.push(" AND at_ms < ").push_bind(t);
    }
    if let Some(s) = f.after_seq {
        q.push(" AND seq > ").push_bind(s);
    }
    if let Some(s) = f.before_seq {
        q.push(" AND seq < ").push_bind(s);
    }
}

async fn page(conn: &mut SqliteConnection, after: i64) -> Result<Vec<Event>, StoreError> {
    let rows = sqlx::query(&format!("{EVENT_COLUMNS} WHERE seq > $1 ORDER BY seq LIMIT $2"))
        .bind(after)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    rows.iter().map(event_from_row).collect()
}

async fn has_checkpoints_table(conn: &mut SqliteConnection) -> Result<bool, StoreError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'ledger_checkpoints'")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
    Ok(found.is_some())
}

/// Walks every event of the database behind `pool` in one read transaction.
async fn verify_pool(pool: &SqlitePool, options: &VerifyOptions) -> Result<VerifyReport, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let with_checkpoints = has_checkpoints_table(&mut tx).await?;
    let mut v = Verifier::new();
    for anchor in &options.anchors {
        v.add_checkpoint(anchor);
    }
    let trust = match options.trust {
        Trust::Keys(_) => "server_keys",
        Trust::AnyKey => "any_key",
    };
    let report =
        |(events, matched): (u64, u64), stored: u64, head: Option<LedgerHead>, problem: Option<Problem>| VerifyReport {
            ok: problem.is_none(),
            events,
            checkpoints_matched: matched,
            checkpoints_stored: stored,
            head,
            problem,
            trust: trust.to_owned(),
        };
    let (mut after, mut loaded, mut stored) = (0i64, 0i64, 0u64);
    loop {
        let events = page(&mut tx, after).await?;
        // Checkpoints are added before the events they cover; after the last page, every remaining
        // one (a checkpoint beyond the end is a truncation).
        let upto = events.last().map_or(i64::MAX, |e| e.seq);
        if with_checkpoints && upto > loaded {
            let rows = sqlx::query("SELECT * FROM ledger_checkpoints WHERE seq > $1 AND seq <= $2 ORDER BY seq")
                .bind(loaded)
                .bind(upto)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            for row in &rows {
                stored += 1;
                match checkpoint_from_row(row)? {
                    Ok(c) => v.add_stored_checkpoint(&c, &options.trust),
                    Err(why) => {
                        let seq: i64 = row.try_get("seq").map_err(db)?;
                        v.add_defect(seq, ProblemKind::CheckpointInvalid, why);
                    }
                }
            }
            loaded = upto;
        }
        let Some(last) = events.last().map(|e| e.seq) else { break };
        for e in &events {
            if let Err(mut problem) = v.push(e) {
                if problem.kind == ProblemKind::EventEdited {
                    let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events")
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db)?;
                    if let Some(w) = written_at(e, 1..=max.min(MOVED_SEARCH)) {
                        problem = moved(e.seq, w);
                    }
                }
                return Ok(report((v.events(), v.anchors()), stored, None, Some(problem)));
            }
        }
        after = last;
    }
    let counts = (v.events(), v.anchors());
    Ok(match v.finish() {
        Ok(head) => report(counts, stored, head, None),
        Err(problem) => report(counts, stored, None, Some(problem)),
    })
}

/// Reads every event as verification does, without checking anything: the baseline that
/// verification speed is measured against. Returns the number of events read.
async fn scan_pool(pool: &SqlitePool) -> Result<u64, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let (mut after, mut n) = (0i64, 0u64);
    loop {
        let events = page(&mut tx, after).await?;
        let Some(last) = events.last().map(|e| e.seq) else { return Ok(n) };
        n += u64::try_from(events.len()).unwrap_or(0);
        after = last;
    }
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

#[async_trait]
impl Ledger for SqliteStore {
    async fn query_events(&self, f: &LedgerQuery) -> Result<Vec<Event>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(EVENT_COLUMNS);
        q.push(" WHERE 1 = 1");
        push_filters(&mut q, f);
        q.push(if f.newest { " ORDER BY seq DESC" } else { " ORDER BY seq" });
        q.push(" LIMIT ").push_bind(f.limit.clamp(1, 10_000));
        let rows = q.build().fetch_all(&self.reader).await.map_err(db)?;
        let mut events = rows.iter().map(event_from_row).collect::<Result<Vec<_>, _>>()?;
        if f.newest {
            events.reverse();
        }
        Ok(events)
    }

    async fn head(&self) -> Result<Option<LedgerHead>, StoreError> {
        let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        Ok(head.map(|(seq, hash)| LedgerHead { seq, hash }))
    }

    async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, StoreError> {
        verify_pool(&self.reader, options).await
    }

    async fn insert_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        let jwk = serde_json::to_string(&c.public_key_jwk).map_err(|e| corrupt("checkpoint", e))?;
        sqlx::query(
            "INSERT INTO ledger_checkpoints (seq, hash, at_ms, kid, public_key_jwk, signature) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.at_ms)
        .bind(&c.kid)
        .bind(jwk)
        .bind(&c.signature)
        .execute(&self.writer)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query("SELECT * FROM ledger_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after_seq)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.reader)
            .await
            .map_err(db)?;
        rows.iter().map(|r| checkpoint_from_row(r)?.map_err(StoreError::Corrupt)).collect()
    }

    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT * FROM ledger_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.reader)
            .await
            .map_err(db)?;
        row.as_ref().map(|r| checkpoint_from_row(r)?.map_err(StoreError::Corrupt)).transpose()
    }

    async fn chains_reached(&self, reach: &Reach) -> Result<Vec<String>, StoreError> {
        let (filter, value) = match reach {
            Reach::Agent(a) => ("id IN (SELECT mandate_id FROM mandate_agents WHERE agent_id = $1)", a),
            Reach::Chain(c) => ("chain_id = $1", c),
            Reach::Root(h) => ("root = $1", h),
        };
        sqlx::query_scalar(&format!(
            "SELECT chain_id FROM mandates WHERE {filter} GROUP BY chain_id ORDER BY MIN(issued_at), chain_id"
        ))
        .bind(value)
        .fetch_all(&self.reader)
        .await
        .map_err(db)
    }
}

#[cfg(test)]
mod tests;
