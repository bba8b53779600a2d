//! Requests that carry a mandate but decide no call by themselves: the gateway's `initialize`,
//! `tools/list`, `server/discover`, pings and notifications. Each is a verified presentation (the
//! same [`Engine::verify_presented`] as a decision), recorded with the proof id it used up, so that
//! a proof spent on a tool list can never be replayed on a call after a restart (see
//! [`crate::replay`]): the proof binds the method and URL, not the body, so every accepted proof
//! counts.
//!
//! What a list may show ([`Engine::shows`]) is the decision's own steps 5 and 6 without the
//! resource: every agent of the chain allowed in the tool's environment and within its boundary,
//! and every hop's scope naming the tool with its data class and action.

use crate::clock::millis;
use crate::decision::{pipeline::scope_shows, Presented};
use crate::engine::Engine;
use crate::error::Error;
use crate::mandates::verification::{Refusal, VerifiedPresentation};
use mandate_core::event::NewEvent;
use mandate_core::pattern::ToolName;

impl Engine {
    /// Verifies a presentation for `method` at `front_door` (`mcp/{server}`). A refusal that names a
    /// verified mandate is an event of its own (`gateway.refused`); one that names nobody is counted
    /// per source and summarised, like a decision's.
    pub async fn admit(
        &self,
        presented: &Presented<'_>,
        front_door: &str,
        method: &str,
    ) -> Result<VerifiedPresentation, Refusal> {
        match self.verify_presented(presented).await {
            Ok(v) => Ok(v),
            Err(refusal) => {
                let code = refusal.reasons.first().map_or("token.malformed", |r| r.code.as_str());
                match &refusal.record {
                    None => self.refusals.count(presented.source, code, millis(self.clock.now())),
                    Some(record) => {
                        let detail = serde_json::json!({
                            "front_door": front_door,
                            "method": method,
                            "step": refusal.step,
                            "reasons": refusal.reasons,
                        });
                        let actor = self.settings.trust_domain.agent_spiffe_id(&record.agent);
                        let mut event = NewEvent::new("gateway.refused", &actor, millis(self.clock.now()), &detail);
                        event.agent = Some(record.agent.to_string());
                        event.chain_id = Some(record.chain_id.clone());
                        event.mandate_id = Some(record.id.clone());
                        event.decision = Some("refused".to_owned());
                        if let Err(e) = self.store.append_event(event).await {
                            tracing::error!(error = %e, "could not record a refused gateway request");
                        }
                        self.metrics.event("gateway.refused");
                    }
                }
                Err(refusal)
            }
        }
    }

    /// Records an admitted request (`kind`, with `detail`), with the proof id it used up. The
    /// request must not be answered unless this succeeds: an unrecorded proof could be replayed
    /// after a restart.
    pub async fn record_admitted(
        &self,
        verified: &VerifiedPresentation,
        kind: &'static str,
        mut detail: serde_json::Value,
    ) -> Result<i64, Error> {
        let record = &verified.stored.record;
        if let Some(map) = detail.as_object_mut() {
            map.insert("replay".to_owned(), serde_json::json!(verified.replay_key.as_slice()));
        }
        let actor = self.settings.trust_domain.agent_spiffe_id(&record.agent);
        let mut event = NewEvent::new(kind, &actor, millis(self.clock.now()), &detail);
        event.agent = Some(record.agent.to_string());
        event.chain_id = Some(record.chain_id.clone());
        event.mandate_id = Some(record.id.clone());
        let seq = self.store.append_event(event).await?;
        self.metrics.event(kind);
        Ok(seq)
    }

    /// Records the outcome of a forwarded call, after its durable decision, without waiting for it
    /// to be durable (see [`mandate_store::Store::append_event_deferred`]).
    pub async fn record_outcome(&self, event: NewEvent) -> Result<(), Error> {
        let kind = event.kind.clone();
        self.store.append_event_deferred(event).await?;
        self.metrics.event(&kind);
        Ok(())
    }

    /// Records an event of the gateway's that no presentation carries (a discovery).
    pub async fn record_gateway_event(&self, event: NewEvent) -> Result<i64, Error> {
        let kind = event.kind.clone();
        let seq = self.store.append_event(event).await?;
        self.metrics.event(&kind);
        Ok(seq)
    }

    /// Whether a list of resources (or prompts) shown under `verified` may include `resource`, read
    /// through `tool` (`{server}/resources/read`, `{server}/prompts/get`): what [`Engine::shows`]
    /// says, and every hop's scope allowing the resource too.
    pub fn shows_resource(&self, verified: &VerifiedPresentation, tool: &ToolName, resource: &str) -> bool {
        let Ok(resource) = mandate_core::pattern::ResourceUri::parse(resource) else { return false };
        let class = self.catalogue.classify(tool);
        let target = mandate_core::mandate::CallTarget {
            tool,
            resource: Some(&resource),
            data_class: &class.data_class,
            action: class.action,
        };
        self.shows(verified, tool) && verified.chain.iter().all(|hop| hop.scope.allows(&target))
    }

    /// Whether a tool list shown under `verified` may include `tool`: see the module documentation.
    pub fn shows(&self, verified: &VerifiedPresentation, tool: &ToolName) -> bool {
        let class = self.catalogue.classify(tool);
        verified.agents.iter().all(|a| {
            a.boundary.environments.contains(&class.server_environment)
                && a.boundary.tools.iter().any(|t| t.matches(tool))
                && a.boundary.data_classes.contains(&class.data_class)
        }) && verified.chain.iter().all(|hop| scope_shows(hop, tool, &class))
    }
}
