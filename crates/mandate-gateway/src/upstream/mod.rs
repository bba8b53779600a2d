//! Upstream MCP servers: a child process over stdio, or a Streamable HTTP endpoint. Both speak
//! MCP 2025-11-25 towards the upstream (an `initialize` handshake, then requests), whatever
//! revision the agent speaks to the gateway, and both hand back the upstream's own bytes.
//!
//! Every request has a deadline ([`crate::config::UpstreamSpec::timeout`]): an upstream down, slow
//! or mute gives the agent a clear error in bounded time, never a hung client. Responses are
//! matched to requests by ids the gateway chose; a response with any other id (unsolicited, or
//! late after its deadline) is dropped and logged.

pub mod http;
pub mod stdio;

use serde_json::value::RawValue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The protocol revision the gateway speaks to upstreams.
pub const UPSTREAM_PROTOCOL: &str = "2025-11-25";

/// Why an upstream request has no result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No answer within the deadline.
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// Not reachable, or not running (restarting).
    #[error("the upstream is unavailable: {0}")]
    Unavailable(String),
    /// It answered with a JSON-RPC error (code, message; its data is not forwarded).
    #[error("the upstream answered error {code}: {message}")]
    Rpc { code: i64, message: String },
    /// Its answer is larger or deeper than the gateway forwards.
    #[error("the upstream's answer is over the limit: {0}")]
    TooLarge(String),
    /// Its answer is not JSON-RPC.
    #[error("the upstream's answer is malformed: {0}")]
    Malformed(String),
}

impl UpstreamError {
    /// The outcome's name in ledger events.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Rpc { .. } => "error",
            Self::TooLarge(_) => "too_large",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// A reached upstream.
pub enum Upstream {
    /// A supervised child process.
    Stdio(Arc<stdio::StdioUpstream>),
    /// A Streamable HTTP endpoint.
    Http(Arc<http::HttpUpstream>),
}

impl Upstream {
    /// Sends `method` with `params` (a JSON object, as raw text) and waits for its result.
    pub async fn request(&self, method: &str, params: Option<&str>) -> Result<Box<RawValue>, UpstreamError> {
        match self {
            Self::Stdio(s) => s.request(method, params).await,
            Self::Http(h) => h.request(method, params).await,
        }
    }

    /// A counter that moves whenever the upstream said its tool list changed.
    pub fn list_generation(&self) -> u64 {
        match self {
            Self::Stdio(s) => s.list_generation.load(Ordering::Acquire),
            Self::Http(_) => 0,
        }
    }

    /// Stops it (the child process is killed).
    pub fn shutdown(&self) {
        if let Self::Stdio(s) = self {
            s.shutdown();
        }
    }
}

/// Ids for requests to upstreams, unique per process.
pub(crate) fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The `initialize` request's params.
pub(crate) fn initialize_params() -> String {
    serde_json::json!({
        "protocolVersion": UPSTREAM_PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "mandate-gateway", "version": env!("CARGO_PKG_VERSION")},
    })
    .to_string()
}

/// A request line.
pub(crate) fn request_line(id: u64, method: &str, params: Option<&str>) -> String {
    match params {
        Some(p) => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{},"params":{p}}}"#, crate::jsonrpc::string(method)),
        None => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{}}}"#, crate::jsonrpc::string(method)),
    }
}

/// What a response from an upstream says.
pub enum Reply {
    /// The answer to request `id`.
    Response { id: Option<u64>, outcome: Result<Box<RawValue>, UpstreamError> },
    /// A request of the upstream's own (sampling, elicitation, roots, ping).
    Request { id: Box<RawValue>, method: String },
    /// A notification.
    Notification { method: String },
}

/// Reads one message from an upstream, within the limits.
pub fn read_reply(text: &str, max_depth: usize) -> Result<Reply, UpstreamError> {
    if crate::jsonrpc::depth_exceeds(text.as_bytes(), max_depth) {
        return Err(UpstreamError::TooLarge(format!("JSON nested deeper than {max_depth}")));
    }
    let m: crate::jsonrpc::Message =
        serde_json::from_str(text).map_err(|e| UpstreamError::Malformed(format!("not JSON-RPC: {e}")))?;
    if let Some(method) = m.method {
        return Ok(match m.id {
            Some(id) => Reply::Request { id, method },
            None => Reply::Notification { method },
        });
    }
    let id = m.id.as_ref().and_then(|id| id.get().parse::<u64>().ok());
    let outcome = match (m.result, m.error) {
        (Some(r), None) => Ok(r),
        (None, Some(e)) => {
            #[derive(serde::Deserialize)]
            struct E {
                code: i64,
                message: String,
            }
            match serde_json::from_str::<E>(e.get()) {
                Ok(e) => Err(UpstreamError::Rpc { code: e.code, message: e.message.chars().take(500).collect() }),
                Err(_) => Err(UpstreamError::Malformed("an error without code and message".into())),
            }
        }
        _ => Err(UpstreamError::Malformed("a response needs exactly one of result and error".into())),
    };
    Ok(Reply::Response { id, outcome })
}
