//! Leaver events and recertification: suspend, resume, retire, certify, and what is due for review.
//!
//! Retired is final. Suspending or retiring returns a [`Transition`] whose `blocks_mandates` tells the
//! caller to cut the agent's mandates off everywhere; the mandate layer subscribes to that.

use crate::agent::{Agent, AgentState, Environment, ReviewReason};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

/// A lifecycle action on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleAction {
    /// Block the agent until resumed.
    Suspend,
    /// Unblock a suspended agent.
    Resume,
    /// End the agent for good.
    Retire,
    /// Attest that the agent is still needed and its boundary right.
    Certify,
}

impl LifecycleAction {
    /// The verb as used in paths and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Retire => "retire",
            Self::Certify => "certify",
        }
    }
}

/// Why a lifecycle action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The agent is retired; nothing more can happen to it.
    #[error("agent `{0}` is retired; retirement is final")]
    Retired(String),
    /// Resume was asked of an agent that is not suspended.
    #[error("agent `{0}` is not suspended")]
    NotSuspended(String),
}

/// The outcome of a lifecycle action.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The agent after the action.
    pub agent: Agent,
    /// Whether anything changed (suspending a suspended agent changes nothing).
    pub changed: bool,
    /// Whether the agent's mandates must now be refused everywhere.
    pub blocks_mandates: bool,
}

/// Applies a lifecycle action at `now`.
pub fn transition(current: &Agent, action: LifecycleAction, now: OffsetDateTime) -> Result<Transition, LifecycleError> {
    if current.state == AgentState::Retired {
        return Err(LifecycleError::Retired(current.id.to_string()));
    }
    let mut next = current.clone();
    match action {
        LifecycleAction::Suspend => next.state = AgentState::Suspended,
        LifecycleAction::Retire => {
            next.state = AgentState::Retired;
            next.pending_review.clear();
        }
        LifecycleAction::Resume => {
            if current.state != AgentState::Suspended {
                return Err(LifecycleError::NotSuspended(current.id.to_string()));
            }
            next.state = AgentState::Active;
        }
        LifecycleAction::Certify => {
            next.certified_at = Some(now);
            next.pending_review.retain(|r| !r.cleared_by_certification());
        }
    }
    // Certifying always records a new attestation; the other actions change something only when the
    // state moves.
    let changed = action == LifecycleAction::Certify || next.state != current.state;
    if changed {
        next.version = current.version + 1;
        next.updated_at = now;
    }
    let blocks_mandates = changed && matches!(next.state, AgentState::Suspended | AgentState::Retired);
    Ok(Transition { agent: next, changed, blocks_mandates })
}

/// What we know of an agent's owner when reviewing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerStatus {
    /// A known, active human; `sandbox` when the human is a sandbox identity.
    Active {
        /// Whether the owner is a sandbox identity.
        sandbox: bool,
    },
    /// A known human who has been deactivated.
    Inactive,
    /// No such human.
    Unknown,
}

/// Settings of the review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewSettings {
    /// An agent with no activity for longer than this is stale.
    pub stale_after_days: u32,
}

/// An agent's review status, as shown in its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Review {
    /// When the next recertification is due.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: OffsetDateTime,
    /// Why the agent needs a human to look at it now; empty when nothing is due.
    pub pending: Vec<ReviewReason>,
}

/// Computes what is due for an agent at `now`: the reasons raised by mover events and still waiting
/// for certification, and the ones that follow from the facts at `now`.
pub fn review(agent: &Agent, owner: OwnerStatus, settings: ReviewSettings, now: OffsetDateTime) -> Review {
    let certified = agent.certified_at.unwrap_or(agent.created_at);
    let due_at = certified + Duration::days(i64::from(agent.certify_every_days));
    if agent.state == AgentState::Retired {
        return Review { due_at, pending: Vec::new() };
    }
    let mut pending = agent.pending_review.clone();
    match owner {
        OwnerStatus::Inactive => pending.push(ReviewReason::OwnerInactive),
        OwnerStatus::Unknown => pending.push(ReviewReason::OwnerUnknown),
        OwnerStatus::Active { sandbox } => {
            if sandbox && agent.environment == Environment::Production {
                pending.push(ReviewReason::SandboxOwner);
            }
        }
    }
    if now > due_at {
        pending.push(ReviewReason::CertificationOverdue);
    }
    if now - agent.last_active_at > Duration::days(i64::from(settings.stale_after_days)) {
        pending.push(ReviewReason::Stale);
    }
    pending.sort();
    pending.dedup();
    Review { due_at, pending }
}
