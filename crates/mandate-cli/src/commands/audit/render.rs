//! Text for people: a chain's story as a tree, a blast radius as sections, and a one-line summary of
//! an event's detail. Written to be read without the docs: every line says who did what.

use crate::commands::cell;
use crate::table::visible_json;
use serde_json::Value;
use std::fmt::Write as _;

/// `2026-11-01 09:00:00` (UTC) from Unix milliseconds.
fn at(ms: &Value) -> String {
    ms.as_i64()
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// The same from Unix seconds.
fn at_secs(secs: &Value) -> String {
    at(&secs.as_i64().map_or(Value::Null, |s| Value::from(s.saturating_mul(1000))))
}

fn list(v: &Value) -> String {
    match v.as_array() {
        Some(items) if !items.is_empty() => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        _ => "-".to_owned(),
    }
}

/// A decision's reason codes, each once, in the order first given; a code given for several hops
/// names them: `scope.resource_not_in_mandate (hops 1,2)`.
fn reason_codes(reasons: &Value) -> String {
    let mut codes: Vec<(&str, Vec<String>)> = Vec::new();
    for r in reasons.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(code) = r["code"].as_str() else { continue };
        let hop = r["hop"].as_u64().map(|h| h.to_string());
        match codes.iter_mut().find(|(c, _)| *c == code) {
            Some((_, hops)) => hops.extend(hop),
            None => codes.push((code, hop.into_iter().collect())),
        }
    }
    codes
        .iter()
        .map(|(code, hops)| match hops.len() {
            0 | 1 => (*code).to_owned(),
            _ => format!("{code} (hops {})", hops.join(",")),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The detail of an event in a few words, for `audit tail`.
pub fn summary(e: &Value) -> String {
    let e = &visible_json(e);
    let detail: Value = e["detail"]
        .as_str()
        .and_then(|d| serde_json::from_str(d).ok())
        .map(|d| visible_json(&d))
        .unwrap_or(Value::Null);
    let text = match e["kind"].as_str().unwrap_or_default() {
        "decision" => {
            let approval = detail["approval_id"].as_str().map(|a| format!(" approval {a}")).unwrap_or_default();
            format!("{}{approval}", reason_codes(&detail["reasons"]))
        }
        _ => match detail {
            Value::Null => e["detail"].as_str().unwrap_or_default().to_owned(),
            d => d.to_string(),
        },
    };
    text.chars().take(100).collect()
}

fn verdict(decision: &str) -> &str {
    match decision {
        "allow" => "ALLOW",
        "deny" => "DENY",
        "approval_required" => "HELD",
        other => other,
    }
}

/// The lines for one event under a mandate, each starting with `pad`.
fn event_lines(out: &mut String, e: &Value, pad: &str) {
    let d = &e["detail"];
    let head = format!("{pad}{}  seq {:<5}", at(&e["at_ms"]), cell(&e["seq"]));
    let what = [e["tool"].as_str(), e["resource"].as_str()].into_iter().flatten().collect::<Vec<_>>().join("  ");
    let approval = d["approval_id"].as_str().unwrap_or("?");
    let _ = match e["kind"].as_str().unwrap_or_default() {
        "decision" => {
            let decision = e["decision"].as_str().unwrap_or("?");
            let held = match (decision, d["approval_id"].as_str()) {
                ("approval_required", Some(a)) => format!("  (approval {a} requested)"),
                (_, Some(a)) => format!("  (with approval {a})"),
                _ => String::new(),
            };
            let _ = writeln!(out, "{head}  {:<5}  {what}{held}", verdict(decision));
            for r in d["reasons"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let code = r["code"].as_str().unwrap_or("?");
                if code == "decision.allowed" {
                    continue;
                }
                let hop = r["hop"].as_u64().map(|h| format!(" (hop {h})")).unwrap_or_default();
                let _ = writeln!(out, "{pad}{:>33}{code}{hop}: {}", "", r["message"].as_str().unwrap_or(""));
            }
            Ok(())
        }
        "approval.created" => writeln!(out, "{head}  approval {approval} requested for {what}"),
        "approval.approved" => writeln!(out, "{head}  approval {approval} approved by {}", cell(&e["actor"])),
        "approval.denied" => writeln!(out, "{head}  approval {approval} denied by {}", cell(&e["actor"])),
        "approval.refused" => writeln!(out, "{head}  {} may not answer approval {approval}", cell(&e["actor"])),
        "approval.used" => writeln!(out, "{head}  approval {approval} used for {what}"),
        "mandate.revoked" => writeln!(
            out,
            "{head}  REVOKED by {}: {} ({} mandates)",
            cell(&e["actor"]),
            d["reason"].as_str().unwrap_or("no reason given"),
            d["revoked"].as_array().map_or(0, Vec::len)
        ),
        "mandate.delegation_refused" | "mandate.grant_refused" => writeln!(
            out,
            "{head}  REFUSED {} for agent {}: {} {}",
            e["kind"].as_str().unwrap_or_default().trim_start_matches("mandate.").trim_end_matches("_refused"),
            cell(&e["agent"]),
            d["code"].as_str().unwrap_or("?"),
            d["detail"].as_str().map(|t| t.chars().take(120).collect::<String>()).unwrap_or_default()
        ),
        kind => writeln!(out, "{head}  {kind} by {}  {what}", cell(&e["actor"])),
    };
}

fn node(out: &mut String, n: &Value, prefix: &str, last: bool) {
    let m = &n["mandate"];
    let branch = if last { "└─ " } else { "├─ " };
    let cont = if last { "   " } else { "│  " };
    let issued = &n["issued"];
    let how = if m["parent_id"].is_null() {
        format!("granted by {}", cell(&m["root"]))
    } else {
        let from = issued["detail"]["from"].as_str().map(str::to_owned).unwrap_or_else(|| cell(&issued["actor"]));
        format!("delegated by {from}")
    };
    let when = if issued.is_null() {
        String::new()
    } else {
        format!(" at {} (seq {})", at(&issued["at_ms"]), cell(&issued["seq"]))
    };
    let _ = writeln!(
        out,
        "{prefix}{branch}{} holds mandate {} [{}], {how}{when}",
        cell(&m["agent"]),
        cell(&m["id"]),
        cell(&m["state"])
    );
    let pad = format!("{prefix}{cont}");
    let intent = &m["intent"];
    let _ = writeln!(
        out,
        "{pad}   purpose: {} ({})",
        intent["purpose"].as_str().unwrap_or("-"),
        intent["category"].as_str().unwrap_or("-")
    );
    for d in m["authorization_details"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let _ = writeln!(
            out,
            "{pad}   may: tools {}; resources {}; data {}; actions {}",
            list(&d["tools"]),
            list(&d["resources"]),
            list(&d["data_classes"]),
            list(&d["actions"])
        );
    }
    let _ = writeln!(
        out,
        "{pad}   budget: {} of {} calls used; expires {}; may delegate {} more level(s)",
        cell(&m["used_calls"]),
        cell(&m["max_calls"]),
        at_secs(&m["expires_at"]),
        cell(&m["max_depth"])
    );
    if let Some(r) = m["revocation"].as_object() {
        let _ = writeln!(
            out,
            "{pad}   revoked at {} by {}: {}",
            at_secs(r.get("at").unwrap_or(&Value::Null)),
            r.get("by").map(cell).unwrap_or_default(),
            r.get("reason").map(cell).unwrap_or_default()
        );
    }
    let events = n["events"].as_array().map(Vec::as_slice).unwrap_or_default();
    if events.is_empty() {
        let _ = writeln!(out, "{pad}   no calls");
    }
    for e in events {
        event_lines(out, e, &format!("{pad}   "));
    }
    let children = n["children"].as_array().map(Vec::as_slice).unwrap_or_default();
    for (i, c) in children.iter().enumerate() {
        node(out, c, &pad, i + 1 == children.len());
    }
}

/// `mandate audit chain`.
pub fn chain(story: &Value) -> String {
    let story = &visible_json(story);
    let mut out = String::new();
    let d = &story["decisions"];
    let _ = writeln!(out, "Chain {}, started by {}", cell(&story["chain_id"]), cell(&story["root"]));
    let _ = writeln!(
        out,
        "{} events; calls: {} allowed, {} denied, {} held for approval{}",
        cell(&story["events"]),
        cell(&d["allow"]),
        cell(&d["deny"]),
        cell(&d["approval_required"]),
        if story["truncated"].as_bool() == Some(true) { " (only the oldest events are shown)" } else { "" }
    );
    let _ = writeln!(out);
    node(&mut out, &story["tree"], "", true);
    let other = story["other_events"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !other.is_empty() {
        let _ = writeln!(out, "\nAlso in this chain:");
        for e in other {
            event_lines(&mut out, e, "   ");
        }
    }
    out
}

fn section(out: &mut String, title: &str, note: &str, headers: &[&str], rows: Vec<Vec<String>>) {
    let note = if note.is_empty() { String::new() } else { format!(": {note}") };
    let _ = writeln!(out, "\n{title} ({}){note}", rows.len());
    if rows.is_empty() {
        let _ = writeln!(out, "  none");
        return;
    }
    let _ = write!(out, "{}", grid(headers, &rows, "  "));
}

/// Rows under headers, each column as wide as its widest cell, each line indented.
fn grid(headers: &[&str], rows: &[Vec<String>], indent: &str) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = indent.to_owned();
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(text, "{c:<w$}  ");
        }
        format!("{}\n", text.trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn calls(v: &Value) -> [String; 3] {
    [cell(&v["allow"]), cell(&v["deny"]), cell(&v["approval_required"])]
}

/// `mandate audit blast-radius`.
pub fn blast_radius(r: &Value) -> String {
    let r = &visible_json(r);
    let mut out = String::new();
    let scope = &r["scope"];
    let since = if r["since_ms"].is_null() { String::new() } else { format!(" since {}", at(&r["since_ms"])) };
    let _ = writeln!(out, "Blast radius of {} {}{since}", cell(&scope["kind"]), cell(&scope["id"]));
    let chains = r["chains"].as_array().map_or(0, Vec::len);
    let _ = writeln!(out, "Authority from {} through {chains} chain(s): {}", list(&r["humans"]), list(&r["chains"]));
    let range = match r["seq_range"].as_array() {
        Some(a) if a.len() == 2 => format!(" (seq {} to {})", cell(&a[0]), cell(&a[1])),
        _ => String::new(),
    };
    let [allow, deny, held] = calls(&r["decisions"]);
    let _ = writeln!(
        out,
        "{} events{range}; calls: {allow} allowed, {deny} denied, {held} held for approval{}",
        cell(&r["events"]),
        if r["truncated"].as_bool() == Some(true) { " (only the oldest events were read)" } else { "" }
    );
    let items = |key: &str| r[key].as_array().cloned().unwrap_or_default();
    section(
        &mut out,
        "Agents reached",
        if scope["kind"] == "agent" {
            "the agent asked about first, then every sub-agent it delegated to; depth 1 is a human's grant"
        } else {
            "depth 1 is a human's grant"
        },
        &["AGENT", "DEPTH", "AUTHORITY FROM", "MANDATES", "ALLOWED", "DENIED", "HELD"],
        items("agents")
            .iter()
            .map(|a| {
                let [allow, deny, held] = calls(&a["calls"]);
                vec![cell(&a["agent"]), cell(&a["depth"]), list(&a["from"]), cell(&a["mandates"]), allow, deny, held]
            })
            .collect(),
    );
    let touched = |key: &str, with_tools: bool| -> Vec<Vec<String>> {
        items(key)
            .iter()
            .map(|t| {
                let [allow, deny, held] = calls(&t["calls"]);
                let mut row = vec![cell(&t["name"]), allow, deny, held, list(&t["agents"])];
                if with_tools {
                    row.push(list(&t["tools"]));
                }
                row.push(at(&t["first_ms"]));
                row.push(at(&t["last_ms"]));
                row
            })
            .collect()
    };
    section(
        &mut out,
        "Tools called",
        "ALLOWED is what was let through",
        &["TOOL", "ALLOWED", "DENIED", "HELD", "AGENTS", "FIRST", "LAST"],
        touched("tools", false),
    );
    section(
        &mut out,
        "Resources named in calls",
        "",
        &["RESOURCE", "ALLOWED", "DENIED", "HELD", "AGENTS", "TOOLS", "FIRST", "LAST"],
        touched("resources", true),
    );
    section(
        &mut out,
        "Data classes of the tools called",
        "",
        &["DATA CLASS", "ALLOWED", "DENIED", "HELD", "AGENTS", "TOOLS", "FIRST", "LAST"],
        touched("data_classes", true),
    );
    section(
        &mut out,
        "Approvals",
        "",
        &["APPROVAL", "AGENT", "TOOL", "RESOURCE", "STATUS", "DECIDED BY", "EVENTS"],
        items("approvals")
            .iter()
            .map(|a| {
                vec![
                    cell(&a["approval_id"]),
                    cell(&a["agent"]),
                    cell(&a["tool"]),
                    cell(&a["resource"]),
                    cell(&a["status"]),
                    cell(&a["decided_by"]),
                    list(&a["seqs"]),
                ]
            })
            .collect(),
    );
    let live = items("live_mandates");
    section(
        &mut out,
        "Authority still live",
        "cut it off with `mandate revoke <mandate>` or `mandate revoke --chain <chain>`",
        &["MANDATE", "AGENT", "DEPTH", "CHAIN", "EXPIRES", "MAY USE TOOLS"],
        live.iter()
            .map(|m| {
                let tools: Vec<String> = m["authorization_details"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|d| list(&d["tools"]))
                    .collect();
                vec![
                    cell(&m["id"]),
                    cell(&m["agent"]),
                    cell(&m["depth"]),
                    cell(&m["chain_id"]),
                    at_secs(&m["expires_at"]),
                    tools.join("; "),
                ]
            })
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::reason_codes;
    use serde_json::json;

    #[test]
    fn a_code_given_for_several_hops_is_shown_once_with_its_hops() {
        let reasons = json!([
            {"code": "scope.resource_not_in_mandate", "hop": 1},
            {"code": "scope.resource_not_in_mandate", "hop": 2},
            {"code": "chain.agent_not_active", "hop": 2},
            {"code": "token.expired"}
        ]);
        assert_eq!(
            reason_codes(&reasons),
            "scope.resource_not_in_mandate (hops 1,2),chain.agent_not_active,token.expired"
        );
        assert_eq!(reason_codes(&json!([{"code": "decision.allowed", "hop": 1}])), "decision.allowed");
        assert_eq!(reason_codes(&json!(null)), "");
    }
}
