//! What a category's tasks have been seen to do: a learned baseline, per intent category.
//!
//! It counts the tools used, the transitions between one agent's consecutive tools (`^` is the
//! start of an agent's calls), and the external destinations reached. It learns from allowed calls:
//! all of them while the category is in `learn`, and in `enforce` only from calls whose score was
//! under the learning ceiling or that a human approved, so that a drifting chain does not teach the
//! baseline that its drift is normal.
//!
//! Every map is bounded ([`MAX_TOOLS`], [`MAX_TRANSITIONS`], [`MAX_DESTINATIONS`]): once full, new
//! entries are not learned (a transition never learned stays rare, which errs towards a signal),
//! while counts of known ones still grow. Profiles are written to the store every few seconds and
//! read back at start; `mandate drift reset` forgets one.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

/// Tools per profile.
pub const MAX_TOOLS: usize = 512;
/// Transitions per profile.
pub const MAX_TRANSITIONS: usize = 4_096;
/// Destinations per profile.
pub const MAX_DESTINATIONS: usize = 1_024;
/// A profile that has learned from fewer chains than this is cold: sequence rarity is not judged
/// from it yet (see [`Profile::warm`]).
pub const WARM_AFTER_CHAINS: u64 = 20;

/// A destination is known for a category once its calls reached it this many times: one approval
/// of a mail to a new address does not make that address ordinary for every chain of the category.
pub const DESTINATION_KNOWN_AFTER: u64 = 3;

/// How many allowed calls must make a rare transition before the profile learns it.
pub const CANDIDATE_PROMOTED_AFTER: u64 = 3;

/// The start of an agent's calls, as the `from` of its first transition.
pub const START: &str = "^";

/// A category's learned baseline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Chains it learned from.
    pub chains: u64,
    /// Calls it learned from.
    pub calls: u64,
    /// Calls per tool.
    pub tools: HashMap<String, u64>,
    /// Transitions: from tool, to tool, count.
    pub transitions: HashMap<String, HashMap<String, u64>>,
    /// How many transitions `transitions` holds.
    #[serde(default)]
    pub transition_count: usize,
    /// External destinations reached, by domain.
    pub destinations: HashMap<String, u64>,
    /// Transitions seen only as `rare_sequence` so far, by `from\u{1f}to`: one becomes a learned
    /// transition once [`CANDIDATE_PROMOTED_AFTER`] allowed calls made it, so a new habit of
    /// ordinary work stops being rare, while one call's step never teaches.
    #[serde(default)]
    pub candidates: HashMap<String, u64>,
    /// Whether it changed since it was last written to the store.
    #[serde(skip)]
    pub dirty: bool,
}

/// A profile for people (`GET /v1/drift/{category}`, `mandate drift profile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProfileView {
    /// The category.
    pub category: String,
    /// `learn` or `enforce`.
    pub mode: super::taxonomy::Mode,
    /// Whether sequence rarity is judged from it yet (it learned from enough chains).
    pub warm: bool,
    /// Chains it learned from.
    pub chains: u64,
    /// Calls it learned from.
    pub calls: u64,
    /// Calls per tool, most used first.
    pub tools: Vec<Counted>,
    /// Transitions between an agent's consecutive tools, most frequent first (`^` is an agent's
    /// first call).
    pub transitions: Vec<Transition>,
    /// External destinations reached, most frequent first.
    pub destinations: Vec<Counted>,
}

/// A name and how often it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Counted {
    /// The tool or domain.
    pub name: String,
    /// How many times.
    pub count: u64,
}

/// One learned transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transition {
    /// The agent's previous tool, or `^`.
    pub from: String,
    /// The tool it called next.
    pub to: String,
    /// How many times.
    pub count: u64,
}

fn bump(map: &mut HashMap<String, u64>, key: &str, cap: usize) -> bool {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
        false
    } else if map.len() < cap {
        map.insert(key.to_owned(), 1);
        true
    } else {
        false
    }
}

fn sorted(map: &HashMap<String, u64>) -> Vec<Counted> {
    let mut v: Vec<Counted> = map.iter().map(|(name, count)| Counted { name: name.clone(), count: *count }).collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

impl Profile {
    /// Whether it learned from enough chains to judge a transition rare.
    pub fn warm(&self) -> bool {
        self.chains >= WARM_AFTER_CHAINS
    }

    /// How often `from` was followed by `to`.
    pub fn transition(&self, from: &str, to: &str) -> u64 {
        self.transitions.get(from).and_then(|m| m.get(to)).copied().unwrap_or(0)
    }

    /// How often `domain` was reached.
    pub fn destination(&self, domain: &str) -> u64 {
        self.destinations.get(domain).copied().unwrap_or(0)
    }

    /// Notes a rare transition of an allowed call that raised nothing else; learns it once enough
    /// calls made it (see [`Profile::candidates`]).
    pub fn candidate(&mut self, from: &str, tool: &str) {
        let key = format!("{from}\u{1f}{tool}");
        let promoted = !bump(&mut self.candidates, &key, MAX_TRANSITIONS)
            && self.candidates.get(&key).is_some_and(|n| *n >= CANDIDATE_PROMOTED_AFTER);
        if promoted {
            self.candidates.remove(&key);
            let full = self.transition_count >= MAX_TRANSITIONS;
            if !full {
                let row = self.transitions.entry(from.to_owned()).or_default();
                if !row.contains_key(tool) {
                    row.insert(tool.to_owned(), CANDIDATE_PROMOTED_AFTER);
                    self.transition_count += 1;
                }
            }
        }
        self.dirty = true;
    }

    /// Learns one allowed call.
    pub fn learn(&mut self, new_chain: bool, from: &str, tool: &str, external: &[String]) {
        self.chains += u64::from(new_chain);
        self.calls += 1;
        bump(&mut self.tools, tool, MAX_TOOLS);
        let full = self.transition_count >= MAX_TRANSITIONS;
        let known_from = self.transitions.contains_key(from);
        if known_from || !full {
            let row = self.transitions.entry(from.to_owned()).or_default();
            if bump(row, tool, if full { row.len() } else { usize::MAX }) {
                self.transition_count += 1;
            }
        }
        for d in external {
            bump(&mut self.destinations, d, MAX_DESTINATIONS);
        }
        self.dirty = true;
    }

    /// The profile for people.
    pub fn view(&self, category: &str, mode: super::taxonomy::Mode) -> ProfileView {
        let mut transitions: Vec<Transition> = self
            .transitions
            .iter()
            .flat_map(|(from, row)| {
                row.iter().map(|(to, count)| Transition { from: from.clone(), to: to.clone(), count: *count })
            })
            .collect();
        transitions.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to))));
        ProfileView {
            category: category.to_owned(),
            mode,
            warm: self.warm(),
            chains: self.chains,
            calls: self.calls,
            tools: sorted(&self.tools),
            transitions,
            destinations: sorted(&self.destinations),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_learns_and_stays_bounded() {
        let mut p = Profile::default();
        p.learn(true, START, "hr/read_employee", &[]);
        p.learn(false, "hr/read_employee", "mail/send", &["agency.example".to_owned()]);
        assert_eq!(p.transition("hr/read_employee", "mail/send"), 1);
        assert_eq!(p.transition("mail/send", "hr/read_employee"), 0);
        assert_eq!(p.destination("agency.example"), 1);
        assert!(!p.warm());
        for i in 0..(MAX_TRANSITIONS + 100) {
            p.learn(i % 100 == 0, &format!("t/{}", i % 97), &format!("t/{i}"), &[format!("d{i}.example")]);
        }
        assert_eq!(p.transition_count, MAX_TRANSITIONS);
        let stored: usize = p.transitions.values().map(HashMap::len).sum();
        assert_eq!(stored, MAX_TRANSITIONS, "no transition beyond the bound");
        assert_eq!(p.tools.len(), MAX_TOOLS);
        assert_eq!(p.destinations.len(), MAX_DESTINATIONS);
        let before = p.transition("hr/read_employee", "mail/send");
        p.learn(false, "hr/read_employee", "mail/send", &[]);
        assert_eq!(p.transition("hr/read_employee", "mail/send"), before + 1, "known ones still count");
        let text = serde_json::to_string(&p).unwrap();
        let back: Profile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.transition_count, p.transition_count);
        assert_eq!(
            back.view("c", super::super::taxonomy::Mode::Learn),
            p.view("c", super::super::taxonomy::Mode::Learn)
        );
    }
}
