//! Ledger events as OCSF (Open Cybersecurity Schema Framework) 1.3.0 events, so a SIEM ingests
//! them with its stock OCSF parser.
//!
//! | Mandate event | OCSF class | activity |
//! |---|---|---|
//! | `decision` | API Activity (6003): an agent's call to a tool is an API call, and the decision is the `actor.authorizations` result | by the tool's action: `read` 2 Read, `write` 3 Update, `destructive` 4 Delete, otherwise 99 Other |
//! | `agent.*`, `human.*`, `admin.credential_set` | Account Change (3001): agents and humans are accounts | registered/created 1 Create, resumed 2 Enable, suspended/deactivated 5 Disable, retired 6 Delete, credential 4 Password Reset, otherwise 99 Other |
//! | `mandate.*`, `approval.*` | User Access Management (3005): a mandate or an approval assigns privileges to an account | granted/delegated/approved 1 Assign Privileges (refusals and denials with status Failure), revoked 2 Revoke Privileges, otherwise 99 Other |
//! | anything else (`key.rotated`, `policy.*`, `tool.*`, ...) | Entity Management (3004): a change to a managed entity | 3 Update, or 1 Create for `*.created` |
//!
//! Rejected: the draft AI Agent Activity class (not in a released schema yet, so no SIEM parses it),
//! and Authorize Session (3003), which is about sessions, not single calls. Every event also keeps
//! what OCSF has no place for under `unmapped`: the sequence number, both hashes, the mandate and
//! chain, the reasons, risk and arguments digest, and the whole detail document.

use mandate_core::event::Event;
use mandate_core::id::TrustDomain;
use serde_json::{json, Value};

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.3.0";

struct Class {
    uid: u32,
    category: u32,
    activity: u32,
    status: u32,
}

fn class(event: &Event) -> Class {
    let kind = event.event.kind.as_str();
    let decision = event.event.decision.as_deref();
    let detail_action = || {
        serde_json::from_str::<Value>(&event.event.detail).ok().and_then(|d| d["action"].as_str().map(str::to_owned))
    };
    match kind {
        "decision" => {
            let activity = match detail_action().as_deref() {
                Some("read") => 2,
                Some("write") => 3,
                Some("destructive") => 4,
                _ => 99,
            };
            let status = match decision {
                Some("allow") => 1,
                Some("deny") => 2,
                _ => 99,
            };
            Class { uid: 6003, category: 6, activity, status }
        }
        _ if kind.starts_with("agent.") || kind.starts_with("human.") || kind == "admin.credential_set" => {
            let activity = match kind {
                "agent.registered" | "human.created" => 1,
                "agent.resumed" => 2,
                "admin.credential_set" => 4,
                "agent.suspended" | "human.deactivated" => 5,
                "agent.retired" => 6,
                _ => 99,
            };
            Class { uid: 3001, category: 3, activity, status: 1 }
        }
        _ if kind.starts_with("mandate.") || kind.starts_with("approval.") => {
            let (activity, status) = match kind {
                "mandate.granted" | "mandate.delegated" | "approval.approved" => (1, 1),
                "mandate.grant_refused" | "mandate.delegation_refused" | "approval.denied" | "approval.refused" => {
                    (1, 2)
                }
                "mandate.revoked" => (2, 1),
                _ => (99, 1),
            };
            Class { uid: 3005, category: 3, activity, status }
        }
        _ => Class { uid: 3004, category: 3, activity: if kind.ends_with(".created") { 1 } else { 3 }, status: 1 },
    }
}

fn status_name(status: u32) -> &'static str {
    match status {
        1 => "Success",
        2 => "Failure",
        _ => "Other",
    }
}

/// An account as OCSF's `user` object: humans and the administrator as users, agents as accounts of
/// type "AI Agent" named by their SPIFFE id.
fn account(principal: &str) -> Value {
    if let Some(agent) = principal.strip_prefix("spiffe://") {
        let name = agent.rsplit('/').next().unwrap_or(agent);
        json!({"uid": principal, "name": name, "type": "AI Agent", "type_id": 99})
    } else if principal == "admin" {
        json!({"uid": "admin", "name": "admin", "type": "Admin", "type_id": 2})
    } else if principal == "system" || principal == "unknown" {
        json!({"uid": principal, "name": principal, "type": "System", "type_id": 3})
    } else {
        let name = principal.strip_prefix("user:").unwrap_or(principal);
        json!({"uid": principal, "name": name, "email_addr": name, "type": "User", "type_id": 1})
    }
}

/// One ledger event as an OCSF event.
pub fn to_ocsf(event: &Event, trust_domain: &TrustDomain) -> Value {
    let e = &event.event;
    let c = class(event);
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or(Value::String(e.detail.clone()));
    let agent_account = e.agent.as_deref().map(|a| account(&format!("spiffe://{trust_domain}/agent/{a}")));
    let severity = if c.status == 1 { 1 } else { 2 };
    let what = [e.decision.as_deref(), e.tool.as_deref(), e.resource.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = json!({
        "class_uid": c.uid,
        "category_uid": c.category,
        "activity_id": c.activity,
        "type_uid": c.uid * 100 + c.activity,
        "time": e.at_ms,
        "severity_id": severity,
        "status_id": c.status,
        "status": status_name(c.status),
        "message": format!("{}{}{}", e.kind, if what.is_empty() { "" } else { ": " }, what),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "Mandate", "vendor_name": "Mandate", "version": env!("CARGO_PKG_VERSION")},
            "uid": event.hash,
            "sequence": event.seq,
            "event_code": e.kind,
            "log_name": "mandate-ledger",
            "correlation_uid": e.chain_id,
        },
        "actor": {"user": account(&e.actor)},
        "unmapped": {
            "mandate": {
                "seq": event.seq, "hash": event.hash, "prev_hash": event.prev_hash, "kind": e.kind,
                "agent": e.agent, "chain_id": e.chain_id, "mandate_id": e.mandate_id, "tool": e.tool,
                "resource": e.resource, "decision": e.decision, "detail": detail,
            }
        },
    });
    match c.uid {
        6003 => {
            let server = e.tool.as_deref().and_then(|t| t.split_once('/')).map(|(s, _)| s);
            out["api"] = json!({"operation": e.tool, "service": {"name": server}});
            out["actor"]["authorizations"] = json!([{"decision": e.decision, "policy": {"name": detail["policies"].clone(), "uid": detail["policy_version"].clone()}}]);
            if let Some(account) = &agent_account {
                out["actor"]["user"] = account.clone();
            }
            out["src_endpoint"] = json!({"name": out["actor"]["user"]["uid"].clone()});
            if let Some(resource) = &e.resource {
                out["resources"] = json!([{"uid": resource, "type": detail["data_class"].clone()}]);
            }
            if c.status == 2 {
                out["status_detail"] = detail["reasons"][0]["code"].clone();
            } else if c.status == 99 {
                out["status_detail"] = json!("approval_required");
            }
        }
        3001 => {
            out["user"] = agent_account.unwrap_or_else(|| account(e.resource.as_deref().unwrap_or(&e.actor)));
        }
        3005 => {
            out["user"] = agent_account.unwrap_or_else(|| account(&e.actor));
            let scope = &detail["scope"];
            out["privileges"] = if scope.is_array() { json!([scope.to_string()]) } else { json!([]) };
            if let Some(m) = &e.mandate_id {
                out["resources"] = json!([{"uid": m, "type": "mandate"}]);
            }
            if c.status == 2 {
                out["status_detail"] = detail["code"].clone();
            }
        }
        _ => {
            let entity = e.tool.clone().or_else(|| e.resource.clone()).unwrap_or_else(|| e.kind.clone());
            let kind = e.kind.split('.').next().unwrap_or_default();
            out["entity"] = json!({"uid": entity, "name": entity, "type": kind});
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use mandate_core::event::{chain_hash, NewEvent, GENESIS_HASH};

    fn event(kind: &str, actor: &str, decision: Option<&str>, detail: Value) -> Event {
        let mut e = NewEvent::new(kind, actor, 1_790_000_000_000, &detail).with_agent("finance-close");
        e.decision = decision.map(str::to_owned);
        e.tool = Some("erp/read_ledger".into());
        e.resource = Some("erp://ledger/2026-10/ap".into());
        e.chain_id = Some("mdt_c".into());
        e.mandate_id = Some("mdt_m".into());
        let hash = chain_hash(GENESIS_HASH, 7, &e);
        Event { seq: 7, event: e, prev_hash: GENESIS_HASH.into(), hash }
    }

    fn check(kind: &str, actor: &str, decision: Option<&str>, detail: Value, expected: (u64, u64, u64)) -> Value {
        let td = TrustDomain::parse("example.org").unwrap();
        let o = to_ocsf(&event(kind, actor, decision, detail), &td);
        let got =
            (o["class_uid"].as_u64().unwrap(), o["activity_id"].as_u64().unwrap(), o["status_id"].as_u64().unwrap());
        assert_eq!(got, expected, "{kind}");
        assert_eq!(o["type_uid"].as_u64().unwrap(), expected.0 * 100 + expected.1);
        assert_eq!(o["metadata"]["product"]["name"], "Mandate");
        assert_eq!(o["metadata"]["version"], OCSF_VERSION);
        assert_eq!(o["metadata"]["sequence"], 7);
        assert_eq!(o["time"], 1_790_000_000_000i64);
        assert_eq!(o["unmapped"]["mandate"]["kind"], kind);
        o
    }

    #[test]
    fn every_kind_maps_to_a_class_activity_and_status() {
        let agent = "spiffe://example.org/agent/finance-close";
        let allow = check(
            "decision",
            agent,
            Some("allow"),
            json!({"action": "read", "data_class": "financial", "policies": ["p1"], "reasons": []}),
            (6003, 2, 1),
        );
        assert_eq!(allow["actor"]["user"]["uid"], agent);
        assert_eq!(allow["actor"]["user"]["type"], "AI Agent");
        assert_eq!(allow["actor"]["authorizations"][0]["decision"], "allow");
        assert_eq!(allow["api"]["operation"], "erp/read_ledger");
        assert_eq!(allow["api"]["service"]["name"], "erp");
        assert_eq!(allow["resources"][0]["type"], "financial");
        let deny = check(
            "decision",
            agent,
            Some("deny"),
            json!({"action": "destructive", "reasons": [{"code": "scope.tool_not_in_mandate"}]}),
            (6003, 4, 2),
        );
        assert_eq!(deny["status_detail"], "scope.tool_not_in_mandate");
        assert_eq!(deny["severity_id"], 2);
        check("decision", agent, Some("approval_required"), json!({"action": "egress"}), (6003, 99, 99));
        check("agent.registered", "admin", None, json!({}), (3001, 1, 1));
        check("agent.suspended", "user:alice@example.org", None, json!({}), (3001, 5, 1));
        check("agent.resumed", "admin", None, json!({}), (3001, 2, 1));
        check("agent.retired", "admin", None, json!({}), (3001, 6, 1));
        check("admin.credential_set", "system", None, json!({}), (3001, 4, 1));
        let granted =
            check("mandate.granted", "user:alice@example.org", Some("granted"), json!({"scope": []}), (3005, 1, 1));
        assert_eq!(granted["actor"]["user"]["email_addr"], "alice@example.org");
        check(
            "mandate.delegation_refused",
            "system",
            Some("refused"),
            json!({"code": "delegation.scope_widened"}),
            (3005, 1, 2),
        );
        check("mandate.revoked", "admin", None, json!({}), (3005, 2, 1));
        check("approval.approved", "user:carol@example.org", Some("approved"), json!({}), (3005, 1, 1));
        check("approval.used", agent, None, json!({}), (3005, 99, 1));
        check("key.rotated", "admin", None, json!({}), (3004, 3, 1));
        check("approval.created", "system", None, json!({}), (3005, 99, 1));
    }
}
