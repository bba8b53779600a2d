//! The ledger's repository: reading events by what they concern, verifying the whole hash chain, and
//! keeping the signed checkpoints that anchor it.
//!
//! Appending is not here: every state change appends its event inside its own transaction, and
//! [`crate::Store::append_event`] appends an event that goes with no state change (decisions,
//! refusals) through group commit. Both return only once the event is durable.

use crate::StoreError;
use async_trait::async_trait;
use mandate_core::event::Event;
use mandate_core::ledger::{Checkpoint, LedgerHead, Problem, Trust, VerifiedCheckpoint};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whose activity a query or a blast radius covers, following authority down its chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Everything done under a mandate this agent held or that descends from one (its sub-agents'
    /// calls included), and every event about the agent itself.
    Agent(String),
    /// Everything in one chain.
    Chain(String),
    /// Everything in every chain this human (`user:<id>`) started.
    Root(String),
}

/// Filters of a ledger query; `None` matches everything, and filters combine with AND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerQuery {
    /// Only events about this agent (its id).
    pub agent: Option<String>,
    /// Only events of chains this human (`user:<id>`) started, done by them, or about them.
    pub human: Option<String>,
    /// Only events of this chain.
    pub chain: Option<String>,
    /// Only events of this mandate.
    pub mandate: Option<String>,
    /// Only events about this tool (`server/tool`).
    pub tool: Option<String>,
    /// Only events with this decision (`allow`, `deny`, `approval_required`, ...).
    pub decision: Option<String>,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Only events within this reach.
    pub reach: Option<Reach>,
    /// Only events at or after this time, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// Only events before this time, Unix milliseconds.
    pub until_ms: Option<i64>,
    /// Only events after this sequence number.
    pub after_seq: Option<i64>,
    /// Only events before this sequence number.
    pub before_seq: Option<i64>,
    /// The newest `limit` matches instead of the oldest (still returned oldest first).
    pub newest: bool,
    /// At most this many (1 to 10000).
    pub limit: i64,
}

impl Default for LedgerQuery {
    fn default() -> Self {
        Self {
            agent: None,
            human: None,
            chain: None,
            mandate: None,
            tool: None,
            decision: None,
            kind: None,
            reach: None,
            since_ms: None,
            until_ms: None,
            after_seq: None,
            before_seq: None,
            newest: false,
            limit: 100,
        }
    }
}

/// What a verification checks against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Which keys stored checkpoints may be signed with.
    pub trust: Trust,
    /// Checkpoints exported earlier, already verified, that the chain must still contain.
    pub anchors: Vec<VerifiedCheckpoint>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    /// Whether the ledger verified.
    pub ok: bool,
    /// Events checked (up to the first problem).
    pub events: u64,
    /// Checkpoints whose hash matched the chain (stored and given).
    pub checkpoints_matched: u64,
    /// Stored checkpoints found.
    pub checkpoints_stored: u64,
    /// The newest event verified, when the whole ledger verified.
    pub head: Option<LedgerHead>,
    /// The first problem, when it did not.
    pub problem: Option<Problem>,
    /// `server_keys` when checkpoints had to be signed by one of the server's keys, `any_key` when the
    /// keys were not at hand and any valid signature was accepted.
    pub trust: String,
}

/// The ledger's repository.
#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Events matching `query`, oldest first.
    async fn query_events(&self, query: &LedgerQuery) -> Result<Vec<Event>, StoreError>;
    /// The newest event, if any.
    async fn head(&self) -> Result<Option<LedgerHead>, StoreError>;
    /// Walks the whole ledger in one consistent snapshot, checking every event's hash and link and
    /// every stored and given checkpoint, and reports the first problem.
    async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, StoreError>;
    /// Stores a checkpoint (a second one for the same sequence number is ignored).
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// Stored checkpoints after `after_seq`, oldest first, at most `limit`.
    async fn checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError>;
    /// The newest stored checkpoint.
    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError>;
    /// The ids of the chains `reach` covers, in order of issue.
    async fn chains_reached(&self, reach: &Reach) -> Result<Vec<String>, StoreError>;
}

/// How appends without a state change are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitOptions {
    /// The most events committed in one transaction (one fsync). `1` commits each event on its own:
    /// the baseline that group commit is measured against.
    pub max_batch: usize,
    /// How long a statement waits for another connection's lock before SQLite answers `BUSY`
    /// (which the writer then retries a few times).
    pub busy_timeout: std::time::Duration,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        Self { max_batch: 4096, busy_timeout: std::time::Duration::from_secs(10) }
    }
}

/// Pages of one backend's ledger, read inside one consistent snapshot, for [`walk`].
#[async_trait]
pub(crate) trait LedgerPages: Send {
    /// Up to `limit` events after `after`, in order.
    async fn events_after(&mut self, after: i64, limit: i64) -> Result<Vec<Event>, StoreError>;
    /// The stored checkpoints with `after < seq <= upto`, each with its sequence number and the
    /// checkpoint or why it is unusable.
    async fn checkpoints_between(
        &mut self,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(i64, Result<Checkpoint, String>)>, StoreError>;
    /// The highest sequence number stored.
    async fn max_seq(&mut self) -> Result<i64, StoreError>;
}

/// Events read per statement while walking the whole ledger.
pub(crate) const PAGE: i64 = 4096;

/// How far [`mandate_core::ledger::written_at`] searches for where a misplaced row was written.
const MOVED_SEARCH: i64 = 5_000_000;

/// Verifies a whole ledger, page by page: every event's hash and link, and every stored and given
/// checkpoint; the first problem is reported. The same walk for every backend.
pub(crate) async fn walk(pages: &mut impl LedgerPages, options: &VerifyOptions) -> Result<VerifyReport, StoreError> {
    use mandate_core::ledger::{moved, written_at, ProblemKind, Verifier};
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
        let events = pages.events_after(after, PAGE).await?;
        // Checkpoints are added before the events they cover; after the last page, every remaining
        // one (a checkpoint beyond the end is a truncation).
        let upto = events.last().map_or(i64::MAX, |e| e.seq);
        if upto > loaded {
            for (seq, checkpoint) in pages.checkpoints_between(loaded, upto).await? {
                stored += 1;
                match checkpoint {
                    Ok(c) => v.add_stored_checkpoint(&c, &options.trust),
                    Err(why) => v.add_defect(seq, ProblemKind::CheckpointInvalid, why),
                }
            }
            loaded = upto;
        }
        let Some(last) = events.last().map(|e| e.seq) else { break };
        for e in &events {
            if let Err(mut problem) = v.push(e) {
                if problem.kind == ProblemKind::EventEdited {
                    let max = pages.max_seq().await?;
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

/// Reads every event as [`walk`] does, without checking anything: the baseline that verification
/// speed is measured against. Returns how many events were read.
pub(crate) async fn scan(pages: &mut impl LedgerPages) -> Result<u64, StoreError> {
    let (mut after, mut n) = (0i64, 0u64);
    loop {
        let events = pages.events_after(after, PAGE).await?;
        let Some(last) = events.last().map(|e| e.seq) else { return Ok(n) };
        n += u64::try_from(events.len()).unwrap_or(0);
        after = last;
    }
}
