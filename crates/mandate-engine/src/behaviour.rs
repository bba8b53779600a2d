//! Behaviour so far: signals of drift from the task's intent, per chain, fed to policy as a risk
//! score and named signals.
//!
//! The signals are deliberately simple and explainable: a tool the chain has not used before, data
//! more sensitive than anything the chain touched so far, more agents acting in one chain than a
//! task usually needs, a burst of calls, a tool nobody has classified. Only allowed calls update the
//! picture, so probing with denied calls does not teach the chain's baseline.
//!
//! A chain's picture is kept while any mandate of it can still be used: until its root mandate
//! expires (a delegation never outlives its parent), and a margin more (see [`crate::expiry`]).
//! Dropping it earlier would let a chain start over with a clean baseline, which raises fewer
//! signals, so the limit is the root's expiry, never the last caller's.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::expiry::{Ends, ExpiringMap};

/// A raised signal and its weight in the score.
const SIGNALS: &[(&str, u32)] = &[
    ("new_tool", 10),
    ("sensitivity_escalation", 25),
    ("fan_out", 15),
    ("volume", 20),
    ("unclassified_tool", 30),
    ("deep_chain", 5),
];

/// More distinct agents than this in one chain raise `fan_out`.
const FAN_OUT_AGENTS: usize = 3;
/// More calls than this within [`VOLUME_WINDOW_SECS`] raise `volume`.
const VOLUME_CALLS: usize = 60;
const VOLUME_WINDOW_SECS: i64 = 60;

#[derive(Debug, Default)]
struct ChainStats {
    tools: HashSet<String>,
    max_sensitivity: Option<u8>,
    agents: HashSet<String>,
    recent: VecDeque<i64>,
    /// When the chain's last usable mandate expires (its root's expiry).
    ends_at: i64,
}

impl Ends for ChainStats {
    fn ends_at(&self) -> i64 {
        self.ends_at
    }
}

type Chains = ExpiringMap<ChainStats>;

/// Per-chain behaviour.
#[derive(Debug, Default)]
pub struct Behaviour {
    chains: Mutex<Chains>,
}

/// What a call looks like next to its chain's behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Risk {
    /// The sum of the raised signals' weights.
    pub score: u32,
    /// The raised signals.
    pub signals: Vec<String>,
}

/// How sensitive a data class is; unknown classes are the most sensitive.
pub fn sensitivity(data_class: &str) -> u8 {
    match data_class {
        "public" => 0,
        "internal" => 1,
        "financial" | "pii" => 2,
        _ => 3,
    }
}

/// The facts of a call that behaviour looks at.
pub struct CallShape<'a> {
    /// The chain.
    pub chain_id: &'a str,
    /// The calling agent.
    pub agent: &'a str,
    /// The tool.
    pub tool: &'a str,
    /// The tool's data class.
    pub data_class: &'a str,
    /// Whether the catalogue knows the tool.
    pub classified: bool,
    /// The mandate's depth.
    pub depth: u8,
    /// Now, Unix seconds.
    pub now: i64,
    /// When the chain's root mandate expires, Unix seconds: no mandate of the chain outlives it.
    pub chain_expires_at: i64,
}

impl Behaviour {
    /// The signals this call would raise.
    pub fn assess(&self, call: &CallShape<'_>) -> Risk {
        let chains = self.lock();
        let stats = chains.entries.get(call.chain_id);
        let mut raised = Vec::new();
        if let Some(s) = stats {
            if !s.tools.contains(call.tool) {
                raised.push("new_tool");
            }
            if s.max_sensitivity.is_some_and(|m| sensitivity(call.data_class) > m) {
                raised.push("sensitivity_escalation");
            }
            let agents = s.agents.len() + usize::from(!s.agents.contains(call.agent));
            if agents > FAN_OUT_AGENTS {
                raised.push("fan_out");
            }
            // Times are recorded in order, so the window's start is found by bisection, not a scan.
            let recent = s.recent.len() - s.recent.partition_point(|t| call.now - *t >= VOLUME_WINDOW_SECS);
            if recent >= VOLUME_CALLS {
                raised.push("volume");
            }
        }
        if !call.classified {
            raised.push("unclassified_tool");
        }
        if call.depth >= 3 {
            raised.push("deep_chain");
        }
        let score = raised.iter().map(|r| SIGNALS.iter().find(|(n, _)| n == r).map_or(0, |(_, w)| *w)).sum();
        Risk { score, signals: raised.into_iter().map(str::to_owned).collect() }
    }

    /// Records an allowed call into its chain's baseline; drops, once a minute, the chains whose
    /// root mandate expired long enough ago.
    pub fn record(&self, call: &CallShape<'_>) {
        let mut chains = self.lock();
        chains.prune_if_due(call.now);
        let s = chains.entries.entry(call.chain_id.to_owned()).or_default();
        s.ends_at = s.ends_at.max(call.chain_expires_at);
        s.tools.insert(call.tool.to_owned());
        let level = sensitivity(call.data_class);
        s.max_sensitivity = Some(s.max_sensitivity.map_or(level, |m| m.max(level)));
        s.agents.insert(call.agent.to_owned());
        s.recent.push_back(call.now);
        while s.recent.front().is_some_and(|t| call.now - *t >= VOLUME_WINDOW_SECS) {
            s.recent.pop_front();
        }
        // A burst grows the window's buffer; give the memory back once the burst has passed.
        if s.recent.capacity() > 1024 && s.recent.len() < s.recent.capacity() / 4 {
            let keep = s.recent.len() * 2;
            s.recent.shrink_to(keep);
        }
    }

    /// How many chains have a baseline in memory.
    pub fn chains(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Chains> {
        // Each operation leaves the map whole, so a poisoned lock still guards valid baselines.
        self.chains.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::expiry::{KEEP_AFTER_EXPIRY_SECS, PRUNE_EVERY_SECS};

    fn call<'a>(tool: &'a str, data_class: &'a str, agent: &'a str, now: i64) -> CallShape<'a> {
        CallShape { chain_id: "c", agent, tool, data_class, classified: true, depth: 1, now, chain_expires_at: 10_000 }
    }

    #[test]
    fn signals_follow_the_chain_baseline() {
        let b = Behaviour::default();
        assert_eq!(b.assess(&call("erp/read", "internal", "a", 0)), Risk::default(), "a first call has no baseline");
        b.record(&call("erp/read", "internal", "a", 0));
        assert_eq!(b.assess(&call("erp/read", "internal", "a", 1)).signals, Vec::<String>::new());
        let r = b.assess(&call("hr/read", "pii", "a", 1));
        assert_eq!((r.signals, r.score), (vec!["new_tool".to_owned(), "sensitivity_escalation".to_owned()], 35));
        for agent in ["b", "c"] {
            b.record(&call("erp/read", "internal", agent, 2));
        }
        assert_eq!(b.assess(&call("erp/read", "internal", "d", 3)).signals, vec!["fan_out".to_owned()]);
        for i in 0..60 {
            b.record(&call("erp/read", "internal", "a", 10 + i / 10));
        }
        assert_eq!(b.assess(&call("erp/read", "internal", "a", 20)).signals, vec!["volume".to_owned()]);
        assert_eq!(
            b.assess(&call("erp/read", "internal", "a", 200)).signals,
            Vec::<String>::new(),
            "the window slides"
        );
        let unclassified = CallShape { classified: false, depth: 3, ..call("x/y", "secret", "a", 200) };
        assert!(b.assess(&unclassified).signals.contains(&"unclassified_tool".to_owned()));
        assert!(b.assess(&unclassified).signals.contains(&"deep_chain".to_owned()));
    }

    #[test]
    fn a_chains_baseline_lasts_until_its_root_mandate_has_expired() {
        let b = Behaviour::default();
        let short =
            |now| CallShape { chain_id: "short", chain_expires_at: 1_000, ..call("erp/read", "internal", "a", now) };
        let long =
            |now| CallShape { chain_id: "long", chain_expires_at: 90_000, ..call("erp/read", "internal", "a", now) };
        b.record(&short(500));
        b.record(&long(500));
        // A later call of the short chain under a mandate expiring sooner does not shorten its life.
        b.record(&CallShape { chain_expires_at: 600, ..short(550) });
        let at_end = 1_000 + KEEP_AFTER_EXPIRY_SECS;
        b.record(&long(at_end));
        assert_eq!(b.chains(), 2, "kept through the margin past the root's expiry");
        assert_eq!(b.assess(&short(at_end)).signals, Vec::<String>::new(), "its baseline still holds");
        b.record(&long(at_end + PRUNE_EVERY_SECS + 1));
        assert_eq!(b.chains(), 1, "dropped past it");
        assert_eq!(b.assess(&long(at_end + PRUNE_EVERY_SECS + 1)).signals, Vec::<String>::new());
    }

    #[test]
    fn a_burst_gives_its_memory_back() {
        let b = Behaviour::default();
        for i in 0..20_000 {
            b.record(&call("erp/read", "internal", "a", 100 + i / 1_000));
        }
        b.record(&call("erp/read", "internal", "a", 1_000));
        let chains = b.lock();
        let recent = &chains.entries["c"].recent;
        assert_eq!(recent.len(), 1);
        assert!(recent.capacity() < 1_024, "capacity {} after the burst", recent.capacity());
    }
}
