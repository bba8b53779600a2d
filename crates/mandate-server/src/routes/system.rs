//! `/healthz`, `/readyz` and `/openapi.json`.

use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// `GET /healthz` answers this.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when the server is up.
    pub status: String,
    /// The server's version.
    pub version: String,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// Readiness: `200` only while the store answers and the ledger writer can take an append, so that a
/// load balancer sends no agent to a node whose every decision would be denied for want of a ledger.
/// `503` with `server.not_ready` otherwise, and `server.node_behind` when the node shares a database
/// and cannot confirm it has every change the other nodes made (see the engine's `feed`). Unlike `/healthz` (liveness: the process answers), a
/// node that is not ready should not be restarted for it: it recovers by itself when the fault clears.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = crate::error::Problem)))]
pub async fn readyz(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
) -> Result<axum::Json<Health>, crate::error::ApiError> {
    if let Err(behind) = state.engine.current() {
        tracing::warn!(reason = %behind.message, "not ready");
        return Err(crate::error::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "server.node_behind",
            behind.message,
        ));
    }
    match state.store.ready().await {
        Ok(()) => Ok(axum::Json(Health { status: "ready".into(), version: env!("CARGO_PKG_VERSION").into() })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Err(crate::error::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "server.not_ready",
                "the store cannot take an append now; the server's log says why",
            ))
        }
    }
}

/// The OpenAPI document, rendered once at start.
pub fn openapi_handler(doc: Arc<String>) -> impl Fn() -> std::future::Ready<axum::response::Response> + Clone {
    move || std::future::ready(([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()).into_response())
}
