//! Revocation: the kill switch for authority already handed out.
//!
//! It cannot fail open. The mandates to revoke are read first; then, before anything that could be
//! cancelled, they are put in the in-memory revocation set, which every decision on this node reads;
//! only then is the revocation committed, on a task of its own, so that a client that disconnects
//! (dropping the request's future) cannot stop it half way. A failed commit leaves them refused here
//! (fail closed) and the caller is told it failed; nothing is read back after the commit.

use crate::caller::Caller;
use crate::clock::millis;
use crate::engine::Engine;
use crate::error::Error;
use mandate_core::event::NewEvent;
use mandate_core::mandate::MandateRecord;
use mandate_store::{MandateSelector, Revocation};

impl Engine {
    /// Revokes the mandates `selector` names that are still live, as `caller`, and records it.
    /// Returns the ids revoked now.
    pub async fn revoke(
        &self,
        caller: &Caller,
        selector: MandateSelector,
        reason: String,
    ) -> Result<Vec<String>, Error> {
        let Some(planned) = self.plan_revocation(caller, &selector, reason).await? else { return Ok(Vec::new()) };
        let store = self.store.clone();
        let (ids, revocation, event) = (planned.ids.clone(), planned.revocation.clone(), planned.event.clone());
        self.commit_revocation(
            &planned,
            async move { store.revoke_mandates(&ids, &revocation, event).await.map(|_| ()) },
        )
        .await?;
        Ok(planned.ids)
    }

    /// Reads the live mandates `selector` names and builds their revocation; `None` when there are
    /// none. Nothing is changed yet.
    pub(crate) async fn plan_revocation(
        &self,
        caller: &Caller,
        selector: &MandateSelector,
        reason: String,
    ) -> Result<Option<PlannedRevocation>, Error> {
        let now = self.now_secs();
        let live = self.store.live_mandates(selector, now).await?;
        if live.is_empty() {
            return Ok(None);
        }
        let (label, target) = match selector {
            MandateSelector::Subtree(id) => ("mandate", id.clone()),
            MandateSelector::Chain(id) => ("chain", id.clone()),
            MandateSelector::Root(p) => ("human", p.to_string()),
            MandateSelector::Agent(a) => ("agent", a.to_string()),
        };
        let ids: Vec<String> = live.iter().map(|(id, _)| id.clone()).collect();
        let revocation = Revocation { at: now, by: caller.principal(), reason: reason.clone() };
        let detail = serde_json::json!({"selector": label, "target": target, "reason": reason, "revoked": ids});
        let mut event = NewEvent::new("mandate.revoked", &caller.principal(), millis(self.clock.now()), &detail);
        if let MandateSelector::Agent(a) = selector {
            event.agent = Some(a.to_string());
        }
        if let MandateSelector::Subtree(id) | MandateSelector::Chain(id) = selector {
            event.mandate_id = Some(id.clone());
        }
        Ok(Some(PlannedRevocation { ids, expiring: live, revocation, event, label, target }))
    }

    /// Puts `planned` in the in-memory revocation set, then runs `commit` to completion on a task of
    /// its own. The set changes first and synchronously, so no cancellation of the caller (a client
    /// that disconnects) and no failure of the commit can leave a revoked mandate usable on this
    /// node; a commit that fails leaves the mandates refused here and reports the failure.
    pub(crate) async fn commit_revocation(
        &self,
        planned: &PlannedRevocation,
        commit: impl std::future::Future<Output = Result<(), mandate_store::StoreError>> + Send + 'static,
    ) -> Result<(), Error> {
        self.revocations.insert(planned.expiring.iter().cloned(), self.now_secs());
        let committed =
            tokio::spawn(commit).await.map_err(|e| Error::internal(format!("the revocation task failed: {e}")))?;
        committed?;
        self.metrics.event("mandate.revoked");
        tracing::info!(selector = planned.label, target = %planned.target, count = planned.ids.len(), "mandates revoked");
        Ok(())
    }

    /// Who may revoke a mandate: an admin, the human at its root, or the owner of any agent in its chain.
    pub async fn may_revoke(&self, caller: &Caller, record: &MandateRecord) -> Result<bool, Error> {
        if caller.has_role(mandate_core::human::Role::Admin) {
            return Ok(true);
        }
        let Caller::Human(h) = caller else { return Ok(false) };
        if h.principal == record.root {
            return Ok(true);
        }
        for id in &record.chain_agents {
            if let Some(agent) = self.store.agent(id).await? {
                if caller.owns(&agent) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Who may read a mandate: those who may revoke it, auditors and approvers.
    pub async fn may_read(&self, caller: &Caller, record: &MandateRecord) -> Result<bool, Error> {
        Ok(caller.reads_everything() || self.may_revoke(caller, record).await?)
    }
}

/// A revocation read and built, not yet made.
#[derive(Debug, Clone)]
pub(crate) struct PlannedRevocation {
    pub(crate) ids: Vec<String>,
    /// The same mandates with their expiry: the in-memory set forgets each once it has expired.
    pub(crate) expiring: Vec<(String, i64)>,
    pub(crate) revocation: Revocation,
    pub(crate) event: NewEvent,
    label: &'static str,
    target: String,
}
