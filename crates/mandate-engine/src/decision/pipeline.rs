//! The steps of a decision after the presentation verified: the call parsed and classified, every
//! agent's boundary and environment, the scope of every hop, the budget, behaviour, and organisation
//! policy; then the allow (budget consumed) or the hold.

use super::{Call, Ctx, Presented};
use crate::behaviour::{CallShape, Observed};
use crate::catalogue::Classified;
use crate::engine::Engine;
use crate::mandates::verification::internal_reason;
use crate::policy::{agent_facts, human_facts, unknown_human_facts};
use mandate_core::mandate::{CallTarget, MandateRecord};
use mandate_core::pattern::{ResourceUri, ToolName};
use mandate_policy::{CallRequest, Outcome, ToolFacts};

/// The outcome before it is recorded.
pub(crate) enum Step {
    Allow,
    Deny,
    Hold,
}

/// Why a scope does not allow a call, most specific dimension first.
fn scope_miss(record: &MandateRecord, call: &CallTarget<'_>) -> Option<(&'static str, String)> {
    let entries = &record.scope.0;
    let tool_entries: Vec<_> = entries.iter().filter(|e| e.tools.iter().any(|t| t.matches(call.tool))).collect();
    if tool_entries.is_empty() {
        return Some(("scope.tool_not_in_mandate", format!("tool `{}` is not in mandate `{}`", call.tool, record.id)));
    }
    let class_entries: Vec<_> = tool_entries.iter().filter(|e| e.data_classes.contains(call.data_class)).collect();
    if class_entries.is_empty() {
        return Some((
            "scope.data_class_not_in_mandate",
            format!("data class `{}` of tool `{}` is not in mandate `{}`", call.data_class, call.tool, record.id),
        ));
    }
    let action_entries: Vec<_> = class_entries.iter().filter(|e| e.actions.contains(&call.action)).collect();
    if action_entries.is_empty() {
        return Some((
            "scope.action_not_in_mandate",
            format!("action `{}` is not in mandate `{}`", call.action.as_str(), record.id),
        ));
    }
    if record.scope.allows(call) {
        return None;
    }
    let what =
        call.resource.map(|r| format!("resource `{r}`")).unwrap_or_else(|| "a call without a resource".to_owned());
    Some(("scope.resource_not_in_mandate", format!("{what} is not in mandate `{}`", record.id)))
}

impl Engine {
    pub(crate) async fn evaluate(&self, presented: &Presented<'_>, call: &Call, ctx: &mut Ctx) -> Step {
        let now = self.now_secs();

        // 1-4. Token, proof bound to the caller's request, revocation, the chain's agents, replay.
        let verified = match self.verify_presented(presented).await {
            Ok(v) => v,
            Err(refusal) => {
                ctx.record = refusal.record;
                let detail = refusal.reasons.iter().map(|r| r.message.clone()).collect::<Vec<_>>().join("; ");
                ctx.reasons.extend(refusal.reasons);
                ctx.step(refusal.step, "fail", || detail);
                return Step::Deny;
            }
        };
        let record = verified.stored.record.clone();
        ctx.record = Some(record.clone());
        ctx.replay_key = verified.replay_key.clone();
        ctx.step("token", "pass", || {
            format!(
                "mandate `{}` (hop {}) of chain `{}`, signed by key `{}`",
                record.id, record.depth, record.chain_id, verified.stored.kid
            )
        });
        ctx.step("proof", "pass", || match &verified.proof {
            Some(proof) => format!(
                "signed by the key of `cnf.jkt` `{}` ({}), jti `{}`",
                record.key_thumbprint,
                record.binding.as_str(),
                proof.jti()
            ),
            None => "none: an unbound (bearer) mandate, accepted where the organisation allows it".to_owned(),
        });
        ctx.step("revocation", "pass", || {
            format!("none of {} mandate(s) of the lineage is revoked", record.lineage.len() + 1)
        });
        let agents = verified.agents;
        let chain = verified.chain;
        if let Some(refusal) = &call.refusal {
            ctx.reason(refusal.code, refusal.message.clone(), Some(record.depth));
            ctx.step("scope", "fail", || refusal.message.clone());
            return Step::Deny;
        }

        // The call itself, normalised.
        let tool = match ToolName::parse(&call.tool) {
            Ok(t) => t,
            Err(e) => {
                ctx.reason("request.invalid_tool", e.to_string(), None);
                ctx.step("scope", "fail", || e.to_string());
                return Step::Deny;
            }
        };
        let resource = match call.resource.as_deref().map(ResourceUri::parse).transpose() {
            Ok(r) => r,
            Err(e) => {
                ctx.reason("request.invalid_resource", e.to_string(), None);
                ctx.step("scope", "fail", || e.to_string());
                return Step::Deny;
            }
        };
        let class: Classified = self.catalogue.classify(&tool);
        ctx.data_class = Some(class.data_class.to_string());
        ctx.action = Some(class.action);
        let target = CallTarget {
            tool: &tool,
            resource: resource.as_ref(),
            data_class: &class.data_class,
            action: class.action,
        };

        // 5. Every agent of the chain allowed in the tool's environment, and the call still inside
        //    its current boundary (a boundary may have narrowed since the grant).
        for (i, a) in agents.iter().enumerate() {
            let hop = Some(u8::try_from(i + 1).unwrap_or(u8::MAX));
            if !a.boundary.environments.contains(&class.server_environment) {
                ctx.reason(
                    "chain.environment_not_allowed",
                    format!(
                        "agent `{}` ({}) may not reach a {} tool",
                        a.id,
                        a.environment.as_str(),
                        class.server_environment.as_str()
                    ),
                    hop,
                );
            }
            if !a.boundary.tools.iter().any(|t| t.matches(&tool))
                || !a.boundary.data_classes.contains(&class.data_class)
            {
                ctx.reason(
                    "chain.outside_boundary",
                    format!("tool `{tool}` ({}) is outside agent `{}`'s boundary", class.data_class, a.id),
                    hop,
                );
            }
        }
        // No mandate of the chain outlives its root: the chain's state lives until the latest expiry.
        let chain_expires_at = chain.iter().map(|m| m.expires_at).max().unwrap_or(record.expires_at);
        if !ctx.reasons.is_empty() {
            self.behaviour.denied(&record.chain_id, tool.as_str(), now, chain_expires_at);
            let detail = ctx.reasons.iter().map(|r| r.message.clone()).collect::<Vec<_>>().join("; ");
            ctx.step("chain", "fail", || detail);
            return Step::Deny;
        }
        ctx.step("chain", "pass", || {
            format!("{} agent(s), all active and allowed in {}", agents.len(), class.server_environment.as_str())
        });

        // 6. Scope: within this mandate and within the stored scope of every ancestor.
        for hop in &chain {
            if let Some((code, message)) = scope_miss(hop, &target) {
                ctx.reason(code, message, Some(hop.depth));
            }
        }
        if !ctx.reasons.is_empty() {
            self.behaviour.denied(&record.chain_id, tool.as_str(), now, chain_expires_at);
            let detail = ctx.reasons.iter().map(|r| r.message.clone()).collect::<Vec<_>>().join("; ");
            ctx.step("scope", "fail", || detail);
            return Step::Deny;
        }
        ctx.step("scope", "pass", || {
            format!("`{tool}` ({}, {}) is within all {} hop(s)", class.data_class, class.action.as_str(), chain.len())
        });

        // 7. Budget, per mandate and per chain (each ancestor's budget covers its descendants' calls).
        let refs: Vec<&MandateRecord> = chain.iter().collect();
        if let Err(e) = self.budgets.check(&refs) {
            ctx.reason(
                "budget.exhausted",
                format!("mandate `{}` has spent its {} calls", e.mandate_id, e.max_calls),
                Some(e.hop),
            );
            ctx.step("budget", "fail", || format!("`{}` is spent", e.mandate_id));
            return Step::Deny;
        }
        ctx.step("budget", "pass", || format!("{} of {} calls used", self.budgets.used(&record.id), record.max_calls));

        // 8. Organisation policy, with the behaviour so far.
        let Some(agent) = agents.last() else {
            ctx.reasons.push(internal_reason("the chain has no agent", None));
            return Step::Deny;
        };
        let shape = CallShape {
            chain_id: &record.chain_id,
            agent: agent.id.as_str(),
            parent_agent: agents.len().checked_sub(2).and_then(|i| agents.get(i)).map(|a| a.id.as_str()),
            tool: tool.as_str(),
            data_class: class.data_class.as_str(),
            action: class.action,
            classified: class.classified,
            depth: record.depth,
            // Drift is measured from the intent of the human's grant, whatever a delegation says.
            category: refs.first().map_or(record.intent.category.as_str(), |root| root.intent.category.as_str()),
            resource: resource.as_ref().map(ResourceUri::as_str),
            arguments: call.arguments.value(),
            now,
            chain_expires_at,
        };
        let (risk, observed) = self.behaviour.assess(&shape);
        ctx.risk = risk;
        if ctx.explain {
            let r = &ctx.risk;
            let mode = if r.enforced { "enforce" } else { "learn: policy sees 0" };
            let detail = if r.details.is_empty() {
                format!("score 0 for `{}` ({mode})", r.category)
            } else {
                let signals: Vec<String> =
                    r.details.iter().map(|d| format!("{} (+{}): {}", d.name, d.weight, d.why)).collect();
                format!("score {} for `{}` ({mode}): {}", r.score, r.category, signals.join("; "))
            };
            ctx.step("behaviour", "pass", || detail);
        }
        let root = match self.cached_human(&record.root.human()).await {
            Ok(Some(h)) if !h.active => {
                ctx.reason(
                    "chain.root_inactive",
                    format!("`{}` who granted this chain was deactivated", record.root),
                    Some(1),
                );
                ctx.step("chain", "fail", || "the root human was deactivated");
                return Step::Deny;
            }
            Ok(Some(h)) => human_facts(&h),
            Ok(None) => unknown_human_facts(&record.root.human()),
            Err(e) => {
                ctx.reasons.push(internal_reason(&format!("reading human `{}`: {e}", record.root), Some(1)));
                return Step::Deny;
            }
        };
        let t = self.clock.now();
        let (risk_score, signals) = ctx.risk.for_policy();
        let policy_request = CallRequest {
            agent: agent_facts(agent),
            chain: agents[..agents.len() - 1].iter().map(agent_facts).collect(),
            root,
            tool: ToolFacts {
                name: tool.to_string(),
                server: tool.server().to_owned(),
                server_environment: class.server_environment.as_str().to_owned(),
                data_class: class.data_class.to_string(),
                risk: class.action.as_str().to_owned(),
            },
            category: record.intent.category.clone(),
            purpose: record.intent.purpose.clone(),
            depth: u32::from(record.depth.saturating_sub(1)),
            action: class.action.as_str().to_owned(),
            resource_uri: resource.as_ref().map(|r| r.as_str().to_owned()),
            hour: t.hour(),
            weekday: t.weekday().number_from_monday(),
            risk_score,
            signals,
            binding: record.binding.as_str().to_owned(),
        };
        let Some((version, policies)) = self.policy.current() else {
            ctx.reason("policy.not_loaded", "no policy set is active", None);
            ctx.step("policy", "fail", || "no policy set is active");
            return Step::Deny;
        };
        ctx.policy_version = Some(format!("{version}:{}", policies.version()));
        let decision = policies.decide_call(&policy_request);
        ctx.policies = decision.matched.clone();
        for e in &decision.errors {
            ctx.step("policy", "error", || e.clone());
        }
        match decision.outcome {
            Outcome::Deny => {
                self.behaviour.denied(&record.chain_id, tool.as_str(), now, chain_expires_at);
                if decision.matched.is_empty() && !decision.errors.is_empty() {
                    ctx.reason(
                        "policy.error",
                        format!("policy could not be evaluated: {}", decision.errors.join("; ")),
                        Some(record.depth),
                    );
                } else if decision.matched.is_empty() {
                    ctx.reason("policy.no_permit", "no policy permits this call", Some(record.depth));
                }
                for id in &decision.matched {
                    ctx.reason("policy.forbid", format!("forbidden by policy `{id}`"), Some(record.depth));
                }
                ctx.step("policy", "fail", || {
                    format!("policy set v{version} denies (matched: {})", decision.matched.join(", "))
                });
                Step::Deny
            }
            Outcome::Allow => {
                ctx.step("policy", "pass", || {
                    format!("policy set v{version} permits (matched: {})", decision.matched.join(", "))
                });
                let step = self.allow(ctx, &refs, &shape, &observed);
                ctx.chain = chain;
                step
            }
            Outcome::Hold => {
                ctx.step("policy", "hold", || format!("held for approval: {}", decision.hold_reasons.join("; ")));
                let held = super::hold::Held {
                    record: &record,
                    tool: &tool,
                    resource: resource.as_ref(),
                    reasons: &decision.hold_reasons,
                };
                let step = self.held(call, ctx, &held, &refs, (&shape, &observed)).await;
                ctx.chain = chain;
                step
            }
        }
    }

    fn allow(&self, ctx: &mut Ctx, chain: &[&MandateRecord], shape: &CallShape<'_>, observed: &Observed) -> Step {
        // A revocation acknowledged while this decision was being made wins.
        if let Some(revoked) = chain.last().and_then(|m| self.revocations.revoked_in(m)) {
            ctx.reason("mandate.revoked", format!("mandate `{revoked}` was revoked during the decision"), None);
            ctx.step("revocation", "fail", || "revoked while deciding");
            return Step::Deny;
        }
        match self.budgets.consume(chain, shape.now) {
            Ok(()) => {
                self.behaviour.record(shape, &ctx.risk, observed);
                Step::Allow
            }
            Err(e) => {
                ctx.reason(
                    "budget.exhausted",
                    format!("mandate `{}` has spent its {} calls", e.mandate_id, e.max_calls),
                    Some(e.hop),
                );
                ctx.step("budget", "fail", || "spent by a concurrent call");
                Step::Deny
            }
        }
    }
}

/// Whether some entry of `record`'s scope names `tool` with its data class and action, whatever the
/// resource: what a tool list may show, since the resource of a call is known only from its
/// arguments.
pub(crate) fn scope_shows(record: &MandateRecord, tool: &ToolName, class: &Classified) -> bool {
    record.scope.0.iter().any(|e| {
        e.tools.iter().any(|t| t.matches(tool))
            && e.data_classes.contains(&class.data_class)
            && e.actions.contains(&class.action)
    })
}
