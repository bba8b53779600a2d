//! A local OIDC issuer for tests: a fixed Ed25519 key (and the shared fixed RSA key), its JWKS written
//! to a file as an operator would, and ID tokens signed here, hostile ones included. No network.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use mandate_core::human::Role;
use mandate_core::id::Group;
use mandate_core::jwk::Ed25519PublicJwk;
use mandate_core::oidc::{IssuerKeys, OidcSettings};
use mandate_engine::oidc::OidcConfig;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

mod rsa_key {
    include!("../fixtures/rsa_test_key.rs");
}

/// The issuer identifier of the test IdP.
pub const IDP_ISSUER: &str = "https://idp.example.org/realms/corp";

/// Mandate's client id at the test IdP.
pub const IDP_AUDIENCE: &str = "mandate";

/// The `kid` of the test IdP's RSA key.
pub const RSA_KID: &str = "rsa-1";

/// An IdP with an Ed25519 key from a one-byte seed (`kid` `ed-<seed>`) and the fixed RSA key.
#[derive(Debug, Clone)]
pub struct TestIssuer {
    key: SigningKey,
    kid: String,
}

impl TestIssuer {
    /// The issuer whose Ed25519 key is `[seed; 32]`.
    pub fn new(seed: u8) -> Self {
        Self { key: SigningKey::from_bytes(&[seed; 32]), kid: format!("ed-{seed}") }
    }

    /// A signer claiming this issuer's `kid` with the key of `seed`: a forger.
    pub fn forger(&self, seed: u8) -> Self {
        Self { key: SigningKey::from_bytes(&[seed; 32]), kid: self.kid.clone() }
    }

    /// The JWKS the issuer publishes: its Ed25519 key and the RSA key.
    pub fn jwks(&self) -> Value {
        let mut ed = Ed25519PublicJwk::from_verifying_key(self.key.verifying_key()).to_json();
        ed["kid"] = json!(self.kid);
        ed["use"] = json!("sig");
        let rsa = json!({"kty": "RSA", "kid": RSA_KID, "use": "sig", "alg": "RS256",
                         "n": rsa_key::RSA_N, "e": rsa_key::RSA_E});
        json!({"keys": [ed, rsa]})
    }

    /// Writes the JWKS to `dir/idp-jwks.json` and returns the `[oidc]` configuration over it, with
    /// `roles` mapping IdP groups to Mandate roles and a skew of 60 seconds.
    pub fn config(&self, dir: &Path, roles: &[(Role, &str)]) -> OidcConfig {
        let jwks_file = dir.join("idp-jwks.json");
        std::fs::write(&jwks_file, self.jwks().to_string()).unwrap();
        let text = std::fs::read_to_string(&jwks_file).unwrap();
        let keys = IssuerKeys::from_jwks_json(&serde_json::from_str(&text).unwrap()).unwrap();
        let mut mapping: BTreeMap<Role, Vec<Group>> = BTreeMap::new();
        for (role, group) in roles {
            mapping.entry(*role).or_default().push(Group::parse(group).unwrap());
        }
        OidcConfig { settings: OidcSettings::new(IDP_ISSUER, IDP_AUDIENCE), keys, jwks_file, roles: mapping }
    }

    /// The claims of a valid ID token for `human` in `groups`, issued a minute before `now`, valid
    /// for five minutes after it.
    pub fn claims(&self, human: &str, groups: &[&str], now: i64) -> Value {
        json!({
            "iss": IDP_ISSUER, "aud": IDP_AUDIENCE, "sub": format!("sub-{human}"),
            "email": human, "email_verified": true, "groups": groups,
            "iat": now - 60, "exp": now + 300,
        })
    }

    /// An EdDSA ID token with `claims`, signed by this issuer's Ed25519 key.
    pub fn id_token(&self, claims: &Value) -> String {
        compact(&json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid}), claims, |input| {
            self.key.sign(input).to_bytes().to_vec()
        })
    }

    /// An RS256 ID token with `claims`, signed by the fixed RSA key.
    pub fn rs256_token(&self, claims: &Value) -> String {
        compact(&json!({"alg": "RS256", "typ": "JWT", "kid": RSA_KID}), claims, |input| {
            rsa_private_key().sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input)).unwrap()
        })
    }

    /// An unsigned token (`alg: none`, RFC 7519 section 6) naming this issuer's `kid`.
    pub fn unsigned_token(&self, claims: &Value) -> String {
        compact(&json!({"alg": "none", "typ": "JWT", "kid": self.kid}), claims, |_| Vec::new())
    }
}

/// A compact JWS of `header` and `claims`, signed over exactly their encoding by `sign`.
pub fn compact(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The fixed RSA private key, built once (its validation is slow unoptimised).
fn rsa_private_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let uint = |text: &str| BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(text).unwrap());
        RsaPrivateKey::from_components(
            uint(rsa_key::RSA_N),
            uint(rsa_key::RSA_E),
            uint(rsa_key::RSA_D),
            vec![uint(rsa_key::RSA_P), uint(rsa_key::RSA_Q)],
        )
        .unwrap()
    })
}
