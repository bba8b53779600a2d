//! What an agent presents, verified: the one [`Engine::verify_presented`] that decisions, token
//! exchange and the gateway share.
//!
//! In order, each step stopping the verification at its first failure (after every reason of that
//! step): the token (signature by a published key, EdDSA only, `typ`, time, `iss`, `aud`, the stored
//! record it names, its subject); the proof of possession (RFC 9449 section 4.3) by the key of
//! `cnf.jkt`, bound to the request the caller expects; revocation of the mandate or any ancestor, in
//! memory and in the store; every agent of the chain registered, active and, for the holder, still
//! holding the key the mandate is bound to; and the proof's `jti` unused.
//!
//! Nothing here trusts the token for the chain: the token names a mandate, and that mandate's stored
//! record, its stored ancestors (read on every call, so that a revocation stored behind this node's
//! back is seen) and the registry's agents are what is checked. The token cache remembers only what
//! cannot change (the record as issued and the key that signed it); revocation is never cached.

use crate::decision::{Presented, Reason};
use crate::engine::{CachedToken, Engine, TokenCache};
use mandate_core::agent::{Agent, AgentState};
use mandate_core::jose::{
    check_audience, check_issuer, check_time, verify_proof, Htu, Limits, ProofExpectations, RawToken, TimeRules,
    VerifiedProof,
};
use mandate_core::mandate::{Binding, MandateRecord, MANDATE_TYP};
use mandate_store::StoredMandate;

/// A presented mandate that passed every check of [`Engine::verify_presented`].
#[derive(Debug, Clone)]
pub struct VerifiedPresentation {
    /// The stored mandate the token names (its `revocation` as read now, when read from the store).
    pub stored: StoredMandate,
    /// Every mandate of its lineage, root first, ending with this one, as stored.
    pub chain: Vec<MandateRecord>,
    /// The agents of the chain, in order: the holder last.
    pub agents: Vec<Agent>,
    /// The verified proof; `None` for a bearer mandate ([`Binding::Bearer`]), which carries none.
    pub proof: Option<VerifiedProof>,
    /// The replay cache's key for the proof, now used up: what the request's event records so that
    /// a restart remembers it (`None` with no proof).
    pub replay_key: Option<String>,
}

/// Why a presentation was refused: the step that failed, its reasons, and the mandate, when the
/// token named a known one (so that the refusal is recorded against it).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `token`, `proof`, `revocation` or `chain`.
    pub step: &'static str,
    /// Every reason of that step.
    pub reasons: Vec<Reason>,
    /// The mandate the token named, once it verified.
    pub record: Option<MandateRecord>,
}

impl Refusal {
    fn new(step: &'static str, code: &str, message: String, hop: Option<u8>, record: Option<&MandateRecord>) -> Self {
        Self { step, reasons: vec![Reason { code: code.to_owned(), message, hop }], record: record.cloned() }
    }

    /// Whether the refusal is the engine's fault rather than the presenter's.
    pub fn is_internal(&self) -> bool {
        self.reasons.iter().any(|r| r.code == crate::error::INTERNAL_CODE || r.code == "internal.node_behind")
    }
}

/// The reason given to a caller for a fault inside; what broke goes to the log.
pub(crate) fn internal_reason(detail: &str, hop: Option<u8>) -> Reason {
    tracing::error!(detail = %detail, "a fault inside a decision; denying");
    Reason {
        code: crate::error::INTERNAL_CODE.to_owned(),
        message: "a fault inside the server; the answer is a refusal (see the server's log)".to_owned(),
        hop,
    }
}

impl Engine {
    /// Verifies a presented mandate and its proof, bound to `presented.binding`, and records the
    /// proof's `jti` as used. See the module documentation for the steps.
    pub async fn verify_presented(&self, presented: &Presented<'_>) -> Result<VerifiedPresentation, Refusal> {
        // A node that may have missed a revocation made elsewhere honours no presentation.
        if let Err(behind) = self.current() {
            return Err(Refusal::new("feed", "internal.node_behind", behind.message, None, None));
        }
        let now = self.now_secs();
        let m = &self.settings.mandates;

        // The token.
        let stored = self
            .verify_token(presented.token)
            .await
            .map_err(|(code, message)| Refusal::new("token", &code, message, None, None))?;
        let record = &stored.record;
        let refuse = |step, code: &str, message: String, hop| Refusal::new(step, code, message, hop, Some(record));

        // A mandate granted for one protected resource (RFC 8707) is honoured only there: the front
        // door's URL ends with the path the resource names under this issuer.
        if let Some(resource) = &record.resource {
            let path = resource.strip_prefix(m.issuer.trim_end_matches('/')).unwrap_or(resource);
            if path.is_empty() || !presented.binding.htu.ends_with(path) {
                return Err(refuse(
                    "token",
                    "token.wrong_resource",
                    format!(
                        "this mandate was granted for `{resource}` only (RFC 8707), not for `{}`",
                        presented.binding.htu
                    ),
                    Some(record.depth),
                ));
            }
        }

        // Proof of possession by the key the mandate is bound to. The agent's registered key, when
        // in memory, spares decompressing the proof's key again. A bearer mandate carries no proof,
        // and is honoured only while the organisation allows unbound mandates.
        let proof = match record.binding {
            Binding::Bearer => {
                if !m.allow_unbound {
                    return Err(refuse(
                        "proof",
                        "mandate.unbound_not_allowed",
                        "this mandate is not bound to a key, and this organisation no longer accepts unbound mandates (`[oauth] allow_unbound`)".into(),
                        Some(record.depth),
                    ));
                }
                if !presented.proof.is_empty() {
                    return Err(refuse(
                        "proof",
                        "proof.not_bound",
                        "this mandate is a bearer token bound to no key; send it as `Authorization: Bearer` without a DPoP proof".into(),
                        Some(record.depth),
                    ));
                }
                None
            }
            Binding::AgentKey | Binding::ClientKey => {
                let htu = Htu::parse(presented.binding.htu)
                    .map_err(|e| refuse("proof", e.code(), e.to_string(), Some(record.depth)))?;
                let known_key = match record.binding {
                    Binding::AgentKey => self.remembered_agent_key(&record.agent),
                    _ => None,
                };
                let proof = verify_proof(
                    presented.proof,
                    &ProofExpectations {
                        htm: presented.binding.htm,
                        htu: &htu,
                        access_token: Some(presented.token),
                        expected_jkt: &record.key_thumbprint,
                        now,
                        max_age_secs: m.proof_max_age_secs,
                        skew_secs: m.clock_skew_secs,
                        known_key: known_key.as_ref(),
                    },
                )
                .map_err(|e| refuse("proof", e.code(), e.to_string(), Some(record.depth)))?;
                Some(proof)
            }
        };

        // Revocation: this mandate or any ancestor, in memory (where every revocation is put before
        // it is committed) and as stored (this mandate when just read, every ancestor always).
        let hop_of = |id: &str| -> u8 {
            match record.lineage.iter().position(|a| a == id) {
                Some(i) => u8::try_from(i + 1).unwrap_or(u8::MAX),
                None => record.depth,
            }
        };
        if let Some(revoked) = self.revocations.revoked_in(record) {
            return Err(refuse(
                "revocation",
                "mandate.revoked",
                format!("mandate `{revoked}` was revoked"),
                Some(hop_of(&revoked)),
            ));
        }
        if stored.revocation.is_some() {
            return Err(refuse(
                "revocation",
                "mandate.revoked",
                format!("mandate `{}` was revoked", record.id),
                Some(record.depth),
            ));
        }
        let mut chain = Vec::with_capacity(record.lineage.len() + 1);
        let mut reasons = Vec::new();
        for id in &record.lineage {
            match self.store.mandate(id).await {
                Ok(Some(a)) if a.revocation.is_some() => reasons.push(Reason {
                    code: "mandate.revoked".into(),
                    message: format!("mandate `{id}` was revoked"),
                    hop: Some(hop_of(id)),
                }),
                Ok(Some(a)) => chain.push(a.record),
                Ok(None) => reasons.push(Reason {
                    code: "chain.mandate_unknown".into(),
                    message: format!("ancestor `{id}` is not a stored mandate"),
                    hop: Some(hop_of(id)),
                }),
                Err(e) => reasons.push(internal_reason(&format!("reading mandate `{id}`: {e}"), Some(hop_of(id)))),
            }
        }
        if !reasons.is_empty() {
            return Err(Refusal { step: "revocation", reasons, record: Some(record.clone()) });
        }
        chain.push(record.clone());

        // Every agent of the chain: registered, active, and the holder still on the mandate's key.
        let mut agents = Vec::with_capacity(record.chain_agents.len());
        for (i, id) in record.chain_agents.iter().enumerate() {
            let hop = Some(u8::try_from(i + 1).unwrap_or(u8::MAX));
            match self.cached_agent(id).await {
                Ok(Some(a)) => {
                    if a.state != AgentState::Active {
                        reasons.push(Reason {
                            code: "chain.agent_not_active".into(),
                            message: format!("agent `{id}` is {}", a.state.as_str()),
                            hop,
                        });
                    }
                    if i + 1 == record.chain_agents.len()
                        && record.binding == Binding::AgentKey
                        && a.public_key_jwk.thumbprint() != record.key_thumbprint
                    {
                        reasons.push(Reason {
                            code: "chain.key_replaced".into(),
                            message: format!("agent `{id}`'s key was replaced after this mandate was issued"),
                            hop,
                        });
                    }
                    agents.push(a);
                }
                Ok(None) => reasons.push(Reason {
                    code: "chain.agent_unknown".into(),
                    message: format!("agent `{id}` is not registered"),
                    hop,
                }),
                Err(e) => reasons.push(internal_reason(&format!("reading agent `{id}`: {e}"), hop)),
            }
        }
        if !reasons.is_empty() || agents.is_empty() {
            if agents.is_empty() && reasons.is_empty() {
                reasons.push(internal_reason("the mandate's chain names no agent", None));
            }
            return Err(Refusal { step: "chain", reasons, record: Some(record.clone()) });
        }

        // The proof's id is remembered only now, once the mandate and its chain are known to be live:
        // a revoked or suspended agent cannot fill the replay cache and lock everyone else out.
        let replay_key = proof.as_ref().map(|p| format!("dpop:{}:{}", p.jkt(), p.jti()));
        if let Some(key) = &replay_key {
            let replayed = self.replay.lock().unwrap_or_else(|p| p.into_inner()).check_and_insert(key, now);
            if let Err(e) = replayed {
                return Err(refuse("proof", e.code(), e.to_string(), Some(record.depth)));
            }
        }
        Ok(VerifiedPresentation { stored, chain, agents, proof, replay_key })
    }

    /// Verifies the DPoP proof a client sends to the token endpoint to get a key-bound mandate (RFC
    /// 9449 section 5): no access token yet, so the key is the proof's own; bound to `POST` at
    /// `htu`, fresh, and used once. Returns the key's RFC 7638 thumbprint and the replay key.
    pub fn verify_client_proof(&self, proof: &str, htu: &str) -> Result<(String, String), (String, String)> {
        let now = self.now_secs();
        let m = &self.settings.mandates;
        let fail = |code: &str, msg: String| (code.to_owned(), msg);
        let htu = Htu::parse(htu).map_err(|e| fail(e.code(), e.to_string()))?;
        let jkt = mandate_core::jose::claimed_thumbprint(proof).ok_or_else(|| {
            fail("proof.malformed", "the DPoP proof is not a JWS with an Ed25519 `jwk` header".into())
        })?;
        let verified = verify_proof(
            proof,
            &ProofExpectations {
                htm: "POST",
                htu: &htu,
                access_token: None,
                expected_jkt: &jkt,
                now,
                max_age_secs: m.proof_max_age_secs,
                skew_secs: m.clock_skew_secs,
                known_key: None,
            },
        )
        .map_err(|e| fail(e.code(), e.to_string()))?;
        let replay_key = format!("dpop:{}:{}", verified.jkt(), verified.jti());
        self.replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check_and_insert(&replay_key, now)
            .map_err(|e| fail(e.code(), e.to_string()))?;
        Ok((jkt, replay_key))
    }

    /// Verifies a mandate token and returns its stored record. Checks the signature (a published
    /// `kid`, EdDSA only), `typ`, `exp`/`nbf`/`iat` with skew, `iss`, `aud`, that the record exists
    /// for the token's subject, and the mandate's exact expiry. Revocation is not checked here: a
    /// record from the cache carries none (`revocation: None`); one read from the store carries the
    /// stored revocation as read now.
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
        let digest = TokenCache::digest(token);
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
        let stored = match self.store.mandate(jti).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(fail("mandate.unknown", format!("no mandate `{jti}` was issued here"))),
            Err(e) => {
                let r = internal_reason(&format!("reading mandate `{jti}`: {e}"), None);
                return Err((r.code, r.message));
            }
        };
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
        // What is cached cannot change: the record as issued and its key. Never the revocation, nor
        // the calls used.
        let immutable = StoredMandate { revocation: None, used_calls: 0, ..stored.clone() };
        self.tokens.insert(digest, CachedToken { stored: immutable, kid, time_claims }, exp, now);
        expiry_exact(stored, now)
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
