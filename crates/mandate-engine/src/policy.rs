//! The active organisation policy: one validated Cedar set, swapped atomically.
//!
//! A new set is validated against the schema before it is stored; a set that fails never replaces
//! the active one. Sets are versioned in the store (who, when, text) and every change is an event
//! with the ids added and removed. Before the store's set is loaded, nothing is permitted.

use mandate_core::agent::Agent;
use mandate_core::human::Human;
use mandate_core::id::HumanId;
use mandate_policy::{AgentFacts, HumanFacts, ValidatedPolicySet};
use std::sync::{Arc, RwLock};

/// The active policy set and its stored version number.
#[derive(Default)]
pub struct PolicyHandle {
    active: RwLock<Option<(i64, Arc<ValidatedPolicySet>)>>,
}

impl PolicyHandle {
    /// The active set and its version; `None` until one is loaded (every decision then denies).
    pub fn current(&self) -> Option<(i64, Arc<ValidatedPolicySet>)> {
        self.active.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes `set` the active one.
    pub fn replace(&self, version: i64, set: Arc<ValidatedPolicySet>) {
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = Some((version, set));
    }
}

/// What policy knows of a human from the registry.
pub fn human_facts(h: &Human) -> HumanFacts {
    HumanFacts {
        id: h.id.to_string(),
        groups: h.groups.iter().map(ToString::to_string).collect(),
        roles: h.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        sandbox: h.sandbox,
    }
}

/// What policy knows of a human the registry does not hold (one who signed in with OIDC only).
pub fn unknown_human_facts(id: &HumanId) -> HumanFacts {
    HumanFacts { id: id.to_string(), groups: Vec::new(), roles: Vec::new(), sandbox: false }
}

/// What policy knows of an agent.
pub fn agent_facts(a: &Agent) -> AgentFacts {
    AgentFacts {
        id: a.id.to_string(),
        class: a.class.as_str().to_owned(),
        environment: a.environment.as_str().to_owned(),
        owner: a.owner.human().to_string(),
        state: a.state.as_str().to_owned(),
    }
}

/// What changed between two sets, by policy id.
pub fn diff(before: Option<&ValidatedPolicySet>, after: &ValidatedPolicySet) -> serde_json::Value {
    let old: Vec<&str> = before.map(|b| b.ids().collect()).unwrap_or_default();
    let new: Vec<&str> = after.ids().collect();
    let added: Vec<&str> = new.iter().filter(|id| !old.contains(id)).copied().collect();
    let removed: Vec<&str> = old.iter().filter(|id| !new.contains(id)).copied().collect();
    let changed: Vec<&str> = match before {
        Some(b) => after
            .policies()
            .iter()
            .filter(|p| b.policies().iter().any(|q| q.id == p.id && (q.effect != p.effect || q.hold != p.hold)))
            .map(|p| p.id.as_str())
            .collect(),
        None => Vec::new(),
    };
    serde_json::json!({"added": added, "removed": removed, "effect_or_hold_changed": changed})
}

impl crate::engine::Engine {
    /// Validates `text` and, if it passes, stores it as the next version and makes it active. A set
    /// that fails is refused with every problem, and the active set keeps deciding.
    pub async fn replace_policies(
        &self,
        actor: &str,
        text: &str,
    ) -> Result<(i64, Arc<ValidatedPolicySet>), crate::error::Error> {
        let set = match ValidatedPolicySet::parse(text) {
            Ok(set) => Arc::new(set),
            Err(e) => {
                let problems = crate::policy::problems(&e);
                let detail = serde_json::json!({"problems": problems});
                let event = mandate_core::event::NewEvent::new(
                    "policy.refused",
                    actor,
                    crate::clock::millis(self.clock.now()),
                    &detail,
                );
                self.store.append_event(event).await?;
                return Err(crate::error::Error::invalid(
                    "policy.invalid",
                    format!("the policy set was refused and the active one is unchanged: {}", problems.join("; ")),
                ));
            }
        };
        let before = self.policy.current();
        let detail = serde_json::json!({
            "sha256": set.version(),
            "previous_sha256": before.as_ref().map(|(_, b)| b.version().to_owned()),
            "diff": diff(before.as_ref().map(|(_, b)| b.as_ref()), &set),
        });
        let now = crate::clock::millis(self.clock.now());
        let event = mandate_core::event::NewEvent::new("policy.updated", actor, now, &detail);
        let version = self.decisions.insert_policy_version(set.text(), set.version(), actor, now, event).await?;
        self.policy.replace(version, set.clone());
        self.metrics.event("policy.updated");
        tracing::info!(version, sha256 = set.version(), "policy set replaced");
        Ok((version, set))
    }

    /// Loads the newest stored policy set, or installs the shipped default as version 1.
    ///
    /// A stored set that no longer validates against this build's schema is, if it is a default
    /// this project shipped before, replaced by today's default (a new version, recorded). Any other
    /// such set is the organisation's own: the server starts without an active set, so every call
    /// is denied (`policy.not_loaded`, fail closed) until an administrator puts a valid one
    /// (`PUT /v1/policies`); the log says why.
    pub async fn load_policies(&self) -> Result<(), String> {
        match self.decisions.latest_policy().await.map_err(|e| e.to_string())? {
            Some(stored) => match ValidatedPolicySet::parse(&stored.text) {
                Ok(set) => self.policy.replace(stored.version, Arc::new(set)),
                Err(_) if was_shipped(&stored.text) => {
                    tracing::warn!(
                        version = stored.version,
                        "the stored policy set is an earlier shipped default that this build's schema refuses; installing today's default"
                    );
                    self.replace_policies("system", mandate_policy::DEFAULT_POLICIES)
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                }
                Err(e) => {
                    tracing::error!(
                        version = stored.version,
                        problems = %crate::policy::problems(&e).join("; "),
                        "the stored policy set no longer validates against this build's schema: every call is denied \
                         (policy.not_loaded) until an administrator puts a valid set (PUT /v1/policies; see CHANGELOG.md \
                         for what changed, e.g. `context.risk` is now the drift record and the tool's level `context.tool_risk`)"
                    );
                }
            },
            None => {
                self.replace_policies("system", mandate_policy::DEFAULT_POLICIES)
                    .await
                    .map_err(|e| format!("{e:?}"))?;
            }
        }
        Ok(())
    }
}

/// SHA-256 (hex) of every default policy text shipped before the schema last changed a type.
const EARLIER_DEFAULTS: &[&str] = &["3634d374d90d10cfefa4fe8d3dd3b9784cd18a9578d9701346eab90006525bc2"];

fn was_shipped(text: &str) -> bool {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    EARLIER_DEFAULTS.contains(&hex.as_str())
}

/// Every problem of a refused policy set, one line each.
pub fn problems(e: &mandate_policy::PolicyError) -> Vec<String> {
    match e {
        mandate_policy::PolicyError::Invalid(list) => list.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}
