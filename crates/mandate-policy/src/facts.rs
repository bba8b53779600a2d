//! The requests put to policy, in plain Rust, and their translation into Cedar entities and context.
//!
//! The caller supplies facts it already holds (registry, token, tool catalogue, clock); nothing here
//! reads a store. Vocabularies are strings so that organisations can extend them: the server passes
//! the `as_str()` names of `mandate-core`'s enums (`coding`, `production`, `active`, `approver`, ...).
//! Human ids are bare ids (`alice@example.org`), also in [`AgentFacts::owner`], never `user:` principals.
//!
//! Every request becomes one principal, one resource, a context and a small entity store. Facts that
//! contradict each other (the same human or agent described twice with different attributes, a tool
//! whose name is not on its server) or are out of range (an hour of 24) are refused here, and the
//! decision denies with the reason.

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy as cedar;
use cedar_policy::RestrictedExpression as Expr;
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Names};
use crate::memo::Memo;

/// What policy knows about a human.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HumanFacts {
    /// The human's id, `alice@example.org`.
    pub id: String,
    /// The identity provider's groups, e.g. `finance`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Global roles: `admin`, `approver`, `auditor`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// A sandbox identity.
    #[serde(default)]
    pub sandbox: bool,
}

/// What policy knows about an agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFacts {
    /// The agent's slug, `finance-close`.
    pub id: String,
    /// `coding`, `in_product` or `enterprise`.
    pub class: String,
    /// `sandbox`, `pilot` or `production`.
    pub environment: String,
    /// The owner's human id (not the `user:` principal). Policies see the owner as a reference: its
    /// groups and roles are known only when the owner is also a human of the request.
    pub owner: String,
    /// `active`, `suspended` or `retired`.
    pub state: String,
}

/// What policy knows about a tool, from the tool catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolFacts {
    /// The tool, `server/tool`.
    pub name: String,
    /// The server segment of `name`.
    pub server: String,
    /// The environment of the tool's server: `sandbox`, `pilot` or `production`.
    pub server_environment: String,
    /// `public`, `internal`, `financial`, `pii`, `secret`, or a class the organisation added.
    pub data_class: String,
    /// `read`, `write`, `destructive` or `egress`.
    pub risk: String,
}

/// May `human` put `tool` into a mandate for `agent`? Cedar action `grant`, asked once per tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The human granting.
    pub human: HumanFacts,
    /// The agent receiving the mandate.
    pub agent: AgentFacts,
    /// One tool of the requested scope.
    pub tool: ToolFacts,
    /// The intent category, e.g. `finance.close`.
    #[serde(default)]
    pub category: String,
    /// The task's purpose.
    #[serde(default)]
    pub purpose: String,
    /// The data classes the scope asks for.
    #[serde(default)]
    pub data_classes: Vec<String>,
    /// The actions the scope asks for.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// May `agent` call `tool` now? Cedar action `call`, asked for every tool call after the mandate's own
/// checks passed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    /// The calling agent.
    pub agent: AgentFacts,
    /// The agents that delegated to the calling agent, the root mandate's agent first; empty when the
    /// root human granted the calling agent directly. Listing the calling agent last as well is
    /// harmless.
    #[serde(default)]
    pub chain: Vec<AgentFacts>,
    /// The human who started the chain.
    pub root: HumanFacts,
    /// The tool called.
    pub tool: ToolFacts,
    /// The mandate's intent category.
    #[serde(default)]
    pub category: String,
    /// The mandate's purpose.
    #[serde(default)]
    pub purpose: String,
    /// The mandate's delegation depth, 0 for a direct grant.
    #[serde(default)]
    pub depth: u32,
    /// The action of the call, e.g. `read` or `write`.
    pub action: String,
    /// The normalised resource the call acts on, if any.
    #[serde(default)]
    pub resource_uri: Option<String>,
    /// The hour of the call in UTC, 0 to 23.
    pub hour: u8,
    /// The day of the week in UTC, 1 (Monday) to 7 (Sunday).
    pub weekday: u8,
    /// The behavioural risk score so far.
    #[serde(default)]
    pub risk_score: u32,
    /// The names of the risk signals raised so far.
    #[serde(default)]
    pub signals: Vec<String>,
    /// What the calling mandate is bound to: `agent_key`, `client_key` (a key an OAuth client
    /// proved at the token endpoint) or `bearer` (no key).
    #[serde(default = "agent_key")]
    pub binding: String,
}

fn agent_key() -> String {
    "agent_key".to_owned()
}

/// May `approver` approve the held call of `agent`? Cedar action `approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The human answering the approval.
    pub approver: HumanFacts,
    /// The agent whose call is held.
    pub agent: AgentFacts,
    /// The human who started the chain of the held call.
    pub root: HumanFacts,
    /// The tool of the held call.
    pub tool: ToolFacts,
    /// The action of the held call.
    pub action: String,
    /// The normalised resource of the held call, if any.
    #[serde(default)]
    pub resource_uri: Option<String>,
}

/// A request in Cedar's terms, ready to be authorized.
pub(crate) struct Built {
    pub(crate) principal: cedar::EntityUid,
    pub(crate) action: cedar::EntityUid,
    pub(crate) resource: cedar::EntityUid,
    pub(crate) context: cedar::Context,
    pub(crate) entities: Arc<cedar::Entities>,
}

/// The facts a call's entities are built from: the whole key of the entity cache, so that a hit is
/// the very entities these facts would build.
#[derive(PartialEq, Eq, Hash)]
pub(crate) struct CallEntitiesKey {
    agent: AgentFacts,
    chain: Vec<AgentFacts>,
    root: HumanFacts,
    tool: ToolFacts,
}

/// The entities of recent calls. A call's entities depend only on its agents, root human and tool,
/// and a busy server asks about the same few again and again; building them (entities, attributes,
/// the transitive closure of groups) was about a sixth of a decision's CPU.
pub(crate) type CallEntitiesCache = Memo<CallEntitiesKey, Arc<cedar::Entities>>;

/// How many calls' entities are remembered.
pub(crate) const CALL_ENTITIES_CAPACITY: usize = 4096;

impl GrantRequest {
    pub(crate) fn build(&self, engine: &Engine) -> Result<Built, String> {
        let mut store = Store::new(&engine.names);
        let principal = store.human(&self.human)?;
        let agent = store.agent(&self.agent)?;
        let resource = store.tool(&self.tool)?;
        let context = context([
            ("agent", Expr::new_entity_uid(agent)),
            ("category", string(&self.category)),
            ("purpose", string(&self.purpose)),
            ("data_classes", strings(&self.data_classes)),
            ("actions", strings(&self.actions)),
        ])?;
        store.finish(engine, principal, engine.names.grant.clone(), resource, context)
    }
}

impl CallRequest {
    pub(crate) fn build(&self, engine: &Engine) -> Result<Built, String> {
        if self.hour > 23 {
            return Err(format!("hour `{}` is outside 0 to 23", self.hour));
        }
        if !(1..=7).contains(&self.weekday) {
            return Err(format!("weekday `{}` is outside 1 (Monday) to 7 (Sunday)", self.weekday));
        }
        let key = CallEntitiesKey {
            agent: self.agent.clone(),
            chain: self.chain.clone(),
            root: self.root.clone(),
            tool: self.tool.clone(),
        };
        let entities = engine.call_entities.get_or_try(key, || self.entities(engine).map(Arc::new))?;
        let names = &engine.names;
        let hops: Vec<&AgentFacts> = self.chain.iter().chain(std::iter::once(&self.agent)).collect();
        let chain_agents: Vec<Expr> =
            hops.iter().map(|hop| Expr::new_entity_uid(Names::uid(&names.agent, &hop.id))).collect();
        let context = context([
            ("category", string(&self.category)),
            ("purpose", string(&self.purpose)),
            ("depth", Expr::new_long(i64::from(self.depth))),
            ("root", Expr::new_entity_uid(Names::uid(&names.human, &self.root.id))),
            ("hops", strings(hops.iter().map(|a| &a.id))),
            ("chain_agents", Expr::new_set(chain_agents)),
            ("chain_environments", strings(hops.iter().map(|a| &a.environment))),
            ("chain_classes", strings(hops.iter().map(|a| &a.class))),
            ("data_class", string(&self.tool.data_class)),
            ("tool_risk", string(&self.tool.risk)),
            ("risk", risk_record(self.risk_score, &self.signals)?),
            ("action", string(&self.action)),
            ("resource_uri", string(self.resource_uri.as_deref().unwrap_or_default())),
            ("hour", Expr::new_long(i64::from(self.hour))),
            ("weekday", Expr::new_long(i64::from(self.weekday))),
            ("risk_score", Expr::new_long(i64::from(self.risk_score))),
            ("signals", strings(&self.signals)),
            ("agent_environment", string(&self.agent.environment)),
            ("tool_environment", string(&self.tool.server_environment)),
            ("binding", string(&self.binding)),
        ])?;
        Ok(Built {
            principal: Names::uid(&names.agent, &self.agent.id),
            action: names.call.clone(),
            resource: Names::uid(&names.tool, &self.tool.name),
            context,
            entities,
        })
    }

    /// The call's entities: its agents, root human (with groups), tool and server; refuses facts that
    /// contradict each other.
    fn entities(&self, engine: &Engine) -> Result<cedar::Entities, String> {
        let mut store = Store::new(&engine.names);
        store.agent(&self.agent)?;
        store.human(&self.root)?;
        store.tool(&self.tool)?;
        for hop in &self.chain {
            store.agent(hop)?;
        }
        store.entities(engine)
    }
}

impl ApproveRequest {
    pub(crate) fn build(&self, engine: &Engine) -> Result<Built, String> {
        let mut store = Store::new(&engine.names);
        let principal = store.human(&self.approver)?;
        let resource = store.agent(&self.agent)?;
        let root = store.human(&self.root)?;
        store.tool(&self.tool)?;
        let context = context([
            ("root", Expr::new_entity_uid(root)),
            ("tool", string(&self.tool.name)),
            ("data_class", string(&self.tool.data_class)),
            ("risk", string(&self.tool.risk)),
            ("action", string(&self.action)),
            ("resource_uri", string(self.resource_uri.as_deref().unwrap_or_default())),
            ("is_owner", Expr::new_bool(self.approver.id == self.agent.owner)),
            ("is_root", Expr::new_bool(self.approver.id == self.root.id)),
        ])?;
        store.finish(engine, principal, engine.names.approve.clone(), resource, context)
    }
}

/// The entities of one request, each described once.
struct Store<'a> {
    names: &'a Names,
    entities: HashMap<cedar::EntityUid, cedar::Entity>,
}

impl<'a> Store<'a> {
    fn new(names: &'a Names) -> Self {
        Self { names, entities: HashMap::new() }
    }

    /// Adds an entity. The same entity may be described twice (the root human who is also the
    /// approver), but only with the same facts: two different descriptions are a caller bug that
    /// policy must not paper over by picking one.
    fn add(&mut self, entity: cedar::Entity) -> Result<cedar::EntityUid, String> {
        let uid = entity.uid();
        match self.entities.get(&uid) {
            Some(known) if known.deep_eq(&entity) => Ok(uid),
            Some(_) => Err(format!("conflicting facts for `{uid}`")),
            None => {
                self.entities.insert(uid.clone(), entity);
                Ok(uid)
            }
        }
    }

    fn human(&mut self, human: &HumanFacts) -> Result<cedar::EntityUid, String> {
        let mut parents = std::collections::HashSet::new();
        for group in &human.groups {
            let uid = self.add(cedar::Entity::with_uid(Names::uid(&self.names.group, group)))?;
            parents.insert(uid);
        }
        let attrs = [("roles", strings(&human.roles)), ("sandbox", Expr::new_bool(human.sandbox))];
        self.add(entity(Names::uid(&self.names.human, &human.id), attrs, parents)?)
    }

    fn agent(&mut self, agent: &AgentFacts) -> Result<cedar::EntityUid, String> {
        let attrs = [
            ("class", string(&agent.class)),
            ("environment", string(&agent.environment)),
            ("owner", Expr::new_entity_uid(Names::uid(&self.names.human, &agent.owner))),
            ("state", string(&agent.state)),
        ];
        self.add(entity(Names::uid(&self.names.agent, &agent.id), attrs, Default::default())?)
    }

    fn tool(&mut self, tool: &ToolFacts) -> Result<cedar::EntityUid, String> {
        match tool.name.split_once('/') {
            Some((server, _)) if server == tool.server => {}
            _ => return Err(format!("tool `{}` is not a tool of server `{}`", tool.name, tool.server)),
        }
        let server_attrs = [("environment", string(&tool.server_environment))];
        let server =
            self.add(entity(Names::uid(&self.names.server, &tool.server), server_attrs, Default::default())?)?;
        let attrs = [
            ("name", string(&tool.name)),
            ("server", string(&tool.server)),
            ("data_class", string(&tool.data_class)),
            ("risk", string(&tool.risk)),
        ];
        self.add(entity(Names::uid(&self.names.tool, &tool.name), attrs, [server].into())?)
    }

    /// The entities (checked against the schema in tests, see `Engine::request_schema`).
    fn entities(self, engine: &Engine) -> Result<cedar::Entities, String> {
        cedar::Entities::from_entities(self.entities.into_values(), engine.request_schema())
            .map_err(|e| format!("the request's entities were refused: {}", detail(&e)))
    }

    /// Gathers the request.
    fn finish(
        self,
        engine: &Engine,
        principal: cedar::EntityUid,
        action: cedar::EntityUid,
        resource: cedar::EntityUid,
        context: cedar::Context,
    ) -> Result<Built, String> {
        let entities = Arc::new(self.entities(engine)?);
        Ok(Built { principal, action, resource, context, entities })
    }
}

fn entity<const N: usize>(
    uid: cedar::EntityUid,
    attrs: [(&str, Expr); N],
    parents: std::collections::HashSet<cedar::EntityUid>,
) -> Result<cedar::Entity, String> {
    let attrs = attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    cedar::Entity::new(uid.clone(), attrs, parents).map_err(|e| format!("entity `{uid}`: {}", detail(&e)))
}

fn context<const N: usize>(pairs: [(&str, Expr); N]) -> Result<cedar::Context, String> {
    cedar::Context::from_pairs(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .map_err(|e| format!("the request's context: {}", detail(&e)))
}

fn risk_record(score: u32, signals: &[String]) -> Result<Expr, String> {
    Expr::new_record([("score".to_owned(), Expr::new_long(i64::from(score))), ("signals".to_owned(), strings(signals))])
        .map_err(|e| format!("the request's risk: {}", detail(&e)))
}

fn string(s: &str) -> Expr {
    Expr::new_string(s.to_owned())
}

fn strings<'s>(items: impl IntoIterator<Item = &'s String>) -> Expr {
    Expr::new_set(items.into_iter().map(|s| string(s)))
}

/// An error's message followed by its causes, as one line.
pub(crate) fn detail(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
