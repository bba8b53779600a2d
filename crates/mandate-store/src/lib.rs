//! Mandate's storage: a narrow, async repository interface and its backends.
//!
//! Architecture invariant: the store records what the core decided and decides nothing itself. It holds
//! no authorization logic, and no `sqlx` type crosses its API, so the server can run on any backend.
//! Every write that changes state appends its event in the same transaction: a change without its
//! event, or an event without its change, cannot be observed.
#![forbid(unsafe_code)]

pub mod decisions;
mod group;
pub mod ledger;
mod postgres;
mod rows;
mod sql;
mod sqlite;
#[cfg(test)]
mod suite;
pub mod testing;

pub use decisions::{
    AllowedCall, ApprovalRecord, DecisionStore, IntentRecord, OpenedApproval, PinRecord, PolicyVersion, ToolRecord,
};
pub use ledger::{GroupCommitOptions, Ledger, LedgerQuery, Reach, VerifyOptions, VerifyReport};
pub use postgres::{
    redacted as redacted_database_url, verify_database, PostgresOptions, PostgresStore, LEDGER_CHANNEL, LEDGER_LOCK,
};
pub use sqlite::ledger::verify_file;
pub use sqlite::{supported_schema_version, SqliteStore};

use async_trait::async_trait;
use mandate_core::agent::{Agent, AgentState, Environment};
use mandate_core::event::{Event, NewEvent};
use mandate_core::human::Human;
use mandate_core::id::{AgentId, HumanId, Principal};
use mandate_core::mandate::MandateRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The row already exists, or changed since it was read (optimistic concurrency).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database was written by a newer version of Mandate.
    #[error("the database schema is at version {found}, newer than this build of mandate supports ({supported}); upgrade mandate or point it at another database")]
    SchemaTooNew {
        /// The schema version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A stored document no longer parses: the database was edited by hand or is damaged.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(String),
    /// The database was busy, locked, or out of reach for a moment (SQLite `BUSY` / `LOCKED`, a
    /// connection that could not be had or was lost): nothing was written, and the same operation
    /// may succeed if tried again. The ledger writer retries its batches itself.
    #[error("database busy, try again: {0}")]
    Retryable(String),
}

impl StoreError {
    /// Whether trying the same operation again may succeed (nothing was written).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

/// Who a presented API key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialOwner {
    /// The bootstrap administrator.
    Admin,
    /// A human, active at the time of the look-up.
    Human(Human),
}

/// A change to an agent, written with its event in one transaction.
#[derive(Debug, Clone)]
pub struct AgentChange<'a> {
    /// The agent as read before the change; `None` registers a new agent.
    pub before: Option<&'a Agent>,
    /// The agent after the change.
    pub after: &'a Agent,
    /// What was done: `register`, `update`, `suspend`, ...
    pub action: &'a str,
    /// The event recording it.
    pub event: NewEvent,
    /// Mandates revoked in the same transaction (the kill switch of a suspension or retirement):
    /// either the agent changes and they are revoked, or neither.
    pub revoke: Option<MandateRevocation>,
}

/// Mandates to revoke, with the revocation and its event.
#[derive(Debug, Clone)]
pub struct MandateRevocation {
    /// The mandates; those already revoked keep their first revocation.
    pub ids: Vec<String>,
    /// Who, when and why.
    pub revocation: Revocation,
    /// The `mandate.revoked` event.
    pub event: NewEvent,
}

/// One recorded version of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentVersion {
    /// The version number.
    pub version: i64,
    /// When it was recorded, in Unix milliseconds.
    pub at_ms: i64,
    /// Who made the change.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// The agent before the change (absent for the registration).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The agent after the change.
    #[schema(value_type = Object)]
    pub after: serde_json::Value,
}

/// Filters for listing agents; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Only agents with this owner.
    pub owner: Option<Principal>,
    /// Only agents in this environment.
    pub environment: Option<Environment>,
    /// Only agents in this state.
    pub state: Option<AgentState>,
}

/// Filters for reading events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events about this agent.
    pub agent: Option<AgentId>,
    /// Only events of this kind.
    pub kind: Option<String>,
    /// Only events after this sequence number.
    pub after_seq: Option<i64>,
    /// Only events up to and including this sequence number.
    pub through_seq: Option<i64>,
    /// Only events of these kinds (empty: any kind; with `kind`, both must hold).
    pub kinds: Vec<String>,
    /// At most this many, oldest first.
    pub limit: i64,
}

/// A mandate as stored, with what has happened to it since it was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMandate {
    /// The trusted record.
    pub record: MandateRecord,
    /// The id of the key that signed its token.
    pub kid: String,
    /// Calls counted against it (its own and its descendants').
    pub used_calls: u64,
    /// Its revocation, if it was revoked.
    pub revocation: Option<Revocation>,
}

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Revocation {
    /// When, Unix seconds.
    pub at: i64,
    /// Who: `user:<id>`, `admin`, or `system`.
    pub by: String,
    /// Why, for the record.
    pub reason: String,
}

/// Which mandates an operation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MandateSelector {
    /// A mandate and every mandate descending from it.
    Subtree(String),
    /// Every mandate of a chain.
    Chain(String),
    /// Every mandate whose chain a human granted.
    Root(Principal),
    /// Every mandate in whose chain an agent appears.
    Agent(AgentId),
}

/// What a node claims in a shared database before it allows a call: that the proof was never
/// accepted before, and a call of every budget of the chain (see [`Store::append_claimed`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claim {
    /// The proof's replay key (`dpop:<jkt>:<jti>`) and when it can no longer be presented (Unix
    /// seconds).
    pub replay: Option<(String, i64)>,
    /// The mandates whose budgets the call spends: the chain, root first.
    pub mandates: Vec<String>,
}

/// What a claim got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Everything claimed.
    Granted,
    /// Another node (or this one) already accepted the proof: nothing was claimed.
    Replayed,
    /// This mandate (the shallowest without room) has spent its budget: no call was counted, and the
    /// proof stays used.
    Exhausted(String),
    /// This mandate of the chain is not in the database: nothing was counted, and the proof stays
    /// used. Never a grant.
    Unknown(String),
}

/// Turns an allow whose claim lost into the event recorded instead (the deny it became), given
/// what the claim got. Called inside the ledger's batch, so it must be quick and must not block.
pub type Refuse = Box<dyn Fn(&ClaimOutcome, &NewEvent) -> NewEvent + Send + Sync>;

/// The repository interface every backend implements.
#[async_trait]
pub trait Store: Ledger + Send + Sync + 'static {
    /// Writes an agent change and its event, and the revocation it carries, in one transaction;
    /// `Conflict` when registering an existing id or when the agent changed since `before` was read.
    /// Returns the sequence number of the agent's event.
    async fn record_agent_change(&self, change: AgentChange<'_>) -> Result<i64, StoreError>;
    /// One agent.
    async fn agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError>;
    /// Agents matching `filter`, ordered by id.
    async fn agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError>;
    /// Every recorded version of an agent, oldest first.
    async fn agent_history(&self, id: &AgentId) -> Result<Vec<AgentVersion>, StoreError>;

    /// Creates a human with the hash of its API key; `Conflict` when the id exists.
    async fn create_human(&self, human: &Human, key_hash: &str, event: NewEvent) -> Result<i64, StoreError>;
    /// Replaces a human's record (deactivation, group changes) with its event.
    async fn update_human(&self, human: &Human, event: NewEvent) -> Result<i64, StoreError>;
    /// One human.
    async fn human(&self, id: &HumanId) -> Result<Option<Human>, StoreError>;
    /// Every human, ordered by id.
    async fn humans(&self) -> Result<Vec<Human>, StoreError>;

    /// Who holds the API key with this hash, if anyone who may still use it.
    async fn credential(&self, key_hash: &str) -> Result<Option<CredentialOwner>, StoreError>;
    /// Whether an administrator credential exists.
    async fn has_admin_credential(&self) -> Result<bool, StoreError>;
    /// Replaces the administrator credential, with its event.
    async fn set_admin_credential(&self, key_hash: &str, event: NewEvent) -> Result<i64, StoreError>;

    /// Appends an event that goes with no state change.
    async fn append_event(&self, event: NewEvent) -> Result<i64, StoreError>;
    /// Appends an event that follows a durable one and that nobody waits for (a forwarded call's
    /// outcome, after its decision): committed with the next batch of appends, or alone within a
    /// few milliseconds. A crash in between loses it; it never delays an append someone waits for.
    async fn append_event_deferred(&self, event: NewEvent) -> Result<(), StoreError> {
        self.append_event(event).await.map(|_| ())
    }
    /// Events matching `filter`.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError>;

    /// Stores a new mandate with its event.
    async fn insert_mandate(&self, record: &MandateRecord, kid: &str, event: NewEvent) -> Result<i64, StoreError>;
    /// One mandate.
    async fn mandate(&self, id: &str) -> Result<Option<StoredMandate>, StoreError>;
    /// Every mandate of a chain, in order of issue.
    async fn chain(&self, chain_id: &str) -> Result<Vec<StoredMandate>, StoreError>;
    /// The ids and expiry times (Unix seconds) of mandates matching `selector` that are neither
    /// revoked nor expired at `now`, ordered by id.
    async fn live_mandates(&self, selector: &MandateSelector, now: i64) -> Result<Vec<(String, i64)>, StoreError>;
    /// Revokes `ids` (those already revoked keep their first revocation) with one event.
    async fn revoke_mandates(
        &self,
        ids: &[String],
        revocation: &Revocation,
        event: NewEvent,
    ) -> Result<i64, StoreError>;
    /// The ids and expiry times of revoked mandates that have not expired at `now` (to load the
    /// revocation cache).
    async fn revoked_unexpired(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError>;

    /// Appends `event`, an allow, once `claim` is won across every node sharing the database: the
    /// claim is made in the transaction that appends the event (with the batch it rides with), so
    /// both commit, or neither does. A claim that loses appends `refuse(outcome, event)` instead.
    /// Returns the sequence number of what was appended and what the claim got. Where this process
    /// is the only one using the store (SQLite), its own memory is exact and nothing is claimed
    /// here: `Granted`.
    async fn append_claimed(
        &self,
        event: NewEvent,
        claim: Claim,
        refuse: Refuse,
    ) -> Result<(i64, ClaimOutcome), StoreError> {
        let _ = (claim, refuse);
        Ok((self.append_event(event).await?, ClaimOutcome::Granted))
    }

    /// Forgets the proof ids that could no longer be presented at `now` (Unix seconds); returns how
    /// many.
    async fn prune_claims(&self, _now: i64) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Waits until another writer may have appended to the ledger (PostgreSQL's `NOTIFY`) or
    /// `within` has passed, whichever comes first; `true` when woken by a notification. Where this
    /// process is the only writer, it just waits.
    async fn changed(&self, within: std::time::Duration) -> bool {
        tokio::time::sleep(within).await;
        false
    }

    /// Whether another process may write this store (so that state must be read back from the
    /// ledger, and claims made in the database).
    fn shared(&self) -> bool {
        false
    }

    /// Whether the store can take an append now: a read works, the ledger writer runs, and its last
    /// batch committed (when it did not, a small write through the writer is tried, so that
    /// readiness comes back once the fault clears even when no append is waiting). For `/readyz`.
    async fn ready(&self) -> Result<(), StoreError>;

    /// A value from the store's own settings (such as the demo marker).
    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a value in the store's own settings.
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// The SHA-256 of an API key, as stored. API keys are 256-bit random secrets, so a fast hash is
/// enough: there is nothing to guess that a slow hash would protect.
pub fn hash_api_key(key: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(key.as_bytes()))
}
