//! Mandate's MCP gateway: the point of enforcement where agents actually call tools.
//!
//! `/mcp/{server}` speaks MCP Streamable HTTP to agents (the stateless revision 2026-07-28 and the
//! session-based 2025-11-25) and forwards to the upstream `{server}` over stdio or Streamable HTTP.
//! Every request carries a mandate and a DPoP proof bound to it, verified by the engine's one
//! [`Engine::verify_presented`]; every `tools/call` is one [`Engine::decide`], with the resource
//! derived from the call's arguments by the tool's configured template. The gateway decides
//! nothing itself: it frames, authenticates through the engine, filters what the engine says a
//! chain may see, forwards, and records outcomes.
//!
//! - [`handler`]: the HTTP front (revisions, headers, authentication, dispatch);
//! - [`upstream`]: the upstream transports, supervised, with deadlines;
//! - [`jsonrpc`]: framing on raw JSON (what is forwarded is the bytes received);
//! - [`template`]: resources from arguments;
//! - [`config`]: upstreams and their credentials.
#![forbid(unsafe_code)]
// Handlers answer with whole responses as their error values; boxing them buys nothing here.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod handler;
pub mod jsonrpc;
pub mod template;
pub mod upstream;

use config::{GatewaySettings, Transport, UpstreamSpec};
use mandate_core::pattern::ToolName;
use mandate_engine::pins::SeenTool;
use mandate_engine::Engine;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upstream::{Upstream, UpstreamError};

/// The gateway: its upstreams, their tool lists, and the sessions of 2025-11-25 clients.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    settings: GatewaySettings,
    servers: HashMap<String, Server>,
    sessions: Mutex<HashMap<String, Session>>,
    /// `Host` values accepted.
    hosts: Vec<String>,
    /// `http` or `https`: the scheme agents call the gateway with (the issuer's).
    scheme: String,
    /// Every credential configured for an upstream, scrubbed from what flows back.
    secrets: Vec<String>,
}

struct Server {
    spec: UpstreamSpec,
    upstream: Upstream,
    tools: tokio::sync::Mutex<Option<Arc<ToolList>>>,
}

/// An upstream's tool list as last read.
pub(crate) struct ToolList {
    fetched: Instant,
    generation: u64,
    pub(crate) tools: Vec<UpstreamTool>,
}

/// One tool as the upstream defines it.
pub(crate) struct UpstreamTool {
    /// Its name at the upstream.
    pub(crate) name: String,
    /// `server/tool`, when the name is one Mandate can govern.
    pub(crate) full: Option<ToolName>,
    /// The definition, as received.
    pub(crate) raw: Box<RawValue>,
    /// The hash of its pinned members.
    pub(crate) sha256: Option<String>,
}

/// A 2025-11-25 session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) server: String,
    pub(crate) protocol_version: String,
    /// The thumbprint of the key whose proofs opened it: only that key's proofs may use it.
    pub(crate) key_thumbprint: String,
    pub(crate) last_used: Instant,
}

impl Gateway {
    /// Starts the upstreams (stdio servers are spawned now and supervised) for `engine`, whose
    /// issuer names the gateway's public URL; `listen` is the listener's address (a loopback
    /// listener also accepts `localhost` names).
    pub fn start(engine: Engine, settings: GatewaySettings, listen: SocketAddr) -> Result<Self, String> {
        let issuer = engine.settings.mandates.issuer.clone();
        let scheme = if issuer.starts_with("https://") { "https" } else { "http" }.to_owned();
        let mut hosts: Vec<String> = settings.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        if let Some(authority) = issuer.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or(rest)) {
            hosts.push(authority.to_ascii_lowercase());
        }
        if listen.ip().is_loopback() {
            let port = listen.port();
            hosts.extend([format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]);
        }
        let mut servers = HashMap::new();
        let mut secrets = Vec::new();
        for spec in &settings.servers {
            let upstream = match &spec.transport {
                Transport::Stdio { command, env } => {
                    let own: Vec<String> =
                        env.iter().flat_map(|(_, s)| s.secrets.iter().cloned()).filter(|s| s.len() >= 4).collect();
                    secrets.extend(own.iter().cloned());
                    let env = env.iter().map(|(k, s)| (k.clone(), s.value.clone())).collect();
                    Upstream::Stdio(upstream::stdio::StdioUpstream::start(
                        &spec.name,
                        command.clone(),
                        env,
                        spec.timeout,
                        settings.max_result_bytes,
                        settings.max_json_depth,
                        own,
                    ))
                }
                Transport::Http { url, headers } => {
                    secrets.extend(headers.iter().flat_map(|(_, s)| s.secrets.iter().cloned()));
                    let headers: Vec<(String, String)> =
                        headers.iter().map(|(k, s)| (k.clone(), s.value.clone())).collect();
                    Upstream::Http(Arc::new(
                        upstream::http::HttpUpstream::new(
                            &spec.name,
                            url,
                            &headers,
                            spec.timeout,
                            settings.max_result_bytes,
                            settings.max_json_depth,
                        )
                        .map_err(|e| format!("gateway server `{}`: {e}", spec.name))?,
                    ))
                }
            };
            servers.insert(
                spec.name.clone(),
                Server { spec: spec.clone(), upstream, tools: tokio::sync::Mutex::new(None) },
            );
        }
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Ok(Self {
            inner: Arc::new(Inner { engine, settings, servers, sessions: Mutex::default(), hosts, scheme, secrets }),
        })
    }

    /// The routes: `/mcp/{server}` and its RFC 9728 metadata.
    pub fn router(&self) -> axum::Router {
        use axum::routing::{get, post};
        axum::Router::new()
            .route("/mcp/{server}", post(handler::post).get(handler::get).delete(handler::delete))
            .route("/.well-known/oauth-protected-resource/mcp/{server}", get(handler::resource_metadata))
            .with_state(self.clone())
    }

    /// The names of the servers behind the gateway.
    pub fn server_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.servers.keys().cloned().collect();
        names.sort();
        names
    }

    /// Stops every upstream (stdio children are killed).
    pub fn shutdown(&self) {
        for s in self.inner.servers.values() {
            s.upstream.shutdown();
        }
    }

    /// Reads every upstream's tool list once (pinning what is new), so that a change made while
    /// Mandate was down is caught before any agent asks. Failures are logged; the lists are read
    /// again on demand.
    pub async fn warm(&self) {
        for name in self.server_names() {
            if let Some(server) = self.inner.servers.get(&name) {
                match self.tool_list(server).await {
                    Ok(list) => tracing::info!(server = %name, tools = list.tools.len(), "gateway upstream ready"),
                    Err(e) => tracing::warn!(server = %name, error = %e, "gateway upstream not ready yet"),
                }
            }
        }
    }

    /// The upstream's tool list, read again when older than its TTL or when it said it changed;
    /// new and changed definitions go through the engine's pins.
    pub(crate) async fn tool_list(&self, server: &Server) -> Result<Arc<ToolList>, UpstreamError> {
        let mut cached = server.tools.lock().await;
        let generation = server.upstream.list_generation();
        if let Some(list) = cached.as_ref() {
            if list.generation == generation && list.fetched.elapsed() < server.spec.list_ttl {
                return Ok(list.clone());
            }
        }
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _page in 0..50 {
            let params = cursor.as_ref().map(|c| serde_json::json!({"cursor": c}).to_string());
            let raw = server.upstream.request("tools/list", params.as_deref()).await?;
            #[derive(serde::Deserialize)]
            struct Page {
                tools: Vec<Box<RawValue>>,
                #[serde(rename = "nextCursor")]
                next_cursor: Option<String>,
            }
            let page: Page = serde_json::from_str(raw.get())
                .map_err(|e| UpstreamError::Malformed(format!("tools/list result: {e}")))?;
            for raw in page.tools {
                #[derive(serde::Deserialize)]
                struct Named {
                    name: String,
                }
                let Ok(Named { name }) = serde_json::from_str::<Named>(raw.get()) else {
                    tracing::warn!(server = %server.spec.name, "a tool without a name; not offered");
                    continue;
                };
                let full = ToolName::parse(&format!("{}/{name}", server.spec.name)).ok();
                if full.is_none() {
                    tracing::warn!(server = %server.spec.name, tool = %name.escape_debug(), "a tool name Mandate cannot govern; not offered");
                }
                let sha256 = mandate_engine::pins::definition_sha256(raw.get()).ok();
                tools.push(UpstreamTool { name, full, raw, sha256 });
            }
            match page.next_cursor {
                Some(c) if !c.is_empty() => cursor = Some(c),
                _ => break,
            }
        }
        let seen: Vec<SeenTool> = tools
            .iter()
            .filter_map(|t| t.full.clone().map(|name| SeenTool { name, raw: t.raw.get().to_owned() }))
            .collect();
        if let Err(e) = self.inner.engine.pin_definitions(&seen).await {
            // Pins could not be written: nothing new is shown (only what was pinned before).
            tracing::error!(server = %server.spec.name, error = ?e, "could not record tool pins");
        }
        let list = Arc::new(ToolList { fetched: Instant::now(), generation, tools });
        *cached = Some(list.clone());
        Ok(list)
    }

    /// Whether `tool`'s definition, as read, is the pinned one.
    pub(crate) fn pinned(&self, tool: &UpstreamTool) -> bool {
        let (Some(full), Some(sha)) = (&tool.full, &tool.sha256) else { return false };
        self.inner.engine.pins.is_current(full.as_str(), sha)
    }

    /// Replaces every configured credential in `text` (raw or JSON-escaped) by `[redacted]`.
    pub(crate) fn scrub(&self, text: String) -> (String, bool) {
        let mut out = text;
        let mut hit = false;
        for secret in &self.inner.secrets {
            let escaped = jsonrpc::string(secret);
            let escaped = &escaped[1..escaped.len() - 1];
            for needle in [secret.as_str(), escaped] {
                if out.contains(needle) {
                    out = out.replace(needle, "[redacted]");
                    hit = true;
                }
            }
        }
        (out, hit)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn open_session(&self, session: Session) -> String {
        use base64::Engine as _;
        use rand_core::RngCore as _;
        let mut bytes = [0u8; 24];
        rand_core::OsRng.fill_bytes(&mut bytes);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut sessions = self.sessions();
        let idle = self.inner.settings.session_idle;
        sessions.retain(|_, s| s.last_used.elapsed() < idle);
        if sessions.len() >= self.inner.settings.max_sessions {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), session);
        id
    }

    pub(crate) fn session(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions();
        let idle = self.inner.settings.session_idle;
        match sessions.get_mut(id) {
            Some(s) if s.last_used.elapsed() < idle => {
                s.last_used = Instant::now();
                Some(s.clone())
            }
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub(crate) fn close_session(&self, id: &str) -> bool {
        self.sessions().remove(id).is_some()
    }
}

/// How long a request took, in whole milliseconds.
pub(crate) fn millis_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The default deadline of an upstream request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default reuse of an upstream's tool list.
pub const DEFAULT_LIST_TTL: Duration = Duration::from_secs(10);
