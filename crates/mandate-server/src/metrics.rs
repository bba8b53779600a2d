//! The per-request middleware: request ids, the request span, and request counts and latency per
//! route (into the engine's metrics registry), and `GET /metrics`.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The header carrying the request id, read from the client when it sends a sane one.
pub const REQUEST_ID: &str = "x-request-id";

/// Counts and times every routed request under its route template (`/v1/agents/{id}`, never the raw
/// path, so that label cardinality stays bounded).
pub async fn track(
    State(metrics): State<Arc<mandate_engine::metrics::Metrics>>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let route = matched.map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    metrics.request(&method, &route, response.status().as_u16(), elapsed);
    response
}

/// Gives every request an id (the client's `x-request-id` when it is short and printable), a tracing
/// span carrying it, and echoes it in the response.
pub async fn request_context(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let start = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    // One line per request that failed (`info` for a client error, `warn` for a fault); a request
    // that succeeded is logged at `debug` only: the events that matter (a decision, an issuance, a
    // revocation) log a line of their own, and `/metrics` counts every request.
    span.in_scope(|| {
        let status = response.status().as_u16();
        let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
        match status {
            500.. => tracing::warn!(status, elapsed_ms, "request finished"),
            400..=499 => tracing::info!(status, elapsed_ms, "request finished"),
            _ => tracing::debug!(status, elapsed_ms, "request finished"),
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// A request id: 24 hex digits, unique in this process (a counter) and across restarts (a random
/// prefix drawn once). Not a secret, so it costs no system call per request.
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::LazyLock;
    static PREFIX: LazyLock<u32> = LazyLock::new(|| {
        use rand_core::{OsRng, RngCore};
        OsRng.next_u32()
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{:08x}{:016x}", *PREFIX, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
}
