//! Call budgets, counted in memory and made durable by the ledger.
//!
//! A call under a mandate counts against the mandate and every ancestor, so a chain can never spend
//! more than any hop allowed. Checking and counting happen under one lock, so concurrent calls
//! cannot double-spend. The counts are not written anywhere on the hot path: every `allow` decision
//! event is durable before the allow is returned, and at start the counts are rebuilt from those
//! events ([`mandate_store::DecisionStore::allow_counts`]).

use mandate_core::mandate::MandateRecord;
use std::collections::HashMap;
use std::sync::Mutex;

/// The calls counted against each mandate (its own and its descendants').
#[derive(Debug, Default)]
pub struct Budgets {
    used: Mutex<HashMap<String, u64>>,
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
    /// Calls counted against `mandate_id`.
    pub fn used(&self, mandate_id: &str) -> u64 {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).get(mandate_id).copied().unwrap_or(0)
    }

    /// Adds `n` calls made by a mandate to it and its lineage (used when rebuilding at start).
    pub fn add(&self, lineage: &[String], mandate_id: &str, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        for id in lineage.iter().map(String::as_str).chain(std::iter::once(mandate_id)) {
            *used.entry(id.to_owned()).or_insert(0) += n;
        }
    }

    /// The first hop of `chain` (the mandate and its ancestors, root first) whose budget is spent.
    pub fn check(&self, chain: &[&MandateRecord]) -> Result<(), Exhausted> {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        first_exhausted(&used, chain)
    }

    /// Counts one call against every mandate of `chain`, unless one of them is spent.
    pub fn consume(&self, chain: &[&MandateRecord]) -> Result<(), Exhausted> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        first_exhausted(&used, chain)?;
        for m in chain {
            *used.entry(m.id.clone()).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Gives back a call whose decision could not be recorded (so it was never allowed).
    pub fn refund(&self, chain: &[&MandateRecord]) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        for m in chain {
            if let Some(n) = used.get_mut(&m.id) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

fn first_exhausted(used: &HashMap<String, u64>, chain: &[&MandateRecord]) -> Result<(), Exhausted> {
    match chain.iter().find(|m| used.get(&m.id).copied().unwrap_or(0) >= m.max_calls) {
        Some(m) => Err(Exhausted { mandate_id: m.id.clone(), hop: m.depth, max_calls: m.max_calls }),
        None => Ok(()),
    }
}
