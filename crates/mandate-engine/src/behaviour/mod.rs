//! Behaviour so far: drift from the task's declared intent, measured along the whole chain at the
//! moment of the call, and handed to policy as a score and named signals.
//!
//! A call can be within every permission and still be wrong for the task. What is measured is not
//! an account's habits but the distance between what the chain does and what a task of its
//! mandate's intent category needs ([`taxonomy`]), and what such tasks have been seen to do
//! ([`profile`]). Each signal is named, weighted and explained in words ([`SIGNALS`]); the score is
//! their sum, at most 100. Policy reads `context.risk.score` and `context.risk.signals` and decides:
//! the default policy holds the exfiltration shape and high scores, and denies very high ones.
//!
//! Two kinds of state, both bounded:
//! - per chain ([`ChainStats`], at most [`MAX_CHAIN_BYTES`] however the chain behaves), kept while
//!   any mandate of the chain can still be used: until its root mandate expires (a delegation never
//!   outlives its parent), and a margin more (see [`crate::expiry`]). Dropping it earlier would let
//!   a chain start over with a clean baseline, which raises fewer signals. After a restart it is
//!   rebuilt from the ledger's allowed calls;
//! - per category ([`profile::Profile`]), learned from allowed calls and persisted.
//!
//! Only allowed calls move a chain's picture forward, so probing with denied calls teaches nothing;
//! denials are counted on their own, as scope pressure.

pub mod destinations;
pub mod profile;
pub mod taxonomy;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, RwLock};

use crate::expiry::{Ends, ExpiringMap};
use mandate_core::mandate::Action;
use mandate_core::pattern::ToolName;
use profile::{Profile, START};
use serde::Serialize;
use taxonomy::{Category, Mode};

/// Every signal: its name, its weight in the score, and whether it is worth an alert on its own.
pub const SIGNALS: &[(&str, u32, bool)] = &[
    ("exfiltration", 60, true),
    ("sensitive_egress", 20, false),
    ("new_destination", 15, false),
    ("sensitivity_escalation", 30, false),
    ("delegated_escalation", 35, true),
    ("intent_mismatch", 35, false),
    ("unfamiliar_tool", 20, false),
    ("rare_sequence", 10, false),
    ("slow_drift", 40, true),
    ("scope_pressure", 30, true),
    ("bulk_access", 50, true),
    ("volume", 25, false),
    ("fan_out", 15, false),
    ("deep_chain", 10, false),
    ("unclassified_tool", 30, false),
    ("unknown_category", 20, false),
];

fn weight(name: &str) -> u32 {
    SIGNALS.iter().find(|(n, _, _)| *n == name).map_or(0, |(_, w, _)| *w)
}

fn index(name: &str) -> u32 {
    SIGNALS.iter().position(|(n, _, _)| *n == name).map_or(31, |i| u32::try_from(i).unwrap_or(31))
}

/// Calls remembered per chain for `volume`: the most a category may allow a minute, plus one.
pub const MAX_RECENT: usize = taxonomy::MAX_CALLS_PER_MINUTE as usize + 1;
const VOLUME_WINDOW_SECS: i64 = 60;
/// Distinct resources, denied tools, agents and subjects remembered per chain.
const MAX_RESOURCES: usize = taxonomy::MAX_RESOURCES as usize + 1;
const MAX_DENIED: usize = 16;
const MAX_AGENTS: usize = taxonomy::MAX_AGENTS as usize + 1;
const MAX_SUBJECTS: usize = 16;
/// Denials in a row, or distinct tools denied, that raise `scope_pressure`.
const DENIALS_IN_ROW: u16 = 3;
const DENIED_TOOLS: usize = 4;
/// Off-task calls in one chain (a mismatch, a rare transition or an escalation each) that raise
/// `slow_drift` at the next one.
const OFF_TASK_CALLS: u16 = 2;
/// Rare transitions remembered per chain until it ends.
const MAX_PENDING: usize = 16;

/// The most memory one chain's picture takes, in bytes, whatever the chain does: every set above is
/// capped, resource and denied tool names are kept as 64-bit hashes, an agent's id and last tool as
/// text of at most 256 bytes each. An ordinary chain (a few agents, tens of resources) holds about
/// 1 KiB. `a_chain_s_memory_is_bounded` checks it.
pub const MAX_CHAIN_BYTES: usize = 64 * 1024;

/// How sensitive a data class is; unknown classes are the most sensitive.
pub fn sensitivity(data_class: &str) -> u8 {
    match data_class {
        "public" => 0,
        "internal" => 1,
        "financial" | "pii" => 2,
        _ => 3,
    }
}

/// A data class as one bit: the shipped classes have their own, every other shares one.
pub fn class_bit(data_class: &str) -> u8 {
    match data_class {
        "public" => 1,
        "internal" => 2,
        "financial" => 4,
        "pii" => 8,
        "secret" => 16,
        _ => 32,
    }
}

#[derive(Debug, Default)]
struct AgentTrail {
    id: String,
    /// Its last allowed tool, for transitions.
    last_tool: Option<String>,
    /// The data classes it touched, as bits.
    classes: u8,
}

#[derive(Debug, Default)]
struct ChainStats {
    max_sensitivity: Option<u8>,
    agents: Vec<AgentTrail>,
    /// Agents beyond those remembered.
    more_agents: usize,
    recent: VecDeque<i64>,
    resources: HashSet<u64>,
    /// The most sensitive class read so far, if not public: what egress could carry out.
    sensitive_read: Option<String>,
    /// The domains the sensitive reads named.
    subjects: Vec<String>,
    denials_in_row: u16,
    denied_tools: HashSet<u64>,
    off_task: u16,
    /// Signals already alerted on for this chain, as bits of [`SIGNALS`] indices.
    alerted: u32,
    /// Whether it counted as a chain in its category's profile.
    taught: bool,
    /// Its category, for the candidates below.
    category: String,
    /// Rare transitions its allowed calls made (and nothing else): they count towards the
    /// category's learning only once the chain has ended without a drift alert.
    pending: Vec<(String, String)>,
    /// Whether it raised a drift alert: its candidates teach nothing.
    tainted: bool,
    /// When the chain's last usable mandate expires (its root's expiry).
    ends_at: i64,
}

impl Ends for ChainStats {
    fn ends_at(&self) -> i64 {
        self.ends_at
    }
}

impl ChainStats {
    fn agent(&self, id: &str) -> Option<&AgentTrail> {
        self.agents.iter().find(|a| a.id == id)
    }

    fn agent_count(&self, with: &str) -> usize {
        self.agents.len() + self.more_agents + usize::from(self.agent(with).is_none())
    }

    /// An upper bound of the memory it holds.
    fn bytes(&self) -> usize {
        let set = |n: usize| n * 16 + 64;
        std::mem::size_of::<Self>()
            + set(self.resources.capacity())
            + set(self.denied_tools.capacity())
            + self.recent.capacity() * 8
            + self
                .agents
                .iter()
                .map(|a| {
                    std::mem::size_of::<AgentTrail>()
                        + a.id.capacity()
                        + a.last_tool.as_ref().map_or(0, String::capacity)
                })
                .sum::<usize>()
            + self.subjects.iter().map(|s| s.capacity() + 24).sum::<usize>()
            + self.sensitive_read.as_ref().map_or(0, String::capacity)
            + self.category.capacity()
            + self.pending.iter().map(|(a, b)| 48 + a.capacity() + b.capacity()).sum::<usize>()
    }
}

type Chains = ExpiringMap<ChainStats>;

/// Settings of drift scoring (`[intents]` in `mandate.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftSettings {
    /// Whether calls are scored at all.
    pub enabled: bool,
    /// The organisation's own domains: egress to them (and their subdomains) is internal.
    pub internal_domains: Vec<String>,
    /// In `enforce`, only calls scoring below this teach the category's profile (approved calls
    /// always do).
    pub learn_below: u32,
    /// A call scoring this much or more is a drift alert (so is a signal alerted on its own).
    pub alert_score: u32,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self { enabled: true, internal_domains: Vec::new(), learn_below: 10, alert_score: 50 }
    }
}

/// Per-chain behaviour, the intent taxonomy and the learned profiles.
#[derive(Debug)]
pub struct Behaviour {
    chains: Mutex<Chains>,
    taxonomy: RwLock<HashMap<String, Arc<Category>>>,
    profiles: Mutex<HashMap<String, Profile>>,
    settings: DriftSettings,
    /// Whether calls are scored (starts as `settings.enabled`).
    enabled: std::sync::atomic::AtomicBool,
    hasher: RandomState,
    /// Held while profiles are written to the store or a reset deletes one, so that a write of a
    /// profile taken before a reset cannot land after it.
    pub(crate) writes: tokio::sync::Mutex<()>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self::new(DriftSettings::default())
    }
}

/// One raised signal, explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Signal {
    /// Its name, as policy sees it in `context.risk.signals`.
    pub name: String,
    /// Its weight in the score.
    pub weight: u32,
    /// Why it was raised, for people.
    pub why: String,
}

/// What a call looks like next to its chain's behaviour and its intent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Risk {
    /// The sum of the raised signals' weights, at most 100.
    pub score: u32,
    /// The raised signals' names.
    pub signals: Vec<String>,
    /// The raised signals, explained.
    pub details: Vec<Signal>,
    /// The mandate's intent category.
    pub category: String,
    /// Whether policy saw the score (`false` while the category is in `learn`).
    pub enforced: bool,
}

impl Risk {
    /// As decisions, ledger events and approvals show it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "score": self.score,
            "signals": self.signals,
            "details": self.details,
            "category": self.category,
            "mode": if self.enforced { "enforce" } else { "learn" },
        })
    }

    /// The score and signals policy sees: nothing while the category learns.
    pub fn for_policy(&self) -> (u32, Vec<String>) {
        if self.enforced {
            (self.score, self.signals.clone())
        } else {
            (0, Vec::new())
        }
    }
}

/// The facts of a call that behaviour looks at.
pub struct CallShape<'a> {
    /// The chain.
    pub chain_id: &'a str,
    /// The calling agent.
    pub agent: &'a str,
    /// The agent that delegated to it, if any.
    pub parent_agent: Option<&'a str>,
    /// The tool.
    pub tool: &'a str,
    /// The tool's data class.
    pub data_class: &'a str,
    /// The tool's risk level.
    pub action: Action,
    /// Whether the catalogue knows the tool.
    pub classified: bool,
    /// The mandate's depth.
    pub depth: u8,
    /// The root mandate's intent category.
    pub category: &'a str,
    /// The resource the call acts on.
    pub resource: Option<&'a str>,
    /// The call's arguments.
    pub arguments: &'a serde_json::Value,
    /// Now, Unix seconds.
    pub now: i64,
    /// When the chain's root mandate expires, Unix seconds: no mandate of the chain outlives it.
    pub chain_expires_at: i64,
}

/// What [`Behaviour::assess`] read from the call, for [`Behaviour::record`] to reuse.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// External destinations of an egress call (`?` when none could be read).
    external: Vec<String>,
    /// Domains named by a sensitive read.
    subjects: Vec<String>,
    /// Whether the call was off its task (a mismatch, a rare transition, an escalation).
    off_task: bool,
    /// The category as assessed, so that recording the call does not look it up again.
    category: Option<Arc<Category>>,
}

/// The unknown destination of an egress call whose arguments name none.
const UNKNOWN_DESTINATION: &str = "?";

impl Behaviour {
    /// Behaviour with `settings` and the shipped taxonomy.
    pub fn new(settings: DriftSettings) -> Self {
        let b = Self {
            chains: Mutex::default(),
            taxonomy: RwLock::default(),
            profiles: Mutex::default(),
            enabled: std::sync::atomic::AtomicBool::new(settings.enabled),
            settings,
            hasher: RandomState::new(),
            writes: tokio::sync::Mutex::new(()),
        };
        for (name, spec) in taxonomy::shipped() {
            if let Ok(c) = Category::new(&name, spec) {
                b.put_category(c);
            }
        }
        b
    }

    /// The settings.
    pub fn settings(&self) -> &DriftSettings {
        &self.settings
    }

    /// Whether calls are scored.
    pub fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns scoring on or off (the benchmarks compare the two in one run).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    /// A category, if the taxonomy has it.
    pub fn category(&self, name: &str) -> Option<Arc<Category>> {
        self.taxonomy.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every category, by name.
    pub fn categories(&self) -> Vec<Arc<Category>> {
        let mut v: Vec<_> = self.taxonomy.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Adds or replaces a category.
    pub fn put_category(&self, c: Category) {
        self.taxonomy.write().unwrap_or_else(|p| p.into_inner()).insert(c.name.clone(), Arc::new(c));
    }

    /// Removes a category; its profile stays until reset (a category put back keeps what it learned).
    pub fn remove_category(&self, name: &str) -> bool {
        self.taxonomy.write().unwrap_or_else(|p| p.into_inner()).remove(name).is_some()
    }

    fn external(&self, domain: &str) -> bool {
        !self.settings.internal_domains.iter().any(|d| destinations::within(domain, d))
    }

    /// The signals this call would raise.
    pub fn assess(&self, call: &CallShape<'_>) -> (Risk, Observed) {
        let mut observed = Observed::default();
        if !self.enabled() {
            return (Risk { category: call.category.to_owned(), enforced: true, ..Risk::default() }, observed);
        }
        let category = self.category(call.category);
        let mut raised: Vec<Signal> = Vec::new();
        let mut raise =
            |name: &str, why: String| raised.push(Signal { name: name.to_owned(), weight: weight(name), why });
        let sens = sensitivity(call.data_class);
        let tool_name = ToolName::parse(call.tool).ok();

        // Destinations of egress, subjects of sensitive reads: only these calls pay for the scan.
        if call.action == Action::Egress {
            let found = destinations::domains(call.arguments, call.resource);
            let named = !found.is_empty();
            observed.external = found.into_iter().filter(|d| self.external(d)).collect();
            if !named {
                observed.external.push(UNKNOWN_DESTINATION.to_owned());
            }
        } else if call.action == Action::Read && sens >= 2 {
            // From the resource only: arguments are free text that an injected instruction could
            // fill with the destination it is about to use.
            observed.subjects = destinations::domains(&serde_json::Value::Null, call.resource);
        }

        let chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        let stats = chains.entries.get(call.chain_id);
        let profiles = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
        let profile = profiles.get(call.category);

        match &category {
            None => raise(
                "unknown_category",
                format!("intent category `{}` is not in the taxonomy", call.category.escape_debug()),
            ),
            Some(c) => {
                // A tool the taxonomy does not list is a signal, but not drift on its own: a
                // taxonomy that misses a tool the organisation uses would otherwise hold every
                // chain after a few calls. Rare transitions and escalations are what accumulate.
                if !tool_name.as_ref().is_some_and(|t| c.uses(t)) {
                    raise("intent_mismatch", format!("`{}` is not a tool `{}` tasks use", call.tool, c.name));
                }
                // An unclassified tool is taken as `secret`; `unclassified_tool` says so once.
                if sens > c.ceiling && call.classified {
                    observed.off_task = true;
                    raise(
                        "sensitivity_escalation",
                        format!("`{}` data is more sensitive than `{}` tasks need", call.data_class, c.name),
                    );
                }
            }
        }
        if category.is_none() && stats.and_then(|s| s.max_sensitivity).is_some_and(|m| sens > m) {
            raise(
                "sensitivity_escalation",
                format!("`{}` data is more sensitive than anything this chain touched", call.data_class),
            );
        }
        if !call.classified {
            raise("unclassified_tool", format!("nobody classified `{}`", call.tool));
        }
        if call.depth >= 3 {
            raise("deep_chain", format!("the call is {} delegations from the human", call.depth - 1));
        }
        let trail = stats.and_then(|s| s.agent(call.agent));
        if let (Some(c), Some(p)) = (&category, profile) {
            if p.warm() {
                let from = trail.and_then(|t| t.last_tool.as_deref()).unwrap_or(START);
                if p.tools.get(call.tool).is_none_or(|n| *n == 0) {
                    observed.off_task = true;
                    raise(
                        "unfamiliar_tool",
                        format!("`{}` was never called in {} `{}` chains", call.tool, p.chains, c.name),
                    );
                } else if p.transition(from, call.tool) == 0 {
                    observed.off_task = true;
                    let after =
                        if from == START { "as an agent's first call".to_owned() } else { format!("after `{from}`") };
                    raise(
                        "rare_sequence",
                        format!("`{}` {after} was never seen in {} `{}` chains", call.tool, p.chains, c.name),
                    );
                }
            }
        }
        if let Some(parent) = call.parent_agent {
            let bit = class_bit(call.data_class);
            let parent_classes = stats.and_then(|s| s.agent(parent)).map_or(0, |a| a.classes);
            if sens >= 2 && parent_classes & bit == 0 && trail.is_none_or(|t| t.classes & bit == 0) {
                raise(
                    "delegated_escalation",
                    format!(
                        "sub-agent `{}` reaches `{}` data that `{parent}`, which delegated to it, never touched",
                        call.agent, call.data_class
                    ),
                );
            }
        }
        if let Some(s) = stats {
            let max_agents = category.as_ref().map_or(3, |c| c.spec.max_agents as usize);
            let agents = s.agent_count(call.agent);
            if agents > max_agents {
                raise("fan_out", format!("{agents} agents act in this chain; such tasks need at most {max_agents}"));
            }
            let per_minute = category.as_ref().map_or(60, |c| c.spec.max_calls_per_minute as usize);
            // Times are recorded in order, so the window's start is found by bisection, not a scan.
            let recent = s.recent.len() - s.recent.partition_point(|t| call.now - *t >= VOLUME_WINDOW_SECS);
            if recent >= per_minute {
                raise(
                    "volume",
                    format!("{} calls in the last minute; such tasks make at most {per_minute}", recent + 1),
                );
            }
            let max_resources = category.as_ref().map_or(25, |c| c.spec.max_resources as usize);
            if let Some(r) = call.resource {
                if !s.resources.contains(&self.hash(r)) && s.resources.len() >= max_resources {
                    raise(
                        "bulk_access",
                        format!("a resource beyond the {max_resources} distinct ones such a task touches"),
                    );
                }
            }
            if s.denials_in_row >= DENIALS_IN_ROW || s.denied_tools.len() >= DENIED_TOOLS {
                raise(
                    "scope_pressure",
                    format!(
                        "the chain was refused {} time(s) in a row, on {} distinct tool(s)",
                        s.denials_in_row,
                        s.denied_tools.len()
                    ),
                );
            }
            if observed.off_task && s.off_task >= OFF_TASK_CALLS {
                raise("slow_drift", format!("{} earlier calls of this chain were already off its task", s.off_task));
            }
        }
        if call.action == Action::Egress {
            let name = call.category;
            let expected = |d: &str| {
                d != UNKNOWN_DESTINATION
                    && (category.as_ref().is_some_and(|c| c.names_destination(d))
                        || profile.is_some_and(|p| p.destination(d) >= profile::DESTINATION_KNOWN_AFTER))
            };
            // `*` (egress anywhere is the task's business) quiets `new_destination`, never the
            // exfiltration shape: company data to a party never seen still waits for a person.
            let anywhere = category.as_ref().is_some_and(|c| c.spec.destinations.iter().any(|d| d == "*"));
            let show =
                |d: &str| if d == UNKNOWN_DESTINATION { "an unknown destination".to_owned() } else { format!("`{d}`") };
            let sensitive = stats.and_then(|s| s.sensitive_read.as_ref().map(|c| (c, &s.subjects)));
            match sensitive {
                Some((class, subjects)) => {
                    let to_subject =
                        |d: &str| subjects.iter().any(|s| destinations::within(d, s) || destinations::within(s, d));
                    if let Some(d) = observed.external.iter().find(|d| !expected(d) && !to_subject(d)) {
                        raise(
                            "exfiltration",
                            format!(
                                "egress to {}, external and not a known destination of `{name}` tasks, after this chain read `{class}` data",
                                show(d)
                            ),
                        );
                    } else if let Some(d) = observed.external.iter().find(|d| !to_subject(d)) {
                        raise(
                            "sensitive_egress",
                            format!("egress to {} after this chain read `{class}` data", show(d)),
                        );
                    }
                }
                None => {
                    if let Some(d) = observed.external.iter().find(|d| !anywhere && !expected(d)) {
                        raise(
                            "new_destination",
                            format!("egress to {}, not a known destination of `{name}` tasks", show(d)),
                        );
                    }
                }
            }
        }
        drop(profiles);
        drop(chains);
        let score = raised.iter().map(|s| s.weight).sum::<u32>().min(100);
        let enforced = category.as_ref().is_none_or(|c| c.spec.mode == Mode::Enforce);
        let risk = Risk {
            score,
            signals: raised.iter().map(|s| s.name.clone()).collect(),
            details: raised,
            category: call.category.to_owned(),
            enforced,
        };
        observed.category = category;
        (risk, observed)
    }

    /// Records an allowed call into its chain's picture, and into its category's profile when it may
    /// teach it (see [`profile`]); drops, once a minute, the chains whose root mandate expired long
    /// enough ago.
    ///
    /// A call a human approved is in its chain's picture, but teaches the profile only as any call
    /// does (in `learn`, or scoring under the learning ceiling): an approval answers for one call,
    /// and a rubber-stamped one (the four eyes on a fraudulent vendor, say) must not make the same
    /// step ordinary for every chain of the category. A destination that is ordinary for a kind of
    /// task is said so in its category (`destinations`), where it is reviewed and recorded.
    pub fn record(&self, call: &CallShape<'_>, risk: &Risk, observed: &Observed) {
        if !self.enabled() {
            return;
        }
        let category = observed.category.as_ref();
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        self.prune(&mut chains, call.now);
        let s = chains.entries.entry(call.chain_id.to_owned()).or_default();
        let from = s.agent(call.agent).and_then(|a| a.last_tool.clone());
        let new_chain = !s.taught;
        self.update(s, call, observed);
        let teach =
            category.as_ref().is_some_and(|c| c.spec.mode == Mode::Learn || risk.score < self.settings.learn_below);
        // A rare transition, and nothing else: a candidate, learned once enough calls made it.
        let candidate = !teach
            && category.is_some()
            && risk.signals.len() == 1
            && risk.signals.first().is_some_and(|s| s == "rare_sequence");
        if candidate {
            if !s.tainted && s.pending.len() < MAX_PENDING {
                s.category = call.category.chars().take(64).collect();
                s.pending.push((from.unwrap_or_else(|| START.to_owned()), call.tool.chars().take(256).collect()));
            }
            return;
        }
        if teach {
            s.taught = true;
            drop(chains);
            let external: Vec<String> =
                observed.external.iter().filter(|d| *d != UNKNOWN_DESTINATION).cloned().collect();
            let mut profiles = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
            profiles.entry(call.category.to_owned()).or_default().learn(
                new_chain,
                from.as_deref().unwrap_or(START),
                call.tool,
                &external,
            );
        }
    }

    /// Drops the chains that ended, once a minute; those that ended without a drift alert hand
    /// their rare transitions to their category's learning.
    fn prune(&self, chains: &mut Chains, now: i64) {
        let mut ended: Vec<(String, Vec<(String, String)>)> = Vec::new();
        chains.prune_if_due_with(now, |s| {
            if !s.tainted && !s.pending.is_empty() {
                ended.push((s.category, s.pending));
            }
        });
        if ended.is_empty() {
            return;
        }
        let mut profiles = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
        for (category, pending) in ended {
            let p = profiles.entry(category).or_default();
            for (from, to) in pending {
                p.candidate(&from, &to);
            }
        }
    }

    /// Rebuilds a chain's picture from a call allowed before a restart (teaches no profile).
    pub fn replay(&self, call: &CallShape<'_>) {
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        self.prune(&mut chains, call.now);
        let s = chains.entries.entry(call.chain_id.to_owned()).or_default();
        s.taught = true;
        let observed = Observed::default();
        self.update(s, call, &observed);
    }

    fn update(&self, s: &mut ChainStats, call: &CallShape<'_>, observed: &Observed) {
        s.ends_at = s.ends_at.max(call.chain_expires_at);
        let level = sensitivity(call.data_class);
        s.max_sensitivity = Some(s.max_sensitivity.map_or(level, |m| m.max(level)));
        if call.action == Action::Read && level >= 1 && s.sensitive_read.as_ref().is_none_or(|c| sensitivity(c) < level)
        {
            s.sensitive_read = Some(call.data_class.chars().take(64).collect());
        }
        for d in &observed.subjects {
            if s.subjects.len() < MAX_SUBJECTS && !s.subjects.contains(d) {
                s.subjects.push(d.clone());
            }
        }
        let bit = class_bit(call.data_class);
        let last: String = call.tool.chars().take(256).collect();
        match s.agents.iter().position(|a| a.id == call.agent) {
            Some(i) => {
                let a = &mut s.agents[i];
                a.last_tool = Some(last);
                a.classes |= bit;
            }
            None if s.agents.len() < MAX_AGENTS => s.agents.push(AgentTrail {
                id: call.agent.chars().take(256).collect(),
                last_tool: Some(last),
                classes: bit,
            }),
            None => s.more_agents += 1,
        }
        if let Some(r) = call.resource {
            if s.resources.len() < MAX_RESOURCES {
                s.resources.insert(self.hash(r));
            }
        }
        s.denials_in_row = 0;
        s.off_task = s.off_task.saturating_add(u16::from(observed.off_task));
        if s.recent.len() >= MAX_RECENT {
            s.recent.pop_front();
        }
        s.recent.push_back(call.now);
        while s.recent.front().is_some_and(|t| call.now - *t >= VOLUME_WINDOW_SECS) {
            s.recent.pop_front();
        }
    }

    /// Counts a refused call of a chain (outside its scope, a boundary or policy): scope pressure.
    pub fn denied(&self, chain_id: &str, tool: &str, now: i64, chain_expires_at: i64) {
        if !self.enabled() {
            return;
        }
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        self.prune(&mut chains, now);
        let s = chains.entries.entry(chain_id.to_owned()).or_default();
        s.ends_at = s.ends_at.max(chain_expires_at);
        s.denials_in_row = s.denials_in_row.saturating_add(1);
        if s.denied_tools.len() < MAX_DENIED {
            s.denied_tools.insert(self.hash(tool));
        }
    }

    /// The signals of `risk` to alert on for its chain, each once per chain: all of them once the
    /// score reaches the alert score, otherwise those alerted on their own.
    pub fn alerts(&self, chain_id: &str, risk: &Risk) -> Vec<String> {
        let high = risk.score >= self.settings.alert_score;
        let wanted: Vec<&String> =
            risk.signals.iter().filter(|s| high || SIGNALS.iter().any(|(n, _, alone)| *alone && n == s)).collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
        let s = chains.entries.entry(chain_id.to_owned()).or_default();
        s.tainted = true;
        s.pending.clear();
        let mut fresh = Vec::new();
        for name in wanted {
            let bit = 1u32 << index(name);
            if s.alerted & bit == 0 {
                s.alerted |= bit;
                fresh.push(name.clone());
            }
        }
        fresh
    }

    /// How many chains have a picture in memory.
    pub fn chains(&self) -> usize {
        self.chains.lock().unwrap_or_else(|p| p.into_inner()).entries.len()
    }

    /// The largest chain's picture, in bytes (an upper bound).
    pub fn largest_chain_bytes(&self) -> usize {
        self.chains.lock().unwrap_or_else(|p| p.into_inner()).entries.values().map(ChainStats::bytes).max().unwrap_or(0)
    }

    /// A category's profile for people.
    pub fn profile(&self, category: &str) -> profile::ProfileView {
        let mode = self.category(category).map_or(Mode::Enforce, |c| c.spec.mode);
        let profiles = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
        profiles.get(category).cloned().unwrap_or_default().view(category, mode)
    }

    /// Forgets a category's profile; whether there was one.
    pub fn reset(&self, category: &str) -> bool {
        self.profiles.lock().unwrap_or_else(|p| p.into_inner()).remove(category).is_some_and(|p| p.calls > 0)
    }

    /// Loads profiles read from the store (at start).
    pub fn load_profiles(&self, stored: impl IntoIterator<Item = (String, Profile)>) {
        let mut profiles = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
        profiles.extend(stored);
    }

    /// The profiles that changed since last taken, as JSON, marked clean.
    pub fn take_dirty_profiles(&self) -> Vec<(String, String)> {
        let mut profiles = self.profiles.lock().unwrap_or_else(|p| p.into_inner());
        profiles
            .iter_mut()
            .filter(|(_, p)| p.dirty)
            .filter_map(|(name, p)| {
                p.dirty = false;
                serde_json::to_string(p).ok().map(|text| (name.clone(), text))
            })
            .collect()
    }

    /// Marks a profile dirty again (its write failed).
    pub fn mark_dirty(&self, category: &str) {
        if let Some(p) = self.profiles.lock().unwrap_or_else(|p| p.into_inner()).get_mut(category) {
            p.dirty = true;
        }
    }
}

#[cfg(test)]
mod tests;
