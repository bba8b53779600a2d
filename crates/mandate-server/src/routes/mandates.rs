//! `/v1/mandates`, `/v1/chains`, `/oauth/token`, `/.well-known/*` and `/v1/keys`: granting,
//! delegating, revoking and inspecting mandates, and the keys that verify them.

use crate::auth::Caller;
use crate::error::{ApiBytes, ApiError, ApiJson, Source};
use crate::routes::human_id;
use crate::state::AppState;
use axum::body::Bytes as Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use mandate_core::human::Role;
use mandate_core::mandate::GrantRequest;
use mandate_engine::keys::KeyInfo;
use mandate_engine::mandates::{chain_tree, Granted, MandateView, OAuthError, TokenExchangeForm, TokenResponse};
use mandate_store::MandateSelector;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a revocation is made.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Why, for the record.
    pub reason: Option<String>,
}

/// What a revocation revoked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    /// The ids of the mandates revoked now (already revoked or expired ones are not repeated).
    pub revoked: Vec<String>,
}

/// Every key with its dates.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// Keys, oldest first.
    pub keys: Vec<KeyInfo>,
}

fn reason(body: &Body) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok("no reason given".to_owned());
    }
    let r: RevokeRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request("request.invalid_body", e.to_string()))?;
    let text = r.reason.unwrap_or_else(|| "no reason given".to_owned());
    if text.chars().count() > 1000 {
        return Err(ApiError::bad_request("request.invalid_body", "`reason` must be at most 1000 characters"));
    }
    Ok(text)
}

/// A human grants an agent a mandate for one task.
#[utoipa::path(post, path = "/v1/mandates", tag = "mandates", request_body = GrantRequest,
    responses((status = 201, body = Granted), (status = 400, body = crate::error::Problem),
              (status = 403, description = "not a human, or not permitted by policy", body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, description = "the agent is not active", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<GrantRequest>,
) -> Result<(StatusCode, ApiJson<Granted>), ApiError> {
    Ok((StatusCode::CREATED, ApiJson(state.grant(&caller, request).await?)))
}

/// Show a mandate: its scope, budget, state and revocation.
#[utoipa::path(get, path = "/v1/mandates/{id}", tag = "mandates", params(("id" = String, Path, description = "mandate id")),
    responses((status = 200, body = MandateView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<ApiJson<MandateView>, ApiError> {
    let m = state
        .store
        .mandate(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("mandate.not_found", format!("no mandate `{id}`")))?;
    if !state.may_read(&caller, &m.record).await? {
        return Err(ApiError::forbidden(format!("mandate `{id}` is not yours to read")));
    }
    let revoked_ancestor = state.revocations.revoked_in(&m.record).is_some();
    let mut view = MandateView::new(&m, state.now_secs(), revoked_ancestor);
    view.used_calls = state.used_calls_of(&m).await?;
    Ok(ApiJson(view))
}

/// Revoke a mandate and every mandate descending from it. The root human, an owner of an agent in
/// the chain, or an admin.
#[utoipa::path(post, path = "/v1/mandates/{id}/revoke", tag = "mandates", request_body(content = Option<RevokeRequest>),
    params(("id" = String, Path, description = "mandate id")),
    responses((status = 200, body = Revoked), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<ApiJson<Revoked>, ApiError> {
    let m = state
        .store
        .mandate(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("mandate.not_found", format!("no mandate `{id}`")))?;
    if !state.may_revoke(&caller, &m.record).await? {
        return Err(ApiError::forbidden(format!(
            "revoking mandate `{id}` needs the `admin` role, its root human, or ownership of an agent in its chain"
        )));
    }
    let revoked = state.revoke(&caller, MandateSelector::Subtree(id), reason(&body)?).await?;
    Ok(ApiJson(Revoked { revoked }))
}

/// A chain as a tree: who granted what, each delegation, the state of each mandate.
#[utoipa::path(get, path = "/v1/chains/{chain_id}", tag = "mandates", params(("chain_id" = String, Path, description = "the root mandate's id")),
    responses((status = 200, body = MandateView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn chain(
    State(state): State<AppState>,
    caller: Caller,
    Path(chain_id): Path<String>,
) -> Result<ApiJson<MandateView>, ApiError> {
    let mandates = state.store.chain(&chain_id).await?;
    let root = mandates
        .iter()
        .find(|m| m.record.parent_id.is_none())
        .ok_or_else(|| ApiError::not_found("chain.not_found", format!("no chain `{chain_id}`")))?;
    if !state.may_read(&caller, &root.record).await? {
        return Err(ApiError::forbidden(format!("chain `{chain_id}` is not yours to read")));
    }
    let used = state.used_calls(&mandates).await?;
    let tree = chain_tree(&mandates, state.now_secs(), &state.revocations, &used)
        .ok_or_else(|| ApiError::not_found("chain.not_found", format!("no chain `{chain_id}`")))?;
    Ok(ApiJson(tree))
}

/// Revoke a whole chain. The root human or an admin.
#[utoipa::path(post, path = "/v1/chains/{chain_id}/revoke", tag = "mandates", request_body(content = Option<RevokeRequest>),
    params(("chain_id" = String, Path, description = "the root mandate's id")),
    responses((status = 200, body = Revoked), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn revoke_chain(
    State(state): State<AppState>,
    caller: Caller,
    Path(chain_id): Path<String>,
    body: Body,
) -> Result<ApiJson<Revoked>, ApiError> {
    let root = state
        .store
        .mandate(&chain_id)
        .await?
        .filter(|m| m.record.parent_id.is_none())
        .ok_or_else(|| ApiError::not_found("chain.not_found", format!("no chain `{chain_id}`")))?;
    let is_root_human = matches!(&caller, Caller::Human(h) if h.principal == root.record.root);
    if !(is_root_human || caller.has_role(Role::Admin)) {
        return Err(ApiError::forbidden("revoking a chain needs the `admin` role or being the human who granted it"));
    }
    let revoked = state.revoke(&caller, MandateSelector::Chain(chain_id), reason(&body)?).await?;
    Ok(ApiJson(Revoked { revoked }))
}

/// Revoke everything a human granted. The human themself or an admin.
#[utoipa::path(post, path = "/v1/humans/{id}/revoke-mandates", tag = "mandates", request_body(content = Option<RevokeRequest>),
    params(("id" = String, Path, description = "human id")),
    responses((status = 200, body = Revoked), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn revoke_human(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Body,
) -> Result<ApiJson<Revoked>, ApiError> {
    let id = human_id(&id)?;
    let is_self = matches!(&caller, Caller::Human(h) if h.id == id);
    if !(is_self || caller.has_role(Role::Admin)) {
        return Err(ApiError::forbidden("revoking a human's mandates needs the `admin` role or being that human"));
    }
    let revoked = state.revoke(&caller, MandateSelector::Root(id.principal()), reason(&body)?).await?;
    Ok(ApiJson(Revoked { revoked }))
}

/// RFC 8693 token exchange: an agent delegates part of its mandate to a sub-agent. Form-encoded; the
/// parent agent's DPoP proof in the `DPoP` header; errors per RFC 6749 section 5.2.
#[utoipa::path(post, path = "/oauth/token", tag = "mandates",
    request_body(content = TokenExchangeForm, content_type = "application/x-www-form-urlencoded"),
    params(("DPoP" = String, Header, description = "proof of possession of the parent mandate's key (RFC 9449)")),
    responses((status = 200, body = TokenResponse), (status = 400, body = OAuthError), (status = 429, body = crate::error::Problem)))]
pub async fn token(
    State(state): State<AppState>,
    Source(source): Source,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> axum::response::Response {
    if let Err(wait) = state.refusals.admit(source, mandate_engine::clock::millis(state.clock.now())) {
        return crate::error::rate_limited_tarpit(&state.refusals, source, wait).await;
    }
    // The authorization code grant (MCP's authorization flow) is the web front door's.
    if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
        if pairs.iter().any(|(k, v)| k == "grant_type" && v == "authorization_code") {
            return match crate::web::oauth::single(pairs) {
                Ok(params) => crate::web::oauth::exchange_code(&state, &headers, &params).await,
                Err(e) => oauth_error(OAuthError {
                    error: "invalid_request".into(),
                    error_description: e,
                    code: "oauth.invalid_request".into(),
                }),
            };
        }
    }
    let form: TokenExchangeForm = match serde_urlencoded_form(&body) {
        Ok(f) => f,
        Err(e) => return oauth_error(e),
    };
    // Every `DPoP` header, so that the engine can refuse more than one (RFC 9449 section 4.3); a value
    // that is not text is passed on as it reads, and fails as a malformed proof.
    let dpop: Vec<String> =
        headers.get_all("dpop").iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect();
    let dpop: Vec<&str> = dpop.iter().map(String::as_str).collect();
    match state.delegate(form, &dpop, source).await {
        Ok(r) => ([("cache-control", "no-store")], axum::Json(r)).into_response(),
        Err(e) => oauth_error(e),
    }
}

/// A refused token exchange as RFC 6749 section 5.2 has it: 400 with the JSON error, no caching; a
/// fault inside the server is `500 server_error`, with nothing internal in the body.
fn oauth_error(e: OAuthError) -> axum::response::Response {
    let status = if e.error == "server_error" { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::BAD_REQUEST };
    (status, [("cache-control", "no-store")], axum::Json(e)).into_response()
}

fn serde_urlencoded_form(body: &Body) -> Result<TokenExchangeForm, OAuthError> {
    serde_urlencoded::from_bytes::<TokenExchangeForm>(body).map_err(|e| OAuthError {
        error: "invalid_request".into(),
        error_description: format!(
            "the body must be a form (`application/x-www-form-urlencoded`) with `grant_type`: {e}"
        ),
        code: "delegation.malformed_request".into(),
    })
}

/// The mandate signing keys (RFC 7517), for verifying mandates offline with any JWT library.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "mandates", responses((status = 200, description = "JWKS", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    ([("cache-control", "public, max-age=300")], axum::Json(state.keys.jwks(state.now_secs())))
}

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "mandates", responses((status = 200, body = Object)))]
pub async fn metadata(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    let m = &state.settings.mandates;
    let issuer = m.issuer.trim_end_matches('/');
    axum::Json(serde_json::json!({
        "issuer": m.issuer,
        "token_endpoint": m.token_endpoint(),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "grant_types_supported": ["authorization_code", "urn:ietf:params:oauth:grant-type:token-exchange"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": ["none"],
        "authorization_details_types_supported": [mandate_core::mandate::DETAIL_TYPE],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "mandate_endpoint": format!("{issuer}/v1/mandates"),
        "authorize_endpoint": format!("{issuer}/v1/authorize"),
    }))
}

/// List the signing keys. Admins and auditors.
#[utoipa::path(get, path = "/v1/keys", tag = "mandates", responses((status = 200, body = KeyList), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn keys(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<KeyList>, ApiError> {
    if !(caller.has_role(Role::Admin) || caller.has_role(Role::Auditor)) {
        return Err(ApiError::forbidden("listing keys needs the `admin` or `auditor` role"));
    }
    Ok(ApiJson(KeyList { keys: state.keys.list() }))
}

/// Rotate the signing key: a new key signs from now on; the old one keeps verifying until every
/// mandate it signed has expired. Admin only.
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "mandates", responses((status = 200, body = KeyList), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn rotate(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<KeyList>, ApiError> {
    caller.require_admin("rotating keys")?;
    let kid = state.keys.rotate(state.now_secs()).map_err(|e| ApiError::internal(e.to_string()))?;
    let event = mandate_core::event::NewEvent::new(
        "key.rotated",
        &caller.principal(),
        mandate_engine::clock::millis(state.clock.now()),
        &serde_json::json!({"kid": kid}),
    );
    state.store.append_event(event).await?;
    state.metrics.event("key.rotated");
    Ok(ApiJson(KeyList { keys: state.keys.list() }))
}
