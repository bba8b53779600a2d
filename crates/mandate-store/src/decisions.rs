//! What the decision engine keeps: the tool catalogue, versioned policy sets, approvals, and the
//! counts of allowed calls from which budgets are rebuilt at start.
//!
//! Budgets are counted in memory by the server and made durable by the decision events themselves:
//! an `allow` is returned only after its event is durable, so counting the `allow` events of a
//! mandate gives back exactly what was spent, across crashes and restarts, without a second write on
//! the hot path.

use async_trait::async_trait;
use mandate_core::event::NewEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::StoreError;

/// A classified tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ToolRecord {
    /// `server/tool`.
    pub name: String,
    /// The server part.
    pub server: String,
    /// Its data class.
    pub data_class: String,
    /// Its risk level: `read`, `write`, `destructive`, `egress`.
    pub risk: String,
    /// The environment of its server: `sandbox`, `pilot`, `production`.
    pub server_environment: String,
    /// `config` or `api`.
    pub source: String,
    /// When it was last classified, Unix milliseconds.
    pub updated_ms: i64,
    /// Who classified it.
    pub updated_by: String,
}

/// A stored policy set version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersion {
    /// 1, 2, 3, ...
    pub version: i64,
    /// SHA-256 of the text.
    pub sha256: String,
    /// The Cedar text.
    pub text: String,
    /// When, Unix milliseconds.
    pub created_ms: i64,
    /// Who.
    pub created_by: String,
}

/// An allowed tool call, as the ledger recorded it: what a chain's behaviour so far is rebuilt from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedCall {
    /// The chain.
    pub chain_id: String,
    /// When the chain's root mandate expires, Unix seconds.
    pub chain_expires_at: i64,
    /// The calling agent.
    pub agent: String,
    /// The tool, as the call named it.
    pub tool: String,
    /// The tool's data class at the time (the event's `detail.data_class`).
    pub data_class: Option<String>,
    /// The call's action at the time (the event's `detail.action`).
    pub action: Option<String>,
    /// The resource it acted on.
    pub resource: Option<String>,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

/// What [`DecisionStore::open_approval`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenedApproval {
    /// Stored; its event has this sequence number.
    Created(i64),
    /// The same call, held for the same reasons, already waits on the approval with this id.
    Existing(String),
    /// Nothing stored: the mandate already has this many approvals waiting.
    Full(usize),
}

/// An approval as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRecord {
    /// Its id.
    pub id: String,
    /// The mandate the held call was made under.
    pub mandate_id: String,
    /// Its chain.
    pub chain_id: String,
    /// The agent that made the call.
    pub agent: String,
    /// The tool.
    pub tool: String,
    /// The resource, if any.
    pub resource: Option<String>,
    /// SHA-256 of the call's arguments (canonical JSON).
    pub arguments_hash: String,
    /// `pending`, `approved`, `denied` or `used`.
    pub status: String,
    /// Created, Unix milliseconds.
    pub created_ms: i64,
    /// Expires, Unix milliseconds.
    pub expires_ms: i64,
    /// Who approved or denied it.
    pub decided_by: Option<String>,
    /// When, Unix milliseconds.
    pub decided_ms: Option<i64>,
    /// When the approved call was made, Unix milliseconds.
    pub used_ms: Option<i64>,
    /// Why it was held: reasons, signals, policies, and the facts of the call.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A tool definition pinned by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PinRecord {
    /// `server/tool`.
    pub name: String,
    /// The server.
    pub server: String,
    /// SHA-256 (hex) of the pinned definition's canonical form.
    pub pinned_sha256: String,
    /// The pinned definition, as the upstream sent it.
    pub pinned_definition: String,
    /// A changed definition waiting for approval: its hash.
    pub pending_sha256: Option<String>,
    /// And its text, as the upstream sent it.
    pub pending_definition: Option<String>,
    /// Flags raised on the definition (`hidden_text`, `model_instructions`, `shadowing`, ...).
    pub flags: Vec<String>,
    /// When it last changed, in milliseconds since the epoch.
    pub updated_ms: i64,
    /// Who changed it last (`gateway` or an administrator).
    pub updated_by: String,
}

/// A change to the intent taxonomy, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRecord {
    /// The category.
    pub name: String,
    /// The category as JSON; `None` when it was removed.
    pub body: Option<String>,
    /// When, Unix milliseconds.
    pub updated_ms: i64,
    /// Who (an administrator, or `config`).
    pub updated_by: String,
}

/// The decision engine's repository.
#[async_trait]
pub trait DecisionStore: Send + Sync + 'static {
    /// Classifies (or reclassifies) a tool, with its event.
    async fn upsert_tool(&self, tool: &ToolRecord, event: NewEvent) -> Result<i64, StoreError>;
    /// One tool.
    async fn tool(&self, name: &str) -> Result<Option<ToolRecord>, StoreError>;
    /// The whole catalogue, ordered by name.
    async fn tools(&self) -> Result<Vec<ToolRecord>, StoreError>;

    /// Writes a tool's pin, with its event.
    async fn upsert_pin(&self, pin: &PinRecord, event: NewEvent) -> Result<i64, StoreError>;
    /// Every pin, ordered by name.
    async fn pins(&self) -> Result<Vec<PinRecord>, StoreError>;

    /// Writes a change to the intent taxonomy, with its event.
    async fn put_intent(&self, intent: &IntentRecord, event: NewEvent) -> Result<i64, StoreError>;
    /// Every stored change to the taxonomy, ordered by name.
    async fn intents(&self) -> Result<Vec<IntentRecord>, StoreError>;
    /// Writes learned behaviour profiles (category, JSON), replacing the stored ones.
    async fn save_drift_profiles(&self, profiles: &[(String, String)], at_ms: i64) -> Result<(), StoreError>;
    /// Every stored behaviour profile (category, JSON).
    async fn drift_profiles(&self) -> Result<Vec<(String, String)>, StoreError>;
    /// Forgets a category's profile, with its event.
    async fn reset_drift_profile(&self, category: &str, event: NewEvent) -> Result<i64, StoreError>;

    /// Stores a new policy version (the next number) with its event; returns the version.
    async fn insert_policy_version(
        &self,
        text: &str,
        sha256: &str,
        by: &str,
        at_ms: i64,
        event: NewEvent,
    ) -> Result<i64, StoreError>;
    /// The newest policy version.
    async fn latest_policy(&self) -> Result<Option<PolicyVersion>, StoreError>;

    /// How many `allow` decisions each mandate made itself (not counting descendants), for the
    /// mandates of chains whose root expires after `after` (Unix seconds): what start-up needs to
    /// rebuild live budgets, whatever the length of the ledger's history.
    async fn allow_counts(&self, after: i64) -> Result<Vec<(String, u64)>, StoreError>;

    /// Every `allow` decision of the chains whose root mandate expires after `after` (Unix seconds),
    /// in ledger order.
    async fn allowed_calls_of_chains_ending_after(&self, after: i64) -> Result<Vec<AllowedCall>, StoreError>;

    /// [`DecisionStore::allow_counts`] of the mandates of one chain.
    async fn allow_counts_in_chain(&self, chain_id: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// When each agent last had a tool call decided (its last activity), Unix milliseconds.
    async fn last_activity(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// One approval.
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError>;
    /// Stores `approval` (pending) with its event, in one transaction with the checks that decide
    /// whether it is needed: when the same call already waits on an approval (same mandate, tool,
    /// resource and arguments hash, pending and unexpired at `approval.created_ms`, and held for
    /// the same reasons: equal `reasons`, `policies` and `signals` in `detail`), that one is
    /// returned instead; when `max_pending` approvals of the mandate already wait, none is stored.
    async fn open_approval(
        &self,
        approval: &ApprovalRecord,
        event: NewEvent,
        max_pending: usize,
    ) -> Result<OpenedApproval, StoreError>;
    /// Approvals, newest first, optionally only those with `status`.
    async fn approvals(&self, status: Option<&str>, limit: i64) -> Result<Vec<ApprovalRecord>, StoreError>;
    /// Moves an approval from `from` to `to` (with who and when), with its event; `false` when it was
    /// not in `from` any more (someone else decided or used it first).
    async fn transition_approval(
        &self,
        id: &str,
        from: &str,
        to: &str,
        by: Option<&str>,
        at_ms: i64,
        event: NewEvent,
    ) -> Result<Option<i64>, StoreError>;
}
