//! `/v1/authorize`, `/v1/approvals`, `/v1/policies` and `/v1/tools`.

use crate::auth::Caller;
use crate::error::{ApiBytes, ApiError, ApiJson, ApiQuery, Source};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use mandate_core::arguments::CanonicalArguments;
use mandate_core::human::Role;
use mandate_core::pattern::ToolName;
use mandate_engine::catalogue::Classification;
use mandate_engine::decision::{Call, Decision, Presented, ProofBinding};
use mandate_policy::ValidatedPolicySet;
use mandate_store::{ApprovalRecord, ToolRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `?explain=true` adds the whole evaluation to the decision.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    /// Include every step, hop and policy of the evaluation.
    #[serde(default)]
    explain: bool,
}

/// `POST /v1/authorize`: decide one tool call.
#[derive(Debug, Deserialize, ToSchema)]
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
    /// The call's arguments, a JSON object (hashed into the ledger in RFC 8785 canonical form, not
    /// stored unless configured). A member name repeated in any object, or a number that an IEEE 754
    /// double cannot hold exactly, is refused (`400`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub arguments: Option<Box<serde_json::value::RawValue>>,
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
    /// Drift from the mandate's intent: the sum of the raised signals' weights, 0 to 100.
    pub score: u32,
    /// The raised signals' names.
    pub signals: Vec<String>,
    /// Each raised signal with its weight and why it was raised.
    pub details: Vec<mandate_engine::behaviour::Signal>,
    /// The intent category drift was measured from.
    pub category: String,
    /// `enforce` (policy saw the score) or `learn` (recorded only; policy saw 0).
    pub mode: String,
}

/// One step of the evaluation, for `explain`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExplainStep {
    /// `token`, `proof`, `revocation`, `chain`, `scope`, `budget`, `policy`, `approval`, `ledger`.
    pub step: String,
    /// `pass`, `fail`, `hold`, `error` or `skipped`.
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

impl From<Decision> for DecisionResponse {
    fn from(d: Decision) -> Self {
        Self {
            decision: d.verdict.as_str().to_owned(),
            reasons: d.reasons.into_iter().map(|r| Reason { code: r.code, message: r.message, hop: r.hop }).collect(),
            policies: d.policies,
            risk: RiskView {
                score: d.risk.score,
                mode: if d.risk.enforced { "enforce" } else { "learn" }.to_owned(),
                signals: d.risk.signals,
                details: d.risk.details,
                category: d.risk.category,
            },
            ledger_seq: d.ledger_seq,
            approval_id: d.approval_id,
            mandate_id: d.mandate_id,
            chain_id: d.chain_id,
            explain: d.explain.map(|steps| {
                steps.into_iter().map(|s| ExplainStep { step: s.step, outcome: s.outcome, detail: s.detail }).collect()
            }),
        }
    }
}

/// The call an authorize request asks about, its arguments in canonical form: a document that
/// repeats a member name or holds an inexact number is a malformed request.
pub fn call_of(request: &AuthorizeRequest) -> Result<Call, ApiError> {
    let arguments = match &request.arguments {
        Some(raw) => {
            CanonicalArguments::parse(raw.get()).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?
        }
        None => CanonicalArguments::empty(),
    };
    Ok(Call {
        tool: request.tool.clone(),
        arguments,
        resource: request.resource.clone(),
        approval_id: request.approval_id.clone(),
        refusal: None,
    })
}

/// Decide one tool call: token, proof of possession, revocation, chain, scope, budget and policy.
/// A deny is a 200 with `decision: deny` and its reasons; a malformed request is a 400.
#[utoipa::path(post, path = "/v1/authorize", tag = "decisions", request_body = AuthorizeRequest, params(ExplainQuery),
    responses((status = 200, body = DecisionResponse), (status = 400, body = crate::error::Problem),
              (status = 429, body = crate::error::Problem)))]
pub async fn authorize(
    State(state): State<AppState>,
    Source(source): Source,
    ApiQuery(q): ApiQuery<ExplainQuery>,
    ApiJson(request): ApiJson<AuthorizeRequest>,
) -> axum::response::Response {
    if let Err(wait) = state.refusals.admit(source, mandate_engine::clock::millis(state.clock.now())) {
        return crate::error::rate_limited_tarpit(&state.refusals, source, wait).await;
    }
    let call = match call_of(&request) {
        Ok(call) => call,
        Err(e) => return e.into_response(),
    };
    let endpoint = state.settings.mandates.authorize_endpoint();
    let presented = Presented {
        token: &request.token,
        proof: &request.proof,
        binding: ProofBinding { htm: "POST", htu: &endpoint },
        source,
    };
    ApiJson(DecisionResponse::from(state.decide(&presented, &call, q.explain).await)).into_response()
}

/// Filters of `GET /v1/approvals`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsQuery {
    /// `pending` (default), `approved`, `denied`, `used`, or `all`.
    status: Option<String>,
}

/// `GET /v1/approvals` answers this.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApprovalList {
    /// Newest first.
    pub approvals: Vec<ApprovalRecord>,
}

/// The approval queue. Admins, approvers and auditors see every approval; other humans see those of
/// agents they own.
#[utoipa::path(get, path = "/v1/approvals", tag = "decisions", params(ApprovalsQuery),
    responses((status = 200, body = ApprovalList), (status = 400, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn approvals(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ApprovalsQuery>,
) -> Result<ApiJson<ApprovalList>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("pending") => Some("pending"),
        Some("all") => None,
        Some(s @ ("approved" | "denied" | "used")) => Some(s),
        Some(other) => return Err(ApiError::bad_request("request.invalid_query", format!("unknown status `{other}`"))),
    };
    let mut list = state.decisions.approvals(status, 500).await?;
    if !caller.reads_everything() {
        let mut mine = Vec::new();
        for a in list {
            if let Ok(id) = mandate_core::id::AgentId::parse(&a.agent) {
                if let Some(agent) = state.store.agent(&id).await? {
                    if caller.owns(&agent) {
                        mine.push(a);
                    }
                }
            }
        }
        list = mine;
    }
    Ok(ApiJson(ApprovalList { approvals: list }))
}

/// The optional body of an approval's answer.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// Why, for the record (at most 1000 characters).
    pub comment: Option<String>,
}

fn answer_comment(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let r: AnswerRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request("request.invalid_body", e.to_string()))?;
    Ok(r.comment)
}

/// Approve a held call: the agent may then make that exact call once.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "decisions", request_body(content = Option<AnswerRequest>), params(("id" = String, Path, description = "approval id")),
    responses((status = 200, body = ApprovalRecord), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<ApprovalRecord>, ApiError> {
    let comment = answer_comment(&body)?;
    Ok(ApiJson(state.answer_approval_with(&caller, &id, true, comment.as_deref()).await?))
}

/// Deny a held call.
#[utoipa::path(post, path = "/v1/approvals/{id}/deny", tag = "decisions", request_body(content = Option<AnswerRequest>), params(("id" = String, Path, description = "approval id")),
    responses((status = 200, body = ApprovalRecord), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<ApprovalRecord>, ApiError> {
    let comment = answer_comment(&body)?;
    Ok(ApiJson(state.answer_approval_with(&caller, &id, false, comment.as_deref()).await?))
}

/// The active policy set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicySetView {
    /// The stored version number.
    pub version: i64,
    /// SHA-256 of the text.
    pub sha256: String,
    /// The ids of its policies, in source order.
    pub ids: Vec<String>,
    /// The Cedar text.
    pub text: String,
}

/// What validating a policy set found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Validation {
    /// Whether the set would be accepted.
    pub valid: bool,
    /// Every problem, with line, column and policy id where known.
    pub problems: Vec<String>,
    /// Its policy ids, when valid.
    pub ids: Vec<String>,
}

fn view(version: i64, set: &ValidatedPolicySet) -> PolicySetView {
    PolicySetView {
        version,
        sha256: set.version().to_owned(),
        ids: set.ids().map(str::to_owned).collect(),
        text: set.text().to_owned(),
    }
}

fn policy_text(body: &Bytes) -> Result<String, ApiError> {
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("policy.invalid", "the policy text is not UTF-8"))
}

/// The active organisation policy (Cedar). Admins and auditors.
#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, body = PolicySetView), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn get_policies(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<PolicySetView>, ApiError> {
    if !(caller.has_role(Role::Admin) || caller.has_role(Role::Auditor)) {
        return Err(ApiError::forbidden("reading policies needs the `admin` or `auditor` role"));
    }
    let (version, set) = state.policy.current().ok_or_else(|| ApiError::internal("no policy set is active"))?;
    Ok(ApiJson(view(version, &set)))
}

/// Replace the active policy set atomically (Cedar text as the body). It is validated against the
/// schema first; a set that fails is refused and the old one keeps deciding. Admin only.
#[utoipa::path(put, path = "/v1/policies", tag = "policies", request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = PolicySetView), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn put_policies(
    State(state): State<AppState>,
    caller: Caller,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<PolicySetView>, ApiError> {
    caller.require_admin("replacing the policy set")?;
    let (version, set) = state.replace_policies(&caller.principal(), &policy_text(&body)?).await?;
    Ok(ApiJson(view(version, &set)))
}

/// Validate a policy set without installing it.
#[utoipa::path(post, path = "/v1/policies/validate", tag = "policies", request_body(content = String, content_type = "text/plain"),
    responses((status = 200, body = Validation)), security(("bearer" = [])))]
pub async fn validate_policies(_caller: Caller, body: Bytes) -> Result<ApiJson<Validation>, ApiError> {
    Ok(ApiJson(match ValidatedPolicySet::parse(&policy_text(&body)?) {
        Ok(set) => Validation { valid: true, problems: Vec::new(), ids: set.ids().map(str::to_owned).collect() },
        Err(e) => Validation { valid: false, problems: problems(&e), ids: Vec::new() },
    }))
}

use mandate_engine::policy::problems;

/// `GET /v1/tools` answers this.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ToolList {
    /// The catalogue, by name.
    pub tools: Vec<ToolRecord>,
}

/// The tool catalogue.
#[utoipa::path(get, path = "/v1/tools", tag = "policies", responses((status = 200, body = ToolList)), security(("bearer" = [])))]
pub async fn tools(State(state): State<AppState>, _caller: Caller) -> Result<ApiJson<ToolList>, ApiError> {
    Ok(ApiJson(ToolList { tools: state.decisions.tools().await? }))
}

/// Classify a tool: its data class, risk level and server environment. Admin only.
#[utoipa::path(put, path = "/v1/tools/{server}/{tool}", tag = "policies", request_body = Classification,
    params(("server" = String, Path, description = "MCP server"), ("tool" = String, Path, description = "tool name")),
    responses((status = 200, body = ToolRecord), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn classify(
    State(state): State<AppState>,
    caller: Caller,
    Path((server, tool)): Path<(String, String)>,
    ApiJson(c): ApiJson<Classification>,
) -> Result<ApiJson<ToolRecord>, ApiError> {
    caller.require_admin("classifying tools")?;
    let name = ToolName::parse(&format!("{server}/{tool}"))
        .map_err(|e| ApiError::bad_request("tool.invalid_name", e.to_string()))?;
    Ok(ApiJson(state.classify_tool(&caller.principal(), &name, &c, "api").await?))
}
