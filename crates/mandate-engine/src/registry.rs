//! The registry's operations: the one path by which handlers and the demo register, change and end
//! agents and humans. Each operation reads, lets the core decide, and records the decision with its
//! event; none of them decides anything itself.

use crate::caller::{generate_api_key, Caller};
use crate::clock::millis;
use crate::engine::Engine;
use crate::error::Error;
use mandate_core::agent::{
    self, Agent, AgentClass, AgentError, AgentPatch, AgentSpec, AgentState, Boundary, Environment,
};
use mandate_core::event::NewEvent;
use mandate_core::human::{Human, HumanSpec};
use mandate_core::id::{AgentId, HumanId, Principal};
use mandate_core::lifecycle::{self, LifecycleAction, LifecycleError, OwnerStatus, Review};
use mandate_store::{hash_api_key, AgentChange, AgentFilter, MandateRevocation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// An agent as the API shows it: what was registered, plus its identity, state and review.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    /// The slug.
    pub id: String,
    /// A readable name.
    pub name: String,
    /// The accountable human.
    pub owner: String,
    /// What it is for.
    pub purpose: String,
    /// Its class.
    pub class: AgentClass,
    /// Where it runs.
    pub environment: Environment,
    /// The most it may ever do.
    pub boundary: Boundary,
    /// Its public key.
    #[schema(value_type = Object)]
    pub public_key_jwk: serde_json::Value,
    /// The RFC 7638 thumbprint of its key: the `cnf.jkt` of its mandates.
    pub key_thumbprint: String,
    /// Recertification period in days.
    pub certify_every_days: u32,
    /// `spiffe://<trust domain>/agent/<id>`.
    pub spiffe_id: String,
    /// Lifecycle state.
    pub state: AgentState,
    /// Starts at 1; one more for each recorded change.
    pub version: i64,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// When it was last certified; `null` until the first certification.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub certified_at: Option<OffsetDateTime>,
    /// When it last acted.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_active_at: OffsetDateTime,
    /// What is due: the next recertification and the reasons it needs review now.
    pub review: Review,
}

/// A human as the API shows it when created: the record and its API key, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedHuman {
    /// The human.
    #[serde(flatten)]
    pub human: Human,
    /// The API key. It is stored only as a hash and is never shown again.
    pub api_key: String,
}

/// An optional reason given with a lifecycle action.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRequest {
    /// Why, for the record.
    pub reason: Option<String>,
}

/// The agent with `last_active_at` brought forward to its last decided call. Activity is read from
/// the ledger rather than written to the agent on every call, so the hot path writes nothing more.
fn with_activity(agent: &Agent, activity: &HashMap<String, i64>) -> Agent {
    let mut a = agent.clone();
    if let Some(ms) = activity.get(a.id.as_str()) {
        if let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(*ms) * 1_000_000) {
            if t > a.last_active_at {
                a.last_active_at = t;
            }
        }
    }
    a
}

fn agent_error(e: AgentError) -> Error {
    let code = match e {
        AgentError::BadText { .. } => "agent.invalid_field",
        AgentError::BadCertificationPeriod(_) => "agent.invalid_certification_period",
        AgentError::EnvironmentEscalation { .. } => "agent.environment_escalation",
        AgentError::DepthTooLarge(_) => "agent.depth_too_large",
        AgentError::SelfDelegation(_) => "agent.self_delegation",
        AgentError::DelegationWithoutDepth => "agent.delegation_without_depth",
    };
    Error::invalid(code, e.to_string())
}

fn lifecycle_error(e: LifecycleError) -> Error {
    match e {
        LifecycleError::Retired(_) => Error::conflict("agent.retired", e.to_string()),
        LifecycleError::NotSuspended(_) => Error::conflict("agent.not_suspended", e.to_string()),
    }
}

impl Engine {
    /// How the owner of `agent` stands.
    async fn owner_status(&self, owner: &Principal) -> Result<OwnerStatus, Error> {
        Ok(match self.store.human(&owner.human()).await? {
            Some(h) if h.active => OwnerStatus::Active { sandbox: h.sandbox },
            Some(_) => OwnerStatus::Inactive,
            None => OwnerStatus::Unknown,
        })
    }

    /// The view of `agent` at `now`.
    pub fn view(&self, agent: &Agent, owner: OwnerStatus, now: OffsetDateTime) -> AgentView {
        AgentView {
            id: agent.id.to_string(),
            name: agent.name.clone(),
            owner: agent.owner.to_string(),
            purpose: agent.purpose.clone(),
            class: agent.class,
            environment: agent.environment,
            boundary: agent.boundary.clone(),
            public_key_jwk: agent.public_key_jwk.to_json(),
            key_thumbprint: agent.public_key_jwk.thumbprint(),
            certify_every_days: agent.certify_every_days,
            spiffe_id: self.settings.trust_domain.agent_spiffe_id(&agent.id),
            state: agent.state,
            version: agent.version,
            created_at: agent.created_at,
            updated_at: agent.updated_at,
            certified_at: agent.certified_at,
            last_active_at: agent.last_active_at,
            review: lifecycle::review(agent, owner, self.settings.review, now),
        }
    }

    /// The view of `agent` now.
    pub async fn view_now(&self, agent: &Agent) -> Result<AgentView, Error> {
        let owner = self.owner_status(&agent.owner).await?;
        let activity = self.activity().await?;
        Ok(self.view(&with_activity(agent, &activity), owner, self.clock.now()))
    }

    /// When each agent last acted (its last decided tool call).
    async fn activity(&self) -> Result<HashMap<String, i64>, Error> {
        Ok(self.decisions.last_activity().await?.into_iter().collect())
    }

    /// Views of many agents at `at`, reading each owner once.
    pub async fn views(&self, agents: &[Agent], at: OffsetDateTime) -> Result<Vec<AgentView>, Error> {
        let humans: HashMap<HumanId, Human> =
            self.store.humans().await?.into_iter().map(|h| (h.id.clone(), h)).collect();
        let activity = self.activity().await?;
        Ok(agents
            .iter()
            .map(|a| {
                let owner = match humans.get(&a.owner.human()) {
                    Some(h) if h.active => OwnerStatus::Active { sandbox: h.sandbox },
                    Some(_) => OwnerStatus::Inactive,
                    None => OwnerStatus::Unknown,
                };
                self.view(&with_activity(a, &activity), owner, at)
            })
            .collect())
    }

    /// An accountable owner must be a known, active human.
    async fn require_active_owner(&self, owner: &Principal) -> Result<(), Error> {
        match self.owner_status(owner).await? {
            OwnerStatus::Active { .. } => Ok(()),
            OwnerStatus::Inactive => Err(Error::invalid(
                "agent.owner_inactive",
                format!("owner `{owner}` is deactivated; an agent needs an accountable owner who is still here"),
            )),
            OwnerStatus::Unknown => Err(Error::invalid(
                "agent.owner_unknown",
                format!("owner `{owner}` is not a known human; create the human first"),
            )),
        }
    }

    /// The agent `id`, or a 404.
    pub async fn agent_or_404(&self, id: &AgentId) -> Result<Agent, Error> {
        self.store.agent(id).await?.ok_or_else(|| Error::not_found("agent.not_found", format!("no agent `{id}`")))
    }

    fn record(&self, kind: &str) {
        self.metrics.event(kind);
    }

    /// Registers an agent (the joiner event) as `caller` at `now`.
    pub async fn register_agent(
        &self,
        caller: &Caller,
        spec: AgentSpec,
        now: OffsetDateTime,
    ) -> Result<AgentView, Error> {
        caller.require_admin("registering an agent")?;
        self.require_active_owner(&spec.owner).await?;
        let agent = agent::register(spec, now).map_err(agent_error)?;
        let detail = serde_json::json!({
            "owner": agent.owner, "environment": agent.environment, "class": agent.class,
            "boundary": agent.boundary, "key_thumbprint": agent.public_key_jwk.thumbprint(),
        });
        let event =
            NewEvent::new("agent.registered", &caller.principal(), millis(now), &detail).with_agent(agent.id.as_str());
        self.store
            .record_agent_change(AgentChange { before: None, after: &agent, action: "register", event, revoke: None })
            .await
            .map_err(|e| match e {
                mandate_store::StoreError::Conflict(detail) => Error::conflict("agent.exists", detail),
                other => other.into(),
            })?;
        self.registry.put_agent(&agent);
        self.record("agent.registered");
        tracing::info!(agent = %agent.id, owner = %agent.owner, "agent registered");
        let owner = self.owner_status(&agent.owner).await?;
        Ok(self.view(&agent, owner, now))
    }

    /// Changes an agent (the mover event).
    pub async fn update_agent(
        &self,
        caller: &Caller,
        id: &AgentId,
        patch: AgentPatch,
        now: OffsetDateTime,
    ) -> Result<AgentView, Error> {
        caller.require_admin("changing an agent")?;
        let current = self.agent_or_404(id).await?;
        if current.state == AgentState::Retired {
            return Err(lifecycle_error(LifecycleError::Retired(id.to_string())));
        }
        if let Some(owner) = &patch.owner {
            if *owner != current.owner {
                self.require_active_owner(owner).await?;
            }
        }
        let moved = agent::apply_patch(&current, patch, now).map_err(agent_error)?;
        if moved.changed {
            let detail = serde_json::json!({"version": moved.agent.version, "review_raised": moved.raised});
            let event =
                NewEvent::new("agent.updated", &caller.principal(), millis(now), &detail).with_agent(id.as_str());
            self.store
                .record_agent_change(AgentChange {
                    before: Some(&current),
                    after: &moved.agent,
                    action: "update",
                    event,
                    revoke: None,
                })
                .await?;
            self.registry.put_agent(&moved.agent);
            self.record("agent.updated");
            if moved.raised.contains(&mandate_core::agent::ReviewReason::KeyChanged) {
                // A replaced key is usually a leaked one: the mandates bound to the old key go with it.
                let why = format!("agent `{id}`'s key was replaced");
                self.revoke(caller, mandate_store::MandateSelector::Agent(id.clone()), why).await?;
            }
            tracing::info!(agent = %id, review_raised = ?moved.raised, "agent updated");
        }
        self.view_now(&moved.agent).await
    }

    /// Suspends, resumes, retires or certifies an agent.
    pub async fn lifecycle(
        &self,
        caller: &Caller,
        id: &AgentId,
        action: LifecycleAction,
        reason: Option<String>,
        now: OffsetDateTime,
    ) -> Result<AgentView, Error> {
        let current = self.agent_or_404(id).await?;
        let what = format!("{}ing agent `{id}`", action.as_str().trim_end_matches('e'));
        match action {
            // Resuming gives authority back: only an administrator may.
            LifecycleAction::Resume => caller.require_admin(&what)?,
            // The kill switch and the attestation belong to the owner as much as to the administrator.
            LifecycleAction::Suspend | LifecycleAction::Retire | LifecycleAction::Certify => {
                caller.require_admin_or_owner(&what, &current)?
            }
        }
        if let Some(r) = &reason {
            if r.chars().count() > 1000 {
                return Err(Error::invalid("request.invalid_body", "`reason` must be at most 1000 characters"));
            }
        }
        let t = lifecycle::transition(&current, action, now).map_err(lifecycle_error)?;
        if t.changed {
            let kind = match action {
                LifecycleAction::Suspend => "agent.suspended",
                LifecycleAction::Resume => "agent.resumed",
                LifecycleAction::Retire => "agent.retired",
                LifecycleAction::Certify => "agent.certified",
            };
            let detail = serde_json::json!({"from": current.state, "to": t.agent.state, "reason": reason, "version": t.agent.version});
            let event = NewEvent::new(kind, &caller.principal(), millis(now), &detail).with_agent(id.as_str());
            // The kill switch reaches authority already handed out: every live mandate in whose
            // chain the agent appears is revoked in the same transaction as the suspension or
            // retirement (either both happen or neither), so resuming an agent never revives old
            // mandates.
            let planned = if t.blocks_mandates {
                let why = format!("agent `{id}` {}", t.agent.state.as_str());
                self.plan_revocation(caller, &mandate_store::MandateSelector::Agent(id.clone()), why).await?
            } else {
                None
            };
            let change_event = event;
            let (store, before, after, action_name) =
                (self.store.clone(), current.clone(), t.agent.clone(), action.as_str().to_owned());
            let revoke = planned.as_ref().map(|p| MandateRevocation {
                ids: p.ids.clone(),
                revocation: p.revocation.clone(),
                event: p.event.clone(),
            });
            // The registry cache takes the new state inside the same task as the commit, so that a
            // cancelled caller cannot leave this node deciding on the old state.
            let registry = self.registry.clone();
            let commit = async move {
                store
                    .record_agent_change(AgentChange {
                        before: Some(&before),
                        after: &after,
                        action: &action_name,
                        event: change_event,
                        revoke,
                    })
                    .await?;
                registry.put_agent(&after);
                Ok(())
            };
            match &planned {
                Some(p) => self.commit_revocation(p, commit).await?,
                None => tokio::spawn(commit)
                    .await
                    .map_err(|e| Error::internal(format!("the lifecycle task failed: {e}")))??,
            }
            self.record(kind);
            tracing::info!(agent = %id, action = action.as_str(), state = t.agent.state.as_str(), "agent lifecycle");
        }
        self.view_now(&t.agent).await
    }

    /// Creates a development human with a fresh API key.
    pub async fn create_human(
        &self,
        caller: &Caller,
        spec: HumanSpec,
        now: OffsetDateTime,
    ) -> Result<CreatedHuman, Error> {
        caller.require_admin("creating a human")?;
        let human = Human::new(spec, now);
        let api_key = generate_api_key();
        let detail = serde_json::json!({"groups": human.groups, "roles": human.roles, "sandbox": human.sandbox});
        let event = NewEvent::new("human.created", &caller.principal(), millis(now), &detail);
        let event = NewEvent { resource: Some(human.principal.to_string()), ..event };
        self.store.create_human(&human, &hash_api_key(&api_key), event).await.map_err(|e| match e {
            mandate_store::StoreError::Conflict(detail) => Error::conflict("human.exists", detail),
            other => other.into(),
        })?;
        self.registry.put_human(&human);
        self.record("human.created");
        Ok(CreatedHuman { human, api_key })
    }

    /// Deactivates a human (the human leaver event): their keys stop working and the agents they own
    /// become orphans in the review.
    pub async fn deactivate_human(&self, caller: &Caller, id: &HumanId, now: OffsetDateTime) -> Result<Human, Error> {
        caller.require_admin("deactivating a human")?;
        let mut human = self
            .store
            .human(id)
            .await?
            .ok_or_else(|| Error::not_found("human.not_found", format!("no human `{id}`")))?;
        if !human.active {
            return Ok(human);
        }
        human.active = false;
        let owned =
            self.store.agents(&AgentFilter { owner: Some(human.principal.clone()), ..AgentFilter::default() }).await?;
        let orphaned: Vec<&str> =
            owned.iter().filter(|a| a.state != AgentState::Retired).map(|a| a.id.as_str()).collect();
        let detail = serde_json::json!({"orphaned_agents": orphaned});
        let event = NewEvent::new("human.deactivated", &caller.principal(), millis(now), &detail);
        let event = NewEvent { resource: Some(human.principal.to_string()), ..event };
        self.store.update_human(&human, event).await?;
        self.registry.put_human(&human);
        // A leaver's authority leaves with them: every live mandate they granted is revoked.
        let selector = mandate_store::MandateSelector::Root(human.principal.clone());
        self.revoke(caller, selector, format!("`{}` was deactivated", human.principal)).await?;
        self.record("human.deactivated");
        Ok(human)
    }
}
