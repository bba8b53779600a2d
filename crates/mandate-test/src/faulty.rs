//! A store that fails on purpose: every call goes to a real store (a SQLite file) unless a fault
//! is switched on, so that tests can try to get past the engine's fail-closed paths with the
//! failures a real database has (a read that errors, a write that errors, a commit that is slow).
//!
//! The delegation below is mechanical: one method per method of the store's traits, each asking
//! [`Faults`] first.

use async_trait::async_trait;
use mandate_core::agent::Agent;
use mandate_core::event::{Event, NewEvent};
use mandate_core::human::Human;
use mandate_core::id::{AgentId, HumanId};
use mandate_core::ledger::{Checkpoint, LedgerHead};
use mandate_core::mandate::MandateRecord;
use mandate_store::{
    AgentChange, AgentFilter, AgentVersion, AllowedCall, ApprovalRecord, CredentialOwner, DecisionStore, EventFilter,
    Ledger, LedgerQuery, MandateSelector, OpenedApproval, PolicyVersion, Reach, Revocation, SqliteStore, Store,
    StoreError, StoredMandate, ToolRecord, VerifyOptions, VerifyReport,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The faults a [`FaultyStore`] injects, switched on and off while it runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Every read fails.
    pub fail_reads: AtomicBool,
    /// Every write fails (before it reaches the database).
    pub fail_writes: AtomicBool,
    /// Once a `revoke_mandates` has committed, every read fails.
    pub fail_reads_after_revoke: AtomicBool,
    /// `revoke_mandates` and `record_agent_change` wait this long before they commit.
    pub commit_delay_ms: AtomicU64,
}

/// A real store with [`Faults`] in front of it.
#[derive(Clone)]
pub struct FaultyStore {
    inner: SqliteStore,
    /// The switches.
    pub faults: Arc<Faults>,
}

impl FaultyStore {
    /// `inner` with every fault off.
    pub fn new(inner: SqliteStore) -> Self {
        Self { inner, faults: Arc::default() }
    }

    fn read(&self) -> Result<(), StoreError> {
        if self.faults.fail_reads.load(Ordering::SeqCst) {
            return Err(StoreError::Database("injected: the read failed".into()));
        }
        Ok(())
    }

    async fn write(&self, name: &str) -> Result<(), StoreError> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Database("injected: the write failed".into()));
        }
        if matches!(name, "revoke_mandates" | "record_agent_change") {
            let delay = self.faults.commit_delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
        Ok(())
    }

    fn after(&self, name: &str) {
        if name == "revoke_mandates" && self.faults.fail_reads_after_revoke.load(Ordering::SeqCst) {
            self.faults.fail_reads.store(true, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Ledger for FaultyStore {
    async fn query_events(&self, query: &LedgerQuery) -> Result<Vec<Event>, StoreError> {
        self.read()?;
        self.inner.query_events(query).await
    }
    async fn head(&self) -> Result<Option<LedgerHead>, StoreError> {
        self.read()?;
        self.inner.head().await
    }
    async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport, StoreError> {
        self.read()?;
        self.inner.verify(options).await
    }
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.write("insert_checkpoint").await?;
        self.inner.insert_checkpoint(checkpoint).await
    }
    async fn checkpoints(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
        self.read()?;
        self.inner.checkpoints(after_seq, limit).await
    }
    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        self.read()?;
        self.inner.latest_checkpoint().await
    }
    async fn chains_reached(&self, reach: &Reach) -> Result<Vec<String>, StoreError> {
        self.read()?;
        self.inner.chains_reached(reach).await
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn record_agent_change(&self, change: AgentChange<'_>) -> Result<i64, StoreError> {
        self.write("record_agent_change").await?;
        self.inner.record_agent_change(change).await
    }
    async fn agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        self.read()?;
        self.inner.agent(id).await
    }
    async fn agents(&self, filter: &AgentFilter) -> Result<Vec<Agent>, StoreError> {
        self.read()?;
        self.inner.agents(filter).await
    }
    async fn agent_history(&self, id: &AgentId) -> Result<Vec<AgentVersion>, StoreError> {
        self.read()?;
        self.inner.agent_history(id).await
    }
    async fn create_human(&self, human: &Human, key_hash: &str, event: NewEvent) -> Result<i64, StoreError> {
        self.write("create_human").await?;
        self.inner.create_human(human, key_hash, event).await
    }
    async fn update_human(&self, human: &Human, event: NewEvent) -> Result<i64, StoreError> {
        self.write("update_human").await?;
        self.inner.update_human(human, event).await
    }
    async fn human(&self, id: &HumanId) -> Result<Option<Human>, StoreError> {
        self.read()?;
        self.inner.human(id).await
    }
    async fn humans(&self) -> Result<Vec<Human>, StoreError> {
        self.read()?;
        self.inner.humans().await
    }
    async fn credential(&self, key_hash: &str) -> Result<Option<CredentialOwner>, StoreError> {
        self.read()?;
        self.inner.credential(key_hash).await
    }
    async fn has_admin_credential(&self) -> Result<bool, StoreError> {
        self.read()?;
        self.inner.has_admin_credential().await
    }
    async fn set_admin_credential(&self, key_hash: &str, event: NewEvent) -> Result<i64, StoreError> {
        self.write("set_admin_credential").await?;
        self.inner.set_admin_credential(key_hash, event).await
    }
    async fn append_event(&self, event: NewEvent) -> Result<i64, StoreError> {
        self.write("append_event").await?;
        self.inner.append_event(event).await
    }
    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.read()?;
        self.inner.events(filter).await
    }
    async fn insert_mandate(&self, record: &MandateRecord, kid: &str, event: NewEvent) -> Result<i64, StoreError> {
        self.write("insert_mandate").await?;
        self.inner.insert_mandate(record, kid, event).await
    }
    async fn mandate(&self, id: &str) -> Result<Option<StoredMandate>, StoreError> {
        self.read()?;
        self.inner.mandate(id).await
    }
    async fn chain(&self, chain_id: &str) -> Result<Vec<StoredMandate>, StoreError> {
        self.read()?;
        self.inner.chain(chain_id).await
    }
    async fn live_mandates(&self, selector: &MandateSelector, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.read()?;
        self.inner.live_mandates(selector, now).await
    }
    async fn revoke_mandates(
        &self,
        ids: &[String],
        revocation: &Revocation,
        event: NewEvent,
    ) -> Result<i64, StoreError> {
        self.write("revoke_mandates").await?;
        let result = self.inner.revoke_mandates(ids, revocation, event).await;
        self.after("revoke_mandates");
        result
    }
    async fn revoked_unexpired(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.read()?;
        self.inner.revoked_unexpired(now).await
    }
    async fn ready(&self) -> Result<(), StoreError> {
        self.read()?;
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Database("injected: the write failed".into()));
        }
        self.inner.ready().await
    }
    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read()?;
        self.inner.meta(key).await
    }
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write("set_meta").await?;
        self.inner.set_meta(key, value).await
    }
}

#[async_trait]
impl DecisionStore for FaultyStore {
    async fn upsert_pin(&self, pin: &mandate_store::PinRecord, event: NewEvent) -> Result<i64, StoreError> {
        self.write("upsert_pin").await?;
        self.inner.upsert_pin(pin, event).await
    }

    async fn pins(&self) -> Result<Vec<mandate_store::PinRecord>, StoreError> {
        self.inner.pins().await
    }

    async fn put_intent(&self, intent: &mandate_store::IntentRecord, event: NewEvent) -> Result<i64, StoreError> {
        self.write("put_intent").await?;
        self.inner.put_intent(intent, event).await
    }

    async fn intents(&self) -> Result<Vec<mandate_store::IntentRecord>, StoreError> {
        self.inner.intents().await
    }

    async fn save_drift_profiles(&self, profiles: &[(String, String)], at_ms: i64) -> Result<(), StoreError> {
        self.write("save_drift_profiles").await?;
        self.inner.save_drift_profiles(profiles, at_ms).await
    }

    async fn drift_profiles(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.drift_profiles().await
    }

    async fn reset_drift_profile(&self, category: &str, event: NewEvent) -> Result<i64, StoreError> {
        self.write("reset_drift_profile").await?;
        self.inner.reset_drift_profile(category, event).await
    }

    async fn upsert_tool(&self, tool: &ToolRecord, event: NewEvent) -> Result<i64, StoreError> {
        self.write("upsert_tool").await?;
        self.inner.upsert_tool(tool, event).await
    }
    async fn tool(&self, name: &str) -> Result<Option<ToolRecord>, StoreError> {
        self.read()?;
        self.inner.tool(name).await
    }
    async fn tools(&self) -> Result<Vec<ToolRecord>, StoreError> {
        self.read()?;
        self.inner.tools().await
    }
    async fn insert_policy_version(
        &self,
        text: &str,
        sha256: &str,
        by: &str,
        at_ms: i64,
        event: NewEvent,
    ) -> Result<i64, StoreError> {
        self.write("insert_policy_version").await?;
        self.inner.insert_policy_version(text, sha256, by, at_ms, event).await
    }
    async fn latest_policy(&self) -> Result<Option<PolicyVersion>, StoreError> {
        self.read()?;
        self.inner.latest_policy().await
    }
    async fn allow_counts(&self, after: i64) -> Result<Vec<(String, u64)>, StoreError> {
        self.read()?;
        self.inner.allow_counts(after).await
    }
    async fn allowed_calls_of_chains_ending_after(&self, after: i64) -> Result<Vec<AllowedCall>, StoreError> {
        self.read()?;
        self.inner.allowed_calls_of_chains_ending_after(after).await
    }
    async fn allow_counts_in_chain(&self, chain_id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.read()?;
        self.inner.allow_counts_in_chain(chain_id).await
    }
    async fn last_activity(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read()?;
        self.inner.last_activity().await
    }
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, StoreError> {
        self.read()?;
        self.inner.approval(id).await
    }
    async fn open_approval(
        &self,
        approval: &ApprovalRecord,
        event: NewEvent,
        max_pending: usize,
    ) -> Result<OpenedApproval, StoreError> {
        self.write("open_approval").await?;
        self.inner.open_approval(approval, event, max_pending).await
    }
    async fn approvals(&self, status: Option<&str>, limit: i64) -> Result<Vec<ApprovalRecord>, StoreError> {
        self.read()?;
        self.inner.approvals(status, limit).await
    }
    async fn transition_approval(
        &self,
        id: &str,
        from: &str,
        to: &str,
        by: Option<&str>,
        at_ms: i64,
        event: NewEvent,
    ) -> Result<Option<i64>, StoreError> {
        self.write("transition_approval").await?;
        self.inner.transition_approval(id, from, to, by, at_ms, event).await
    }
}
