//! Who is calling: bearer API keys, resolved to the administrator or a human, and humans' OIDC ID
//! tokens (verified by the engine's [`mandate_engine::oidc`]).
//!
//! Keys are 256-bit random secrets shown once and stored only as SHA-256 hashes. A deactivated
//! human's keys stop working at the next request. A bearer value shaped like a JWT (three
//! dot-separated parts) is an ID token: API keys start with `mnd_` and never contain a dot, and the
//! administrator token may not either. Authorization of each action (who may register, certify,
//! suspend...) is the engine's, in [`Caller`]'s methods.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mandate_core::human::Human;
pub use mandate_engine::caller::{generate_api_key, Caller, API_KEY_PREFIX};
use mandate_store::{hash_api_key, CredentialOwner};

/// Whether a bearer value is to be read as a JWT (an OIDC ID token) rather than an API key.
pub fn looks_like_jwt(bearer: &str) -> bool {
    !bearer.starts_with(API_KEY_PREFIX) && bearer.split('.').count() == 3
}

/// A refused credential: its problem document, with the RFC 6750 section 3 `WWW-Authenticate`
/// challenge naming the error (`invalid_request` for a malformed header, `invalid_token` for a
/// credential that did not verify, none when there was no credential at all, per section 3.1).
#[derive(Debug)]
pub struct AuthRejection(pub ApiError);

impl From<ApiError> for AuthRejection {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let error = match code {
            _ if self.0.status() != StatusCode::UNAUTHORIZED => None,
            "auth.missing_credentials" => None,
            "auth.malformed_credentials" => Some("invalid_request"),
            _ => Some("invalid_token"),
        };
        let mut response = self.0.into_response();
        if let Some(error) = error {
            // Codes are dotted lower-case words, so the header value needs no escaping.
            let challenge = format!(r#"Bearer realm="mandate", error="{error}", error_description="{code}""#);
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AuthRejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "auth.missing_credentials",
                "send an API key or an OIDC ID token as `Authorization: Bearer <credential>`",
            )
        })?;
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credential)| credential.trim())
            .filter(|credential| !credential.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "auth.malformed_credentials",
                    "the Authorization header must be `Bearer <credential>`",
                )
            })?;
        Ok(caller_of(state, bearer).await?)
    }
}

/// The caller a bearer credential stands for: an OIDC ID token (a JWT) or an API key. The console
/// resolves a signed-in session's credential through this same function on every request.
pub(crate) async fn caller_of(state: &AppState, bearer: &str) -> Result<Caller, ApiError> {
    if looks_like_jwt(bearer) {
        return Ok(Caller::Human(id_token_human(state, bearer).await?));
    }
    caller_of_key_hash(state, &hash_api_key(bearer)).await
}

/// The caller an API key stands for, by the key's hash (what a console session keeps).
pub(crate) async fn caller_of_key_hash(state: &AppState, hash: &str) -> Result<Caller, ApiError> {
    match state.store.credential(hash).await.map_err(ApiError::from)? {
        Some(CredentialOwner::Admin) => Ok(Caller::Admin),
        Some(CredentialOwner::Human(h)) => Ok(Caller::Human(h)),
        None => Err(ApiError::unauthorized(
            "auth.invalid_credentials",
            "the API key is unknown, replaced, or belongs to a deactivated human",
        )),
    }
}

/// The human an OIDC ID token stands for, or why it is refused (401 with the `oidc.*` code).
pub(crate) async fn id_token_human(state: &AppState, token: &str) -> Result<Human, ApiError> {
    Ok(id_token_identity(state, token).await?.0)
}

/// [`id_token_human`], with the verified token's `nonce` (for the console's own sign-in, which sent one).
pub(crate) async fn id_token_identity(state: &AppState, token: &str) -> Result<(Human, Option<String>), ApiError> {
    let Some(oidc) = &state.oidc else {
        return Err(ApiError::unauthorized(
            "auth.oidc_not_configured",
            "the bearer value is a JWT, taken for an OIDC ID token, but this server has no `[oidc]` issuer configured; use an API key",
        ));
    };
    let identity = oidc.verify(token, state.now_secs()).map_err(|e| {
        tracing::info!(code = e.code(), issuer = oidc.issuer(), "OIDC ID token refused");
        ApiError::unauthorized(e.code(), format!("the OIDC ID token was refused: {e}"))
    })?;
    let id = identity.human.clone();
    let nonce = identity.nonce.clone();
    let registered = state.store.human(&id).await?;
    let human = oidc.human(identity, registered, state.clock.now()).ok_or_else(|| {
        ApiError::unauthorized(
            "auth.invalid_credentials",
            format!("the human `{id}` is deactivated in Mandate; a valid ID token does not bring them back"),
        )
    })?;
    Ok((human, nonce))
}
