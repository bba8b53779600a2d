//! A human grants an agent a mandate: `POST /v1/mandates`.

use super::new_mandate_id;
use crate::caller::Caller;
use crate::clock::millis;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind};
use mandate_core::agent::Agent;
use mandate_core::event::NewEvent;
use mandate_core::mandate::{plan_grant, Binding, GrantRequest, NewId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/mandates` answers this.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Granted {
    /// The mandate's id (the token's `jti`).
    pub mandate_id: String,
    /// The chain's id (the root mandate's id).
    pub chain_id: String,
    /// The signed mandate token.
    pub token: String,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: time::OffsetDateTime,
}

/// One question to grant policy: a tool (as written, or a catalogued tool a pattern covers), its
/// server's environment, one data class and one action, with the entry's classes and actions.
type GrantQuestion = (String, String, String, String, Vec<String>, Vec<String>);

/// The most policy questions one grant may raise (tools x data classes x actions, after expanding
/// patterns against the catalogue): a bound on the work one request can cause.
const MAX_GRANT_QUESTIONS: usize = 256;

fn grant_problem(code: &'static str, detail: String) -> Error {
    let kind = match code {
        "grant.agent_unknown" => ErrorKind::NotFound,
        "grant.not_permitted" | "grant.not_a_human" => ErrorKind::Forbidden,
        "grant.agent_not_active" => ErrorKind::Conflict,
        _ => ErrorKind::Invalid,
    };
    Error::new(kind, code, detail)
}

/// Who holds a mandate a human granted through the OAuth authorization flow: an MCP client acting
/// as the agent, known by its client id, for one protected resource, bound to the key it proved at
/// the token endpoint or (where allowed) to nothing.
#[derive(Debug, Clone)]
pub struct ClientHolder {
    /// The client's id (its Client ID Metadata Document URL).
    pub client_id: String,
    /// The protected resource (RFC 8707) the mandate is for.
    pub resource: String,
    /// [`Binding::ClientKey`] or [`Binding::Bearer`].
    pub binding: Binding,
    /// The RFC 7638 thumbprint of the key the client proved; empty for a bearer mandate.
    pub key_thumbprint: String,
    /// The replay key of the proof it proved the key with, recorded so that a restart remembers it.
    pub replay: Option<String>,
}

impl Engine {
    /// A human grants an agent a mandate.
    pub async fn grant(&self, caller: &Caller, request: GrantRequest) -> Result<Granted, Error> {
        self.grant_held_by(caller, request, None).await
    }

    /// A human grants a mandate for `request.agent` to an OAuth client (the token endpoint of the
    /// authorization code flow): the same trust decision as [`Engine::grant`], bound as `holder` says.
    pub async fn grant_to_client(
        &self,
        caller: &Caller,
        request: GrantRequest,
        holder: ClientHolder,
    ) -> Result<Granted, Error> {
        if holder.binding == Binding::AgentKey {
            return Err(grant_problem(
                "grant.invalid_binding",
                "a client's mandate is bound to its own key or to none".into(),
            ));
        }
        if holder.binding == Binding::Bearer && !self.settings.mandates.allow_unbound {
            return Err(grant_problem(
                "grant.unbound_not_allowed",
                "this organisation grants only key-bound mandates: prove a key at the token endpoint with a DPoP proof (RFC 9449 section 5)".into(),
            ));
        }
        self.grant_held_by(caller, request, Some(holder)).await
    }

    /// Everything [`Engine::grant`] checks (the human, the agent, the scope, the limits, policy)
    /// without signing or storing anything: what a consent page asks before it offers "grant".
    pub async fn check_grant(&self, caller: &Caller, request: &GrantRequest) -> Result<(), Error> {
        let Caller::Human(human) = caller else {
            return Err(grant_problem("grant.not_a_human", "mandates are granted by humans".into()));
        };
        let agent = self
            .store
            .agent(&request.agent)
            .await?
            .ok_or_else(|| grant_problem("grant.agent_unknown", format!("no agent `{}`", request.agent)))?;
        plan_grant(
            request,
            &agent,
            &human.principal,
            &self.settings.mandates.limits,
            NewId { id: String::new(), now: self.now_secs() },
        )
        .map_err(|e| grant_problem(e.code(), e.to_string()))?;
        self.grant_permitted(human, &agent, request).map(|_| ())
    }

    async fn grant_held_by(
        &self,
        caller: &Caller,
        request: GrantRequest,
        holder: Option<ClientHolder>,
    ) -> Result<Granted, Error> {
        let actor = caller.principal();
        let agent_id = request.agent.to_string();
        match self.try_grant(caller, &request, holder).await {
            Ok(granted) => Ok(granted),
            Err(e) => {
                if e.is_client_fault() {
                    self.refuse(super::Refused {
                        kind: "mandate.grant_refused",
                        actor: &actor,
                        agent: Some(&agent_id),
                        chain: None,
                        code: e.code(),
                        detail: &format!("{e:?}"),
                        replay: &[],
                    })
                    .await;
                }
                Err(e)
            }
        }
    }

    async fn try_grant(
        &self,
        caller: &Caller,
        request: &GrantRequest,
        holder: Option<ClientHolder>,
    ) -> Result<Granted, Error> {
        // Not on state that may be behind another node's suspension or revocation.
        self.current()
            .map_err(|b| Error::new(crate::error::ErrorKind::Unavailable, "server.node_behind", b.message))?;
        let Caller::Human(human) = caller else {
            return Err(grant_problem(
                "grant.not_a_human",
                "mandates are granted by humans; authenticate as one (an API key of `POST /v1/humans`, or an OIDC ID token)".into(),
            ));
        };
        let agent = self
            .store
            .agent(&request.agent)
            .await?
            .ok_or_else(|| grant_problem("grant.agent_unknown", format!("no agent `{}`", request.agent)))?;
        let now = self.now_secs();
        let mut record = plan_grant(
            request,
            &agent,
            &human.principal,
            &self.settings.mandates.limits,
            NewId { id: new_mandate_id(), now },
        )
        .map_err(|e| grant_problem(e.code(), e.to_string()))?;
        let replay = holder.as_ref().and_then(|h| h.replay.clone());
        if let Some(holder) = holder {
            record.binding = holder.binding;
            record.key_thumbprint = holder.key_thumbprint;
            record.client_id = Some(holder.client_id);
            record.resource = Some(holder.resource);
        }
        let policies = self.grant_permitted(human, &agent, request)?;
        let (kid, token) = self.sign(&record)?;
        let mut detail = serde_json::json!({
            "policies": policies,
            "purpose": record.intent.purpose, "category": record.intent.category, "scope": record.scope,
            "expires_at": record.expires_at, "max_calls": record.max_calls, "max_depth": record.max_depth, "kid": kid,
            "binding": record.binding.as_str(),
        });
        if let Some(client_id) = &record.client_id {
            detail["client_id"] = serde_json::json!(client_id);
            detail["resource"] = serde_json::json!(record.resource);
            detail["replay"] = serde_json::json!(replay.as_slice());
        }
        let mut event = NewEvent::new("mandate.granted", &caller.principal(), millis(self.clock.now()), &detail)
            .with_agent(agent.id.as_str());
        event.chain_id = Some(record.chain_id.clone());
        event.mandate_id = Some(record.id.clone());
        event.decision = Some("granted".to_owned());
        self.store.insert_mandate(&record, &kid, event).await?;
        self.metrics.event("mandate.granted");
        tracing::info!(mandate_id = %record.id, agent = %agent.id, root = %record.root, "mandate granted");
        Ok(Granted {
            mandate_id: record.id.clone(),
            chain_id: record.chain_id.clone(),
            token,
            expires_at: time::OffsetDateTime::from_unix_timestamp(record.expires_at).unwrap_or(self.clock.now()),
        })
    }

    /// Asks organisation policy (Cedar action `grant`) whether `human` may put each tool pattern of
    /// the request into a mandate for `agent`, once per tool pattern and data class. A human cannot
    /// hand out more than they hold: one refusal refuses the grant. Returns the permitting policies.
    fn grant_permitted(
        &self,
        human: &mandate_core::human::Human,
        agent: &Agent,
        request: &GrantRequest,
    ) -> Result<Vec<String>, Error> {
        use mandate_policy::{Outcome, ToolFacts};
        let Some((_, policies)) = self.policy.current() else {
            return Err(grant_problem(
                "grant.not_permitted",
                "no policy set is active, so nothing may be granted".into(),
            ));
        };
        let human_facts = crate::policy::human_facts(human);
        let agent_facts = crate::policy::agent_facts(agent);
        let mut matched = Vec::new();
        // Every question policy must answer, each once: a tool pattern is asked about as written and
        // about every catalogued tool it covers, so `*/list_vendors` cannot slip an ERP tool past a
        // rule written as `erp/*`; and about every data class and every action it asks for.
        let mut questions: Vec<GrantQuestion> = Vec::new();
        for entry in &request.authorization_details.0 {
            let data_classes: Vec<String> = entry.data_classes.iter().map(ToString::to_string).collect();
            let actions: Vec<String> = entry.actions.iter().map(|a| a.as_str().to_owned()).collect();
            for pattern in &entry.tools {
                let mut names: Vec<(String, String)> =
                    vec![(pattern.to_string(), agent.environment.as_str().to_owned())];
                for t in self.catalogue.matching(pattern) {
                    names.push((t.name, t.server_environment));
                }
                for (name, env) in names {
                    for data_class in &data_classes {
                        for action in &actions {
                            let q = (
                                name.clone(),
                                env.clone(),
                                data_class.clone(),
                                action.clone(),
                                data_classes.clone(),
                                actions.clone(),
                            );
                            if !questions.iter().any(|p| p.0 == q.0 && p.2 == q.2 && p.3 == q.3 && p.4 == q.4) {
                                questions.push(q);
                            }
                        }
                    }
                }
            }
        }
        if questions.len() > MAX_GRANT_QUESTIONS {
            return Err(grant_problem(
                "grant.invalid_scope",
                format!(
                    "the grant asks about {} tool, data class and action combinations; at most {MAX_GRANT_QUESTIONS}: narrow it",
                    questions.len()
                ),
            ));
        }
        for (name, server_environment, data_class, action, data_classes, actions) in questions {
            let server = name.split('/').next().unwrap_or_default().to_owned();
            let decision = policies.decide_grant(&mandate_policy::GrantRequest {
                human: human_facts.clone(),
                agent: agent_facts.clone(),
                tool: ToolFacts {
                    name: name.clone(),
                    server,
                    server_environment,
                    data_class: data_class.clone(),
                    risk: action,
                },
                category: request.category.clone(),
                purpose: request.purpose.clone(),
                data_classes,
                actions,
            });
            if decision.outcome != Outcome::Allow {
                let why = if decision.matched.is_empty() {
                    "no policy lets you grant it".to_owned()
                } else {
                    format!(
                        "forbidden by policy {}",
                        decision.matched.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(grant_problem(
                    "grant.not_permitted",
                    format!("`{}` may not grant `{name}` with data class `{data_class}`: {why}", human.principal),
                ));
            }
            for id in decision.matched {
                if !matched.contains(&id) {
                    matched.push(id);
                }
            }
        }
        Ok(matched)
    }
}
