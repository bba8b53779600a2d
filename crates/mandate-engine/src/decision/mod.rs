//! One tool-call decision: the engine's one entry point, [`Engine::decide`].
//!
//! Every front door (the HTTP API's `POST /v1/authorize`, the MCP gateway's `tools/call`) builds the
//! same two typed inputs and gets the same typed [`Decision`] back:
//!
//! - a [`Presented`] credential: the mandate token, its DPoP proof, and the [`ProofBinding`] the
//!   caller expects (the method and URL the agent called, so that a proof made for one endpoint
//!   cannot pass at another);
//! - a [`Call`]: the tool, its arguments in canonical form, the resource, and the approval being
//!   used, if any.
//!
//! The steps ([`pipeline`]) run in the order of the contract and stop at the first failing step,
//! after collecting every reason of that step (all hops, all dimensions), so a refusal explains
//! itself. A held call opens or uses an approval ([`hold`]); every outcome is recorded in the ledger
//! ([`record`]) before it is returned, and an allow that cannot be recorded is a deny. Any failure
//! inside the decision is a deny with a reason (fail closed).

mod hold;
pub(crate) mod pipeline;
mod record;

use crate::behaviour::Risk;
use crate::engine::Engine;
use mandate_core::arguments::CanonicalArguments;
use mandate_core::mandate::{Action, MandateRecord};
use serde::{Deserialize, Serialize};

/// What an agent presents with a call: its mandate and a DPoP proof of possession of the mandate's
/// key, bound to the request the agent made.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// The mandate token (JWS compact).
    pub token: &'a str,
    /// The DPoP proof (RFC 9449), empty when none was sent.
    pub proof: &'a str,
    /// The request the proof must be bound to.
    pub binding: ProofBinding<'a>,
    /// Where the request came from, as the front door saw it: refusals that name no mandate are
    /// counted and limited per source (see [`crate::refusals`]).
    pub source: Option<std::net::IpAddr>,
}

/// The request a proof must name (RFC 9449 section 4.3): its method and its URL, as the front door
/// received it. `POST /v1/authorize` binds to the authorize endpoint, the token endpoint to itself,
/// the gateway to `/mcp/{server}`.
#[derive(Debug, Clone, Copy)]
pub struct ProofBinding<'a> {
    /// `htm`: the HTTP method.
    pub htm: &'a str,
    /// `htu`: the URL, without query and fragment.
    pub htu: &'a str,
}

/// The call to decide.
#[derive(Debug, Clone)]
pub struct Call {
    /// The tool, `server/tool`, as the agent named it (parsed by the decision).
    pub tool: String,
    /// Its arguments, in RFC 8785 canonical form.
    pub arguments: CanonicalArguments,
    /// The resource it acts on, if any (parsed by the decision).
    pub resource: Option<String>,
    /// The approval of a call that was held, when retrying it.
    pub approval_id: Option<String>,
    /// The front door's own refusal of the call, found before the decision (the gateway's: a
    /// resource template its arguments cannot fill). The presentation is still verified, so that
    /// the refusal is recorded against the mandate and its proof used up; the call is a deny with
    /// this reason.
    pub refusal: Option<FrontDoorRefusal>,
}

/// A front door's reason to refuse a call, as [`Call::refusal`] carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontDoorRefusal {
    /// A stable dotted code.
    pub code: &'static str,
    /// What was wrong, for people.
    pub message: String,
}

impl Call {
    /// A call with no approval and no refusal of the front door's.
    pub fn new(tool: impl Into<String>, arguments: CanonicalArguments, resource: Option<String>) -> Self {
        Self { tool: tool.into(), arguments, resource, approval_id: None, refusal: None }
    }
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The call may go ahead.
    Allow,
    /// The call is refused.
    Deny,
    /// The call waits for a human's approval.
    ApprovalRequired,
}

impl Verdict {
    /// `allow`, `deny` or `approval_required`, as the contract spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::ApprovalRequired => "approval_required",
        }
    }
}

/// One reason of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// A stable dotted code (the README lists them all).
    pub code: String,
    /// What it means here, for people.
    pub message: String,
    /// The hop it comes from: 1 for the human's grant, one more per delegation.
    pub hop: Option<u8>,
}

/// One step of the evaluation, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainStep {
    /// `token`, `proof`, `revocation`, `chain`, `scope`, `budget`, `policy`, `approval`, `ledger`.
    pub step: String,
    /// `pass`, `fail`, `hold`, `error` or `skipped`.
    pub outcome: String,
    /// What was checked and found.
    pub detail: String,
}

/// A decision, as recorded.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The outcome.
    pub verdict: Verdict,
    /// Every reason, each naming its hop.
    pub reasons: Vec<Reason>,
    /// The ids of the policies that determined the outcome.
    pub policies: Vec<String>,
    /// The behavioural risk.
    pub risk: Risk,
    /// The sequence number of the decision's ledger event (`None` only when it could not be
    /// recorded, and then the verdict is a deny).
    pub ledger_seq: Option<i64>,
    /// The approval to retry with, when the call is held.
    pub approval_id: Option<String>,
    /// The mandate the call was made under, when the token named a known one.
    pub mandate_id: Option<String>,
    /// Its chain.
    pub chain_id: Option<String>,
    /// The agent that made the call (the chain's last), when the mandate verified.
    pub agent_id: Option<String>,
    /// The whole evaluation, when asked for.
    pub explain: Option<Vec<ExplainStep>>,
}

/// What a decision has found so far.
pub(crate) struct Ctx {
    pub(crate) reasons: Vec<Reason>,
    /// Whether the caller asked for the evaluation (`explain`); the steps are written only then.
    explain: bool,
    steps: Vec<ExplainStep>,
    pub(crate) policies: Vec<String>,
    pub(crate) risk: Risk,
    pub(crate) approval_id: Option<String>,
    pub(crate) record: Option<MandateRecord>,
    /// The mandates of the chain, root first, once known: what an allow consumed budget from.
    pub(crate) chain: Vec<MandateRecord>,
    pub(crate) data_class: Option<String>,
    pub(crate) action: Option<Action>,
    pub(crate) policy_version: Option<String>,
    /// The proof id the call used up, recorded in its event so that a restart remembers it.
    pub(crate) replay_key: Option<String>,
}

impl Ctx {
    fn new(explain: bool) -> Self {
        Self {
            reasons: Vec::new(),
            explain,
            steps: Vec::new(),
            policies: Vec::new(),
            risk: Risk::default(),
            approval_id: None,
            record: None,
            chain: Vec::new(),
            data_class: None,
            action: None,
            policy_version: None,
            replay_key: None,
        }
    }

    /// Writes down a step of the evaluation, when it was asked for: `detail` is only formatted then.
    pub(crate) fn step<S: Into<String>>(&mut self, step: &str, outcome: &str, detail: impl FnOnce() -> S) {
        if self.explain {
            self.steps.push(ExplainStep { step: step.into(), outcome: outcome.into(), detail: detail().into() });
        }
    }

    pub(crate) fn reason(&mut self, code: &str, message: impl Into<String>, hop: Option<u8>) {
        self.reasons.push(Reason { code: code.into(), message: message.into(), hop });
    }
}

impl Engine {
    /// Decides one tool call. Never fails: every problem is a deny with a reason, and the decision
    /// is in the ledger before it is returned (or it is a deny).
    pub async fn decide(&self, presented: &Presented<'_>, call: &Call, explain: bool) -> Decision {
        let started = std::time::Instant::now();
        let mut ctx = Ctx::new(explain);
        let verdict = self.evaluate(presented, call, &mut ctx).await;
        let decision = self.record_decision(call, ctx, verdict, presented.source).await;
        self.metrics.decision(decision.verdict.as_str(), started.elapsed().as_secs_f64());
        decision
    }
}
