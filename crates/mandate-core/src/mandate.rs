//! Mandates: what a human grants an agent for one task, how a mandate narrows when it is delegated, and
//! the token that carries it.
//!
//! A mandate's scope is a list of RFC 9396 `authorization_details` entries of type `mcp_tool`. An entry
//! allows a call when the tool matches one of its `tools`, the tool's data class is one of its
//! `data_classes`, the tool's risk level is one of its `actions`, and, when it lists `resources`, the
//! call names a resource matching one of them (an entry without `resources` does not constrain them).
//! A scope is within another when each of its entries is within some single entry of the other
//! (sound and conservative, like [`crate::pattern`]).
//!
//! The rules of [`plan_grant`] and [`plan_delegation`] are the trust decision at each hop: they take the
//! stored parent, the agents and `now`, and either refuse with a specific error or return the record to
//! store and sign. Nothing here trusts a token's claims about the chain; the server reads the chain
//! from the store.

use crate::agent::{Agent, AgentState, Boundary};
use crate::id::{AgentId, Principal, TrustDomain};
use crate::pattern::{DataClass, ResourcePattern, ResourceUri, ToolName, ToolPattern};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// The only `authorization_details` type Mandate issues and accepts.
pub const DETAIL_TYPE: &str = "mcp_tool";
/// The `typ` header of a mandate token.
pub const MANDATE_TYP: &str = "mandate+jwt";

/// What a call does, named by the tool's risk level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Reads data.
    Read,
    /// Changes data.
    Write,
    /// Destroys data or resources.
    Destructive,
    /// Sends data out of the organisation.
    Egress,
}

impl Action {
    /// The name used in JSON and policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Destructive => "destructive",
            Self::Egress => "egress",
        }
    }
}

/// One `authorization_details` entry (RFC 9396 section 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeEntry {
    /// Always `mcp_tool`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Tool patterns (`server/tool`).
    #[schema(value_type = Vec<String>, example = json!(["erp/read_ledger"]))]
    pub tools: Vec<ToolPattern>,
    /// Resource patterns; empty means resources are not constrained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>, example = json!(["erp://ledger/2026-10/*"]))]
    pub resources: Vec<ResourcePattern>,
    /// Data classes the calls may touch.
    #[schema(value_type = Vec<String>, example = json!(["financial"]))]
    pub data_classes: Vec<DataClass>,
    /// Risk levels the calls may have.
    pub actions: Vec<Action>,
}

impl ScopeEntry {
    fn is_within(&self, other: &ScopeEntry) -> bool {
        self.tools.iter().all(|a| other.tools.iter().any(|b| a.is_subset_of(b)))
            && self.data_classes.iter().all(|c| other.data_classes.contains(c))
            && self.actions.iter().all(|a| other.actions.contains(a))
            && (other.resources.is_empty()
                || (!self.resources.is_empty()
                    && self.resources.iter().all(|a| other.resources.iter().any(|b| a.is_subset_of(b)))))
    }

    fn allows(&self, call: &CallTarget<'_>) -> bool {
        self.tools.iter().any(|t| t.matches(call.tool))
            && self.data_classes.contains(call.data_class)
            && self.actions.contains(&call.action)
            && (self.resources.is_empty() || call.resource.is_some_and(|r| self.resources.iter().any(|p| p.matches(r))))
    }
}

/// A mandate's scope: its `authorization_details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct Scope(pub Vec<ScopeEntry>);

/// What a call touches, as the catalogue classifies it.
#[derive(Debug, Clone, Copy)]
pub struct CallTarget<'a> {
    /// The tool.
    pub tool: &'a ToolName,
    /// The resource named, if any.
    pub resource: Option<&'a ResourceUri>,
    /// The tool's data class.
    pub data_class: &'a DataClass,
    /// The tool's risk level.
    pub action: Action,
}

/// Why a scope is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// No entries.
    #[error("`authorization_details` must have at least one entry")]
    Empty,
    /// An entry of another type.
    #[error("`authorization_details[{0}].type` must be `mcp_tool`")]
    UnsupportedType(usize),
    /// An entry with an empty required list.
    #[error("`authorization_details[{index}].{field}` must not be empty")]
    EmptyField {
        /// The entry.
        index: usize,
        /// The list.
        field: &'static str,
    },
    /// Too many entries or patterns.
    #[error("`authorization_details` is too large: at most 16 entries of 64 items each")]
    TooLarge,
}

impl Scope {
    /// Checks the shape: at least one entry, each of type `mcp_tool` with tools, data classes and
    /// actions, and bounded sizes (so that the subset test stays cheap).
    pub fn validate(&self) -> Result<(), ScopeError> {
        if self.0.is_empty() {
            return Err(ScopeError::Empty);
        }
        if self.0.len() > 16 {
            return Err(ScopeError::TooLarge);
        }
        for (index, e) in self.0.iter().enumerate() {
            if e.kind != DETAIL_TYPE {
                return Err(ScopeError::UnsupportedType(index));
            }
            for (field, len) in
                [("tools", e.tools.len()), ("data_classes", e.data_classes.len()), ("actions", e.actions.len())]
            {
                if len == 0 {
                    return Err(ScopeError::EmptyField { index, field });
                }
            }
            if [e.tools.len(), e.resources.len(), e.data_classes.len(), e.actions.len()].iter().any(|n| *n > 64) {
                return Err(ScopeError::TooLarge);
            }
        }
        Ok(())
    }

    /// Whether everything this scope allows, `other` allows too.
    pub fn is_within(&self, other: &Scope) -> bool {
        self.0.iter().all(|a| other.0.iter().any(|b| a.is_within(b)))
    }

    /// Whether this scope allows the call.
    pub fn allows(&self, call: &CallTarget<'_>) -> bool {
        self.0.iter().any(|e| e.allows(call))
    }

    /// The first tool pattern or data class of this scope that an agent's boundary does not allow,
    /// described for people; `None` when the scope is inside the boundary.
    pub fn outside_boundary(&self, boundary: &Boundary) -> Option<String> {
        for e in &self.0 {
            if let Some(t) = e.tools.iter().find(|t| !boundary.tools.iter().any(|b| t.is_subset_of(b))) {
                return Some(format!("tool pattern `{t}`"));
            }
            if let Some(c) = e.data_classes.iter().find(|c| !boundary.data_classes.contains(c)) {
                return Some(format!("data class `{c}`"));
            }
        }
        None
    }

    /// Every tool pattern in the scope.
    pub fn tools(&self) -> impl Iterator<Item = &ToolPattern> {
        self.0.iter().flat_map(|e| e.tools.iter())
    }
}

/// The task a mandate is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Intent {
    /// What the human asked for, in their words.
    pub purpose: String,
    /// The category from the organisation's taxonomy, dotted: `finance.close`.
    pub category: String,
}

/// A mandate as stored: the trusted record the token points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MandateRecord {
    /// The mandate's id, also the token's `jti`.
    pub id: String,
    /// The root mandate's id.
    pub chain_id: String,
    /// The parent's id; `None` for a human's grant.
    pub parent_id: Option<String>,
    /// 1 for a human's grant, one more for each delegation.
    pub depth: u8,
    /// The agent holding it.
    pub agent: AgentId,
    /// Every agent of the chain, the root grant's agent first and this one last.
    pub chain_agents: Vec<AgentId>,
    /// The ids of every ancestor, the root first: revoking any of them revokes this one.
    pub lineage: Vec<String>,
    /// The human who granted the root.
    pub root: Principal,
    /// The task.
    pub intent: Intent,
    /// What it allows.
    pub scope: Scope,
    /// How many calls it (with its descendants) may make.
    pub max_calls: u64,
    /// How many further delegations it allows.
    pub max_depth: u8,
    /// Issued at, Unix seconds.
    pub issued_at: i64,
    /// Expires at, Unix seconds.
    pub expires_at: i64,
    /// The RFC 7638 thumbprint of the key the mandate is bound to (`cnf.jkt`): the holding agent's
    /// registered key, or for [`Binding::ClientKey`] the key the client proved at the token
    /// endpoint; empty for [`Binding::Bearer`].
    pub key_thumbprint: String,
    /// How the mandate is held (absent in records written before there was a choice: the agent's key).
    #[serde(default, skip_serializing_if = "Binding::is_agent_key")]
    pub binding: Binding,
    /// The OAuth client the human granted it to through the authorization flow (its client id, an
    /// OAuth Client ID Metadata Document URL); `None` for a grant made over the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The one protected resource (RFC 8707) the mandate may be presented to, such as a gateway
    /// endpoint `https://mandate.example.org/mcp/erp`; `None`: any front door of this issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// What a mandate is bound to: what a presenter must prove to use it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// The holding agent's registered key: every use carries a DPoP proof by it, and replacing the
    /// agent's key ends the mandate (`chain.key_replaced`).
    #[default]
    AgentKey,
    /// A key the OAuth client proved at the token endpoint (RFC 9449 section 5): every use carries
    /// a DPoP proof by that key.
    ClientKey,
    /// Nothing: a bearer token, granted only where the organisation allows unbound mandates
    /// (`[oauth] allow_unbound`), marked so in the token and visible to policy as `context.binding`.
    Bearer,
}

impl Binding {
    /// The name in tokens, JSON and policy: `agent_key`, `client_key` or `bearer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AgentKey => "agent_key",
            Self::ClientKey => "client_key",
            Self::Bearer => "bearer",
        }
    }

    /// Whether every use must carry a proof of possession.
    pub fn is_key_bound(self) -> bool {
        !matches!(self, Self::Bearer)
    }

    fn is_agent_key(&self) -> bool {
        matches!(self, Self::AgentKey)
    }
}

/// Where a mandate is verified: the issuer, audience and trust domain written into its token.
#[derive(Debug, Clone)]
pub struct TokenContext<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// For SPIFFE ids.
    pub trust_domain: &'a TrustDomain,
}

impl MandateRecord {
    /// The token's claims (docs/contract.md, "Mandate token").
    pub fn claims(&self, ctx: &TokenContext<'_>) -> Value {
        let mut claims = json!({
            "iss": ctx.issuer,
            "sub": ctx.trust_domain.agent_spiffe_id(&self.agent),
            "aud": ctx.audience,
            "iat": self.issued_at,
            "nbf": self.issued_at,
            "exp": self.expires_at,
            "jti": self.id,
            "authorization_details": self.scope,
            "mandate": {
                "id": self.id,
                "chain_id": self.chain_id,
                "parent_id": self.parent_id,
                "depth": self.depth,
                "root": self.root,
                "intent": self.intent,
                "budget": {"max_calls": self.max_calls},
                "max_depth": self.max_depth,
                "binding": self.binding.as_str(),
            },
        });
        if self.binding.is_key_bound() {
            claims["cnf"] = json!({"jkt": self.key_thumbprint});
        }
        if let Some(client_id) = &self.client_id {
            claims["client_id"] = json!(client_id);
        }
        // RFC 8707: a mandate for one resource names it beside the issuer's own audience.
        if let Some(resource) = &self.resource {
            claims["aud"] = json!([ctx.audience, resource]);
        }
        // RFC 8693 section 4.1: the current actor outermost, earlier actors nested inside. The
        // delegators are the agents before this one in the chain, newest first.
        let delegators = &self.chain_agents[..self.chain_agents.len().saturating_sub(1)];
        let mut act: Option<Value> = None;
        for agent in delegators {
            let mut actor = json!({"sub": ctx.trust_domain.agent_spiffe_id(agent)});
            if let Some(inner) = act.take() {
                actor["act"] = inner;
            }
            act = Some(actor);
        }
        if let Some(act) = act {
            claims["act"] = act;
        }
        claims
    }

    /// Seconds left at `now`.
    pub fn remaining_secs(&self, now: i64) -> i64 {
        (self.expires_at - now).max(0)
    }
}

/// Limits on what a mandate may ask for, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MandateLimits {
    /// TTL when none is asked for.
    pub default_ttl_secs: u32,
    /// The longest TTL that may be granted.
    pub max_ttl_secs: u32,
    /// The budget when none is asked for.
    pub default_max_calls: u64,
    /// The largest budget.
    pub max_calls_ceiling: u64,
}

/// A human's grant request (`POST /v1/mandates`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The agent.
    #[schema(value_type = String, example = "finance-close")]
    pub agent: AgentId,
    /// The task, in the human's words.
    pub purpose: String,
    /// The task's category.
    pub category: String,
    /// What the agent may do for it.
    pub authorization_details: Scope,
    /// Lifetime in seconds (default from configuration, 900).
    pub ttl_seconds: Option<u32>,
    /// Call budget.
    pub max_calls: Option<u64>,
    /// Further delegations allowed (default 0).
    pub max_depth: Option<u8>,
}

/// Why a grant was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The agent is suspended or retired.
    #[error("agent `{0}` is {1}; only active agents receive mandates")]
    AgentNotActive(String, &'static str),
    /// The scope is malformed.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The scope reaches outside the agent's boundary.
    #[error("{0} is outside agent `{1}`'s boundary")]
    OutsideBoundary(String, String),
    /// The TTL is zero or over the maximum.
    #[error("`ttl_seconds` must be between 1 and {max}, got {got}")]
    Ttl {
        /// Asked for.
        got: u32,
        /// The configured maximum.
        max: u32,
    },
    /// The budget is zero or over the ceiling.
    #[error("`max_calls` must be between 1 and {max}, got {got}")]
    Budget {
        /// Asked for.
        got: u64,
        /// The ceiling.
        max: u64,
    },
    /// More delegation depth than the agent's boundary allows.
    #[error("`max_depth` {got} is more than agent `{agent}`'s boundary allows ({max})")]
    Depth {
        /// The agent.
        agent: String,
        /// Asked for.
        got: u8,
        /// Allowed.
        max: u8,
    },
    /// The purpose or category is malformed.
    #[error("{0}")]
    Intent(String),
}

impl GrantError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AgentNotActive(..) => "grant.agent_not_active",
            Self::Scope(_) => "grant.invalid_scope",
            Self::OutsideBoundary(..) => "grant.outside_boundary",
            Self::Ttl { .. } => "grant.invalid_ttl",
            Self::Budget { .. } => "grant.invalid_budget",
            Self::Depth { .. } => "grant.depth_exceeds_boundary",
            Self::Intent(_) => "grant.invalid_intent",
        }
    }
}

fn check_intent(purpose: &str, category: &str) -> Result<(), String> {
    let len = purpose.trim().chars().count();
    if len == 0 || len > 1000 || purpose.chars().any(char::is_control) {
        return Err("`purpose` must be 1-1000 characters without control characters".into());
    }
    let ok = (1..=64).contains(&category.len())
        && category.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if !ok {
        return Err(format!("`category` `{category}` must be dotted lower-case words such as `finance.close`"));
    }
    Ok(())
}

/// The identity of a new mandate, chosen by the caller (ids come from the server's RNG).
#[derive(Debug, Clone)]
pub struct NewId {
    /// The new mandate's id.
    pub id: String,
    /// Now, Unix seconds.
    pub now: i64,
}

/// The trust decision for a human's grant: checks everything but the organisation's policy (which
/// the policy crate decides) and returns the record to store.
pub fn plan_grant(
    request: &GrantRequest,
    agent: &Agent,
    root: &Principal,
    limits: &MandateLimits,
    new: NewId,
) -> Result<MandateRecord, GrantError> {
    if agent.state != AgentState::Active {
        return Err(GrantError::AgentNotActive(agent.id.to_string(), agent.state.as_str()));
    }
    check_intent(&request.purpose, &request.category).map_err(GrantError::Intent)?;
    request.authorization_details.validate()?;
    if let Some(what) = request.authorization_details.outside_boundary(&agent.boundary) {
        return Err(GrantError::OutsideBoundary(what, agent.id.to_string()));
    }
    let ttl = request.ttl_seconds.unwrap_or(limits.default_ttl_secs);
    if ttl == 0 || ttl > limits.max_ttl_secs {
        return Err(GrantError::Ttl { got: ttl, max: limits.max_ttl_secs });
    }
    let max_calls = request.max_calls.unwrap_or(limits.default_max_calls);
    if max_calls == 0 || max_calls > limits.max_calls_ceiling {
        return Err(GrantError::Budget { got: max_calls, max: limits.max_calls_ceiling });
    }
    let max_depth = request.max_depth.unwrap_or(0);
    if max_depth > agent.boundary.max_depth {
        return Err(GrantError::Depth { agent: agent.id.to_string(), got: max_depth, max: agent.boundary.max_depth });
    }
    Ok(MandateRecord {
        chain_id: new.id.clone(),
        id: new.id,
        parent_id: None,
        depth: 1,
        agent: agent.id.clone(),
        chain_agents: vec![agent.id.clone()],
        lineage: Vec::new(),
        root: root.clone(),
        intent: Intent { purpose: request.purpose.clone(), category: request.category.clone() },
        scope: request.authorization_details.clone(),
        max_calls,
        max_depth,
        issued_at: new.now,
        expires_at: new.now + i64::from(ttl),
        key_thumbprint: agent.public_key_jwk.thumbprint(),
        binding: Binding::AgentKey,
        client_id: None,
        resource: None,
    })
}

/// What a parent agent asks for its sub-agent.
#[derive(Debug, Clone)]
pub struct DelegationRequest {
    /// The narrowed scope.
    pub scope: Scope,
    /// Lifetime; default: the parent's remaining lifetime.
    pub ttl_seconds: Option<u32>,
    /// Budget; default: the parent's remaining budget.
    pub max_calls: Option<u64>,
    /// Further delegations; default: one fewer than the parent's, within the sub-agent's boundary.
    pub max_depth: Option<u8>,
}

/// Why a delegation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelegationError {
    /// The parent allows no further hop.
    #[error("mandate `{0}` allows no further delegation (max_depth 0)")]
    DepthExhausted(String),
    /// The sub-agent is not active.
    #[error("agent `{0}` is {1}; only active agents receive mandates")]
    AgentNotActive(String, &'static str),
    /// The delegating agent is not active.
    #[error("delegating agent `{0}` is {1}")]
    DelegatorNotActive(String, &'static str),
    /// The sub-agent is not in the delegating agent's `may_delegate_to`.
    #[error("agent `{from}` may not delegate to `{to}` (not in its boundary's `may_delegate_to`)")]
    NotAllowedDelegate {
        /// The delegating agent.
        from: String,
        /// The sub-agent.
        to: String,
    },
    /// The sub-agent already appears in the chain.
    #[error("agent `{0}` already appears in this chain; a chain may not loop")]
    Cycle(String),
    /// The scope is malformed.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The scope is wider than the parent's.
    #[error("the requested scope is not within the parent mandate's scope")]
    ScopeWidened,
    /// The scope reaches outside the sub-agent's boundary.
    #[error("{0} is outside agent `{1}`'s boundary")]
    OutsideBoundary(String, String),
    /// The TTL outlives the parent.
    #[error("`ttl_seconds` {got} outlives the parent mandate, which has {left} seconds left")]
    TtlExceedsParent {
        /// Asked for.
        got: u32,
        /// The parent's remaining lifetime.
        left: i64,
    },
    /// The budget exceeds what the parent has left.
    #[error("`max_calls` {got} exceeds the parent mandate's remaining budget of {left}")]
    BudgetExceedsParent {
        /// Asked for.
        got: u64,
        /// The parent's remaining budget.
        left: u64,
    },
    /// The parent's budget is spent.
    #[error("the parent mandate's budget is spent")]
    BudgetSpent,
    /// More delegation depth than allowed.
    #[error("`max_depth` {got} is more than allowed here ({max})")]
    DepthTooLarge {
        /// Asked for.
        got: u8,
        /// Allowed.
        max: u8,
    },
    /// The TTL is zero.
    #[error("`ttl_seconds` must be at least 1")]
    ZeroTtl,
    /// The budget is zero.
    #[error("`max_calls` must be at least 1")]
    ZeroBudget,
}

impl DelegationError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::DepthExhausted(_) => "delegation.depth_exhausted",
            Self::AgentNotActive(..) => "delegation.agent_not_active",
            Self::DelegatorNotActive(..) => "delegation.delegator_not_active",
            Self::NotAllowedDelegate { .. } => "delegation.not_allowed_delegate",
            Self::Cycle(_) => "delegation.cycle",
            Self::Scope(_) => "delegation.invalid_scope",
            Self::ScopeWidened => "delegation.scope_widened",
            Self::OutsideBoundary(..) => "delegation.outside_boundary",
            Self::TtlExceedsParent { .. } => "delegation.ttl_exceeds_parent",
            Self::BudgetExceedsParent { .. } => "delegation.budget_exceeds_parent",
            Self::BudgetSpent => "delegation.budget_spent",
            Self::DepthTooLarge { .. } => "delegation.depth_too_large",
            Self::ZeroTtl => "delegation.invalid_ttl",
            Self::ZeroBudget => "delegation.invalid_budget",
        }
    }

    /// The RFC 6749 / RFC 8693 error this maps to: widening is `invalid_scope`, a malformed scope or
    /// value `invalid_request`, everything about the authority itself `invalid_grant`.
    pub fn oauth_error(&self) -> &'static str {
        match self {
            Self::ScopeWidened | Self::OutsideBoundary(..) => "invalid_scope",
            Self::Scope(_) | Self::ZeroTtl | Self::ZeroBudget => "invalid_request",
            _ => "invalid_grant",
        }
    }
}

/// The trust decision for one hop: may `parent`'s holder hand `child` this narrowed mandate? `used`
/// is the number of calls already counted against the parent. Revocation and the validity of the
/// parent's token and of the actor's assertion are the caller's to check first.
pub fn plan_delegation(
    parent: &MandateRecord,
    used: u64,
    delegator: &Agent,
    child: &Agent,
    request: &DelegationRequest,
    new: NewId,
) -> Result<MandateRecord, DelegationError> {
    if delegator.state != AgentState::Active {
        return Err(DelegationError::DelegatorNotActive(delegator.id.to_string(), delegator.state.as_str()));
    }
    if parent.max_depth == 0 {
        return Err(DelegationError::DepthExhausted(parent.id.clone()));
    }
    if child.state != AgentState::Active {
        return Err(DelegationError::AgentNotActive(child.id.to_string(), child.state.as_str()));
    }
    if !delegator.boundary.may_delegate_to.contains(&child.id) {
        return Err(DelegationError::NotAllowedDelegate { from: delegator.id.to_string(), to: child.id.to_string() });
    }
    if parent.chain_agents.contains(&child.id) {
        return Err(DelegationError::Cycle(child.id.to_string()));
    }
    request.scope.validate()?;
    if !request.scope.is_within(&parent.scope) {
        return Err(DelegationError::ScopeWidened);
    }
    if let Some(what) = request.scope.outside_boundary(&child.boundary) {
        return Err(DelegationError::OutsideBoundary(what, child.id.to_string()));
    }
    let left = parent.remaining_secs(new.now);
    let expires_at = match request.ttl_seconds {
        Some(0) => return Err(DelegationError::ZeroTtl),
        Some(ttl) if i64::from(ttl) > left => return Err(DelegationError::TtlExceedsParent { got: ttl, left }),
        Some(ttl) => new.now + i64::from(ttl),
        None => parent.expires_at,
    };
    let remaining = parent.max_calls.saturating_sub(used);
    if remaining == 0 {
        return Err(DelegationError::BudgetSpent);
    }
    let max_calls = match request.max_calls {
        Some(0) => return Err(DelegationError::ZeroBudget),
        Some(n) if n > remaining => return Err(DelegationError::BudgetExceedsParent { got: n, left: remaining }),
        Some(n) => n,
        None => remaining,
    };
    let depth_cap = (parent.max_depth - 1).min(child.boundary.max_depth);
    let max_depth = match request.max_depth {
        Some(d) if d > depth_cap => return Err(DelegationError::DepthTooLarge { got: d, max: depth_cap }),
        Some(d) => d,
        None => depth_cap,
    };
    let mut chain_agents = parent.chain_agents.clone();
    chain_agents.push(child.id.clone());
    let mut lineage = parent.lineage.clone();
    lineage.push(parent.id.clone());
    Ok(MandateRecord {
        id: new.id,
        chain_id: parent.chain_id.clone(),
        parent_id: Some(parent.id.clone()),
        depth: parent.depth + 1,
        agent: child.id.clone(),
        chain_agents,
        lineage,
        root: parent.root.clone(),
        intent: parent.intent.clone(),
        scope: request.scope.clone(),
        max_calls,
        max_depth,
        issued_at: new.now,
        expires_at,
        key_thumbprint: child.public_key_jwk.thumbprint(),
        binding: Binding::AgentKey,
        client_id: None,
        // A sub-agent acts at the same resource as its parent.
        resource: parent.resource.clone(),
    })
}

#[cfg(test)]
mod tests;
