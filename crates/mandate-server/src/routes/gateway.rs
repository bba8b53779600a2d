//! What the MCP gateway saw, for administrators: clients without a valid mandate (shadow agents),
//! and tool definitions pinned, changed or flagged, with their approval. The gateway's own routes
//! (`/mcp/{server}` and its RFC 9728 metadata) are in the `mandate-gateway` crate.

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::{Path, State};
use mandate_core::pattern::ToolName;
use mandate_engine::discovery::DiscoveredClient;
use mandate_engine::pins::PinDiff;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Clients seen at the gateway without a valid mandate.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiscoveredList {
    /// Most recently seen first.
    pub clients: Vec<DiscoveredClient>,
}

/// Clients that reached the gateway without a valid mandate (shadow agents). Admins and auditors.
#[utoipa::path(get, path = "/v1/discovered", tag = "gateway", responses((status = 200, body = DiscoveredList),
    (status = 403, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn discovered(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<DiscoveredList>, ApiError> {
    Ok(ApiJson(DiscoveredList { clients: state.discovered_clients(&caller)? }))
}

/// Every tool definition the gateway pinned.
#[derive(Debug, Serialize, ToSchema)]
pub struct PinList {
    /// By name.
    pub pins: Vec<PinDiff>,
}

/// Every pinned tool definition, with any changed one waiting for approval. Admin only.
#[utoipa::path(get, path = "/v1/tools/pins", tag = "gateway", responses((status = 200, body = PinList),
    (status = 403, body = crate::error::Problem)), security(("bearer" = [])))]
pub async fn pins(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<PinList>, ApiError> {
    Ok(ApiJson(PinList { pins: state.pin_diffs(&caller)? }))
}

fn tool_name(server: &str, tool: &str) -> Result<ToolName, ApiError> {
    ToolName::parse(&format!("{server}/{tool}")).map_err(|e| ApiError::bad_request("tool.invalid_name", e.to_string()))
}

/// A tool's pinned definition against the changed one waiting for approval. Admin only.
#[utoipa::path(get, path = "/v1/tools/{server}/{tool}/diff", tag = "gateway",
    params(("server" = String, Path, description = "MCP server"), ("tool" = String, Path, description = "tool name")),
    responses((status = 200, body = PinDiff), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn diff(
    State(state): State<AppState>,
    caller: Caller,
    Path((server, tool)): Path<(String, String)>,
) -> Result<ApiJson<PinDiff>, ApiError> {
    Ok(ApiJson(state.pin_diff(&caller, &tool_name(&server, &tool)?)?))
}

/// `POST /v1/tools/{server}/{tool}/approve`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveDefinition {
    /// The hash of the definition being approved, as the diff showed it: refused if another
    /// definition arrived since (optional, recommended).
    pub sha256: Option<String>,
}

/// Pin the changed (or flagged) definition of a tool: it is shown and callable again. Admin only.
#[utoipa::path(post, path = "/v1/tools/{server}/{tool}/approve", tag = "gateway", request_body = ApproveDefinition,
    params(("server" = String, Path, description = "MCP server"), ("tool" = String, Path, description = "tool name")),
    responses((status = 200, body = PinDiff), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path((server, tool)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<ApiJson<PinDiff>, ApiError> {
    let body: ApproveDefinition = if body.iter().all(u8::is_ascii_whitespace) {
        ApproveDefinition::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("request.invalid_body", e.to_string()))?
    };
    Ok(ApiJson(state.approve_pin(&caller, &tool_name(&server, &tool)?, body.sha256.as_deref()).await?))
}
