//! Tests of ID token verification against a local issuer: one fixed RSA key and one fixed Ed25519
//! key, ID tokens signed here, and the exact error each hostile token must get.
//!
//! The RSA key is a 2048-bit test key generated once with `openssl genrsa 2048` and written out as
//! JWK members (in `crates/mandate-test/fixtures/rsa_test_key.rs`, shared with the server's tests), so
//! the tests need no key generation and no PEM parser; it protects nothing. Hostile
//! tokens are assembled by hand (header and payload texts signed over exactly those bytes), so the
//! corpus does not depend on the code under test. One vector comes from RFC 7515 appendix A.2, so
//! the RS256 verification is also checked against a signature we did not make.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use rsa::RsaPrivateKey;
use serde_json::json;
use std::sync::OnceLock;

/// The fixed "current time" of every test, unix seconds.
const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://idp.example.org/realms/corp";
const AUDIENCE: &str = "mandate";

// The test RSA key (2048 bits, `e` = 65537) as JWK members `RSA_N`, `RSA_E`, `RSA_D`, `RSA_P` and
// `RSA_Q`, shared with mandate-test's local OIDC issuer.
include!("../../../mandate-test/fixtures/rsa_test_key.rs");

/// The modulus of another test key, 1024 bits: too small to trust.
const RSA_1024_N: &str = "sSI-2AwdxypK4vkluEMNfdEyMfHW0ToylClAU02rgXfLotbZ5dFS1ewDzleJrRXVOas3tL9zzFqDl7G_SFBB0sXSKPw_tSxFK4_pCLhS6XDeJZ-2O0xLmD2psLsSdTWm9v5FizzTdt7X4ntqpLjVYNDVw8qv0A8Fm0ucLLTyojE";

/// RFC 7515 appendix A.2: the RS256 example's public key and its compact serialization.
const RFC7515_A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const RFC7515_A2_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn uint(text: &str) -> BigUint {
    BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(text).expect("base64url"))
}

/// The test RSA private key, built once (validation and CRT precomputation are slow unoptimised).
fn rsa_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        RsaPrivateKey::from_components(uint(RSA_N), uint(RSA_E), uint(RSA_D), vec![uint(RSA_P), uint(RSA_Q)])
            .expect("the test RSA key is valid")
    })
}

/// The issuer's Ed25519 key.
fn ed_key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn rsa_sign(input: &[u8]) -> Vec<u8> {
    rsa_key().sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input)).expect("RSA signing")
}

fn ed_sign(input: &[u8]) -> Vec<u8> {
    ed_key().sign(input).to_bytes().to_vec()
}

/// HMAC-SHA-256 (RFC 2104), enough to forge the classic `HS256` confusion token.
fn hmac_sha256(secret: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if secret.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(secret));
    } else {
        block[..secret.len()].copy_from_slice(secret);
    }
    let inner = Sha256::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize().to_vec()
}

/// A compact JWS of raw header and payload texts, signed over exactly those bytes.
fn compact_text(header: &str, payload: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let signature = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(signature))
}

fn compact(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    compact_text(&header.to_string(), &claims.to_string(), sign)
}

fn rs256(claims: &Value) -> String {
    compact(&json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}), claims, rsa_sign)
}

fn eddsa(claims: &Value) -> String {
    compact(&json!({"alg": "EdDSA", "typ": "JWT", "kid": "ed-1"}), claims, ed_sign)
}

/// The claims of a valid ID token for alice.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "email": "alice@example.org",
        "email_verified": true,
        "groups": ["staff", "finance"],
        "iat": NOW - 60,
        "exp": NOW + 300,
        "auth_time": NOW - 120,
    })
}

/// [`claims`] with members replaced or added; a `null` removes the member.
fn with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().expect("an object") {
        match value {
            Value::Null => claims.as_object_mut().expect("an object").remove(name),
            _ => claims.as_object_mut().expect("an object").insert(name.clone(), value.clone()),
        };
    }
    claims
}

fn rsa_jwk() -> Value {
    json!({"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": RSA_N, "e": RSA_E})
}

fn ed_jwk() -> Value {
    let mut jwk = Ed25519PublicJwk::from_verifying_key(ed_key().verifying_key()).to_json();
    jwk["kid"] = json!("ed-1");
    jwk["use"] = json!("sig");
    jwk
}

/// The issuer's JWKS: the RSA key and the Ed25519 key.
fn issuer_keys() -> IssuerKeys {
    IssuerKeys::from_jwks_json(&json!({"keys": [rsa_jwk(), ed_jwk()]})).expect("the test JWKS is valid")
}

fn settings() -> OidcSettings {
    OidcSettings::new(ISSUER, AUDIENCE)
}

/// Verifies `token` with the issuer's keys and default settings; `Ok` holds the human and groups.
fn check(token: &str, expected: Result<(&str, &[&str]), OidcError>) {
    check_with(&issuer_keys(), &settings(), token, expected);
}

fn check_with(keys: &IssuerKeys, settings: &OidcSettings, token: &str, expected: Result<(&str, &[&str]), OidcError>) {
    let got = verify_id_token(token, keys, settings, NOW)
        .map(|id| (id.human.to_string(), id.groups.iter().map(ToString::to_string).collect::<Vec<_>>()));
    let expected = expected.map(|(human, groups)| (human.to_owned(), groups.iter().map(|g| (*g).to_owned()).collect()));
    assert_eq!(got, expected, "token {token}");
}

const ALICE: Result<(&str, &[&str]), OidcError> = Ok(("alice@example.org", &["finance", "staff"]));

#[test]
fn valid_tokens_name_the_human_and_groups() {
    check(&rs256(&claims()), ALICE);
    check(&eddsa(&claims()), ALICE);
    check(&rs256(&with(json!({"aud": [AUDIENCE, "other"], "azp": AUDIENCE}))), ALICE);
    check(&rs256(&with(json!({"aud": [AUDIENCE]}))), ALICE);
    check(&rs256(&with(json!({"azp": AUDIENCE}))), ALICE);
    check(&rs256(&with(json!({"email_verified": null}))), ALICE);
    check(&rs256(&with(json!({"groups": ["staff", "finance", "staff"]}))), ALICE);
    check(&rs256(&with(json!({"groups": null}))), Ok(("alice@example.org", &[])));
    check(&rs256(&with(json!({"groups": []}))), Ok(("alice@example.org", &[])));
    check(&rs256(&with(json!({"nbf": NOW - 60}))), ALICE);
    // Within the skew of 60 seconds.
    check(&rs256(&with(json!({"exp": NOW - 59}))), ALICE);
    check(&rs256(&with(json!({"nbf": NOW + 60, "iat": NOW + 60}))), ALICE);
    // `typ` may be absent or `JWT` in any case.
    check(&compact(&json!({"alg": "RS256", "kid": "rsa-1"}), &claims(), rsa_sign), ALICE);
    check(&compact(&json!({"alg": "EdDSA", "typ": "jwt", "kid": "ed-1"}), &claims(), ed_sign), ALICE);

    let id = verify_id_token(&eddsa(&claims()), &issuer_keys(), &settings(), NOW).expect("valid");
    assert_eq!(id.subject, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    assert_eq!(id.expires_at, NOW + 300);
    assert_eq!(id.nonce, None, "no nonce in the token, none in the identity");
    let id = verify_id_token(&eddsa(&with(json!({"nonce": "n-0S6_WzA2Mj"}))), &issuer_keys(), &settings(), NOW)
        .expect("valid");
    assert_eq!(id.nonce.as_deref(), Some("n-0S6_WzA2Mj"), "the verified token's nonce, for the relying party");
    check(&rs256(&with(json!({"nonce": 42}))), Err(OidcError::InvalidClaim("nonce".into())));
}

#[test]
fn one_key_without_kid_verifies_tokens_without_kid() {
    let rsa = json!({"kty": "RSA", "n": RSA_N, "e": RSA_E});
    let keys = IssuerKeys::from_jwks_json(&json!({"keys": [rsa]})).expect("valid");
    check_with(&keys, &settings(), &compact(&json!({"alg": "RS256"}), &claims(), rsa_sign), ALICE);
    // A `kid` the JWKS does not spell is not the one key.
    check_with(&keys, &settings(), &rs256(&claims()), Err(OidcError::UnknownKid("rsa-1".into())));
    // With both keys, a token must say which.
    check(&compact(&json!({"alg": "RS256"}), &claims(), rsa_sign), Err(OidcError::MissingKid));
}

#[test]
fn rfc7515_rs256_example_verifies() {
    let keys = IssuerKeys::from_jwks_json(&json!({"keys": [{"kty": "RSA", "n": RFC7515_A2_N, "e": "AQAB"}]}))
        .expect("the RFC key is valid");
    // The signature verifies; the claims are the RFC's (`iss` "joe"), so the issuer check is next.
    check_with(&keys, &settings(), RFC7515_A2_TOKEN, Err(OidcError::WrongIssuer("joe".into())));
    let joe = OidcSettings::new("joe", AUDIENCE);
    check_with(&keys, &joe, RFC7515_A2_TOKEN, Err(OidcError::MissingClaim("aud".into())));
    // One bit of the signature flipped.
    let mut forged = RFC7515_A2_TOKEN.to_owned();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == 'w' { 'Q' } else { 'w' });
    check_with(&keys, &joe, &forged, Err(OidcError::BadSignature));
}

#[test]
fn issuer_audience_and_azp() {
    check(
        &rs256(&with(json!({"iss": "https://idp.example.org/realms/other"}))),
        Err(OidcError::WrongIssuer("https://idp.example.org/realms/other".into())),
    );
    check(&rs256(&with(json!({"iss": format!("{ISSUER}/")}))), Err(OidcError::WrongIssuer(format!("{ISSUER}/"))));
    check(&rs256(&with(json!({"iss": null}))), Err(OidcError::MissingClaim("iss".into())));
    check(&rs256(&with(json!({"aud": "other"}))), Err(OidcError::WrongAudience));
    check(&rs256(&with(json!({"aud": "Mandate"}))), Err(OidcError::WrongAudience));
    check(&rs256(&with(json!({"aud": ["other", "another"], "azp": AUDIENCE}))), Err(OidcError::WrongAudience));
    check(&rs256(&with(json!({"aud": null}))), Err(OidcError::MissingClaim("aud".into())));
    check(&rs256(&with(json!({"aud": [AUDIENCE, "other"]}))), Err(OidcError::MissingClaim("azp".into())));
    check(
        &rs256(&with(json!({"aud": [AUDIENCE, "other"], "azp": "other"}))),
        Err(OidcError::WrongAuthorizedParty("other".into())),
    );
    check(&rs256(&with(json!({"azp": "other"}))), Err(OidcError::WrongAuthorizedParty("other".into())));
    check(&rs256(&with(json!({"azp": [AUDIENCE]}))), Err(OidcError::InvalidClaim("azp".into())));
}

#[test]
fn validity_times() {
    check(&rs256(&with(json!({"exp": NOW - 60}))), Err(OidcError::Expired { exp: NOW - 60, now: NOW }));
    check(&rs256(&with(json!({"exp": null}))), Err(OidcError::MissingClaim("exp".into())));
    check(&rs256(&with(json!({"exp": "1800000300"}))), Err(OidcError::InvalidClaim("exp".into())));
    check(&rs256(&with(json!({"nbf": NOW + 61}))), Err(OidcError::NotYetValid { nbf: NOW + 61, now: NOW }));
    check(&rs256(&with(json!({"iat": null}))), Err(OidcError::MissingClaim("iat".into())));
    check(&rs256(&with(json!({"iat": NOW + 61}))), Err(OidcError::IssuedInFuture { iat: NOW + 61, now: NOW }));
    check(&rs256(&with(json!({"iat": 1.8e9}))), Err(OidcError::InvalidClaim("iat".into())));

    let max_age = OidcSettings { max_age_secs: Some(600), ..settings() };
    let keys = issuer_keys();
    check_with(&keys, &max_age, &rs256(&claims()), ALICE);
    check_with(&keys, &max_age, &rs256(&with(json!({"auth_time": NOW - 660}))), ALICE);
    check_with(
        &keys,
        &max_age,
        &rs256(&with(json!({"auth_time": NOW - 661}))),
        Err(OidcError::AuthTooOld { auth_time: NOW - 661, max_age: 600 }),
    );
    check_with(
        &keys,
        &max_age,
        &rs256(&with(json!({"auth_time": null}))),
        Err(OidcError::MissingClaim("auth_time".into())),
    );
    check_with(
        &keys,
        &max_age,
        &rs256(&with(json!({"auth_time": "x"}))),
        Err(OidcError::InvalidClaim("auth_time".into())),
    );
}

#[test]
fn subject_username_and_email_verification() {
    check(&rs256(&with(json!({"sub": null}))), Err(OidcError::MissingClaim("sub".into())));
    check(&rs256(&with(json!({"sub": ""}))), Err(OidcError::InvalidClaim("sub".into())));
    check(
        &rs256(&with(json!({"email": "Alice@Example.org"}))),
        Err(OidcError::UsernameNotLowerCase { claim: "email".into(), value: "Alice@Example.org".into() }),
    );
    check(
        &rs256(&with(json!({"email": "alice"}))),
        Err(OidcError::InvalidUsername { claim: "email".into(), value: "alice".into() }),
    );
    check(
        &rs256(&with(json!({"email": "Al ice@example.org"}))),
        Err(OidcError::InvalidUsername { claim: "email".into(), value: "Al ice@example.org".into() }),
    );
    check(&rs256(&with(json!({"email": null}))), Err(OidcError::MissingClaim("email".into())));
    check(&rs256(&with(json!({"email": ["alice@example.org"]}))), Err(OidcError::InvalidClaim("email".into())));
    check(&rs256(&with(json!({"email_verified": false}))), Err(OidcError::EmailUnverified("alice@example.org".into())));
    check(&rs256(&with(json!({"email_verified": "true"}))), Err(OidcError::InvalidClaim("email_verified".into())));

    // Another username claim: `email_verified` is about `email`, so it no longer matters.
    let preferred = OidcSettings { username_claim: "preferred_username".into(), ..settings() };
    let token = rs256(&with(json!({"preferred_username": "bob@example.org", "email_verified": false})));
    check_with(&issuer_keys(), &preferred, &token, Ok(("bob@example.org", &["finance", "staff"])));
    check_with(
        &issuer_keys(),
        &preferred,
        &rs256(&claims()),
        Err(OidcError::MissingClaim("preferred_username".into())),
    );
}

#[test]
fn groups_are_valid_names_or_the_token_is_refused() {
    let invalid = |value: &str| Err(OidcError::InvalidGroups { claim: "groups".into(), value: value.into() });
    check(&rs256(&with(json!({"groups": ["finance", "Domain Admins"]}))), invalid(r#""Domain Admins""#));
    check(&rs256(&with(json!({"groups": ["finance", "/finance"]}))), invalid(r#""/finance""#));
    check(&rs256(&with(json!({"groups": ["finance", 7]}))), invalid("7"));
    check(&rs256(&with(json!({"groups": "finance"}))), invalid(r#""finance""#));
    check(&rs256(&with(json!({"groups": {"finance": true}}))), invalid(r#"{"finance":true}"#));

    let roles = OidcSettings { groups_claim: "roles".into(), ..settings() };
    check_with(
        &issuer_keys(),
        &roles,
        &rs256(&with(json!({"roles": ["approvers"]}))),
        Ok(("alice@example.org", &["approvers"])),
    );
}

#[test]
fn algorithms_keys_and_signatures() {
    let header = |value: Value| value;
    // `alg: none` with an empty signature.
    let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(claims().to_string()));
    check(&none, Err(OidcError::AlgNotAllowed("none".into())));
    // The classic confusion: HS256 keyed with the RSA public key's bytes.
    let hs256 = compact(&header(json!({"alg": "HS256", "kid": "rsa-1"})), &claims(), |input| {
        hmac_sha256(&URL_SAFE_NO_PAD.decode(RSA_N).expect("base64url"), input)
    });
    check(&hs256, Err(OidcError::AlgNotAllowed("HS256".into())));
    for alg in ["rs256", "RS384", "PS256", "ES256", "Ed25519"] {
        let token = compact(&json!({"alg": alg, "kid": "rsa-1"}), &claims(), rsa_sign);
        check(&token, Err(OidcError::AlgNotAllowed(alg.into())));
    }
    check(
        &compact(&json!({"alg": ["RS256"], "kid": "rsa-1"}), &claims(), rsa_sign),
        Err(OidcError::AlgNotAllowed(r#"["RS256"]"#.into())),
    );
    check(
        &compact(&json!({"kid": "rsa-1"}), &claims(), rsa_sign),
        Err(OidcError::Malformed(DecodeError::MissingHeader("alg"))),
    );
    // An RS256 header over the Ed25519 key, and an EdDSA header over the RSA key.
    check(
        &compact(&json!({"alg": "RS256", "kid": "ed-1"}), &claims(), rsa_sign),
        Err(OidcError::AlgKeyMismatch { alg: "RS256".into(), key: "EdDSA" }),
    );
    check(
        &compact(&json!({"alg": "EdDSA", "kid": "rsa-1"}), &claims(), ed_sign),
        Err(OidcError::AlgKeyMismatch { alg: "EdDSA".into(), key: "RS256" }),
    );
    check(
        &compact(&json!({"alg": "RS256", "kid": "rsa-2"}), &claims(), rsa_sign),
        Err(OidcError::UnknownKid("rsa-2".into())),
    );
    // A key in the header is never trusted: the `kid` still picks the issuer's key.
    let attacker = SigningKey::from_bytes(&[9; 32]);
    let embedded = Ed25519PublicJwk::from_verifying_key(attacker.verifying_key()).to_json();
    let token = compact(&json!({"alg": "EdDSA", "kid": "ed-1", "jwk": embedded}), &claims(), |input| {
        attacker.sign(input).to_bytes().to_vec()
    });
    check(&token, Err(OidcError::BadSignature));

    // A payload changed after signing, for each algorithm.
    for token in [rs256(&claims()), eddsa(&claims())] {
        let [header, _, signature]: [&str; 3] = token.split('.').collect::<Vec<_>>().try_into().expect("3 parts");
        let tampered = with(json!({"groups": ["finance", "staff", "admins"]}));
        check(&format!("{header}.{}.{signature}", b64(tampered.to_string())), Err(OidcError::BadSignature));
    }
    // Signatures of the wrong length.
    let token = rs256(&claims());
    let (signing_input, _) = token.rsplit_once('.').expect("3 parts");
    let short = rsa_sign(signing_input.as_bytes());
    check(&format!("{signing_input}.{}", b64(&short[1..])), Err(OidcError::BadSignature));
    check(&format!("{signing_input}.{}", b64([&[0u8][..], &short].concat())), Err(OidcError::BadSignature));
    let token = eddsa(&claims());
    let (signing_input, _) = token.rsplit_once('.').expect("3 parts");
    check(&format!("{signing_input}.{}", b64([0u8; 63])), Err(OidcError::BadSignature));
}

#[test]
fn strict_decoding() {
    let rs_header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    check(
        &compact(&json!({"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"}), &claims(), rsa_sign),
        Err(OidcError::WrongTyp("at+jwt".into())),
    );
    check(
        &compact(&json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}), &claims(), rsa_sign),
        Err(OidcError::Malformed(DecodeError::CritNotSupported)),
    );
    check(
        &compact(&json!({"alg": "RS256", "kid": 1}), &claims(), rsa_sign),
        Err(OidcError::Malformed(DecodeError::InvalidHeader("kid"))),
    );
    // Duplicate members: two parsers must never read different claims from the same bytes.
    let payload = claims().to_string().replacen('{', r#"{"email":"mallory@example.org","#, 1);
    check(
        &compact_text(rs_header, &payload, rsa_sign),
        Err(OidcError::Malformed(DecodeError::DuplicateMember { part: Part::Payload, name: "email".into() })),
    );
    let deep = with(json!({"x": [[[[[[[[1]]]]]]]]}));
    check(&rs256(&deep), Err(OidcError::Malformed(DecodeError::TooDeep { part: Part::Payload, max: 8 })));
    let large = with(json!({"padding": "x".repeat(16 * 1024)}));
    let token = rs256(&large);
    check(&token, Err(OidcError::Malformed(DecodeError::TooLarge { len: token.len(), max: 16 * 1024 })));
    let token = rs256(&claims());
    check(&format!("{token}."), Err(OidcError::Malformed(DecodeError::PartCount(4))));
    let (signing_input, _) = token.rsplit_once('.').expect("3 parts");
    check(signing_input, Err(OidcError::Malformed(DecodeError::PartCount(2))));
    check(
        &format!("{token}="),
        Err(OidcError::Malformed(DecodeError::Base64 {
            part: Part::Signature,
            fault: crate::jose::Base64Fault::Padding,
        })),
    );
}

/// Checks a JWKS: `Ok` holds the kept `kid`s and the skipped keys with their reasons.
#[allow(clippy::type_complexity)]
fn check_jwks(jwks: Value, expected: Result<(Vec<Option<&str>>, Vec<(Option<&str>, &str)>), OidcError>) {
    let got = IssuerKeys::from_jwks_json(&jwks).map(|keys| {
        let kids = keys.kids().map(|kid| kid.map(str::to_owned)).collect::<Vec<_>>();
        let skipped = keys.skipped().iter().map(|s| (s.kid.clone(), s.reason.clone())).collect::<Vec<_>>();
        (kids, skipped)
    });
    let expected = expected.map(|(kids, skipped)| {
        let kids = kids.into_iter().map(|kid| kid.map(str::to_owned)).collect::<Vec<_>>();
        let skipped = skipped.into_iter().map(|(kid, reason)| (kid.map(str::to_owned), reason.to_owned())).collect();
        (kids, skipped)
    });
    assert_eq!(got, expected, "{jwks}");
}

#[test]
fn jwks_keeps_only_public_signature_keys() {
    let enc = json!({"kty": "RSA", "kid": "enc-1", "use": "enc", "n": RSA_N, "e": RSA_E});
    let private = json!({"kty": "RSA", "kid": "priv-1", "n": RSA_N, "e": RSA_E, "d": RSA_D});
    let small = json!({"kty": "RSA", "kid": "small-1", "n": RSA_1024_N, "e": RSA_E});
    let mixed = json!({"keys": [
        enc,
        private,
        small,
        {"kty": "RSA", "kid": "rs384", "alg": "RS384", "n": RSA_N, "e": RSA_E},
        {"kty": "RSA", "kid": "wrap", "key_ops": ["wrapKey"], "n": RSA_N, "e": RSA_E},
        {"kty": "RSA", "kid": "even-e", "n": RSA_N, "e": "Ag"},
        {"kty": "RSA", "kid": "padded", "n": format!("{RSA_N}=="), "e": RSA_E},
        {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "OKP", "kid": "x-1", "crv": "X25519", "x": "AA"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kid": 7, "kty": "RSA", "n": RSA_N, "e": RSA_E},
        "not a key",
        rsa_jwk(),
    ]});
    check_jwks(
        mixed.clone(),
        Ok((
            vec![Some("rsa-1")],
            vec![
                (Some("enc-1"), "the key is for `enc`, not `sig`"),
                (Some("priv-1"), "the key contains private material (`d`)"),
                (Some("small-1"), "the RSA modulus has 1024 bits, fewer than 2048"),
                (Some("rs384"), "the key is for the algorithm `RS384`, not `RS256`"),
                (Some("wrap"), "`key_ops` does not include `verify`"),
                (Some("even-e"), "not a usable RSA public key: invalid exponent"),
                (Some("padded"), "`n` is not canonical base64url"),
                (Some("ec-1"), "unsupported key type `EC`"),
                (Some("x-1"), "unsupported curve `X25519`: only `Ed25519` is accepted"),
                (Some("hmac"), "the key contains private material (`k`)"),
                (None, "`kid` is not a string"),
                (None, "the key is not a JSON object"),
            ],
        )),
    );
    // The one good key verifies tokens.
    let keys = IssuerKeys::from_jwks_json(&mixed).expect("valid");
    check_with(&keys, &settings(), &rs256(&claims()), ALICE);
    check_with(
        &keys,
        &settings(),
        &compact(&json!({"alg": "RS256", "kid": "enc-1"}), &claims(), rsa_sign),
        Err(OidcError::UnknownKid("enc-1".into())),
    );
    check_jwks(json!({"keys": [rsa_jwk(), ed_jwk()]}), Ok((vec![Some("rsa-1"), Some("ed-1")], vec![])));
}

#[test]
fn jwks_without_a_usable_key_or_with_ambiguous_kids_is_refused() {
    let enc = json!({"kty": "RSA", "kid": "enc-1", "use": "enc", "n": RSA_N, "e": RSA_E});
    check_jwks(json!({"keys": [enc]}), Err(OidcError::NoUsableKey { skipped: 1 }));
    check_jwks(json!({"keys": []}), Err(OidcError::NoUsableKey { skipped: 0 }));
    let malformed = || Err(OidcError::JwksMalformed("expected an object with a `keys` array".into()));
    check_jwks(json!([rsa_jwk()]), malformed());
    check_jwks(json!({"keys": rsa_jwk()}), malformed());
    check_jwks(rsa_jwk(), malformed());
    let mut twin = ed_jwk();
    twin["kid"] = json!("rsa-1");
    check_jwks(json!({"keys": [rsa_jwk(), twin]}), Err(OidcError::DuplicateKid("rsa-1".into())));
    let mut anonymous = ed_jwk();
    anonymous.as_object_mut().expect("an object").remove("kid");
    check_jwks(json!({"keys": [rsa_jwk(), anonymous]}), Err(OidcError::KidRequired));
}

#[test]
fn codes_are_stable_and_messages_follow_the_style() {
    let cases = [
        (OidcError::Malformed(DecodeError::PartCount(2)), "oidc.malformed"),
        (OidcError::Malformed(DecodeError::TooLarge { len: 1, max: 0 }), "oidc.too_large"),
        (OidcError::Malformed(DecodeError::TooDeep { part: Part::Header, max: 8 }), "oidc.too_deep"),
        (
            OidcError::Malformed(DecodeError::DuplicateMember { part: Part::Payload, name: "exp".into() }),
            "oidc.duplicate_claim",
        ),
        (OidcError::Malformed(DecodeError::CritNotSupported), "oidc.crit_not_supported"),
        (OidcError::AlgNotAllowed("none".into()), "oidc.alg_not_allowed"),
        (OidcError::WrongTyp("at+jwt".into()), "oidc.wrong_typ"),
        (OidcError::MissingKid, "oidc.missing_kid"),
        (OidcError::UnknownKid("k".into()), "oidc.unknown_kid"),
        (OidcError::AlgKeyMismatch { alg: "RS256".into(), key: "EdDSA" }, "oidc.alg_key_mismatch"),
        (OidcError::BadSignature, "oidc.bad_signature"),
        (OidcError::WrongIssuer("x".into()), "oidc.wrong_issuer"),
        (OidcError::WrongAudience, "oidc.wrong_audience"),
        (OidcError::WrongAuthorizedParty("x".into()), "oidc.wrong_azp"),
        (OidcError::Expired { exp: 1, now: 2 }, "oidc.expired"),
        (OidcError::NotYetValid { nbf: 2, now: 1 }, "oidc.not_yet_valid"),
        (OidcError::IssuedInFuture { iat: 2, now: 1 }, "oidc.issued_in_future"),
        (OidcError::AuthTooOld { auth_time: 1, max_age: 0 }, "oidc.auth_too_old"),
        (OidcError::MissingClaim("sub".into()), "oidc.missing_claim"),
        (OidcError::InvalidClaim("sub".into()), "oidc.invalid_claim"),
        (OidcError::InvalidUsername { claim: "email".into(), value: "x".into() }, "oidc.invalid_username"),
        (OidcError::UsernameNotLowerCase { claim: "email".into(), value: "X@y.z".into() }, "oidc.invalid_username"),
        (OidcError::EmailUnverified("x".into()), "oidc.email_unverified"),
        (OidcError::InvalidGroups { claim: "groups".into(), value: "7".into() }, "oidc.invalid_groups"),
        (OidcError::JwksMalformed("x".into()), "oidc.bad_jwks"),
        (OidcError::NoUsableKey { skipped: 0 }, "oidc.bad_jwks"),
        (OidcError::DuplicateKid("k".into()), "oidc.bad_jwks"),
        (OidcError::KidRequired, "oidc.bad_jwks"),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code, "{error:?}");
        let message = error.to_string();
        assert!(message.starts_with(|c: char| !c.is_ascii_uppercase()), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}
