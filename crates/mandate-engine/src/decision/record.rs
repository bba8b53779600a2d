//! Recording a decision: one `decision` event in the ledger, durable before the decision is returned.
//! An allow that cannot be recorded is a deny, and its budget is given back.

use super::pipeline::Step;
use super::{Call, Ctx, Decision, Reason, Verdict};
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
        let verdict = match step {
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
                agent_id: None,
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
        // Where nodes share the database, an allow stands only once it is claimed there: the proof
        // used once and a call of every budget of the chain, across all of them, in the
        // transaction that records the decision. A claim that loses is recorded as the deny it
        // became.
        let hop = ctx.record.as_ref().map(|r| r.depth);
        let appended = if verdict == Verdict::Allow && self.store.shared() {
            let claim = mandate_store::Claim {
                replay: ctx
                    .replay_key
                    .clone()
                    .map(|k| (k, self.now_secs() + i64::from(self.settings.mandates.replay_window_secs()))),
                mandates: ctx.chain.iter().map(|m| m.id.clone()).collect(),
            };
            let (reasons, budgets) = (ctx.reasons.clone(), budgets_of(&ctx.chain));
            let refuse: mandate_store::Refuse = Box::new(move |outcome, event| {
                let mut reasons = reasons.clone();
                lost_claim(&mut reasons, outcome, &budgets, hop);
                denied(event.clone(), &reasons)
            });
            self.store.append_claimed(event, claim, refuse).await
        } else {
            self.store.append_event(event).await.map(|seq| (seq, mandate_store::ClaimOutcome::Granted))
        };
        let (verdict, ledger_seq) = match appended {
            Ok((seq, outcome)) => {
                let verdict = if outcome == mandate_store::ClaimOutcome::Granted {
                    verdict
                } else {
                    // The same reasons the ledger's event now carries.
                    self.budgets.refund(&ctx.chain.iter().collect::<Vec<&MandateRecord>>());
                    let code = lost_claim(&mut ctx.reasons, &outcome, &budgets_of(&ctx.chain), hop);
                    ctx.step("claim", "fail", || code);
                    Verdict::Deny
                };
                if let Some(r) = &record {
                    self.drift_alert(r, call, &ctx, seq).await;
                }
                (verdict, Some(seq))
            }
            Err(e) => {
                // Not recorded means not allowed: give the budget back and deny. A claim made with
                // it was rolled back with it.
                if verdict == Verdict::Allow {
                    self.budgets.refund(&ctx.chain.iter().collect::<Vec<&MandateRecord>>());
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
            agent_id: record.as_ref().map(|r| r.agent.to_string()),
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

/// The chain's mandates with their budgets, for a lost claim's reason (owned: the refusal is
/// built inside the ledger's batch).
fn budgets_of(chain: &[MandateRecord]) -> Vec<(String, u64)> {
    chain.iter().map(|m| (m.id.clone(), m.max_calls)).collect()
}

/// `reasons`, an allow's, once its claim lost with `outcome`: the allow's own reason replaced by
/// why. `budgets` are the chain's mandates with their budgets. Returns the reason's code.
fn lost_claim(
    reasons: &mut Vec<Reason>,
    outcome: &mandate_store::ClaimOutcome,
    budgets: &[(String, u64)],
    hop: Option<u8>,
) -> &'static str {
    use mandate_store::ClaimOutcome;
    let (code, message) = match outcome {
        ClaimOutcome::Granted => return "decision.allowed",
        ClaimOutcome::Replayed => ("proof.replayed", "the proof was already used, on this node or another".to_owned()),
        ClaimOutcome::Exhausted(id) => {
            let max = budgets.iter().find(|(m, _)| m == id).map_or(0, |(_, max)| *max);
            ("budget.exhausted", format!("mandate `{id}` has spent its {max} calls (counted across every node)"))
        }
        ClaimOutcome::Unknown(id) => (
            "internal.store_unavailable",
            format!("mandate `{id}` has no budget in the shared database, so the call is a deny"),
        ),
    };
    reasons.retain(|r| r.code != "decision.allowed");
    reasons.push(Reason { code: code.to_owned(), message, hop });
    code
}

/// `event`, an allow whose claim lost, as the deny it became, with `reasons`.
fn denied(mut event: NewEvent, reasons: &[Reason]) -> NewEvent {
    if let Ok(serde_json::Value::Object(mut detail)) = serde_json::from_str::<serde_json::Value>(&event.detail) {
        detail.insert("reasons".into(), serde_json::json!(reasons));
        event.detail = serde_json::Value::Object(detail).to_string();
    }
    event.decision = Some(Verdict::Deny.as_str().to_owned());
    event
}
