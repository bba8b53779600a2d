//! The one error of the engine's operations: what kind of failure it is, a stable dotted code, and
//! a detail for people.
//!
//! The kind says whose fault it is and so how a front door answers (the HTTP API maps each kind to
//! one status in one `match`); the engine itself knows nothing of HTTP. An [`ErrorKind::Internal`]
//! error's detail is for the log only: a front door shows the caller the code `internal.error` and
//! nothing of the inside.

use mandate_store::StoreError;

/// Whose fault a failure is, and so how a front door answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is wrong (HTTP 400).
    Invalid,
    /// The caller is authenticated but may not do this (403).
    Forbidden,
    /// No such thing (404).
    NotFound,
    /// The state of the thing does not allow this (409).
    Conflict,
    /// The engine cannot serve this now, and may later (503).
    Unavailable,
    /// A fault inside (500); the detail is logged, never shown.
    Internal,
}

/// An engine operation's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    code: &'static str,
    detail: String,
}

/// The code of every internal failure, documented in the README: the caller learns that the
/// server failed, never how.
pub const INTERNAL_CODE: &str = "internal.error";

impl Error {
    /// An error of `kind` with a stable code and a detail for people.
    pub fn new(kind: ErrorKind, code: &'static str, detail: impl Into<String>) -> Self {
        Self { kind, code, detail: detail.into() }
    }
    /// The request is wrong.
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, detail)
    }
    /// Not allowed to do this (`auth.forbidden`).
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "auth.forbidden", detail)
    }
    /// No such thing.
    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, detail)
    }
    /// The state of the thing does not allow this.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, detail)
    }
    /// A fault inside; `detail` is for the log.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, INTERNAL_CODE, detail)
    }
    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
    /// The detail (for an internal error, for the log only).
    pub fn detail(&self) -> &str {
        &self.detail
    }
    /// Whether the caller's request was at fault (not the engine).
    pub fn is_client_fault(&self) -> bool {
        !matches!(self.kind, ErrorKind::Internal | ErrorKind::Unavailable)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(detail) => Self::conflict("conflict", detail),
            StoreError::Retryable(detail) => {
                // What the database said goes to the log, not to the caller.
                tracing::warn!(detail = %detail, "the database was busy; answered 503 server.busy");
                Self::new(
                    ErrorKind::Unavailable,
                    "server.busy",
                    "the database is busy for a moment; nothing was written: try again",
                )
            }
            other => Self::internal(other.to_string()),
        }
    }
}
