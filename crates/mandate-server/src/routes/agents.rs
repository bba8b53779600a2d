//! `/v1/agents`: the registry and the agent lifecycle.

use crate::auth::Caller;
use crate::error::{ApiBytes, ApiError, ApiJson, ApiQuery};
use crate::routes::agent_id;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use mandate_core::agent::{AgentPatch, AgentSpec, AgentState, Environment};
use mandate_core::event::Event;
use mandate_core::id::Principal;
use mandate_core::lifecycle::LifecycleAction;
use mandate_engine::registry::{AgentView, LifecycleRequest};
use mandate_store::{AgentFilter, AgentVersion, EventFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Filters for `GET /v1/agents`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only agents owned by this principal (`user:alice@example.org`).
    owner: Option<String>,
    /// Only agents in this environment.
    environment: Option<Environment>,
    /// Only agents in this state.
    state: Option<AgentState>,
}

/// `GET /v1/agents` answers this.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    /// The agents, ordered by id.
    pub agents: Vec<AgentView>,
}

/// An agent's recorded history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AgentHistory {
    /// Every version, oldest first: who changed what, when, before and after.
    pub versions: Vec<AgentVersion>,
    /// Every event about the agent, oldest first.
    pub events: Vec<Event>,
}

/// Register an agent (the joiner event). Needs the `admin` role.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = AgentSpec,
    responses((status = 201, body = AgentView), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 409, description = "an agent with this id exists", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(spec): ApiJson<AgentSpec>,
) -> Result<impl IntoResponse, ApiError> {
    let view = state.register_agent(&caller, spec, state.clock.now()).await?;
    let location = format!("/v1/agents/{}", view.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], ApiJson(view)))
}

/// List agents. Admins, auditors and approvers see all; other humans see the agents they own.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(ListQuery),
    responses((status = 200, body = AgentList), (status = 400, body = crate::error::Problem),
              (status = 401, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<ApiJson<AgentList>, ApiError> {
    let owner = q
        .owner
        .as_deref()
        .map(Principal::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("request.invalid_query", e.to_string()))?;
    let owner = match (&caller, caller.reads_everything()) {
        (_, true) => owner,
        (Caller::Human(h), false) => Some(h.principal.clone()),
        (Caller::Admin, false) => owner,
    };
    let filter = AgentFilter { owner, environment: q.environment, state: q.state };
    let agents = state.store.agents(&filter).await?;
    Ok(ApiJson(AgentList { agents: state.views(&agents, state.clock.now()).await? }))
}

/// Show one agent.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<AgentView>, ApiError> {
    let agent = state.agent_or_404(&agent_id(&id)?).await?;
    caller.require_reader_of(&agent)?;
    Ok(ApiJson(state.view_now(&agent).await?))
}

/// Change an agent (the mover event). Widening the boundary, moving environment, replacing the key,
/// changing owner or class puts the agent up for review until it is certified. Needs `admin`.
#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents", request_body = AgentPatch,
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 400, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
              (status = 409, description = "retired, or changed concurrently", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<AgentPatch>,
) -> Result<ApiJson<AgentView>, ApiError> {
    Ok(ApiJson(state.update_agent(&caller, &agent_id(&id)?, patch, state.clock.now()).await?))
}

/// An agent's full history: every version and every event.
#[utoipa::path(get, path = "/v1/agents/{id}/history", tag = "agents", params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentHistory), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<AgentHistory>, ApiError> {
    let id = agent_id(&id)?;
    let agent = state.agent_or_404(&id).await?;
    caller.require_reader_of(&agent)?;
    let versions = state.store.agent_history(&id).await?;
    let events = state.store.events(&EventFilter { agent: Some(id), limit: 10_000, ..EventFilter::default() }).await?;
    Ok(ApiJson(AgentHistory { versions, events }))
}

async fn act(
    state: AppState,
    caller: Caller,
    id: String,
    action: LifecycleAction,
    body: Bytes,
) -> Result<ApiJson<AgentView>, ApiError> {
    // The body is optional: an empty one means no reason given.
    let request: LifecycleRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LifecycleRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("request.invalid_body", e.to_string()))?
    };
    Ok(ApiJson(state.lifecycle(&caller, &agent_id(&id)?, action, request.reason, state.clock.now()).await?))
}

/// Suspend an agent: its mandates are refused until it is resumed. Admin or owner.
#[utoipa::path(post, path = "/v1/agents/{id}/suspend", tag = "agents", request_body(content = Option<LifecycleRequest>),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<AgentView>, ApiError> {
    act(state, caller, id, LifecycleAction::Suspend, body).await
}

/// Resume a suspended agent. Admin only.
#[utoipa::path(post, path = "/v1/agents/{id}/resume", tag = "agents", request_body(content = Option<LifecycleRequest>),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, description = "retired or not suspended", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<AgentView>, ApiError> {
    act(state, caller, id, LifecycleAction::Resume, body).await
}

/// Retire an agent (the leaver event). Final. Admin or owner.
#[utoipa::path(post, path = "/v1/agents/{id}/retire", tag = "agents", request_body(content = Option<LifecycleRequest>),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<AgentView>, ApiError> {
    act(state, caller, id, LifecycleAction::Retire, body).await
}

/// Certify an agent: clears mover review reasons and restarts the recertification period. Admin or owner.
#[utoipa::path(post, path = "/v1/agents/{id}/certify", tag = "agents", request_body(content = Option<LifecycleRequest>),
    params(("id" = String, Path, description = "agent id")),
    responses((status = 200, body = AgentView), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn certify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> Result<ApiJson<AgentView>, ApiError> {
    act(state, caller, id, LifecycleAction::Certify, body).await
}
