//! The hostile token corpus: each case, the exact error and reason code it must get.

use super::{b64, compact, compact_text, key, nested, parts, unb64, NOW};
use crate::jose::*;
use ed25519_dalek::VerifyingKey;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

const TYP: &str = "mandate+jwt";

fn keys(kid: &str) -> Option<VerifyingKey> {
    match kid {
        "k1" => Some(key(1).verifying_key()),
        "k2" => Some(key(2).verifying_key()),
        // The identity point: a small-order key under which a lax verifier accepts `R = identity,
        // S = 0` for every message. A store should never hold one; `verify_strict` refuses anyway.
        "weak" => {
            let mut identity = [0u8; 32];
            identity[0] = 1;
            VerifyingKey::from_bytes(&identity).ok()
        }
        _ => None,
    }
}

fn header() -> Value {
    json!({"alg": "EdDSA", "typ": TYP, "kid": "k1"})
}

fn claims() -> Value {
    json!({
        "iss": "https://mandate.example",
        "sub": "spiffe://example.org/agent/finance-close",
        "aud": "mandate",
        "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 840,
        "jti": "m-1",
        "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
        "act": {"sub": "spiffe://example.org/agent/planner", "act": {"sub": "user:alice@example.org"}},
    })
}

fn with(mut value: Value, name: &str, member: Value) -> Value {
    value[name] = member;
    value
}

fn without(mut value: Value, name: &str) -> Value {
    value.as_object_mut().map(|map| map.remove(name));
    value
}

fn valid() -> String {
    compact(&header(), &claims(), &key(1))
}

/// The whole pipeline a server runs: decode, verify under the key store, check times.
fn run(token: &str) -> Result<Map<String, Value>, TokenError> {
    let verified = RawToken::decode(token, &Limits::TOKEN)?.verify(&keys, Some(TYP))?;
    let rules =
        TimeRules { now: NOW, skew_secs: 30, require_nbf: true, require_iat: true, max_lifetime_secs: Some(900) };
    check_time(verified.claims(), &rules)?;
    Ok(verified.into_claims())
}

fn check(name: &str, token: &str, expected: Result<(), (TokenError, &str)>) {
    let got = run(token).map(|_| ());
    let got = got.map_err(|error| {
        let code = error.code();
        (error, code)
    });
    assert_eq!(got, expected, "case `{name}`");
}

fn refused(error: impl Into<TokenError>, code: &str) -> Result<(), (TokenError, &str)> {
    Err((error.into(), code))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner = Sha256::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize().into()
}

/// Adds ℓ, the order of the Ed25519 group, to the signature's `S`: the same signature to a lax
/// verifier, a second spelling that RFC 8032 section 5.1.7 tells us to refuse.
fn malleate(signature: &[u8]) -> Vec<u8> {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = signature.to_vec();
    let mut carry = 0u16;
    for (byte, l) in out[32..].iter_mut().zip(L) {
        let sum = u16::from(*byte) + u16::from(l) + carry;
        *byte = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    out
}

#[test]
fn a_valid_token_passes() {
    check("valid", &valid(), Ok(()));
    let typ_case = compact(&with(header(), "typ", json!("Mandate+JWT")), &claims(), &key(1));
    check("typ compared without ASCII case", &typ_case, Ok(()));
    let k2 = compact(&with(header(), "kid", json!("k2")), &claims(), &key(2));
    check("second key of the store (rotation)", &k2, Ok(()));
}

#[test]
fn algorithm_confusion_is_refused() {
    let [_, payload, signature] = parts(&valid());
    let none = |alg: &str| b64(with(header(), "alg", json!(alg)).to_string());
    check(
        "alg none, no signature",
        &format!("{}.{payload}.", none("none")),
        refused(DecodeError::AlgNotAllowed("none".into()), "token.alg_not_allowed"),
    );
    check(
        "alg none, a signature",
        &format!("{}.{payload}.{signature}", none("none")),
        refused(DecodeError::AlgNotAllowed("none".into()), "token.alg_not_allowed"),
    );
    for alg in ["None", "NONE", "eddsa", "EDDSA", "Ed25519", "ES256", "RS256", "HS512", ""] {
        let token = compact(&with(header(), "alg", json!(alg)), &claims(), &key(1));
        check(alg, &token, refused(DecodeError::AlgNotAllowed(alg.into()), "token.alg_not_allowed"));
    }
    // HS256 with the public key bytes as the HMAC secret: the classic key-confusion forgery.
    let hs = b64(with(header(), "alg", json!("HS256")).to_string());
    let mac = hmac_sha256(key(1).verifying_key().as_bytes(), format!("{hs}.{payload}").as_bytes());
    let forged = format!("{hs}.{payload}.{}", b64(mac));
    check(
        "HS256 keyed with the public key",
        &forged,
        refused(DecodeError::AlgNotAllowed("HS256".into()), "token.alg_not_allowed"),
    );
    let array = compact(&with(header(), "alg", json!(["EdDSA"])), &claims(), &key(1));
    check(
        "alg as an array",
        &array,
        refused(DecodeError::AlgNotAllowed(r#"["EdDSA"]"#.into()), "token.alg_not_allowed"),
    );
    let missing = compact(&without(header(), "alg"), &claims(), &key(1));
    check("alg missing", &missing, refused(DecodeError::MissingHeader("alg"), "token.malformed"));
    let crit = compact(&with(header(), "crit", json!(["exp"])), &claims(), &key(1));
    check("crit", &crit, refused(DecodeError::CritNotSupported, "token.crit_not_supported"));
}

#[test]
fn keys_and_signatures() {
    check(
        "wrong key",
        &compact(&header(), &claims(), &key(9)),
        refused(VerifyError::BadSignature, "token.bad_signature"),
    );
    check(
        "signed by k2, claims k1",
        &compact(&header(), &claims(), &key(2)),
        refused(VerifyError::BadSignature, "token.bad_signature"),
    );
    let unknown = compact(&with(header(), "kid", json!("k9")), &claims(), &key(9));
    check("unknown kid", &unknown, refused(VerifyError::UnknownKid("k9".into()), "token.unknown_kid"));
    check(
        "missing kid",
        &compact(&without(header(), "kid"), &claims(), &key(1)),
        refused(VerifyError::MissingKid, "token.missing_kid"),
    );
    let numeric = compact(&with(header(), "kid", json!(1)), &claims(), &key(1));
    check("kid not a string", &numeric, refused(DecodeError::InvalidHeader("kid"), "token.malformed"));
    // A `jwk` in the header is never trusted: the store's key for `kid` decides.
    let embedded =
        with(header(), "jwk", crate::jwk::Ed25519PublicJwk::from_verifying_key(key(9).verifying_key()).to_json());
    check(
        "embedded attacker jwk",
        &compact(&embedded, &claims(), &key(9)),
        refused(VerifyError::BadSignature, "token.bad_signature"),
    );
    let wrong_typ = |typ: Option<&str>| VerifyError::WrongTyp { expected: TYP.into(), found: typ.map(str::to_owned) };
    check(
        "typ JWT",
        &compact(&with(header(), "typ", json!("JWT")), &claims(), &key(1)),
        refused(wrong_typ(Some("JWT")), "token.wrong_typ"),
    );
    check(
        "typ missing",
        &compact(&without(header(), "typ"), &claims(), &key(1)),
        refused(wrong_typ(None), "token.wrong_typ"),
    );
    check(
        "proof as mandate",
        &compact(&with(header(), "typ", json!("dpop+jwt")), &claims(), &key(1)),
        refused(wrong_typ(Some("dpop+jwt")), "token.wrong_typ"),
    );

    let [header_b64, payload, signature] = parts(&valid());
    let tampered = b64(with(claims(), "exp", json!(NOW + 999_999)).to_string());
    check(
        "tampered payload",
        &format!("{header_b64}.{tampered}.{signature}"),
        refused(VerifyError::BadSignature, "token.bad_signature"),
    );
    let tampered = b64(with(header(), "x", json!(1)).to_string());
    check(
        "tampered header",
        &format!("{tampered}.{payload}.{signature}"),
        refused(VerifyError::BadSignature, "token.bad_signature"),
    );
    let tampered = b64(with(header(), "kid", json!("k2")).to_string());
    check(
        "kid switched",
        &format!("{tampered}.{payload}.{signature}"),
        refused(VerifyError::BadSignature, "token.bad_signature"),
    );
    let bytes = unb64(&signature);
    check(
        "S + l",
        &format!("{header_b64}.{payload}.{}", b64(malleate(&bytes))),
        refused(VerifyError::BadSignature, "token.bad_signature"),
    );
    let mut flipped = bytes.clone();
    flipped[0] ^= 1;
    check(
        "one bit flipped",
        &format!("{header_b64}.{payload}.{}", b64(flipped)),
        refused(VerifyError::BadSignature, "token.bad_signature"),
    );

    let weak_header = b64(with(header(), "kid", json!("weak")).to_string());
    let mut identity_signature = [0u8; 64];
    identity_signature[0] = 1;
    let forged = format!("{weak_header}.{payload}.{}", b64(identity_signature));
    check("small-order key", &forged, refused(VerifyError::BadSignature, "token.bad_signature"));

    check(
        "empty signature",
        &format!("{header_b64}.{payload}."),
        refused(DecodeError::SignatureLength(0), "token.bad_signature"),
    );
    check(
        "short signature",
        &format!("{header_b64}.{payload}.{}", b64(&bytes[..63])),
        refused(DecodeError::SignatureLength(63), "token.bad_signature"),
    );
}

#[test]
fn times() {
    let token = |claims: Value| compact(&header(), &claims, &key(1));
    check(
        "expired",
        &token(with(claims(), "exp", json!(NOW - 31))),
        refused(ClaimsError::Expired { exp: NOW - 31, now: NOW }, "token.expired"),
    );
    check(
        "not yet valid",
        &token(with(claims(), "nbf", json!(NOW + 31))),
        refused(ClaimsError::NotYetValid { nbf: NOW + 31, now: NOW }, "token.not_yet_valid"),
    );
    let future = with(with(claims(), "iat", json!(NOW + 31)), "exp", json!(NOW + 900));
    check(
        "issued in the future",
        &token(future),
        refused(ClaimsError::IssuedInFuture { iat: NOW + 31, now: NOW }, "token.issued_in_future"),
    );
    check("no exp", &token(without(claims(), "exp")), refused(ClaimsError::MissingClaim("exp"), "token.missing_claim"));
    check(
        "exp as a string",
        &token(with(claims(), "exp", json!("1800000840"))),
        refused(ClaimsError::InvalidClaim("exp"), "token.invalid_claim"),
    );
    check(
        "exp as a float",
        &token(with(claims(), "exp", json!(1_800_000_840.5))),
        refused(ClaimsError::InvalidClaim("exp"), "token.invalid_claim"),
    );
    check(
        "too long-lived",
        &token(with(claims(), "exp", json!(NOW + 841))),
        refused(ClaimsError::LifetimeTooLong { lifetime: 901, max: 900 }, "token.lifetime_too_long"),
    );
}

#[test]
fn structure_and_size() {
    let [header_b64, payload, signature] = parts(&valid());
    let big = with(claims(), "pad", json!("x".repeat(9_000)));
    let big = compact(&header(), &big, &key(1));
    check("oversized", &big, refused(DecodeError::TooLarge { len: big.len(), max: 8 * 1024 }, "token.too_large"));
    check(
        "deep claims",
        &compact(&header(), &nested(17), &key(1)),
        refused(DecodeError::TooDeep { part: Part::Payload, max: 16 }, "token.too_deep"),
    );
    let deep = compact(&header(), &with(claims(), "act", nested(16)), &key(1));
    check("deep act", &deep, refused(DecodeError::TooDeep { part: Part::Payload, max: 16 }, "token.too_deep"));
    check(
        "16 deep is fine",
        &compact(&header(), &with(nested(16), "exp", json!(NOW + 1)), &key(1)),
        refused(ClaimsError::MissingClaim("nbf"), "token.missing_claim"),
    );
    check(
        "deep header",
        &compact(&with(header(), "x", nested(16)), &claims(), &key(1)),
        refused(DecodeError::TooDeep { part: Part::Header, max: 16 }, "token.too_deep"),
    );
    let flat = r#"{"alg":"EdDSA","typ":"mandate+jwt","kid":"k1"}"#;
    let dup = compact_text(flat, r#"{"exp":1,"exp":9999999999}"#, &key(1));
    check(
        "duplicate exp",
        &dup,
        refused(DecodeError::DuplicateMember { part: Part::Payload, name: "exp".into() }, "token.duplicate_claim"),
    );
    let dup = compact_text(flat, r#"{"exp":9999999999,"\u0065xp":1}"#, &key(1));
    check(
        "duplicate exp, escaped",
        &dup,
        refused(DecodeError::DuplicateMember { part: Part::Payload, name: "exp".into() }, "token.duplicate_claim"),
    );
    let dup = compact_text(flat, r#"{"exp":9999999999,"act":{"sub":"a","sub":"b"}}"#, &key(1));
    check(
        "duplicate nested",
        &dup,
        refused(DecodeError::DuplicateMember { part: Part::Payload, name: "sub".into() }, "token.duplicate_claim"),
    );
    let dup =
        compact_text(r#"{"alg":"none","alg":"EdDSA","typ":"mandate+jwt","kid":"k1"}"#, &claims().to_string(), &key(1));
    check(
        "duplicate alg",
        &dup,
        refused(DecodeError::DuplicateMember { part: Part::Header, name: "alg".into() }, "token.duplicate_claim"),
    );
    let array = compact_text(flat, "[1]", &key(1));
    check("payload is an array", &array, refused(DecodeError::NotAnObject(Part::Payload), "token.malformed"));
    let string = compact_text("\"EdDSA\"", &claims().to_string(), &key(1));
    check("header is a string", &string, refused(DecodeError::NotAnObject(Part::Header), "token.malformed"));

    for (name, token, count) in [
        ("empty", String::new(), 1),
        ("one part", header_b64.clone(), 1),
        ("two parts", format!("{header_b64}.{payload}"), 2),
        ("four parts", format!("{header_b64}.{payload}.{signature}.{signature}"), 4),
        ("six dots", "......".to_owned(), 7),
    ] {
        check(name, &token, refused(DecodeError::PartCount(count), "token.malformed"));
    }
}

#[test]
fn non_canonical_base64() {
    let [header_b64, payload, signature] = parts(&valid());
    let encoding = |part, fault| refused(DecodeError::Base64 { part, fault }, "token.bad_encoding");
    check(
        "padded signature",
        &format!("{header_b64}.{payload}.{signature}=="),
        encoding(Part::Signature, Base64Fault::Padding),
    );
    check(
        "padded header",
        &format!("{header_b64}=.{payload}.{signature}"),
        encoding(Part::Header, Base64Fault::Padding),
    );
    check(
        "padded payload",
        &format!("{header_b64}.{payload}=.{signature}"),
        encoding(Part::Payload, Base64Fault::Padding),
    );
    // 64 bytes take 86 characters; the last one carries 4 unused bits, which must be zero.
    let mut twin = signature.clone();
    let last = twin.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.find(last).unwrap();
    twin.push(alphabet.chars().nth(index ^ 1).unwrap());
    check(
        "trailing bits",
        &format!("{header_b64}.{payload}.{twin}"),
        encoding(Part::Signature, Base64Fault::TrailingBits),
    );
    let plus = format!("+{}", &payload[1..]);
    check(
        "+ in payload",
        &format!("{header_b64}.{plus}.{signature}"),
        encoding(Part::Payload, Base64Fault::NotUrlSafe),
    );
    let slash = format!("/{}", &signature[1..]);
    check(
        "/ in signature",
        &format!("{header_b64}.{payload}.{slash}"),
        encoding(Part::Signature, Base64Fault::NotUrlSafe),
    );
    check("space", &format!("{header_b64}.{payload} .{signature}"), encoding(Part::Payload, Base64Fault::BadCharacter));
    check(
        "impossible length",
        &format!("{header_b64}.{payload}.{signature}AAA"),
        encoding(Part::Signature, Base64Fault::BadLength),
    );
    let json = compact_text("{", &claims().to_string(), &key(1));
    assert!(matches!(run(&json), Err(TokenError::Decode(DecodeError::Json { part: Part::Header, .. }))));
    assert_eq!(run(&json).map(|_| ()).map_err(|e| e.code()), Err("token.malformed"));
}

#[test]
fn sign_then_verify_gives_back_the_claims() {
    let token = sign(&claims(), &key(1), &SignHeader { typ: TYP, kid: "k1" }).unwrap();
    let [header_b64, _, _] = parts(&token);
    let header_text = String::from_utf8(unb64(&header_b64)).unwrap();
    assert_eq!(header_text, r#"{"alg":"EdDSA","typ":"mandate+jwt","kid":"k1"}"#);
    let raw = RawToken::decode(&token, &Limits::TOKEN).unwrap();
    assert_eq!(raw.kid(), Some("k1"));
    assert_eq!(Value::Object(raw.danger_unverified_claims().clone()), claims());
    let verified = raw.verify(&keys, Some(TYP)).unwrap();
    assert_eq!(verified.kid(), Some("k1"));
    assert_eq!(verified.header()["typ"], TYP);
    assert_eq!(Value::Object(verified.claims().clone()), claims());
    #[derive(serde::Deserialize, PartialEq, Debug)]
    struct Subset {
        jti: String,
        exp: i64,
    }
    assert_eq!(verified.claims_as::<Subset>().unwrap(), Subset { jti: "m-1".into(), exp: NOW + 840 });
    assert_eq!(run(&token).map(Value::Object), Ok(claims()));
    let again = RawToken::decode(&token, &Limits::TOKEN).unwrap();
    assert_eq!(
        again.verify_with_key(&key(1).verifying_key(), None).map(VerifiedToken::into_claims).map(Value::Object),
        Ok(claims())
    );
}

#[test]
fn sign_refuses_what_is_not_an_object() {
    let header = SignHeader { typ: TYP, kid: "k1" };
    assert_eq!(sign(&json!([1]), &key(1), &header), Err(SignError::NotAnObject));
    let bad_keys: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
    assert!(matches!(sign(&bad_keys, &key(1), &header), Err(SignError::Serialize(_))));
}
