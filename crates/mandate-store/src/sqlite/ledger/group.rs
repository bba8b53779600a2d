//! Group commit: appends that carry no other state change share one transaction, and one fsync.
//!
//! Appenders put their event on a queue and wait. One writer task takes everything queued (up to
//! `max_batch`), reads the head of the chain, hashes the batch in order, inserts it with multi-row
//! `INSERT`s, and commits with `synchronous = FULL`; only then is each appender woken with its
//! sequence number. So an append never returns before its event is on disk, and while one batch is
//! being synced the next one gathers: the more appenders wait, the more each fsync carries.
//!
//! The batch goes through the store's single writer connection like every other transaction, and
//! reads the head inside its transaction, so the chain stays correct across batches and across the
//! state-changing transactions that append their own events in between.
//!
//! Rejected: a timer that holds events back to fill a batch (adds latency when idle, and the queue
//! fills by itself under load); `synchronous = NORMAL` (an acknowledged event could be lost in a
//! power cut); one statement per event (a round trip to SQLite's thread per row).

use crate::sqlite::db;
use crate::StoreError;
use mandate_core::event::{chain_hash, NewEvent, GENESIS_HASH};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<i64, StoreError>>;

// Almost every job is an append; boxing the event would cost an allocation per append for nothing.
#[allow(clippy::large_enum_variant)]
enum Job {
    Append(NewEvent, Reply),
    Close(oneshot::Sender<()>),
}

/// The handle appenders hold; clones share one writer task.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

fn stopped() -> StoreError {
    StoreError::Database("the ledger writer has stopped".to_owned())
}

impl GroupCommit {
    /// Starts the writer task over `writer` (a pool of one connection).
    pub(crate) fn start(writer: SqlitePool, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (jobs, queue) = mpsc::channel(max_batch.saturating_mul(4).max(1024));
        tokio::spawn(run(writer, queue, max_batch));
        Self { jobs }
    }

    /// Appends `event` and returns its sequence number once it is durable.
    pub(crate) async fn append(&self, event: NewEvent) -> Result<i64, StoreError> {
        let (reply, done) = oneshot::channel();
        self.jobs.send(Job::Append(event, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// Commits what is queued, then stops the writer; later appends fail.
    pub(crate) async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.jobs.send(Job::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn run(writer: SqlitePool, mut queue: mpsc::Receiver<Job>, max_batch: usize) {
    let mut jobs = Vec::with_capacity(max_batch);
    loop {
        if queue.recv_many(&mut jobs, max_batch).await == 0 {
            return;
        }
        let mut events = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut close = None;
        for job in jobs.drain(..) {
            match job {
                Job::Append(event, reply) if close.is_none() => {
                    events.push(event);
                    replies.push(reply);
                }
                Job::Append(_, reply) => {
                    let _ = reply.send(Err(stopped()));
                }
                Job::Close(ack) => close = Some(ack),
            }
        }
        if !events.is_empty() {
            match commit(&writer, &events).await {
                Ok(first) => {
                    for (seq, reply) in (first..).zip(replies) {
                        // An appender that gave up waiting still has its event durable.
                        let _ = reply.send(Ok(seq));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, events = events.len(), "a ledger batch failed to commit");
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        if let Some(ack) = close {
            queue.close();
            while let Some(job) = queue.recv().await {
                if let Job::Append(_, reply) = job {
                    let _ = reply.send(Err(stopped()));
                }
            }
            let _ = ack.send(());
            return;
        }
    }
}

/// Appends `events` in one transaction; returns the first one's sequence number.
pub(crate) async fn commit(writer: &SqlitePool, events: &[NewEvent]) -> Result<i64, StoreError> {
    let mut tx = writer.begin().await.map_err(db)?;
    let first = append_all(&mut tx, events).await?;
    tx.commit().await.map_err(db)?;
    Ok(first)
}

/// Rows per `INSERT` statement: powers of two up to this, so a handful of statement shapes are
/// prepared once and reused. 256 rows of 13 values stay far below SQLite's 32766 bound variables.
/// The statements are `INSERT OR ROLLBACK`: a failed batch is abandoned whole, so SQLite need not keep
/// a statement journal to undo half a statement.
const MAX_ROWS: usize = 256;

struct Row<'a> {
    seq: i64,
    event: &'a NewEvent,
    prev: String,
    hash: String,
}

/// Appends `events` after the current head inside `tx`; returns the first one's sequence number.
pub(crate) async fn append_all(tx: &mut Transaction<'_, Sqlite>, events: &[NewEvent]) -> Result<i64, StoreError> {
    let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    let (mut seq, mut prev) = match head {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let first = seq;
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        let hash = chain_hash(&prev, seq, event);
        rows.push(Row { seq, event, prev: std::mem::replace(&mut prev, hash.clone()), hash });
        seq += 1;
    }
    let mut rest = rows.as_slice();
    while !rest.is_empty() {
        let n = rest.len().min(MAX_ROWS);
        // The largest power of two not above `n`.
        let n = 1usize << (usize::BITS - 1 - n.leading_zeros());
        let (chunk, tail) = rest.split_at(n);
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT OR ROLLBACK INTO events (seq, at_ms, kind, actor, agent_id, chain_id, mandate_id, tool, resource, decision, detail, prev_hash, hash) ",
        );
        q.push_values(chunk, |mut b, r| {
            // Borrowed `&str`s are bound without a copy; `&String` would be cloned into the arguments.
            let e = r.event;
            b.push_bind(r.seq)
                .push_bind(e.at_ms)
                .push_bind(e.kind.as_str())
                .push_bind(e.actor.as_str())
                .push_bind(e.agent.as_deref())
                .push_bind(e.chain_id.as_deref())
                .push_bind(e.mandate_id.as_deref())
                .push_bind(e.tool.as_deref())
                .push_bind(e.resource.as_deref())
                .push_bind(e.decision.as_deref())
                .push_bind(e.detail.as_str())
                .push_bind(r.prev.as_str())
                .push_bind(r.hash.as_str());
        });
        q.build().execute(&mut **tx).await.map_err(db)?;
        rest = tail;
    }
    Ok(first)
}
