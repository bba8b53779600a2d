//! DPoP-style proofs of possession (RFC 9449): verifying that a request was signed by the key a
//! mandate is bound to (`cnf.jkt`), and making such proofs.
//!
//! [`verify_proof`] applies the checks of RFC 9449 section 4.3 except two that need state or a
//! policy we do not have here: replay (the server runs the `jti` through a
//! [`super::replay::ReplayCache`]) and server-provided nonces (not used). The order is: syntax and
//! algorithm, `typ`, the `jwk` header, the signature under that key, the key's thumbprint against
//! the mandate's, then the claims.

use super::claims::integer_claim;
use super::htu::Htu;
use super::jws::{check_typ, sign_with_header, DecodeError, Limits, RawToken, SignError, ALG_EDDSA};
use crate::jwk::{Ed25519PublicJwk, JwkError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `typ` of a proof (RFC 9449 section 4.2).
pub const DPOP_TYP: &str = "dpop+jwt";

/// The longest accepted `jti`, in bytes. RFC 9449 asks for at least 96 bits of randomness; 128
/// bytes leaves room for any sane encoding while bounding what we hash and log.
pub const MAX_JTI_BYTES: usize = 128;

/// What the server expects of the proof that came with one request.
///
/// There is deliberately no `Default`: the method, URL, key and clock are always the request's.
#[derive(Debug, Clone, Copy)]
pub struct ProofExpectations<'a> {
    /// The request's HTTP method, compared case-sensitively (RFC 9110 section 9.1).
    pub htm: &'a str,
    /// The request's URI as the client addressed it, normalised.
    pub htu: &'a Htu,
    /// The access token (the mandate) presented with the proof, if any; its hash must be in `ath`.
    pub access_token: Option<&'a str>,
    /// The thumbprint the proof's key must have: the mandate's `cnf.jkt` (RFC 9449 section 6.1).
    pub expected_jkt: &'a str,
    /// The current time, unix seconds.
    pub now: i64,
    /// How old a proof may be: `iat` must be at least `now - max_age_secs`.
    pub max_age_secs: u32,
    /// How far ahead of `now` a proof's `iat` may be, for clock skew.
    pub skew_secs: u32,
    /// A key the caller already holds and validated, most likely the proof's (the agent's registered
    /// key): when the proof's `jwk` is this key, its point is not decompressed again. It changes no
    /// outcome: the proof is checked against its own `jwk` and `expected_jkt` either way.
    pub known_key: Option<&'a Ed25519PublicJwk>,
}

/// A proof that passed [`verify_proof`]. Only that function builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    jti: String,
    iat: i64,
    jkt: String,
}

impl VerifiedProof {
    /// The proof's unique id, to feed to the replay cache and to log.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// When the client made the proof, unix seconds.
    pub fn iat(&self) -> i64 {
        self.iat
    }

    /// The RFC 7638 thumbprint of the key that signed it.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The request carried no proof (an empty string counts as none).
    #[error("a proof of possession is required")]
    Missing,
    /// The proof failed a syntax, size or algorithm rule (RFC 9449 section 4.3, checks 2 and 5).
    #[error("the proof is refused: {0}")]
    Decode(DecodeError),
    /// `typ` is not `dpop+jwt` (RFC 9449 section 4.3, check 4).
    #[error("the proof type `{}` is not `dpop+jwt`", .0.as_deref().unwrap_or("<none>"))]
    WrongTyp(Option<String>),
    /// The header has no `jwk` (RFC 9449 section 4.2).
    #[error("the proof header has no `jwk`")]
    MissingJwk,
    /// The `jwk` header is not a public Ed25519 key (RFC 9449 section 4.3, check 7).
    #[error("the proof key is refused: {0}")]
    BadJwk(JwkError),
    /// The signature does not verify under the `jwk` header (RFC 9449 section 4.3, check 6).
    #[error("the proof signature does not verify")]
    BadSignature,
    /// The proof's key is not the one the mandate is bound to (RFC 9449 section 4.3, check 13).
    #[error("the proof is signed by a key the mandate is not bound to")]
    KeyMismatch,
    /// A required claim is absent (RFC 9449 section 4.3, check 3).
    #[error("the proof claim `{0}` is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unacceptable value.
    #[error("the proof claim `{0}` has the wrong type or value")]
    InvalidClaim(&'static str),
    /// `htm` is not the request's method (RFC 9449 section 4.3, check 8).
    #[error("the proof is for method `{found}`, not `{expected}`")]
    HtmMismatch {
        /// The request's method.
        expected: String,
        /// The proof's `htm`.
        found: String,
    },
    /// `htu` is not the request's URI (RFC 9449 section 4.3, check 9).
    #[error("the proof is for `{found}`, not `{expected}`")]
    HtuMismatch {
        /// The request's URI, normalised.
        expected: String,
        /// The proof's `htu`, as sent.
        found: String,
    },
    /// `iat` is older than the accepted age (RFC 9449 section 4.3, check 11).
    #[error("the proof was made at `{iat}`, too long ago (now {now})")]
    Stale {
        /// The proof's `iat`.
        iat: i64,
        /// The time of the check.
        now: i64,
    },
    /// `iat` is further in the future than the skew allows (RFC 9449 section 4.3, check 11).
    #[error("the proof claims to be made at `{iat}`, in the future (now {now})")]
    IssuedInFuture {
        /// The proof's `iat`.
        iat: i64,
        /// The time of the check.
        now: i64,
    },
    /// `ath` is not the hash of the presented access token (RFC 9449 section 4.3, check 12).
    #[error("the proof is bound to another access token")]
    AthMismatch,
}

impl ProofError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ProofError::Missing => "proof.missing",
            ProofError::Decode(error) => match error {
                DecodeError::TooLarge { .. } => "proof.too_large",
                DecodeError::PartCount(_)
                | DecodeError::Json { .. }
                | DecodeError::NotAnObject(_)
                | DecodeError::MissingHeader(_)
                | DecodeError::InvalidHeader(_) => "proof.malformed",
                DecodeError::Base64 { .. } => "proof.bad_encoding",
                DecodeError::TooDeep { .. } => "proof.too_deep",
                DecodeError::DuplicateMember { .. } => "proof.duplicate_claim",
                DecodeError::AlgNotAllowed(_) => "proof.alg_not_allowed",
                DecodeError::CritNotSupported => "proof.crit_not_supported",
                DecodeError::SignatureLength(_) => "proof.bad_signature",
            },
            ProofError::WrongTyp(_) => "proof.wrong_typ",
            ProofError::MissingJwk => "proof.missing_jwk",
            ProofError::BadJwk(JwkError::PrivateKeyMaterial) => "proof.private_jwk",
            ProofError::BadJwk(_) => "proof.bad_jwk",
            ProofError::BadSignature => "proof.bad_signature",
            ProofError::KeyMismatch => "proof.key_mismatch",
            ProofError::MissingClaim(_) => "proof.missing_claim",
            ProofError::InvalidClaim(_) => "proof.invalid_claim",
            ProofError::HtmMismatch { .. } => "proof.htm_mismatch",
            ProofError::HtuMismatch { .. } => "proof.htu_mismatch",
            ProofError::Stale { .. } => "proof.stale",
            ProofError::IssuedInFuture { .. } => "proof.issued_in_future",
            ProofError::AthMismatch => "proof.ath_mismatch",
        }
    }
}

/// Verifies a proof against what the request and its mandate say it must be.
pub fn verify_proof(proof: &str, expected: &ProofExpectations<'_>) -> Result<VerifiedProof, ProofError> {
    if proof.is_empty() {
        return Err(ProofError::Missing);
    }
    let raw = RawToken::decode(proof, &Limits::PROOF).map_err(ProofError::Decode)?;
    check_typ(raw.header(), Some(DPOP_TYP))
        .map_err(|_| ProofError::WrongTyp(raw.header().get("typ").and_then(Value::as_str).map(str::to_owned)))?;
    let jwk = raw.header().get("jwk").ok_or(ProofError::MissingJwk)?;
    // RFC 9449 section 4.3 check 7: `from_json` refuses private material (`d`) and any key that is
    // not a valid, non-weak Ed25519 point.
    let jwk = Ed25519PublicJwk::from_json_known(jwk, expected.known_key).map_err(ProofError::BadJwk)?;
    let verified = raw.verify_with_key(jwk.verifying_key(), None).map_err(|_| ProofError::BadSignature)?;
    let jkt = jwk.thumbprint();
    if jkt != expected.expected_jkt {
        return Err(ProofError::KeyMismatch);
    }
    let claims = verified.claims();

    // RFC 9449 section 4.3 check 3: every required claim present and well typed, before comparing.
    let jti = string_claim(claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(ProofError::InvalidClaim("jti"));
    }
    let htm = string_claim(claims, "htm")?;
    let htu = string_claim(claims, "htu")?;
    let iat = integer_claim(claims, "iat")
        .map_err(|_| ProofError::InvalidClaim("iat"))?
        .ok_or(ProofError::MissingClaim("iat"))?;

    if htm != expected.htm {
        return Err(ProofError::HtmMismatch { expected: expected.htm.to_owned(), found: htm.to_owned() });
    }
    let normalised = Htu::parse(htu).map_err(|_| ProofError::InvalidClaim("htu"))?;
    if normalised != *expected.htu {
        return Err(ProofError::HtuMismatch { expected: expected.htu.to_string(), found: htu.to_owned() });
    }
    if iat < expected.now.saturating_sub(i64::from(expected.max_age_secs)) {
        return Err(ProofError::Stale { iat, now: expected.now });
    }
    if iat > expected.now.saturating_add(i64::from(expected.skew_secs)) {
        return Err(ProofError::IssuedInFuture { iat, now: expected.now });
    }
    // RFC 9449 section 4.3 check 12. Without an access token, an `ath` is ignored, as the RFC
    // defines no check for it.
    if let Some(token) = expected.access_token {
        match claims.get("ath") {
            None => return Err(ProofError::MissingClaim("ath")),
            Some(Value::String(ath)) if *ath == access_token_hash(token) => {}
            Some(Value::String(_)) => return Err(ProofError::AthMismatch),
            Some(_) => return Err(ProofError::InvalidClaim("ath")),
        }
    }
    Ok(VerifiedProof { jti: jti.to_owned(), iat, jkt })
}

/// The claims of a proof to make. The caller supplies `jti` (random, at least 96 bits) and `iat`:
/// this crate reads neither a random number generator nor a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofClaims<'a> {
    /// A unique id for this proof.
    pub jti: &'a str,
    /// The HTTP method of the request.
    pub htm: &'a str,
    /// The URI of the request, without query and fragment.
    pub htu: &'a str,
    /// The current time, unix seconds.
    pub iat: i64,
    /// The access token sent with the request, if any; its hash goes into `ath`.
    pub access_token: Option<&'a str>,
}

/// Makes a proof: header `{"typ":"dpop+jwt","alg":"EdDSA","jwk":<public key>}`, signed by `key`.
pub fn sign_proof(claims: &ProofClaims<'_>, key: &SigningKey) -> Result<String, SignError> {
    #[derive(Serialize)]
    struct Header {
        typ: &'static str,
        alg: &'static str,
        jwk: Value,
    }
    #[derive(Serialize)]
    struct Claims<'a> {
        jti: &'a str,
        htm: &'a str,
        htu: &'a str,
        iat: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        ath: Option<String>,
    }
    let jwk = Ed25519PublicJwk::from_verifying_key(key.verifying_key()).to_json();
    let header = Header { typ: DPOP_TYP, alg: ALG_EDDSA, jwk };
    let body = Claims {
        jti: claims.jti,
        htm: claims.htm,
        htu: claims.htu,
        iat: claims.iat,
        ath: claims.access_token.map(access_token_hash),
    };
    sign_with_header(&header, &body, key)
}

/// `ath`: base64url of the SHA-256 of the access token's ASCII bytes (RFC 9449 section 4.2).
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

fn string_claim<'c>(claims: &'c Map<String, Value>, name: &'static str) -> Result<&'c str, ProofError> {
    match claims.get(name) {
        None => Err(ProofError::MissingClaim(name)),
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(ProofError::InvalidClaim(name)),
    }
}

/// The thumbprint of the key a proof's header names, without verifying anything: what an
/// unregistered client would register, for discovery. Never a basis for trust.
pub fn claimed_thumbprint(proof: &str) -> Option<String> {
    let raw = RawToken::decode(proof, &Limits::PROOF).ok()?;
    let jwk = raw.header().get("jwk")?;
    Ed25519PublicJwk::from_json_known(jwk, None).ok().map(|k| k.thumbprint())
}
