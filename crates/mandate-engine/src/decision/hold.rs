//! Held calls: an approval opened for the exact call, or used once by the call it was opened for.
//!
//! An approval is bound to the mandate, the tool, the resource and the SHA-256 of the arguments'
//! RFC 8785 canonical form ([`mandate_core::arguments`]), so a retry with other arguments, or the same
//! arguments written so that another reader would take them differently, never uses it.

use super::pipeline::Step;
use super::{Call, Ctx};
use crate::behaviour::{CallShape, Observed};
use crate::clock::millis;
use crate::engine::Engine;
use crate::mandates::verification::internal_reason;
use mandate_core::event::NewEvent;
use mandate_core::mandate::{Action, MandateRecord};
use mandate_core::pattern::{ResourceUri, ToolName};
use mandate_store::{ApprovalRecord, OpenedApproval};

/// What a held call is: the mandate it was made under, the tool and resource, and why policy held it.
#[derive(Clone, Copy)]
pub(crate) struct Held<'a> {
    pub(crate) record: &'a MandateRecord,
    pub(crate) tool: &'a ToolName,
    pub(crate) resource: Option<&'a ResourceUri>,
    pub(crate) reasons: &'a [String],
}

/// Records an internal fault as a deny reason without telling the caller what broke.
fn internal(ctx: &mut Ctx, detail: String, hop: Option<u8>) {
    ctx.reasons.push(internal_reason(&detail, hop));
}

impl Engine {
    /// Opens an approval for a held call, or uses the one the call came back with: it must be this
    /// exact call's (mandate, tool, resource and the digest of its canonical arguments), approved,
    /// unexpired and unused.
    pub(crate) async fn held(
        &self,
        call: &Call,
        ctx: &mut Ctx,
        held: &Held<'_>,
        chain: &[&MandateRecord],
        (shape, observed): (&CallShape<'_>, &Observed),
    ) -> Step {
        let Held { record, tool, resource, reasons: hold_reasons } = *held;
        let args_hash = call.arguments.sha256_hex();
        let now_ms = millis(self.clock.now());
        let Some(id) = &call.approval_id else {
            // A new hold: an approval bound to this exact call.
            let approval = ApprovalRecord {
                id: new_approval_id(),
                mandate_id: record.id.clone(),
                chain_id: record.chain_id.clone(),
                agent: record.agent.to_string(),
                tool: tool.to_string(),
                resource: resource.map(|r| r.as_str().to_owned()),
                arguments_hash: args_hash,
                status: "pending".to_owned(),
                created_ms: now_ms,
                expires_ms: now_ms + i64::from(self.settings.mandates.approval_ttl_secs) * 1000,
                decided_by: None,
                decided_ms: None,
                used_ms: None,
                detail: serde_json::json!({
                    "reasons": hold_reasons, "policies": ctx.policies, "signals": ctx.risk.signals, "risk_score": ctx.risk.score,
                    "risk": ctx.risk.to_json(),
                    "root": record.root, "category": record.intent.category, "purpose": record.intent.purpose,
                    "data_class": ctx.data_class, "action": ctx.action.map(Action::as_str), "depth": record.depth,
                    "chain_agents": record.chain_agents,
                    // What the approver is shown of the call, with the configured redactions applied.
                    "arguments": self.settings.arguments.redacted(call.arguments.value()),
                }),
            };
            let detail = serde_json::json!({"approval_id": approval.id, "reasons": hold_reasons, "expires_ms": approval.expires_ms});
            let mut event =
                NewEvent::new("approval.created", "system", now_ms, &detail).with_agent(record.agent.as_str());
            event.chain_id = Some(record.chain_id.clone());
            event.mandate_id = Some(record.id.clone());
            event.tool = Some(tool.to_string());
            event.resource = approval.resource.clone();
            // The same call held again for the same reasons while its approval waits gets that
            // approval, not a second one; and one mandate may only keep so many people busy.
            let limit = self.settings.mandates.max_pending_approvals;
            let opened = match self.decisions.open_approval(&approval, event, limit as usize).await {
                Ok(opened) => opened,
                Err(e) => {
                    internal(ctx, format!("recording the approval: {e}"), None);
                    return Step::Deny;
                }
            };
            let id = match opened {
                OpenedApproval::Created(_) => {
                    self.metrics.event("approval.created");
                    approval.id
                }
                OpenedApproval::Existing(id) => {
                    ctx.step("approval", "hold", || format!("the same call already waits for approval `{id}`"));
                    id
                }
                OpenedApproval::Full(pending) => {
                    ctx.reason(
                        "approval.too_many_pending",
                        format!("mandate `{}` already has {pending} approvals waiting for a human", record.id),
                        Some(record.depth),
                    );
                    ctx.step("approval", "fail", || format!("at most {limit} approvals may wait per mandate"));
                    return Step::Deny;
                }
            };
            for r in hold_reasons {
                ctx.reason("policy.hold", r.clone(), Some(record.depth));
            }
            ctx.approval_id = Some(id);
            return Step::Hold;
        };
        // A retry with an approval: it must be this exact call's, approved, unexpired and unused.
        ctx.approval_id = Some(id.clone());
        let approval = match self.decisions.approval(id).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                ctx.reason("approval.unknown", format!("no approval `{id}`"), None);
                ctx.step("approval", "fail", || "unknown");
                return Step::Deny;
            }
            Err(e) => {
                internal(ctx, format!("reading approval `{id}`: {e}"), None);
                return Step::Deny;
            }
        };
        let same_call = approval.mandate_id == record.id
            && approval.tool == tool.as_str()
            && approval.resource.as_deref() == resource.map(ResourceUri::as_str)
            && approval.arguments_hash == args_hash;
        if !same_call {
            ctx.reason("approval.mismatch", format!("approval `{id}` was given for another call"), Some(record.depth));
            ctx.step("approval", "fail", || "the approval is bound to another mandate, tool, resource or arguments");
            return Step::Deny;
        }
        let expired = now_ms > approval.expires_ms;
        match approval.status.as_str() {
            "denied" => {
                ctx.reason(
                    "approval.denied",
                    format!("approval `{id}` was denied by {}", approval.decided_by.unwrap_or_default()),
                    Some(record.depth),
                );
                Step::Deny
            }
            "used" => {
                ctx.reason("approval.used", format!("approval `{id}` was already used"), Some(record.depth));
                Step::Deny
            }
            _ if expired => {
                ctx.reason("approval.expired", format!("approval `{id}` expired"), Some(record.depth));
                Step::Deny
            }
            "pending" => {
                ctx.reason(
                    "approval.pending",
                    format!("approval `{id}` is still waiting for a human"),
                    Some(record.depth),
                );
                ctx.step("approval", "hold", || "pending");
                Step::Hold
            }
            "approved" => {
                let mut event = NewEvent::new(
                    "approval.used",
                    &format!("spiffe://{}/agent/{}", self.settings.trust_domain, record.agent),
                    now_ms,
                    &serde_json::json!({"approval_id": id}),
                )
                .with_agent(record.agent.as_str());
                event.chain_id = Some(record.chain_id.clone());
                event.mandate_id = Some(record.id.clone());
                event.tool = Some(tool.to_string());
                if self.budgets.consume(chain, shape.now).is_err() {
                    ctx.reason("budget.exhausted", "the mandate's budget is spent", Some(record.depth));
                    return Step::Deny;
                }
                match self.decisions.transition_approval(id, "approved", "used", None, now_ms, event).await {
                    Ok(Some(_)) => {
                        self.behaviour.record(shape, &ctx.risk, observed);
                        ctx.reason(
                            "approval.granted",
                            format!("approved by {}", approval.decided_by.unwrap_or_default()),
                            Some(record.depth),
                        );
                        ctx.step("approval", "pass", || "approved; used now, once");
                        Step::Allow
                    }
                    Ok(None) => {
                        self.budgets.refund(chain);
                        ctx.reason("approval.used", format!("approval `{id}` was already used"), Some(record.depth));
                        Step::Deny
                    }
                    Err(e) => {
                        self.budgets.refund(chain);
                        internal(ctx, format!("using approval `{id}`: {e}"), None);
                        Step::Deny
                    }
                }
            }
            other => {
                internal(ctx, format!("approval `{id}` has unknown status `{other}`"), None);
                Step::Deny
            }
        }
    }
}

fn new_approval_id() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use rand_core::RngCore;
    let mut b = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut b);
    format!("apr_{}", URL_SAFE_NO_PAD.encode(b))
}
