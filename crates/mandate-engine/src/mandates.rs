//! Mandate operations: a human's grant, an agent's delegation (RFC 8693 token exchange), revocation,
//! and the views of a mandate and its chain.
//!
//! Every request for authority is recorded whether it succeeds or not: `mandate.granted` and
//! `mandate.delegated`, or `mandate.grant_refused` and `mandate.delegation_refused` with the reason
//! code. The checks themselves are the core's ([`mandate_core::mandate`]); this module gathers the
//! facts they need (the stored parent, the agents, the revocation cache, the verified tokens) and
//! records the outcome.

use crate::caller::Caller;
use crate::clock::millis;
use crate::engine::Engine;
use crate::error::Error;
use crate::error::ErrorKind;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use mandate_core::agent::{Agent, AgentState};
use mandate_core::event::NewEvent;
use mandate_core::id::{AgentId, Principal};
use mandate_core::jose::{
    check_audience, check_issuer, check_time, verify_proof, Htu, Limits, ProofExpectations, RawToken, SignHeader,
    TimeRules,
};
use mandate_core::mandate::{
    plan_delegation, plan_grant, DelegationError, DelegationRequest, GrantRequest, MandateRecord, NewId, Scope,
    TokenContext, MANDATE_TYP,
};
use mandate_store::{MandateSelector, Revocation, StoredMandate};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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

/// A successful token exchange (RFC 8693 section 2.2.1).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The child mandate.
    pub access_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt`.
    pub issued_token_type: String,
    /// `DPoP`: the token is bound to the sub-agent's key.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// The child mandate's id.
    pub mandate_id: String,
    /// The chain's id.
    pub chain_id: String,
}

/// A refused token exchange (RFC 6749 section 5.2), with Mandate's reason code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_grant`, `invalid_scope`, `unsupported_grant_type`.
    pub error: String,
    /// What was wrong, for people.
    pub error_description: String,
    /// Mandate's stable reason code, e.g. `delegation.scope_widened`.
    pub code: String,
}

impl OAuthError {
    fn new(error: &str, code: &str, description: impl Into<String>) -> Self {
        Self { error: error.to_owned(), error_description: description.into(), code: code.to_owned() }
    }
}

/// The form of `POST /oauth/token` (RFC 8693 section 2.1), with Mandate's extensions.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenExchangeForm {
    /// Must be `urn:ietf:params:oauth:grant-type:token-exchange`.
    pub grant_type: String,
    /// The parent mandate.
    pub subject_token: Option<String>,
    /// `urn:ietf:params:oauth:token-type:jwt` or `...:access_token`.
    pub subject_token_type: Option<String>,
    /// A JWT signed by the sub-agent's registered key: `iss` = `sub` = its SPIFFE id, `aud` = the
    /// token endpoint.
    pub actor_token: Option<String>,
    /// `urn:ietf:params:oauth:token-type:jwt`.
    pub actor_token_type: Option<String>,
    /// The narrowed scope, as a JSON array (RFC 9396).
    pub authorization_details: Option<String>,
    /// Extension: lifetime in seconds (default: the parent's remaining lifetime).
    pub ttl_seconds: Option<u32>,
    /// Extension: budget (default: the parent's remaining budget).
    pub max_calls: Option<u64>,
    /// Extension: further delegations allowed.
    pub max_depth: Option<u8>,
}

/// One question to grant policy: a tool (as written, or a catalogued tool a pattern covers), its
/// server's environment, one data class and one action, with the entry's classes and actions.
type GrantQuestion = (String, String, String, String, Vec<String>, Vec<String>);

/// The most policy questions one grant may raise (tools x data classes x actions, after expanding
/// patterns against the catalogue): a bound on the work one request can cause.
const MAX_GRANT_QUESTIONS: usize = 256;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

fn new_mandate_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("mdt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn grant_problem(code: &'static str, detail: String) -> Error {
    let kind = match code {
        "grant.agent_unknown" => ErrorKind::NotFound,
        "grant.not_permitted" | "grant.not_a_human" => ErrorKind::Forbidden,
        "grant.agent_not_active" => ErrorKind::Conflict,
        _ => ErrorKind::Invalid,
    };
    Error::new(kind, code, detail)
}

/// A mandate whose token verified, with its trusted record.
pub struct PresentedMandate {
    /// The stored mandate the token names.
    pub stored: StoredMandate,
}

impl Engine {
    fn token_context(&self) -> TokenContext<'_> {
        let m = &self.settings.mandates;
        TokenContext { issuer: &m.issuer, audience: &m.audience, trust_domain: &self.settings.trust_domain }
    }

    fn sign(&self, record: &MandateRecord) -> Result<(String, String), Error> {
        let (kid, key) = self.keys.signing();
        let token = mandate_core::jose::sign(
            &record.claims(&self.token_context()),
            &key,
            &SignHeader { typ: MANDATE_TYP, kid: &kid },
        )
        .map_err(|e| Error::internal(format!("signing a mandate: {e}")))?;
        Ok((kid, token))
    }

    async fn refuse(
        &self,
        kind: &str,
        actor: &str,
        agent: Option<&str>,
        chain: Option<&str>,
        code: &str,
        detail: &str,
    ) {
        let mut event =
            NewEvent::new(kind, actor, millis(self.clock.now()), &serde_json::json!({"code": code, "detail": detail}));
        event.agent = agent.map(str::to_owned);
        event.chain_id = chain.map(str::to_owned);
        event.decision = Some("refused".to_owned());
        // The refusal is the answer; failing to record it must not turn it into a 500, but it is logged.
        if let Err(e) = self.store.append_event(event).await {
            tracing::error!(error = %e, kind, "could not record a refused request for authority");
        }
        self.metrics.event(kind);
    }

    /// A human grants an agent a mandate.
    pub async fn grant(&self, caller: &Caller, request: GrantRequest) -> Result<Granted, Error> {
        let actor = caller.principal();
        let agent_id = request.agent.to_string();
        match self.try_grant(caller, &request).await {
            Ok(granted) => Ok(granted),
            Err(e) => {
                if e.is_client_fault() {
                    self.refuse("mandate.grant_refused", &actor, Some(&agent_id), None, e.code(), &format!("{e:?}"))
                        .await;
                }
                Err(e)
            }
        }
    }

    async fn try_grant(&self, caller: &Caller, request: &GrantRequest) -> Result<Granted, Error> {
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
        let record = plan_grant(
            request,
            &agent,
            &human.principal,
            &self.settings.mandates.limits,
            NewId { id: new_mandate_id(), now },
        )
        .map_err(|e| grant_problem(e.code(), e.to_string()))?;
        let policies = self.grant_permitted(human, &agent, request)?;
        let (kid, token) = self.sign(&record)?;
        let detail = serde_json::json!({
            "policies": policies,
            "purpose": record.intent.purpose, "category": record.intent.category, "scope": record.scope,
            "expires_at": record.expires_at, "max_calls": record.max_calls, "max_depth": record.max_depth, "kid": kid,
        });
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

    /// Verifies a presented mandate token and returns its stored record. Checks the signature (a
    /// published `kid`, EdDSA only), `typ`, `exp`/`nbf`/`iat` with skew, `iss`, `aud`, that the record
    /// exists for the token's subject, and that neither it nor any ancestor is revoked.
    pub async fn verify_mandate(&self, token: &str) -> Result<PresentedMandate, (String, String)> {
        let stored = self.verify_token(token).await?;
        if let Some(revoked) = self.revocations.revoked_in(&stored.record) {
            let which = if revoked == stored.record.id {
                "this mandate".to_owned()
            } else {
                format!("its ancestor `{revoked}`")
            };
            return Err(("mandate.revoked".to_owned(), format!("{which} was revoked")));
        }
        Ok(PresentedMandate { stored })
    }

    /// Verifies a mandate token and returns its stored record, without the revocation check.
    pub async fn verify_token(&self, token: &str) -> Result<StoredMandate, (String, String)> {
        let now = self.now_secs();
        let m = &self.settings.mandates;
        let fail = |code: &str, msg: String| (code.to_owned(), msg);
        let rules = TimeRules {
            now,
            skew_secs: m.clock_skew_secs,
            require_nbf: false,
            require_iat: true,
            max_lifetime_secs: Some(m.limits.max_ttl_secs),
        };
        let digest = crate::engine::TokenCache::digest(token);
        if let Some(hit) = self.tokens.get(&digest) {
            // The exact bytes verified before: what can have changed since is time and the key's
            // publication, so those are checked again; revocation is the caller's next step.
            check_time(&hit.time_claims, &rules).map_err(|e| fail(e.code(), e.to_string()))?;
            if self.keys.verifying(&hit.kid, now).is_some() {
                return expiry_exact(hit.stored, now);
            }
        }
        let raw = RawToken::decode(token, &Limits::TOKEN).map_err(|e| fail(e.code(), e.to_string()))?;
        let keys = |kid: &str| self.keys.verifying(kid, now);
        let verified = raw.verify(&keys, Some(MANDATE_TYP)).map_err(|e| fail(e.code(), e.to_string()))?;
        check_time(verified.claims(), &rules).map_err(|e| fail(e.code(), e.to_string()))?;
        check_issuer(verified.claims(), &m.issuer).map_err(|e| fail(e.code(), e.to_string()))?;
        check_audience(verified.claims(), &m.audience).map_err(|e| fail(e.code(), e.to_string()))?;
        let jti = verified.claims().get("jti").and_then(|v| v.as_str()).unwrap_or_default();
        let stored = self
            .store
            .mandate(jti)
            .await
            .map_err(|e| fail("internal", e.to_string()))?
            .ok_or_else(|| fail("mandate.unknown", format!("no mandate `{jti}` was issued here")))?;
        let sub = verified.claims().get("sub").and_then(|v| v.as_str()).unwrap_or_default();
        if sub != self.settings.trust_domain.agent_spiffe_id(&stored.record.agent) {
            return Err(fail("mandate.subject_mismatch", "the token's subject is not the mandate's agent".into()));
        }
        let time_claims: serde_json::Map<String, serde_json::Value> = ["exp", "nbf", "iat"]
            .iter()
            .filter_map(|k| verified.claims().get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        let kid = verified.kid().unwrap_or_default().to_owned();
        let exp = stored.record.expires_at;
        self.tokens.insert(digest, crate::engine::CachedToken { stored: stored.clone(), kid, time_claims }, exp, now);
        expiry_exact(stored, now)
    }

    /// Every agent of a chain must still be active.
    async fn chain_agents_active(&self, record: &MandateRecord) -> Result<Vec<Agent>, (String, String)> {
        let mut agents = Vec::with_capacity(record.chain_agents.len());
        for id in &record.chain_agents {
            let agent = self.cached_agent(id).await.map_err(|e| ("internal".to_owned(), e.to_string()))?;
            match agent {
                Some(a) if a.state == AgentState::Active => agents.push(a),
                Some(a) => {
                    return Err((
                        "mandate.agent_not_active".to_owned(),
                        format!("agent `{id}` in this chain is {}", a.state.as_str()),
                    ))
                }
                None => return Err(("mandate.agent_unknown".to_owned(), format!("agent `{id}` is not registered"))),
            }
        }
        Ok(agents)
    }

    /// RFC 8693 token exchange: the holder of `subject_token` delegates to the agent of `actor_token`.
    pub async fn delegate(&self, form: TokenExchangeForm, dpop: Option<&str>) -> Result<TokenResponse, OAuthError> {
        let mut context: (Option<String>, Option<String>) = (None, None);
        match self.try_delegate(form, dpop, &mut context).await {
            Ok(r) => Ok(r),
            Err(e) => {
                let (agent, chain) = context;
                self.refuse(
                    "mandate.delegation_refused",
                    "system",
                    agent.as_deref(),
                    chain.as_deref(),
                    &e.code,
                    &e.error_description,
                )
                .await;
                Err(e)
            }
        }
    }

    async fn try_delegate(
        &self,
        form: TokenExchangeForm,
        dpop: Option<&str>,
        context: &mut (Option<String>, Option<String>),
    ) -> Result<TokenResponse, OAuthError> {
        let invalid = |code: &str, d: String| OAuthError::new("invalid_request", code, d);
        if form.grant_type != TOKEN_EXCHANGE {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "delegation.unsupported_grant_type",
                format!("`grant_type` must be `{TOKEN_EXCHANGE}`"),
            ));
        }
        let subject = form
            .subject_token
            .as_deref()
            .ok_or_else(|| invalid("delegation.missing_parameter", "`subject_token` is required".into()))?;
        match form.subject_token_type.as_deref() {
            Some(JWT_TYPE) | Some(ACCESS_TOKEN_TYPE) => {}
            _ => {
                return Err(invalid(
                    "delegation.missing_parameter",
                    format!("`subject_token_type` must be `{JWT_TYPE}`"),
                ))
            }
        }
        let actor = form.actor_token.as_deref().ok_or_else(|| {
            invalid(
                "delegation.missing_parameter",
                "`actor_token` is required: the sub-agent proves itself with an assertion signed by its key".into(),
            )
        })?;
        if form.actor_token_type.as_deref() != Some(JWT_TYPE) {
            return Err(invalid("delegation.missing_parameter", format!("`actor_token_type` must be `{JWT_TYPE}`")));
        }
        let details = form.authorization_details.as_deref().ok_or_else(|| {
            invalid(
                "delegation.missing_parameter",
                "`authorization_details` is required: say what the sub-agent may do".into(),
            )
        })?;
        let scope: Scope = serde_json::from_str(details)
            .map_err(|e| invalid("delegation.invalid_scope", format!("`authorization_details`: {e}")))?;

        // The parent: its token, its record, its revocation, its chain's agents.
        let parent = self
            .verify_mandate(subject)
            .await
            .map_err(|(code, d)| OAuthError::new("invalid_grant", &code, format!("subject_token: {d}")))?
            .stored;
        *context = (Some(parent.record.agent.to_string()), Some(parent.record.chain_id.clone()));
        let chain = self
            .chain_agents_active(&parent.record)
            .await
            .map_err(|(code, d)| OAuthError::new("invalid_grant", &code, d))?;

        // The parent agent's proof of possession (RFC 9449 section 4.3) over this request.
        let endpoint = self.settings.mandates.token_endpoint();
        let htu = Htu::parse(&endpoint).map_err(|e| OAuthError::new("invalid_request", e.code(), e.to_string()))?;
        let now = self.now_secs();
        let m = &self.settings.mandates;
        let proof = verify_proof(
            dpop.unwrap_or_default(),
            &ProofExpectations {
                htm: "POST",
                htu: &htu,
                access_token: Some(subject),
                expected_jkt: &parent.record.key_thumbprint,
                now,
                max_age_secs: m.proof_max_age_secs,
                skew_secs: m.clock_skew_secs,
                known_key: None,
            },
        )
        .map_err(|e| OAuthError::new("invalid_request", e.code(), format!("DPoP proof: {e}")))?;
        self.check_replay(&format!("dpop:{}:{}", proof.jkt(), proof.jti()), now)?;

        // The sub-agent's assertion: signed by its registered key, about itself, for this endpoint.
        let child = self.verify_actor(actor, &endpoint, now).await?;
        *context = (Some(child.id.to_string()), context.1.take());

        let delegator =
            chain.last().cloned().ok_or_else(|| OAuthError::new("invalid_grant", "internal", "empty chain"))?;
        let request = DelegationRequest {
            scope,
            ttl_seconds: form.ttl_seconds,
            max_calls: form.max_calls,
            max_depth: form.max_depth,
        };
        let record = plan_delegation(
            &parent.record,
            self.budgets.used(&parent.record.id),
            &delegator,
            &child,
            &request,
            NewId { id: new_mandate_id(), now },
        )
        .map_err(|e: DelegationError| OAuthError::new(e.oauth_error(), e.code(), e.to_string()))?;
        let (kid, token) =
            self.sign(&record).map_err(|e| OAuthError::new("invalid_request", "internal", format!("{e:?}")))?;
        let detail = serde_json::json!({
            "parent_id": parent.record.id, "from": delegator.id, "depth": record.depth, "scope": record.scope,
            "expires_at": record.expires_at, "max_calls": record.max_calls, "max_depth": record.max_depth, "kid": kid,
        });
        let actor_id = self.settings.trust_domain.agent_spiffe_id(&delegator.id);
        let mut event = NewEvent::new("mandate.delegated", &actor_id, millis(self.clock.now()), &detail)
            .with_agent(child.id.as_str());
        event.chain_id = Some(record.chain_id.clone());
        event.mandate_id = Some(record.id.clone());
        event.decision = Some("granted".to_owned());
        self.store
            .insert_mandate(&record, &kid, event)
            .await
            .map_err(|e| OAuthError::new("invalid_request", "internal", e.to_string()))?;
        self.metrics.event("mandate.delegated");
        tracing::info!(mandate_id = %record.id, parent = %parent.record.id, agent = %child.id, "mandate delegated");
        Ok(TokenResponse {
            access_token: token,
            issued_token_type: JWT_TYPE.to_owned(),
            token_type: "DPoP".to_owned(),
            expires_in: record.remaining_secs(now),
            mandate_id: record.id,
            chain_id: record.chain_id,
        })
    }

    fn check_replay(&self, key: &str, now: i64) -> Result<(), OAuthError> {
        let mut cache = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        cache.check_and_insert(key, now).map_err(|e| OAuthError::new("invalid_request", e.code(), e.to_string()))
    }

    /// Verifies a sub-agent's assertion: a JWT whose `iss` and `sub` are the agent's SPIFFE id, signed
    /// by the agent's registered key, for `aud` = the token endpoint, fresh and never seen before.
    async fn verify_actor(&self, token: &str, endpoint: &str, now: i64) -> Result<Agent, OAuthError> {
        let bad = |code: &str, d: String| OAuthError::new("invalid_request", code, format!("actor_token: {d}"));
        let raw = RawToken::decode(token, &Limits::PROOF).map_err(|e| bad(e.code(), e.to_string()))?;
        let claimed = raw.danger_unverified_claims().get("sub").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let prefix = format!("spiffe://{}/agent/", self.settings.trust_domain);
        let id = claimed.strip_prefix(&prefix).and_then(|s| AgentId::parse(s).ok()).ok_or_else(|| {
            bad("actor.unknown_agent", format!("`sub` `{claimed}` is not an agent of this trust domain"))
        })?;
        let agent = self
            .store
            .agent(&id)
            .await
            .map_err(|e| bad("internal", e.to_string()))?
            .ok_or_else(|| bad("actor.unknown_agent", format!("agent `{id}` is not registered")))?;
        let verified = raw
            .verify_with_key(agent.public_key_jwk.verifying_key(), None)
            .map_err(|e| bad(&e.code().replace("token.", "actor."), e.to_string()))?;
        let claims = verified.claims();
        if claims.get("iss").and_then(|v| v.as_str()) != Some(claimed.as_str()) {
            return Err(bad("actor.wrong_issuer", "`iss` must equal `sub`, the agent's SPIFFE id".into()));
        }
        check_audience(claims, endpoint).map_err(|e| bad(&e.code().replace("token.", "actor."), e.to_string()))?;
        let rules = TimeRules {
            now,
            skew_secs: self.settings.mandates.clock_skew_secs,
            require_nbf: false,
            require_iat: true,
            max_lifetime_secs: Some(120),
        };
        check_time(claims, &rules).map_err(|e| bad(&e.code().replace("token.", "actor."), e.to_string()))?;
        // An assertion is fresh like a proof, so the replay cache remembers it for as long as it is
        // acceptable.
        let iat = claims.get("iat").and_then(serde_json::Value::as_i64).unwrap_or(i64::MIN);
        if now.saturating_sub(iat) > i64::from(self.settings.mandates.proof_max_age_secs) {
            return Err(bad(
                "actor.stale",
                format!("the assertion is older than {} seconds", self.settings.mandates.proof_max_age_secs),
            ));
        }
        let jti = claims
            .get("jti")
            .and_then(|v| v.as_str())
            .filter(|j| !j.is_empty() && j.len() <= 128)
            .ok_or_else(|| bad("actor.missing_claim", "`jti` is required".into()))?;
        self.check_replay(&format!("actor:{id}:{jti}"), now)?;
        Ok(agent)
    }

    /// Revokes the mandates `selector` names that are still live, as `caller`, and records it.
    pub async fn revoke(
        &self,
        caller: &Caller,
        selector: MandateSelector,
        reason: String,
    ) -> Result<Vec<String>, Error> {
        let now = self.now_secs();
        let ids = self.store.live_mandate_ids(&selector, now).await?;
        if ids.is_empty() {
            return Ok(ids);
        }
        let (label, target) = match &selector {
            MandateSelector::Subtree(id) => ("mandate", id.clone()),
            MandateSelector::Chain(id) => ("chain", id.clone()),
            MandateSelector::Root(p) => ("human", p.to_string()),
            MandateSelector::Agent(a) => ("agent", a.to_string()),
        };
        let revocation = Revocation { at: now, by: caller.principal(), reason: reason.clone() };
        let detail = serde_json::json!({"selector": label, "target": target, "reason": reason, "revoked": ids});
        let mut event = NewEvent::new("mandate.revoked", &caller.principal(), millis(self.clock.now()), &detail);
        if let MandateSelector::Agent(a) = &selector {
            event.agent = Some(a.to_string());
        }
        if let MandateSelector::Subtree(id) | MandateSelector::Chain(id) = &selector {
            event.mandate_id = Some(id.clone());
        }
        self.store.revoke_mandates(&ids, &revocation, event).await?;
        // Remember until each expires; the expiry is read back so the cache can forget in time.
        let mut expiring = Vec::with_capacity(ids.len());
        for id in &ids {
            let exp = self.store.mandate(id).await?.map(|m| m.record.expires_at).unwrap_or(i64::MAX);
            expiring.push((id.clone(), exp));
        }
        self.revocations.insert(expiring, now);
        self.metrics.event("mandate.revoked");
        tracing::info!(selector = label, target = %target, count = ids.len(), "mandates revoked");
        Ok(ids)
    }

    /// Who may revoke a mandate: an admin, the human at its root, or the owner of any agent in its chain.
    pub async fn may_revoke(&self, caller: &Caller, record: &MandateRecord) -> Result<bool, Error> {
        if caller.has_role(mandate_core::human::Role::Admin) {
            return Ok(true);
        }
        let Caller::Human(h) = caller else { return Ok(false) };
        if h.principal == record.root {
            return Ok(true);
        }
        for id in &record.chain_agents {
            if let Some(agent) = self.store.agent(id).await? {
                if caller.owns(&agent) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Who may read a mandate: those who may revoke it, auditors and approvers.
    pub async fn may_read(&self, caller: &Caller, record: &MandateRecord) -> Result<bool, Error> {
        Ok(caller.reads_everything() || self.may_revoke(caller, record).await?)
    }
}

/// A mandate as `GET /v1/mandates/{id}` and the chain view show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MandateView {
    /// Its id.
    pub id: String,
    /// Its chain.
    pub chain_id: String,
    /// Its parent.
    pub parent_id: Option<String>,
    /// 1 for a human's grant.
    pub depth: u8,
    /// The agent holding it.
    pub agent: String,
    /// The human at the root.
    pub root: String,
    /// The task.
    #[schema(value_type = Object)]
    pub intent: serde_json::Value,
    /// What it allows.
    #[schema(value_type = Vec<Object>)]
    pub authorization_details: serde_json::Value,
    /// Its budget.
    pub max_calls: u64,
    /// Calls counted against it so far.
    pub used_calls: u64,
    /// Further delegations allowed.
    pub max_depth: u8,
    /// Issued, Unix seconds.
    pub issued_at: i64,
    /// Expires, Unix seconds.
    pub expires_at: i64,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    /// Its revocation, if revoked.
    pub revocation: Option<Revocation>,
    /// The key that signed its token.
    pub kid: String,
    /// Its children, in the chain view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion, value_type = Vec<Object>)]
    pub children: Vec<MandateView>,
}

impl MandateView {
    /// The view of a stored mandate at `now`; `revoked_in` names a revoked ancestor, if any.
    pub fn new(m: &StoredMandate, now: i64, revoked_ancestor: bool) -> Self {
        let state = if m.revocation.is_some() || revoked_ancestor {
            "revoked"
        } else if m.record.expires_at <= now {
            "expired"
        } else {
            "active"
        };
        Self {
            id: m.record.id.clone(),
            chain_id: m.record.chain_id.clone(),
            parent_id: m.record.parent_id.clone(),
            depth: m.record.depth,
            agent: m.record.agent.to_string(),
            root: m.record.root.to_string(),
            intent: serde_json::to_value(&m.record.intent).unwrap_or_default(),
            authorization_details: serde_json::to_value(&m.record.scope).unwrap_or_default(),
            max_calls: m.record.max_calls,
            used_calls: m.used_calls,
            max_depth: m.record.max_depth,
            issued_at: m.record.issued_at,
            expires_at: m.record.expires_at,
            state: state.to_owned(),
            revocation: m.revocation.clone(),
            kid: m.kid.clone(),
            children: Vec::new(),
        }
    }
}

/// The token's `exp` is accepted with clock skew, for the agent's clock; the mandate itself ends at
/// its stored expiry on this server's clock, without skew. Past it, a revocation may already have
/// been forgotten, so nothing may be allowed.
fn expiry_exact(stored: StoredMandate, now: i64) -> Result<StoredMandate, (String, String)> {
    if now >= stored.record.expires_at {
        return Err(("token.expired".to_owned(), format!("mandate `{}` has expired", stored.record.id)));
    }
    Ok(stored)
}

impl Engine {
    /// The calls counted against each mandate of `chain` (every mandate of one chain, as
    /// [`mandate_store::Store::chain`] returns them), its own and its descendants', by id: from
    /// memory while its count is kept, and from the ledger's `allow` decisions once it expired long
    /// enough ago for the count to be dropped (see [`crate::expiry`]).
    pub async fn used_calls(&self, chain: &[StoredMandate]) -> Result<HashMap<String, u64>, mandate_store::StoreError> {
        let now = self.now_secs();
        let mut used = HashMap::with_capacity(chain.len());
        // The calls each mandate of the chain made itself, read once, and only if needed.
        let mut own: Option<HashMap<String, u64>> = None;
        for m in chain {
            let id = &m.record.id;
            if !crate::expiry::forgotten(m.record.expires_at, now) {
                used.insert(id.clone(), self.budgets.used(id));
                continue;
            }
            let own = match &mut own {
                Some(own) => own,
                None => {
                    own.insert(self.decisions.allow_counts_in_chain(&m.record.chain_id).await?.into_iter().collect())
                }
            };
            let n = chain
                .iter()
                .filter(|d| d.record.id == *id || d.record.lineage.contains(id))
                .map(|d| own.get(&d.record.id).copied().unwrap_or(0))
                .sum();
            used.insert(id.clone(), n);
        }
        Ok(used)
    }

    /// [`Engine::used_calls`] of one mandate; its chain is read only when its count has to come
    /// from the ledger.
    pub async fn used_calls_of(&self, m: &StoredMandate) -> Result<u64, mandate_store::StoreError> {
        if !crate::expiry::forgotten(m.record.expires_at, self.now_secs()) {
            return Ok(self.budgets.used(&m.record.id));
        }
        let chain = self.store.chain(&m.record.chain_id).await?;
        Ok(self.used_calls(&chain).await?.get(&m.record.id).copied().unwrap_or(0))
    }
}

/// Builds the tree of a chain from its mandates (ordered by depth), with the calls counted against
/// each (see [`Engine::used_calls`]).
pub fn chain_tree(
    mandates: &[StoredMandate],
    now: i64,
    revocations: &crate::engine::Revocations,
    used: &HashMap<String, u64>,
) -> Option<MandateView> {
    fn attach(node: &mut MandateView, all: &[MandateView]) {
        node.children = all.iter().filter(|m| m.parent_id.as_deref() == Some(node.id.as_str())).cloned().collect();
        for child in &mut node.children {
            attach(child, all);
        }
    }
    let views: Vec<MandateView> = mandates
        .iter()
        .map(|m| {
            let mut v = MandateView::new(m, now, revocations.revoked_in(&m.record).is_some());
            v.used_calls = used.get(&m.record.id).copied().unwrap_or(0);
            v
        })
        .collect();
    let mut root = views.iter().find(|m| m.parent_id.is_none())?.clone();
    attach(&mut root, &views);
    Some(root)
}

/// The principal whose mandates `POST /v1/humans/{id}/revoke-mandates` revokes.
pub fn human_root(id: &mandate_core::id::HumanId) -> Principal {
    id.principal()
}
