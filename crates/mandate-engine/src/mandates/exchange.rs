//! An agent delegates part of its mandate to a sub-agent: RFC 8693 token exchange at
//! `POST /oauth/token`, answered per RFC 6749 section 5.2.

use super::new_mandate_id;
use crate::clock::millis;
use crate::decision::{Presented, ProofBinding};
use crate::engine::Engine;
use mandate_core::agent::Agent;
use mandate_core::event::NewEvent;
use mandate_core::id::AgentId;
use mandate_core::jose::{check_audience, check_time, Limits, RawToken, TimeRules};
use mandate_core::mandate::{plan_delegation, DelegationError, DelegationRequest, NewId, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

    /// A fault inside the server (RFC 6749 section 5.2 has no better code than `server_error`):
    /// what broke goes to the log, nothing of it to the caller.
    fn server_error(detail: &str) -> Self {
        tracing::error!(detail = %detail, "a fault inside a token exchange");
        Self::new(
            "server_error",
            crate::error::INTERNAL_CODE,
            "the server failed to handle this request; the request id in the response headers finds it in the server's log",
        )
    }

    /// Whether this is a fault inside the server rather than a refusal of the request.
    pub fn is_server_error(&self) -> bool {
        self.error == "server_error"
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

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

impl Engine {
    /// RFC 8693 token exchange: the holder of `subject_token` delegates to the agent of `actor_token`.
    ///
    /// `dpop` is every `DPoP` header of the request: RFC 9449 section 4.3 refuses a request with more
    /// than one (`proof.multiple_headers`), so that no proxy can read one proof while this server
    /// verifies another.
    ///
    /// A refusal before the parent mandate verified names nobody to hold to it: it is counted per
    /// `source` and summarised (see [`crate::refusals`]); every other refusal is an event of its own.
    pub async fn delegate(
        &self,
        form: TokenExchangeForm,
        dpop: &[&str],
        source: Option<std::net::IpAddr>,
    ) -> Result<TokenResponse, OAuthError> {
        let mut context = ExchangeContext::default();
        match self.try_delegate(form, dpop, source, &mut context).await {
            Ok(r) => Ok(r),
            Err(e) if context.chain.is_none() && !e.is_server_error() => {
                self.refusals.count(source, &e.code, millis(self.clock.now()));
                Err(e)
            }
            Err(e) => {
                self.refuse(super::Refused {
                    kind: "mandate.delegation_refused",
                    actor: "system",
                    agent: context.agent.as_deref(),
                    chain: context.chain.as_deref(),
                    code: &e.code,
                    detail: &e.error_description,
                    replay: &context.replay,
                })
                .await;
                Err(e)
            }
        }
    }

    async fn try_delegate(
        &self,
        form: TokenExchangeForm,
        dpop: &[&str],
        source: Option<std::net::IpAddr>,
        context: &mut ExchangeContext,
    ) -> Result<TokenResponse, OAuthError> {
        let invalid = |code: &str, d: String| OAuthError::new("invalid_request", code, d);
        let dpop = match dpop {
            [] => "",
            [one] => one,
            _ => {
                return Err(invalid(
                    "proof.multiple_headers",
                    format!(
                        "the request carries {} `DPoP` headers; RFC 9449 section 4.3 allows exactly one",
                        dpop.len()
                    ),
                ))
            }
        };
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
        // The parent first: its token, its proof of possession (RFC 9449 section 4.3) bound to this
        // request, its revocation and every ancestor's, its chain's agents; the same verification as
        // a decision. Until it verifies, nobody can be held to the request.
        let endpoint = self.settings.mandates.token_endpoint();
        let presented =
            Presented { token: subject, proof: dpop, binding: ProofBinding { htm: "POST", htu: &endpoint }, source };
        let verified = self.verify_presented(&presented).await.map_err(|refusal| {
            if let Some(r) = &refusal.record {
                context.agent = Some(r.agent.to_string());
                context.chain = Some(r.chain_id.clone());
            }
            if refusal.is_internal() {
                return OAuthError::server_error("verifying the subject token");
            }
            let first = refusal.reasons.first();
            let code = first.map_or("token.malformed", |r| r.code.as_str());
            let message = first.map_or_else(String::new, |r| r.message.clone());
            match refusal.step {
                "proof" => OAuthError::new("invalid_request", code, format!("DPoP proof: {message}")),
                "token" => OAuthError::new("invalid_grant", code, format!("subject_token: {message}")),
                _ => OAuthError::new("invalid_grant", code, message),
            }
        })?;
        let parent = verified.stored;
        context.agent = Some(parent.record.agent.to_string());
        context.chain = Some(parent.record.chain_id.clone());
        context.replay.extend(verified.replay_key.clone());
        // A bearer mandate proves nobody's key, so nobody may be trusted to narrow it.
        if !parent.record.binding.is_key_bound() {
            return Err(OAuthError::new(
                "invalid_grant",
                "delegation.unbound_parent",
                "subject_token: an unbound (bearer) mandate cannot be delegated; only a key-bound mandate can",
            ));
        }

        // What the parent asks for is read once the parent is known, so that a malformed request from
        // a verified agent is recorded against its chain.
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

        let now = self.now_secs();

        // The sub-agent's assertion: signed by its registered key, about itself, for this endpoint.
        let child = self.verify_actor(actor, &endpoint, now, context).await?;
        context.agent = Some(child.id.to_string());

        let delegator = verified
            .agents
            .last()
            .cloned()
            .ok_or_else(|| OAuthError::server_error("the parent's chain has no agent"))?;
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
        let (kid, token) = self.sign(&record).map_err(|e| OAuthError::server_error(&format!("signing: {e}")))?;
        let detail = serde_json::json!({
            "parent_id": parent.record.id, "from": delegator.id, "depth": record.depth, "scope": record.scope,
            "expires_at": record.expires_at, "max_calls": record.max_calls, "max_depth": record.max_depth, "kid": kid, "replay": context.replay,
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
            .map_err(|e| OAuthError::server_error(&format!("storing the child mandate: {e}")))?;
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

    /// Verifies a sub-agent's assertion: a JWT whose `iss` and `sub` are the agent's SPIFFE id, signed
    /// by the agent's registered key, for `aud` = the token endpoint, fresh and never seen before.
    ///
    /// Every failure is named `actor.*`, whichever layer found it (decoding, signature, claims,
    /// replay), so that a refusal blames the sub-agent's assertion and not the parent's mandate.
    async fn verify_actor(
        &self,
        token: &str,
        endpoint: &str,
        now: i64,
        context: &mut ExchangeContext,
    ) -> Result<Agent, OAuthError> {
        let bad =
            |code: &str, d: String| OAuthError::new("invalid_request", &actor_code(code), format!("actor_token: {d}"));
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
            .map_err(|e| OAuthError::server_error(&format!("reading agent `{id}`: {e}")))?
            .ok_or_else(|| bad("actor.unknown_agent", format!("agent `{id}` is not registered")))?;
        let verified = raw
            .verify_with_key(agent.public_key_jwk.verifying_key(), None)
            .map_err(|e| bad(e.code(), e.to_string()))?;
        let claims = verified.claims();
        if claims.get("iss").and_then(|v| v.as_str()) != Some(claimed.as_str()) {
            return Err(bad("actor.wrong_issuer", "`iss` must equal `sub`, the agent's SPIFFE id".into()));
        }
        check_audience(claims, endpoint).map_err(|e| bad(e.code(), e.to_string()))?;
        let rules = TimeRules {
            now,
            skew_secs: self.settings.mandates.clock_skew_secs,
            require_nbf: false,
            require_iat: true,
            max_lifetime_secs: Some(120),
        };
        check_time(claims, &rules).map_err(|e| bad(e.code(), e.to_string()))?;
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
        let key = format!("actor:{id}:{jti}");
        let replayed = self.replay.lock().unwrap_or_else(|p| p.into_inner()).check_and_insert(&key, now);
        replayed.map_err(|e| bad(e.code(), e.to_string()))?;
        context.replay.push(key);
        Ok(agent)
    }
}

/// What a refused exchange is recorded against: the agent and chain once known, and the proof and
/// assertion ids it used up.
#[derive(Debug, Default)]
struct ExchangeContext {
    agent: Option<String>,
    chain: Option<String>,
    replay: Vec<String>,
}

/// A reason code of the actor assertion: `actor.` and what follows the failing layer's prefix
/// (`token.bad_signature` and `proof.replayed` become `actor.bad_signature` and `actor.replayed`).
fn actor_code(code: &str) -> String {
    match code.split_once('.') {
        Some((_, rest)) => format!("actor.{rest}"),
        None => format!("actor.{code}"),
    }
}
