//! What every backend shares: rows to records (both schemas name their columns alike, so a row of
//! either database maps to the same record through the same code), and the SQL both accept.

use crate::decisions::{ApprovalRecord, PinRecord, ToolRecord};
use crate::ledger::{LedgerQuery, Reach};
use crate::{Revocation, StoreError, StoredMandate};
use mandate_core::event::{Event, NewEvent};
use mandate_core::jwk::Ed25519PublicJwk;
use mandate_core::ledger::Checkpoint;
use sqlx::{ColumnIndex, Database, Decode, QueryBuilder, Row, Type};

/// A column type every backend decodes.
pub(crate) trait Col<DB: Database>: for<'a> Decode<'a, DB> + Type<DB> {}
impl<DB: Database, T: for<'a> Decode<'a, DB> + Type<DB>> Col<DB> for T {}

/// Maps a driver's error to the store's.
pub(crate) fn column(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

pub(crate) fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// The ledger's columns, in the order [`event`] reads them.
pub(crate) const EVENT_COLUMNS: &str =
    "SELECT seq, at_ms, kind, actor, agent_id, chain_id, mandate_id, tool, resource, \
     decision, detail, prev_hash, hash FROM events";

/// An event from a row of [`EVENT_COLUMNS`].
pub(crate) fn event<R>(r: &R) -> Result<Event, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Col<R::Database>,
    String: Col<R::Database>,
{
    Ok(Event {
        seq: r.try_get(0).map_err(column)?,
        event: NewEvent {
            at_ms: r.try_get(1).map_err(column)?,
            kind: r.try_get(2).map_err(column)?,
            actor: r.try_get(3).map_err(column)?,
            agent: r.try_get(4).map_err(column)?,
            chain_id: r.try_get(5).map_err(column)?,
            mandate_id: r.try_get(6).map_err(column)?,
            tool: r.try_get(7).map_err(column)?,
            resource: r.try_get(8).map_err(column)?,
            decision: r.try_get(9).map_err(column)?,
            detail: r.try_get(10).map_err(column)?,
        },
        prev_hash: r.try_get(11).map_err(column)?,
        hash: r.try_get(12).map_err(column)?,
    })
}

/// A stored checkpoint row, or why it is unusable.
pub(crate) fn checkpoint<R>(r: &R) -> Result<Result<Checkpoint, String>, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    i64: Col<R::Database>,
    String: Col<R::Database>,
{
    let seq: i64 = r.try_get("seq").map_err(column)?;
    let jwk_text: String = r.try_get("public_key_jwk").map_err(column)?;
    let jwk = serde_json::from_str::<serde_json::Value>(&jwk_text)
        .map_err(|e| e.to_string())
        .and_then(|v| Ed25519PublicJwk::from_json(&v).map_err(|e| e.to_string()));
    Ok(match jwk {
        Ok(public_key_jwk) => Ok(Checkpoint {
            seq,
            hash: r.try_get("hash").map_err(column)?,
            at_ms: r.try_get("at_ms").map_err(column)?,
            kid: r.try_get("kid").map_err(column)?,
            public_key_jwk,
            signature: r.try_get("signature").map_err(column)?,
        }),
        Err(e) => Err(format!("the stored checkpoint of seq {seq} has an unusable public key: {e}")),
    })
}

/// The mandate columns [`mandate`] reads.
pub(crate) const MANDATE_COLUMNS: &str =
    "SELECT doc, kid, used_calls, revoked_at, revoked_by, revoke_reason FROM mandates";

/// A mandate from a row of [`MANDATE_COLUMNS`].
pub(crate) fn mandate<R>(row: &R) -> Result<StoredMandate, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    i64: Col<R::Database>,
    String: Col<R::Database>,
{
    let doc: String = row.try_get("doc").map_err(column)?;
    let revoked_at: Option<i64> = row.try_get("revoked_at").map_err(column)?;
    let revocation = match revoked_at {
        Some(at) => Some(Revocation {
            at,
            by: row.try_get::<Option<String>, _>("revoked_by").map_err(column)?.unwrap_or_default(),
            reason: row.try_get::<Option<String>, _>("revoke_reason").map_err(column)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(StoredMandate {
        record: serde_json::from_str(&doc).map_err(|e| corrupt("mandate", e))?,
        kid: row.try_get("kid").map_err(column)?,
        used_calls: u64::try_from(row.try_get::<i64, _>("used_calls").map_err(column)?).unwrap_or(0),
        revocation,
    })
}

pub(crate) const TOOL_COLUMNS: &str =
    "SELECT name, server, data_class, risk, server_environment, source, updated_ms, updated_by FROM tools";

pub(crate) fn tool<R>(r: &R) -> Result<ToolRecord, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    i64: Col<R::Database>,
    String: Col<R::Database>,
{
    Ok(ToolRecord {
        name: r.try_get("name").map_err(column)?,
        server: r.try_get("server").map_err(column)?,
        data_class: r.try_get("data_class").map_err(column)?,
        risk: r.try_get("risk").map_err(column)?,
        server_environment: r.try_get("server_environment").map_err(column)?,
        source: r.try_get("source").map_err(column)?,
        updated_ms: r.try_get("updated_ms").map_err(column)?,
        updated_by: r.try_get("updated_by").map_err(column)?,
    })
}

pub(crate) const APPROVAL_COLUMNS: &str =
    "SELECT id, mandate_id, chain_id, agent_id, tool, resource, arguments_hash, status, created_ms, \
     expires_ms, decided_by, decided_ms, used_ms, doc FROM approvals";

pub(crate) fn approval<R>(r: &R) -> Result<ApprovalRecord, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    i64: Col<R::Database>,
    String: Col<R::Database>,
{
    let doc: String = r.try_get("doc").map_err(column)?;
    Ok(ApprovalRecord {
        id: r.try_get("id").map_err(column)?,
        mandate_id: r.try_get("mandate_id").map_err(column)?,
        chain_id: r.try_get("chain_id").map_err(column)?,
        agent: r.try_get("agent_id").map_err(column)?,
        tool: r.try_get("tool").map_err(column)?,
        resource: r.try_get("resource").map_err(column)?,
        arguments_hash: r.try_get("arguments_hash").map_err(column)?,
        status: r.try_get("status").map_err(column)?,
        created_ms: r.try_get("created_ms").map_err(column)?,
        expires_ms: r.try_get("expires_ms").map_err(column)?,
        decided_by: r.try_get("decided_by").map_err(column)?,
        decided_ms: r.try_get("decided_ms").map_err(column)?,
        used_ms: r.try_get("used_ms").map_err(column)?,
        detail: serde_json::from_str(&doc).map_err(|e| corrupt("approval", e))?,
    })
}

pub(crate) const PIN_COLUMNS: &str =
    "SELECT name, server, pinned_sha256, pinned_definition, pending_sha256, pending_definition, flags, \
     updated_ms, updated_by FROM tool_pins";

pub(crate) fn pin<R>(r: &R) -> Result<PinRecord, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    i64: Col<R::Database>,
    String: Col<R::Database>,
{
    let flags: String = r.try_get("flags").map_err(column)?;
    Ok(PinRecord {
        name: r.try_get("name").map_err(column)?,
        server: r.try_get("server").map_err(column)?,
        pinned_sha256: r.try_get("pinned_sha256").map_err(column)?,
        pinned_definition: r.try_get("pinned_definition").map_err(column)?,
        pending_sha256: r.try_get("pending_sha256").map_err(column)?,
        pending_definition: r.try_get("pending_definition").map_err(column)?,
        flags: serde_json::from_str(&flags).map_err(|e| corrupt("tool_pins.flags", e))?,
        updated_ms: r.try_get("updated_ms").map_err(column)?,
        updated_by: r.try_get("updated_by").map_err(column)?,
    })
}

pub(crate) fn policy_version<R>(r: &R) -> Result<crate::decisions::PolicyVersion, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    i64: Col<R::Database>,
    String: Col<R::Database>,
{
    Ok(crate::decisions::PolicyVersion {
        version: r.try_get("version").map_err(column)?,
        sha256: r.try_get("sha256").map_err(column)?,
        text: r.try_get("text").map_err(column)?,
        created_ms: r.try_get("created_ms").map_err(column)?,
        created_by: r.try_get("created_by").map_err(column)?,
    })
}

pub(crate) fn agent_version<R>(r: &R) -> Result<crate::AgentVersion, StoreError>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    i64: Col<R::Database>,
    String: Col<R::Database>,
{
    let before: Option<String> = r.try_get("before_doc").map_err(column)?;
    let after: String = r.try_get("after_doc").map_err(column)?;
    Ok(crate::AgentVersion {
        version: r.try_get("version").map_err(column)?,
        at_ms: r.try_get("at_ms").map_err(column)?,
        actor: r.try_get("actor").map_err(column)?,
        action: r.try_get("action").map_err(column)?,
        before: before.as_deref().map(serde_json::from_str).transpose().map_err(|e| corrupt("agent version", e))?,
        after: serde_json::from_str(&after).map_err(|e| corrupt("agent version", e))?,
    })
}

/// An allowed call from a decision event's columns (see
/// [`crate::DecisionStore::allowed_calls_of_chains_ending_after`]).
pub(crate) type AllowedRow = (String, i64, Option<String>, Option<String>, Option<String>, String, i64);

pub(crate) fn allowed_call(row: AllowedRow) -> Result<crate::AllowedCall, StoreError> {
    let (chain_id, chain_expires_at, agent, tool, resource, detail, at_ms) = row;
    let detail: serde_json::Value =
        serde_json::from_str(&detail).map_err(|e| corrupt("a decision event's detail", e))?;
    Ok(crate::AllowedCall {
        chain_id,
        chain_expires_at,
        agent: agent.unwrap_or_default(),
        tool: tool.unwrap_or_default(),
        data_class: detail.get("data_class").and_then(|v| v.as_str()).map(str::to_owned),
        action: detail.get("action").and_then(|v| v.as_str()).map(str::to_owned),
        resource,
        at_ms,
    })
}

/// What [`crate::DecisionStore::open_approval`] does with the approvals already pending for the
/// mandate: `Some` when one of them holds the same call for the same reasons, or when the queue is
/// full; `None` when `a` is to be stored.
pub(crate) fn pending_outcome(
    pending: &[ApprovalRecord],
    a: &ApprovalRecord,
    max_pending: usize,
) -> Option<crate::OpenedApproval> {
    let held_for =
        |d: &serde_json::Value| (d.get("reasons").cloned(), d.get("policies").cloned(), d.get("signals").cloned());
    let same = pending.iter().find(|p| {
        p.tool == a.tool
            && p.resource == a.resource
            && p.arguments_hash == a.arguments_hash
            && held_for(&p.detail) == held_for(&a.detail)
    });
    if let Some(same) = same {
        return Some(crate::OpenedApproval::Existing(same.id.clone()));
    }
    (pending.len() >= max_pending).then_some(crate::OpenedApproval::Full(pending.len()))
}

/// The `policy.updated` event with the version it records.
pub(crate) fn with_policy_version(mut event: NewEvent, version: i64) -> NewEvent {
    if let Ok(serde_json::Value::Object(mut detail)) = serde_json::from_str::<serde_json::Value>(&event.detail) {
        detail.insert("version".into(), version.into());
        event.detail = serde_json::Value::Object(detail).to_string();
    }
    event
}

/// Where [`crate::Ledger::query_events`] filters, for any backend: the one place a query's filters become SQL.
pub(crate) fn push_filters<'a, DB: sqlx::Database>(q: &mut QueryBuilder<'a, DB>, f: &LedgerQuery)
where
    String: 'a + sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: 'a + sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if let Some(agent) = &f.agent {
        q.push(" AND agent_id = ").push_bind(agent.clone());
    }
    if let Some(human) = &f.human {
        q.push(" AND (chain_id IN (SELECT chain_id FROM mandates WHERE root = ")
            .push_bind(human.clone())
            .push(") OR actor = ")
            .push_bind(human.clone())
            .push(" OR (kind IN ('human.created', 'human.deactivated') AND resource = ")
            .push_bind(human.clone())
            .push("))");
    }
    for (column, value) in [
        ("chain_id", &f.chain),
        ("mandate_id", &f.mandate),
        ("tool", &f.tool),
        ("decision", &f.decision),
        ("kind", &f.kind),
    ] {
        if let Some(v) = value {
            q.push(format_args!(" AND {column} = ")).push_bind(v.clone());
        }
    }
    match &f.reach {
        None => {}
        Some(Reach::Agent(a)) => {
            q.push(" AND (agent_id = ")
                .push_bind(a.clone())
                .push(" OR mandate_id IN (SELECT mandate_id FROM mandate_agents WHERE agent_id = ")
                .push_bind(a.clone())
                .push("))");
        }
        Some(Reach::Chain(c)) => {
            q.push(" AND chain_id = ").push_bind(c.clone());
        }
        Some(Reach::Root(h)) => {
            q.push(" AND chain_id IN (SELECT chain_id FROM mandates WHERE root = ").push_bind(h.clone()).push(")");
        }
    }
    if let Some(t) = f.since_ms {
        q.push(" AND at_ms >= ").push_bind(t);
    }
    if let Some(t) = f.until_ms {
        q.push(" AND at_ms < ").push_bind(t);
    }
    if let Some(s) = f.after_seq {
        q.push(" AND seq > ").push_bind(s);
    }
    if let Some(s) = f.before_seq {
        q.push(" AND seq < ").push_bind(s);
    }
}

/// The SQL of [`crate::Ledger::chains_reached`] for `reach`, and the value it binds as `$1`.
pub(crate) fn chains_reached_sql(reach: &Reach) -> (String, &str) {
    let (filter, value) = match reach {
        Reach::Agent(a) => ("id IN (SELECT mandate_id FROM mandate_agents WHERE agent_id = $1)", a),
        Reach::Chain(c) => ("chain_id = $1", c),
        Reach::Root(h) => ("root = $1", h),
    };
    (
        format!("SELECT chain_id FROM mandates WHERE {filter} GROUP BY chain_id ORDER BY MIN(issued_at), chain_id"),
        value.as_str(),
    )
}

/// Unix milliseconds of a time.
pub(crate) fn millis(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Refuses a database whose newest applied migration (`found`) is newer than this build knows.
pub(crate) fn refuse_newer_schema(found: Option<i64>, supported: i64) -> Result<(), StoreError> {
    match found {
        Some(found) if found > supported => Err(StoreError::SchemaTooNew { found, supported }),
        _ => Ok(()),
    }
}
