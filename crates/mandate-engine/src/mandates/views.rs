//! How a mandate and its chain are shown: `GET /v1/mandates/{id}` and `GET /v1/chains/{id}`, with
//! the calls counted against each mandate.

use crate::engine::{Engine, Revocations};
use mandate_core::id::Principal;
use mandate_store::{Revocation, StoredMandate};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

/// A mandate as `GET /v1/mandates/{id}` and the chain view show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MandateView {
    /// Its id.
    pub id: String,
    /// Its chain.
    pub chain_id: String,
    /// Its parent.
    pub parent_id: Option<String>,
    /// 1 for a human's grant.
    pub depth: u8,
    /// The agent holding it.
    pub agent: String,
    /// The human at the root.
    pub root: String,
    /// The task.
    #[schema(value_type = Object)]
    pub intent: serde_json::Value,
    /// What it allows.
    #[schema(value_type = Vec<Object>)]
    pub authorization_details: serde_json::Value,
    /// Its budget.
    pub max_calls: u64,
    /// Calls counted against it so far.
    pub used_calls: u64,
    /// Further delegations allowed.
    pub max_depth: u8,
    /// Issued, Unix seconds.
    pub issued_at: i64,
    /// Expires, Unix seconds.
    pub expires_at: i64,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    /// Its revocation, if revoked.
    pub revocation: Option<Revocation>,
    /// The key that signed its token.
    pub kid: String,
    /// Its children, in the chain view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion, value_type = Vec<Object>)]
    pub children: Vec<MandateView>,
}

impl MandateView {
    /// The view of a stored mandate at `now`; `revoked_in` names a revoked ancestor, if any.
    pub fn new(m: &StoredMandate, now: i64, revoked_ancestor: bool) -> Self {
        let state = if m.revocation.is_some() || revoked_ancestor {
            "revoked"
        } else if m.record.expires_at <= now {
            "expired"
        } else {
            "active"
        };
        Self {
            id: m.record.id.clone(),
            chain_id: m.record.chain_id.clone(),
            parent_id: m.record.parent_id.clone(),
            depth: m.record.depth,
            agent: m.record.agent.to_string(),
            root: m.record.root.to_string(),
            intent: serde_json::to_value(&m.record.intent).unwrap_or_default(),
            authorization_details: serde_json::to_value(&m.record.scope).unwrap_or_default(),
            max_calls: m.record.max_calls,
            used_calls: m.used_calls,
            max_depth: m.record.max_depth,
            issued_at: m.record.issued_at,
            expires_at: m.record.expires_at,
            state: state.to_owned(),
            revocation: m.revocation.clone(),
            kid: m.kid.clone(),
            children: Vec::new(),
        }
    }
}

impl Engine {
    /// The calls counted against each mandate of `chain` (every mandate of one chain, as
    /// [`mandate_store::Store::chain`] returns them), its own and its descendants', by id: from
    /// memory while its count is kept, and from the ledger's `allow` decisions once it expired long
    /// enough ago for the count to be dropped (see [`crate::expiry`]).
    pub async fn used_calls(&self, chain: &[StoredMandate]) -> Result<HashMap<String, u64>, mandate_store::StoreError> {
        let now = self.now_secs();
        let mut used = HashMap::with_capacity(chain.len());
        // The calls each mandate of the chain made itself, read once, and only if needed.
        let mut own: Option<HashMap<String, u64>> = None;
        for m in chain {
            let id = &m.record.id;
            if !crate::expiry::forgotten(m.record.expires_at, now) {
                used.insert(id.clone(), self.budgets.used(id));
                continue;
            }
            let own = match &mut own {
                Some(own) => own,
                None => {
                    own.insert(self.decisions.allow_counts_in_chain(&m.record.chain_id).await?.into_iter().collect())
                }
            };
            let n = chain
                .iter()
                .filter(|d| d.record.id == *id || d.record.lineage.contains(id))
                .map(|d| own.get(&d.record.id).copied().unwrap_or(0))
                .sum();
            used.insert(id.clone(), n);
        }
        Ok(used)
    }

    /// [`Engine::used_calls`] of one mandate; its chain is read only when its count has to come
    /// from the ledger.
    pub async fn used_calls_of(&self, m: &StoredMandate) -> Result<u64, mandate_store::StoreError> {
        if !crate::expiry::forgotten(m.record.expires_at, self.now_secs()) {
            return Ok(self.budgets.used(&m.record.id));
        }
        let chain = self.store.chain(&m.record.chain_id).await?;
        Ok(self.used_calls(&chain).await?.get(&m.record.id).copied().unwrap_or(0))
    }
}

/// Builds the tree of a chain from its mandates (ordered by depth), with the calls counted against
/// each (see [`Engine::used_calls`]).
pub fn chain_tree(
    mandates: &[StoredMandate],
    now: i64,
    revocations: &Revocations,
    used: &HashMap<String, u64>,
) -> Option<MandateView> {
    fn attach(node: &mut MandateView, all: &[MandateView]) {
        node.children = all.iter().filter(|m| m.parent_id.as_deref() == Some(node.id.as_str())).cloned().collect();
        for child in &mut node.children {
            attach(child, all);
        }
    }
    let views: Vec<MandateView> = mandates
        .iter()
        .map(|m| {
            let mut v = MandateView::new(m, now, revocations.revoked_in(&m.record).is_some());
            v.used_calls = used.get(&m.record.id).copied().unwrap_or(0);
            v
        })
        .collect();
    let mut root = views.iter().find(|m| m.parent_id.is_none())?.clone();
    attach(&mut root, &views);
    Some(root)
}

/// The principal whose mandates `POST /v1/humans/{id}/revoke-mandates` revokes.
pub fn human_root(id: &mandate_core::id::HumanId) -> Principal {
    id.principal()
}
