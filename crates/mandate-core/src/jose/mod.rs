//! A small, strict JOSE layer for Mandate: JWS compact serialization with EdDSA (Ed25519) only,
//! JWT claims checks, DPoP-style proofs of possession and a bounded replay cache.
//!
//! Goals: refuse anything ambiguous or unexpected with a specific, stable reason code; make the
//! verified state a type ("parse, don't validate"): text becomes a [`RawToken`] through
//! [`RawToken::decode`], and only [`RawToken::verify`] or [`RawToken::verify_with_key`] yield a
//! [`VerifiedToken`]; proofs go straight from text to a [`VerifiedProof`] through [`verify_proof`].
//!
//! Non-goals: other algorithms (no `none`, HMAC, RSA or ECDSA; RFC 8725 section 3.1 asks verifiers
//! to allow only what they need), JWE, the JSON serialization, `crit` extensions, fetching keys
//! (`jku`, `x5u`), trusting keys embedded in a token's header. Keys come from the caller through
//! [`KeyResolver`], so rotation is the caller's store's business.
//!
//! Like the rest of the crate this module does no I/O: `now` and keys are arguments, and it reads
//! no clock and no random number generator (see [`replay`] for what that means for its map).
//!
//! Layout: [`jws`] decodes, verifies and signs; `json` (private) is the strict JSON parser
//! behind it (no duplicate names, bounded depth); [`claims`] checks `exp`, `nbf`, `iat`, `iss` and
//! `aud`; [`proof`] and [`htu`] verify and make proofs; [`replay`] remembers proof ids.
//!
//! Typical use for a mandate:
//!
//! ```
//! # use mandate_core::jose::*;
//! # use ed25519_dalek::SigningKey;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::from_bytes(&[1; 32]);
//! let claims = serde_json::json!({"iss": "https://mandate.example", "exp": 1_000_900, "iat": 1_000_000});
//! let token = sign(&claims, &key, &SignHeader { typ: "mandate+jwt", kid: "k1" })?;
//!
//! let keys = |kid: &str| (kid == "k1").then(|| key.verifying_key());
//! let verified = RawToken::decode(&token, &Limits::TOKEN)?.verify(&keys, Some("mandate+jwt"))?;
//! let rules = TimeRules {
//!     now: 1_000_100,
//!     skew_secs: 30,
//!     require_nbf: false,
//!     require_iat: true,
//!     max_lifetime_secs: Some(900),
//! };
//! check_time(verified.claims(), &rules)?;
//! check_issuer(verified.claims(), "https://mandate.example")?;
//! # Ok(())
//! # }
//! ```

pub mod claims;
pub mod htu;
pub(crate) mod json;
pub mod jws;
pub mod proof;
pub mod replay;

pub use claims::{check_audience, check_issuer, check_time, ClaimsError, TimeClaims, TimeRules};
pub use htu::{Htu, HtuError};
pub use jws::{
    sign, Base64Fault, DecodeError, KeyResolver, Limits, Part, RawToken, SignError, SignHeader, TokenError,
    VerifiedToken, VerifyError, ALG_EDDSA,
};
pub use proof::{
    access_token_hash, claimed_thumbprint, sign_proof, verify_proof, ProofClaims, ProofError, ProofExpectations,
    VerifiedProof, DPOP_TYP, MAX_JTI_BYTES,
};
pub use replay::{ReplayCache, ReplayError};

#[cfg(test)]
mod tests;
