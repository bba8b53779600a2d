//! The hostile proof corpus: each case, the exact error and reason code it must get.

use super::{b64, compact, compact_text, key, NOW};
use crate::jose::*;
use crate::jwk::{Ed25519PublicJwk, JwkError};
use serde_json::{json, Value};

const ACCESS_TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.the-mandate.signature";
const URL: &str = "https://mandate.example/v1/authorize";

fn agent_jwk() -> Value {
    Ed25519PublicJwk::from_verifying_key(key(7).verifying_key()).to_json()
}

fn agent_jkt() -> String {
    Ed25519PublicJwk::from_verifying_key(key(7).verifying_key()).thumbprint()
}

fn header() -> Value {
    json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": agent_jwk()})
}

fn claims() -> Value {
    json!({"jti": "p-1", "htm": "POST", "htu": URL, "iat": NOW, "ath": access_token_hash(ACCESS_TOKEN)})
}

fn with(mut value: Value, name: &str, member: Value) -> Value {
    value[name] = member;
    value
}

fn without(mut value: Value, name: &str) -> Value {
    value.as_object_mut().map(|map| map.remove(name));
    value
}

fn verify(proof: &str, access_token: Option<&str>) -> Result<VerifiedProof, ProofError> {
    let htu = Htu::parse(URL).unwrap();
    let jkt = agent_jkt();
    let expected = ProofExpectations {
        htm: "POST",
        htu: &htu,
        access_token,
        expected_jkt: &jkt,
        now: NOW,
        max_age_secs: 60,
        skew_secs: 5,
        known_key: None,
    };
    verify_proof(proof, &expected)
}

fn check(name: &str, proof: &str, expected: Result<(), (ProofError, &str)>) {
    let got = verify(proof, Some(ACCESS_TOKEN)).map(|_| ()).map_err(|error| {
        let code = error.code();
        (error, code)
    });
    assert_eq!(got, expected, "case `{name}`");
}

fn refused(error: ProofError, code: &str) -> Result<(), (ProofError, &str)> {
    Err((error, code))
}

/// A proof by the agent with one claim changed.
fn claim(name: &str, value: Value) -> String {
    compact(&header(), &with(claims(), name, value), &key(7))
}

#[test]
fn a_valid_proof_passes_and_says_who_signed_it() {
    let made = sign_proof(
        &ProofClaims { jti: "p-1", htm: "POST", htu: URL, iat: NOW, access_token: Some(ACCESS_TOKEN) },
        &key(7),
    )
    .unwrap();
    let proof = verify(&made, Some(ACCESS_TOKEN)).unwrap();
    assert_eq!((proof.jti(), proof.iat(), proof.jkt()), ("p-1", NOW, agent_jkt().as_str()));
    check("hand-made", &compact(&header(), &claims(), &key(7)), Ok(()));
    check("typ case", &compact(&with(header(), "typ", json!("DPoP+JWT")), &claims(), &key(7)), Ok(()));
    let no_ath =
        sign_proof(&ProofClaims { jti: "p-2", htm: "POST", htu: URL, iat: NOW, access_token: None }, &key(7)).unwrap();
    assert_eq!(verify(&no_ath, None).map(|p| p.jti().to_owned()), Ok("p-2".to_owned()));
    // Without an access token to bind to, an `ath` is not checked (RFC 9449 defines no check).
    assert!(verify(&made, None).is_ok());
}

#[test]
fn keys() {
    let other = sign_proof(
        &ProofClaims { jti: "p-1", htm: "POST", htu: URL, iat: NOW, access_token: Some(ACCESS_TOKEN) },
        &key(8),
    )
    .unwrap();
    check("from another key", &other, refused(ProofError::KeyMismatch, "proof.key_mismatch"));
    check(
        "agent's jwk, another signer",
        &compact(&header(), &claims(), &key(8)),
        refused(ProofError::BadSignature, "proof.bad_signature"),
    );
    let mut private = agent_jwk();
    private["d"] = json!(b64(key(7).to_bytes()));
    check(
        "private jwk",
        &compact(&with(header(), "jwk", private), &claims(), &key(7)),
        refused(ProofError::BadJwk(JwkError::PrivateKeyMaterial), "proof.private_jwk"),
    );
    check(
        "no jwk",
        &compact(&without(header(), "jwk"), &claims(), &key(7)),
        refused(ProofError::MissingJwk, "proof.missing_jwk"),
    );
    let ec = json!({"kty": "EC", "crv": "P-256", "x": "a", "y": "b"});
    check(
        "EC jwk",
        &compact(&with(header(), "jwk", ec), &claims(), &key(7)),
        refused(ProofError::BadJwk(JwkError::UnsupportedKeyType("EC".into())), "proof.bad_jwk"),
    );
    let kid_only = with(without(header(), "jwk"), "kid", json!("k1"));
    check(
        "kid instead of jwk",
        &compact(&kid_only, &claims(), &key(7)),
        refused(ProofError::MissingJwk, "proof.missing_jwk"),
    );
}

#[test]
fn header_rules() {
    check(
        "typ JWT",
        &compact(&with(header(), "typ", json!("JWT")), &claims(), &key(7)),
        refused(ProofError::WrongTyp(Some("JWT".into())), "proof.wrong_typ"),
    );
    check(
        "no typ",
        &compact(&without(header(), "typ"), &claims(), &key(7)),
        refused(ProofError::WrongTyp(None), "proof.wrong_typ"),
    );
    let mandate = compact(&json!({"alg": "EdDSA", "typ": "mandate+jwt", "kid": "k1"}), &claims(), &key(7));
    check(
        "a mandate as a proof",
        &mandate,
        refused(ProofError::WrongTyp(Some("mandate+jwt".into())), "proof.wrong_typ"),
    );
    for alg in ["none", "HS256", "ES256"] {
        let token = compact(&with(header(), "alg", json!(alg)), &claims(), &key(7));
        check(
            alg,
            &token,
            refused(ProofError::Decode(DecodeError::AlgNotAllowed(alg.into())), "proof.alg_not_allowed"),
        );
    }
    let header_text = header().to_string();
    let dup = compact_text(&header_text, r#"{"jti":"a","jti":"b"}"#, &key(7));
    check(
        "duplicate jti",
        &dup,
        refused(
            ProofError::Decode(DecodeError::DuplicateMember { part: Part::Payload, name: "jti".into() }),
            "proof.duplicate_claim",
        ),
    );
    let big = claim("pad", json!("x".repeat(4_096)));
    check(
        "oversized",
        &big,
        refused(ProofError::Decode(DecodeError::TooLarge { len: big.len(), max: 4_096 }), "proof.too_large"),
    );
    check("empty", "", refused(ProofError::Missing, "proof.missing"));
    check("garbage", "not a proof", refused(ProofError::Decode(DecodeError::PartCount(1)), "proof.malformed"));
}

#[test]
fn time() {
    check("60 s old", &claim("iat", json!(NOW - 60)), Ok(()));
    check(
        "stale",
        &claim("iat", json!(NOW - 61)),
        refused(ProofError::Stale { iat: NOW - 61, now: NOW }, "proof.stale"),
    );
    check("5 s ahead", &claim("iat", json!(NOW + 5)), Ok(()));
    check(
        "future",
        &claim("iat", json!(NOW + 6)),
        refused(ProofError::IssuedInFuture { iat: NOW + 6, now: NOW }, "proof.issued_in_future"),
    );
    check(
        "iat string",
        &claim("iat", json!(NOW.to_string())),
        refused(ProofError::InvalidClaim("iat"), "proof.invalid_claim"),
    );
    check(
        "iat float",
        &claim("iat", json!(1_800_000_000.5)),
        refused(ProofError::InvalidClaim("iat"), "proof.invalid_claim"),
    );
    check(
        "no iat",
        &compact(&header(), &without(claims(), "iat"), &key(7)),
        refused(ProofError::MissingClaim("iat"), "proof.missing_claim"),
    );
}

#[test]
fn request_binding() {
    let htm = |found: &str| ProofError::HtmMismatch { expected: "POST".into(), found: found.into() };
    check("wrong htm", &claim("htm", json!("GET")), refused(htm("GET"), "proof.htm_mismatch"));
    check("htm is case-sensitive", &claim("htm", json!("post")), refused(htm("post"), "proof.htm_mismatch"));
    let htu = |found: &str| ProofError::HtuMismatch { expected: URL.into(), found: found.into() };
    for other in [
        "https://mandate.example/v1/mandates",
        "https://evil.example/v1/authorize",
        "http://mandate.example/v1/authorize",
        "https://mandate.example:8443/v1/authorize",
        "https://mandate.example/v1/authorize/",
        "https://mandate.example/V1/authorize",
    ] {
        check(other, &claim("htu", json!(other)), refused(htu(other), "proof.htu_mismatch"));
    }
    for same in [
        "https://mandate.example/v1/authorize?tool=erp",
        "https://mandate.example/v1/authorize#x",
        "HTTPS://MANDATE.example:443/v1/authorize",
    ] {
        check(same, &claim("htu", json!(same)), Ok(()));
    }
    check(
        "htu not a URL",
        &claim("htu", json!("/v1/authorize")),
        refused(ProofError::InvalidClaim("htu"), "proof.invalid_claim"),
    );
    check("htu a number", &claim("htu", json!(1)), refused(ProofError::InvalidClaim("htu"), "proof.invalid_claim"));
    check(
        "no htm",
        &compact(&header(), &without(claims(), "htm"), &key(7)),
        refused(ProofError::MissingClaim("htm"), "proof.missing_claim"),
    );

    check(
        "no ath",
        &compact(&header(), &without(claims(), "ath"), &key(7)),
        refused(ProofError::MissingClaim("ath"), "proof.missing_claim"),
    );
    check(
        "ath of another token",
        &claim("ath", json!(access_token_hash("another"))),
        refused(ProofError::AthMismatch, "proof.ath_mismatch"),
    );
    check("ath a number", &claim("ath", json!(1)), refused(ProofError::InvalidClaim("ath"), "proof.invalid_claim"));
}

#[test]
fn jti() {
    check(
        "no jti",
        &compact(&header(), &without(claims(), "jti"), &key(7)),
        refused(ProofError::MissingClaim("jti"), "proof.missing_claim"),
    );
    check("empty jti", &claim("jti", json!("")), refused(ProofError::InvalidClaim("jti"), "proof.invalid_claim"));
    check("jti a number", &claim("jti", json!(7)), refused(ProofError::InvalidClaim("jti"), "proof.invalid_claim"));
    check("128-byte jti", &claim("jti", json!("j".repeat(MAX_JTI_BYTES))), Ok(()));
    check(
        "129-byte jti",
        &claim("jti", json!("j".repeat(MAX_JTI_BYTES + 1))),
        refused(ProofError::InvalidClaim("jti"), "proof.invalid_claim"),
    );
}

#[test]
fn a_replayed_proof_is_caught_by_the_cache() {
    let mut cache = ReplayCache::new(16, 65);
    let proof = verify(&compact(&header(), &claims(), &key(7)), Some(ACCESS_TOKEN)).unwrap();
    assert_eq!(cache.check_and_insert(proof.jti(), NOW), Ok(()));
    let again = verify(&compact(&header(), &claims(), &key(7)), Some(ACCESS_TOKEN)).unwrap();
    let refused = cache.check_and_insert(again.jti(), NOW + 1).map_err(|e| (e.clone(), e.code()));
    assert_eq!(refused, Err((ReplayError::Replayed, "proof.replayed")));
}
