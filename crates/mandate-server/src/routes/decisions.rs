//! `/v1/authorize`, `/v1/approvals`, `/v1/policies` and `/v1/tools`.

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use mandate_core::human::Role;
use mandate_core::pattern::ToolName;
use mandate_engine::catalogue::Classification;
use mandate_engine::decision::{AuthorizeRequest, DecisionResponse};
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

/// Decide one tool call: token, proof of possession, revocation, chain, scope, budget and policy.
/// A deny is a 200 with `decision: deny` and its reasons; a malformed request is a 400.
#[utoipa::path(post, path = "/v1/authorize", tag = "decisions", request_body = AuthorizeRequest, params(ExplainQuery),
    responses((status = 200, body = DecisionResponse), (status = 400, body = crate::error::Problem)))]
pub async fn authorize(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ExplainQuery>,
    ApiJson(request): ApiJson<AuthorizeRequest>,
) -> ApiJson<DecisionResponse> {
    ApiJson(state.authorize(&request, q.explain).await)
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

/// Approve a held call: the agent may then make that exact call once.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "decisions", params(("id" = String, Path, description = "approval id")),
    responses((status = 200, body = ApprovalRecord), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<ApprovalRecord>, ApiError> {
    Ok(ApiJson(state.answer_approval(&caller, &id, true).await?))
}

/// Deny a held call.
#[utoipa::path(post, path = "/v1/approvals/{id}/deny", tag = "decisions", params(("id" = String, Path, description = "approval id")),
    responses((status = 200, body = ApprovalRecord), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<ApprovalRecord>, ApiError> {
    Ok(ApiJson(state.answer_approval(&caller, &id, false).await?))
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
    body: Bytes,
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
