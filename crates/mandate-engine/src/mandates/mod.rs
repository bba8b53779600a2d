//! Mandate operations: a human's grant ([`issuance`]), an agent's delegation by RFC 8693 token
//! exchange ([`exchange`]), the verification of what an agent presents ([`verification`]),
//! revocation ([`revocation`]), and the views of a mandate and its chain ([`views`]).
//!
//! Every request for authority is recorded whether it succeeds or not: `mandate.granted` and
//! `mandate.delegated`, or `mandate.grant_refused` and `mandate.delegation_refused` with the reason
//! code. The checks themselves are the core's ([`mandate_core::mandate`]); these modules gather the
//! facts they need (the stored parent, the agents, the revocation set, the verified tokens) and
//! record the outcome.

pub mod exchange;
pub mod issuance;
pub mod revocation;
pub mod verification;
pub mod views;

pub use exchange::{OAuthError, TokenExchangeForm, TokenResponse};
pub use issuance::{ClientHolder, Granted};
pub use views::{chain_tree, human_root, MandateView};

use crate::clock::millis;
use crate::engine::Engine;
use crate::error::Error;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use mandate_core::event::NewEvent;
use mandate_core::jose::SignHeader;
use mandate_core::mandate::{MandateRecord, TokenContext, MANDATE_TYP};
use rand_core::{OsRng, RngCore};

pub(crate) fn new_mandate_id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("mdt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

impl Engine {
    pub(crate) fn token_context(&self) -> TokenContext<'_> {
        let m = &self.settings.mandates;
        TokenContext { issuer: &m.issuer, audience: &m.audience, trust_domain: &self.settings.trust_domain }
    }

    pub(crate) fn sign(&self, record: &MandateRecord) -> Result<(String, String), Error> {
        let (kid, key) = self.keys.signing();
        let token = mandate_core::jose::sign(
            &record.claims(&self.token_context()),
            &key,
            &SignHeader { typ: MANDATE_TYP, kid: &kid },
        )
        .map_err(|e| Error::internal(format!("signing a mandate: {e}")))?;
        Ok((kid, token))
    }

    /// Records a refused request for authority.
    pub(crate) async fn refuse(&self, refused: Refused<'_>) {
        let Refused { kind, actor, agent, chain, code, detail, replay } = refused;
        // `replay`: the proof and assertion ids this request used up, so that a restart remembers them
        // (see `Engine::load_replay_window`).
        let detail = if replay.is_empty() {
            serde_json::json!({"code": code, "detail": detail})
        } else {
            serde_json::json!({"code": code, "detail": detail, "replay": replay})
        };
        let mut event = NewEvent::new(kind, actor, millis(self.clock.now()), &detail);
        event.agent = agent.map(str::to_owned);
        event.chain_id = chain.map(str::to_owned);
        event.decision = Some("refused".to_owned());
        // The refusal is the answer; failing to record it must not turn it into a 500, but it is logged.
        if let Err(e) = self.store.append_event(event).await {
            tracing::error!(error = %e, kind, "could not record a refused request for authority");
        }
        self.metrics.event(kind);
    }
}

/// A refused request for authority, as its event records it.
pub(crate) struct Refused<'a> {
    /// `mandate.grant_refused` or `mandate.delegation_refused`.
    pub(crate) kind: &'a str,
    /// Who asked.
    pub(crate) actor: &'a str,
    /// The agent concerned, once known.
    pub(crate) agent: Option<&'a str>,
    /// The chain concerned, once known.
    pub(crate) chain: Option<&'a str>,
    /// The reason code.
    pub(crate) code: &'a str,
    /// What was wrong.
    pub(crate) detail: &'a str,
    /// The proof and assertion ids the request used up.
    pub(crate) replay: &'a [String],
}
