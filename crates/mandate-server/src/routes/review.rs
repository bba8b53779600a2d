//! `/v1/review`: what in the registry needs a human now.

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;
use axum::extract::State;
use mandate_core::agent::{AgentState, Environment, ReviewReason};
use mandate_store::AgentFilter;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

/// Parameters of `GET /v1/review`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// Review as of this time (RFC 3339) instead of now, to see what will be due.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    as_of: Option<OffsetDateTime>,
}

/// One reason, with its explanation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReasonView {
    /// The stable code.
    pub code: ReviewReason,
    /// What it means and what to do.
    pub message: String,
}

/// One agent that needs review.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewItem {
    /// The agent.
    pub agent: String,
    /// Its name.
    pub name: String,
    /// Its owner.
    pub owner: String,
    /// Its environment.
    pub environment: Environment,
    /// Its state.
    pub state: AgentState,
    /// When its recertification is due.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: OffsetDateTime,
    /// Why it needs review.
    pub reasons: Vec<ReasonView>,
}

/// `GET /v1/review` answers this.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewReport {
    /// The time the review was computed for.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub as_of: OffsetDateTime,
    /// Agents that need a human, ordered by id.
    pub items: Vec<ReviewItem>,
}

/// What is due: overdue recertifications, orphans (owner gone or deactivated), stale agents,
/// production agents on sandbox owners, and agents awaiting review after a mover event.
/// Admins, auditors and approvers see all; owners see their own agents.
#[utoipa::path(get, path = "/v1/review", tag = "agents", params(ReviewQuery),
    responses((status = 200, body = ReviewReport), (status = 400, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn review(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ReviewQuery>,
) -> Result<ApiJson<ReviewReport>, ApiError> {
    let as_of = q.as_of.unwrap_or_else(|| state.clock.now());
    let owner = match &caller {
        Caller::Human(h) if !caller.reads_everything() => Some(h.principal.clone()),
        _ => None,
    };
    let agents = state.store.agents(&AgentFilter { owner, ..AgentFilter::default() }).await?;
    let items = state
        .views(&agents, as_of)
        .await?
        .into_iter()
        .filter(|v| !v.review.pending.is_empty())
        .map(|v| ReviewItem {
            reasons: v
                .review
                .pending
                .iter()
                .map(|r| ReasonView { code: *r, message: r.describe().to_owned() })
                .collect(),
            agent: v.id,
            name: v.name,
            owner: v.owner,
            environment: v.environment,
            state: v.state,
            due_at: v.review.due_at,
        })
        .collect();
    Ok(ApiJson(ReviewReport { as_of, items }))
}
