//! Errors are responses: every failure leaves the server as an RFC 9457 problem document.
//!
//! Handlers return `Result<_, ApiError>`. The request extractors used here ([`ApiJson`], [`ApiQuery`])
//! turn axum's own rejections into problem documents too, so no error reaches a client in another
//! shape. A 5xx body says nothing about the inside; the detail goes to the log with the request id.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mandate_store::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:mandate:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time, for people.
    pub detail: String,
    /// A stable, dotted code for programs, e.g. `agent.exists`.
    pub code: String,
}

/// An error a handler returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl ApiError {
    /// An error with a status, a stable code and a detail for people.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into() }
    }
    /// 400: the request is wrong.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    /// 401: no usable credential.
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }
    /// 403: a credential, but not allowed to do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "auth.forbidden", detail)
    }
    /// 404: no such thing.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }
    /// 409: the state of the thing does not allow this.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }
    /// 500: a fault inside; the detail is logged, not shown.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, mandate_engine::error::INTERNAL_CODE, detail)
    }
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
    /// What a person is told (for a fault inside, a sentence that hides the detail).
    pub fn detail(&self) -> &str {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            "a fault inside the server (see its log)"
        } else {
            &self.detail
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        mandate_engine::Error::from(e).into()
    }
}

/// The one mapping from the engine's kinds of failure to HTTP statuses.
impl From<mandate_engine::Error> for ApiError {
    fn from(e: mandate_engine::Error) -> Self {
        use mandate_engine::ErrorKind;
        let status = match e.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.code(), e.detail())
    }
}

fn title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let detail = if self.status.is_server_error() {
            tracing::error!(code = self.code, detail = %self.detail, "request failed inside the server");
            "the server failed to handle this request; the request id in the response headers finds it in the server's log".to_owned()
        } else {
            self.detail
        };
        let problem = Problem {
            type_: format!("urn:mandate:problem:{}", self.code),
            title: title(self.status),
            status: self.status.as_u16(),
            detail,
            code: self.code.to_owned(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="mandate""#));
        }
        response
    }
}

/// A JSON body whose rejections are problem documents.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::bad_request("request.invalid_body", body_text(&e))),
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad_request("request.malformed_json", body_text(&e)))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request.unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            )),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(ApiError::bad_request("request.unreadable_body", e.body_text())),
        }
    }
}

/// The useful part of serde's message: axum prefixes it with its own sentence.
fn body_text(e: &dyn std::error::Error) -> String {
    let mut source = e.source();
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A body read whole, whose rejections are problem documents: above all the body over
/// `server.max_body_bytes`, `413` with `request.too_large` on every route, whatever it parses the
/// bytes as afterwards (a form, Cedar text, JSON).
#[derive(Debug, Clone, Default)]
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(ApiError::bad_request("request.unreadable_body", e.body_text())),
        }
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request.too_large",
        "the request body is larger than the server accepts",
    )
}

/// The address a request came from (the TCP peer), when the server was started with it: behind a
/// proxy this is the proxy's address.
#[derive(Debug, Clone, Copy, Default)]
pub struct Source(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(Self(peer.map(|c| c.0.ip())))
    }
}

/// `429` with `request.rate_limited` and `Retry-After`: a source that sent too many requests naming no
/// mandate waits before it is served again.
/// [`rate_limited`], held for the tarpit first (or sent at once with `Connection: close` when the
/// source already has too many held): see `mandate_engine::refusals::Tarpit`.
pub async fn rate_limited_tarpit(
    refusals: &mandate_engine::refusals::Refusals,
    source: Option<std::net::IpAddr>,
    retry_after_secs: u32,
) -> Response {
    let close = refusals.hold_429(source).await;
    let mut r = rate_limited(retry_after_secs);
    if close {
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// `429` with `request.rate_limited` and `Retry-After`.
pub fn rate_limited(retry_after_secs: u32) -> Response {
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "request.rate_limited",
        format!("too many refused requests that name no mandate came from this address; retry in {retry_after_secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// A query string whose rejections are problem documents.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::bad_request("request.invalid_query", body_text(&e)))
            }
            Err(e) => Err(ApiError::bad_request("request.invalid_query", e.body_text())),
        }
    }
}
