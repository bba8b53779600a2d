//! The registered agent: its accountable owner, purpose, environment, boundary and key, and the
//! rules for registering (joiner), changing (mover) and ending (leaver) it.
//!
//! The functions here decide; the store only records what they decided. Every rule that puts an agent
//! up for review lives in [`changes_needing_review`], so the server and the tests share one definition.

use crate::id::{AgentId, Principal};
use crate::jwk::Ed25519PublicJwk;
use crate::pattern::{DataClass, ToolPattern};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// What kind of agent this is; policy may treat classes differently (e.g. no `secret` data for `coding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentClass {
    /// A coding assistant acting in a developer's tools.
    Coding,
    /// An agent embedded in a product, acting for its users.
    InProduct,
    /// An enterprise agent acting across business systems.
    Enterprise,
}

impl AgentClass {
    /// The name used in JSON, queries and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Coding => "coding",
            Self::InProduct => "in_product",
            Self::Enterprise => "enterprise",
        }
    }
}

/// Where an agent runs, and so which tools it may reach. Ordered by trust: a sandbox agent never
/// reaches a production tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// Experiments; no real data.
    Sandbox,
    /// Limited real use.
    Pilot,
    /// Full production.
    Production,
}

impl Environment {
    /// The name used in JSON, queries and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Pilot => "pilot",
            Self::Production => "production",
        }
    }
}

/// Where an agent is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// May receive and use mandates.
    Active,
    /// Blocked until resumed; its mandates are refused.
    Suspended,
    /// Final: the agent is gone, and so is every mandate it appears in.
    Retired,
}

impl AgentState {
    /// The name used in JSON, queries and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Retired => "retired",
        }
    }
}

/// The most an agent may ever do, whatever mandate it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Boundary {
    /// Tool patterns (`server/tool`, `erp/*`).
    pub tools: Vec<ToolPattern>,
    /// Data classes the agent may touch.
    #[serde(default)]
    pub data_classes: Vec<DataClass>,
    /// Environments of the tool servers it may reach; empty at registration means its own.
    #[serde(default)]
    pub environments: Vec<Environment>,
    /// Agents it may delegate to.
    #[serde(default)]
    pub may_delegate_to: Vec<AgentId>,
    /// How many further hops a chain through this agent may have.
    #[serde(default)]
    pub max_depth: u8,
}

impl Boundary {
    /// Whether `self` allows nothing that `other` does not: the test for "this change widens the
    /// boundary". Sound but conservative (see [`crate::pattern`]): when unsure it answers `false`,
    /// which puts the agent up for review rather than letting a widening through.
    pub fn is_within(&self, other: &Boundary) -> bool {
        self.tools.iter().all(|a| other.tools.iter().any(|b| a.is_subset_of(b)))
            && self.data_classes.iter().all(|c| other.data_classes.contains(c))
            && self.environments.iter().all(|e| other.environments.contains(e))
            && self.may_delegate_to.iter().all(|a| other.may_delegate_to.contains(a))
            && self.max_depth <= other.max_depth
    }

    fn normalise(&mut self, environment: Environment) {
        if self.environments.is_empty() {
            self.environments.push(environment);
        }
        self.tools.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        self.tools.dedup();
        self.data_classes.sort();
        self.data_classes.dedup();
        self.environments.sort();
        self.environments.dedup();
        self.may_delegate_to.sort();
        self.may_delegate_to.dedup();
    }
}

/// The largest delegation depth a boundary may allow.
pub const MAX_DELEGATION_DEPTH: u8 = 8;
/// The default recertification period.
pub const DEFAULT_CERTIFY_EVERY_DAYS: u32 = 90;

/// What an administrator sends to register an agent (`POST /v1/agents`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The slug, unique in the registry.
    #[schema(value_type = String, example = "finance-close")]
    pub id: AgentId,
    /// A readable name.
    pub name: String,
    /// The accountable human, `user:<id>`.
    #[schema(value_type = String, example = "user:alice@example.org")]
    pub owner: Principal,
    /// What the agent is for.
    pub purpose: String,
    /// The agent's class.
    pub class: AgentClass,
    /// Where it runs.
    pub environment: Environment,
    /// The most it may ever do.
    pub boundary: Boundary,
    /// Its Ed25519 public key as a JWK.
    #[schema(value_type = Object, example = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))]
    pub public_key_jwk: Ed25519PublicJwk,
    /// How often the owner must recertify it, in days.
    #[serde(default = "default_certify_every_days")]
    pub certify_every_days: u32,
}

fn default_certify_every_days() -> u32 {
    DEFAULT_CERTIFY_EVERY_DAYS
}

/// A change to a registered agent (`PATCH /v1/agents/{id}`); absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatch {
    /// A new readable name.
    pub name: Option<String>,
    /// A new accountable owner.
    #[schema(value_type = Option<String>)]
    pub owner: Option<Principal>,
    /// A new purpose.
    pub purpose: Option<String>,
    /// A new class.
    pub class: Option<AgentClass>,
    /// A new environment.
    pub environment: Option<Environment>,
    /// A new boundary (replaces the old one whole).
    pub boundary: Option<Boundary>,
    /// A new public key.
    #[schema(value_type = Option<Object>)]
    pub public_key_jwk: Option<Ed25519PublicJwk>,
    /// A new recertification period.
    pub certify_every_days: Option<u32>,
}

/// Why an agent is up for review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewReason {
    /// A change widened its boundary.
    BoundaryChanged,
    /// It moved to another environment.
    EnvironmentChanged,
    /// Its key was replaced.
    KeyChanged,
    /// Its accountable owner changed.
    OwnerChanged,
    /// Its class changed.
    ClassChanged,
    /// Its owner has been deactivated (an orphan).
    OwnerInactive,
    /// Its owner is not a known human (an orphan).
    OwnerUnknown,
    /// Its recertification is past due.
    CertificationOverdue,
    /// It has shown no activity for longer than the configured period.
    Stale,
    /// It runs in production but its owner is a sandbox identity.
    SandboxOwner,
}

impl ReviewReason {
    /// Whether `certify` clears this reason; the others last as long as their cause.
    pub fn cleared_by_certification(self) -> bool {
        matches!(
            self,
            Self::BoundaryChanged
                | Self::EnvironmentChanged
                | Self::KeyChanged
                | Self::OwnerChanged
                | Self::ClassChanged
                | Self::CertificationOverdue
        )
    }

    /// One line for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::BoundaryChanged => "boundary widened since the last certification",
            Self::EnvironmentChanged => "moved to another environment since the last certification",
            Self::KeyChanged => "key replaced since the last certification",
            Self::OwnerChanged => "owner changed since the last certification",
            Self::ClassChanged => "class changed since the last certification",
            Self::OwnerInactive => "owner is deactivated: reassign the agent or retire it",
            Self::OwnerUnknown => "owner is not a known human: reassign the agent or retire it",
            Self::CertificationOverdue => "recertification is past due",
            Self::Stale => "no activity for longer than the stale period: retire it if unused",
            Self::SandboxOwner => "production agent owned by a sandbox identity",
        }
    }
}

/// A registered agent as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// The slug.
    pub id: AgentId,
    /// A readable name.
    pub name: String,
    /// The accountable human.
    pub owner: Principal,
    /// What it is for.
    pub purpose: String,
    /// Its class.
    pub class: AgentClass,
    /// Where it runs.
    pub environment: Environment,
    /// The most it may ever do.
    pub boundary: Boundary,
    /// Its public key.
    pub public_key_jwk: Ed25519PublicJwk,
    /// Recertification period in days.
    pub certify_every_days: u32,
    /// Lifecycle state.
    pub state: AgentState,
    /// Starts at 1, one more for every recorded change.
    pub version: i64,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When an owner or admin last certified it, if ever.
    #[serde(with = "time::serde::rfc3339::option")]
    pub certified_at: Option<OffsetDateTime>,
    /// When it last acted (registration counts as activity).
    #[serde(with = "time::serde::rfc3339")]
    pub last_active_at: OffsetDateTime,
    /// Review reasons raised by mover events, waiting for certification.
    pub pending_review: Vec<ReviewReason>,
}

/// Why a registration or change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// A text field is empty or too long.
    #[error("`{field}` must be 1-{max} characters")]
    BadText {
        /// The field.
        field: &'static str,
        /// Its maximum length.
        max: usize,
    },
    /// The recertification period is out of range.
    #[error("`certify_every_days` must be between 1 and 365, got {0}")]
    BadCertificationPeriod(u32),
    /// The boundary allows tool servers in a more trusted environment than the agent's own.
    #[error("boundary environment `{boundary}` is more trusted than the agent's environment `{agent}`")]
    EnvironmentEscalation {
        /// The agent's environment.
        agent: &'static str,
        /// The boundary environment refused.
        boundary: &'static str,
    },
    /// The delegation depth is above the ceiling.
    #[error("`boundary.max_depth` must be at most {MAX_DELEGATION_DEPTH}, got {0}")]
    DepthTooLarge(u8),
    /// The agent would be allowed to delegate to itself.
    #[error("an agent may not delegate to itself (`{0}` in `boundary.may_delegate_to`)")]
    SelfDelegation(String),
    /// The boundary lists agents to delegate to but a depth of 0.
    #[error("`boundary.may_delegate_to` is not empty but `boundary.max_depth` is 0")]
    DelegationWithoutDepth,
}

/// Registers an agent: validates the spec and builds the stored agent, `now` being the time of
/// registration.
pub fn register(spec: AgentSpec, now: OffsetDateTime) -> Result<Agent, AgentError> {
    let mut agent = Agent {
        id: spec.id,
        name: spec.name,
        owner: spec.owner,
        purpose: spec.purpose,
        class: spec.class,
        environment: spec.environment,
        boundary: spec.boundary,
        public_key_jwk: spec.public_key_jwk,
        certify_every_days: spec.certify_every_days,
        state: AgentState::Active,
        version: 1,
        created_at: now,
        updated_at: now,
        certified_at: None,
        last_active_at: now,
        pending_review: Vec::new(),
    };
    agent.boundary.normalise(agent.environment);
    validate(&agent)?;
    Ok(agent)
}

/// The outcome of applying a patch: the agent after it, and the review reasons it raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// The agent after the change (version not yet bumped if nothing changed).
    pub agent: Agent,
    /// Whether anything changed at all.
    pub changed: bool,
    /// The reasons this change raised.
    pub raised: Vec<ReviewReason>,
}

/// Applies a mover change. A retired agent is refused by the caller's lifecycle check before this.
pub fn apply_patch(current: &Agent, patch: AgentPatch, now: OffsetDateTime) -> Result<Moved, AgentError> {
    let mut next = current.clone();
    if let Some(v) = patch.name {
        next.name = v;
    }
    if let Some(v) = patch.owner {
        next.owner = v;
    }
    if let Some(v) = patch.purpose {
        next.purpose = v;
    }
    if let Some(v) = patch.class {
        next.class = v;
    }
    if let Some(v) = patch.environment {
        next.environment = v;
    }
    match patch.boundary {
        Some(mut v) => {
            v.normalise(next.environment);
            next.boundary = v;
        }
        // A move without a new boundary takes the boundary's environments along: ones that followed
        // the agent (exactly its old environment) follow it to the new one, and ones more trusted
        // than the new environment are dropped rather than kept as an escalation.
        None if next.environment != current.environment => {
            let envs = &mut next.boundary.environments;
            if *envs == [current.environment] {
                *envs = vec![next.environment];
            } else {
                let to = next.environment;
                envs.retain(|e| *e <= to);
                if envs.is_empty() {
                    envs.push(to);
                }
            }
        }
        None => {}
    }
    if let Some(v) = patch.public_key_jwk {
        next.public_key_jwk = v;
    }
    if let Some(v) = patch.certify_every_days {
        next.certify_every_days = v;
    }
    validate(&next)?;
    let raised = changes_needing_review(current, &next);
    let changed = next != *current;
    if changed {
        next.version = current.version + 1;
        next.updated_at = now;
        for reason in &raised {
            if !next.pending_review.contains(reason) {
                next.pending_review.push(*reason);
            }
        }
        next.pending_review.sort();
    }
    Ok(Moved { agent: next, changed, raised })
}

/// The mover rule: which differences between two versions of an agent need a human to look again.
/// Narrowing a boundary, renaming, or rewording the purpose does not; widening the boundary, moving
/// environment, replacing the key, changing owner or class does.
pub fn changes_needing_review(before: &Agent, after: &Agent) -> Vec<ReviewReason> {
    let mut raised = Vec::new();
    if !after.boundary.is_within(&before.boundary) {
        raised.push(ReviewReason::BoundaryChanged);
    }
    if after.environment != before.environment {
        raised.push(ReviewReason::EnvironmentChanged);
    }
    if after.public_key_jwk != before.public_key_jwk {
        raised.push(ReviewReason::KeyChanged);
    }
    if after.owner != before.owner {
        raised.push(ReviewReason::OwnerChanged);
    }
    if after.class != before.class {
        raised.push(ReviewReason::ClassChanged);
    }
    raised
}

fn validate(agent: &Agent) -> Result<(), AgentError> {
    check_text("name", &agent.name, 200)?;
    check_text("purpose", &agent.purpose, 2000)?;
    if !(1..=365).contains(&agent.certify_every_days) {
        return Err(AgentError::BadCertificationPeriod(agent.certify_every_days));
    }
    if let Some(e) = agent.boundary.environments.iter().find(|e| **e > agent.environment) {
        return Err(AgentError::EnvironmentEscalation { agent: agent.environment.as_str(), boundary: e.as_str() });
    }
    if agent.boundary.max_depth > MAX_DELEGATION_DEPTH {
        return Err(AgentError::DepthTooLarge(agent.boundary.max_depth));
    }
    if agent.boundary.may_delegate_to.contains(&agent.id) {
        return Err(AgentError::SelfDelegation(agent.id.to_string()));
    }
    if !agent.boundary.may_delegate_to.is_empty() && agent.boundary.max_depth == 0 {
        return Err(AgentError::DelegationWithoutDepth);
    }
    Ok(())
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), AgentError> {
    let len = value.trim().chars().count();
    if len == 0 || len > max || value.chars().any(char::is_control) {
        return Err(AgentError::BadText { field, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
