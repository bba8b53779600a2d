//! MCP's authorization flow, with Mandate as the authorization server: the authorization code grant
//! with PKCE (RFC 7636, `S256` only), clients identified by Client ID Metadata Documents, a
//! `resource` indicator (RFC 8707) naming one gateway endpoint, and a consent page where the human
//! chooses which of their agents the client acts as, the tools, the purpose, the category and the
//! lifetime. The token endpoint then grants through the engine (the same trust decision as
//! `POST /v1/mandates`), bound to the key the client proves with DPoP (RFC 9449 section 5), or to
//! nothing where `[oauth] allow_unbound` says so.
//!
//! What each check refuses, in order: an unverifiable client id or a redirect URI that is not one
//! of the client's own, character for character (an error page; nothing is sent to an unverified
//! URI); then, sent back to the client with `state` and `iss` (RFC 9207): another response type,
//! no or a `plain` PKCE challenge, a resource that is not a gateway endpoint. At the token
//! endpoint: a code unknown, expired, already used (and then the mandate issued from it is revoked,
//! RFC 6749 section 4.1.2), presented by another client or with another redirect URI, or a verifier
//! that does not match; a code is used up by its first presentation, right or wrong.

use super::client_metadata::ClientMetadata;
use super::html::{bare, csrf, page_response, refusal};
use super::session::{self, signed, signed_form, Signed};
use super::{bounded, digest, random_token};
use crate::auth::Caller;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use mandate_core::event::NewEvent;
use mandate_core::human::Human;
use mandate_core::mandate::{Binding, GrantRequest};
use mandate_engine::clock::millis;
use mandate_engine::mandates::ClientHolder;
use maud::html;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a consent page may wait for the human, in milliseconds.
const CONSENT_MS: i64 = 10 * 60 * 1000;

/// What the client asked for at the authorization endpoint, checked.
#[derive(Clone)]
struct Asked {
    client: ClientMetadata,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    resource: String,
    server: String,
}

/// A consent page shown and not yet answered.
struct Pending {
    asked: Asked,
    /// The CSRF token of the session it was shown to: only that session may answer it.
    session_csrf: String,
    expires_ms: i64,
}

/// An authorization code, waiting for the token endpoint.
struct Code {
    asked: Asked,
    human: Human,
    grant: GrantRequest,
    expires_ms: i64,
}

/// A code already presented: what was issued from it, so that a replay revokes it.
struct Spent {
    mandate_id: Option<String>,
    expires_ms: i64,
}

/// This node's authorization requests and codes.
#[derive(Default)]
pub(crate) struct Flows {
    pending: Mutex<HashMap<String, Pending>>,
    codes: Mutex<HashMap<[u8; 32], Code>>,
    spent: Mutex<HashMap<[u8; 32], Spent>>,
}

/// An OAuth error at the authorization endpoint before the client and its redirect URI are known
/// to be good: a page for the human, never a redirect.
fn stop(code: &str, message: &str) -> Response {
    refusal(StatusCode::BAD_REQUEST, code, message)
}

/// An OAuth error sent back to the client's redirect URI (RFC 6749 section 4.1.2.1), with `state`
/// and `iss` (RFC 9207).
fn back_to_client(
    state: &AppState,
    redirect_uri: &str,
    client_state: Option<&str>,
    params: &[(&str, &str)],
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return stop("oauth.invalid_redirect_uri", "the redirect URI is not a URL");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(s) = client_state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &state.settings.mandates.issuer);
    }
    let mut r = Redirect::to(url.as_str()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    r
}

/// The query's parameters, each at most once (RFC 6749 section 3.1).
fn single_params(raw: &str) -> Result<HashMap<String, String>, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|e| format!("the query is malformed: {e}"))?;
    single(pairs)
}

/// Parameters, each at most once (RFC 6749 section 3.1, for requests to both endpoints).
pub(crate) fn single(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() {
            return Err(format!("`{k}` is given more than once"));
        }
    }
    Ok(map)
}

/// The gateway server a resource indicator names: `<issuer>/mcp/<server>` of a configured server.
fn gateway_server(state: &AppState, resource: &str) -> Option<String> {
    let issuer = state.settings.mandates.issuer.trim_end_matches('/');
    let server = resource.strip_prefix(issuer)?.strip_prefix("/mcp/")?;
    state.web.servers.iter().find(|s| s.as_str() == server).cloned()
}

/// Checks what the client sent to the authorization endpoint: first who it is and where to answer
/// (errors shown to the human), then the rest (errors sent back to the client).
async fn check_request(state: &AppState, params: &HashMap<String, String>) -> Result<Asked, Response> {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client_id) = get("client_id") else {
        return Err(stop("oauth.invalid_request", "the request names no `client_id`"));
    };
    let client = match state.web.clients.metadata(client_id, millis(state.clock.now())).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(code = e.code, client_id, "an authorization request's client was refused");
            return Err(stop(e.code, &e.message));
        }
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return Err(stop("oauth.invalid_request", "the request names no `redirect_uri`"));
    };
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(stop(
            "oauth.invalid_redirect_uri",
            "the redirect URI is not one the client's metadata document lists (they are compared character for character)",
        ));
    }
    let client_state = get("state").map(str::to_owned);
    let to_client = |error: &str, description: &str| {
        back_to_client(
            state,
            redirect_uri,
            client_state.as_deref(),
            &[("error", error), ("error_description", description)],
        )
    };
    if get("response_type") != Some("code") {
        return Err(to_client(
            "unsupported_response_type",
            "only the authorization code flow (`response_type=code`) is supported",
        ));
    }
    if get("code_challenge_method") != Some("S256") {
        return Err(to_client(
            "invalid_request",
            "PKCE with `code_challenge_method=S256` is required (`plain` is refused)",
        ));
    }
    let challenge = get("code_challenge").unwrap_or_default();
    if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(to_client(
            "invalid_request",
            "`code_challenge` must be the base64url SHA-256 of the verifier (43 characters)",
        ));
    }
    let Some(resource) = get("resource") else {
        return Err(to_client("invalid_target", "name the gateway endpoint the token is for in `resource` (RFC 8707)"));
    };
    let Some(server) = gateway_server(state, resource) else {
        return Err(to_client(
            "invalid_target",
            "the `resource` is not a gateway endpoint of this server (`<issuer>/mcp/<server>`)",
        ));
    };
    Ok(Asked {
        client,
        redirect_uri: redirect_uri.to_owned(),
        state: client_state,
        code_challenge: challenge.to_owned(),
        resource: resource.to_owned(),
        server,
    })
}

/// `GET /oauth/authorize`: checks the request, signs the human in if needed, and shows the consent
/// page.
pub async fn authorize(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let params = match single_params(uri.query().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return stop("oauth.invalid_request", &e),
    };
    let asked = match check_request(&state, &params).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(who) = signed(&state, &headers).await else { return session::to_login(&uri) };
    show_consent(&state, &who, asked, millis(state.clock.now()), None).await
}

/// Opens a consent request for this session (bounded, like the codes) and shows its page, with what
/// was wrong the last time, if anything.
async fn show_consent(state: &AppState, who: &Signed, asked: Asked, now: i64, error: Option<&str>) -> Response {
    let id = random_token();
    {
        let mut pending = state.web.flows.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !bounded(&mut pending, now, |p| p.expires_ms) {
            return busy();
        }
        pending.insert(
            id.clone(),
            Pending { asked: asked.clone(), session_csrf: who.csrf.clone(), expires_ms: now + CONSENT_MS },
        );
    }
    consent_page(state, who, &id, &asked, error).await
}

fn busy() -> Response {
    refusal(StatusCode::SERVICE_UNAVAILABLE, "server.busy", "too many authorizations are waiting; try again shortly")
}

/// The consent page: the client, the gateway server, its tools, and what the human chooses.
async fn consent_page(state: &AppState, who: &Signed, request: &str, asked: &Asked, error: Option<&str>) -> Response {
    let Caller::Human(human) = &who.caller else {
        return refusal(
            StatusCode::FORBIDDEN,
            "grant.not_a_human",
            "mandates are granted by humans: sign in with your own key, not the administrator token",
        );
    };
    let filter = mandate_store::AgentFilter {
        owner: Some(human.principal.clone()),
        state: Some(mandate_core::agent::AgentState::Active),
        ..Default::default()
    };
    let agents = match state.store.agents(&filter).await {
        Ok(a) => a,
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, "server.store_unavailable", &e.to_string()),
    };
    let tools = server_tools(state, &asked.server);
    let categories = state.intents();
    let host =
        url::Url::parse(&asked.client.client_id).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let name = asked.client.client_name.clone().unwrap_or_else(|| "An unnamed client".to_owned());
    let max_ttl = state.settings.mandates.limits.max_ttl_secs;
    let unbound = state.settings.mandates.allow_unbound;
    let markup = bare(
        "Grant a mandate",
        html! {
            @if let Some(e) = error { p.error role="alert" { (e) } }
            section.card #client {
                h3 { (name) }
                p { "Client " code #client-id { (asked.client.client_id) } " (published by " strong { (host) } ")" }
                @if let Some(u) = &asked.client.client_uri { p.muted { (u) } }
                p { "asks to act at the gateway server " strong #server { (asked.server) } " (" code { (asked.resource) } ")" }
                p.hint { "It will get a mandate for one task, within what you and your agent may do; it never sees the server's own credentials."
                    @if unbound { " If it cannot prove a key, the mandate is a bearer token, marked so for policy." } }
                p.hint { "Signed in as " (human.principal) }
            }
            @if agents.is_empty() {
                p.error { "You own no active agent. An agent must be registered with you as its owner before a client can act as it." }
            }
            form.stack #consent method="post" action="/oauth/authorize" {
                (csrf(who))
                input type="hidden" name="request" value=(request);
                label { "Act as your agent "
                    select name="agent" required { @for a in &agents { option value=(a.id.as_str()) { (a.id.as_str()) " — " (a.name) } } } }
                fieldset #tools { legend { "Tools it may call" }
                    @if tools.is_empty() { p.muted { "The gateway has not classified any tool of this server yet." } }
                    @for t in &tools {
                        label { input type="checkbox" name="tool" value=(t.name) checked[t.risk == "read"];
                            " " code { (t.name) } " " span.muted { (t.data_class) ", " (t.risk) } }
                    }
                }
                label { "Purpose " input type="text" name="purpose" required maxlength="500" placeholder="What is this task for?"; }
                label { "Category "
                    select name="category" required { @for c in &categories { option value=(c.name) { (c.name) " — " (c.spec.description) } } } }
                label { "Lifetime "
                    select name="ttl_seconds" {
                        @for (secs, label) in [(900u32, "15 minutes"), (3600, "1 hour"), (8 * 3600, "8 hours")] {
                            @if secs <= max_ttl { option value=(secs) { (label) } }
                        }
                    } }
                label { "Calls at most " input type="number" name="max_calls" value="50" min="1"; }
                div {
                    button #grant type="submit" name="decision" value="allow" { "Grant" }
                    " "
                    button.deny #refuse type="submit" name="decision" value="deny" { "Refuse" }
                }
            }
        },
    );
    page_response(if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, markup)
}

fn server_tools(state: &AppState, server: &str) -> Vec<mandate_store::ToolRecord> {
    let Ok(pattern) = mandate_core::pattern::ToolPattern::parse(&format!("{server}/*")) else { return Vec::new() };
    let mut tools = state.catalogue.matching(&pattern);
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    tools
}

/// The consent form.
#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    csrf: String,
    request: String,
    decision: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    ttl_seconds: Option<u32>,
    #[serde(default)]
    max_calls: Option<u64>,
}

/// `POST /oauth/authorize`: the human's answer. Refusing sends `access_denied`; granting checks the
/// grant as the engine would, then sends a code.
pub async fn consent(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    // Checkboxes repeat `tool`, so the form is read as pairs.
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(p) => p,
        Err(e) => return stop("oauth.invalid_request", &format!("the form is malformed: {e}")),
    };
    let tools: Vec<String> = pairs.into_iter().filter(|(k, _)| k == "tool").map(|(_, v)| v).collect();
    // The other fields, each once; the repeated `tool` is no field of the form, and is ignored here.
    let Ok(form) = serde_urlencoded::from_bytes::<ConsentForm>(&body) else {
        return stop("oauth.invalid_request", "the consent form is incomplete");
    };
    let who = match signed_form(&state, &headers, &form.csrf).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = millis(state.clock.now());
    let pending = state.web.flows.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&form.request);
    let Some(pending) = pending.filter(|p| p.expires_ms > now && super::same_secret(&p.session_csrf, &who.csrf)) else {
        return stop(
            "oauth.request_expired",
            "this consent page has expired or was answered already; start again from the client",
        );
    };
    let asked = pending.asked;
    let Caller::Human(human) = who.caller.clone() else {
        return refusal(StatusCode::FORBIDDEN, "grant.not_a_human", "mandates are granted by humans");
    };
    let actor = human.principal.to_string();
    let record = |kind: &'static str, detail: serde_json::Value| {
        let state = state.clone();
        let actor = actor.clone();
        async move {
            let event = NewEvent::new(kind, &actor, millis(state.clock.now()), &detail);
            state.store.append_event(event).await
        }
    };
    if form.decision != "allow" {
        if let Err(e) =
            record("oauth.consent_refused", json!({"client_id": asked.client.client_id, "resource": asked.resource}))
                .await
        {
            return refusal(StatusCode::SERVICE_UNAVAILABLE, "server.store_unavailable", &e.to_string());
        }
        return back_to_client(
            &state,
            &asked.redirect_uri,
            asked.state.as_deref(),
            &[("error", "access_denied"), ("error_description", "the human refused")],
        );
    }
    let grant = match consent_grant(&state, &asked, &form, &tools) {
        Ok(g) => g,
        Err(message) => return show_consent(&state, &who, asked, now, Some(&message)).await,
    };
    if let Err(e) = state.check_grant(&who.caller, &grant).await {
        let message = format!("{e} ({})", e.code());
        return show_consent(&state, &who, asked, now, Some(&message)).await;
    }
    let code = random_token();
    {
        let mut codes = state.web.flows.codes.lock().unwrap_or_else(|p| p.into_inner());
        if !bounded(&mut codes, now, |c| c.expires_ms) {
            return busy();
        }
        codes.insert(
            digest(&code),
            Code {
                asked: asked.clone(),
                human,
                grant: grant.clone(),
                expires_ms: now + state.web.settings.code_ttl_secs * 1000,
            },
        );
    }
    let detail = json!({
        "client_id": asked.client.client_id, "client_name": asked.client.client_name, "resource": asked.resource,
        "agent": grant.agent.as_str(), "purpose": grant.purpose, "category": grant.category,
        "scope": grant.authorization_details, "ttl_seconds": grant.ttl_seconds, "max_calls": grant.max_calls,
    });
    if let Err(e) = record("oauth.consent_given", detail).await {
        state.web.flows.codes.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(&code));
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "server.store_unavailable", &e.to_string());
    }
    back_to_client(&state, &asked.redirect_uri, asked.state.as_deref(), &[("code", &code)])
}

/// The grant the human chose: tools of this server only, with their catalogued data classes and
/// risks as the scope's classes and actions.
fn consent_grant(
    state: &AppState,
    asked: &Asked,
    form: &ConsentForm,
    tools: &[String],
) -> Result<GrantRequest, String> {
    if tools.is_empty() {
        return Err("choose at least one tool".into());
    }
    let known = server_tools(state, &asked.server);
    let mut data_classes = Vec::new();
    let mut actions = Vec::new();
    for t in tools {
        let Some(record) = known.iter().find(|k| &k.name == t) else {
            return Err(format!("`{t}` is not a tool of `{}`", asked.server));
        };
        if !data_classes.contains(&record.data_class) {
            data_classes.push(record.data_class.clone());
        }
        if !actions.contains(&record.risk) {
            actions.push(record.risk.clone());
        }
    }
    let request = json!({
        "agent": form.agent, "purpose": form.purpose.trim(), "category": form.category,
        "authorization_details": [{"type": mandate_core::mandate::DETAIL_TYPE, "tools": tools, "data_classes": data_classes, "actions": actions}],
        "ttl_seconds": form.ttl_seconds, "max_calls": form.max_calls, "max_depth": 0,
    });
    serde_json::from_value(request).map_err(|e| format!("the grant is not valid: {e}"))
}

/// An OAuth token endpoint error (RFC 6749 section 5.2), with Mandate's code beside it.
fn token_error(status: StatusCode, error: &str, code: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": description, "code": code})),
    )
        .into_response()
}

/// `POST /oauth/token` with `grant_type=authorization_code`: the code, the client, the redirect
/// URI and the PKCE verifier checked, then a mandate granted through the engine.
pub(crate) async fn exchange_code(state: &AppState, headers: &HeaderMap, params: &HashMap<String, String>) -> Response {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let bad = |code: &str, description: &str| token_error(StatusCode::BAD_REQUEST, "invalid_grant", code, description);
    let now = millis(state.clock.now());
    let key = digest(get("code"));
    let code = state.web.flows.codes.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    let Some(code) = code else {
        let spent = state.web.flows.spent.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        if let Some(spent) = spent.filter(|s| s.expires_ms > now) {
            // A code presented twice: whoever holds it is not only the client. What it bought goes.
            if let Some(id) = spent.mandate_id {
                let revoked = state
                    .revoke(
                        &Caller::Admin,
                        mandate_store::MandateSelector::Subtree(id.clone()),
                        "authorization code replayed".into(),
                    )
                    .await;
                tracing::warn!(mandate_id = %id, revoked = ?revoked.as_ref().map(Vec::len), "an authorization code was replayed; its mandate is revoked");
            }
            return bad(
                "oauth.code_replayed",
                "this authorization code was used already; the mandate issued from it is revoked",
            );
        }
        return bad("oauth.code_unknown", "the authorization code is unknown or expired");
    };
    let mut spent = Spent { mandate_id: None, expires_ms: now + 10 * 60 * 1000 };
    let answer = redeem(state, headers, params, code, now, &mut spent).await;
    let mut map = state.web.flows.spent.lock().unwrap_or_else(|p| p.into_inner());
    if bounded(&mut map, now, |s| s.expires_ms) {
        map.insert(key, spent);
    }
    answer
}

async fn redeem(
    state: &AppState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    code: Code,
    now: i64,
    spent: &mut Spent,
) -> Response {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let bad = |code: &str, description: &str| token_error(StatusCode::BAD_REQUEST, "invalid_grant", code, description);
    if code.expires_ms <= now {
        return bad("oauth.code_expired", "the authorization code has expired");
    }
    if get("client_id") != code.asked.client.client_id {
        return bad("oauth.client_mismatch", "the authorization code was issued to another client");
    }
    if get("redirect_uri") != code.asked.redirect_uri {
        return bad("oauth.redirect_uri_mismatch", "`redirect_uri` is not the one the code was issued for");
    }
    let verifier = get("code_verifier");
    let verifier_ok = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !verifier_ok || !super::same_secret(&super::pkce_challenge(verifier), &code.asked.code_challenge) {
        return bad("oauth.pkce_mismatch", "the PKCE `code_verifier` does not match the code's challenge");
    }
    if let Some(resource) = params.get("resource") {
        if resource != &code.asked.resource {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "oauth.resource_mismatch",
                "`resource` is not the one the human granted",
            );
        }
    }
    // A key proved now (RFC 9449 section 5), or none.
    let proofs: Vec<&str> = headers.get_all("dpop").iter().filter_map(|v| v.to_str().ok()).collect();
    let (binding, jkt, replay) = match proofs.as_slice() {
        [] => (Binding::Bearer, String::new(), None),
        [proof] => match state.verify_client_proof(proof, &state.settings.mandates.token_endpoint()) {
            Ok((jkt, replay)) => (Binding::ClientKey, jkt, Some(replay)),
            Err((code, message)) => {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_dpop_proof",
                    &code,
                    &format!("DPoP proof: {message}"),
                )
            }
        },
        _ => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_dpop_proof",
                "proof.multiple_headers",
                "exactly one DPoP header is accepted",
            )
        }
    };
    if binding == Binding::Bearer && !state.settings.mandates.allow_unbound {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant.unbound_not_allowed",
            "this organisation grants only key-bound mandates: send a DPoP proof (RFC 9449 section 5) with this request",
        );
    }
    // The human who consented, as they are now: a leaver since the consent grants nothing.
    let human = match state.store.human(&code.human.id).await {
        Ok(Some(h)) if !h.active => {
            return bad("auth.invalid_credentials", "the human who consented has been deactivated since");
        }
        Ok(Some(h)) => h,
        Ok(None) => code.human.clone(),
        Err(e) => {
            return token_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "server.store_unavailable",
                &e.to_string(),
            )
        }
    };
    let holder = ClientHolder {
        client_id: code.asked.client.client_id.clone(),
        resource: code.asked.resource.clone(),
        binding,
        key_thumbprint: jkt,
        replay,
    };
    match state.grant_to_client(&Caller::Human(human), code.grant, holder).await {
        Ok(granted) => {
            spent.mandate_id = Some(granted.mandate_id.clone());
            let expires_in = (granted.expires_at.unix_timestamp() - state.now_secs()).max(0);
            let token_type = if binding == Binding::Bearer { "Bearer" } else { "DPoP" };
            (
                StatusCode::OK,
                [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
                axum::Json(json!({
                    "access_token": granted.token, "token_type": token_type, "expires_in": expires_in,
                    "mandate_id": granted.mandate_id, "chain_id": granted.chain_id,
                })),
            )
                .into_response()
        }
        Err(e) if e.is_client_fault() => bad(e.code(), &e.to_string()),
        Err(e) => token_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            e.code(),
            "the grant could not be recorded; try again",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_consent_form_reads_with_its_repeated_tools_and_refuses_a_repeated_field() {
        let body = "csrf=c&request=r&tool=erp%2Fa&decision=allow&tool=erp%2Fb&agent=x";
        let form = serde_urlencoded::from_str::<ConsentForm>(body).unwrap();
        assert_eq!((form.request.as_str(), form.decision.as_str(), form.agent.as_str()), ("r", "allow", "x"));
        assert!(serde_urlencoded::from_str::<ConsentForm>("request=r&decision=allow&decision=deny").is_err());
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        assert!(single_params("a=1&b=2").is_ok());
        let e = single_params("client_id=a&client_id=b").unwrap_err();
        assert!(e.contains("`client_id` is given more than once"), "{e}");
    }
}
