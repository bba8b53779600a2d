//! Recording a decision: one `decision` event in the ledger, durable before the decision is returned.
//! An allow that cannot be recorded is a deny, and its budget is given back.

use super::pipeline::Step;
use super::{Call, Ctx, Decision, Verdict};
use crate::clock::millis;
use crate::engine::Engine;
use mandate_core::event::NewEvent;
use mandate_core::mandate::{Action, MandateRecord};

impl Engine {
    pub(crate) async fn record_decision(
        &self,
        call: &Call,
        mut ctx: Ctx,
        step: Step,
        source: Option<std::net::IpAddr>,
    ) -> Decision {
        let mut verdict = match step {
            Step::Allow => Verdict::Allow,
            Step::Deny => Verdict::Deny,
            Step::Hold => Verdict::ApprovalRequired,
        };
        if verdict == Verdict::Allow && ctx.reasons.is_empty() {
            let hop = ctx.record.as_ref().map(|r| r.depth);
            ctx.reason(
                "decision.allowed",
                "within the mandate, every ancestor, the chain's boundaries and policy",
                hop,
            );
        }
        let record = ctx.record.clone();
        if record.is_none() {
            // The token named no mandate that verified: nobody to hold to it, so it is counted per
            // source and summarised, not recorded one fsync each (see `crate::refusals`).
            let code = ctx.reasons.first().map_or("token.malformed", |r| r.code.as_str());
            self.refusals.count(source, code, millis(self.clock.now()));
            ctx.step("ledger", "skipped", || "a refusal that names no mandate: counted in the next refusal summary");
            tracing::info!(decision = "deny", reasons = ?ctx.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(), "decision without a mandate");
            let explain = ctx.explain.then_some(ctx.steps);
            return Decision {
                verdict: Verdict::Deny,
                reasons: ctx.reasons,
                policies: ctx.policies,
                risk: ctx.risk,
                ledger_seq: None,
                approval_id: None,
                mandate_id: None,
                chain_id: None,
                explain,
            };
        }
        let actor = match &record {
            Some(r) => self.settings.trust_domain.agent_spiffe_id(&r.agent),
            None => "unknown".to_owned(),
        };
        let canonical = call.arguments.canonical();
        let detail = serde_json::json!({
            "reasons": ctx.reasons,
            "policies": ctx.policies,
            "risk": ctx.risk.to_json(),
            "data_class": ctx.data_class,
            "action": ctx.action.map(Action::as_str),
            "depth": record.as_ref().map(|r| r.depth),
            "root": record.as_ref().map(|r| r.root.to_string()),
            "approval_id": ctx.approval_id,
            "policy_version": ctx.policy_version,
            "replay": ctx.replay_key.as_slice(),
            "arguments": {
                "sha256": call.arguments.sha256_hex(),
                "bytes": canonical.len(),
                "value": self.settings.arguments.kept(call.arguments.value()),
            },
        });
        let mut event = NewEvent::new("decision", &actor, millis(self.clock.now()), &detail);
        if let Some(r) = &record {
            event.agent = Some(r.agent.to_string());
            event.chain_id = Some(r.chain_id.clone());
            event.mandate_id = Some(r.id.clone());
        }
        event.tool = Some(call.tool.chars().take(200).collect());
        event.resource = call.resource.as_ref().map(|r| r.chars().take(1024).collect());
        event.decision = Some(verdict.as_str().to_owned());
        // Where nodes share the database, an allow is first claimed there: the proof used once and
        // a call of every budget of the chain, across all of them. A claim that loses is a deny.
        let claim = if verdict == Verdict::Allow && self.store.shared() {
            let claim = mandate_store::Claim {
                replay: ctx
                    .replay_key
                    .clone()
                    .map(|k| (k, self.now_secs() + i64::from(self.settings.mandates.replay_window_secs()))),
                mandates: ctx.chain.iter().map(|m| m.id.clone()).collect(),
            };
            let refused = match self.store.claim(&claim).await {
                Ok(mandate_store::ClaimOutcome::Granted) => None,
                Ok(mandate_store::ClaimOutcome::Replayed) => {
                    Some(("proof.replayed", "the proof was already used, on this node or another".to_owned()))
                }
                Ok(mandate_store::ClaimOutcome::Exhausted(id)) => {
                    let max = ctx.chain.iter().find(|m| m.id == id).map_or(0, |m| m.max_calls);
                    Some((
                        "budget.exhausted",
                        format!("mandate `{id}` has spent its {max} calls (counted across every node)"),
                    ))
                }
                Err(e) => {
                    tracing::error!(error = %e, "a call could not be claimed in the shared database; denying");
                    Some((
                        "internal.store_unavailable",
                        "the call's budget and proof could not be claimed, so it is a deny".to_owned(),
                    ))
                }
            };
            match refused {
                None => Some(claim),
                Some((code, message)) => {
                    self.budgets.refund(&ctx.chain.iter().collect::<Vec<&MandateRecord>>());
                    ctx.reasons.retain(|r| r.code != "decision.allowed");
                    let hop = ctx.record.as_ref().map(|r| r.depth);
                    ctx.reason(code, message, hop);
                    ctx.step("claim", "fail", || code);
                    verdict = Verdict::Deny;
                    event = denied(event, &ctx);
                    None
                }
            }
        } else {
            None
        };
        let (verdict, ledger_seq) = match self.store.append_event(event).await {
            Ok(seq) => {
                if let Some(r) = &record {
                    self.drift_alert(r, call, &ctx, seq).await;
                }
                (verdict, Some(seq))
            }
            Err(e) => {
                // Not recorded means not allowed: give the budget back and deny.
                if verdict == Verdict::Allow {
                    self.budgets.refund(&ctx.chain.iter().collect::<Vec<&MandateRecord>>());
                    if let Some(claim) = &claim {
                        if let Err(e) = self.store.release(claim).await {
                            tracing::warn!(error = %e, "the claimed call could not be given back; its budget stays spent");
                        }
                    }
                }
                tracing::error!(error = %e, "a decision could not be recorded; denying");
                ctx.reasons.retain(|r| r.code != "decision.allowed");
                ctx.reason("internal.ledger_unavailable", "the decision could not be recorded, so it is a deny", None);
                (Verdict::Deny, None)
            }
        };
        tracing::info!(
            decision = verdict.as_str(),
            agent = record.as_ref().map(|r| r.agent.as_str()).unwrap_or("unknown"),
            mandate_id = record.as_ref().map(|r| r.id.as_str()).unwrap_or(""),
            tool = %call.tool.chars().take(200).collect::<String>().escape_debug(),
            policy_ids = ?ctx.policies,
            reasons = ?ctx.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
            "decision"
        );
        ctx.step("ledger", if ledger_seq.is_some() { "pass" } else { "fail" }, || format!("event {ledger_seq:?}"));
        let explain = ctx.explain.then_some(ctx.steps);
        Decision {
            verdict,
            reasons: ctx.reasons,
            policies: ctx.policies,
            risk: ctx.risk,
            ledger_seq,
            approval_id: ctx.approval_id,
            mandate_id: record.as_ref().map(|r| r.id.clone()),
            chain_id: record.as_ref().map(|r| r.chain_id.clone()),
            explain,
        }
    }
}

impl Engine {
    /// A drift alert for the signals of this decision not yet alerted on in its chain: a ledger
    /// event linked to the decision, right after it, and a metric per signal. Alerts come once per
    /// chain and signal, so their append is rare.
    async fn drift_alert(&self, record: &MandateRecord, call: &Call, ctx: &Ctx, decision_seq: i64) {
        if ctx.risk.signals.is_empty() {
            return;
        }
        let fresh = self.behaviour.alerts(&record.chain_id, &ctx.risk);
        if fresh.is_empty() {
            return;
        }
        let label = match self.behaviour.category(&ctx.risk.category) {
            Some(c) => c.name.clone(),
            None => "unknown".to_owned(),
        };
        for signal in &fresh {
            self.metrics.drift_alert(&label, signal);
        }
        let detail = serde_json::json!({
            "decision_seq": decision_seq,
            "category": ctx.risk.category,
            "mode": if ctx.risk.enforced { "enforce" } else { "learn" },
            "score": ctx.risk.score,
            "signals": fresh,
            "details": ctx.risk.details.iter().filter(|d| fresh.contains(&d.name)).collect::<Vec<_>>(),
        });
        let mut event = NewEvent::new("drift.alert", "system", millis(self.clock.now()), &detail);
        event.agent = Some(record.agent.to_string());
        event.chain_id = Some(record.chain_id.clone());
        event.mandate_id = Some(record.id.clone());
        event.tool = Some(call.tool.chars().take(200).collect());
        event.resource = call.resource.as_ref().map(|r| r.chars().take(1024).collect());
        match self.store.append_event(event).await {
            Ok(_) => self.metrics.event("drift.alert"),
            Err(e) => tracing::error!(error = %e, chain_id = %record.chain_id, "a drift alert could not be recorded"),
        }
        tracing::warn!(chain_id = %record.chain_id, category = %ctx.risk.category, score = ctx.risk.score, signals = ?fresh, "drift alert");
    }
}

/// `event`, an allow whose claim lost, as the deny it became: its reasons are the context's now.
fn denied(mut event: NewEvent, ctx: &Ctx) -> NewEvent {
    if let Ok(serde_json::Value::Object(mut detail)) = serde_json::from_str::<serde_json::Value>(&event.detail) {
        detail.insert("reasons".into(), serde_json::json!(ctx.reasons));
        event.detail = serde_json::Value::Object(detail).to_string();
    }
    event.decision = Some(Verdict::Deny.as_str().to_owned());
    event
}
