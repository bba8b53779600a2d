//! Proof and assertion ids stay single-use across a restart.
//!
//! A DPoP proof (and an actor assertion) is accepted while it is fresh: at most
//! `proof_max_age_seconds` old and at most `clock_skew_seconds` from the future. The replay cache
//! remembers each used id for that whole window. It lives in memory, so after a restart it would
//! start empty and a proof used a minute before could be presented again.
//!
//! **How.** Every request that uses up an id records it in its own ledger event (`detail.replay`):
//! a decision's event, a delegation's, a refused delegation's. Those events are durable before the
//! answer, so an id that reached an answer is in the ledger. At start, [`Engine::load_replay_window`]
//! reads the events of the last window (by time, which the ledger indexes) and puts their ids back
//! in the cache, each as of its event's time, so each is forgotten exactly when it would have been.
//!
//! **Why this and not the alternatives.** Refusing every proof issued before the process started
//! (an `iat` before the start plus the skew) needs no storage, but refuses every fresh proof for the
//! first `clock_skew_seconds` after each start: an outage per restart. A table of used ids written
//! beside each decision is one more write per call; the decision's event already is one, in the same
//! group-commit batch. The cost moves to start-up: one read of at most a window of events (the cache
//! is bounded by `replay_cache_capacity`, which also bounds what a window can hold).
//!
//! **What is not covered.** An id used by a request whose event could not be recorded (the ledger
//! unavailable) was refused anyway (`internal.ledger_unavailable`): replaying it after a restart
//! gets a fresh decision, never a second answer to one that was allowed.

use crate::engine::Engine;
use mandate_store::{LedgerQuery, StoreError};

/// The kinds of event that record used ids.
const KINDS: &[&str] = &["decision", "mandate.delegated", "mandate.delegation_refused"];

impl Engine {
    /// Puts back in the replay cache every id used within the window before now. Returns how many.
    pub async fn load_replay_window(&self) -> Result<usize, StoreError> {
        let now_ms = crate::clock::millis(self.clock.now());
        let since_ms = now_ms - i64::from(self.settings.mandates.replay_window_secs()) * 1000;
        let mut loaded = 0;
        for kind in KINDS {
            let mut after_seq = None;
            loop {
                let query = LedgerQuery {
                    kind: Some((*kind).to_owned()),
                    since_ms: Some(since_ms),
                    after_seq,
                    limit: 10_000,
                    ..LedgerQuery::default()
                };
                let events = self.store.query_events(&query).await?;
                let Some(last) = events.last() else { break };
                after_seq = Some(last.seq);
                let mut cache = self.replay.lock().unwrap_or_else(|p| p.into_inner());
                for event in &events {
                    let Ok(detail) = serde_json::from_str::<serde_json::Value>(&event.event.detail) else { continue };
                    let at = event.event.at_ms.div_euclid(1000);
                    for key in detail.get("replay").and_then(serde_json::Value::as_array).into_iter().flatten() {
                        if let Some(key) = key.as_str() {
                            // A key seen twice in the ledger was refused the second time; either way
                            // it is remembered now.
                            let _ = cache.check_and_insert(key, at);
                            loaded += 1;
                        }
                    }
                }
            }
        }
        Ok(loaded)
    }
}
