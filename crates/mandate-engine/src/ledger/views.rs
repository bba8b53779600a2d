//! What an incident responder reads: a chain as a story (who granted what, each delegation, every
//! call with its decision and reasons) and a blast radius (everything an agent, a chain or a human's
//! authority touched, and what authority is still live).
//!
//! Both are built from the ledger and the mandates' records; neither decides anything.

use crate::engine::Engine;
use crate::mandates::{chain_tree, MandateView};
use mandate_core::event::Event;
use mandate_store::{LedgerQuery, Reach, StoreError, StoredMandate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use utoipa::ToSchema;

/// The most events a view reads; beyond it the view says it is `truncated`.
pub const MAX_VIEW_EVENTS: usize = 200_000;

/// One event, with its detail document parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventLine {
    /// Its sequence number.
    pub seq: i64,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// What happened.
    pub kind: String,
    /// Who did it.
    pub actor: String,
    /// The agent concerned.
    pub agent: Option<String>,
    /// The mandate concerned.
    pub mandate_id: Option<String>,
    /// The tool.
    pub tool: Option<String>,
    /// The resource.
    pub resource: Option<String>,
    /// The decision or outcome.
    pub decision: Option<String>,
    /// The detail document.
    #[schema(value_type = Object)]
    pub detail: Value,
}

impl From<&Event> for EventLine {
    fn from(e: &Event) -> Self {
        let d = &e.event;
        Self {
            seq: e.seq,
            at_ms: d.at_ms,
            kind: d.kind.clone(),
            actor: d.actor.clone(),
            agent: d.agent.clone(),
            mandate_id: d.mandate_id.clone(),
            tool: d.tool.clone(),
            resource: d.resource.clone(),
            decision: d.decision.clone(),
            detail: serde_json::from_str(&d.detail).unwrap_or_else(|_| Value::String(d.detail.clone())),
        }
    }
}

/// One mandate of a chain with what happened under it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChainNode {
    /// The mandate (its `children` are in this node's `children`).
    pub mandate: MandateView,
    /// The event that issued it: `mandate.granted` or `mandate.delegated`.
    pub issued: Option<EventLine>,
    /// Everything else recorded under it, oldest first: decisions, approvals, revocations.
    pub events: Vec<EventLine>,
    /// The mandates delegated from it.
    #[schema(no_recursion)]
    pub children: Vec<ChainNode>,
}

/// Decisions counted by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Outcomes {
    /// Allowed.
    pub allow: u64,
    /// Denied.
    pub deny: u64,
    /// Held for approval.
    pub approval_required: u64,
}

impl Outcomes {
    fn add(&mut self, decision: Option<&str>) {
        match decision {
            Some("allow") => self.allow += 1,
            Some("deny") => self.deny += 1,
            Some("approval_required") => self.approval_required += 1,
            _ => {}
        }
    }
}

/// `GET /v1/audit/chains/{chain_id}` answers this.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChainStory {
    /// The chain's id (its root mandate's id).
    pub chain_id: String,
    /// The human who started it.
    pub root: String,
    /// The tree of mandates, from the human's grant down.
    pub tree: ChainNode,
    /// Events of the chain tied to no mandate of it: refused delegations, and the like.
    pub other_events: Vec<EventLine>,
    /// Every decision in the chain, counted.
    pub decisions: Outcomes,
    /// Events read.
    pub events: u64,
    /// Whether there were more than [`MAX_VIEW_EVENTS`] events (the oldest are shown).
    pub truncated: bool,
}

/// Reads every event `query` matches, page by page, up to [`MAX_VIEW_EVENTS`].
async fn all_events(state: &Engine, mut query: LedgerQuery) -> Result<(Vec<Event>, bool), StoreError> {
    query.limit = 10_000;
    query.newest = false;
    let mut out = Vec::new();
    loop {
        let page = state.store.query_events(&query).await?;
        let Some(last) = page.last().map(|e| e.seq) else { return Ok((out, false)) };
        out.extend(page);
        if out.len() >= MAX_VIEW_EVENTS {
            out.truncate(MAX_VIEW_EVENTS);
            return Ok((out, true));
        }
        query.after_seq = Some(last);
    }
}

impl Engine {
    /// The story of a chain; `None` when there is no such chain.
    pub async fn chain_story(&self, chain_id: &str) -> Result<Option<ChainStory>, StoreError> {
        let mandates = self.store.chain(chain_id).await?;
        let used = self.used_calls(&mandates).await?;
        let Some(tree) = chain_tree(&mandates, self.now_secs(), &self.revocations, &used) else {
            return Ok(None);
        };
        let query = LedgerQuery { chain: Some(chain_id.to_owned()), ..LedgerQuery::default() };
        let (events, truncated) = all_events(self, query).await?;
        let mut decisions = Outcomes::default();
        let mut by_mandate: HashMap<String, Vec<EventLine>> = HashMap::new();
        let mut other_events = Vec::new();
        let ids: BTreeSet<&str> = mandates.iter().map(|m| m.record.id.as_str()).collect();
        for e in &events {
            if e.event.kind == "decision" {
                decisions.add(e.event.decision.as_deref());
            }
            match e.event.mandate_id.as_deref() {
                Some(m) if ids.contains(m) => by_mandate.entry(m.to_owned()).or_default().push(e.into()),
                _ => other_events.push(e.into()),
            }
        }
        fn build(view: MandateView, by_mandate: &mut HashMap<String, Vec<EventLine>>) -> ChainNode {
            let mut view = view;
            let children = std::mem::take(&mut view.children);
            let mut events = by_mandate.remove(&view.id).unwrap_or_default();
            let issued = events
                .iter()
                .position(|e| e.kind == "mandate.granted" || e.kind == "mandate.delegated")
                .map(|i| events.remove(i));
            let children = children.into_iter().map(|c| build(c, by_mandate)).collect();
            ChainNode { mandate: view, issued, events, children }
        }
        let root = tree.root.clone();
        let tree = build(tree, &mut by_mandate);
        Ok(Some(ChainStory {
            chain_id: chain_id.to_owned(),
            root,
            tree,
            other_events,
            decisions,
            events: events.len() as u64,
            truncated,
        }))
    }
}

/// Whose blast radius.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Scope {
    /// `agent`, `chain` or `human`.
    pub kind: String,
    /// The agent id, chain id or `user:<id>`.
    pub id: String,
}

/// Something touched (a tool, a resource, a data class), with how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Touched {
    /// Its name.
    pub name: String,
    /// Calls decided, by outcome: `allow` is what was actually let through.
    pub calls: Outcomes,
    /// The agents that called.
    pub agents: BTreeSet<String>,
    /// The tools used on it (for resources and data classes).
    pub tools: BTreeSet<String>,
    /// First call, Unix milliseconds.
    pub first_ms: i64,
    /// Last call, Unix milliseconds.
    pub last_ms: i64,
}

/// An agent reached through delegation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentReached {
    /// The agent.
    pub agent: String,
    /// The smallest depth it held a mandate at (1: granted by a human).
    pub depth: u8,
    /// Who gave it its mandates: humans and agents.
    pub from: BTreeSet<String>,
    /// How many mandates it held.
    pub mandates: u64,
    /// Its calls, by outcome.
    pub calls: Outcomes,
}

/// An approval, from its request to its use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalTrail {
    /// Its id.
    pub approval_id: String,
    /// The agent whose call was held.
    pub agent: Option<String>,
    /// The tool.
    pub tool: Option<String>,
    /// The resource.
    pub resource: Option<String>,
    /// `pending`, `approved`, `denied`, `refused` or `used`: the last step seen.
    pub status: String,
    /// Who approved or denied it.
    pub decided_by: Option<String>,
    /// The sequence numbers of its events.
    pub seqs: Vec<i64>,
}

/// Authority that is still live: a mandate neither expired nor revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveMandate {
    /// Its id.
    pub id: String,
    /// Its chain.
    pub chain_id: String,
    /// Its holder.
    pub agent: String,
    /// Its depth.
    pub depth: u8,
    /// When it expires, Unix seconds.
    pub expires_at: i64,
    /// What it allows.
    #[schema(value_type = Vec<Object>)]
    pub authorization_details: Value,
}

/// `GET /v1/audit/blast-radius` answers this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlastRadius {
    /// Whose.
    pub scope: Scope,
    /// Only events at or after this time, Unix milliseconds.
    pub since_ms: Option<i64>,
    /// The chains the scope's authority went through.
    pub chains: Vec<String>,
    /// The humans at the root of those chains.
    pub humans: Vec<String>,
    /// Events read.
    pub events: u64,
    /// The first and last sequence numbers read.
    pub seq_range: Option<(i64, i64)>,
    /// Every decision, counted.
    pub decisions: Outcomes,
    /// Every agent that held authority from the scope, the scope's own agent first.
    pub agents: Vec<AgentReached>,
    /// Every tool called.
    pub tools: Vec<Touched>,
    /// Every resource named in a call.
    pub resources: Vec<Touched>,
    /// Every data class of a tool called.
    pub data_classes: Vec<Touched>,
    /// Every approval asked for or used.
    pub approvals: Vec<ApprovalTrail>,
    /// Mandates still live now: what to revoke.
    pub live_mandates: Vec<LiveMandate>,
    /// Whether there were more than [`MAX_VIEW_EVENTS`] events (the oldest were read).
    pub truncated: bool,
}

fn touch(map: &mut BTreeMap<String, Touched>, name: &str, e: &Event, tool: Option<&str>) {
    let t = map.entry(name.to_owned()).or_insert_with(|| Touched {
        name: name.to_owned(),
        first_ms: e.event.at_ms,
        last_ms: e.event.at_ms,
        ..Touched::default()
    });
    t.calls.add(e.event.decision.as_deref());
    if let Some(a) = &e.event.agent {
        t.agents.insert(a.clone());
    }
    if let Some(tool) = tool {
        t.tools.insert(tool.to_owned());
    }
    t.first_ms = t.first_ms.min(e.event.at_ms);
    t.last_ms = t.last_ms.max(e.event.at_ms);
}

impl Engine {
    /// The blast radius of `reach` since `since_ms`.
    pub async fn blast_radius(&self, reach: Reach, since_ms: Option<i64>) -> Result<BlastRadius, StoreError> {
        let scope = match &reach {
            Reach::Agent(a) => Scope { kind: "agent".into(), id: a.clone() },
            Reach::Chain(c) => Scope { kind: "chain".into(), id: c.clone() },
            Reach::Root(h) => Scope { kind: "human".into(), id: h.clone() },
        };
        let chains = self.store.chains_reached(&reach).await?;
        let mut mandates: Vec<StoredMandate> = Vec::new();
        for c in &chains {
            mandates.extend(self.store.chain(c).await?);
        }
        if let Reach::Agent(a) = &reach {
            // An agent's authority: the mandates it held and every one delegated below them.
            mandates.retain(|m| m.record.chain_agents.iter().any(|x| x.as_str() == a.as_str()));
        }
        let holder: HashMap<&str, &StoredMandate> = mandates.iter().map(|m| (m.record.id.as_str(), m)).collect();
        let mut humans = BTreeSet::new();
        let mut agents: BTreeMap<String, AgentReached> = BTreeMap::new();
        for m in &mandates {
            humans.insert(m.record.root.to_string());
            let entry = agents.entry(m.record.agent.to_string()).or_insert_with(|| AgentReached {
                agent: m.record.agent.to_string(),
                depth: m.record.depth,
                ..AgentReached::default()
            });
            entry.depth = entry.depth.min(m.record.depth);
            entry.mandates += 1;
            let from = match m.record.parent_id.as_deref() {
                None => m.record.root.to_string(),
                Some(p) => self.store.mandate(p).await?.map_or_else(|| p.to_owned(), |p| p.record.agent.to_string()),
            };
            entry.from.insert(from);
        }
        let query = LedgerQuery { reach: Some(reach.clone()), since_ms, ..LedgerQuery::default() };
        let (events, truncated) = all_events(self, query).await?;
        let (mut tools, mut resources, mut classes) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let mut approvals: BTreeMap<String, ApprovalTrail> = BTreeMap::new();
        let mut decisions = Outcomes::default();
        for e in &events {
            let d = &e.event;
            let detail: Value = serde_json::from_str(&d.detail).unwrap_or(Value::Null);
            if d.kind == "decision" {
                decisions.add(d.decision.as_deref());
                if let Some(a) = &d.agent {
                    if let Some(entry) = agents.get_mut(a) {
                        entry.calls.add(d.decision.as_deref());
                    }
                }
                if let Some(t) = &d.tool {
                    touch(&mut tools, t, e, None);
                }
                if let Some(r) = &d.resource {
                    touch(&mut resources, r, e, d.tool.as_deref());
                }
                if let Some(c) = detail["data_class"].as_str() {
                    touch(&mut classes, c, e, d.tool.as_deref());
                }
            }
            if let Some(id) = detail["approval_id"].as_str() {
                let trail = approvals.entry(id.to_owned()).or_insert_with(|| ApprovalTrail {
                    approval_id: id.to_owned(),
                    agent: d.agent.clone(),
                    tool: d.tool.clone(),
                    resource: d.resource.clone(),
                    ..ApprovalTrail::default()
                });
                trail.seqs.push(e.seq);
                if trail.resource.is_none() {
                    trail.resource.clone_from(&d.resource);
                }
                match d.kind.as_str() {
                    "approval.created" => trail.status = "pending".into(),
                    "approval.approved" | "approval.denied" | "approval.refused" => {
                        trail.status = d.kind.trim_start_matches("approval.").to_owned();
                        if d.kind != "approval.refused" {
                            trail.decided_by = Some(d.actor.clone());
                        }
                    }
                    "approval.used" => trail.status = "used".into(),
                    _ if trail.status.is_empty() => trail.status = "pending".into(),
                    _ => {}
                }
            }
        }
        let now = self.now_secs();
        let live_mandates = mandates
            .iter()
            .filter(|m| m.revocation.is_none() && m.record.expires_at > now)
            .filter(|m| self.revocations.revoked_in(&m.record).is_none())
            .filter(|m| m.record.lineage.iter().all(|p| holder.get(p.as_str()).is_none_or(|p| p.revocation.is_none())))
            .map(|m| LiveMandate {
                id: m.record.id.clone(),
                chain_id: m.record.chain_id.clone(),
                agent: m.record.agent.to_string(),
                depth: m.record.depth,
                expires_at: m.record.expires_at,
                authorization_details: serde_json::to_value(&m.record.scope).unwrap_or_default(),
            })
            .collect();
        let mut agents: Vec<AgentReached> = agents.into_values().collect();
        let first = match &scope.kind[..] {
            "agent" => Some(scope.id.clone()),
            _ => None,
        };
        agents.sort_by(|a, b| {
            (Some(&a.agent) != first.as_ref(), a.depth, &a.agent).cmp(&(
                Some(&b.agent) != first.as_ref(),
                b.depth,
                &b.agent,
            ))
        });
        Ok(BlastRadius {
            scope,
            since_ms,
            chains,
            humans: humans.into_iter().collect(),
            events: events.len() as u64,
            seq_range: events.first().zip(events.last()).map(|(a, b)| (a.seq, b.seq)),
            decisions,
            agents,
            tools: tools.into_values().collect(),
            resources: resources.into_values().collect(),
            data_classes: classes.into_values().collect(),
            approvals: approvals.into_values().collect(),
            live_mandates,
            truncated,
        })
    }
}
