//! One tool-call decision, `POST /v1/authorize`: token, proof, revocation, chain, scope, budget,
//! policy, then the outcome with every reason, recorded in the ledger before it is returned.
//!
//! The steps run in the order of the contract and stop at the first failing step, after collecting
//! every reason of that step (all hops, all dimensions), so a refusal explains itself. Nothing here
//! trusts the token for the chain: the token names a mandate, and the mandate's stored record, its
//! stored ancestors and the registry's agents are what is checked. Any failure inside the decision
//! is a deny with a reason (fail closed). An `allow` is returned only once its decision event is
//! durable; if it cannot be recorded, the call is denied and its budget given back.

use crate::behaviour::{CallShape, Risk};
use crate::catalogue::Classified;
use crate::clock::millis;
use crate::engine::Engine;
use crate::policy::{agent_facts, human_facts, unknown_human_facts};
use mandate_core::agent::AgentState;
use mandate_core::event::NewEvent;
use mandate_core::jose::{verify_proof, Htu, ProofExpectations};
use mandate_core::mandate::{Action, CallTarget, MandateRecord};
use mandate_core::pattern::{ResourceUri, ToolName};
use mandate_policy::{CallRequest, Outcome, ToolFacts};
use mandate_store::{ApprovalRecord, OpenedApproval};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// `POST /v1/authorize`: decide one tool call.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    /// The mandate.
    pub token: String,
    /// A DPoP proof (RFC 9449) signed by the agent's key: `htm` `POST`, `htu` the authorize endpoint,
    /// `ath` the token's hash, a fresh `iat` and an unused `jti`.
    #[serde(default)]
    pub proof: String,
    /// The tool, `server/tool`.
    pub tool: String,
    /// The call's arguments (hashed into the ledger, not stored).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    /// The resource the call acts on, if any.
    pub resource: Option<String>,
    /// The approval of a call that was held, when retrying it.
    pub approval_id: Option<String>,
}

/// One reason of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    /// A stable dotted code (the README lists them all).
    pub code: String,
    /// What it means here, for people.
    pub message: String,
    /// The hop it comes from: 1 for the human's grant, one more per delegation.
    pub hop: Option<u8>,
}

/// The behavioural risk of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RiskView {
    /// The sum of the raised signals' weights.
    pub score: u32,
    /// The raised signals.
    pub signals: Vec<String>,
}

/// One step of the evaluation, for `explain`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExplainStep {
    /// `token`, `proof`, `revocation`, `chain`, `scope`, `budget`, `policy`, `approval`, `ledger`.
    pub step: String,
    /// `pass`, `fail`, `hold` or `skipped`.
    pub outcome: String,
    /// What was checked and found.
    pub detail: String,
}

/// The decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecisionResponse {
    /// `allow`, `deny` or `approval_required`.
    pub decision: String,
    /// Every reason, each naming its hop.
    pub reasons: Vec<Reason>,
    /// The ids of the policies that determined the outcome.
    pub policies: Vec<String>,
    /// The behavioural risk.
    pub risk: RiskView,
    /// The sequence number of the decision's ledger event.
    pub ledger_seq: Option<i64>,
    /// The approval to retry with, when the call is held.
    pub approval_id: Option<String>,
    /// The mandate the call was made under, when the token named a known one.
    pub mandate_id: Option<String>,
    /// Its chain.
    pub chain_id: Option<String>,
    /// The whole evaluation, when `?explain=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Vec<ExplainStep>>,
}

struct Ctx {
    reasons: Vec<Reason>,
    /// Whether the caller asked for the evaluation (`explain`); the steps are written only then.
    explain: bool,
    steps: Vec<ExplainStep>,
    policies: Vec<String>,
    risk: Risk,
    approval_id: Option<String>,
    record: Option<MandateRecord>,
    data_class: Option<String>,
    action: Option<Action>,
    policy_version: Option<String>,
}

impl Ctx {
    /// Writes down a step of the evaluation, when it was asked for: `detail` is only formatted then.
    fn step<S: Into<String>>(&mut self, step: &str, outcome: &str, detail: impl FnOnce() -> S) {
        if self.explain {
            self.steps.push(ExplainStep { step: step.into(), outcome: outcome.into(), detail: detail().into() });
        }
    }
    fn reason(&mut self, code: &str, message: impl Into<String>, hop: Option<u8>) {
        self.reasons.push(Reason { code: code.into(), message: message.into(), hop });
    }
}

/// The outcome before it is recorded.
enum Verdict {
    Allow,
    Deny,
    Hold,
}

/// Canonical JSON (object members sorted at every level), so that equal arguments hash equally
/// whatever order the client wrote them in.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String((*k).clone()).to_string());
                    out.push(':');
                    if let Some(inner) = map.get(*k) {
                        write(inner, out);
                    }
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
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
    /// Decides one tool call. Never fails: every problem is a deny with a reason.
    pub async fn authorize(&self, request: &AuthorizeRequest, explain: bool) -> DecisionResponse {
        let started = std::time::Instant::now();
        let mut ctx = Ctx {
            reasons: Vec::new(),
            explain,
            steps: Vec::new(),
            policies: Vec::new(),
            risk: Risk::default(),
            approval_id: None,
            record: None,
            data_class: None,
            action: None,
            policy_version: None,
        };
        let verdict = self.evaluate(request, &mut ctx).await;
        let response = self.record_decision(request, ctx, verdict, explain).await;
        self.metrics.decision(&response.decision, started.elapsed().as_secs_f64());
        response
    }

    async fn evaluate(&self, request: &AuthorizeRequest, ctx: &mut Ctx) -> Verdict {
        let now = self.now_secs();
        let m = &self.settings.mandates;

        // 1. The token: signature with a published key, EdDSA only, typ, time, iss, aud, the record.
        let stored = match self.verify_token(&request.token).await {
            Ok(s) => s,
            Err((code, message)) => {
                ctx.reason(&code, message.clone(), None);
                ctx.step("token", "fail", || message);
                return Verdict::Deny;
            }
        };
        let record = stored.record.clone();
        ctx.step("token", "pass", || {
            format!(
                "mandate `{}` (hop {}) of chain `{}`, signed by key `{}`",
                record.id, record.depth, record.chain_id, stored.kid
            )
        });
        ctx.record = Some(record.clone());

        // 2. Proof of possession (RFC 9449 section 4.3) by the key the mandate is bound to. The
        //    agent's registered key, when in memory, spares decompressing the proof's key again.
        let known_key = self.remembered_agent_key(&record.agent);
        let endpoint = m.authorize_endpoint();
        let proof = Htu::parse(&endpoint).map_err(|e| (e.code().to_owned(), e.to_string())).and_then(|htu| {
            verify_proof(
                &request.proof,
                &ProofExpectations {
                    htm: "POST",
                    htu: &htu,
                    access_token: Some(&request.token),
                    expected_jkt: &record.key_thumbprint,
                    now,
                    max_age_secs: m.proof_max_age_secs,
                    skew_secs: m.clock_skew_secs,
                    known_key: known_key.as_ref(),
                },
            )
            .map_err(|e| (e.code().to_owned(), e.to_string()))
        });
        let proof = match proof {
            Ok(p) => p,
            Err((code, message)) => {
                ctx.reason(&code, message.clone(), Some(record.depth));
                ctx.step("proof", "fail", || message);
                return Verdict::Deny;
            }
        };
        ctx.step("proof", "pass", || {
            format!("signed by the key of `cnf.jkt` `{}`, jti `{}`", record.key_thumbprint, proof.jti())
        });

        // 3. Revocation of this mandate or any ancestor, from memory, and from the store's record.
        let revoked =
            self.revocations.revoked_in(&record).or_else(|| stored.revocation.as_ref().map(|_| record.id.clone()));
        if let Some(revoked) = revoked {
            let hop = if revoked == record.id {
                record.depth
            } else {
                (record.lineage.iter().position(|id| *id == revoked).unwrap_or(0) + 1) as u8
            };
            ctx.reason("mandate.revoked", format!("mandate `{revoked}` was revoked"), Some(hop));
            ctx.step("revocation", "fail", || format!("`{revoked}` is revoked"));
            return Verdict::Deny;
        }
        ctx.step("revocation", "pass", || {
            format!("none of {} mandate(s) of the lineage is revoked", record.lineage.len() + 1)
        });

        // The call itself, normalised.
        let tool = match ToolName::parse(&request.tool) {
            Ok(t) => t,
            Err(e) => {
                ctx.reason("request.invalid_tool", e.to_string(), None);
                ctx.step("scope", "fail", || e.to_string());
                return Verdict::Deny;
            }
        };
        let resource = match request.resource.as_deref().map(ResourceUri::parse).transpose() {
            Ok(r) => r,
            Err(e) => {
                ctx.reason("request.invalid_resource", e.to_string(), None);
                ctx.step("scope", "fail", || e.to_string());
                return Verdict::Deny;
            }
        };
        let class: Classified = self.catalogue.classify(&tool);
        ctx.data_class = Some(class.data_class.to_string());
        ctx.action = Some(class.action);
        let call = CallTarget {
            tool: &tool,
            resource: resource.as_ref(),
            data_class: &class.data_class,
            action: class.action,
        };

        // 4. Every agent of the chain: registered, active, allowed in the tool's environment, and the
        //    call still inside its current boundary (a boundary may have narrowed since the grant).
        let mut agents = Vec::with_capacity(record.chain_agents.len());
        for (i, id) in record.chain_agents.iter().enumerate() {
            let hop = (i + 1) as u8;
            match self.cached_agent(id).await {
                Ok(Some(a)) => {
                    if a.state != AgentState::Active {
                        ctx.reason(
                            "chain.agent_not_active",
                            format!("agent `{id}` is {}", a.state.as_str()),
                            Some(hop),
                        );
                    }
                    if i + 1 == record.chain_agents.len() && a.public_key_jwk.thumbprint() != record.key_thumbprint {
                        ctx.reason(
                            "chain.key_replaced",
                            format!("agent `{id}`'s key was replaced after this mandate was issued"),
                            Some(hop),
                        );
                    }
                    if !a.boundary.environments.contains(&class.server_environment) {
                        ctx.reason(
                            "chain.environment_not_allowed",
                            format!(
                                "agent `{id}` ({}) may not reach a {} tool",
                                a.environment.as_str(),
                                class.server_environment.as_str()
                            ),
                            Some(hop),
                        );
                    }
                    if !a.boundary.tools.iter().any(|t| t.matches(&tool))
                        || !a.boundary.data_classes.contains(&class.data_class)
                    {
                        ctx.reason(
                            "chain.outside_boundary",
                            format!("tool `{tool}` ({}) is outside agent `{id}`'s boundary", class.data_class),
                            Some(hop),
                        );
                    }
                    agents.push(a);
                }
                Ok(None) => ctx.reason("chain.agent_unknown", format!("agent `{id}` is not registered"), Some(hop)),
                Err(e) => self.internal(ctx, format!("reading agent `{id}`: {e}"), Some(hop)),
            }
        }
        if !ctx.reasons.is_empty() {
            let detail = ctx.reasons.iter().map(|r| r.message.clone()).collect::<Vec<_>>().join("; ");
            ctx.step("chain", "fail", || detail);
            return Verdict::Deny;
        }
        // The proof's id is remembered only now, once the mandate and its chain are known to be live:
        // a revoked or suspended agent cannot fill the replay cache and lock everyone else out.
        let replay_key = format!("dpop:{}:{}", proof.jkt(), proof.jti());
        let replayed = self.replay.lock().unwrap_or_else(|p| p.into_inner()).check_and_insert(&replay_key, now);
        if let Err(e) = replayed {
            ctx.reason(e.code(), e.to_string(), Some(record.depth));
            ctx.step("proof", "fail", || e.to_string());
            return Verdict::Deny;
        }
        ctx.step("chain", "pass", || {
            format!("{} agent(s), all active and allowed in {}", agents.len(), class.server_environment.as_str())
        });

        // 5. Scope: within this mandate and within the stored scope of every ancestor.
        let mut chain: Vec<MandateRecord> = Vec::with_capacity(record.lineage.len() + 1);
        for id in &record.lineage {
            match self.store.mandate(id).await {
                Ok(Some(a)) => chain.push(a.record),
                Ok(None) => {
                    ctx.reason("chain.mandate_unknown", format!("ancestor `{id}` is not a stored mandate"), None)
                }
                Err(e) => self.internal(ctx, format!("reading mandate `{id}`: {e}"), None),
            }
        }
        chain.push(record.clone());
        for hop in &chain {
            if let Some((code, message)) = scope_miss(hop, &call) {
                ctx.reason(code, message, Some(hop.depth));
            }
        }
        if !ctx.reasons.is_empty() {
            let detail = ctx.reasons.iter().map(|r| r.message.clone()).collect::<Vec<_>>().join("; ");
            ctx.step("scope", "fail", || detail);
            return Verdict::Deny;
        }
        ctx.step("scope", "pass", || {
            format!("`{tool}` ({}, {}) is within all {} hop(s)", class.data_class, class.action.as_str(), chain.len())
        });

        // 6. Budget, per mandate and per chain (each ancestor's budget covers its descendants' calls).
        let refs: Vec<&MandateRecord> = chain.iter().collect();
        if let Err(e) = self.budgets.check(&refs) {
            ctx.reason(
                "budget.exhausted",
                format!("mandate `{}` has spent its {} calls", e.mandate_id, e.max_calls),
                Some(e.hop),
            );
            ctx.step("budget", "fail", || format!("`{}` is spent", e.mandate_id));
            return Verdict::Deny;
        }
        ctx.step("budget", "pass", || format!("{} of {} calls used", self.budgets.used(&record.id), record.max_calls));

        // 7. Organisation policy, with the behaviour so far.
        let agent = agents.last().cloned();
        let Some(agent) = agent else {
            ctx.reason("internal.error", "the chain has no agent", None);
            return Verdict::Deny;
        };
        let shape = CallShape {
            chain_id: &record.chain_id,
            agent: agent.id.as_str(),
            tool: tool.as_str(),
            data_class: class.data_class.as_str(),
            classified: class.classified,
            depth: record.depth,
            now,
            chain_expires_at: refs.iter().map(|m| m.expires_at).max().unwrap_or(record.expires_at),
        };
        ctx.risk = self.behaviour.assess(&shape);
        let root = match self.cached_human(&record.root.human()).await {
            Ok(Some(h)) if !h.active => {
                ctx.reason(
                    "chain.root_inactive",
                    format!("`{}` who granted this chain was deactivated", record.root),
                    Some(1),
                );
                ctx.step("chain", "fail", || "the root human was deactivated");
                return Verdict::Deny;
            }
            Ok(Some(h)) => human_facts(&h),
            _ => unknown_human_facts(&record.root.human()),
        };
        let t = self.clock.now();
        let policy_request = CallRequest {
            agent: agent_facts(&agent),
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
            risk_score: ctx.risk.score,
            signals: ctx.risk.signals.clone(),
        };
        let Some((version, policies)) = self.policy.current() else {
            ctx.reason("policy.not_loaded", "no policy set is active", None);
            ctx.step("policy", "fail", || "no policy set is active");
            return Verdict::Deny;
        };
        ctx.policy_version = Some(format!("{version}:{}", policies.version()));
        let decision = policies.decide_call(&policy_request);
        ctx.policies = decision.matched.clone();
        for e in &decision.errors {
            ctx.step("policy", "error", || e.clone());
        }
        match decision.outcome {
            Outcome::Deny => {
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
                Verdict::Deny
            }
            Outcome::Allow => {
                ctx.step("policy", "pass", || {
                    format!("policy set v{version} permits (matched: {})", decision.matched.join(", "))
                });
                self.allow(ctx, &refs, &shape)
            }
            Outcome::Hold => {
                ctx.step("policy", "hold", || format!("held for approval: {}", decision.hold_reasons.join("; ")));
                self.held(request, ctx, &record, &tool, resource.as_ref(), &decision.hold_reasons, &refs, &shape).await
            }
        }
    }

    fn allow(&self, ctx: &mut Ctx, chain: &[&MandateRecord], shape: &CallShape<'_>) -> Verdict {
        // A revocation acknowledged while this decision was being made wins.
        if let Some(revoked) = chain.last().and_then(|m| self.revocations.revoked_in(m)) {
            ctx.reason("mandate.revoked", format!("mandate `{revoked}` was revoked during the decision"), None);
            ctx.step("revocation", "fail", || "revoked while deciding");
            return Verdict::Deny;
        }
        match self.budgets.consume(chain, shape.now) {
            Ok(()) => {
                self.behaviour.record(shape);
                Verdict::Allow
            }
            Err(e) => {
                ctx.reason(
                    "budget.exhausted",
                    format!("mandate `{}` has spent its {} calls", e.mandate_id, e.max_calls),
                    Some(e.hop),
                );
                ctx.step("budget", "fail", || "spent by a concurrent call");
                Verdict::Deny
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn held(
        &self,
        request: &AuthorizeRequest,
        ctx: &mut Ctx,
        record: &MandateRecord,
        tool: &ToolName,
        resource: Option<&ResourceUri>,
        hold_reasons: &[String],
        chain: &[&MandateRecord],
        shape: &CallShape<'_>,
    ) -> Verdict {
        let args_hash = hex::encode(Sha256::digest(canonical_json(&request.arguments).as_bytes()));
        let now_ms = millis(self.clock.now());
        let Some(id) = &request.approval_id else {
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
                    "root": record.root, "category": record.intent.category, "purpose": record.intent.purpose,
                    "data_class": ctx.data_class, "action": ctx.action.map(Action::as_str), "depth": record.depth,
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
                    self.internal(ctx, format!("recording the approval: {e}"), None);
                    return Verdict::Deny;
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
                    return Verdict::Deny;
                }
            };
            for r in hold_reasons {
                ctx.reason("policy.hold", r.clone(), Some(record.depth));
            }
            ctx.approval_id = Some(id);
            return Verdict::Hold;
        };
        // A retry with an approval: it must be this exact call's, approved, unexpired and unused.
        ctx.approval_id = Some(id.clone());
        let approval = match self.decisions.approval(id).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                ctx.reason("approval.unknown", format!("no approval `{id}`"), None);
                ctx.step("approval", "fail", || "unknown");
                return Verdict::Deny;
            }
            Err(e) => {
                self.internal(ctx, format!("reading approval `{id}`: {e}"), None);
                return Verdict::Deny;
            }
        };
        let same_call = approval.mandate_id == record.id
            && approval.tool == tool.as_str()
            && approval.resource.as_deref() == resource.map(ResourceUri::as_str)
            && approval.arguments_hash == args_hash;
        if !same_call {
            ctx.reason("approval.mismatch", format!("approval `{id}` was given for another call"), Some(record.depth));
            ctx.step("approval", "fail", || "the approval is bound to another mandate, tool, resource or arguments");
            return Verdict::Deny;
        }
        let expired = now_ms > approval.expires_ms;
        match approval.status.as_str() {
            "denied" => {
                ctx.reason(
                    "approval.denied",
                    format!("approval `{id}` was denied by {}", approval.decided_by.unwrap_or_default()),
                    Some(record.depth),
                );
                Verdict::Deny
            }
            "used" => {
                ctx.reason("approval.used", format!("approval `{id}` was already used"), Some(record.depth));
                Verdict::Deny
            }
            _ if expired => {
                ctx.reason("approval.expired", format!("approval `{id}` expired"), Some(record.depth));
                Verdict::Deny
            }
            "pending" => {
                ctx.reason(
                    "approval.pending",
                    format!("approval `{id}` is still waiting for a human"),
                    Some(record.depth),
                );
                ctx.step("approval", "hold", || "pending");
                Verdict::Hold
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
                    return Verdict::Deny;
                }
                match self.decisions.transition_approval(id, "approved", "used", None, now_ms, event).await {
                    Ok(Some(_)) => {
                        self.behaviour.record(shape);
                        ctx.reason(
                            "approval.granted",
                            format!("approved by {}", approval.decided_by.unwrap_or_default()),
                            Some(record.depth),
                        );
                        ctx.step("approval", "pass", || "approved; used now, once");
                        Verdict::Allow
                    }
                    Ok(None) => {
                        self.budgets.refund(chain);
                        ctx.reason("approval.used", format!("approval `{id}` was already used"), Some(record.depth));
                        Verdict::Deny
                    }
                    Err(e) => {
                        self.budgets.refund(chain);
                        self.internal(ctx, format!("using approval `{id}`: {e}"), None);
                        Verdict::Deny
                    }
                }
            }
            other => {
                self.internal(ctx, format!("approval `{id}` has unknown status `{other}`"), None);
                Verdict::Deny
            }
        }
    }

    async fn record_decision(
        &self,
        request: &AuthorizeRequest,
        mut ctx: Ctx,
        verdict: Verdict,
        explain: bool,
    ) -> DecisionResponse {
        let decision = match verdict {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Hold => "approval_required",
        };
        if matches!(verdict, Verdict::Allow) && ctx.reasons.is_empty() {
            let hop = ctx.record.as_ref().map(|r| r.depth);
            ctx.reason(
                "decision.allowed",
                "within the mandate, every ancestor, the chain's boundaries and policy",
                hop,
            );
        }
        let canonical = canonical_json(&request.arguments);
        let record = ctx.record.clone();
        let actor = match &record {
            Some(r) => self.settings.trust_domain.agent_spiffe_id(&r.agent),
            None => "unknown".to_owned(),
        };
        let detail = serde_json::json!({
            "reasons": ctx.reasons,
            "policies": ctx.policies,
            "risk": {"score": ctx.risk.score, "signals": ctx.risk.signals},
            "data_class": ctx.data_class,
            "action": ctx.action.map(Action::as_str),
            "depth": record.as_ref().map(|r| r.depth),
            "root": record.as_ref().map(|r| r.root.to_string()),
            "approval_id": ctx.approval_id,
            "policy_version": ctx.policy_version,
            "arguments": {
                "sha256": hex::encode(Sha256::digest(canonical.as_bytes())),
                "bytes": canonical.len(),
                "value": self.settings.arguments.kept(&request.arguments),
            },
        });
        let mut event = NewEvent::new("decision", &actor, millis(self.clock.now()), &detail);
        if let Some(r) = &record {
            event.agent = Some(r.agent.to_string());
            event.chain_id = Some(r.chain_id.clone());
            event.mandate_id = Some(r.id.clone());
        }
        event.tool = Some(request.tool.chars().take(200).collect());
        event.resource = request.resource.as_ref().map(|r| r.chars().take(1024).collect());
        event.decision = Some(decision.to_owned());
        let (decision, ledger_seq) = match self.store.append_event(event).await {
            Ok(seq) => (decision, Some(seq)),
            Err(e) => {
                // Not recorded means not allowed: give the budget back and deny.
                if matches!(verdict, Verdict::Allow) {
                    if let Some(r) = &record {
                        let mut chain = Vec::new();
                        for id in &r.lineage {
                            if let Ok(Some(a)) = self.store.mandate(id).await {
                                chain.push(a.record);
                            }
                        }
                        chain.push(r.clone());
                        self.budgets.refund(&chain.iter().collect::<Vec<_>>());
                    }
                }
                tracing::error!(error = %e, "a decision could not be recorded; denying");
                ctx.reasons.retain(|r| r.code != "decision.allowed");
                ctx.reason("internal.ledger_unavailable", "the decision could not be recorded, so it is a deny", None);
                ("deny", None)
            }
        };
        tracing::info!(
            decision,
            agent = record.as_ref().map(|r| r.agent.as_str()).unwrap_or("unknown"),
            mandate_id = record.as_ref().map(|r| r.id.as_str()).unwrap_or(""),
            tool = %request.tool.chars().take(200).collect::<String>().escape_debug(),
            policy_ids = ?ctx.policies,
            reasons = ?ctx.reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>(),
            "decision"
        );
        if explain {
            ctx.step("ledger", if ledger_seq.is_some() { "pass" } else { "fail" }, || format!("event {ledger_seq:?}"));
        }
        DecisionResponse {
            decision: decision.to_owned(),
            reasons: ctx.reasons,
            policies: ctx.policies,
            risk: RiskView { score: ctx.risk.score, signals: ctx.risk.signals },
            ledger_seq,
            approval_id: ctx.approval_id,
            mandate_id: record.as_ref().map(|r| r.id.clone()),
            chain_id: record.as_ref().map(|r| r.chain_id.clone()),
            explain: explain.then_some(ctx.steps),
        }
    }
}

impl Engine {
    /// Records an internal fault as a deny reason without telling the caller what broke: the detail
    /// goes to the log, found by the request id.
    fn internal(&self, ctx: &mut Ctx, detail: String, hop: Option<u8>) {
        tracing::error!(detail = %detail, "a fault inside a decision; denying");
        ctx.reason("internal.error", "a fault inside the server; the decision is a deny (see the server's log)", hop);
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

#[cfg(test)]
mod tests {
    use super::canonical_json;

    #[test]
    fn canonical_json_sorts_members_at_every_level() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [2, {"d": 1, "c": 0}], "x": null}}"#).unwrap_or_default();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": null, "y": [2, {"c": 0, "d": 1}]}, "b": 1}"#).unwrap_or_default();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":null,"y":[2,{"c":0,"d":1}]},"b":1}"#);
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }
}
