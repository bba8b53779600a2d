//! `/v1/audit`: reading, verifying and exporting the ledger, its checkpoints, a chain's story and a
//! blast radius. Every route is for admins and auditors.

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use mandate_core::event::Event;
use mandate_core::human::Role;
use mandate_core::id::HumanId;
use mandate_core::ledger::Checkpoint;
use mandate_engine::ledger::ocsf::to_ocsf;
use mandate_engine::ledger::views::{BlastRadius, ChainStory};
use mandate_store::{LedgerQuery, Reach, VerifyReport};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn require_auditor(caller: &Caller) -> Result<(), ApiError> {
    if caller.has_role(Role::Admin) || caller.has_role(Role::Auditor) {
        Ok(())
    } else {
        Err(ApiError::forbidden("the ledger is for the `admin` and `auditor` roles"))
    }
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request("request.invalid_query", detail)
}

/// A human as a filter: `alice@example.org` or `user:alice@example.org`.
fn principal(raw: &str) -> Result<String, ApiError> {
    let id = raw.strip_prefix("user:").unwrap_or(raw);
    HumanId::parse(id).map(|h| h.principal().to_string()).map_err(|e| invalid(format!("`human`: {e}")))
}

/// An agent as a filter.
fn agent_filter(raw: &str) -> Result<String, ApiError> {
    mandate_core::id::AgentId::parse(raw).map(|a| a.to_string()).map_err(|e| invalid(format!("`agent`: {e}")))
}

/// An id compared as text (chains, mandates, tools, kinds, decisions).
fn text(name: &str, raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(v) if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) => {
            Err(invalid(format!("`{name}` must be 1 to 1024 printable characters")))
        }
        other => Ok(other),
    }
}

fn time_ms(name: &str, raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(mandate_engine::clock::millis)
            .map_err(|e| invalid(format!("`{name}`: `{t}` is not an RFC 3339 time such as 2026-11-01T09:00:00Z ({e})")))
    })
    .transpose()
}

/// Filters of `GET /v1/audit`; they combine with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events about this agent.
    agent: Option<String>,
    /// Only events of chains this human started, done by them, or about them (`alice@example.org`).
    human: Option<String>,
    /// Only events of this chain.
    chain: Option<String>,
    /// Only events of this mandate.
    mandate: Option<String>,
    /// Only events about this tool (`server/tool`).
    tool: Option<String>,
    /// Only events with this decision (`allow`, `deny`, `approval_required`; `granted`, `refused`, ...).
    decision: Option<String>,
    /// Only events of this kind (`decision`, `agent.registered`, ...).
    kind: Option<String>,
    /// Only events at or after this time (RFC 3339).
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    until: Option<String>,
    /// Only events after this sequence number (for paging and following).
    after: Option<i64>,
    /// Only events before this sequence number (for paging backwards).
    before: Option<i64>,
    /// The newest matches rather than the oldest (still listed oldest first).
    newest: Option<bool>,
    /// At most this many (default 100, at most 10000).
    limit: Option<i64>,
}

impl AuditQuery {
    fn into_query(self) -> Result<LedgerQuery, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=10_000).contains(&limit) {
            return Err(invalid("`limit` must be between 1 and 10000"));
        }
        Ok(LedgerQuery {
            agent: self.agent.as_deref().map(agent_filter).transpose()?,
            human: self.human.as_deref().map(principal).transpose()?,
            chain: text("chain", self.chain)?,
            mandate: text("mandate", self.mandate)?,
            tool: text("tool", self.tool)?,
            decision: text("decision", self.decision)?,
            kind: text("kind", self.kind)?,
            reach: None,
            since_ms: time_ms("since", self.since.as_deref())?,
            until_ms: time_ms("until", self.until.as_deref())?,
            after_seq: self.after,
            before_seq: self.before,
            newest: self.newest.unwrap_or(false),
            limit,
        })
    }
}

/// `GET /v1/audit` answers this.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Events, oldest first.
    pub events: Vec<Event>,
}

/// Events from the ledger, oldest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn query(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<ApiJson<AuditPage>, ApiError> {
    require_auditor(&caller)?;
    let query = q.into_query()?;
    Ok(ApiJson(AuditPage { events: state.store.query_events(&query).await? }))
}

/// Verifies the whole ledger: every event's hash and link, no gaps, and every stored checkpoint
/// (signed by one of the server's keys, and matching the chain). Always `200`: `ok` says whether it
/// verified, and `problem` names the first bad sequence number.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = VerifyReport), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn verify(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<VerifyReport>, ApiError> {
    require_auditor(&caller)?;
    Ok(ApiJson(state.verify_ledger(Vec::new()).await?))
}

/// Checkpoints exported earlier, that the ledger must still contain.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Checkpoints as `GET /v1/audit/checkpoints/latest` gave them.
    pub checkpoints: Vec<Checkpoint>,
}

/// Verifies the whole ledger as `GET /v1/audit/verify` does, and also against checkpoints exported
/// earlier: a tail truncated past one of them, or a chain rebuilt before it, is found.
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit", request_body = VerifyRequest,
    responses((status = 200, body = VerifyReport), (status = 400, description = "a checkpoint's signature does not verify", body = crate::error::Problem),
              (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn verify_against(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<VerifyRequest>,
) -> Result<ApiJson<VerifyReport>, ApiError> {
    require_auditor(&caller)?;
    let anchors = request
        .checkpoints
        .iter()
        .map(|c| c.verify().map_err(|e| ApiError::bad_request("ledger.checkpoint_invalid", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiJson(state.verify_ledger(anchors).await?))
}

/// Paging through checkpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CheckpointQuery {
    /// Only checkpoints after this sequence number.
    after: Option<i64>,
    /// At most this many (default 100, at most 10000).
    limit: Option<i64>,
}

/// `GET /v1/audit/checkpoints` answers this.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointPage {
    /// Checkpoints, oldest first.
    pub checkpoints: Vec<Checkpoint>,
}

/// Stored checkpoints, oldest first: each the server's Ed25519 signature over a sequence number, the
/// chain's hash there, and the time.
#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "audit", params(CheckpointQuery),
    responses((status = 200, body = CheckpointPage), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn checkpoints(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CheckpointQuery>,
) -> Result<ApiJson<CheckpointPage>, ApiError> {
    require_auditor(&caller)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(invalid("`limit` must be between 1 and 10000"));
    }
    Ok(ApiJson(CheckpointPage { checkpoints: state.store.checkpoints(q.after.unwrap_or(0), limit).await? }))
}

/// Signs the head of the ledger now (unless the newest checkpoint already covers it) and answers
/// the checkpoint covering the head: export it to detect a later truncation.
#[utoipa::path(post, path = "/v1/audit/checkpoints", tag = "audit",
    responses((status = 200, body = Checkpoint), (status = 403, body = crate::error::Problem),
              (status = 409, description = "the ledger is empty", body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn take_checkpoint(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<Checkpoint>, ApiError> {
    require_auditor(&caller)?;
    state
        .checkpoint()
        .await?
        .map(ApiJson)
        .ok_or_else(|| ApiError::conflict("ledger.empty", "the ledger has no events to checkpoint"))
}

/// The newest stored checkpoint, as a file to keep.
#[utoipa::path(get, path = "/v1/audit/checkpoints/latest", tag = "audit",
    responses((status = 200, body = Checkpoint), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn latest_checkpoint(State(state): State<AppState>, caller: Caller) -> Result<ApiJson<Checkpoint>, ApiError> {
    require_auditor(&caller)?;
    state.store.latest_checkpoint().await?.map(ApiJson).ok_or_else(|| {
        ApiError::not_found("ledger.no_checkpoint", "no checkpoint yet; `POST /v1/audit/checkpoints` takes one")
    })
}

/// Filters of `GET /v1/audit/export`: those of `GET /v1/audit` and the format.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `jsonl` (default): the events exactly as stored, one JSON object per line, verifiable offline;
    /// `ocsf`: one OCSF 1.3.0 event per line (see the README for the mapping).
    format: Option<String>,
    /// Only events about this agent.
    agent: Option<String>,
    /// Only events of chains this human started, done by them, or about them.
    human: Option<String>,
    /// Only events of this chain.
    chain: Option<String>,
    /// Only events of this mandate.
    mandate: Option<String>,
    /// Only events about this tool.
    tool: Option<String>,
    /// Only events with this decision.
    decision: Option<String>,
    /// Only events of this kind.
    kind: Option<String>,
    /// Only events at or after this time (RFC 3339).
    since: Option<String>,
    /// Only events before this time (RFC 3339).
    until: Option<String>,
    /// Only events after this sequence number.
    after: Option<i64>,
    /// Only events before this sequence number.
    before: Option<i64>,
}

/// The ledger, streamed: every matching event up to the head at the time of the request, oldest
/// first, one JSON document per line (`application/x-ndjson`).
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportQuery),
    responses((status = 200, description = "JSON Lines", content_type = "application/x-ndjson", body = String),
              (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    require_auditor(&caller)?;
    let ocsf = match q.format.as_deref() {
        None | Some("jsonl") => false,
        Some("ocsf") => true,
        Some(other) => return Err(invalid(format!("`format`: `{other}` must be `jsonl` or `ocsf`"))),
    };
    let mut query = AuditQuery {
        agent: q.agent,
        human: q.human,
        chain: q.chain,
        mandate: q.mandate,
        tool: q.tool,
        decision: q.decision,
        kind: q.kind,
        since: q.since,
        until: q.until,
        after: q.after,
        before: q.before,
        newest: None,
        limit: Some(2_000),
    }
    .into_query()?;
    // A fixed range: what was in the ledger when the export began.
    let head = state.store.head().await?.map_or(0, |h| h.seq);
    query.before_seq = Some(query.before_seq.map_or(head + 1, |b| b.min(head + 1)));
    let trust_domain = state.settings.trust_domain.clone();
    let start = query.after_seq.unwrap_or(0);
    let stream = futures_util::stream::unfold(Some(start), move |cursor| {
        let (state, mut query, trust_domain) = (state.clone(), query.clone(), trust_domain.clone());
        async move {
            query.after_seq = Some(cursor?);
            match state.store.query_events(&query).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|e| e.seq);
                    let mut chunk = String::with_capacity(page.len() * 700);
                    for e in &page {
                        let line = if ocsf { to_ocsf(e, &trust_domain).to_string() } else { json_line(e) };
                        chunk.push_str(&line);
                        chunk.push('\n');
                    }
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "the ledger export failed part way");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson"), (header::CACHE_CONTROL, "no-store")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

fn json_line(e: &Event) -> String {
    serde_json::to_string(e).unwrap_or_default()
}

/// A chain as a story: who granted what, each delegation, every call under each mandate with its
/// decision and reasons, every approval and revocation.
#[utoipa::path(get, path = "/v1/audit/chains/{chain_id}", tag = "audit",
    params(("chain_id" = String, Path, description = "the root mandate's id")),
    responses((status = 200, body = ChainStory), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn chain_story(
    State(state): State<AppState>,
    caller: Caller,
    Path(chain_id): Path<String>,
) -> Result<ApiJson<ChainStory>, ApiError> {
    require_auditor(&caller)?;
    state
        .chain_story(&chain_id)
        .await?
        .map(ApiJson)
        .ok_or_else(|| ApiError::not_found("chain.not_found", format!("no chain `{chain_id}`")))
}

/// Whose blast radius: exactly one of `agent`, `chain`, `human`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BlastQuery {
    /// An agent: what it and every sub-agent under its mandates did.
    agent: Option<String>,
    /// A chain.
    chain: Option<String>,
    /// A human (`alice@example.org`): every chain they started.
    human: Option<String>,
    /// Only events at or after this time (RFC 3339).
    since: Option<String>,
}

/// Everything an agent's, a chain's or a human's authority touched: every tool, resource and data
/// class, every sub-agent reached, every approval, and the mandates still live.
#[utoipa::path(get, path = "/v1/audit/blast-radius", tag = "audit", params(BlastQuery),
    responses((status = 200, body = BlastRadius), (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)),
    security(("bearer" = [])))]
pub async fn blast_radius(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<BlastQuery>,
) -> Result<ApiJson<BlastRadius>, ApiError> {
    require_auditor(&caller)?;
    let reach = match (q.agent, q.chain, q.human) {
        (Some(a), None, None) => Reach::Agent(agent_filter(&a)?),
        (None, Some(c), None) => Reach::Chain(text("chain", Some(c))?.unwrap_or_default()),
        (None, None, Some(h)) => Reach::Root(principal(&h)?),
        _ => return Err(invalid("give exactly one of `agent`, `chain` and `human`")),
    };
    let since = time_ms("since", q.since.as_deref())?;
    Ok(ApiJson(state.blast_radius(reach, since).await?))
}
