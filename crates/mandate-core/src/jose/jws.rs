//! JWS compact serialization with EdDSA (Ed25519) only: decoding untrusted text, verifying, signing.
//!
//! Untrusted text becomes a [`RawToken`] through [`RawToken::decode`], which applies every rule that
//! needs no key. Only [`RawToken::verify`] (key chosen by `kid` from the caller's key store) or
//! [`RawToken::verify_with_key`] (key chosen by the caller) turn it into a [`VerifiedToken`], so code
//! that holds claims has, by construction, checked their signature (RFC 7515 section 5.2).

use super::claims::ClaimsError;
use super::json::{parse_object, StrictJsonError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

/// The only JWS algorithm we accept or produce (RFC 8037 section 3.1).
pub const ALG_EDDSA: &str = "EdDSA";

/// Bounds applied before any signature work, so hostile input costs little.
///
/// There is deliberately no `Default`: each use site names the bound it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest accepted compact serialization, in bytes.
    pub max_bytes: usize,
    /// The deepest accepted nesting of JSON objects and arrays; the outer object counts as 1.
    pub max_depth: usize,
}

impl Limits {
    /// Mandate tokens: 8 KiB, nesting 16 (room for a few `act` delegation hops).
    pub const TOKEN: Limits = Limits { max_bytes: 8 * 1024, max_depth: 16 };
    /// Proofs of possession: small by nature (a key, a method, a URL, a time, an id).
    pub const PROOF: Limits = Limits { max_bytes: 4 * 1024, max_depth: 4 };
}

/// Which of the three parts of a compact JWS an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The protected header.
    Header,
    /// The payload (claims).
    Payload,
    /// The signature.
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// How a part fails to be canonical unpadded base64url (RFC 7515 section 2, RFC 4648 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base64Fault {
    /// It carries `=` padding, which JWS forbids.
    Padding,
    /// It uses `+` or `/` from the standard alphabet instead of `-` and `_`.
    NotUrlSafe,
    /// It holds a character outside the base64url alphabet.
    BadCharacter,
    /// Its length cannot be produced by any byte string.
    BadLength,
    /// Its unused trailing bits are not zero, so the same bytes have another spelling (RFC 4648
    /// section 3.5).
    TrailingBits,
}

impl fmt::Display for Base64Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Base64Fault::Padding => "padding is not allowed",
            Base64Fault::NotUrlSafe => "`+` and `/` are not base64url",
            Base64Fault::BadCharacter => "a character is outside the base64url alphabet",
            Base64Fault::BadLength => "the length is impossible",
            Base64Fault::TrailingBits => "the trailing bits are not zero",
        })
    }
}

/// Why text was refused before any key was consulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The token is longer than [`Limits::max_bytes`].
    #[error("the token is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The token's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token does not have exactly three dot-separated parts (RFC 7515 section 7.1).
    #[error("a compact JWS has 3 dot-separated parts, found {0}")]
    PartCount(usize),
    /// A part is not canonical unpadded base64url.
    #[error("the {part} is not canonical base64url: {fault}")]
    Base64 {
        /// Which part.
        part: Part,
        /// What is wrong with it.
        fault: Base64Fault,
    },
    /// The header or payload is not JSON.
    #[error("the {part} is not valid JSON: {message}")]
    Json {
        /// Which part.
        part: Part,
        /// The parser's message.
        message: String,
    },
    /// The header or payload is JSON but not an object.
    #[error("the {0} is not a JSON object")]
    NotAnObject(Part),
    /// The header or payload nests deeper than [`Limits::max_depth`].
    #[error("the {part} nests deeper than {max} levels")]
    TooDeep {
        /// Which part.
        part: Part,
        /// The limit.
        max: usize,
    },
    /// An object in the header or payload repeats a member name (RFC 7515 section 4, RFC 7519
    /// section 4).
    #[error("the {part} repeats the member `{name}`")]
    DuplicateMember {
        /// Which part.
        part: Part,
        /// The repeated name.
        name: String,
    },
    /// A required header parameter is absent.
    #[error("the header parameter `{0}` is missing")]
    MissingHeader(&'static str),
    /// A header parameter has the wrong JSON type.
    #[error("the header parameter `{0}` must be a string")]
    InvalidHeader(&'static str),
    /// `alg` is not `EdDSA` (RFC 8725 section 3.1); holds the value found, as JSON text if it is
    /// not a string.
    #[error("the algorithm `{0}` is not allowed; only `EdDSA` is accepted")]
    AlgNotAllowed(String),
    /// The header has `crit`; we understand no extension, so RFC 7515 section 4.1.11 says reject.
    #[error("the header parameter `crit` is not supported")]
    CritNotSupported,
    /// The signature is not 64 bytes, so it cannot be an Ed25519 signature (RFC 8032 section 5.1.6).
    #[error("an Ed25519 signature is 64 bytes, found {0}")]
    SignatureLength(usize),
}

impl DecodeError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "token.too_large",
            DecodeError::PartCount(_)
            | DecodeError::Json { .. }
            | DecodeError::NotAnObject(_)
            | DecodeError::MissingHeader(_)
            | DecodeError::InvalidHeader(_) => "token.malformed",
            DecodeError::Base64 { .. } => "token.bad_encoding",
            DecodeError::TooDeep { .. } => "token.too_deep",
            DecodeError::DuplicateMember { .. } => "token.duplicate_claim",
            DecodeError::AlgNotAllowed(_) => "token.alg_not_allowed",
            DecodeError::CritNotSupported => "token.crit_not_supported",
            DecodeError::SignatureLength(_) => "token.bad_signature",
        }
    }
}

/// Why a well-formed token was refused by [`RawToken::verify`] or [`RawToken::verify_with_key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `typ` is not the expected one (RFC 8725 section 3.11); holds what was found.
    #[error("the token type `{}` is not the expected `{expected}`", found.as_deref().unwrap_or("<none>"))]
    WrongTyp {
        /// The expected `typ`.
        expected: String,
        /// The `typ` found, if any.
        found: Option<String>,
    },
    /// The header has no `kid`, so no key can be chosen.
    #[error("the header parameter `kid` is missing")]
    MissingKid,
    /// The key store has no key with this `kid`.
    #[error("no verification key has the id `{0}`")]
    UnknownKid(String),
    /// The signature does not verify under the chosen key (RFC 8032 section 5.1.7, strict).
    #[error("the signature does not verify")]
    BadSignature,
}

impl VerifyError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::WrongTyp { .. } => "token.wrong_typ",
            VerifyError::MissingKid => "token.missing_kid",
            VerifyError::UnknownKid(_) => "token.unknown_kid",
            VerifyError::BadSignature => "token.bad_signature",
        }
    }
}

/// Any reason a token was refused, for callers that decode, verify and check claims in one go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Refused before any key was consulted.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Refused by signature verification.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Refused by a claims check.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
}

impl TokenError {
    /// The stable reason code of the underlying error.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Decode(error) => error.code(),
            TokenError::Verify(error) => error.code(),
            TokenError::Claims(error) => error.code(),
        }
    }
}

/// Why signing failed: the claims could not be serialized as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// `serde_json` refused the claims.
    #[error("the claims cannot be serialized: {0}")]
    Serialize(String),
    /// The claims serialize to JSON that is not an object.
    #[error("the claims must serialize to a JSON object")]
    NotAnObject,
}

/// The caller's key store: maps a `kid` to a verification key. Keeping the store outside lets keys
/// rotate (several `kid`s live at once) without this module knowing how.
pub trait KeyResolver {
    /// The key with this id, if the store trusts one.
    fn resolve(&self, kid: &str) -> Option<VerifyingKey>;
}

impl<F: Fn(&str) -> Option<VerifyingKey>> KeyResolver for F {
    fn resolve(&self, kid: &str) -> Option<VerifyingKey> {
        self(kid)
    }
}

/// A compact JWS that passed every check that needs no key. Its claims are not trusted yet.
#[derive(Debug, Clone)]
pub struct RawToken<'a> {
    signing_input: &'a str,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signature: Signature,
}

impl<'a> RawToken<'a> {
    /// Applies, in order: size, three parts, canonical base64url, strict JSON header (depth,
    /// duplicates, object), `alg` is `EdDSA`, no `crit`, then the same JSON rules for the payload,
    /// then a 64-byte signature.
    pub fn decode(token: &'a str, limits: &Limits) -> Result<Self, DecodeError> {
        if token.len() > limits.max_bytes {
            return Err(DecodeError::TooLarge { len: token.len(), max: limits.max_bytes });
        }
        // RFC 7515 section 7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature).
        let count = token.split('.').count();
        if count != 3 {
            return Err(DecodeError::PartCount(count));
        }
        let (signing_input, signature_b64) = token.rsplit_once('.').ok_or(DecodeError::PartCount(count))?;
        let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(DecodeError::PartCount(count))?;

        let header = decode_json(Part::Header, header_b64, limits)?;
        check_header(&header)?;
        let claims = decode_json(Part::Payload, payload_b64, limits)?;
        let signature_bytes = decode_base64(Part::Signature, signature_b64)?;
        let signature = <[u8; 64]>::try_from(signature_bytes.as_slice())
            .map(|bytes| Signature::from_bytes(&bytes))
            .map_err(|_| DecodeError::SignatureLength(signature_bytes.len()))?;
        Ok(Self { signing_input, header, claims, signature })
    }

    /// The `kid` header parameter, for choosing a key or for logging. Unverified.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// The protected header. Unverified: choose keys with it, trust nothing in it.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The claims before verification, for diagnostics such as logging an attempted `jti`.
    /// Never base a decision on them.
    pub fn danger_unverified_claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Verifies with the key the caller's store holds for the header's `kid`, after checking `typ`
    /// when `expected_typ` is given. Keys embedded in the header (`jwk`, `jku`, `x5c`, `x5u`) are
    /// ignored: the store alone decides which keys are trusted.
    pub fn verify<K: KeyResolver + ?Sized>(
        self,
        keys: &K,
        expected_typ: Option<&str>,
    ) -> Result<VerifiedToken, VerifyError> {
        check_typ(&self.header, expected_typ)?;
        let kid = match self.header.get("kid") {
            Some(Value::String(kid)) => kid,
            // `decode` refused a `kid` that is not a string, so this is the missing case.
            _ => return Err(VerifyError::MissingKid),
        };
        let key = keys.resolve(kid).ok_or_else(|| VerifyError::UnknownKid(kid.clone()))?;
        self.finish(&key)
    }

    /// Verifies with a key the caller chose by other means (an agent's registered key, the key in
    /// a proof's `jwk` header), after checking `typ` when `expected_typ` is given.
    pub fn verify_with_key(self, key: &VerifyingKey, expected_typ: Option<&str>) -> Result<VerifiedToken, VerifyError> {
        check_typ(&self.header, expected_typ)?;
        self.finish(key)
    }

    fn finish(self, key: &VerifyingKey) -> Result<VerifiedToken, VerifyError> {
        // RFC 8032 section 5.1.7 with the strict checks: canonical `S`, no small-order `R` or key,
        // so one message has one valid signature per key and weak keys verify nothing.
        key.verify_strict(self.signing_input.as_bytes(), &self.signature).map_err(|_| VerifyError::BadSignature)?;
        Ok(VerifiedToken { header: self.header, claims: self.claims })
    }
}

/// A token whose signature verified. Only [`RawToken::verify`] and [`RawToken::verify_with_key`]
/// build one; its time, issuer and audience are not checked yet (see [`super::claims`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl VerifiedToken {
    /// The protected header.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The `kid` it was verified under, if the header had one.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// The claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The claims, by value.
    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }

    /// The claims as a typed structure.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(Value::Object(self.claims.clone()))
    }
}

/// The header members of a token we sign; `alg` is always `EdDSA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignHeader<'a> {
    /// The explicit type (RFC 8725 section 3.11), such as `mandate+jwt`.
    pub typ: &'a str,
    /// The id under which verifiers find the public key.
    pub kid: &'a str,
}

/// Signs `claims` as a compact JWS with header `{"alg":"EdDSA","typ":..,"kid":..}`.
pub fn sign<T: Serialize + ?Sized>(claims: &T, key: &SigningKey, header: &SignHeader<'_>) -> Result<String, SignError> {
    #[derive(Serialize)]
    struct Header<'a> {
        alg: &'static str,
        typ: &'a str,
        kid: &'a str,
    }
    sign_with_header(&Header { alg: ALG_EDDSA, typ: header.typ, kid: header.kid }, claims, key)
}

/// Signs `claims` under a header the caller built; the header must carry `alg: EdDSA`.
pub(crate) fn sign_with_header<H: Serialize, T: Serialize + ?Sized>(
    header: &H,
    claims: &T,
    key: &SigningKey,
) -> Result<String, SignError> {
    let header = serde_json::to_vec(header).map_err(|e| SignError::Serialize(e.to_string()))?;
    // Going through `Value` guarantees a JSON object with unique member names.
    let claims = match serde_json::to_value(claims).map_err(|e| SignError::Serialize(e.to_string()))? {
        Value::Object(map) => serde_json::to_vec(&map).map_err(|e| SignError::Serialize(e.to_string()))?,
        _ => return Err(SignError::NotAnObject),
    };
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    Ok(token)
}

/// Decodes one part as canonical unpadded base64url (RFC 7515 section 2).
pub(crate) fn decode_base64(part: Part, text: &str) -> Result<Vec<u8>, DecodeError> {
    let fault = |fault| DecodeError::Base64 { part, fault };
    if let Some(byte) = text.bytes().find(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')) {
        return Err(fault(match byte {
            b'=' => Base64Fault::Padding,
            b'+' | b'/' => Base64Fault::NotUrlSafe,
            _ => Base64Fault::BadCharacter,
        }));
    }
    if text.len() % 4 == 1 {
        return Err(fault(Base64Fault::BadLength));
    }
    // The alphabet and length are right, so the engine can only object to non-zero trailing bits.
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| fault(Base64Fault::TrailingBits))?;
    // Belt and braces: one byte string, one spelling.
    if URL_SAFE_NO_PAD.encode(&bytes) != text {
        return Err(fault(Base64Fault::TrailingBits));
    }
    Ok(bytes)
}

/// Decodes one part as canonical base64url holding one strict JSON object (no duplicate names, nesting
/// within `limits.max_depth`).
pub(crate) fn decode_json(part: Part, text: &str, limits: &Limits) -> Result<Map<String, Value>, DecodeError> {
    let bytes = decode_base64(part, text)?;
    parse_object(&bytes, limits.max_depth).map_err(|error| match error {
        StrictJsonError::TooDeep => DecodeError::TooDeep { part, max: limits.max_depth },
        StrictJsonError::Duplicate(name) => DecodeError::DuplicateMember { part, name },
        StrictJsonError::NotAnObject => DecodeError::NotAnObject(part),
        StrictJsonError::Syntax(message) => DecodeError::Json { part, message },
    })
}

/// The header rules that need no key.
fn check_header(header: &Map<String, Value>) -> Result<(), DecodeError> {
    // RFC 8725 section 3.1 and RFC 7515 section 4.1.1: `alg` is compared exactly (it is
    // case-sensitive), against the one algorithm we allow; `none`, HMAC and ECDSA never get here.
    match header.get("alg") {
        None => return Err(DecodeError::MissingHeader("alg")),
        Some(Value::String(alg)) if alg == ALG_EDDSA => {}
        Some(Value::String(alg)) => return Err(DecodeError::AlgNotAllowed(alg.clone())),
        Some(other) => return Err(DecodeError::AlgNotAllowed(other.to_string())),
    }
    // RFC 7515 section 4.1.11: a recipient that does not understand a listed extension must reject.
    if header.contains_key("crit") {
        return Err(DecodeError::CritNotSupported);
    }
    for name in ["kid", "typ"] {
        if header.get(name).is_some_and(|value| !value.is_string()) {
            return Err(DecodeError::InvalidHeader(name));
        }
    }
    Ok(())
}

/// RFC 8725 section 3.11 explicit typing. RFC 7515 section 4.1.9: `typ` is a media type, compared
/// without regard to ASCII case.
pub(crate) fn check_typ(header: &Map<String, Value>, expected: Option<&str>) -> Result<(), VerifyError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let found = header.get("typ").and_then(Value::as_str);
    match found {
        Some(typ) if typ.eq_ignore_ascii_case(expected) => Ok(()),
        _ => Err(VerifyError::WrongTyp { expected: expected.to_owned(), found: found.map(str::to_owned) }),
    }
}
