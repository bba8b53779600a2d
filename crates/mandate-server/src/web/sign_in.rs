//! Signing in to the console through the organisation's IdP (`[oidc] authorization_endpoint`): OpenID Connect's
//! authorization code flow, for a human at a browser, instead of pasting an ID token.
//!
//! `GET /console/oidc/start` remembers a fresh `state`, `nonce` and PKCE verifier (single use, ten
//! minutes, bounded) and sends the browser to the IdP; `GET /console/oidc/callback` takes that
//! `state` back exactly once, refuses an `iss` that is not the configured issuer (RFC 9207), redeems
//! the code at the token endpoint with the verifier (and the client secret, when there is one), and
//! verifies the ID token exactly as every ID token presented to the API is verified (issuer,
//! audience, the JWKS file, expiry; then the registry: a deactivated human is refused), and then its
//! `nonce`. The session it opens keeps that ID token, so it ends when the token expires.

use super::html::{self, refusal};
use super::session::{self, Credential, NextQuery};
use super::{bounded, extra_roots, pkce_challenge, random_token, same_secret, SignInSettings};
use crate::auth::{id_token_identity, Caller};
use crate::error::Source;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use mandate_engine::clock::millis;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long the IdP may take to send the human back, in milliseconds.
const WAIT_MS: i64 = 10 * 60 * 1000;
/// The most a token endpoint may answer, in bytes.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

struct Pending {
    nonce: String,
    verifier: String,
    next: String,
    expires_ms: i64,
}

/// Sign-ins waiting for the IdP, by `state`, and the client for the token endpoint.
#[derive(Default)]
pub(crate) struct SignIns {
    pending: Mutex<HashMap<String, Pending>>,
    http: Option<reqwest::Client>,
}

impl SignIns {
    /// The client for `settings`' token endpoint (none when sign-in is not configured).
    pub(crate) fn new(settings: Option<&SignInSettings>) -> Result<Self, String> {
        let Some(settings) = settings else { return Ok(Self::default()) };
        let mut builder =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(10));
        if let Some(path) = &settings.ca_file {
            for root in extra_roots(path, "oidc.token_endpoint_ca_file")? {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder.build().map_err(|e| format!("oidc.token_endpoint: the HTTP client: {e}"))?;
        Ok(Self { pending: Mutex::default(), http: Some(http) })
    }

    fn remember(&self, state: String, pending: Pending, now_ms: i64) -> bool {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !bounded(&mut map, now_ms, |p| p.expires_ms) {
            return false;
        }
        map.insert(state, pending);
        true
    }

    /// The sign-in `state` names, once: taken whether or not what follows succeeds.
    fn take(&self, state: &str, now_ms: i64) -> Option<Pending> {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(state).filter(|p| p.expires_ms > now_ms)
    }
}

fn redirect_uri(state: &AppState) -> String {
    format!("{}/console/oidc/callback", state.settings.mandates.issuer.trim_end_matches('/'))
}

/// `GET /console/oidc/start?next=`: to the IdP.
pub async fn start(State(state): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    let Some(settings) = &state.web.settings.sign_in else {
        return refusal(
            StatusCode::NOT_FOUND,
            "console.sign_in_not_configured",
            "this server has no `[oidc] authorization_endpoint`: sign in with an API key or an ID token",
        );
    };
    let next = session::safe_next(q.next.as_deref());
    let (client_state, nonce, verifier) = (random_token(), random_token(), random_token());
    let challenge = pkce_challenge(&verifier);
    let now = millis(state.clock.now());
    let pending = Pending { nonce: nonce.clone(), verifier, next, expires_ms: now + WAIT_MS };
    if !state.web.sign_ins.remember(client_state.clone(), pending, now) {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "console.busy",
            "too many sign-ins are waiting; try again later",
        );
    }
    let mut url = settings.authorization_endpoint.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", &redirect_uri(&state))
        .append_pair("scope", &settings.scopes)
        .append_pair("state", &client_state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Redirect::to(url.as_str()).into_response()
}

/// What the IdP sends the browser back with.
#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A refused sign-in: the sign-in page again, with why; counted like a wrong key.
fn refused(state: &AppState, source: Option<std::net::IpAddr>, code: &str, message: &str, next: &str) -> Response {
    state.refusals.count(source, code, millis(state.clock.now()));
    tracing::info!(code, "a console sign-in through the IdP was refused");
    html::login(state, next, Some(&format!("{message} ({code})")), StatusCode::UNAUTHORIZED)
}

/// `GET /console/oidc/callback`: back from the IdP.
pub async fn callback(
    State(state): State<AppState>,
    Source(source): Source,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let (Some(settings), Some(http)) = (&state.web.settings.sign_in, &state.web.sign_ins.http) else {
        return refusal(
            StatusCode::NOT_FOUND,
            "console.sign_in_not_configured",
            "this server has no `[oidc] authorization_endpoint`",
        );
    };
    let now = millis(state.clock.now());
    if let Err(wait) = state.refusals.admit(source, now) {
        let message = format!("too many refused sign-ins from this address; try again in {wait} s");
        return html::login(&state, "/console/approvals", Some(&message), StatusCode::TOO_MANY_REQUESTS);
    }
    let Some(pending) = q.state.as_deref().and_then(|s| state.web.sign_ins.take(s, now)) else {
        return refused(
            &state,
            source,
            "oidc.unknown_state",
            "this sign-in is not one this server started, has expired, or was already used: start again",
            "/console/approvals",
        );
    };
    let next = pending.next.as_str();
    if let Some(error) = &q.error {
        let detail = q.error_description.as_deref().unwrap_or("");
        let message = format!("the IdP did not sign you in: {} {}", truncate(error), truncate(detail));
        return refused(&state, source, "oidc.idp_refused", message.trim(), next);
    }
    let issuer = state.oidc.as_ref().map(|o| o.issuer().to_owned()).unwrap_or_default();
    if q.iss.as_deref().is_some_and(|iss| iss != issuer) {
        return refused(
            &state,
            source,
            "oidc.wrong_issuer",
            "the answer names another issuer than `[oidc] issuer`",
            next,
        );
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        return refused(&state, source, "oidc.missing_code", "the IdP sent no authorization code", next);
    };
    let id_token = match redeem(http, settings, &redirect_uri(&state), code, &pending.verifier).await {
        Ok(t) => t,
        Err(message) => return refused(&state, source, "oidc.token_endpoint", &message, next),
    };
    let (human, nonce) = match id_token_identity(&state, &id_token).await {
        Ok(verified) => verified,
        Err(e) => return refused(&state, source, e.code(), e.detail(), next),
    };
    if !nonce.is_some_and(|n| same_secret(&n, &pending.nonce)) {
        return refused(&state, source, "oidc.nonce_mismatch", "the ID token is not the answer to this sign-in", next);
    }
    session::open(&state, Credential::IdToken(id_token), &Caller::Human(human), next)
}

fn truncate(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The code, at the token endpoint, for the ID token.
async fn redeem(
    http: &reqwest::Client,
    settings: &SignInSettings,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
) -> Result<String, String> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    let mut request = http.post(settings.token_endpoint.clone()).header(reqwest::header::ACCEPT, "application/json");
    match &settings.client_secret {
        // RFC 6749 section 2.3.1: both form-urlencoded before they are joined.
        Some(secret) => {
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            request = request.basic_auth(enc(&settings.client_id), Some(enc(secret)));
        }
        None => form.push(("client_id", &settings.client_id)),
    }
    let response = request.form(&form).send().await.map_err(|e| format!("the IdP's token endpoint: {e}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("the IdP's token endpoint: {e}"))?;
    if body.len() > MAX_TOKEN_RESPONSE {
        return Err(format!("the IdP's token endpoint answered more than {MAX_TOKEN_RESPONSE} bytes"));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| format!("the IdP's token endpoint answered {status}, not JSON"))?;
    if !status.is_success() {
        let field = |k: &str| json.get(k).and_then(|v| v.as_str()).map(truncate).unwrap_or_default();
        return Err(format!(
            "the IdP's token endpoint refused the code ({status}): {} {}",
            field("error"),
            field("error_description")
        ));
    }
    json.get("id_token")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .ok_or_else(|| "the IdP's token endpoint sent no `id_token` (is `openid` among the scopes?)".to_owned())
}
