//! Signing in to the console: the same credentials as the API (a development API key, the
//! administrator token, or an OIDC ID token from the organisation's IdP), kept server-side behind a
//! random cookie.
//!
//! The cookie (`mandate_console`) is `HttpOnly`, `SameSite=Lax` and, when the issuer is HTTPS,
//! `Secure`; only its SHA-256 is kept. The session keeps the credential (an API key only as its
//! hash) and resolves it again on every request, so a deactivated human or a replaced key is signed
//! out at the next click. Every form that changes something carries the session's CSRF token and is
//! refused when it does not, or when the browser says it came from another origin.

use super::{digest, html, random_token, same_secret};
use crate::auth::{caller_of, caller_of_key_hash, looks_like_jwt, Caller};
use crate::error::Source;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use mandate_engine::clock::millis;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "mandate_console";

/// The most sessions one node keeps; beyond it, expired ones go, and then sign-in waits.
const MAX_SESSIONS: usize = 10_000;

/// What a session signed in with.
#[derive(Clone)]
pub(crate) enum Credential {
    /// An API key (or the administrator token), by its SHA-256.
    KeyHash(String),
    /// An OIDC ID token, verified again on every request (so the session ends when it expires).
    IdToken(String),
}

#[derive(Clone)]
struct Session {
    credential: Credential,
    csrf: String,
    expires_ms: i64,
}

/// This node's console sessions, by the SHA-256 of their cookie.
#[derive(Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    fn create(&self, credential: Credential, now_ms: i64, ttl_secs: i64) -> Option<String> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires_ms > now_ms);
            if map.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let cookie = random_token();
        map.insert(digest(&cookie), Session { credential, csrf: random_token(), expires_ms: now_ms + ttl_secs * 1000 });
        Some(cookie)
    }

    fn get(&self, cookie: &str, now_ms: i64) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(cookie);
        match map.get(&key) {
            Some(s) if s.expires_ms > now_ms => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    fn remove(&self, cookie: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(cookie));
    }
}

/// A signed-in human (or the administrator), resolved from the session for this request.
pub(crate) struct Signed {
    /// Who, as the API sees them.
    pub caller: Caller,
    /// The token every form of this session carries.
    pub csrf: String,
}

/// The session cookie's value, when the request carries one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Who is signed in on this request, resolved again from the credential; `None`: nobody (or a
/// credential that no longer works).
pub(crate) async fn signed(state: &AppState, headers: &HeaderMap) -> Option<Signed> {
    let cookie = cookie(headers)?;
    let session = state.web.sessions.get(&cookie, millis(state.clock.now()))?;
    let caller = match &session.credential {
        Credential::KeyHash(hash) => caller_of_key_hash(state, hash).await,
        Credential::IdToken(token) => caller_of(state, token).await,
    };
    match caller {
        Ok(caller) => Some(Signed { caller, csrf: session.csrf }),
        Err(_) => {
            state.web.sessions.remove(&cookie);
            None
        }
    }
}

/// The same, for a form that changes something: the session, its CSRF token in the form, and no
/// other origin. Refusals are a page naming what was wrong.
pub(crate) async fn signed_form(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<Signed, Response> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !same_origin(state, headers, origin.to_str().unwrap_or("")) {
            return Err(html::refusal(
                StatusCode::FORBIDDEN,
                "console.cross_origin",
                "this form was sent from another site; nothing was changed",
            ));
        }
    }
    let Some(signed) = signed(state, headers).await else {
        return Err(html::refusal(
            StatusCode::UNAUTHORIZED,
            "console.not_signed_in",
            "your session has ended; sign in again, then repeat what you did",
        ));
    };
    if csrf.is_empty() || !same_secret(csrf, &signed.csrf) {
        return Err(html::refusal(
            StatusCode::FORBIDDEN,
            "console.csrf",
            "this form does not carry your session's token (it may come from another site, or an older page); nothing was changed",
        ));
    }
    Ok(signed)
}

/// Whether an `Origin` is this server's: the issuer's origin, or the origin of the `Host` asked.
fn same_origin(state: &AppState, headers: &HeaderMap, origin: &str) -> bool {
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    let issuer = url::Url::parse(&state.settings.mandates.issuer).ok().map(|u| u.origin().ascii_serialization());
    if issuer.is_some_and(|i| i.eq_ignore_ascii_case(&origin)) {
        return true;
    }
    let scheme = if state.settings.mandates.issuer.starts_with("https://") { "https" } else { "http" };
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| origin == format!("{scheme}://{}", host.to_ascii_lowercase()))
}

/// Where to send a browser that is not signed in: the sign-in page, coming back here after.
pub(crate) fn to_login(uri: &Uri) -> Response {
    let next = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/console");
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Redirect::to(&format!("/console/login?{query}")).into_response()
}

/// Only a page of this server's console or its authorization endpoint may be a sign-in's `next`:
/// never another site (an open redirect).
pub(crate) fn safe_next(next: Option<&str>) -> String {
    let path = next.map(|n| n.split('?').next().unwrap_or(n));
    match (next, path) {
        (Some(n), Some(path))
            if (path.starts_with("/console") || path == "/oauth/authorize")
                && !n.contains('\\')
                && !path.contains("//")
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/console/approvals".to_owned(),
    }
}

/// `?next=` of the sign-in page.
#[derive(Deserialize)]
pub struct NextQuery {
    pub(crate) next: Option<String>,
}

/// `GET /console/login`.
pub async fn login_page(State(state): State<AppState>, Query(q): Query<NextQuery>) -> Response {
    html::login(&state, &safe_next(q.next.as_deref()), None, StatusCode::OK)
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    credential: String,
    next: Option<String>,
}

/// `POST /console/login`: checks the credential as the API would, then opens a session.
pub async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = safe_next(form.next.as_deref());
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !same_origin(&state, &headers, origin.to_str().unwrap_or("")) {
            return html::login(&state, &next, Some("this sign-in came from another site"), StatusCode::FORBIDDEN);
        }
    }
    let now = millis(state.clock.now());
    if let Err(wait) = state.refusals.admit(source, now) {
        let message = format!("too many refused sign-ins from this address; try again in {wait} s");
        return html::login(&state, &next, Some(&message), StatusCode::TOO_MANY_REQUESTS);
    }
    let credential = form.credential.trim();
    let caller = match caller_of(&state, credential).await {
        Ok(c) => c,
        Err(e) => {
            state.refusals.count(source, e.code(), now);
            tracing::info!(code = e.code(), "a console sign-in was refused");
            return html::login(&state, &next, Some(e.detail()), StatusCode::UNAUTHORIZED);
        }
    };
    let kept = if looks_like_jwt(credential) {
        Credential::IdToken(credential.to_owned())
    } else {
        Credential::KeyHash(mandate_store::hash_api_key(credential))
    };
    open(&state, kept, &caller, &next)
}

/// Opens a session for `caller`, who signed in with `kept`, and sends the browser on to `next`.
pub(crate) fn open(state: &AppState, kept: Credential, caller: &Caller, next: &str) -> Response {
    let now = millis(state.clock.now());
    let Some(cookie) = state.web.sessions.create(kept, now, state.web.settings.session_ttl_secs) else {
        return html::login(
            state,
            next,
            Some("too many open sessions; try again later"),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    tracing::info!(principal = %caller.principal(), "signed in to the console");
    let secure = if state.settings.mandates.issuer.starts_with("https://") { "; Secure" } else { "" };
    let set = format!(
        "{COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        state.web.settings.session_ttl_secs
    );
    let mut response = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// The sign-out form.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/logout`.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if let Err(r) = signed_form(&state, &headers, &form.csrf).await {
        return r;
    }
    if let Some(c) = cookie(&headers) {
        state.web.sessions.remove(&c);
    }
    let mut response = Redirect::to("/console/login").into_response();
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_ever_a_page_of_this_server() {
        assert_eq!(safe_next(Some("/console/chains/m_1")), "/console/chains/m_1");
        assert_eq!(safe_next(Some("/oauth/authorize?client_id=x")), "/oauth/authorize?client_id=x");
        for hostile in [
            "https://evil.example/console",
            "//evil.example/console",
            "/console//evil.example",
            "/console\\evil",
            "/v1/agents",
            "/console\r\nSet-Cookie: x=y",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/console/approvals", "{hostile}");
        }
        assert_eq!(safe_next(None), "/console/approvals");
    }

    #[test]
    fn a_session_expires_and_a_removed_one_is_gone() {
        let s = Sessions::default();
        let cookie = s.create(Credential::KeyHash("h".into()), 1_000, 10).unwrap();
        assert!(s.get(&cookie, 5_000).is_some());
        assert!(s.get("another", 5_000).is_none());
        assert!(s.get(&cookie, 11_000).is_none(), "expired at 11 000 ms");
        let cookie = s.create(Credential::KeyHash("h".into()), 1_000, 10).unwrap();
        s.remove(&cookie);
        assert!(s.get(&cookie, 2_000).is_none());
    }
}
