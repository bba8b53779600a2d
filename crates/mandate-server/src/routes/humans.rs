//! `/v1/humans`: development humans with API keys. In production humans arrive as OIDC ID tokens.

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson};
use crate::routes::human_id;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_core::human::{Human, HumanSpec, Role};
use mandate_engine::registry::CreatedHuman;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/humans` answers this.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HumanList {
    /// Humans, ordered by id.
    pub humans: Vec<Human>,
}

/// Create a human and its API key, shown once. Needs `admin`.
#[utoipa::path(post, path = "/v1/humans", tag = "humans", request_body = HumanSpec,
    responses((status = 201, body = CreatedHuman), (status = 400, body = crate::error::Problem),
              (status = 403, body = crate::error::Problem), (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(spec): ApiJson<HumanSpec>,
) -> Result<(StatusCode, ApiJson<CreatedHuman>), ApiError> {
    Ok((StatusCode::CREATED, ApiJson(state.create_human(&caller, spec, state.clock.now()).await?)))
}

/// List humans. Admins, auditors and approvers.
#[utoipa::path(get, path = "/v1/humans", tag = "humans",
    responses((status = 200, body = HumanList), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<HumanList>, ApiError> {
    if !caller.reads_everything() {
        return Err(ApiError::forbidden("listing humans needs the `admin`, `auditor` or `approver` role"));
    }
    Ok(ApiJson(HumanList { humans: state.store.humans().await? }))
}

/// Show one human: admins, auditors, approvers, and the human themself.
#[utoipa::path(get, path = "/v1/humans/{id}", tag = "humans", params(("id" = String, Path, description = "human id")),
    responses((status = 200, body = Human), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<Human>, ApiError> {
    let id = human_id(&id)?;
    let is_self = matches!(&caller, Caller::Human(h) if h.id == id);
    if !(is_self || caller.reads_everything() || caller.has_role(Role::Admin)) {
        return Err(ApiError::forbidden(format!("human `{id}` is not yours to read")));
    }
    let human = state
        .store
        .human(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("human.not_found", format!("no human `{id}`")))?;
    Ok(ApiJson(human))
}

/// Deactivate a human (a leaver): their keys stop working and their agents become orphans. Needs `admin`.
#[utoipa::path(post, path = "/v1/humans/{id}/deactivate", tag = "humans", params(("id" = String, Path, description = "human id")),
    responses((status = 200, body = Human), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn deactivate(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<Human>, ApiError> {
    Ok(ApiJson(state.deactivate_human(&caller, &human_id(&id)?, state.clock.now()).await?))
}
