//! Group commit: appends that carry no other state change share one transaction, and one fsync.
//!
//! Appenders put their event on a queue and wait. One writer task per node takes everything queued
//! (up to `max_batch`) and hands it to its backend ([`Batches::commit`]), which hashes the batch in
//! order after the head of the chain and commits it in one durable transaction; only then is each
//! appender woken with its sequence number. So an append never returns before its event is on
//! disk, and while one batch is being synced the next one gathers: the more appenders wait, the
//! more each commit carries. How a backend commits is its own: SQLite through its one writer
//! connection (`sqlite::ledger::group`), PostgreSQL under the ledger's advisory lock
//! (`postgres::group`).
//!
//! An append may carry a claim (a proof used once and a call of each budget of a chain, for nodes
//! sharing one database): the backend makes the batch's claims inside the batch's transaction, and
//! records a refused claim's event as the deny it became ([`settle`]). So a claim costs no
//! transaction of its own, and a claim and its decision commit together or not at all.

use crate::{Claim, ClaimOutcome, Refuse, StoreError};
use async_trait::async_trait;
use mandate_core::event::{chain_hash, NewEvent};
use sqlx::pool::{Pool, PoolConnection};
use sqlx::QueryBuilder;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<(i64, ClaimOutcome), StoreError>>;

/// A claim riding with the batch: the event at `index` (in the batch) is an allow that stands only
/// if `claim` is won.
pub(crate) struct Claimed {
    pub(crate) index: usize,
    pub(crate) claim: Claim,
    pub(crate) refuse: Refuse,
}

/// The batch's events as recorded, given what its claims got (`outcomes[i]` is `claims[i]`'s):
/// a lost claim's event replaced by its refusal.
pub(crate) fn settle<'e>(
    events: &'e [NewEvent],
    claims: &[Claimed],
    outcomes: &[ClaimOutcome],
) -> Vec<std::borrow::Cow<'e, NewEvent>> {
    let mut settled: Vec<std::borrow::Cow<'e, NewEvent>> = events.iter().map(std::borrow::Cow::Borrowed).collect();
    for (c, outcome) in claims.iter().zip(outcomes) {
        if *outcome != ClaimOutcome::Granted {
            if let Some(slot) = settled.get_mut(c.index) {
                *slot = std::borrow::Cow::Owned((c.refuse)(outcome, &events[c.index]));
            }
        }
    }
    settled
}

/// The last committed event: its sequence number and hash.
pub(crate) type Head = (i64, String);

/// What the writer knows between batches: the head it left, while it can trust it, and for how
/// many more batches a backend that predicts the head should not, after a prediction missed.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    pub(crate) head: Option<Head>,
    pub(crate) cold: u32,
}

/// How one backend commits a batch of events.
#[async_trait]
pub(crate) trait Batches: Send + Sync + 'static {
    /// The database.
    type Db: sqlx::Database;
    /// Appends `events` in one transaction on `conn`, linked after `cursor.head` when the backend
    /// can trust the head it left last time (else after the head it reads), with `claims` made in
    /// the same transaction first (and the events of those that lost [`settle`]d); returns the
    /// first event's sequence number and what each claim got, and leaves `cursor.head` at the last
    /// event.
    async fn commit(
        conn: &mut PoolConnection<Self::Db>,
        cursor: &mut Cursor,
        events: &[NewEvent],
        claims: &[Claimed],
    ) -> Result<(i64, Vec<ClaimOutcome>), StoreError>;
    /// The backend's error mapping.
    fn db(e: sqlx::Error) -> StoreError;
}

/// How long the writer keeps the store's writer connection across back-to-back batches. Acquiring
/// and releasing it costs a round trip to SQLite's thread each (sqlx checks a connection as it goes
/// back), so under load the writer keeps it; other transactions wait at most this long for it.
const HOLD: Duration = Duration::from_millis(5);

/// How long a deferred append waits for a batch to ride with before it is committed alone.
pub(crate) const DEFER: Duration = Duration::from_millis(20);

// Almost every job is an append; boxing the event would cost an allocation per append for nothing.
#[allow(clippy::large_enum_variant)]
enum Job {
    Append(NewEvent, Option<(Claim, Refuse)>, Reply),
    /// An append nobody waits for: it rides with the next batch, or is committed alone after
    /// [`DEFER`] when none comes.
    Deferred(NewEvent),
    Close(oneshot::Sender<()>),
    /// Makes the writer task panic, for the test of its supervision.
    #[cfg(test)]
    Panic,
}

/// The handle appenders hold; clones share one writer task.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    /// Whether the last batch committed: false from a failed batch until one commits again (or a
    /// readiness probe writes). Appends are tried whatever it says: it is a report, not a gate.
    healthy: Arc<AtomicBool>,
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
    ///
    /// It runs on the server's runtime. A dedicated thread with a runtime of its own was measured
    /// too: it helped while a batch took five hand-offs to SQLite's thread (each waited for a runtime
    /// thread to finish the decision it was computing), and stopped helping once a batch took one;
    /// then the extra thread's wake-ups cost more than they saved.
    pub(crate) fn start<B: Batches>(writer: Pool<B::Db>, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (jobs, queue) = mpsc::channel(max_batch.saturating_mul(4).max(1024));
        let healthy = Arc::new(AtomicBool::new(true));
        tokio::spawn(supervise::<B>(writer, queue, max_batch, healthy.clone()));
        Self { jobs, healthy }
    }

    /// Whether the last batch committed.
    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    /// Records that a write through the writer connection committed (a readiness probe).
    pub(crate) fn mark_healthy(&self) {
        self.healthy.store(true, Ordering::SeqCst);
    }

    /// Makes the writer task panic (see [`supervise`]).
    #[cfg(test)]
    pub(crate) async fn panic_for_test(&self) {
        let _ = self.jobs.send(Job::Panic).await;
    }

    /// Whether the writer task still takes jobs.
    pub(crate) fn running(&self) -> bool {
        !self.jobs.is_closed()
    }

    /// Appends `event` and returns its sequence number once it is durable.
    pub(crate) async fn append(&self, event: NewEvent) -> Result<i64, StoreError> {
        let (reply, done) = oneshot::channel();
        self.jobs.send(Job::Append(event, None, reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?.map(|(seq, _)| seq)
    }

    /// Appends `event` once `claim` is won in the batch's transaction (else its refusal), and
    /// returns the sequence number once it is durable, with what the claim got.
    pub(crate) async fn append_claimed(
        &self,
        event: NewEvent,
        claim: Claim,
        refuse: Refuse,
    ) -> Result<(i64, ClaimOutcome), StoreError> {
        let (reply, done) = oneshot::channel();
        self.jobs.send(Job::Append(event, Some((claim, refuse)), reply)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// Queues `event` to be committed with the next batch (or alone within [`DEFER`]), without
    /// waiting: for records that follow a durable one (a forwarded call's outcome after its
    /// decision), which must not cost the next decision an fsync of their own.
    pub(crate) async fn append_deferred(&self, event: NewEvent) -> Result<(), StoreError> {
        self.jobs.send(Job::Deferred(event)).await.map_err(|_| stopped())
    }

    /// Commits what is queued, then stops the writer; later appends fail.
    pub(crate) async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.jobs.send(Job::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// Runs the writer task, and starts it again should it ever panic (a bug, or a driver's), so that one
/// bad batch cannot stop the ledger for good: the queue outlives the task (a tokio mutex is not
/// poisoned by a panic), the appenders of the lost batch are told it failed (their replies are
/// dropped), and the next batch starts on a fresh connection and a head read from the table.
async fn supervise<B: Batches>(
    writer: Pool<B::Db>,
    queue: mpsc::Receiver<Job>,
    max_batch: usize,
    healthy: Arc<AtomicBool>,
) {
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    loop {
        let task = tokio::spawn(run::<B>(writer.clone(), queue.clone(), max_batch, healthy.clone()));
        match task.await {
            Err(e) if e.is_panic() => {
                healthy.store(false, Ordering::SeqCst);
                tracing::error!("the ledger writer panicked; starting it again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Closed on request, or the runtime is shutting down.
            _ => return,
        }
    }
}

/// The writer task. A failed batch fails its appenders and nothing else: the loop goes on, the next
/// batch takes a fresh connection (a failed one is closed, never reused in an unknown state) and
/// reads the head again, so the writer recovers by itself once the fault (a full disk, a lost file
/// descriptor) clears. It ends only on `close`.
async fn run<B: Batches>(
    writer: Pool<B::Db>,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    healthy: Arc<AtomicBool>,
) {
    let mut queue = queue.lock().await;
    let mut jobs = Vec::with_capacity(max_batch);
    let mut cursor = Cursor::default();
    // The writer connection, while this writer holds it, and since when.
    let mut held: Option<(PoolConnection<B::Db>, Instant)> = None;
    // Deferred appends waiting for a batch to ride with.
    let mut deferred: Vec<NewEvent> = Vec::new();
    loop {
        // Hand the connection back before waiting for work, and after HOLD of back-to-back batches,
        // so that the store's other transactions get their turn.
        if held.as_ref().is_some_and(|(_, since)| queue.is_empty() || since.elapsed() >= HOLD) {
            held = None;
        }
        let received = if deferred.is_empty() {
            Some(queue.recv_many(&mut jobs, max_batch).await)
        } else {
            tokio::time::timeout(DEFER, queue.recv_many(&mut jobs, max_batch)).await.ok()
        };
        if received == Some(0) && deferred.is_empty() {
            return;
        }
        let mut events = Vec::with_capacity(jobs.len() + deferred.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut claims = Vec::new();
        let mut close = None;
        for job in jobs.drain(..) {
            match job {
                Job::Append(event, claim, reply) if close.is_none() => {
                    // Each reply's claim, by its place among the claims (`None`: nothing claimed).
                    let claimed = claim.map(|(claim, refuse)| {
                        claims.push(Claimed { index: events.len(), claim, refuse });
                        claims.len() - 1
                    });
                    events.push(event);
                    replies.push((reply, claimed));
                }
                Job::Deferred(event) if close.is_none() => deferred.push(event),
                Job::Deferred(_) => tracing::error!("a deferred append after close; dropped"),
                Job::Append(_, _, reply) => {
                    let _ = reply.send(Err(stopped()));
                }
                Job::Close(ack) => close = Some(ack),
                #[cfg(test)]
                #[allow(clippy::panic)]
                Job::Panic => panic!("the writer task panics, as a test asked"),
            }
        }
        // Deferred appends ride with appends someone waits for; alone, they wait for DEFER (the
        // timeout above), for a close, or for a full batch.
        let flush_deferred = !events.is_empty()
            || received.is_none()
            || received == Some(0)
            || close.is_some()
            || deferred.len() >= max_batch;
        if flush_deferred {
            // After the awaited ones, so that their replies' sequence numbers are `first..`.
            events.append(&mut deferred);
        }
        if !events.is_empty() {
            let conn = match held.take() {
                Some(conn) => Ok(conn),
                None => writer.acquire().await.map(|conn| (conn, Instant::now())).map_err(B::db),
            };
            let committed = match conn {
                Ok((mut conn, since)) => {
                    let mut committed = B::commit(&mut conn, &mut cursor, &events, &claims).await;
                    // A busy database wrote nothing: the same batch is tried again, a few times, before
                    // its appenders are told it failed.
                    for backoff in [5u64, 20, 80] {
                        match &committed {
                            Err(e) if e.is_retryable() => {
                                tracing::warn!(error = %e, backoff_ms = backoff, "the ledger batch met a busy database; trying again");
                                tokio::time::sleep(Duration::from_millis(backoff)).await;
                                cursor.head = None;
                                committed = B::commit(&mut conn, &mut cursor, &events, &claims).await;
                            }
                            _ => break,
                        }
                    }
                    if committed.is_ok() {
                        held = Some((conn, since));
                    }
                    committed
                }
                Err(e) => Err(e),
            };
            healthy.store(committed.is_ok(), Ordering::SeqCst);
            match committed {
                Ok((first, outcomes)) => {
                    for (seq, (reply, claimed)) in (first..).zip(replies) {
                        // Backends answer every claim before they commit (see `Batches::commit`);
                        // a claim without an answer is never taken for a grant.
                        let answer = match claimed {
                            None => Ok((seq, ClaimOutcome::Granted)),
                            Some(i) => outcomes.get(i).map(|o| (seq, o.clone())).ok_or_else(|| {
                                StoreError::Corrupt("the ledger batch left a claim unanswered".to_owned())
                            }),
                        };
                        // An appender that gave up waiting still has its event durable.
                        let _ = reply.send(answer);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, events = events.len(), "a ledger batch failed to commit");
                    if events.len() > replies.len() {
                        tracing::error!(
                            lost = events.len() - replies.len(),
                            "deferred events (call outcomes) of the failed batch are lost"
                        );
                    }
                    for (reply, _) in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        if received == Some(0) {
            return;
        }
        if let Some(ack) = close {
            // Back to the pool before the store closes it.
            drop(held.take());
            queue.close();
            while let Some(job) = queue.recv().await {
                if let Job::Append(_, _, reply) = job {
                    let _ = reply.send(Err(stopped()));
                }
            }
            let _ = ack.send(());
            return;
        }
    }
}

/// An event linked into the chain: its sequence number, previous hash and hash.
pub(crate) struct Row<'a> {
    pub(crate) seq: i64,
    pub(crate) event: &'a NewEvent,
    pub(crate) prev: String,
    pub(crate) hash: String,
}

/// `events` linked after the event `(seq, prev)`.
pub(crate) fn chain<'a>(
    mut seq: i64,
    mut prev: String,
    events: impl ExactSizeIterator<Item = &'a NewEvent>,
) -> Vec<Row<'a>> {
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let hash = chain_hash(&prev, seq, event);
        rows.push(Row { seq, event, prev: std::mem::replace(&mut prev, hash.clone()), hash });
    }
    rows
}

/// `<verb> INTO events (...) VALUES (...), ...` for `rows`: the one place the ledger's columns are
/// written.
pub(crate) fn push_insert<'a, DB: sqlx::Database>(q: &mut QueryBuilder<'a, DB>, verb: &str, rows: &'a [Row<'a>])
where
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(verb);
    q.push(
        " INTO events (seq, at_ms, kind, actor, agent_id, chain_id, mandate_id, tool, resource, decision, detail, prev_hash, hash) ",
    );
    q.push_values(rows, |mut b, r| {
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
}
