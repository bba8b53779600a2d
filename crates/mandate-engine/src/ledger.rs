//! The ledger's operations: signed checkpoints (on request and in the background), verification
//! against the server's keys, and the views an incident responder reads ([`views`]) and a SIEM
//! ingests ([`ocsf`]).
//!
//! Checkpoints are signed with the current mandate signing key, so the JWKS that verifies mandates
//! also verifies checkpoints, and retired keys stay trusted: every key the ring has ever held (its
//! files are never deleted) counts as the server's. A checkpoint is taken every
//! `checkpoint_every_events` events or `checkpoint_every_seconds` seconds, whichever comes first,
//! only when events were appended since the last one, and once more at a clean shutdown, so that
//! after a graceful stop the whole ledger is covered.

pub mod ocsf;
pub mod views;

use crate::clock::millis;
use crate::engine::Engine;
use mandate_core::ledger::{Checkpoint, Trust, VerifiedCheckpoint};
use mandate_store::{StoreError, VerifyOptions, VerifyReport};
use std::time::{Duration, Instant};

/// How often checkpoints are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerSettings {
    /// Take a checkpoint once this many events were appended since the last one.
    pub checkpoint_every_events: u64,
    /// Take a checkpoint this many seconds after the last one, if events were appended since.
    pub checkpoint_every_seconds: u64,
}

impl LedgerSettings {
    /// What `mandate serve` uses unless `[ledger]` says otherwise: every 10,000 events or 60 seconds.
    pub const DEFAULT: Self = Self { checkpoint_every_events: 10_000, checkpoint_every_seconds: 60 };
}

impl Engine {
    /// Signs the head of the ledger with the current signing key and stores the checkpoint, unless
    /// the newest checkpoint already covers the head (then that one is returned). `None` for an
    /// empty ledger.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let Some(head) = self.store.head().await? else { return Ok(None) };
        if let Some(latest) = self.store.latest_checkpoint().await? {
            if latest.seq >= head.seq {
                return Ok(Some(latest));
            }
        }
        let (_, key) = self.keys.signing();
        let checkpoint = Checkpoint::sign(&head, millis(self.clock.now()), &key);
        self.store.insert_checkpoint(&checkpoint).await?;
        self.metrics.event("ledger.checkpoint");
        tracing::debug!(seq = checkpoint.seq, kid = %checkpoint.kid, "ledger checkpoint");
        Ok(Some(checkpoint))
    }

    /// Verifies the whole ledger; stored checkpoints must be signed by one of the server's keys
    /// (current or retired), and the chain must still hold every checkpoint in `anchors`.
    pub async fn verify_ledger(&self, anchors: Vec<VerifiedCheckpoint>) -> Result<VerifyReport, StoreError> {
        let kids = self.keys.list().into_iter().map(|k| k.kid).collect();
        self.store.verify(&VerifyOptions { trust: Trust::Keys(kids), anchors }).await
    }
}

/// Takes checkpoints in the background as `settings` says, until the returned task is aborted.
pub fn spawn_checkpointer(state: Engine, settings: LedgerSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(settings.checkpoint_every_seconds.max(1));
        let poll = every.min(Duration::from_millis(250));
        let every_events = i64::try_from(settings.checkpoint_every_events.max(1)).unwrap_or(i64::MAX);
        let mut last_seq = match state.store.latest_checkpoint().await {
            Ok(c) => c.map_or(0, |c| c.seq),
            Err(_) => 0,
        };
        let mut last_at = Instant::now();
        loop {
            tokio::time::sleep(poll).await;
            let head = match state.store.head().await {
                Ok(Some(head)) => head.seq,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the ledger head for a checkpoint");
                    continue;
                }
            };
            let due = head - last_seq >= every_events || (head > last_seq && last_at.elapsed() >= every);
            if !due {
                continue;
            }
            match state.checkpoint().await {
                Ok(Some(c)) => {
                    last_seq = c.seq;
                    last_at = Instant::now();
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "taking a ledger checkpoint failed; retrying"),
            }
        }
    })
}
