//! Behaviour so far: signals of drift from the task's intent, per chain, fed to policy as a risk
//! score and named signals.
//!
//! The signals are deliberately simple and explainable: a tool the chain has not used before, data
//! more sensitive than anything the chain touched so far, more agents acting in one chain than a
//! task usually needs, a burst of calls, a tool nobody has classified. Only allowed calls update the
//! picture, so probing with denied calls does not teach the chain's baseline.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

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
}

/// Per-chain behaviour.
#[derive(Debug, Default)]
pub struct Behaviour {
    chains: Mutex<HashMap<String, ChainStats>>,
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
}

impl Behaviour {
    /// The signals this call would raise.
    pub fn assess(&self, call: &CallShape<'_>) -> Risk {
        let chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        let stats = chains.get(call.chain_id);
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

    /// Records an allowed call into its chain's baseline.
    pub fn record(&self, call: &CallShape<'_>) {
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        let s = chains.entry(call.chain_id.to_owned()).or_default();
        s.tools.insert(call.tool.to_owned());
        let level = sensitivity(call.data_class);
        s.max_sensitivity = Some(s.max_sensitivity.map_or(level, |m| m.max(level)));
        s.agents.insert(call.agent.to_owned());
        s.recent.push_back(call.now);
        while s.recent.front().is_some_and(|t| call.now - *t >= VOLUME_WINDOW_SECS) {
            s.recent.pop_front();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn call<'a>(tool: &'a str, data_class: &'a str, agent: &'a str, now: i64) -> CallShape<'a> {
        CallShape { chain_id: "c", agent, tool, data_class, classified: true, depth: 1, now }
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
}
