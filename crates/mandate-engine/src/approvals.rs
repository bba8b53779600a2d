//! Human approval of held calls. Who may approve is itself a policy decision (Cedar action
//! `approve`): by default a human with the `approver` role or the agent's owner, and never the root
//! human for a financial write. Agents cannot answer approvals at all: the approval endpoints take only
//! human credentials, so an agent holding a mandate has no way to approve its own call.

use crate::caller::Caller;
use crate::clock::millis;
use crate::engine::Engine;
use crate::error::Error;
use crate::policy::{agent_facts, human_facts, unknown_human_facts};
use mandate_core::event::NewEvent;
use mandate_core::id::AgentId;
use mandate_policy::{ApproveRequest, Outcome, ToolFacts};
use mandate_store::ApprovalRecord;

impl Engine {
    /// Approves (`approve = true`) or denies a pending approval as `caller`.
    pub async fn answer_approval(&self, caller: &Caller, id: &str, approve: bool) -> Result<ApprovalRecord, Error> {
        self.answer_approval_with(caller, id, approve, None).await
    }

    /// [`Engine::answer_approval`] with the approver's comment, recorded in the ledger event (at
    /// most 1000 characters).
    pub async fn answer_approval_with(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
        comment: Option<&str>,
    ) -> Result<ApprovalRecord, Error> {
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        if comment.is_some_and(|c| c.chars().count() > 1000) {
            return Err(Error::new(
                crate::error::ErrorKind::Invalid,
                "request.invalid_body",
                "a comment is at most 1000 characters",
            ));
        }
        let Caller::Human(approver) = caller else {
            return Err(Error::forbidden(
                "approvals are answered by humans: authenticate with your own key, not the administrator token",
            ));
        };
        let approval = self
            .decisions
            .approval(id)
            .await?
            .ok_or_else(|| Error::not_found("approval.not_found", format!("no approval `{id}`")))?;
        let now_ms = millis(self.clock.now());
        if approval.status != "pending" {
            return Err(Error::conflict(
                "approval.not_pending",
                format!("approval `{id}` is already {}", approval.status),
            ));
        }
        if now_ms > approval.expires_ms {
            return Err(Error::conflict("approval.expired", format!("approval `{id}` expired")));
        }
        let agent_id = AgentId::parse(&approval.agent).map_err(|e| Error::internal(e.to_string()))?;
        let agent = self.agent_or_404(&agent_id).await?;
        let root_id = approval.detail["root"].as_str().and_then(|r| mandate_core::id::Principal::parse(r).ok());
        let root = match &root_id {
            Some(p) => match self.store.human(&p.human()).await? {
                Some(h) => human_facts(&h),
                None => unknown_human_facts(&p.human()),
            },
            None => return Err(Error::internal(format!("approval `{id}` has no root human"))),
        };
        let class = self.catalogue.classify(
            &mandate_core::pattern::ToolName::parse(&approval.tool).map_err(|e| Error::internal(e.to_string()))?,
        );
        let request = ApproveRequest {
            approver: human_facts(approver),
            agent: agent_facts(&agent),
            root,
            tool: ToolFacts {
                name: approval.tool.clone(),
                server: approval.tool.split('/').next().unwrap_or_default().to_owned(),
                server_environment: class.server_environment.as_str().to_owned(),
                data_class: class.data_class.to_string(),
                risk: class.action.as_str().to_owned(),
            },
            action: class.action.as_str().to_owned(),
            resource_uri: approval.resource.clone(),
        };
        let Some((_, policies)) = self.policy.current() else {
            return Err(Error::new(
                crate::error::ErrorKind::Unavailable,
                "policy.not_loaded",
                "no policy set is active",
            ));
        };
        let decision = policies.decide_approve(&request);
        if decision.outcome != Outcome::Allow {
            let why = if decision.matched.is_empty() {
                "no policy lets you approve this call (the `approver` role or ownership of the agent is needed)"
                    .to_owned()
            } else {
                format!(
                    "forbidden by policy {}",
                    decision.matched.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                )
            };
            let detail = serde_json::json!({"approval_id": id, "by": caller.principal(), "policies": decision.matched, "errors": decision.errors});
            let mut event =
                NewEvent::new("approval.refused", &caller.principal(), now_ms, &detail).with_agent(&approval.agent);
            event.chain_id = Some(approval.chain_id.clone());
            event.mandate_id = Some(approval.mandate_id.clone());
            event.tool = Some(approval.tool.clone());
            self.store.append_event(event).await?;
            return Err(Error::new(crate::error::ErrorKind::Forbidden, "approval.not_permitted", why));
        }
        let (to, kind) = if approve { ("approved", "approval.approved") } else { ("denied", "approval.denied") };
        let detail = serde_json::json!({"approval_id": id, "by": caller.principal(), "policies": decision.matched, "comment": comment});
        let mut event = NewEvent::new(kind, &caller.principal(), now_ms, &detail).with_agent(&approval.agent);
        event.chain_id = Some(approval.chain_id.clone());
        event.mandate_id = Some(approval.mandate_id.clone());
        event.tool = Some(approval.tool.clone());
        event.resource = approval.resource.clone();
        event.decision = Some(to.to_owned());
        let moved =
            self.decisions.transition_approval(id, "pending", to, Some(&caller.principal()), now_ms, event).await?;
        if moved.is_none() {
            return Err(Error::conflict(
                "approval.not_pending",
                format!("approval `{id}` was answered by someone else first"),
            ));
        }
        self.metrics.event(kind);
        self.decisions.approval(id).await?.ok_or_else(|| Error::internal("approval vanished"))
    }
}
