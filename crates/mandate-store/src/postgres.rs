//! The shared backend: any number of Mandate nodes on one PostgreSQL database.
//!
//! Every transaction that appends to the ledger (a registration with its event, a batch of
//! decisions) takes one transaction-scoped advisory lock, [`LEDGER_LOCK`], before anything else,
//! and reads the head of the chain inside it: so however many nodes write, the ledger is one
//! gapless hash-chained sequence, and the checks a transaction makes before it writes (an approval
//! queue's length, the next policy version) cannot interleave with another node's. Taking the lock
//! first, before any row lock, means two writers never wait on each other in opposite orders. The
//! one exception is a batch of decisions, which makes its claims (budget rows, locked in id order,
//! and proof ids) before it takes the lock: no transaction that holds the lock touches those, so the
//! order still never crosses.
//! Each such transaction ends with a `NOTIFY` on [`LEDGER_CHANNEL`], delivered at commit, which wakes
//! the other nodes to read what changed.
//!
//! PostgreSQL's `COMMIT` returns once the commit record is flushed (`synchronous_commit = on`, the
//! default), so an acknowledged write survives a crash of the node or of the database server.

use crate::group::{Batches, Claimed, Cursor, GroupCommit, Head};
use crate::{ClaimOutcome, StoreError};
use async_trait::async_trait;
use mandate_core::event::{NewEvent, GENESIS_HASH};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Transaction};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The advisory lock every ledger append holds until its transaction ends ("mandate" in ASCII).
pub const LEDGER_LOCK: i64 = 0x006d_616e_6461_7465;

/// The channel each ledger-writing transaction notifies at commit.
pub const LEDGER_CHANNEL: &str = "mandate_ledger";

/// How a node connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections this node keeps at most.
    pub max_connections: u32,
    /// How long a statement waits for a connection before the store answers `Retryable`.
    pub acquire_timeout: Duration,
    /// Group commit.
    pub group: crate::GroupCommitOptions,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            group: crate::GroupCommitOptions::default(),
        }
    }
}

/// A store in a PostgreSQL database, shared by every node that connects to it.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The connection listening on [`LEDGER_CHANNEL`], once something waits for changes.
    listener: std::sync::Arc<tokio::sync::Mutex<Option<sqlx::postgres::PgListener>>>,
    /// Batches `append_event` into shared transactions (see [`group`]).
    pub(crate) group: GroupCommit,
}

/// SQLSTATE classes and codes after which the same operation may succeed: serialization failure,
/// deadlock, lock not available, too many connections, the server shutting down or starting, the
/// connection lost, and a database not accepting connections for now (`55000`, as while an
/// operator holds it closed).
fn retryable_state(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "55P03" | "55000" | "53300" | "57P01" | "57P02" | "57P03")
        || code.starts_with("08")
}

pub(crate) fn db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(d.message().to_owned()),
        sqlx::Error::Database(d) if d.code().is_some_and(|c| retryable_state(&c)) => {
            StoreError::Retryable(d.message().to_owned())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Retryable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

/// The URL without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "the database URL".to_owned(),
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`), refuses a
    /// schema newer than this build, and applies pending migrations (under sqlx's migration lock,
    /// so nodes starting together migrate once).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// [`PostgresStore::connect`] with the pool and group commit tuned.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("{} is not a PostgreSQL URL: {e}", redacted(url))))?
            .application_name("mandate");
        // No liveness round trip before each use: a connection the server closed fails its next
        // statement with a retryable error, and the pool replaces it.
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(|e| match db(e) {
                StoreError::Retryable(m) | StoreError::Database(m) => {
                    StoreError::Database(format!("cannot connect to {}: {m}", redacted(url)))
                }
                other => other,
            })?;
        check_schema_version(&pool).await?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let group = GroupCommit::start::<PgBatches>(pool.clone(), options.group.max_batch);
        Ok(Self { pool, listener: Default::default(), group })
    }

    pub(crate) fn reads(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn writes(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction that may append: it holds [`LEDGER_LOCK`] from its first statement.
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_ledger(&mut tx).await?;
        Ok(tx)
    }

    /// Verifies the ledger inside one repeatable-read snapshot.
    pub(crate) async fn verify_snapshot(
        &self,
        options: &crate::VerifyOptions,
    ) -> Result<crate::VerifyReport, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        verify_in_snapshot(&mut conn, options).await
    }

    /// The pool, for the change feed and for tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Commits the queued appends, then closes the pool.
    pub async fn close(&self) {
        self.group.close().await;
        self.pool.close().await;
    }
}

/// Takes [`LEDGER_LOCK`] for the rest of the transaction and reads the head of the chain after it
/// is held (the schema's `mandate_lock_ledger`, one round trip).
/// Verifies the ledger of the PostgreSQL database at `url` from outside any node: one connection,
/// one read-only repeatable-read snapshot, nothing migrated or written.
pub async fn verify_database(url: &str, options: &crate::VerifyOptions) -> Result<crate::VerifyReport, StoreError> {
    use sqlx::Connection as _;
    let connect = PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Database(format!("{} is not a PostgreSQL URL: {e}", redacted(url))))?
        .application_name("mandate-verify");
    let mut conn = PgConnection::connect_with(&connect)
        .await
        .map_err(|e| StoreError::Database(format!("cannot connect to {}: {e}", redacted(url))))?;
    let found: bool =
        sqlx::query_scalar("SELECT to_regclass('events') IS NOT NULL").fetch_one(&mut conn).await.map_err(db)?;
    if !found {
        return Err(StoreError::Database(format!("no Mandate ledger in {}", redacted(url))));
    }
    let report = verify_in_snapshot(&mut conn, options).await;
    let _ = conn.close().await;
    report
}

/// Walks the whole ledger in one read-only repeatable-read transaction on `conn`.
async fn verify_in_snapshot(
    conn: &mut PgConnection,
    options: &crate::VerifyOptions,
) -> Result<crate::VerifyReport, StoreError> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await.map_err(db)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await.map_err(db)?;
    crate::ledger::walk(&mut ledger::Pages { conn: &mut tx, with_checkpoints: true }, options).await
}

async fn lock_ledger(conn: &mut PgConnection) -> Result<Head, StoreError> {
    let head: Option<(Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT head_seq, head_hash FROM mandate_lock_ledger()")
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
    let (seq, hash) = head.unwrap_or_default();
    Ok(head_or_genesis(seq, hash))
}

/// The head the schema's functions answer (no row: the empty ledger, linked after genesis).
fn head_or_genesis(seq: Option<i64>, hash: Option<String>) -> Head {
    match (seq, hash) {
        (Some(seq), Some(hash)) => (seq, hash),
        _ => (0, GENESIS_HASH.to_owned()),
    }
}

async fn check_schema_version(pool: &PgPool) -> Result<(), StoreError> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await.map_err(db)?;
    if !exists {
        return Ok(());
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    crate::rows::refuse_newer_schema(found, supported_schema_version())
}

/// The newest PostgreSQL schema version this build knows.
pub fn supported_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Rows per `INSERT` statement: 13 values a row stay far below PostgreSQL's 65,535 parameters.
const MAX_ROWS: usize = 1024;

/// Inserts `events` linked after `head` (read under [`LEDGER_LOCK`], which `conn`'s transaction
/// holds), the last statement notifying [`LEDGER_CHANNEL`] with the new head's sequence number;
/// returns the first one's sequence number and the new head.
async fn insert_linked<'e>(
    conn: &mut PgConnection,
    head: Head,
    events: impl ExactSizeIterator<Item = &'e NewEvent>,
) -> Result<(i64, Head), StoreError> {
    let (seq, prev) = head;
    let rows = crate::group::chain(seq, prev, events);
    let chunks = rows.chunks(MAX_ROWS).count();
    for (i, chunk) in rows.chunks(MAX_ROWS).enumerate() {
        let last = i + 1 == chunks;
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(if last { "WITH appended AS (" } else { "" });
        crate::group::push_insert(&mut q, "INSERT", chunk);
        if last {
            // Delivered when the transaction commits, and only then.
            q.push(" RETURNING seq) SELECT pg_notify('mandate_ledger', CAST(MAX(seq) AS TEXT)) FROM appended");
        }
        q.build().execute(&mut *conn).await.map_err(db)?;
    }
    let head = rows.last().map_or_else(|| (seq, String::new()), |r| (r.seq, r.hash.clone()));
    Ok((seq + 1, head))
}

/// Appends `event` inside `tx`, a [`PostgresStore::write_tx`] transaction that also changes state:
/// the head is read again (the lock is held, so it is the newest), since the same transaction may
/// have appended before.
pub(crate) async fn append(tx: &mut Transaction<'_, Postgres>, event: &NewEvent) -> Result<i64, StoreError> {
    let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    let head = head.unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
    let (seq, _) = insert_linked(tx, head, std::iter::once(event)).await?;
    Ok(seq)
}

/// One batch in one transaction under [`LEDGER_LOCK`]; returns the first sequence number and the
/// new head.
async fn commit_batch(
    conn: &mut PgConnection,
    cursor: &mut Cursor,
    events: &[NewEvent],
    claims: &[Claimed],
) -> Result<((i64, Head), Vec<ClaimOutcome>), StoreError> {
    // One round trip instead of four when the head is predictable: one node, or a node whose
    // last batch is still the newest.
    match cursor.head.take() {
        Some(head) if cursor.cold == 0 => {
            if let Some(linked) = append_predicted(conn, &head, events, claims).await? {
                return Ok((linked, vec![ClaimOutcome::Granted; claims.len()]));
            }
            cursor.cold = COLD_AFTER_MISS;
        }
        _ => cursor.cold = cursor.cold.saturating_sub(1),
    }
    sqlx::query("BEGIN").execute(&mut *conn).await.map_err(db)?;
    // The claims first, the ledger's lock after them (see `mandate_claim_batch`).
    let (outcomes, head) =
        if claims.is_empty() { (Vec::new(), lock_ledger(conn).await?) } else { claim_batch(conn, claims).await? };
    let settled = crate::group::settle(events, claims, &outcomes);
    let linked = insert_linked(conn, head, settled.iter().map(|e| &**e)).await?;
    sqlx::query("COMMIT").execute(&mut *conn).await.map_err(db)?;
    Ok((linked, outcomes))
}

/// A batch's claims as the four arrays `mandate_claim_batch` takes.
struct ClaimArrays<'a> {
    keys: Vec<Option<&'a str>>,
    expires: Vec<Option<i64>>,
    ids: Vec<&'a str>,
    lengths: Vec<i32>,
}

impl<'a> ClaimArrays<'a> {
    fn of(claims: &'a [Claimed]) -> Result<Self, StoreError> {
        let mut arrays = Self {
            keys: Vec::with_capacity(claims.len()),
            expires: Vec::with_capacity(claims.len()),
            ids: Vec::new(),
            lengths: Vec::with_capacity(claims.len()),
        };
        for c in claims {
            let (key, until) = c.claim.replay.as_ref().map(|(k, t)| (k.as_str(), *t)).unzip();
            arrays.keys.push(key);
            arrays.expires.push(until);
            arrays.lengths.push(
                i32::try_from(c.claim.mandates.len())
                    .map_err(|_| StoreError::Corrupt("a chain too long to claim".into()))?,
            );
            arrays.ids.extend(c.claim.mandates.iter().map(String::as_str));
        }
        Ok(arrays)
    }
}

/// Makes `claims` in the open transaction on `conn`, then takes [`LEDGER_LOCK`] and reads the
/// head, in one statement; one answer per claim, and the head.
async fn claim_batch(conn: &mut PgConnection, claims: &[Claimed]) -> Result<(Vec<ClaimOutcome>, Head), StoreError> {
    let a = ClaimArrays::of(claims)?;
    let (answers, seq, hash): (Vec<String>, Option<i64>, Option<String>) =
        sqlx::query_as("SELECT answers, head_seq, head_hash FROM mandate_claim_batch($1, $2, $3, $4)")
            .bind(&a.keys)
            .bind(&a.expires)
            .bind(&a.ids)
            .bind(&a.lengths)
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
    if answers.len() != claims.len() {
        return Err(StoreError::Corrupt(format!(
            "mandate_claim_batch answered {} of {} claims",
            answers.len(),
            claims.len()
        )));
    }
    Ok((answers.iter().map(|a| claim_outcome(a)).collect::<Result<_, _>>()?, head_or_genesis(seq, hash)))
}

/// The SQLSTATEs with which `mandate_append_batch` refuses a prediction: the head moved, or a
/// claim was refused. Nothing was written; the batch is committed the long way.
const MISSED: [&str; 2] = ["MD001", "MD002"];

/// After a missed prediction, the batches committed the long way before the next one is predicted
/// (several nodes writing: the head this node left has often moved by its next batch).
pub(crate) const COLD_AFTER_MISS: u32 = 8;

/// The batch in one statement, when this writer left the head last (`head`) and every claim is
/// won: `mandate_append_batch` makes the claims, takes the ledger's lock, checks the head is
/// still `head`, and inserts the rows linked here, all or nothing (the statement is its own
/// transaction). `Ok(None)`: the prediction missed and nothing was written.
async fn append_predicted(
    conn: &mut PgConnection,
    head: &Head,
    events: &[NewEvent],
    claims: &[Claimed],
) -> Result<Option<(i64, Head)>, StoreError> {
    let (seq, prev) = head.clone();
    let rows = crate::group::chain(seq, prev, events.iter());
    let Some(last) = rows.last().map(|r| (r.seq, r.hash.clone())) else {
        return Ok(Some((seq + 1, head.clone())));
    };
    let a = ClaimArrays::of(claims)?;
    let column = |f: for<'r> fn(&'r crate::group::Row<'r>) -> Option<&'r str>| rows.iter().map(f).collect::<Vec<_>>();
    let result = sqlx::query_scalar::<_, i64>(
        "SELECT mandate_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(head.0)
    .bind(head.1.as_str())
    .bind(&a.keys)
    .bind(&a.expires)
    .bind(&a.ids)
    .bind(&a.lengths)
    .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event.at_ms).collect::<Vec<_>>())
    .bind(column(|r| Some(r.event.kind.as_str())))
    .bind(column(|r| Some(r.event.actor.as_str())))
    .bind(column(|r| r.event.agent.as_deref()))
    .bind(column(|r| r.event.chain_id.as_deref()))
    .bind(column(|r| r.event.mandate_id.as_deref()))
    .bind(column(|r| r.event.tool.as_deref()))
    .bind(column(|r| r.event.resource.as_deref()))
    .bind(column(|r| r.event.decision.as_deref()))
    .bind(column(|r| Some(r.event.detail.as_str())))
    .bind(column(|r| Some(r.prev.as_str())))
    .bind(column(|r| Some(r.hash.as_str())))
    .fetch_one(&mut *conn)
    .await;
    match result {
        Ok(through) if through == last.0 => Ok(Some((seq + 1, last))),
        Ok(through) => {
            Err(StoreError::Corrupt(format!("mandate_append_batch appended through {through}, not {}", last.0)))
        }
        Err(sqlx::Error::Database(e)) if e.code().is_some_and(|c| MISSED.contains(&c.as_ref())) => Ok(None),
        Err(e) => Err(db(e)),
    }
}

fn claim_outcome(answer: &str) -> Result<ClaimOutcome, StoreError> {
    if answer == "granted" {
        return Ok(ClaimOutcome::Granted);
    }
    if answer == "replayed" {
        return Ok(ClaimOutcome::Replayed);
    }
    if let Some(id) = answer.strip_prefix("exhausted:") {
        return Ok(ClaimOutcome::Exhausted(id.to_owned()));
    }
    if let Some(id) = answer.strip_prefix("unknown:") {
        return Ok(ClaimOutcome::Unknown(id.to_owned()));
    }
    Err(StoreError::Corrupt(format!("mandate_claim_batch answered `{answer}`")))
}

/// PostgreSQL's batches: one transaction under [`LEDGER_LOCK`], the head read inside it (another
/// node may have appended since this one last did, so a remembered head is never trusted).
pub(crate) struct PgBatches;

#[async_trait]
impl Batches for PgBatches {
    type Db = Postgres;

    async fn commit(
        conn: &mut PoolConnection<Postgres>,
        cursor: &mut Cursor,
        events: &[NewEvent],
        claims: &[Claimed],
    ) -> Result<(i64, Vec<ClaimOutcome>), StoreError> {
        let result = commit_batch(conn, cursor, events, claims).await;
        match result {
            Ok(((first, last), outcomes)) => {
                cursor.head = Some(last);
                Ok((first, outcomes))
            }
            Err(e) => {
                // The transaction may still be open, or the connection gone: never reuse it.
                let _ = sqlx::query("ROLLBACK").execute(&mut **conn).await;
                conn.close_on_drop();
                cursor.head = None;
                Err(e)
            }
        }
    }

    fn db(e: sqlx::Error) -> StoreError {
        db(e)
    }
}

crate::sql::impl_sql_store!(PostgresStore, Postgres, {
    async fn append_claimed(
        &self,
        event: NewEvent,
        claim: crate::Claim,
        refuse: crate::Refuse,
    ) -> Result<(i64, ClaimOutcome), StoreError> {
        self.group.append_claimed(event, claim, refuse).await
    }

    async fn prune_claims(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM proof_replays WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn changed(&self, within: std::time::Duration) -> bool {
        self.wait_for_notification(within).await
    }

    fn shared(&self) -> bool {
        true
    }
});

impl PostgresStore {
    /// Waits for a notification on [`LEDGER_CHANNEL`] for at most `within`; `true` when one came.
    /// The listening connection is opened on first use and again after it is lost; while it cannot
    /// be had, this just waits (callers read the ledger after every wait anyway).
    async fn wait_for_notification(&self, within: std::time::Duration) -> bool {
        let mut slot = self.listener.lock().await;
        if slot.is_none() {
            match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(mut l) => match l.listen(LEDGER_CHANNEL).await {
                    Ok(()) => *slot = Some(l),
                    Err(e) => tracing::warn!(error = %e, "cannot listen for ledger changes; reading on a timer"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot listen for ledger changes; reading on a timer"),
            }
        }
        let Some(listener) = slot.as_mut() else {
            drop(slot);
            tokio::time::sleep(within).await;
            return false;
        };
        match tokio::time::timeout(within, listener.try_recv()).await {
            Ok(Ok(Some(_))) => true,
            // The connection was lost: notifications sent meanwhile are gone, so the caller's read
            // after this wait is what catches up; the next wait listens again.
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the ledger listener failed; listening again");
                *slot = None;
                false
            }
            Err(_) => false,
        }
    }
}

pub(crate) mod ledger {
    //! The ledger walk's pages over PostgreSQL.
    use super::db;
    use sqlx::PgConnection;

    crate::sql::impl_ledger_pages!(PgConnection);
}
