//! The HTTP front of `/mcp/{server}`: Host and Origin, framing, the protocol revision, the
//! credentials, then one of: a session opened, a tool list filtered by the engine, a call decided by
//! the engine and forwarded, or a refusal.
//!
//! Answers:
//! - malformed JSON-RPC: `400` with `-32700` (not JSON) or `-32600` (not a message, a batch, too deep);
//! - 2026-07-28 headers that disagree with the body: `400` with `-32020`; an unknown version: `400`
//!   with `-32022` and the supported ones;
//! - no mandate, or one that does not verify (token, proof, revocation): `401` with
//!   `WWW-Authenticate: DPoP ... resource_metadata="..."`; a chain whose agents may not act: `403`;
//! - a tool the mandate does not show (filtered, unknown, quarantined): `-32602`;
//! - a denied or held call: a `CallToolResult` with `isError: true`, the reason codes in its text
//!   and `{decision, reasons, ledger_seq, approval_id}` in `structuredContent`;
//! - anything the gateway does not mediate: `-32601`.

use crate::jsonrpc::{self, Message};
use crate::{millis_since, Gateway, Server, Session};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mandate_core::arguments::CanonicalArguments;
use mandate_core::event::NewEvent;
use mandate_engine::decision::{Call, Decision, FrontDoorRefusal, Presented, ProofBinding, Verdict};
use mandate_engine::discovery::Sighting;
use mandate_engine::mandates::verification::{Refusal, VerifiedPresentation};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// The stateless revision.
pub const MODERN: &str = "2026-07-28";
/// The session revisions, newest first.
pub const LEGACY: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
const CLIENT_CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";
const CLIENT_INFO_META: &str = "io.modelcontextprotocol/clientInfo";
const APPROVAL_META: &str = "mandate/approval_id";
/// Reason codes that mean the chain may not see the tool at all: such a call is answered like an
/// unknown tool (`-32602`), as the list never showed it.
const HIDDEN: &[&str] = &[
    "scope.tool_not_in_mandate",
    "scope.data_class_not_in_mandate",
    "scope.action_not_in_mandate",
    "chain.outside_boundary",
    "chain.environment_not_allowed",
];

/// The revision a request speaks.
enum Revision {
    Modern,
    Legacy { version: String, session: Option<(String, Session)> },
}

/// What the handler has about one request.
struct Request<'a> {
    gw: &'a Gateway,
    server: &'a Server,
    name: &'a str,
    headers: &'a HeaderMap,
    source: Option<IpAddr>,
    htu: String,
    msg: &'a Message,
    method: &'a str,
    params: Value,
    revision: Revision,
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn rpc_error(status: StatusCode, id: Option<&RawValue>, code: i64, message: &str, data: Option<Value>) -> Response {
    json_response(status, jsonrpc::error(id, code, message, data))
}

/// `GET /mcp/{server}`: the gateway opens no server-initiated stream.
pub async fn get() -> Response {
    let mut r = rpc_error(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        jsonrpc::METHOD_NOT_FOUND,
        "the gateway opens no server stream; POST requests",
        None,
    );
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    r
}

/// `GET /.well-known/oauth-protected-resource/mcp/{server}`: RFC 9728 metadata naming Mandate as
/// the authorization server.
pub async fn resource_metadata(State(gw): State<Gateway>, Path(server): Path<String>) -> Response {
    if !gw.inner.servers.contains_key(&server) {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "error_description": format!("no gateway server `{server}`")}).to_string(),
        );
    }
    let issuer = gw.inner.engine.settings.mandates.issuer.trim_end_matches('/').to_owned();
    let doc = json!({
        "resource": format!("{issuer}/mcp/{server}"),
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "dpop_bound_access_tokens_required": !gw.inner.engine.settings.mandates.allow_unbound,
        "resource_name": format!("Mandate gateway: {server}"),
    });
    json_response(StatusCode::OK, doc.to_string())
}

/// `DELETE /mcp/{server}`: ends a 2025-11-25 session (its owner's proof required).
pub async fn delete(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    let Some(server) = gw.inner.servers.get(&name) else { return no_server(&name) };
    if let Err(r) = gw.check_listener(&headers) {
        return r;
    }
    let Some(id) = header_str(&headers, "mcp-session-id") else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            jsonrpc::INVALID_REQUEST,
            "DELETE needs an Mcp-Session-Id",
            None,
        );
    };
    let Some(session) = gw.session(id).filter(|s| s.server == name) else {
        return rpc_error(StatusCode::NOT_FOUND, None, jsonrpc::INVALID_REQUEST, "no such session", None);
    };
    let source = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let msg = Message {
        jsonrpc: Some("2.0".into()),
        id: None,
        method: Some("session/delete".into()),
        params: None,
        result: None,
        error: None,
    };
    let req = Request {
        gw: &gw,
        server,
        name: &name,
        headers: &headers,
        source,
        htu: gw.htu(&headers, &name),
        msg: &msg,
        method: "session/delete",
        params: Value::Null,
        revision: Revision::Legacy {
            version: session.protocol_version.clone(),
            session: Some((id.to_owned(), session)),
        },
    };
    if let Err(r) = req.admit_and_record("gateway.session_closed", json!({"server": name})).await {
        return r;
    }
    gw.close_session(id);
    StatusCode::NO_CONTENT.into_response()
}

fn no_server(name: &str) -> Response {
    rpc_error(StatusCode::NOT_FOUND, None, jsonrpc::INVALID_REQUEST, &format!("no gateway server `{name}`"), None)
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Gateway {
    /// DNS rebinding: the `Host` must be one the gateway answers to, and an `Origin`, when a
    /// browser sends one, the gateway's own or a configured one.
    fn check_listener(&self, headers: &HeaderMap) -> Result<(), Response> {
        let host = header_str(headers, "host").map(str::to_ascii_lowercase);
        if !host.as_ref().is_some_and(|h| self.inner.hosts.contains(h)) {
            return Err(rpc_error(
                StatusCode::FORBIDDEN,
                None,
                jsonrpc::INVALID_REQUEST,
                "this Host is not one the gateway answers to",
                None,
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
            let own = format!("{}://{}", self.inner.scheme, host.unwrap_or_default());
            if origin != own && !self.inner.settings.allowed_origins.iter().any(|o| o.eq_ignore_ascii_case(&origin)) {
                return Err(rpc_error(
                    StatusCode::FORBIDDEN,
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "requests from this Origin are not accepted",
                    None,
                ));
            }
        }
        Ok(())
    }

    /// The URL the agent called (its `Host`, checked before): what its proof must name.
    fn htu(&self, headers: &HeaderMap, server: &str) -> String {
        let host = header_str(headers, "host").unwrap_or("").to_ascii_lowercase();
        format!("{}://{host}/mcp/{server}", self.inner.scheme)
    }

    fn resource_metadata_url(&self, server: &str) -> String {
        let issuer = self.inner.engine.settings.mandates.issuer.trim_end_matches('/');
        format!("{issuer}/.well-known/oauth-protected-resource/mcp/{server}")
    }
}

/// `POST /mcp/{server}`.
pub async fn post(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let Some(server) = gw.inner.servers.get(&name) else { return no_server(&name) };
    if let Err(r) = gw.check_listener(&headers) {
        return r;
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let status = e.status();
            return rpc_error(
                status,
                None,
                jsonrpc::INVALID_REQUEST,
                "the request body is over the limit or unreadable",
                Some(json!({"code": "request.too_large"})),
            );
        }
    };
    let msg = match jsonrpc::parse(&body, gw.inner.settings.max_json_depth) {
        Ok(m) => m,
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, None, e.code, &e.message, None),
    };
    let Some(method) = msg.method.as_deref() else {
        // A response to a request of ours: the gateway sends none, so there is nothing to match.
        return StatusCode::ACCEPTED.into_response();
    };
    let params: Value = match &msg.params {
        Some(p) => match serde_json::from_str(p.get()) {
            Ok(v) => v,
            Err(_) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    msg.id.as_deref(),
                    jsonrpc::INVALID_REQUEST,
                    "params are not an object",
                    None,
                )
            }
        },
        None => Value::Object(Default::default()),
    };
    let source = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let revision = match revision(&gw, &name, &headers, &msg, method, &params) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let req = Request {
        gw: &gw,
        server,
        name: &name,
        headers: &headers,
        source,
        htu: gw.htu(&headers, &name),
        msg: &msg,
        method,
        params,
        revision,
    };
    req.dispatch().await
}

/// Which revision the request speaks, checked: the 2026-07-28 ladder (envelope in `_meta`, headers
/// equal to the body, a version spoken here), or a 2025-11-25 session.
fn revision(
    gw: &Gateway,
    name: &str,
    headers: &HeaderMap,
    msg: &Message,
    method: &str,
    params: &Value,
) -> Result<Revision, Response> {
    let id = msg.id.as_deref();
    let version_header = header_str(headers, "mcp-protocol-version");
    let meta = params.get("_meta");
    if method == "initialize" {
        let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(LEGACY[0]);
        let version = if LEGACY.contains(&asked) { asked } else { LEGACY[0] };
        return Ok(Revision::Legacy { version: version.to_owned(), session: None });
    }
    let modern = version_header == Some(MODERN) || meta.is_some_and(|m| m.get(PROTOCOL_VERSION_META).is_some());
    if modern {
        let Some(meta) = meta.and_then(Value::as_object) else {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                jsonrpc::INVALID_PARAMS,
                "params._meta must carry the protocol version and client capabilities",
                None,
            ));
        };
        if !meta.contains_key(PROTOCOL_VERSION_META) || !meta.contains_key(CLIENT_CAPABILITIES_META) {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                jsonrpc::INVALID_PARAMS,
                "params._meta is missing the protocol version or client capabilities",
                None,
            ));
        }
        let body_version = meta.get(PROTOCOL_VERSION_META).and_then(Value::as_str);
        let mismatch = |what: &str| {
            rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                jsonrpc::HEADER_MISMATCH,
                &format!("the {what} header does not match the body"),
                Some(json!({"header": what})),
            )
        };
        if version_header.is_none() || version_header != body_version {
            return Err(mismatch("MCP-Protocol-Version"));
        }
        if header_str(headers, "mcp-method") != Some(method) {
            return Err(mismatch("Mcp-Method"));
        }
        let name_key = match method {
            "tools/call" | "prompts/get" => Some("name"),
            "resources/read" => Some("uri"),
            _ => None,
        };
        if let Some(key) = name_key {
            let body_name = params.get(key).and_then(Value::as_str);
            if body_name.is_none() || decode_header(header_str(headers, "mcp-name")).as_deref() != body_name {
                return Err(mismatch("Mcp-Name"));
            }
        }
        if body_version != Some(MODERN) {
            let supported: Vec<&str> = std::iter::once(MODERN).chain(LEGACY.iter().copied()).collect();
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
                "unsupported protocol version",
                Some(json!({"supported": supported, "requested": body_version})),
            ));
        }
        return Ok(Revision::Modern);
    }
    // 2025-11-25 and earlier: a session opened by `initialize`.
    let Some(session_id) = header_str(headers, "mcp-session-id") else {
        if let Some(v) = version_header.filter(|v| !LEGACY.contains(v)) {
            let supported: Vec<&str> = std::iter::once(MODERN).chain(LEGACY.iter().copied()).collect();
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
                "unsupported protocol version",
                Some(json!({"supported": supported, "requested": v})),
            ));
        }
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            jsonrpc::INVALID_REQUEST,
            "no Mcp-Session-Id: send `initialize` first, or speak 2026-07-28",
            None,
        ));
    };
    let Some(session) = gw.session(session_id).filter(|s| s.server == name) else {
        return Err(rpc_error(
            StatusCode::NOT_FOUND,
            id,
            jsonrpc::INVALID_REQUEST,
            "no such session (expired or closed): initialize again",
            None,
        ));
    };
    if let Some(v) = version_header {
        if v != session.protocol_version {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                jsonrpc::INVALID_REQUEST,
                "MCP-Protocol-Version is not the session's",
                None,
            ));
        }
    }
    Ok(Revision::Legacy { version: session.protocol_version.clone(), session: Some((session_id.to_owned(), session)) })
}

/// `Mcp-Name` may carry `=?base64?...?=` for values that are not plain header text.
fn decode_header(value: Option<&str>) -> Option<String> {
    use base64::Engine as _;
    let v = value?;
    match v.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(payload) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(payload).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(v.to_owned()),
    }
}

/// The credentials of a request: `Authorization: DPoP <mandate>` and exactly one `DPoP` proof.
enum Credentials<'a> {
    Present { token: &'a str, proof: &'a str },
    Missing(&'static str, String),
}

fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (auth.next(), auth.next()) else {
        return Credentials::Missing("token.missing", "no mandate: send `Authorization: DPoP <mandate>`".into());
    };
    let Some(value) = value.to_str().ok() else {
        return Credentials::Missing("token.malformed", "the Authorization header is not text".into());
    };
    // `Bearer` carries an unbound mandate (granted through the authorization flow where the
    // organisation allows it), with no proof; whether the mandate is unbound, and unbound mandates
    // allowed, is the engine's to check. A key-bound mandate needs a proof, and a proof goes with
    // `DPoP` only (RFC 9449 section 7.1).
    let (token, bearer) = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("dpop") => (token.trim(), false),
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => (token.trim(), true),
        _ => return Credentials::Missing("token.malformed", "the Authorization header is not `DPoP <mandate>`".into()),
    };
    if bearer && headers.contains_key("dpop") {
        return Credentials::Missing(
            "token.not_dpop_bound",
            "a DPoP-bound mandate is sent as `Authorization: DPoP <mandate>` with its `DPoP` proof, not as `Bearer`"
                .into(),
        );
    }
    let mut proofs = headers.get_all("dpop").iter();
    let proof = match (proofs.next(), proofs.next()) {
        (Some(p), None) => p.to_str().unwrap_or(""),
        (Some(_), Some(_)) => {
            return Credentials::Missing(
                "proof.multiple_headers",
                "exactly one DPoP header is accepted (RFC 9449 section 4.3)".into(),
            )
        }
        (None, _) => "",
    };
    Credentials::Present { token, proof }
}

impl Request<'_> {
    fn id(&self) -> Option<&RawValue> {
        self.msg.id.as_deref()
    }

    fn front_door(&self) -> String {
        format!("mcp/{}", self.name)
    }

    fn client_info(&self) -> (Option<String>, Option<String>) {
        let info =
            self.params.get("clientInfo").or_else(|| self.params.get("_meta").and_then(|m| m.get(CLIENT_INFO_META)));
        let field = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_str).map(str::to_owned);
        (field("name"), field("version"))
    }

    /// A `401` (or `403`) naming the reasons, with the metadata pointer; the client is recorded as
    /// discovered when no mandate verified.
    async fn unauthorized(
        &self,
        status: StatusCode,
        code: &str,
        message: &str,
        reasons: Value,
        discovered: bool,
    ) -> Response {
        if discovered {
            let (client_name, client_version) = self.client_info();
            let proof = header_str(self.headers, "dpop").unwrap_or("");
            self.gw
                .inner
                .engine
                .discovered(Sighting {
                    server: self.name.to_owned(),
                    key_thumbprint: mandate_core::jose::claimed_thumbprint(proof),
                    client_name,
                    client_version,
                    user_agent: header_str(self.headers, "user-agent").map(str::to_owned),
                    source: mandate_engine::refusals::source_key(self.source),
                    reason: code.to_owned(),
                })
                .await;
        }
        let error = if code.starts_with("proof.") { "invalid_dpop_proof" } else { "invalid_token" };
        let description =
            message.replace(['"', '\\'], "'").chars().filter(|c| !c.is_control()).take(300).collect::<String>();
        let mut www = format!(
            r#"DPoP algs="EdDSA", resource_metadata="{}", error="{error}", error_description="{description}""#,
            self.gw.resource_metadata_url(self.name)
        );
        if self.gw.inner.engine.settings.mandates.allow_unbound {
            www.push_str(&format!(r#", Bearer resource_metadata="{}""#, self.gw.resource_metadata_url(self.name)));
        }
        let mut r = rpc_error(status, self.id(), -32001, message, Some(json!({"code": code, "reasons": reasons})));
        if status == StatusCode::UNAUTHORIZED {
            if let Ok(v) = HeaderValue::from_str(&www) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }

    /// Checks the session's key (a 2025-11-25 session is used only with proofs of the key that
    /// opened it) and the per-source limit, then hands back the credentials.
    async fn presented(&self) -> Result<Presented<'_>, Response> {
        let now = mandate_engine::clock::millis(self.gw.inner.engine.clock.now());
        if let Err(wait) = self.gw.inner.engine.refusals.admit(self.source, now) {
            let close = self.gw.inner.engine.refusals.hold_429(self.source).await;
            let mut r = rpc_error(
                StatusCode::TOO_MANY_REQUESTS,
                self.id(),
                -32001,
                "too many refused requests from this address",
                Some(json!({"code": "request.rate_limited", "retry_after": wait})),
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            if close {
                r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return Err(r);
        }
        let (token, proof) = match credentials(self.headers) {
            Credentials::Present { token, proof } => (token, proof),
            Credentials::Missing(code, message) => {
                self.gw.inner.engine.refusals.count(self.source, code, now);
                return Err(self.unauthorized(StatusCode::UNAUTHORIZED, code, &message, json!([]), true).await);
            }
        };
        if let Revision::Legacy { session: Some((_, session)), .. } = &self.revision {
            // A session opened with an unbound mandate has no key (an empty thumbprint), and is used
            // with no proof.
            if mandate_core::jose::claimed_thumbprint(proof).unwrap_or_default() != session.key_thumbprint {
                return Err(rpc_error(
                    StatusCode::NOT_FOUND,
                    self.id(),
                    jsonrpc::INVALID_REQUEST,
                    "no such session for this key: initialize again",
                    None,
                ));
            }
        }
        Ok(Presented { token, proof, binding: ProofBinding { htm: "POST", htu: &self.htu }, source: self.source })
    }

    /// A refused presentation: `401` (`403` when the chain's agents may not act), the client
    /// discovered when no mandate verified.
    async fn refused_presentation(&self, refusal: &Refusal) -> Response {
        let first = refusal.reasons.first();
        let status = if refusal.step == "chain" { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
        let reasons = serde_json::to_value(&refusal.reasons).unwrap_or(Value::Null);
        self.unauthorized(
            status,
            first.map_or("token.malformed", |r| r.code.as_str()),
            first.map_or("refused", |r| r.message.as_str()),
            reasons,
            refusal.record.is_none(),
        )
        .await
    }

    /// A decision whose presentation failed (no mandate verified, a bad token or proof, a revoked
    /// mandate) is a `401`, not an answer of the tool's; `None` for any other decision.
    async fn refused_decision(&self, decision: &Decision) -> Option<Response> {
        let failed = decision.mandate_id.is_none()
            || decision
                .reasons
                .iter()
                .any(|r| r.code.starts_with("proof.") || r.code.starts_with("token.") || r.code == "mandate.revoked");
        if !failed {
            return None;
        }
        let first = decision.reasons.first();
        let reasons = serde_json::to_value(&decision.reasons).unwrap_or(Value::Null);
        Some(
            self.unauthorized(
                StatusCode::UNAUTHORIZED,
                first.map_or("token.malformed", |r| r.code.as_str()),
                first.map_or("refused", |r| r.message.as_str()),
                reasons,
                decision.mandate_id.is_none(),
            )
            .await,
        )
    }

    /// Verifies the presentation for a request that decides no call.
    async fn admit(&self) -> Result<VerifiedPresentation, Response> {
        let presented = self.presented().await?;
        match self.gw.inner.engine.admit(&presented, &self.front_door(), self.method).await {
            Ok(v) => Ok(v),
            Err(refusal) => Err(self.refused_presentation(&refusal).await),
        }
    }

    /// Records an admitted request; it is refused (`503`) when it cannot be.
    async fn record(&self, verified: &VerifiedPresentation, kind: &'static str, detail: Value) -> Result<(), Response> {
        if let Err(e) = self.gw.inner.engine.record_admitted(verified, kind, detail).await {
            tracing::error!(error = ?e, kind, "an admitted gateway request could not be recorded; refused");
            return Err(rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                self.id(),
                jsonrpc::INTERNAL_ERROR,
                "the request could not be recorded, so it is refused",
                Some(json!({"code": "internal.ledger_unavailable"})),
            ));
        }
        Ok(())
    }

    /// [`Request::admit`], then [`Request::record`].
    async fn admit_and_record(&self, kind: &'static str, detail: Value) -> Result<VerifiedPresentation, Response> {
        let verified = self.admit().await?;
        self.record(&verified, kind, detail).await?;
        Ok(verified)
    }

    fn ok(&self, result: String) -> Response {
        json_response(StatusCode::OK, jsonrpc::result(self.id(), &result))
    }

    fn modern(&self) -> bool {
        matches!(self.revision, Revision::Modern)
    }

    /// A result object with the 2026-07-28 members when the request speaks it.
    fn result_object(&self, mut v: Value, cacheable: bool) -> String {
        if self.modern() {
            if let Some(m) = v.as_object_mut() {
                m.insert("resultType".into(), json!("complete"));
                if cacheable {
                    // Lists depend on the mandate: private to the caller, and not reused.
                    m.insert("ttlMs".into(), json!(0));
                    m.insert("cacheScope".into(), json!("private"));
                }
            }
        }
        v.to_string()
    }

    fn capabilities(&self) -> Value {
        let mut c = json!({"tools": {"listChanged": false}});
        if self.server.spec.resources {
            c["resources"] = json!({});
        }
        if self.server.spec.prompts {
            c["prompts"] = json!({});
        }
        c
    }

    fn server_info(&self) -> Value {
        json!({"name": format!("mandate-gateway/{}", self.name), "version": env!("CARGO_PKG_VERSION")})
    }

    async fn dispatch(&self) -> Response {
        match self.method {
            "initialize" => self.initialize().await,
            "server/discover" => {
                if let Err(r) =
                    self.admit_and_record("gateway.request", json!({"server": self.name, "method": self.method})).await
                {
                    return r;
                }
                let supported: Vec<&str> = std::iter::once(MODERN).chain(LEGACY.iter().copied()).collect();
                let mut v = json!({"supportedVersions": supported, "capabilities": self.capabilities(),
                    "_meta": {"io.modelcontextprotocol/serverInfo": self.server_info()}});
                if let Some(m) = v.as_object_mut() {
                    m.insert("serverInfo".into(), self.server_info());
                }
                let out = self.result_object(v, true);
                self.ok(out)
            }
            "tools/list" => self.list().await,
            "tools/call" => self.call().await,
            "resources/read" if self.server.spec.resources => self.decided_method().await,
            "prompts/get" if self.server.spec.prompts => self.decided_method().await,
            "resources/list" if self.server.spec.resources => self.filtered_list().await,
            "prompts/list" if self.server.spec.prompts => self.filtered_list().await,
            "ping" => {
                match self.admit_and_record("gateway.request", json!({"server": self.name, "method": "ping"})).await {
                    Ok(_) => {
                        let out = self.result_object(json!({}), false);
                        self.ok(out)
                    }
                    Err(r) => r,
                }
            }
            m if m.starts_with("notifications/") && self.msg.id.is_none() => {
                match self.admit_and_record("gateway.request", json!({"server": self.name, "method": m})).await {
                    Ok(_) => StatusCode::ACCEPTED.into_response(),
                    Err(r) => r,
                }
            }
            m => {
                if let Err(r) = self
                    .admit_and_record(
                        "gateway.request",
                        json!({"server": self.name, "method": m, "refused": "not mediated"}),
                    )
                    .await
                {
                    return r;
                }
                if self.msg.id.is_none() {
                    return StatusCode::ACCEPTED.into_response();
                }
                rpc_error(
                    StatusCode::OK,
                    self.id(),
                    jsonrpc::METHOD_NOT_FOUND,
                    &format!("`{}` is not mediated by the Mandate gateway", m.escape_debug()),
                    None,
                )
            }
        }
    }

    async fn initialize(&self) -> Response {
        let Revision::Legacy { version, .. } = &self.revision else {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                self.id(),
                jsonrpc::INVALID_REQUEST,
                "initialize is not part of 2026-07-28",
                None,
            );
        };
        let (client_name, client_version) = self.client_info();
        let detail = json!({"server": self.name, "protocol_version": version, "client_name": client_name, "client_version": client_version});
        let verified = match self.admit_and_record("gateway.session_opened", detail).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let session = self.gw.open_session(Session {
            server: self.name.to_owned(),
            protocol_version: version.clone(),
            key_thumbprint: verified.stored.record.key_thumbprint.clone(),
            last_used: Instant::now(),
        });
        let result = json!({
            "protocolVersion": version,
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
            "instructions": "Tools behind the Mandate gateway: each call is decided against your mandate. A denied call returns its reasons; a held call returns an approval id to retry with in _meta[\"mandate/approval_id\"].",
        });
        let mut r = self.ok(result.to_string());
        if let Ok(v) = HeaderValue::from_str(&session) {
            r.headers_mut().insert("mcp-session-id", v);
        }
        r
    }

    async fn list(&self) -> Response {
        let verified = match self.admit().await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let engine = &self.gw.inner.engine;
        let list = match self.gw.tool_list(self.server).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(server = %self.name, error = %e, "tool list unavailable");
                None
            }
        };
        let mut shown = Vec::new();
        let mut hidden = 0usize;
        if let Some(list) = &list {
            for t in &list.tools {
                let visible = self.gw.pinned(t) && t.full.as_ref().is_some_and(|full| engine.shows(&verified, full));
                if visible {
                    shown.push(t);
                } else {
                    hidden += 1;
                }
            }
        }
        let names: Vec<&str> = shown.iter().map(|t| t.name.as_str()).collect();
        let detail = json!({"server": self.name, "shown": names, "hidden": hidden, "upstream": if list.is_some() { "ok" } else { "unavailable" }});
        if let Err(r) = self.record(&verified, "tools.listed", detail).await {
            return r;
        }
        if list.is_none() {
            return rpc_error(
                StatusCode::OK,
                self.id(),
                jsonrpc::INTERNAL_ERROR,
                "the upstream server is unavailable",
                Some(json!({"code": "gateway.upstream_unavailable"})),
            );
        }
        // The upstream's own bytes for each tool, in its order.
        self.list_answer("tools", shown.iter().map(|t| t.raw.get()), None)
    }

    /// A list result of the upstream's own entries, as bytes received: `{"<key>": [...]}`, the
    /// upstream's `nextCursor`, and for 2026-07-28 the cache hints (private to the caller, not
    /// reused: the list depends on the mandate); configured credentials scrubbed.
    fn list_answer<'e>(&self, key: &str, entries: impl Iterator<Item = &'e str>, next: Option<&str>) -> Response {
        let mut out = format!(r#"{{"{key}":["#);
        for (i, e) in entries.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(e);
        }
        out.push(']');
        if let Some(c) = next {
            out.push_str(&format!(r#","nextCursor":{}"#, jsonrpc::string(c)));
        }
        if self.modern() {
            out.push_str(r#","resultType":"complete","ttlMs":0,"cacheScope":"private""#);
        }
        out.push('}');
        let (out, _) = self.gw.scrub(out);
        self.ok(out)
    }

    async fn call(&self) -> Response {
        #[derive(Deserialize)]
        struct CallParams<'a> {
            name: String,
            #[serde(borrow)]
            arguments: Option<&'a RawValue>,
        }
        let raw_params = self.msg.params.as_deref().map_or("{}", RawValue::get);
        let Ok(params) = serde_json::from_str::<CallParams<'_>>(raw_params) else {
            return rpc_error(
                StatusCode::OK,
                self.id(),
                jsonrpc::INVALID_PARAMS,
                "tools/call needs a `name`, and `arguments` as an object",
                None,
            );
        };
        let arguments_text = params.arguments.map_or("{}", RawValue::get);
        if !arguments_text.trim_start().starts_with('{') {
            return rpc_error(
                StatusCode::OK,
                self.id(),
                jsonrpc::INVALID_PARAMS,
                "`arguments` must be an object",
                None,
            );
        }
        let approval_id =
            self.params.get("_meta").and_then(|m| m.get(APPROVAL_META)).and_then(Value::as_str).map(str::to_owned);
        let list = self.gw.tool_list(self.server).await;
        let tool = match &list {
            Ok(l) => l.tools.iter().find(|t| t.name == params.name),
            Err(_) => None,
        };
        let usable = tool.filter(|t| self.gw.pinned(t) && t.full.is_some());
        let Some(tool) = usable else {
            // Unknown, not governable or quarantined: refused like an unknown tool, and recorded.
            let why = match (&list, tool) {
                (Err(_), _) => "gateway.upstream_unavailable",
                (Ok(_), None) => "gateway.unknown_tool",
                (Ok(_), Some(_)) => "gateway.tool_quarantined",
            };
            let detail =
                json!({"server": self.name, "tool": params.name.chars().take(200).collect::<String>(), "refused": why});
            if let Err(r) = self.admit_and_record("gateway.call_refused", detail).await {
                return r;
            }
            if why == "gateway.upstream_unavailable" {
                return rpc_error(
                    StatusCode::OK,
                    self.id(),
                    jsonrpc::INTERNAL_ERROR,
                    "the upstream server is unavailable",
                    Some(json!({"code": why})),
                );
            }
            return rpc_error(
                StatusCode::OK,
                self.id(),
                jsonrpc::INVALID_PARAMS,
                &format!("unknown tool `{}`", params.name.escape_debug()),
                Some(json!({"code": why})),
            );
        };
        let Some(full) = tool.full.as_ref() else {
            return rpc_error(StatusCode::OK, self.id(), jsonrpc::INVALID_PARAMS, "unknown tool", None);
        };
        let presented = match self.presented().await {
            Ok(p) => p,
            Err(r) => return r,
        };
        // The arguments in canonical form; the resource from them, by the configured template.
        let arguments = match CanonicalArguments::parse(arguments_text) {
            Ok(a) => a,
            Err(e) => {
                return rpc_error(
                    StatusCode::OK,
                    self.id(),
                    jsonrpc::INVALID_PARAMS,
                    &e.to_string(),
                    Some(json!({"code": e.code()})),
                )
            }
        };
        let template = self.server.spec.tools.get(&tool.name).and_then(|t| t.resource.as_ref());
        let (resource, refusal) = match template.map(|t| t.fill(arguments.value())) {
            None => (None, None),
            Some(Ok(r)) => (Some(r), None),
            Some(Err(why)) => (
                None,
                Some(FrontDoorRefusal {
                    code: "gateway.resource_unresolved",
                    message: format!("the resource of `{full}` cannot be read from its arguments: {why}"),
                }),
            ),
        };
        let call = Call { tool: full.to_string(), arguments, resource, approval_id, refusal };
        let engine = &self.gw.inner.engine;
        let decision = engine.decide(&presented, &call, false).await;
        let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
        if decision.verdict != Verdict::Allow {
            if let Some(r) = self.refused_decision(&decision).await {
                return r;
            }
            if codes.iter().any(|c| HIDDEN.contains(c)) {
                return rpc_error(
                    StatusCode::OK,
                    self.id(),
                    jsonrpc::INVALID_PARAMS,
                    &format!("unknown tool `{}`", params.name.escape_debug()),
                    Some(refusal_content(&decision)),
                );
            }
            return self.ok(self.refused_result(&decision));
        }
        // Only the name and arguments go upstream: not the agent's `_meta`, nor anything else.
        let forwarded = format!(r#"{{"name":{},"arguments":{arguments_text}}}"#, jsonrpc::string(&tool.name));
        self.forward("tools/call", full, &forwarded, &decision).await
    }

    /// The refusal of a decided `resources/read` or `prompts/get` (no `isError` result exists for
    /// them): a presentation that failed is a 401, anything else `-32602` with the decision.
    async fn refused_method(&self, what: &str, decision: &Decision) -> Response {
        if let Some(r) = self.refused_decision(decision).await {
            return r;
        }
        let codes: Vec<&str> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
        let message = format!("Mandate refused {what}: {}", codes.join(", "));
        rpc_error(StatusCode::OK, self.id(), jsonrpc::INVALID_PARAMS, &message, Some(refusal_content(decision)))
    }

    /// `resources/read` and `prompts/get`: one decision each, tool `{server}/resources/read` with the
    /// URI as the resource, or `{server}/prompts/get` with `prompt://{server}/{name}`.
    async fn decided_method(&self) -> Response {
        let (tool, resource, forwarded, what) = match self.method {
            "resources/read" => {
                let Some(uri) = self.params.get("uri").and_then(Value::as_str) else {
                    return rpc_error(
                        StatusCode::OK,
                        self.id(),
                        jsonrpc::INVALID_PARAMS,
                        "resources/read needs a `uri`",
                        None,
                    );
                };
                (
                    format!("{}/resources/read", self.name),
                    uri.to_owned(),
                    json!({"uri": uri}),
                    format!("reading `{}`", uri.escape_debug()),
                )
            }
            _ => {
                let Some(name) = self.params.get("name").and_then(Value::as_str) else {
                    return rpc_error(
                        StatusCode::OK,
                        self.id(),
                        jsonrpc::INVALID_PARAMS,
                        "prompts/get needs a `name`",
                        None,
                    );
                };
                let arguments = self.params.get("arguments").cloned().unwrap_or_else(|| json!({}));
                (
                    format!("{}/prompts/get", self.name),
                    prompt_resource(self.name, name),
                    json!({"name": name, "arguments": arguments}),
                    format!("prompt `{}`", name.escape_debug()),
                )
            }
        };
        let Ok(full) = mandate_core::pattern::ToolName::parse(&tool) else {
            return rpc_error(StatusCode::OK, self.id(), jsonrpc::INVALID_PARAMS, "not a governable server", None);
        };
        let presented = match self.presented().await {
            Ok(p) => p,
            Err(r) => return r,
        };
        let forwarded = forwarded.to_string();
        let arguments = match CanonicalArguments::parse(&forwarded) {
            Ok(a) => a,
            Err(e) => {
                return rpc_error(
                    StatusCode::OK,
                    self.id(),
                    jsonrpc::INVALID_PARAMS,
                    &e.to_string(),
                    Some(json!({"code": e.code()})),
                )
            }
        };
        let approval_id =
            self.params.get("_meta").and_then(|m| m.get(APPROVAL_META)).and_then(Value::as_str).map(str::to_owned);
        let call = Call { tool: full.to_string(), arguments, resource: Some(resource), approval_id, refusal: None };
        let decision = self.gw.inner.engine.decide(&presented, &call, false).await;
        if decision.verdict != Verdict::Allow {
            return self.refused_method(&what, &decision).await;
        }
        self.forward(self.method, &full, &forwarded, &decision).await
    }

    /// `resources/list` and `prompts/list`: the upstream's list, each entry shown only when the
    /// chain could read it (the decision's scope steps, with the entry's resource).
    async fn filtered_list(&self) -> Response {
        let (key, tool) = match self.method {
            "resources/list" => ("resources", format!("{}/resources/read", self.name)),
            _ => ("prompts", format!("{}/prompts/get", self.name)),
        };
        let Ok(full) = mandate_core::pattern::ToolName::parse(&tool) else {
            return rpc_error(StatusCode::OK, self.id(), jsonrpc::INVALID_PARAMS, "not a governable server", None);
        };
        let verified = match self.admit().await {
            Ok(v) => v,
            Err(r) => return r,
        };
        let engine = &self.gw.inner.engine;
        let cursor = self.params.get("cursor").and_then(Value::as_str).map(|c| json!({"cursor": c}).to_string());
        let listed = self.server.upstream.request(self.method, cursor.as_deref()).await;
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            resources: Vec<Box<RawValue>>,
            #[serde(default)]
            prompts: Vec<Box<RawValue>>,
            #[serde(rename = "nextCursor")]
            next_cursor: Option<String>,
        }
        #[derive(Deserialize)]
        struct Entry {
            uri: Option<String>,
            name: Option<String>,
        }
        let page = listed
            .map_err(|e| e.to_string())
            .and_then(|raw| serde_json::from_str::<Page>(raw.get()).map_err(|e| e.to_string()));
        let mut shown: Vec<Box<RawValue>> = Vec::new();
        let mut hidden = 0usize;
        let mut next = None;
        let ok = page.is_ok();
        if let Ok(page) = page {
            next = page.next_cursor;
            for entry in if key == "resources" { page.resources } else { page.prompts } {
                let Ok(e) = serde_json::from_str::<Entry>(entry.get()) else {
                    hidden += 1;
                    continue;
                };
                let resource = if key == "resources" { e.uri } else { e.name.map(|n| prompt_resource(self.name, &n)) };
                if resource.is_some_and(|r| engine.shows_resource(&verified, &full, &r)) {
                    shown.push(entry);
                } else {
                    hidden += 1;
                }
            }
        }
        let detail = json!({"server": self.name, "method": self.method, "shown": shown.len(), "hidden": hidden, "upstream": if ok { "ok" } else { "unavailable" }});
        if let Err(r) = self.record(&verified, "gateway.request", detail).await {
            return r;
        }
        if !ok {
            return rpc_error(
                StatusCode::OK,
                self.id(),
                jsonrpc::INTERNAL_ERROR,
                "the upstream server is unavailable",
                Some(json!({"code": "gateway.upstream_unavailable"})),
            );
        }
        self.list_answer(key, shown.iter().map(|e| e.get()), next.as_deref())
    }

    fn refused_result(&self, d: &Decision) -> String {
        let codes: Vec<&str> = d.reasons.iter().map(|r| r.code.as_str()).collect();
        let text = match d.verdict {
            Verdict::ApprovalRequired => format!(
                "Mandate held this call for a human's approval ({}). Approval id: {}. Once approved, call again with _meta[\"mandate/approval_id\"] = \"{}\".",
                codes.join(", "),
                d.approval_id.as_deref().unwrap_or(""),
                d.approval_id.as_deref().unwrap_or("")
            ),
            _ => format!("Mandate denied this call: {}", codes.join(", ")),
        };
        self.result_object(json!({"content": [{"type": "text", "text": text}], "isError": true, "structuredContent": refusal_content(d)}), false)
    }

    async fn forward(
        &self,
        method: &str,
        full: &mandate_core::pattern::ToolName,
        params: &str,
        decision: &Decision,
    ) -> Response {
        let started = Instant::now();
        let outcome = self.server.upstream.request(method, Some(params)).await;
        let duration_ms = millis_since(started);
        let (response, status, bytes, sha, scrubbed) = match outcome {
            Ok(raw) => {
                let peek = Peek::of(raw.get());
                let raw = if self.modern() { with_result_type(raw.get(), &peek) } else { raw.get().to_owned() };
                let (text, scrubbed) = self.gw.scrub(raw);
                let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
                let is_error = peek.is_error.unwrap_or(false);
                let status = if is_error { "tool_error" } else { "ok" };
                let n = text.len();
                (self.ok(text), status, n, Some(sha), scrubbed)
            }
            Err(e) => {
                let (message, _) = self.gw.scrub(e.to_string());
                tracing::warn!(server = %self.name, tool = %full, error = %message, "upstream call failed");
                let code = format!("gateway.upstream_{}", e.status());
                (
                    rpc_error(
                        StatusCode::OK,
                        self.id(),
                        jsonrpc::INTERNAL_ERROR,
                        &message,
                        Some(json!({"code": code, "ledger_seq": decision.ledger_seq})),
                    ),
                    e.status(),
                    0,
                    None,
                    false,
                )
            }
        };
        let detail = json!({
            "decision_seq": decision.ledger_seq,
            "server": self.name,
            "status": status,
            "duration_ms": duration_ms,
            "result_bytes": bytes,
            "result_sha256": sha,
            "credential_scrubbed": scrubbed,
        });
        let mut event = NewEvent::new(
            "tool.call_completed",
            "gateway",
            mandate_engine::clock::millis(self.gw.inner.engine.clock.now()),
            &detail,
        );
        event.tool = Some(full.to_string());
        // The call's agent, as on its decision: the agent's trail shows what came of its calls (and
        // the two rows sit together in the ledger's index by agent).
        event.agent = decision.agent_id.clone();
        event.mandate_id = decision.mandate_id.clone();
        event.chain_id = decision.chain_id.clone();
        // The decision was durable before the call went out; its outcome rides with the next batch
        // of the ledger (or is committed alone within 20 ms), so that neither this agent nor the
        // next decision waits for an fsync of its own: this only queues it.
        if let Err(e) = self.gw.inner.engine.record_outcome(event).await {
            tracing::error!(error = ?e, "a call's outcome could not be recorded (its decision was)");
        }
        if scrubbed {
            tracing::warn!(server = %self.name, tool = %full, "the upstream's answer carried its own credential; redacted");
        }
        response
    }
}

/// The upstream's result with `"resultType": "complete"` added when it has none, for a 2026-07-28
/// client (upstreams speak 2025-11-25, whose results have no such member); every other byte is the
/// upstream's.
/// The two members of an upstream's result the gateway reads, in one pass over it.
#[derive(Default, Deserialize)]
struct Peek {
    #[serde(rename = "resultType")]
    result_type: Option<serde::de::IgnoredAny>,
    #[serde(rename = "isError")]
    is_error: Option<bool>,
    /// `false` when the result is not an object the gateway can add a member to.
    #[serde(skip, default = "yes")]
    object: bool,
}

fn yes() -> bool {
    true
}

impl Peek {
    fn of(raw: &str) -> Self {
        serde_json::from_str(raw).unwrap_or_default()
    }
}

fn with_result_type(raw: &str, peek: &Peek) -> String {
    let has = peek.result_type.is_some() || !peek.object;
    match raw.trim_start().strip_prefix('{') {
        Some(rest) if !has => {
            let rest = rest.trim_start();
            if rest.starts_with('}') {
                format!(r#"{{"resultType":"complete"{rest}"#)
            } else {
                format!(r#"{{"resultType":"complete",{rest}"#)
            }
        }
        _ => raw.to_owned(),
    }
}

/// The resource a `prompts/get` is decided on: `prompt://{server}/{name}`, the name
/// percent-encoded as a template value is.
pub fn prompt_resource(server: &str, name: &str) -> String {
    let mut out = format!("prompt://{server}/");
    crate::template::encode(name, &mut out);
    out
}

fn refusal_content(d: &Decision) -> Value {
    json!({
        "decision": d.verdict.as_str(),
        "reasons": d.reasons,
        "ledger_seq": d.ledger_seq,
        "approval_id": d.approval_id,
    })
}
