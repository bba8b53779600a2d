//! The console's pages: approvals, chains, incident, registry.
//!
//! Every page and every button calls the HTTP API's own handler (`crate::routes`) with the
//! signed-in caller and renders its answer as JSON values: what a human may see and do here is
//! exactly what their credential may over the API, checked in one place. A refusal is the API's
//! refusal (status, code, message) shown as a page.

use super::html::{self, api_refusal, at_ms, csrf, json_block, json_diff, layout, page_response, reasons, text};
use super::session::{self, signed, signed_form, Signed};
use crate::error::{ApiBytes, ApiError, ApiJson, ApiQuery};
use crate::routes::{agents, audit, decisions, gateway, mandates, review};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The JSON of an API handler's answer.
fn value<T: Serialize>(r: Result<ApiJson<T>, ApiError>) -> Result<Value, ApiError> {
    r.map(|ApiJson(v)| serde_json::to_value(v).unwrap_or(Value::Null))
}

/// An API query type built from plain fields (its fields are the handler's own, private to it).
fn query<T: DeserializeOwned>(v: Value) -> Result<ApiQuery<T>, ApiError> {
    serde_json::from_value(v).map(ApiQuery).map_err(|e| ApiError::bad_request("request.invalid_query", e.to_string()))
}

/// A JSON body for an API handler that reads one.
fn body(v: Value) -> ApiBytes {
    ApiBytes(axum::body::Bytes::from(v.to_string()))
}

/// Who is signed in, or the sign-in page (coming back here).
macro_rules! signed_or_login {
    ($state:expr, $headers:expr, $uri:expr) => {
        match signed(&$state, &$headers).await {
            Some(s) => s,
            None => return session::to_login(&$uri),
        }
    };
}

/// Who sent this form, checked (session, CSRF token, origin), or the refusal page.
macro_rules! signed_form_or_refuse {
    ($state:expr, $headers:expr, $csrf:expr) => {
        match signed_form(&$state, &$headers, &$csrf).await {
            Ok(s) => s,
            Err(r) => return r,
        }
    };
}

/// A page of the console, inside its frame.
fn page(signed: &Signed, title: &str, body: Markup) -> Response {
    page_response(StatusCode::OK, layout(signed, title, body))
}

/// `GET /console`.
pub async fn home() -> Redirect {
    Redirect::to("/console/approvals")
}

/// After a form: where to go back to (a console page only), with a notice.
fn back(to: Option<&str>, default: &str, notice: &str) -> Response {
    let to = to.filter(|t| t.starts_with("/console/") && !t.contains("//") && !t.contains('\\')).unwrap_or(default);
    let sep = if to.contains('?') { '&' } else { '?' };
    let q = serde_urlencoded::to_string([("notice", notice)]).unwrap_or_default();
    Redirect::to(&format!("{to}{sep}{q}")).into_response()
}

/// `?notice=` after a form.
#[derive(Deserialize, Default)]
pub struct Notice {
    notice: Option<String>,
}

fn notice(n: &Notice) -> Markup {
    html! { @if let Some(n) = &n.notice { p.ok #notice role="status" { (n) } } }
}

// ----------------------------------------------------------------------------------------------
// Approvals

/// `GET /console/approvals`: the queue, newest first, with what held each call.
pub async fn approvals(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Query(n): Query<Notice>,
) -> Response {
    let who = signed_or_login!(state, headers, uri);
    let list = match query(json!({})) {
        Ok(q) => value(decisions::approvals(State(state.clone()), who.caller.clone(), q).await),
        Err(e) => Err(e),
    };
    let list = match list {
        Ok(v) => v,
        Err(e) => return api_refusal(&who, "Approvals", &e),
    };
    let items = list["approvals"].as_array().cloned().unwrap_or_default();
    page(
        &who,
        "Approvals",
        html! {
            (notice(&n))
            p #approval-news .hint hidden { "The queue changed. " a href="/console/approvals" { "Reload" } }
            div #approval-list data-shown=(items.len()) {
                @if items.is_empty() { p.muted { "Nothing is waiting for you." } }
                @for a in &items { (approval_card(&who, a)) }
            }
        },
    )
}

fn approval_card(who: &Signed, a: &Value) -> Markup {
    let d = &a["detail"];
    let id = text(&a["id"]);
    let chain_agents: Vec<String> = d["chain_agents"].as_array().into_iter().flatten().map(text).collect();
    html! {
        section.card.approval data-approval-id=(id) {
            h3 { code { (text(&a["tool"])) } " by " strong { (text(&a["agent"])) } }
            dl.facts {
                dt { "Resource" } dd { code { (text(&a["resource"])) } }
                dt { "Chain" } dd {
                    a href={ "/console/chains/" (text(&a["chain_id"])) } { (text(&a["chain_id"])) }
                    @if !chain_agents.is_empty() { " · " (text(&d["root"])) " → " (chain_agents.join(" → ")) }
                }
                dt { "Task" } dd { (text(&d["purpose"])) " (" code { (text(&d["category"])) } ")" }
                dt { "Data class, action" } dd { (text(&d["data_class"])) ", " (text(&d["action"])) }
                dt { "Risk" } dd.signals {
                    (text(&d["risk_score"])) " "
                    @for s in d["signals"].as_array().into_iter().flatten() { code.signal { (text(s)) } }
                }
                dt { "Held" } dd { (at_ms(a["created_ms"].as_i64().unwrap_or(0))) ", expires " (at_ms(a["expires_ms"].as_i64().unwrap_or(0))) }
            }
            h4 { "Why it was held" }
            (reasons(&d["reasons"]))
            h4 { "Arguments" }
            div.arguments { (json_block(&d["arguments"])) }
            form.inline method="post" action={ "/console/approvals/" (id) "/approve" } {
                (csrf(who))
                input type="text" name="comment" placeholder="Comment (recorded)" maxlength="1000";
                button.approve type="submit" { "Approve" }
            }
            form.inline method="post" action={ "/console/approvals/" (id) "/deny" } {
                (csrf(who))
                input type="text" name="comment" placeholder="Comment (recorded)" maxlength="1000";
                button.deny type="submit" { "Deny" }
            }
        }
    }
}

/// `GET /console/approvals/count`: how many approvals wait for this human, for the badge.
pub async fn approvals_count(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(who) = signed(&state, &headers).await else {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": "console.not_signed_in"}))).into_response();
    };
    let list = match query(json!({})) {
        Ok(q) => value(decisions::approvals(State(state.clone()), who.caller, q).await),
        Err(e) => Err(e),
    };
    match list {
        Ok(v) => {
            let pending = v["approvals"].as_array().map_or(0, Vec::len);
            ([(axum::http::header::CACHE_CONTROL, "no-store")], axum::Json(json!({"pending": pending}))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// A form that answers or revokes: its CSRF token, a comment or reason, where to go back to.
#[derive(Deserialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /console/approvals/{id}/{approve|deny}`.
pub async fn answer_approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, answer)): Path<(String, String)>,
    Form(form): Form<ActForm>,
) -> Response {
    let who = signed_form_or_refuse!(state, headers, form.csrf);
    let b = body(json!({"comment": form.comment.filter(|c| !c.trim().is_empty())}));
    let r = match answer.as_str() {
        "approve" => decisions::approve(State(state.clone()), who.caller.clone(), Path(id.clone()), b).await,
        "deny" => decisions::deny(State(state.clone()), who.caller.clone(), Path(id.clone()), b).await,
        _ => return html::refusal(StatusCode::NOT_FOUND, "request.no_route", "an approval is approved or denied"),
    };
    match r {
        Ok(ApiJson(a)) => back(None, "/console/approvals", &format!("Approval {id} {}.", a.status)),
        Err(e) => api_refusal(&who, "Approvals", &e),
    }
}

// ----------------------------------------------------------------------------------------------
// Chains

/// `GET /console/chains`: recent grants, and a box to open any chain by id.
pub async fn chains(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let who = signed_or_login!(state, headers, uri);
    let recent = match query(json!({"kind": "mandate.granted", "newest": true, "limit": 50})) {
        Ok(q) => value(audit::query(State(state.clone()), who.caller.clone(), q).await).ok(),
        Err(_) => None,
    };
    let mut grants: Vec<Value> = recent.and_then(|v| v["events"].as_array().cloned()).unwrap_or_default();
    grants.reverse();
    page(
        &who,
        "Chains",
        html! {
            form.inline method="get" action="/console/chains/open" {
                label for="chain-id" { "Chain id" }
                input #chain-id type="text" name="id" required;
                button type="submit" { "Open" }
            }
            @if !grants.is_empty() {
                h2 { "Recent grants" }
                table {
                    tr { th { "Granted" } th { "Chain" } th { "Agent" } th { "By" } th { "Task" } }
                    @for e in &grants {
                        @let d: Value = serde_json::from_str(e["detail"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
                        tr {
                            td { (at_ms(e["at_ms"].as_i64().unwrap_or(0))) }
                            td { a href={ "/console/chains/" (text(&e["chain_id"])) } { (text(&e["chain_id"])) } }
                            td { (text(&e["agent"])) }
                            td { (text(&e["actor"])) }
                            td { (text(&d["purpose"])) }
                        }
                    }
                }
            }
        },
    )
}

/// `?id=` of the chain box, or `?notice=`.
#[derive(Deserialize, Default)]
pub struct ChainQuery {
    id: Option<String>,
    notice: Option<String>,
}

/// `GET /console/chains/{id}`: the tree from the human's grant through every hop, as a picture,
/// with revoke on every branch, and the chain's story in time order.
pub async fn chain(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ChainQuery>,
) -> Response {
    let who = signed_or_login!(state, headers, uri);
    if id == "open" {
        let target = q.id.unwrap_or_default();
        let target: String =
            target.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
        return Redirect::to(&format!("/console/chains/{target}")).into_response();
    }
    let tree = match value(mandates::chain(State(state.clone()), who.caller.clone(), Path(id.clone())).await) {
        Ok(v) => v,
        Err(e) => return api_refusal(&who, "Chain", &e),
    };
    // Counts and the story need the auditor's view of the ledger; without it the tree still shows.
    let story = value(audit::chain_story(State(state.clone()), who.caller.clone(), Path(id.clone())).await).ok();
    let mut counts: HashMap<String, (u64, u64, u64)> = HashMap::new();
    let mut events: Vec<Value> = Vec::new();
    if let Some(s) = &story {
        collect_story(&s["tree"], &mut counts, &mut events);
        events.extend(s["other_events"].as_array().cloned().unwrap_or_default());
        events.sort_by_key(|e| e["seq"].as_i64().unwrap_or(0));
    }
    let mut nodes = Vec::new();
    layout_tree(&tree, 0, &mut 0, None, &mut nodes);
    page(
        &who,
        &format!("Chain {id}"),
        html! {
                    @if let Some(n) = &q.notice { p.ok #notice role="status" { (n) } }
                    p { "Granted by " strong { (text(&tree["root"])) } " for " em { (text(&tree["intent"]["purpose"])) } }
                    (chain_picture(&nodes, story.is_some().then_some(&counts)))
                    h2 { "Hops" }
                    table #hops {
                        tr { th { "Hop" } th { "Agent" } th { "Mandate" } th { "Scope" } th { "Budget" } th { "Calls" } th { "State" } th {} }
                        @for n in &nodes {
                            @let m = &n.mandate;
                            @let (allow, deny, held) = counts.get(&text(&m["id"])).copied().unwrap_or_default();
                            tr data-mandate=(text(&m["id"])) {
                                td { (text(&m["depth"])) }
                                td { a href={ "/console/agents/" (text(&m["agent"])) } { (text(&m["agent"])) } }
                                td { code { (text(&m["id"])) } }
                                td { (scope_text(&m["authorization_details"])) }
                                td { (text(&m["used_calls"])) " / " (text(&m["max_calls"])) }
        @if story.is_some() { td { span.decision-allow { (allow) " allowed" } ", " span.decision-deny { (deny) " denied" } ", " span.decision-approval_required { (held) " held" } } } @else { td.muted { "for auditors" } }
                                td { span class={ "state-" (text(&m["state"])) } { (text(&m["state"])) } }
                                td {
                                    @if text(&m["state"]) == "active" {
                                        form.inline method="post" action={ "/console/mandates/" (text(&m["id"])) "/revoke" }
                                            data-confirm={ "Revoke " (text(&m["id"])) " and every mandate below it?" } {
                                            (csrf(&who))
                                            input type="hidden" name="back" value={ "/console/chains/" (id) };
                                            input type="text" name="reason" placeholder="Reason (recorded)" maxlength="1000";
                                            button.danger type="submit" { "Revoke branch" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    h2 { "Story" }
                    @if story.is_none() { p.muted { "The story of a chain is for auditors and administrators." } }
                    (event_table(&events))
                },
    )
}

fn collect_story(node: &Value, counts: &mut HashMap<String, (u64, u64, u64)>, events: &mut Vec<Value>) {
    let id = text(&node["mandate"]["id"]);
    let entry = counts.entry(id).or_default();
    if let Some(issued) = node.get("issued").filter(|v| !v.is_null()) {
        events.push(issued.clone());
    }
    for e in node["events"].as_array().into_iter().flatten() {
        match e["decision"].as_str() {
            Some("allow") => entry.0 += 1,
            Some("deny") => entry.1 += 1,
            Some("approval_required") => entry.2 += 1,
            _ => {}
        }
        events.push(e.clone());
    }
    for c in node["children"].as_array().into_iter().flatten() {
        collect_story(c, counts, events);
    }
}

struct Node {
    mandate: Value,
    depth: usize,
    row: usize,
    parent: Option<usize>,
}

/// Depth-first order: a node's row is after its parent's and its siblings' subtrees.
fn layout_tree(m: &Value, depth: usize, row: &mut usize, parent: Option<usize>, out: &mut Vec<Node>) {
    let index = out.len();
    let mut mandate = m.clone();
    if let Some(o) = mandate.as_object_mut() {
        o.remove("children");
    }
    out.push(Node { mandate, depth, row: *row, parent });
    *row += 1;
    for c in m["children"].as_array().into_iter().flatten() {
        layout_tree(c, depth + 1, row, Some(index), out);
    }
}

fn chain_picture(nodes: &[Node], counts: Option<&HashMap<String, (u64, u64, u64)>>) -> Markup {
    const W: usize = 250;
    const H: usize = 74;
    const GAP_X: usize = 40;
    const GAP_Y: usize = 16;
    let depth = nodes.iter().map(|n| n.depth).max().unwrap_or(0) + 1;
    let rows = nodes.len().max(1);
    let width = depth * (W + GAP_X) + 20;
    let height = rows * (H + GAP_Y) + 20;
    let pos = |n: &Node| (10 + n.depth * (W + GAP_X), 10 + n.row * (H + GAP_Y));
    html! {
        svg.chain #chain-picture role="img" aria-label="the chain as a tree" viewBox={ "0 0 " (width) " " (height) }
            width=(width) height=(height) xmlns="http://www.w3.org/2000/svg" {
            @for n in nodes {
                @if let Some(p) = n.parent {
                    @let (px, py) = pos(&nodes[p]);
                    @let (x, y) = pos(n);
                    line x1=(px + W) y1=(py + H / 2) x2=(x) y2=(y + H / 2) {}
                }
            }
            @for n in nodes {
                @let (x, y) = pos(n);
                @let m = &n.mandate;
                @let state = text(&m["state"]);
                @let calls = match counts {
                    Some(c) => { let (a, d, h) = c.get(&text(&m["id"])).copied().unwrap_or_default(); format!("{a} allowed · {d} denied · {h} held") }
                    None => "calls: for auditors".to_owned(),
                };
                g.hop data-mandate=(text(&m["id"])) data-state=(state) {
                    rect class={ @if n.parent.is_none() { "root " } @if state != "active" { "revoked" } }
                        x=(x) y=(y) width=(W) height=(H) {}
                    text.title x=(x + 8) y=(y + 17) { (text(&m["agent"])) " · hop " (text(&m["depth"])) " · " (state) }
                    text x=(x + 8) y=(y + 34) { (truncate(&scope_text(&m["authorization_details"]), 38)) }
                    text x=(x + 8) y=(y + 50) { "budget " (text(&m["used_calls"])) "/" (text(&m["max_calls"])) }
                    text x=(x + 8) y=(y + 66) { (calls) }
                }
            }
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn scope_text(details: &Value) -> String {
    details
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["tools"].as_array().cloned().unwrap_or_default())
        .map(|t| text(&t))
        .collect::<Vec<_>>()
        .join(", ")
}

fn event_table(events: &[Value]) -> Markup {
    html! {
        @if !events.is_empty() {
            table.story {
                tr { th { "#" } th { "When" } th { "What" } th { "Who" } th { "Agent" } th { "Tool" } th { "Resource" } th { "Outcome" } }
                @for e in events {
                    tr {
                        td { (text(&e["seq"])) }
                        td { (at_ms(e["at_ms"].as_i64().unwrap_or(0))) }
                        td { code { (text(&e["kind"])) } }
                        td { (text(&e["actor"])) }
                        td { (text(&e["agent"])) }
                        td { (text(&e["tool"])) }
                        td { (text(&e["resource"])) }
                        td { span class={ "decision-" (text(&e["decision"])) } { (text(&e["decision"])) } }
                    }
                }
            }
        }
    }
}

/// `POST /console/mandates/{id}/revoke`: revokes a branch (the mandate and everything below it).
pub async fn revoke_mandate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActForm>,
) -> Response {
    let who = signed_form_or_refuse!(state, headers, form.csrf);
    let reason = form.reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "revoked from the console".into());
    let b = body(json!({ "reason": reason }));
    match mandates::revoke(State(state.clone()), who.caller.clone(), Path(id.clone()), b.0).await {
        Ok(ApiJson(r)) => {
            back(form.back.as_deref(), "/console/chains", &format!("Revoked {} mandate(s).", r.revoked.len()))
        }
        Err(e) => api_refusal(&who, "Revoke", &e),
    }
}

// ----------------------------------------------------------------------------------------------
// Incident

/// `?agent=`, `?human=` or `?chain=` of the incident page.
#[derive(Deserialize, Default)]
pub struct IncidentQuery {
    agent: Option<String>,
    human: Option<String>,
    chain: Option<String>,
    notice: Option<String>,
}

/// `GET /console/incident`: the blast radius of an agent, a human or a chain, the kill switch one
/// confirmation away, and the story in time order.
pub async fn incident(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<IncidentQuery>,
) -> Response {
    let who = signed_or_login!(state, headers, uri);
    let target = match (&q.agent, &q.human, &q.chain) {
        (Some(a), None, None) if !a.is_empty() => Some(("agent", a.clone())),
        (None, Some(h), None) if !h.is_empty() => Some(("human", h.clone())),
        (None, None, Some(c)) if !c.is_empty() => Some(("chain", c.clone())),
        _ => None,
    };
    let picker = html! {
        form.inline method="get" action="/console/incident" {
            select name="kind" id="incident-kind" {
                option value="agent" { "Agent" } option value="human" { "Human" } option value="chain" { "Chain" }
            }
            input #incident-id type="text" name="id" placeholder="finance-close, alice@example.org or a chain id";
            button type="submit" { "Show blast radius" }
        }
    };
    let Some((kind, id)) = target else {
        // The picker sends `kind` and `id`; turn them into the page's own query.
        let raw: HashMap<String, String> =
            uri.query().and_then(|s| serde_urlencoded::from_str(s).ok()).unwrap_or_default();
        if let (Some(kind), Some(id)) = (raw.get("kind"), raw.get("id")) {
            if ["agent", "human", "chain"].contains(&kind.as_str()) && !id.trim().is_empty() {
                let q = serde_urlencoded::to_string([(kind.as_str(), id.trim())]).unwrap_or_default();
                return Redirect::to(&format!("/console/incident?{q}")).into_response();
            }
        }
        return page(
            &who,
            "Incident",
            html! { p.hint { "Whose authority do you need to see, and perhaps cut off?" } (picker) },
        );
    };
    let radius = match query(json!({ kind: id })) {
        Ok(q) => value(audit::blast_radius(State(state.clone()), who.caller.clone(), q).await),
        Err(e) => Err(e),
    };
    let radius = match radius {
        Ok(v) => v,
        Err(e) => return api_refusal(&who, "Incident", &e),
    };
    let story_query = match kind {
        "chain" => json!({"chain": id, "limit": 500}),
        "human" => json!({"human": id, "limit": 500}),
        _ => json!({"agent": id, "limit": 500}),
    };
    let story = match query(story_query) {
        Ok(q) => value(audit::query(State(state.clone()), who.caller.clone(), q).await).ok(),
        Err(_) => None,
    };
    let events: Vec<Value> = story.and_then(|s| s["events"].as_array().cloned()).unwrap_or_default();
    let (switch, question) = match kind {
        "agent" => ("Suspend agent", format!("Suspend agent {id}? Every mandate it holds is refused at once.")),
        "human" => (
            "Revoke everything they granted",
            format!("Revoke every mandate {id} granted, and all delegations below them?"),
        ),
        _ => ("Revoke the whole chain", format!("Revoke chain {id} and every mandate in it?")),
    };
    let touched = |v: &Value| -> Markup {
        html! {
            ul { @for t in v.as_array().into_iter().flatten() { li { code { (text(&t["name"])) } " × " (text(&t["count"])) } } }
        }
    };
    page(
        &who,
        &format!("Incident: {kind} {id}"),
        html! {
            @if let Some(n) = &q.notice { p.ok #notice role="status" { (n) } }
            (picker)
            section.card.kill {
                h3 { "Kill switch" }
                form.inline method="post" action="/console/kill" data-confirm=(question) {
                    (csrf(&who))
                    input type="hidden" name="kind" value=(kind);
                    input type="hidden" name="id" value=(id);
                    input type="text" name="reason" placeholder="Reason (recorded)" maxlength="1000";
                    button.danger #kill-switch type="submit" { (switch) }
                }
            }
            div.diff {
                section.card { h3 { "Agents reached" }
                    ul { @for a in radius["agents"].as_array().into_iter().flatten() {
                        li { a href={ "/console/incident?agent=" (text(&a["agent"])) } { (text(&a["agent"])) } " " span.muted { (text(a)) } } } } }
                section.card { h3 { "Live authority" }
                    ul { @for m in radius["live_mandates"].as_array().into_iter().flatten() {
                        li { code { (text(&m["mandate_id"])) } " " (text(&m["agent"])) " " a href={ "/console/chains/" (text(&m["chain_id"])) } { "chain" } } } } }
                section.card { h3 { "Tools" } (touched(&radius["tools"])) }
                section.card { h3 { "Resources" } (touched(&radius["resources"])) }
                section.card { h3 { "Data classes" } (touched(&radius["data_classes"])) }
                section.card { h3 { "Decisions" } p {
                    span.decision-allow { (text(&radius["decisions"]["allow"])) " allowed" } ", "
                    span.decision-deny { (text(&radius["decisions"]["deny"])) " denied" } ", "
                    span.decision-approval_required { (text(&radius["decisions"]["approval_required"])) " held" } } }
            }
            h2 { "Story" }
            (event_table(&events))
        },
    )
}

/// The kill switch's form.
#[derive(Deserialize)]
pub struct KillForm {
    #[serde(default)]
    csrf: String,
    kind: String,
    id: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /console/kill`: suspend an agent, revoke everything a human granted, or revoke a chain.
pub async fn kill(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<KillForm>) -> Response {
    let who = signed_form_or_refuse!(state, headers, form.csrf);
    let reason = form.reason.filter(|r| !r.trim().is_empty()).unwrap_or_else(|| "kill switch in the console".into());
    let s = State(state.clone());
    let c = who.caller.clone();
    let id = form.id.clone();
    let done = match form.kind.as_str() {
        "agent" => agents::suspend(s, c, Path(id.clone()), body(json!({ "reason": reason })))
            .await
            .map(|_| format!("Agent {id} suspended.")),
        "human" => mandates::revoke_human(s, c, Path(id.clone()), body(json!({ "reason": reason })).0)
            .await
            .map(|ApiJson(r)| format!("Revoked {} mandate(s) granted by {id}.", r.revoked.len())),
        "chain" => mandates::revoke_chain(s, c, Path(id.clone()), body(json!({ "reason": reason })).0)
            .await
            .map(|ApiJson(r)| format!("Revoked {} mandate(s) of chain {id}.", r.revoked.len())),
        _ => {
            return html::refusal(
                StatusCode::BAD_REQUEST,
                "request.invalid_body",
                "the kill switch takes an agent, a human or a chain",
            )
        }
    };
    match done {
        Ok(message) => {
            let q = serde_urlencoded::to_string([(form.kind.as_str(), form.id.as_str())]).unwrap_or_default();
            back(Some(&format!("/console/incident?{q}")), "/console/incident", &message)
        }
        Err(e) => api_refusal(&who, "Kill switch", &e),
    }
}

// ----------------------------------------------------------------------------------------------
// Registry

/// `GET /console/registry`: agents, the review queue, discovered clients, the tool catalogue's
/// pins, drift alerts and the ledger's verification. Each part shows what the human may read; a
/// part they may not is said so, not hidden silently.
pub async fn registry(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Query(n): Query<Notice>,
) -> Response {
    let who = signed_or_login!(state, headers, uri);
    let s = || State(state.clone());
    let c = || who.caller.clone();
    let agents = match query(json!({})) {
        Ok(q) => value(agents::list(s(), c(), q).await),
        Err(e) => Err(e),
    };
    let review = match query(json!({})) {
        Ok(q) => value(review::review(s(), c(), q).await),
        Err(e) => Err(e),
    };
    let discovered = value(gateway::discovered(s(), c()).await);
    let pins = value(gateway::pins(s(), c()).await);
    let verify = value(audit::verify(s(), c()).await);
    let alerts = match query(json!({"kind": "drift.alert", "newest": true, "limit": 20})) {
        Ok(q) => value(audit::query(s(), c(), q).await),
        Err(e) => Err(e),
    };
    let intents = value(crate::routes::intents::list(s(), c()).await);
    let refused =
        |e: &ApiError| html! { p.muted.refused { "Not for you: " (e.detail()) " (" code { (e.code()) } ")" } };
    page(
        &who,
        "Registry",
        html! {
            (notice(&n))
            h2 { "Review queue" }
            @match &review {
                Ok(r) => {
                    @let items = r["items"].as_array().cloned().unwrap_or_default();
                    @if items.is_empty() { p.muted { "Nothing is due." } }
                    table #review { @for i in &items {
                        tr data-agent=(text(&i["agent"])) {
                            td { a href={ "/console/agents/" (text(&i["agent"])) } { (text(&i["agent"])) } }
                            td { (text(&i["owner"])) }
                            td { @for r in i["reasons"].as_array().into_iter().flatten() { code { (text(&r["code"])) } " " } }
                            td { (lifecycle_forms(&who, &text(&i["agent"]), &text(&i["state"]))) }
                        }
                    } }
                }
                Err(e) => (refused(e)),
            }
            h2 { "Agents" }
            @match &agents {
                Ok(a) => table #agents {
                    tr { th { "Agent" } th { "Owner" } th { "Environment" } th { "State" } th { "Certified" } }
                    @for a in a["agents"].as_array().into_iter().flatten() {
                        tr { td { a href={ "/console/agents/" (text(&a["id"])) } { (text(&a["id"])) } }
                             td { (text(&a["owner"])) } td { (text(&a["environment"])) }
                             td { span class={ "state-" (text(&a["state"])) } { (text(&a["state"])) } }
                             td { (text(&a["certified_at"])) } }
                    }
                },
                Err(e) => (refused(e)),
            }
            h2 { "Discovered clients" }
            @match &discovered {
                Ok(d) => table #discovered {
                    tr { th { "Client" } th { "Server" } th { "Seen" } th { "From" } th { "Key" } th {} }
                    @for cl in d["clients"].as_array().into_iter().flatten() {
                        tr { td { (text(&cl["client_name"])) " " span.muted { (text(&cl["user_agent"])) } }
                             td { (text(&Value::from(cl["servers"].as_array().map(|s| s.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default()))) }
                             td { (text(&cl["requests"])) "×, last " (text(&cl["last_seen"])) " " code { (text(&cl["last_reason"])) } }
                             td { (text(&cl["source"])) }
                             td { code { (truncate(&text(&cl["key_thumbprint"]), 16)) } }
                             td { a href={ "/console/register?client=" (text(&cl["id"])) } { "Register as an agent" } } }
                    }
                },
                Err(e) => (refused(e)),
            }
            h2 { "Tool definitions" }
            @match &pins {
                Ok(p) => table #pins {
                    tr { th { "Tool" } th { "State" } th { "Flags" } }
                    @for t in p["pins"].as_array().into_iter().flatten() {
                        @let name = text(&t["name"]);
                        tr data-tool=(name) {
                            td { a href={ "/console/tools/" (name) } { (name) } }
                            td { @if t["pending_sha256"].is_null() { "pinned" } @else { strong.error { "changed: waiting for review" } } }
                            td.flags { @for f in t["flags"].as_array().into_iter().flatten() { code { (text(f)) } } }
                        }
                    }
                },
                Err(e) => (refused(e)),
            }
            h2 { "Drift alerts" }
            @match &alerts {
                Ok(a) => (event_table(a["events"].as_array().map(Vec::as_slice).unwrap_or_default())),
                Err(e) => (refused(e)),
            }
            h2 { "Intent categories" }
            @match &intents {
                Ok(i) => ul { @for c in i["categories"].as_array().into_iter().flatten() {
                    li { code { (text(&c["name"])) } " " (text(&c["spec"]["mode"])) " " span.muted { (text(&c["spec"]["description"])) } } } },
                Err(e) => (refused(e)),
            }
            h2 { "Ledger" }
            @match &verify {
                Ok(v) => p #ledger-state class=(if v["ok"].as_bool() == Some(true) { "ok" } else { "error" }) {
                    @if v["ok"].as_bool() == Some(true) { "The hash chain verifies: " } @else { "The ledger does NOT verify: " }
                    (text(&v["events"])) " events, head " (text(&v["head"]["seq"])) ", " (text(&v["checkpoints_matched"])) " signed checkpoint(s) matched"
                    @if let Some(p) = v["problem"].as_object() { " · " (text(&Value::Object(p.clone()))) }
                },
                Err(e) => (refused(e)),
            }
        },
    )
}

fn lifecycle_forms(who: &Signed, agent: &str, state: &str) -> Markup {
    let actions: &[&str] = match state {
        "active" => &["certify", "suspend", "retire"],
        "suspended" => &["resume", "retire"],
        _ => &[],
    };
    html! {
        @for a in actions {
            form.inline method="post" action={ "/console/agents/" (agent) "/" (a) }
                data-confirm=[(*a == "suspend" || *a == "retire").then(|| format!("{a} agent {agent}?"))] {
                (csrf(who))
                input type="hidden" name="back" value="/console/registry";
                button class=[(*a == "suspend" || *a == "retire").then_some("danger")] type="submit" { (a) }
            }
        }
    }
}

/// `GET /console/agents/{id}`: one agent and its history.
pub async fn agent(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(n): Query<Notice>,
) -> Response {
    let who = signed_or_login!(state, headers, uri);
    let view = match value(agents::show(State(state.clone()), who.caller.clone(), Path(id.clone())).await) {
        Ok(v) => v,
        Err(e) => return api_refusal(&who, "Agent", &e),
    };
    let history = value(agents::history(State(state.clone()), who.caller.clone(), Path(id.clone())).await).ok();
    let events: Vec<Value> = history.and_then(|h| h["events"].as_array().cloned()).unwrap_or_default();
    page(
        &who,
        &format!("Agent {id}"),
        html! {
            (notice(&n))
            dl.facts {
                dt { "Name" } dd { (text(&view["name"])) }
                dt { "Owner" } dd { (text(&view["owner"])) }
                dt { "Purpose" } dd { (text(&view["purpose"])) }
                dt { "Environment" } dd { (text(&view["environment"])) }
                dt { "State" } dd { span class={ "state-" (text(&view["state"])) } { (text(&view["state"])) } }
                dt { "Review" } dd { (text(&view["review"])) }
            }
            h3 { "Boundary" } (json_block(&view["boundary"]))
            (lifecycle_forms(&who, &id, &text(&view["state"])))
            p { a href={ "/console/incident?agent=" (id) } { "Blast radius and kill switch" } }
            h2 { "History" }
            (event_table(&events))
        },
    )
}

/// `POST /console/agents/{id}/{certify|suspend|resume|retire}`.
pub async fn agent_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActForm>,
) -> Response {
    let who = signed_form_or_refuse!(state, headers, form.csrf);
    let b = body(json!({ "reason": form.reason.filter(|r| !r.trim().is_empty()) }));
    let (s, c, p) = (State(state.clone()), who.caller.clone(), Path(id.clone()));
    let r = match action.as_str() {
        "certify" => agents::certify(s, c, p, b).await,
        "suspend" => agents::suspend(s, c, p, b).await,
        "resume" => agents::resume(s, c, p, b).await,
        "retire" => agents::retire(s, c, p, b).await,
        _ => return html::refusal(StatusCode::NOT_FOUND, "request.no_route", "no such lifecycle action"),
    };
    match r {
        Ok(ApiJson(v)) => back(
            form.back.as_deref(),
            &format!("/console/agents/{id}"),
            &format!("Agent {id}: {action} done, now {}.", v.state.as_str()),
        ),
        Err(e) => api_refusal(&who, "Agent", &e),
    }
}

/// `?client=` of the registration page: a discovered client to start from.
#[derive(Deserialize, Default)]
pub struct RegisterQuery {
    client: Option<String>,
}

/// `GET /console/register`: register an agent, prefilled from a discovered client.
pub async fn register_page(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<RegisterQuery>,
) -> Response {
    let who = signed_or_login!(state, headers, uri);
    let seen = match (&q.client, value(gateway::discovered(State(state.clone()), who.caller.clone()).await)) {
        (Some(id), Ok(d)) => d["clients"].as_array().into_iter().flatten().find(|c| text(&c["id"]) == *id).cloned(),
        _ => None,
    };
    let name = seen.as_ref().map(|c| text(&c["client_name"])).filter(|n| n != "—").unwrap_or_default();
    let slug: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_owned();
    let server = seen.as_ref().and_then(|c| c["servers"].get(0)).map(text).unwrap_or_default();
    page(
        &who,
        "Register an agent",
        html! {
            @if let Some(c) = &seen {
                p.hint { "From a client seen at " code { (server) } ": " (text(&c["client_name"])) " " (text(&c["user_agent"]))
                    ", key " code { (text(&c["key_thumbprint"])) } ". Paste the public key it proves with." }
            }
            form.stack #register method="post" action="/console/register" {
                (csrf(&who))
                label { "Id " input type="text" name="id" value=(slug) required; }
                label { "Name " input type="text" name="name" value=(name) required; }
                label { "Owner " input type="text" name="owner" placeholder="user:alice@example.org" required; }
                label { "Purpose " input type="text" name="purpose" required; }
                label { "Class " select name="class" { option { "enterprise" } option { "coding" } option { "in_product" } } }
                label { "Environment " select name="environment" { option { "sandbox" } option { "pilot" } option { "production" } } }
                label { "Tools (comma-separated patterns) " input type="text" name="tools" value=(if server.is_empty() { String::new() } else { format!("{server}/*") }) required; }
                label { "Data classes " input type="text" name="data_classes" value="internal"; }
                label { "Public key (Ed25519 JWK) " textarea name="public_key_jwk" rows="3" required {} }
                button type="submit" { "Register" }
            }
        },
    )
}

/// The registration form.
#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    csrf: String,
    id: String,
    name: String,
    owner: String,
    purpose: String,
    class: String,
    environment: String,
    tools: String,
    #[serde(default)]
    data_classes: String,
    public_key_jwk: String,
}

/// `POST /console/register`: the engine's registration, as `POST /v1/agents`.
pub async fn register(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<RegisterForm>) -> Response {
    let who = signed_form_or_refuse!(state, headers, form.csrf);
    let list =
        |s: &str| -> Vec<String> { s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect() };
    let jwk: Value = match serde_json::from_str(&form.public_key_jwk) {
        Ok(v) => v,
        Err(e) => {
            return api_refusal(
                &who,
                "Register an agent",
                &ApiError::bad_request("request.invalid_body", format!("the public key is not JSON: {e}")),
            )
        }
    };
    let spec = json!({
        "id": form.id.trim(), "name": form.name.trim(), "owner": form.owner.trim(), "purpose": form.purpose.trim(),
        "class": form.class, "environment": form.environment,
        "boundary": {"tools": list(&form.tools), "data_classes": list(&form.data_classes)},
        "public_key_jwk": jwk,
    });
    let spec = match serde_json::from_value::<mandate_core::agent::AgentSpec>(spec) {
        Ok(s) => s,
        Err(e) => {
            return api_refusal(
                &who,
                "Register an agent",
                &ApiError::bad_request("request.invalid_body", e.to_string()),
            )
        }
    };
    match state.register_agent(&who.caller, spec, state.clock.now()).await {
        Ok(v) => back(Some(&format!("/console/agents/{}", v.id)), "/console/registry", "Registered."),
        Err(e) => api_refusal(&who, "Register an agent", &ApiError::from(e)),
    }
}

/// `GET /console/tools/{server}/{tool}`: a tool's pinned definition beside a changed one.
pub async fn tool(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    Path((server, tool)): Path<(String, String)>,
    Query(n): Query<Notice>,
) -> Response {
    let who = signed_or_login!(state, headers, uri);
    let diff = match value(
        gateway::diff(State(state.clone()), who.caller.clone(), Path((server.clone(), tool.clone()))).await,
    ) {
        Ok(v) => v,
        Err(e) => return api_refusal(&who, "Tool definition", &e),
    };
    let parsed =
        |v: &Value| -> Value { v.as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_else(|| v.clone()) };
    let pending = !diff["pending_sha256"].is_null();
    page(
        &who,
        &format!("Tool {server}/{tool}"),
        html! {
            (notice(&n))
            p.flags { "Flags: " @for f in diff["flags"].as_array().into_iter().flatten() { code { (text(f)) } } }
            div.diff {
                @if pending {
                    @let (old, new) = json_diff(&parsed(&diff["pinned"]), &parsed(&diff["pending"]));
                    section.card #pinned { h3 { "Pinned " code { (truncate(&text(&diff["pinned_sha256"]), 16)) } } (old) }
                    section.card #changed { h3 { "Changed " code { (truncate(&text(&diff["pending_sha256"]), 16)) } } (new) }
                } @else {
                    section.card #pinned { h3 { "Pinned " code { (truncate(&text(&diff["pinned_sha256"]), 16)) } } (json_block(&parsed(&diff["pinned"]))) }
                }
            }
            @if pending {
                form.inline method="post" action={ "/console/tools/" (server) "/" (tool) "/approve" }
                    data-confirm="Pin the changed definition? Agents will see and call it again." {
                    (csrf(&who))
                    input type="hidden" name="sha256" value=(text(&diff["pending_sha256"]));
                    button #approve-definition type="submit" { "Approve the changed definition" }
                }
            } @else { p.muted { "No change is waiting." } }
        },
    )
}

/// The approve form: the hash of the definition the human looked at.
#[derive(Deserialize)]
pub struct ApproveToolForm {
    #[serde(default)]
    csrf: String,
    sha256: String,
}

/// `POST /console/tools/{server}/{tool}/approve`: pins exactly the definition shown.
pub async fn approve_tool(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((server, tool)): Path<(String, String)>,
    Form(form): Form<ApproveToolForm>,
) -> Response {
    let who = signed_form_or_refuse!(state, headers, form.csrf);
    let b = axum::body::Bytes::from(json!({ "sha256": form.sha256 }).to_string());
    match gateway::approve(State(state.clone()), who.caller.clone(), Path((server.clone(), tool.clone())), b).await {
        Ok(_) => {
            back(Some(&format!("/console/tools/{server}/{tool}")), "/console/registry", "The new definition is pinned.")
        }
        Err(e) => api_refusal(&who, "Tool definition", &e),
    }
}
