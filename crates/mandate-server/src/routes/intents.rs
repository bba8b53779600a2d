//! The intent taxonomy and what each category's tasks have been seen to do: the organisation's
//! definition of "what this kind of task needs", from which drift is measured.

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_engine::behaviour::profile::ProfileView;
use mandate_engine::behaviour::taxonomy::CategorySpec;
use mandate_engine::intents::{DriftReset, IntentView};
use serde::Serialize;
use utoipa::ToSchema;

/// The taxonomy.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntentList {
    /// Every category, by name.
    pub categories: Vec<IntentView>,
}

/// Every intent category: what a task of each kind needs, and whether its drift signals reach
/// policy (`enforce`) or are only recorded (`learn`). Any authenticated caller.
#[utoipa::path(get, path = "/v1/intents", tag = "drift", responses((status = 200, body = IntentList),
    (status = 401, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> Result<ApiJson<IntentList>, ApiError> {
    Ok(ApiJson(IntentList { categories: state.intents() }))
}

/// Add or replace an intent category. Admin only; recorded as `intent.updated`.
#[utoipa::path(put, path = "/v1/intents/{category}", tag = "drift", request_body = CategorySpec,
    params(("category" = String, Path, description = "e.g. `hr.onboarding`")),
    responses((status = 200, body = IntentView), (status = 400, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(category): Path<String>,
    ApiJson(spec): ApiJson<CategorySpec>,
) -> Result<ApiJson<IntentView>, ApiError> {
    caller.require_admin("changing the intent taxonomy")?;
    Ok(ApiJson(state.put_intent(&caller.principal(), &category, spec).await?))
}

/// Remove an intent category: mandates naming it score `unknown_category` from then on. Admin
/// only; recorded as `intent.removed`.
#[utoipa::path(delete, path = "/v1/intents/{category}", tag = "drift",
    params(("category" = String, Path, description = "e.g. `hr.onboarding`")),
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(category): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin("changing the intent taxonomy")?;
    state.delete_intent(&caller.principal(), &category).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a category's tasks have been seen to do: tools, transitions between an agent's
/// consecutive tools, external destinations. Admins, auditors and approvers.
#[utoipa::path(get, path = "/v1/drift/{category}", tag = "drift",
    params(("category" = String, Path, description = "e.g. `hr.onboarding`")),
    responses((status = 200, body = ProfileView), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn profile(
    State(state): State<AppState>,
    caller: Caller,
    Path(category): Path<String>,
) -> Result<ApiJson<ProfileView>, ApiError> {
    if !caller.reads_everything() {
        return Err(mandate_engine::error::Error::forbidden(
            "only administrators, auditors and approvers see drift profiles",
        )
        .into());
    }
    Ok(ApiJson(state.drift_profile(&category)?))
}

/// Forget what a category learned: it starts cold again. Admin only; recorded as `drift.reset`.
#[utoipa::path(post, path = "/v1/drift/{category}/reset", tag = "drift",
    params(("category" = String, Path, description = "e.g. `hr.onboarding`")),
    responses((status = 200, body = DriftReset), (status = 403, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    Path(category): Path<String>,
) -> Result<ApiJson<DriftReset>, ApiError> {
    caller.require_admin("resetting a drift profile")?;
    Ok(ApiJson(state.reset_drift(&caller.principal(), &category).await?))
}
