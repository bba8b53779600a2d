//! Call budgets, counted in memory and made durable by the ledger.
//!
//! A call under a mandate counts against the mandate and every ancestor, so a chain can never spend
//! more than any hop allowed. Checking and counting happen under one lock, so concurrent calls
//! cannot double-spend. The counts are not written anywhere on the hot path: every `allow` decision
//! event is durable before the allow is returned, and at start the counts are rebuilt from those
//! events ([`mandate_store::DecisionStore::allow_counts`]).
//!
//! A count is kept while its mandate can still be used, and a margin more (see [`crate::expiry`]):
//! then it can no longer decide anything. Views of an expired mandate read its count from the
//! ledger instead ([`crate::engine::Engine::used_calls_of`]).

use crate::expiry::{Ends, ExpiringMap};
use mandate_core::mandate::MandateRecord;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug)]
struct Spent {
    calls: u64,
    expires_at: i64,
}

impl Ends for Spent {
    fn ends_at(&self) -> i64 {
        self.expires_at
    }
}

type Counts = ExpiringMap<Spent>;

fn count(counts: &mut Counts, m: &MandateRecord, n: u64) {
    counts.entries.entry(m.id.clone()).or_insert(Spent { calls: 0, expires_at: m.expires_at }).calls += n;
}

/// The calls counted against each mandate (its own and its descendants').
#[derive(Debug, Default)]
pub struct Budgets {
    counts: Mutex<Counts>,
}

/// A mandate of the chain whose budget is spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// The mandate.
    pub mandate_id: String,
    /// Its hop (depth).
    pub hop: u8,
    /// Its budget.
    pub max_calls: u64,
}

impl Budgets {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Each operation leaves the map whole, so a poisoned lock still guards valid counts.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls counted against `mandate_id`, while its count is kept.
    pub fn used(&self, mandate_id: &str) -> u64 {
        self.lock().entries.get(mandate_id).map_or(0, |s| s.calls)
    }

    /// How many mandates have a count in memory.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no mandate has a count in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `n` calls made under the last mandate of `chain` (root first) to it and its ancestors
    /// (used when rebuilding at start), leaving out those whose count is no longer kept at `now`.
    pub fn add(&self, chain: &[&MandateRecord], n: u64, now: i64) {
        let mut counts = self.lock();
        for m in chain.iter().filter(|m| !crate::expiry::forgotten(m.expires_at, now)) {
            count(&mut counts, m, n);
        }
    }

    /// The first hop of `chain` (the mandate and its ancestors, root first) whose budget is spent.
    pub fn check(&self, chain: &[&MandateRecord]) -> Result<(), Exhausted> {
        first_exhausted(&self.lock().entries, chain)
    }

    /// Counts one call against every mandate of `chain`, unless one of them is spent; drops the
    /// counts of mandates expired long enough before `now`, once a minute.
    pub fn consume(&self, chain: &[&MandateRecord], now: i64) -> Result<(), Exhausted> {
        let mut counts = self.lock();
        counts.prune_if_due(now);
        first_exhausted(&counts.entries, chain)?;
        for m in chain {
            count(&mut counts, m, 1);
        }
        Ok(())
    }

    /// Gives back a call whose decision could not be recorded (so it was never allowed).
    pub fn refund(&self, chain: &[&MandateRecord]) {
        let mut counts = self.lock();
        for m in chain {
            if let Some(s) = counts.entries.get_mut(&m.id) {
                s.calls = s.calls.saturating_sub(1);
            }
        }
    }
}

fn first_exhausted(spent: &HashMap<String, Spent>, chain: &[&MandateRecord]) -> Result<(), Exhausted> {
    match chain.iter().find(|m| spent.get(&m.id).map_or(0, |s| s.calls) >= m.max_calls) {
        Some(m) => Err(Exhausted { mandate_id: m.id.clone(), hop: m.depth, max_calls: m.max_calls }),
        None => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::expiry::{forgotten, KEEP_AFTER_EXPIRY_SECS, PRUNE_EVERY_SECS};
    use mandate_core::id::{AgentId, Principal};
    use mandate_core::mandate::{Intent, Scope};

    fn mandate(id: &str, expires_at: i64, max_calls: u64) -> MandateRecord {
        MandateRecord {
            id: id.to_owned(),
            chain_id: "chain".to_owned(),
            parent_id: None,
            depth: 1,
            agent: AgentId::parse("finance-close").unwrap(),
            chain_agents: Vec::new(),
            lineage: Vec::new(),
            root: Principal::parse("user:alice@example.org").unwrap(),
            intent: Intent { purpose: "close".to_owned(), category: "finance.close".to_owned() },
            scope: Scope(Vec::new()),
            max_calls,
            max_depth: 0,
            issued_at: 0,
            expires_at,
            key_thumbprint: String::new(),
            binding: Default::default(),
            client_id: None,
            resource: None,
        }
    }

    #[test]
    fn an_expired_mandates_count_is_dropped_and_its_live_parents_is_kept() {
        let b = Budgets::default();
        let parent = mandate("parent", 10_000, 100);
        let child = mandate("child", 1_000, 5);
        for _ in 0..5 {
            b.consume(&[&parent, &child], 500).unwrap();
        }
        assert_eq!(b.consume(&[&parent, &child], 500).unwrap_err().mandate_id, "child", "the child is spent");
        // Within the margin past the child's expiry, its count is still there.
        b.consume(&[&parent], 1_000 + KEEP_AFTER_EXPIRY_SECS).unwrap();
        assert_eq!((b.used("child"), b.used("parent"), b.len()), (5, 6, 2));
        // Past it, the next call drops the child's count; the parent keeps every call.
        b.consume(&[&parent], 1_001 + KEEP_AFTER_EXPIRY_SECS + PRUNE_EVERY_SECS).unwrap();
        assert_eq!((b.used("child"), b.used("parent"), b.len()), (0, 7, 1));
        assert!(forgotten(child.expires_at, 1_001 + KEEP_AFTER_EXPIRY_SECS));
        assert!(!forgotten(parent.expires_at, 1_001 + KEEP_AFTER_EXPIRY_SECS));
    }

    #[test]
    fn a_rebuild_counts_an_expired_childs_calls_against_its_live_parent_only() {
        let b = Budgets::default();
        let parent = mandate("parent", 10_000, 3);
        let child = mandate("child", 1_000, 3);
        b.add(&[&parent, &child], 3, 5_000);
        assert_eq!((b.used("child"), b.used("parent"), b.len()), (0, 3, 1));
        assert_eq!(b.check(&[&parent]).unwrap_err().mandate_id, "parent", "the child's calls spent the parent");
    }
}
