//! `/v1/audit`: reading the event ledger.

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::routes::agent_id;
use crate::state::AppState;
use axum::extract::State;
use mandate_core::event::Event;
use mandate_core::human::Role;
use mandate_store::EventFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Filters of `GET /v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events about this agent.
    agent: Option<String>,
    /// Only events of this kind (`agent.registered`, ...).
    kind: Option<String>,
    /// Only events after this sequence number (for paging and following).
    after: Option<i64>,
    /// At most this many (default 100, at most 10000).
    limit: Option<i64>,
}

/// `GET /v1/audit` answers this.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Events, oldest first.
    pub events: Vec<Event>,
}

/// Events from the ledger, oldest first. Admins and auditors.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<ApiJson<AuditPage>, ApiError> {
    if !(caller.has_role(Role::Admin) || caller.has_role(Role::Auditor)) {
        return Err(ApiError::forbidden("reading the ledger needs the `admin` or `auditor` role"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request("request.invalid_query", "`limit` must be between 1 and 10000"));
    }
    let filter =
        EventFilter { agent: q.agent.as_deref().map(agent_id).transpose()?, kind: q.kind, after_seq: q.after, limit };
    Ok(ApiJson(AuditPage { events: state.store.events(&filter).await? }))
}
