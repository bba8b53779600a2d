//! Driving the real engine: a Mandate server started in process over a fresh SQLite file, with the
//! scenarios' people, agents and tools registered through the same operations the API uses. Each
//! trace is a grant by its human, an optional delegation (RFC 8693, with the sub-agent's actor
//! assertion), and tool calls decided by `Engine::decide` with a DPoP proof signed by the calling
//! agent's key; the clock moves as the trace says. Nothing of the decision is modelled here.

use crate::scenarios::{Action, Scenario, Trace, Variant};
use anyhow::{anyhow, bail, Context as _};
use ed25519_dalek::SigningKey;
use mandate_core::arguments::CanonicalArguments;
use mandate_core::jose::{sign, sign_proof, ProofClaims, SignHeader};
use mandate_engine::caller::Caller;
use mandate_engine::clock::{Clock as _, ManualClock};
use mandate_engine::decision::{Call, Decision, Presented, ProofBinding, Verdict};
use mandate_engine::engine::Engine;
use mandate_server::{Server, ServerConfig};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The policies that hold or refuse for drift; any other hold (a financial write's four eyes) is
/// the organisation's ordinary control, approved and retried like a person would.
pub const DRIFT_POLICIES: [&str; 3] = ["call.hold-exfiltration", "call.hold-high-risk", "call.deny-extreme-risk"];

/// The approver who answers held calls.
const APPROVER: &str = "olga@example.org";

/// One decided call of a trace.
#[derive(Debug, Clone)]
pub struct Decided {
    /// Its step's index in the trace.
    pub step: usize,
    /// The drift score.
    pub score: u32,
    /// The signals.
    pub signals: Vec<String>,
    /// Whether a drift policy held or refused it.
    pub flagged: bool,
}

/// What happened to a trace.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The trace's scenario.
    pub scenario: usize,
    /// Its kind.
    pub variant: Variant,
    /// The first harmful step, for bad traces.
    pub harmful: Option<usize>,
    /// Every decided call, in order (a call retried after an approval appears once, as first
    /// decided).
    pub calls: Vec<Decided>,
    /// Refusals that were not drift's (scope, boundary, lifecycle): a trace the generator got wrong.
    pub unexpected: Vec<String>,
}

impl Outcome {
    /// The first step a drift policy held or refused.
    pub fn first_flagged(&self) -> Option<usize> {
        self.calls.iter().find(|c| c.flagged).map(|c| c.step)
    }

    /// Whether it was stopped for drift at or before its first harmful call.
    pub fn caught_in_time(&self) -> bool {
        matches!((self.first_flagged(), self.harmful), (Some(f), Some(h)) if f <= h)
    }

    /// Whether a legitimate trace was held or refused for drift.
    pub fn false_positive(&self) -> bool {
        self.variant == Variant::Legit && self.first_flagged().is_some()
    }

    /// With the high-risk hold at `threshold` (and the exfiltration hold as it is): would it have
    /// been flagged (at or before `upto`)?
    pub fn flagged_at(&self, threshold: u32, upto: Option<usize>) -> bool {
        self.calls.iter().any(|c| {
            upto.is_none_or(|u| c.step <= u) && (c.score >= threshold || c.signals.iter().any(|s| s == "exfiltration"))
        })
    }
}

/// An organisation on a running engine.
pub struct Org {
    engine: Engine,
    clock: Arc<ManualClock>,
    keys: HashMap<&'static str, SigningKey>,
    humans: HashMap<&'static str, Caller>,
    scenarios: Vec<Scenario>,
    default_policy: String,
    authorize: String,
    token_endpoint: String,
    n: u64,
    _server: Server,
    _dir: tempfile::TempDir,
}

/// The default policy with the organisation's two changes for these scenarios: the high-risk hold
/// at `hold` and the refusal at `deny` (the defaults are 50 and 90), and sales allowed to grant the
/// CRM's personal data (contacts), which the default reserves for HR.
pub fn policy(hold: u32, deny: u32) -> anyhow::Result<String> {
    let text = mandate_policy::DEFAULT_POLICIES;
    let edits = [
        ("when { context.risk.score >= 50 };", format!("when {{ context.risk.score >= {hold} }};")),
        ("when { context.risk.score >= 90 };", format!("when {{ context.risk.score >= {deny} }};")),
        (
            "@id(\"grant.pii-scope-only-hr\")\nforbid (principal, action == Mandate::Action::\"grant\", resource)\nwhen { context.data_classes.contains(\"pii\") }\nunless { principal in Mandate::Group::\"hr\" };",
            "@id(\"grant.pii-scope-only-hr\")\nforbid (principal, action == Mandate::Action::\"grant\", resource)\nwhen { context.data_classes.contains(\"pii\") }\nunless { principal in Mandate::Group::\"hr\" || principal in Mandate::Group::\"sales\" };\n\n// Sales may grant the CRM's contacts.\n@id(\"grant.crm-contacts-by-sales\")\npermit (principal in Mandate::Group::\"sales\", action == Mandate::Action::\"grant\", resource)\nwhen { resource.data_class == \"pii\" && resource.name like \"crm/*\" };".to_owned(),
        ),
    ];
    let mut out = text.to_owned();
    for (from, to) in edits {
        if out.matches(from).count() != 1 {
            bail!("the default policy changed: `{from}` is not in it exactly once");
        }
        out = out.replace(from, &to);
    }
    Ok(out)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

impl Org {
    /// A fresh server with the scenarios' organisation, its categories in `learn`.
    pub async fn start(scenarios: Vec<Scenario>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        // Monday 2 November 2026, 08:00 UTC.
        let clock = Arc::new(ManualClock::new(time::macros::datetime!(2026-11-02 08:00 UTC)));
        let mut settings = mandate_test::settings();
        settings.mandates.limits.max_ttl_secs = 4 * 3600;
        settings.mandates.limits.max_calls_ceiling = 10_000;
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            data_dir: dir.path().to_owned(),
            settings,
            admin_token: Some(mandate_test::ADMIN_TOKEN.to_owned()),
            demo: false,
            issuer_from_listener: false,
            catalogue: Vec::new(),
            intents: Vec::new(),
            gateway: Default::default(),
            keys_dir: None,
            database_url: None,
            database_max_connections: 16,
            database_max_lag: std::time::Duration::from_secs(1),
            web: Default::default(),
            ledger: mandate_engine::ledger::LedgerSettings::DEFAULT,
        };
        let server = Server::start(config, clock.clone()).await.map_err(|e| anyhow!("starting the server: {e}"))?;
        let engine = server.state().engine.clone();
        let admin = Caller::Admin;
        let now = clock.now();
        let mut humans = HashMap::new();
        let mut people: Vec<(&'static str, Value)> =
            vec![(APPROVER, json!({"id": APPROVER, "groups": ["ops"], "roles": ["approver"]}))];
        for s in &scenarios {
            people.push((s.human.0, json!({"id": s.human.0, "groups": s.human.1})));
        }
        for (id, spec) in people {
            let created = engine.create_human(&admin, serde_json::from_value(spec)?, now).await.map_err(err)?;
            humans.insert(id, Caller::Human(created.human));
        }
        let mut keys = HashMap::new();
        let mut seed = 10u8;
        for s in &scenarios {
            for (agent, delegate) in [(&s.root, Some(s.sub.id)), (&s.sub, None)] {
                seed += 1;
                let k = key(seed);
                let jwk = mandate_core::jwk::Ed25519PublicJwk::from_verifying_key(k.verifying_key()).to_json();
                let spec = json!({"id": agent.id, "name": agent.id, "owner": format!("user:{}", s.human.0),
                    "purpose": s.name, "class": "enterprise", "environment": "production",
                    "boundary": {"tools": agent.tools, "data_classes": agent.classes,
                                 "may_delegate_to": delegate.into_iter().collect::<Vec<_>>(), "max_depth": 2},
                    "public_key_jwk": jwk});
                engine.register_agent(&admin, serde_json::from_value(spec)?, now).await.map_err(err)?;
                keys.insert(agent.id, k);
            }
            for (tool, class, risk) in s.tools {
                let name = mandate_core::pattern::ToolName::parse(tool)?;
                let c = serde_json::from_value(
                    json!({"data_class": class, "risk": risk, "server_environment": "production"}),
                )?;
                engine.classify_tool("admin", &name, &c, "config").await.map_err(err)?;
            }
        }
        let authorize = engine.settings.mandates.authorize_endpoint();
        let token_endpoint = engine.settings.mandates.token_endpoint();
        let org = Self {
            engine,
            clock,
            keys,
            humans,
            scenarios,
            default_policy: policy(50, 90)?,
            authorize,
            token_endpoint,
            n: 0,
            _server: server,
            _dir: dir,
        };
        org.set_policy(50, 90).await?;
        org.set_mode(mandate_engine::behaviour::taxonomy::Mode::Learn).await?;
        Ok(org)
    }

    /// The engine (for reading profiles).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The default policy's text as this organisation runs it.
    pub fn default_policy(&self) -> &str {
        &self.default_policy
    }

    /// Makes the policy hold at `hold` and refuse at `deny`.
    pub async fn set_policy(&self, hold: u32, deny: u32) -> anyhow::Result<()> {
        self.engine.replace_policies("admin", &policy(hold, deny)?).await.map_err(err)?;
        Ok(())
    }

    /// Puts every scenario's category in `mode`.
    pub async fn set_mode(&self, mode: mandate_engine::behaviour::taxonomy::Mode) -> anyhow::Result<()> {
        for s in &self.scenarios {
            let c =
                self.engine.behaviour.category(s.category).ok_or_else(|| anyhow!("no category `{}`", s.category))?;
            let mut spec = c.spec.clone();
            spec.mode = mode;
            self.engine.put_intent("admin", s.category, spec).await.map_err(err)?;
        }
        Ok(())
    }

    /// Moves the clock to the start of the next trace: a few minutes on, within business hours on
    /// a weekday (the default policy keeps personal data to them).
    fn next_slot(&self, gap_secs: i64) {
        self.clock.advance(time::Duration::seconds(gap_secs));
        let now = self.clock.now();
        let late = now.hour() >= 16;
        let weekend = now.weekday().number_from_monday() >= 6;
        if late || weekend {
            let mut next = now.replace_time(time::macros::time!(08:00)) + time::Duration::days(1);
            while next.weekday().number_from_monday() >= 6 {
                next += time::Duration::days(1);
            }
            self.clock.advance(next - now);
        }
    }

    fn proof(&mut self, agent: &str, htu: &str, token: &str) -> anyhow::Result<String> {
        self.n += 1;
        let k = self.keys.get(agent).ok_or_else(|| anyhow!("no key for `{agent}`"))?;
        let jti = format!("eval-{}", self.n);
        let claims = ProofClaims { jti: &jti, htm: "POST", htu, iat: self.clock.now_secs(), access_token: Some(token) };
        Ok(sign_proof(&claims, k)?)
    }

    async fn decide(
        &mut self,
        agent: &str,
        token: &str,
        tool: &str,
        resource: Option<&str>,
        args: &Value,
        approval: Option<String>,
    ) -> anyhow::Result<Decision> {
        let authorize = self.authorize.clone();
        let proof = self.proof(agent, &authorize, token)?;
        let mut call = Call::new(tool, CanonicalArguments::parse(&args.to_string())?, resource.map(str::to_owned));
        call.approval_id = approval;
        let presented =
            Presented { token, proof: &proof, binding: ProofBinding { htm: "POST", htu: &authorize }, source: None };
        Ok(self.engine.decide(&presented, &call, false).await)
    }

    /// Plays one trace, `gap_secs` after the previous one.
    pub async fn play(&mut self, trace: &Trace, gap_secs: i64) -> anyhow::Result<Outcome> {
        self.next_slot(gap_secs);
        let scenario = &self.scenarios[trace.scenario];
        let (category, human, root, sub) = (scenario.category, scenario.human.0, scenario.root.id, scenario.sub.id);
        let (scope, sub_scope) = ((scenario.scope)(), (scenario.sub_scope)());
        let caller = self.humans.get(human).ok_or_else(|| anyhow!("no human `{human}`"))?.clone();
        let request = serde_json::from_value(json!({"agent": root, "purpose": trace.purpose, "category": category,
            "authorization_details": scope, "ttl_seconds": 3 * 3600, "max_calls": 500, "max_depth": 2}))?;
        let granted = self.engine.grant(&caller, request).await.map_err(err).context("granting")?;
        let mut sub_token: Option<String> = None;
        let mut out = Outcome {
            scenario: trace.scenario,
            variant: trace.variant,
            harmful: trace.first_harmful(),
            calls: Vec::new(),
            unexpected: Vec::new(),
        };
        for (i, step) in trace.steps.iter().enumerate() {
            self.clock.advance(time::Duration::seconds(step.after));
            match &step.action {
                Action::Delegate => {
                    let endpoint = self.token_endpoint.clone();
                    let proof = self.proof(root, &endpoint, &granted.token)?;
                    let now = self.clock.now_secs();
                    let spiffe =
                        self.engine.settings.trust_domain.agent_spiffe_id(&mandate_core::id::AgentId::parse(sub)?);
                    self.n += 1;
                    let k = self.keys.get(sub).ok_or_else(|| anyhow!("no key for `{sub}`"))?;
                    let actor = sign(
                        &json!({"iss": spiffe, "sub": spiffe, "aud": endpoint, "iat": now, "exp": now + 60, "jti": format!("eval-actor-{}", self.n)}),
                        k,
                        &SignHeader { typ: "JWT", kid: sub },
                    )?;
                    let form = mandate_engine::mandates::TokenExchangeForm {
                        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange".into(),
                        subject_token: Some(granted.token.clone()),
                        subject_token_type: Some("urn:ietf:params:oauth:token-type:jwt".into()),
                        actor_token: Some(actor),
                        actor_token_type: Some("urn:ietf:params:oauth:token-type:jwt".into()),
                        authorization_details: Some(sub_scope.to_string()),
                        ttl_seconds: None,
                        max_calls: Some(200),
                        max_depth: None,
                    };
                    match self.engine.delegate(form, &[proof.as_str()], None).await {
                        Ok(t) => sub_token = Some(t.access_token),
                        Err(e) => out.unexpected.push(format!("step {i}: delegation refused: {e:?}")),
                    }
                }
                Action::Call { sub: by_sub, tool, resource, args } => {
                    let (agent, token) = match (by_sub, &sub_token) {
                        (false, _) => (root, granted.token.clone()),
                        (true, Some(t)) => (sub, t.clone()),
                        (true, None) => {
                            out.unexpected.push(format!("step {i}: a sub-agent call before any delegation"));
                            continue;
                        }
                    };
                    let d = self.decide(agent, &token, tool, resource.as_deref(), args, None).await?;
                    let flagged = d.policies.iter().any(|p| DRIFT_POLICIES.contains(&p.as_str()));
                    out.calls.push(Decided { step: i, score: d.risk.score, signals: d.risk.signals.clone(), flagged });
                    match d.verdict {
                        Verdict::Allow => {}
                        Verdict::ApprovalRequired if flagged && trace.variant != Variant::Legit => break,
                        Verdict::ApprovalRequired => {
                            // A person answers, as they would: the four eyes on a financial write,
                            // or a false positive of drift on ordinary work.
                            let id = d.approval_id.clone().ok_or_else(|| anyhow!("a hold without an approval"))?;
                            let approver = self.humans.get(APPROVER).ok_or_else(|| anyhow!("no approver"))?.clone();
                            self.engine
                                .answer_approval(&approver, &id, true)
                                .await
                                .map_err(err)
                                .context("approving")?;
                            let again = self.decide(agent, &token, tool, resource.as_deref(), args, Some(id)).await?;
                            if again.verdict != Verdict::Allow {
                                out.unexpected
                                    .push(format!("step {i}: {tool} refused after approval: {:?}", again.reasons));
                            }
                        }
                        Verdict::Deny if flagged => {
                            if trace.variant != Variant::Legit {
                                break;
                            }
                        }
                        Verdict::Deny => {
                            let codes: Vec<&str> = d.reasons.iter().map(|r| r.code.as_str()).collect();
                            out.unexpected.push(format!("step {i}: {tool} denied: {codes:?}"));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn err(e: mandate_engine::Error) -> anyhow::Error {
    anyhow!("{}: {}", e.code(), e.detail())
}
