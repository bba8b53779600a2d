//! The change feed: what any node of a fleet wrote, applied on this one.
//!
//! Where several nodes share one database, each keeps in memory what it decides with (revocations,
//! the registry, policy, the tool catalogue, pinned definitions, the intent taxonomy), and every
//! change to those is an event in the one ledger. So each node reads the ledger after the last
//! sequence number it applied, woken by the database's notification at every commit
//! ([`mandate_store::Store::changed`]) and at least every [`POLL`] without one, and applies what it
//! finds by reading the changed state back from the store (never from the event's text, so
//! applying an event twice, or its own, changes nothing).
//!
//! A node that cannot confirm it is current (its last complete read began more than the lag bound
//! ago: the database is out of reach, or the node is starved) stops allowing: every presentation is
//! refused with `internal.node_behind`, and `/readyz` says so, until a read completes again. It
//! fails closed rather than decide on state that may have been revoked elsewhere.
//!
//! Budgets and proof ids are not applied here: they are claimed in the database with each allow
//! ([`mandate_store::Store::append_claimed`]), which is exact, not eventually consistent.

use crate::engine::Engine;
use mandate_core::event::Event;
use mandate_store::EventFilter;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest wait for a notification before the ledger is read anyway.
pub const POLL: Duration = Duration::from_millis(200);

/// How often a node forgets the proof ids that expired (any node may; each does it rarely).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The event kinds whose changes a node reads back (see [`Engine::catch_up`]).
pub const APPLIED_KINDS: &[&str] = &[
    "mandate.revoked",
    "agent.registered",
    "agent.updated",
    "agent.suspended",
    "agent.resumed",
    "agent.retired",
    "agent.certified",
    "human.created",
    "human.deactivated",
    "policy.updated",
    "tool.classified",
    "tool.definition_pinned",
    "tool.definition_changed",
    "tool.definition_approved",
    "tool.definition_moved",
    "tool.definition_flagged",
    "intent.updated",
    "intent.removed",
    "drift.reset",
];

/// After a notification, how long a node waits for more before it reads: commits come in bursts
/// (every decision batch notifies), and one read after the burst does for all of them.
const COALESCE: Duration = Duration::from_millis(10);

/// Events read per statement while catching up.
const PAGE: i64 = 1000;

/// Where this node is in the ledger.
#[derive(Debug)]
pub struct Feed {
    /// The sequence number of the last event applied.
    applied: AtomicI64,
    /// When the last complete read began: everything committed before then is applied.
    confirmed: Mutex<Option<Instant>>,
    /// How old that may be before this node stops allowing.
    max_lag: Mutex<Duration>,
}

impl Default for Feed {
    fn default() -> Self {
        Self { applied: AtomicI64::new(0), confirmed: Mutex::new(None), max_lag: Mutex::new(Duration::from_secs(1)) }
    }
}

/// Why a node may not decide now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    /// In words, for the reason and `/readyz`.
    pub message: String,
}

impl Feed {
    /// Starts at `seq`: the head of the ledger read before this node loaded its state, so that
    /// whatever was committed while it loaded is applied again (harmlessly) rather than missed.
    pub fn start_at(&self, seq: i64, max_lag: Duration) {
        self.applied.store(seq, Ordering::SeqCst);
        *self.max_lag.lock().unwrap_or_else(|p| p.into_inner()) = max_lag;
        *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// The sequence number of the last event applied.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// How long ago the last complete read began, if one did.
    pub fn lag(&self) -> Option<Duration> {
        self.confirmed.lock().unwrap_or_else(|p| p.into_inner()).map(|at| at.elapsed())
    }

    /// `Err` when this node cannot confirm it is current within its bound.
    pub fn check(&self) -> Result<(), Behind> {
        let max = *self.max_lag.lock().unwrap_or_else(|p| p.into_inner());
        match self.lag() {
            Some(lag) if lag <= max => Ok(()),
            Some(lag) => Err(Behind {
                message: format!(
                    "this node last confirmed it had every change of the shared database {} ms ago, more than its bound of {} ms; it refuses until it catches up",
                    lag.as_millis(),
                    max.as_millis()
                ),
            }),
            None => Err(Behind { message: "this node has not yet read the shared database's changes".to_owned() }),
        }
    }

    fn confirm(&self, read_began: Instant) {
        let mut confirmed = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        if confirmed.is_none_or(|c| c < read_began) {
            *confirmed = Some(read_began);
        }
    }
}

impl Engine {
    /// `Err` when the store is shared and this node is not known to be current (see [`Feed`]).
    pub fn current(&self) -> Result<(), Behind> {
        if !self.store.shared() {
            return Ok(());
        }
        self.feed.check()
    }

    /// Reads and applies every event after the last one applied that changes what this node
    /// decides with ([`APPLIED_KINDS`]: not decisions, which are most of the ledger); how many. The
    /// head is read first, so that the read covers everything committed before it began, and
    /// confirms this node current as of then.
    pub async fn catch_up(&self) -> Result<usize, mandate_store::StoreError> {
        let began = Instant::now();
        let Some(head) = self.store.head().await? else {
            self.feed.confirm(began);
            return Ok(0);
        };
        let mut applied = 0;
        loop {
            let after = self.feed.applied();
            if after >= head.seq {
                self.feed.confirm(began);
                return Ok(applied);
            }
            let filter = EventFilter {
                after_seq: Some(after),
                through_seq: Some(head.seq),
                kinds: APPLIED_KINDS.iter().map(|k| (*k).to_owned()).collect(),
                limit: PAGE,
                ..Default::default()
            };
            let events = self.store.events(&filter).await?;
            for e in &events {
                self.apply(e).await?;
                self.feed.applied.store(e.seq, Ordering::SeqCst);
                applied += 1;
            }
            if events.len() < usize::try_from(PAGE).unwrap_or(usize::MAX) {
                self.feed.applied.fetch_max(head.seq, Ordering::SeqCst);
            }
        }
    }

    /// Applies one event by reading what it changed back from the store.
    async fn apply(&self, e: &Event) -> Result<(), mandate_store::StoreError> {
        let kind = e.event.kind.as_str();
        if matches!(kind, "mandate.revoked" | "agent.suspended" | "agent.retired") {
            let now = self.now_secs();
            self.revocations.insert(self.store.revoked_unexpired(now).await?, now);
        }
        if kind.starts_with("agent.") {
            if let Some(id) = e.event.agent.as_deref().and_then(|a| mandate_core::id::AgentId::parse(a).ok()) {
                match self.store.agent(&id).await? {
                    Some(agent) => self.registry.put_agent(&agent),
                    None => self.registry.forget_agent(&id),
                }
            }
        }
        match kind {
            "human.created" | "human.deactivated" => self.registry.forget_humans(),
            "policy.updated" => {
                self.load_policies().await.map_err(mandate_store::StoreError::Database)?;
            }
            "tool.classified" => self.catalogue.load(self.decisions.tools().await?),
            "tool.definition_pinned"
            | "tool.definition_changed"
            | "tool.definition_approved"
            | "tool.definition_moved"
            | "tool.definition_flagged" => self.pins.load(self.decisions.pins().await?),
            "intent.updated" | "intent.removed" => {
                self.reload_taxonomy().await.map_err(mandate_store::StoreError::Corrupt)?;
            }
            "drift.reset" => {
                let detail: serde_json::Value = serde_json::from_str(&e.event.detail).unwrap_or_default();
                if let Some(category) = detail.get("category").and_then(|c| c.as_str()) {
                    let _writing = self.behaviour.writes.lock().await;
                    self.behaviour.reset(category);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Follows the ledger until the task is dropped: after every notification (or [`POLL`] without
/// one), [`Engine::catch_up`]. Started only where the store is shared.
pub fn spawn(engine: Engine) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        let mut pruned = Instant::now();
        loop {
            // Proof ids are kept in the database only while their proofs could be presented.
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = Instant::now();
                match engine.store.prune_claims(engine.now_secs()).await {
                    Ok(n) if n > 0 => tracing::debug!(forgotten = n, "expired proof ids forgotten"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "expired proof ids could not be forgotten; trying later"),
                }
            }
            match engine.catch_up().await {
                Ok(n) => {
                    if failing {
                        tracing::info!("the change feed reads the shared database again");
                        failing = false;
                    }
                    if n > 0 {
                        engine.metrics.feed_applied(n);
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::error!(error = %e, "the change feed cannot read the shared database; this node refuses once it is behind its bound");
                        failing = true;
                    }
                }
            }
            if engine.store.changed(POLL).await {
                tokio::time::sleep(COALESCE).await;
            }
        }
    })
}
