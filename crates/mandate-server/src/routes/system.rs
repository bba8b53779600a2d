//! `/healthz` and `/openapi.json`.

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

/// The OpenAPI document, rendered once at start.
pub fn openapi_handler(doc: Arc<String>) -> impl Fn() -> std::future::Ready<axum::response::Response> + Clone {
    move || std::future::ready(([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()).into_response())
}
