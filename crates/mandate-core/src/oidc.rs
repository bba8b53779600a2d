//! OpenID Connect ID tokens from the organisation's IdP: the issuer's keys, and verifying a token into
//! the human it names.
//!
//! A human proves who they are to Mandate with an ID token (OIDC Core 1.0 section 2) their IdP issued
//! for Mandate's client id. [`IssuerKeys::from_jwks_json`] turns the issuer's JWKS (RFC 7517 section
//! 5) into the keys we trust; [`verify_id_token`] checks one token against them and the configured
//! [`OidcSettings`], and only it builds an [`OidcIdentity`].
//!
//! Goals: the checks of OIDC Core section 3.1.3.7 that apply to a token presented to us (issuer,
//! audience and `azp`, signature, `exp`, `iat`, `auth_time` with `max_age`), the same strict compact
//! decoding as our own tokens (size, canonical base64url, no duplicate members, bounded nesting:
//! see [`crate::jose`]), and a username and groups that are refused, never repaired, when they do not
//! fit our names ([`HumanId`], [`Group`]).
//!
//! Algorithms: exactly `RS256` (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 section 3.3, the one every
//! OIDC provider must support) over an RSA key of at least 2048 bits, and `EdDSA` over an Ed25519 key
//! (verified strictly). The header's `alg` must fit the type of the key its `kid` selects, so an
//! `HS256` token keyed with the RSA public key, or an `RS256` header over an Ed25519 key, is refused
//! (RFC 8725 sections 2.1 and 3.1).
//!
//! Non-goals: fetching the discovery document or the JWKS (the caller does the I/O and hands us the
//! parsed JSON; this module reads no clock either), `nonce` (we did not start the login, so there is
//! no nonce to compare), `at_hash` and `c_hash` (no access token or code travels with the ID token),
//! encrypted ID tokens, `x5c` certificate chains, keys in the token's header (`jwk`, `jku`, `x5u`).

use crate::id::{Group, HumanId};
use crate::jose::claims::{check_audience, check_issuer, check_time, integer_claim, ClaimsError, TimeRules};
use crate::jose::jws::{decode_base64, decode_json, DecodeError, Limits, Part, ALG_EDDSA};
use crate::jwk::Ed25519PublicJwk;
use ed25519_dalek::{Signature, VerifyingKey};
use rsa::{BigUint, Pkcs1v15Sign, RsaPublicKey};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// The JWS algorithm RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 section 3.3).
pub const ALG_RS256: &str = "RS256";

/// The smallest RSA modulus we trust, in bits (RFC 7518 section 3.3 requires 2048 or more).
pub const MIN_RSA_BITS: usize = 2048;

/// Bounds applied to an ID token before any signature work: 16 KiB (IdPs put groups and profile
/// claims in it, so it is larger than a mandate), nesting 8 (room for claims such as Keycloak's
/// `resource_access.<client>.roles`).
pub const ID_TOKEN_LIMITS: Limits = Limits { max_bytes: 16 * 1024, max_depth: 8 };

/// What a verified ID token says about the human who presented it.
///
/// Only [`verify_id_token`] builds one (`#[non_exhaustive]` keeps other crates from writing the
/// struct out), so holding one means every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OidcIdentity {
    /// The human, from the configured username claim.
    pub human: HumanId,
    /// The human's IdP groups, from the configured groups claim; sorted, without duplicates.
    pub groups: Vec<Group>,
    /// The IdP's stable subject identifier (`sub`), for audit: usernames can be reassigned.
    pub subject: String,
    /// The token's `exp`, unix seconds: the identity should not be trusted after it.
    pub expires_at: i64,
    /// The token's `nonce` (OIDC Core section 3.1.3.7 step 11), for a relying party that sent one
    /// to compare; `None` when the token has none.
    pub nonce: Option<String>,
}

/// How ID tokens from one issuer are checked.
///
/// There is deliberately no `Default`: the issuer and audience are always the caller's to state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The issuer identifier, compared exactly with `iss` (OIDC Core section 3.1.3.7 step 2).
    pub issuer: String,
    /// Mandate's client id at the IdP; `aud` must contain it (step 3).
    pub audience: String,
    /// The claim holding the human id, `email` by default. It must already be a lower-case
    /// `name@domain`: it is never case-folded.
    pub username_claim: String,
    /// The claim holding the human's groups, `groups` by default; absent means no groups.
    pub groups_claim: String,
    /// Tolerated disagreement between the IdP's clock and ours, in seconds.
    pub skew_secs: u32,
    /// When set, refuse tokens whose `auth_time` is more than this many seconds ago (OIDC Core
    /// section 3.1.2.1 `max_age`); `auth_time` is then required.
    pub max_age_secs: Option<u32>,
}

impl OidcSettings {
    /// The default skew: one minute.
    pub const DEFAULT_SKEW_SECS: u32 = 60;

    /// Settings for `issuer` and `audience` with the defaults: username from `email`, groups from
    /// `groups`, a skew of [`Self::DEFAULT_SKEW_SECS`], no `max_age`.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            username_claim: "email".to_owned(),
            groups_claim: "groups".to_owned(),
            skew_secs: Self::DEFAULT_SKEW_SECS,
            max_age_secs: None,
        }
    }
}

/// A key of the issuer's JWKS that we did not keep, and why; for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's `kid`, if it had a string one.
    pub kid: Option<String>,
    /// Why it is not used, lower-case, no final period.
    pub reason: String,
}

/// The issuer's signature verification keys, from its JWKS.
///
/// Only [`IssuerKeys::from_jwks_json`] builds one, so it always holds at least one usable key, and
/// every key has a distinct `kid` whenever there are several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKeys {
    keys: Vec<IssuerKey>,
    skipped: Vec<SkippedKey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct IssuerKey {
    kid: Option<String>,
    material: KeyMaterial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMaterial {
    Rsa(RsaPublicKey),
    Ed25519(VerifyingKey),
}

impl KeyMaterial {
    /// The one JWS algorithm this key verifies.
    fn alg(&self) -> &'static str {
        match self {
            KeyMaterial::Rsa(_) => ALG_RS256,
            KeyMaterial::Ed25519(_) => ALG_EDDSA,
        }
    }
}

/// Members that only a private JWK has (RFC 7518 sections 6.3.2 and 6.4, RFC 8037 section 2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl IssuerKeys {
    /// Parses a JWKS document, `{"keys": [...]}`, keeping the keys usable to verify `RS256` or
    /// `EdDSA` signatures.
    ///
    /// A key is skipped (see [`IssuerKeys::skipped`]), not fatal, when it is meant for encryption
    /// (`use` other than `sig`, `key_ops` without `verify`), names another algorithm, carries private
    /// members, has an unsupported `kty` or `crv`, an RSA modulus under [`MIN_RSA_BITS`] bits, or
    /// members that do not decode. The document is refused when it is not a JWKS, when no key is
    /// usable, when two usable keys share a `kid`, or when one of several usable keys has no `kid`.
    pub fn from_jwks_json(jwks: &Value) -> Result<Self, OidcError> {
        let entries = jwks
            .as_object()
            .and_then(|object| object.get("keys"))
            .and_then(Value::as_array)
            .ok_or_else(|| OidcError::JwksMalformed("expected an object with a `keys` array".to_owned()))?;
        let mut keys: Vec<IssuerKey> = Vec::new();
        let mut skipped = Vec::new();
        for entry in entries {
            let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
            match parse_key(entry) {
                Ok(material) => {
                    if let Some(kid) = &kid {
                        if keys.iter().any(|key| key.kid.as_ref() == Some(kid)) {
                            return Err(OidcError::DuplicateKid(kid.clone()));
                        }
                    }
                    keys.push(IssuerKey { kid, material });
                }
                Err(reason) => skipped.push(SkippedKey { kid, reason }),
            }
        }
        if keys.is_empty() {
            return Err(OidcError::NoUsableKey { skipped: skipped.len() });
        }
        if keys.len() > 1 && keys.iter().any(|key| key.kid.is_none()) {
            return Err(OidcError::KidRequired);
        }
        Ok(Self { keys, skipped })
    }

    /// How many usable keys there are; never zero.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a JWKS without a usable key is refused. Present for the `len` convention.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys, in JWKS order (`None` for the single key without one).
    pub fn kids(&self) -> impl Iterator<Item = Option<&str>> {
        self.keys.iter().map(|key| key.kid.as_deref())
    }

    /// The keys left out, and why.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// The key for a token header's `kid`: the key with that id, or, without a `kid`, the only key.
    fn select(&self, kid: Option<&str>) -> Result<&IssuerKey, OidcError> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid))
                .ok_or_else(|| OidcError::UnknownKid(kid.to_owned())),
            None => match self.keys.as_slice() {
                [only] => Ok(only),
                _ => Err(OidcError::MissingKid),
            },
        }
    }
}

/// One JWK into a verification key, or the reason it is skipped.
fn parse_key(entry: &Value) -> Result<KeyMaterial, String> {
    let object = entry.as_object().ok_or("the key is not a JSON object")?;
    let string = |name: &str| string_member(object, name);
    string("kid")?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|member| object.contains_key(**member)) {
        return Err(format!("the key contains private material (`{member}`)"));
    }
    // RFC 7517 section 4.2: `use` is `sig` or `enc`; absent means either.
    if let Some(usage) = string("use")? {
        if usage != "sig" {
            return Err(format!("the key is for `{usage}`, not `sig`"));
        }
    }
    // RFC 7517 section 4.3: when listed, the operations must include verification.
    if let Some(ops) = object.get("key_ops") {
        let ops = ops.as_array().ok_or("`key_ops` is not an array")?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err("`key_ops` does not include `verify`".to_owned());
        }
    }
    let kty = string("kty")?.ok_or("`kty` is missing")?;
    let (material, alg) = match kty {
        "RSA" => (KeyMaterial::Rsa(parse_rsa(object)?), ALG_RS256),
        "OKP" => {
            let jwk = Ed25519PublicJwk::from_json(entry).map_err(|error| error.to_string())?;
            (KeyMaterial::Ed25519(*jwk.verifying_key()), ALG_EDDSA)
        }
        other => return Err(format!("unsupported key type `{other}`")),
    };
    // RFC 7517 section 4.4: a key bound to another algorithm must not verify ours.
    if let Some(key_alg) = string("alg")? {
        if key_alg != alg {
            return Err(format!("the key is for the algorithm `{key_alg}`, not `{alg}`"));
        }
    }
    Ok(material)
}

/// The public members `n` and `e` of an RSA JWK (RFC 7518 section 6.3.1).
fn parse_rsa(object: &Map<String, Value>) -> Result<RsaPublicKey, String> {
    let integer = |name: &str| -> Result<BigUint, String> {
        let text = string_member(object, name)?.ok_or_else(|| format!("`{name}` is missing"))?;
        // The strict decoder of our own tokens; the part it names is irrelevant here.
        let bytes = decode_base64(Part::Payload, text).map_err(|_| format!("`{name}` is not canonical base64url"))?;
        Ok(BigUint::from_bytes_be(&bytes))
    };
    let n = integer("n")?;
    let e = integer("e")?;
    let bits = n.bits();
    if bits < MIN_RSA_BITS {
        return Err(format!("the RSA modulus has {bits} bits, fewer than {MIN_RSA_BITS}"));
    }
    // Checks an odd modulus of at most 4096 bits and an odd exponent in 3..2^33.
    RsaPublicKey::new(n, e).map_err(|error| format!("not a usable RSA public key: {error}"))
}

/// A member that, when present, must be a string.
fn string_member<'a>(object: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.as_str())),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

/// Verifies an ID token and returns the human it names.
///
/// In order: the strict compact decoding of [`ID_TOKEN_LIMITS`]; the header (`alg` exactly
/// `RS256` or `EdDSA`, `typ` absent or `JWT`, no `crit`); the key (by `kid`, or the only key when
/// the header has none) and that its type fits `alg`; the signature; then the claims: `iss` exactly,
/// `aud` containing the audience (`azp`, required with several audiences, must equal it), `exp`,
/// `nbf` and `iat` (required) with the skew, `auth_time` against `max_age`, `sub`, the username
/// claim as a [`HumanId`] (with `email_verified` not `false` when it is `email`), and the groups.
pub fn verify_id_token(
    token: &str,
    keys: &IssuerKeys,
    settings: &OidcSettings,
    now: i64,
) -> Result<OidcIdentity, OidcError> {
    let limits = &ID_TOKEN_LIMITS;
    if token.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge { len: token.len(), max: limits.max_bytes }.into());
    }
    // RFC 7515 section 7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature).
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return Err(DecodeError::PartCount(parts.len()).into());
    };
    let header = decode_json(Part::Header, header_b64, limits)?;
    let alg = check_header(&header)?;
    let claims = decode_json(Part::Payload, payload_b64, limits)?;
    let signature = decode_base64(Part::Signature, signature_b64)?;

    let kid = header.get("kid").and_then(Value::as_str);
    let key = keys.select(kid)?;
    if key.material.alg() != alg {
        return Err(OidcError::AlgKeyMismatch { alg: alg.to_owned(), key: key.material.alg() });
    }
    // The signing input is the first two parts exactly as received (RFC 7515 section 5.2 step 8).
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token.get(..signing_input_len).ok_or(OidcError::BadSignature)?;
    verify_signature(&key.material, signing_input.as_bytes(), &signature)?;

    check_claims(&claims, settings, now)
}

/// The header rules: returns the algorithm, `RS256` or `EdDSA`.
fn check_header(header: &Map<String, Value>) -> Result<&'static str, OidcError> {
    // RFC 8725 section 3.1: compared exactly against the algorithms we allow; `none`, HMAC, ECDSA
    // and PSS never get further.
    let alg = match header.get("alg") {
        None => return Err(DecodeError::MissingHeader("alg").into()),
        Some(Value::String(alg)) if alg == ALG_RS256 => ALG_RS256,
        Some(Value::String(alg)) if alg == ALG_EDDSA => ALG_EDDSA,
        Some(Value::String(alg)) => return Err(OidcError::AlgNotAllowed(alg.clone())),
        Some(other) => return Err(OidcError::AlgNotAllowed(other.to_string())),
    };
    // RFC 7515 section 4.1.11: we understand no extension, so any `crit` is refused.
    if header.contains_key("crit") {
        return Err(DecodeError::CritNotSupported.into());
    }
    for name in ["kid", "typ"] {
        if header.get(name).is_some_and(|value| !value.is_string()) {
            return Err(DecodeError::InvalidHeader(name).into());
        }
    }
    // RFC 8725 section 3.11: an ID token is a plain JWT (`typ` absent or `JWT`, RFC 7519 section
    // 5.1); an access token (`at+jwt`), a logout token or a mandate is refused here.
    if let Some(typ) = header.get("typ").and_then(Value::as_str) {
        if !(typ.eq_ignore_ascii_case("JWT") || typ.eq_ignore_ascii_case("application/jwt")) {
            return Err(OidcError::WrongTyp(typ.to_owned()));
        }
    }
    Ok(alg)
}

fn verify_signature(key: &KeyMaterial, signing_input: &[u8], signature: &[u8]) -> Result<(), OidcError> {
    match key {
        KeyMaterial::Rsa(key) => {
            // RFC 8017 section 8.2.2: the signature has exactly the modulus' length, checked by `verify`.
            let digest = Sha256::digest(signing_input);
            key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, signature).map_err(|_| OidcError::BadSignature)
        }
        KeyMaterial::Ed25519(key) => {
            let signature = <[u8; 64]>::try_from(signature).map_err(|_| OidcError::BadSignature)?;
            // RFC 8032 section 5.1.7 with the strict checks (canonical `S`, no small-order `R`).
            key.verify_strict(signing_input, &Signature::from_bytes(&signature)).map_err(|_| OidcError::BadSignature)
        }
    }
}

/// OIDC Core section 3.1.3.7 steps 2 to 5 and 9 to 11, then the username and groups.
fn check_claims(claims: &Map<String, Value>, settings: &OidcSettings, now: i64) -> Result<OidcIdentity, OidcError> {
    check_issuer(claims, &settings.issuer)?;
    check_audience(claims, &settings.audience)?;
    check_azp(claims, &settings.audience)?;
    let rules = TimeRules {
        now,
        skew_secs: settings.skew_secs,
        require_nbf: false,
        require_iat: true,
        max_lifetime_secs: None,
    };
    let times = check_time(claims, &rules)?;
    if let Some(max_age) = settings.max_age_secs {
        let auth_time = integer_claim(claims, "auth_time")?.ok_or(ClaimsError::MissingClaim("auth_time"))?;
        let deadline = auth_time.saturating_add(i64::from(max_age)).saturating_add(i64::from(settings.skew_secs));
        if now > deadline {
            return Err(OidcError::AuthTooOld { auth_time, max_age });
        }
    }
    let subject = match claims.get("sub") {
        None => return Err(OidcError::MissingClaim("sub".to_owned())),
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        Some(_) => return Err(OidcError::InvalidClaim("sub".to_owned())),
    };
    let nonce = match claims.get("nonce") {
        None => None,
        Some(Value::String(nonce)) => Some(nonce.clone()),
        Some(_) => return Err(OidcError::InvalidClaim("nonce".to_owned())),
    };
    let human = username(claims, settings)?;
    let groups = groups(claims, &settings.groups_claim)?;
    Ok(OidcIdentity { human, groups, subject, expires_at: times.exp, nonce })
}

/// With several audiences the token must say which party it was issued to, and that must be us;
/// with one, an `azp` present must still be us (OIDC Core section 3.1.3.7 steps 4 and 5).
fn check_azp(claims: &Map<String, Value>, audience: &str) -> Result<(), OidcError> {
    let several = claims.get("aud").and_then(Value::as_array).is_some_and(|items| items.len() > 1);
    match claims.get("azp") {
        None if several => Err(OidcError::MissingClaim("azp".to_owned())),
        None => Ok(()),
        Some(Value::String(azp)) if azp == audience => Ok(()),
        Some(Value::String(azp)) => Err(OidcError::WrongAuthorizedParty(azp.clone())),
        Some(_) => Err(OidcError::InvalidClaim("azp".to_owned())),
    }
}

/// The username claim as a human id, refused rather than case-folded.
fn username(claims: &Map<String, Value>, settings: &OidcSettings) -> Result<HumanId, OidcError> {
    let claim = settings.username_claim.as_str();
    let value = match claims.get(claim) {
        None => return Err(OidcError::MissingClaim(claim.to_owned())),
        Some(Value::String(value)) => value,
        Some(_) => return Err(OidcError::InvalidClaim(claim.to_owned())),
    };
    if claim == "email" {
        // OIDC Core section 5.1: without a verified address, `email` names whoever typed it.
        match claims.get("email_verified") {
            None | Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Err(OidcError::EmailUnverified(value.clone())),
            Some(_) => return Err(OidcError::InvalidClaim("email_verified".to_owned())),
        }
    }
    HumanId::parse(value).map_err(|_| {
        if value.bytes().any(|b| b.is_ascii_uppercase()) && HumanId::parse(&value.to_ascii_lowercase()).is_ok() {
            OidcError::UsernameNotLowerCase { claim: claim.to_owned(), value: value.clone() }
        } else {
            OidcError::InvalidUsername { claim: claim.to_owned(), value: value.clone() }
        }
    })
}

/// The groups claim: absent is none; otherwise an array of valid group names, or the token is
/// refused (a group silently dropped could change what the human may grant).
fn groups(claims: &Map<String, Value>, claim: &str) -> Result<Vec<Group>, OidcError> {
    let items = match claims.get(claim) {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(OidcError::InvalidGroups { claim: claim.to_owned(), value: other.to_string() }),
    };
    let mut groups = items
        .iter()
        .map(|item| {
            item.as_str()
                .and_then(|name| Group::parse(name).ok())
                .ok_or_else(|| OidcError::InvalidGroups { claim: claim.to_owned(), value: item.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    groups.sort();
    groups.dedup();
    Ok(groups)
}

/// Why an issuer's JWKS or an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The token failed the strict compact decoding shared with our own tokens.
    #[error("the ID token is malformed: {0}")]
    Malformed(DecodeError),
    /// `alg` is neither `RS256` nor `EdDSA`; holds the value found, as JSON text if not a string.
    #[error("the algorithm `{0}` is not allowed; only `RS256` and `EdDSA` are accepted")]
    AlgNotAllowed(String),
    /// `typ` is present and not `JWT`: some other kind of token.
    #[error("the token type `{0}` is not an ID token's `JWT`")]
    WrongTyp(String),
    /// The header has no `kid` and the issuer has several keys.
    #[error("the header parameter `kid` is missing and the issuer has several keys")]
    MissingKid,
    /// The issuer's JWKS has no usable key with this `kid` (refetch the JWKS once, then refuse).
    #[error("the issuer has no usable key with the id `{0}`")]
    UnknownKid(String),
    /// `alg` does not fit the selected key's type (RFC 8725 section 2.1, key confusion).
    #[error("the algorithm `{alg}` does not fit the key, which verifies only `{key}`")]
    AlgKeyMismatch {
        /// The header's `alg`.
        alg: String,
        /// The one algorithm the key verifies.
        key: &'static str,
    },
    /// The signature does not verify under the selected key.
    #[error("the signature does not verify")]
    BadSignature,
    /// `iss` is not the configured issuer.
    #[error("the issuer `{0}` is not the configured one")]
    WrongIssuer(String),
    /// `aud` does not contain the configured audience.
    #[error("the ID token is not addressed to this audience")]
    WrongAudience,
    /// `azp` names another party.
    #[error("the ID token was issued to `{0}`, not to this audience")]
    WrongAuthorizedParty(String),
    /// `exp` plus the skew has passed.
    #[error("the ID token expired at `{exp}` (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// `nbf` is still ahead, beyond the skew.
    #[error("the ID token is not valid before `{nbf}` (now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The time of the check.
        now: i64,
    },
    /// `iat` is ahead of now, beyond the skew.
    #[error("the ID token claims to be issued at `{iat}`, in the future (now {now})")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: i64,
        /// The time of the check.
        now: i64,
    },
    /// The human authenticated longer ago than `max_age` allows.
    #[error("the authentication at `{auth_time}` is older than the maximum age of {max_age} seconds")]
    AuthTooOld {
        /// The token's `auth_time`.
        auth_time: i64,
        /// The configured maximum age.
        max_age: u32,
    },
    /// A required claim is absent.
    #[error("the claim `{0}` is missing")]
    MissingClaim(String),
    /// A claim has the wrong JSON type or value.
    #[error("the claim `{0}` has the wrong type or value")]
    InvalidClaim(String),
    /// The username claim is not a human id.
    #[error("the claim `{claim}` holds `{value}`, which is not a human id (lower-case `name@domain`)")]
    InvalidUsername {
        /// The username claim.
        claim: String,
        /// Its value.
        value: String,
    },
    /// The username claim would be a human id in lower case; we do not fold case, the IdP must.
    #[error("the claim `{claim}` holds `{value}`, which has upper-case letters; human ids are lower-case")]
    UsernameNotLowerCase {
        /// The username claim.
        claim: String,
        /// Its value.
        value: String,
    },
    /// `email_verified` is `false`.
    #[error("the email address `{0}` is not verified by the issuer")]
    EmailUnverified(String),
    /// The groups claim is not an array of valid group names; holds the offending JSON.
    #[error("the claim `{claim}` must list valid group names, found `{value}`")]
    InvalidGroups {
        /// The groups claim.
        claim: String,
        /// The offending element, or the whole claim if it is not an array, as JSON text.
        value: String,
    },
    /// The JWKS is not `{"keys": [...]}`.
    #[error("the issuer's JWKS is malformed: {0}")]
    JwksMalformed(String),
    /// The JWKS has no key we can use.
    #[error("the issuer's JWKS has no usable `RS256` or `EdDSA` verification key ({skipped} skipped)")]
    NoUsableKey {
        /// How many keys were skipped.
        skipped: usize,
    },
    /// Two usable keys share a `kid`.
    #[error("the issuer's JWKS has several keys with the id `{0}`")]
    DuplicateKid(String),
    /// One of several usable keys has no `kid`, so tokens could not choose between them.
    #[error("the issuer's JWKS has several usable keys, and one has no `kid`")]
    KidRequired,
}

impl OidcError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Malformed(error) => match error {
                DecodeError::TooLarge { .. } => "oidc.too_large",
                DecodeError::TooDeep { .. } => "oidc.too_deep",
                DecodeError::DuplicateMember { .. } => "oidc.duplicate_claim",
                DecodeError::CritNotSupported => "oidc.crit_not_supported",
                _ => "oidc.malformed",
            },
            OidcError::AlgNotAllowed(_) => "oidc.alg_not_allowed",
            OidcError::WrongTyp(_) => "oidc.wrong_typ",
            OidcError::MissingKid => "oidc.missing_kid",
            OidcError::UnknownKid(_) => "oidc.unknown_kid",
            OidcError::AlgKeyMismatch { .. } => "oidc.alg_key_mismatch",
            OidcError::BadSignature => "oidc.bad_signature",
            OidcError::WrongIssuer(_) => "oidc.wrong_issuer",
            OidcError::WrongAudience => "oidc.wrong_audience",
            OidcError::WrongAuthorizedParty(_) => "oidc.wrong_azp",
            OidcError::Expired { .. } => "oidc.expired",
            OidcError::NotYetValid { .. } => "oidc.not_yet_valid",
            OidcError::IssuedInFuture { .. } => "oidc.issued_in_future",
            OidcError::AuthTooOld { .. } => "oidc.auth_too_old",
            OidcError::MissingClaim(_) => "oidc.missing_claim",
            OidcError::InvalidClaim(_) => "oidc.invalid_claim",
            OidcError::InvalidUsername { .. } | OidcError::UsernameNotLowerCase { .. } => "oidc.invalid_username",
            OidcError::EmailUnverified(_) => "oidc.email_unverified",
            OidcError::InvalidGroups { .. } => "oidc.invalid_groups",
            OidcError::JwksMalformed(_)
            | OidcError::NoUsableKey { .. }
            | OidcError::DuplicateKid(_)
            | OidcError::KidRequired => "oidc.bad_jwks",
        }
    }
}

impl From<DecodeError> for OidcError {
    fn from(error: DecodeError) -> Self {
        OidcError::Malformed(error)
    }
}

impl From<ClaimsError> for OidcError {
    fn from(error: ClaimsError) -> Self {
        match error {
            ClaimsError::MissingClaim(name) => OidcError::MissingClaim(name.to_owned()),
            ClaimsError::InvalidClaim(name) => OidcError::InvalidClaim(name.to_owned()),
            ClaimsError::Expired { exp, now } => OidcError::Expired { exp, now },
            ClaimsError::NotYetValid { nbf, now } => OidcError::NotYetValid { nbf, now },
            ClaimsError::IssuedInFuture { iat, now } => OidcError::IssuedInFuture { iat, now },
            // INVARIANT: not produced, as `check_claims` sets no maximum lifetime; kept total.
            ClaimsError::LifetimeTooLong { .. } => OidcError::InvalidClaim("exp".to_owned()),
            ClaimsError::WrongIssuer(iss) => OidcError::WrongIssuer(iss),
            ClaimsError::WrongAudience => OidcError::WrongAudience,
        }
    }
}

#[cfg(test)]
mod tests;
