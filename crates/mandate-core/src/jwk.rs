//! Ed25519 public keys as JSON Web Keys (RFC 8037) and their thumbprints (RFC 7638).
//!
//! An agent is registered with the public half of its key; the mandate it is granted is bound to the
//! key's thumbprint (`cnf.jkt`, RFC 7800 / RFC 9449). Parsing is strict: a JWK that carries private
//! material, another curve, bytes that are not a usable Ed25519 point, or a reference to keys or
//! certificates elsewhere (`jku`, `x5u`, ...) is refused, never repaired.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The JWK is not a JSON object with string members.
    #[error("the key is not a JSON Web Key object: {0}")]
    Malformed(String),
    /// `kty` is not `OKP`.
    #[error("unsupported key type `{0}`: only `OKP` (Ed25519) keys are accepted")]
    UnsupportedKeyType(String),
    /// `crv` is not `Ed25519`.
    #[error("unsupported curve `{0}`: only `Ed25519` is accepted")]
    UnsupportedCurve(String),
    /// The JWK carries the private scalar `d`.
    #[error("the key contains private material (`d`); register only the public key")]
    PrivateKeyMaterial,
    /// `x` is not unpadded base64url.
    #[error("`x` is not canonical unpadded base64url")]
    BadEncoding,
    /// `x` does not decode to 32 bytes.
    #[error("`x` must be 32 bytes, found {0}")]
    BadLength(usize),
    /// `x` is not a valid, non-weak Ed25519 point.
    #[error("`x` is not a valid Ed25519 public key")]
    InvalidPoint,
    /// The JWK points elsewhere for its key or a certificate (`jku`, `x5u`, `x5c`, `x5t`,
    /// `x5t#S256`).
    #[error("the key carries `{0}`, a reference to keys or certificates elsewhere; Mandate never fetches or trusts those, so register the bare key (`kty`, `crv`, `x`)")]
    RemoteReference(String),
}

/// Members that point to keys or certificates elsewhere (RFC 7517 section 4.6 to 4.9, RFC 7515
/// section 4.1.2). Mandate never fetches them, and a key that carries one would be kept with a
/// promise nobody checks, so a JWK carrying any of them is refused, not stripped.
const REMOTE_MEMBERS: &[&str] = &["jku", "x5u", "x5c", "x5t", "x5t#S256"];

/// A validated Ed25519 public key in JWK form.
///
/// Only [`Ed25519PublicJwk::from_json`] and [`Ed25519PublicJwk::from_verifying_key`] build one, so a
/// value of this type is always a usable, public-only key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ed25519PublicJwk {
    key: VerifyingKey,
    x: String,
}

impl Ed25519PublicJwk {
    /// Parses and validates a JWK document.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, JwkError> {
        Self::from_json_known(value, None)
    }

    /// Parses and validates a JWK document like [`Self::from_json`], and accepts and refuses exactly
    /// the same documents; when the document is the key `known` (already validated, such as an
    /// agent's registered key), its point is taken from `known` instead of being decompressed again.
    pub fn from_json_known(value: &serde_json::Value, known: Option<&Self>) -> Result<Self, JwkError> {
        let object = value.as_object().ok_or_else(|| JwkError::Malformed("expected an object".into()))?;
        let member = |name: &str| -> Result<Option<&str>, JwkError> {
            match object.get(name) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(JwkError::Malformed(format!("`{name}` must be a string"))),
            }
        };
        if object.contains_key("d") {
            return Err(JwkError::PrivateKeyMaterial);
        }
        if let Some(member) = REMOTE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
            return Err(JwkError::RemoteReference((*member).to_owned()));
        }
        let kty = member("kty")?.ok_or_else(|| JwkError::Malformed("`kty` is missing".into()))?;
        if kty != "OKP" {
            return Err(JwkError::UnsupportedKeyType(kty.to_owned()));
        }
        let crv = member("crv")?.ok_or_else(|| JwkError::Malformed("`crv` is missing".into()))?;
        if crv != "Ed25519" {
            return Err(JwkError::UnsupportedCurve(crv.to_owned()));
        }
        let x = member("x")?.ok_or_else(|| JwkError::Malformed("`x` is missing".into()))?;
        let bytes = URL_SAFE_NO_PAD.decode(x).map_err(|_| JwkError::BadEncoding)?;
        // Re-encoding must give back the same text: this refuses non-canonical trailing bits, so one
        // key has exactly one spelling and one thumbprint.
        if URL_SAFE_NO_PAD.encode(&bytes) != x {
            return Err(JwkError::BadEncoding);
        }
        let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| JwkError::BadLength(bytes.len()))?;
        let key = match known {
            // The same 32 bytes are the same point; `known` holds it decompressed already.
            Some(known) if known.key.as_bytes() == &array => known.key,
            _ => VerifyingKey::from_bytes(&array).map_err(|_| JwkError::InvalidPoint)?,
        };
        // Checked again for a known key too: `from_verifying_key` wraps keys without this check.
        if key.is_weak() {
            return Err(JwkError::InvalidPoint);
        }
        Ok(Self { key, x: x.to_owned() })
    }

    /// Wraps a key we already hold (our own signing keys, test keys).
    pub fn from_verifying_key(key: VerifyingKey) -> Self {
        let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
        Self { key, x }
    }

    /// The key itself, for signature verification.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The JWK as JSON, public members only, in the canonical member order.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": self.x})
    }

    /// The RFC 7638 thumbprint: base64url(SHA-256 of the required members in lexicographic order).
    pub fn thumbprint(&self) -> String {
        // RFC 7638 section 3.2: required members only, sorted, no white space.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, self.x);
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}

impl Serialize for Ed25519PublicJwk {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Ed25519PublicJwk {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Self::from_json(&value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    // RFC 8037 appendix A.2: the Ed25519 public key of the example, and its RFC 7638 thumbprint (A.3).
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_THUMBPRINT: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    fn identity_x() -> String {
        URL_SAFE_NO_PAD.encode([1u8].iter().chain([0u8; 31].iter()).copied().collect::<Vec<_>>())
    }

    /// Keys a caller might already hold: the RFC's, and the weak identity point wrapped without
    /// checks (as `from_verifying_key` does).
    fn known_keys() -> Vec<Ed25519PublicJwk> {
        let identity: [u8; 32] = URL_SAFE_NO_PAD.decode(identity_x()).unwrap().try_into().unwrap();
        vec![
            Ed25519PublicJwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})).unwrap(),
            Ed25519PublicJwk::from_verifying_key(VerifyingKey::from_bytes(&identity).unwrap()),
        ]
    }

    /// `from_json`, and `from_json_known` with every known key, give the same verdict.
    fn check(value: serde_json::Value, expected: Result<(), JwkError>) {
        assert_eq!(Ed25519PublicJwk::from_json(&value).map(|_| ()), expected, "{value}");
        for known in known_keys() {
            let with_known = Ed25519PublicJwk::from_json_known(&value, Some(&known));
            assert_eq!(with_known.as_ref().map(|_| ()), expected.as_ref().map(|_| ()), "{value}, known {known:?}");
            if let Ok(parsed) = with_known {
                assert_eq!(parsed, Ed25519PublicJwk::from_json(&value).unwrap(), "{value}");
            }
        }
    }

    #[test]
    fn rfc8037_example_key_and_thumbprint() {
        let jwk = Ed25519PublicJwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}))
            .expect("the RFC example key is valid");
        assert_eq!(jwk.thumbprint(), RFC8037_THUMBPRINT);
        assert_eq!(jwk.to_json()["x"], RFC8037_X);
    }

    #[test]
    fn refuses_what_is_not_a_public_ed25519_key() {
        let ok = json!({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X});
        check(ok.clone(), Ok(()));
        let mut private = ok.clone();
        private["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
        check(private, Err(JwkError::PrivateKeyMaterial));
        check(json!({"kty": "EC", "crv": "P-256", "x": RFC8037_X}), Err(JwkError::UnsupportedKeyType("EC".into())));
        check(json!({"kty": "OKP", "crv": "X25519", "x": RFC8037_X}), Err(JwkError::UnsupportedCurve("X25519".into())));
        check(json!({"kty": "OKP", "crv": "Ed25519"}), Err(JwkError::Malformed("`x` is missing".into())));
        check(json!({"kty": "OKP", "crv": "Ed25519", "x": 7}), Err(JwkError::Malformed("`x` must be a string".into())));
        check(json!({"kty": "OKP", "crv": "Ed25519", "x": format!("{RFC8037_X}=")}), Err(JwkError::BadEncoding));
        check(json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}), Err(JwkError::BadLength(3)));
        // The identity point is a weak key: any signature "verifies" against small-order keys.
        check(json!({"kty": "OKP", "crv": "Ed25519", "x": identity_x()}), Err(JwkError::InvalidPoint));
        check(json!("not an object"), Err(JwkError::Malformed("expected an object".into())));
        // A key that points elsewhere is refused, even though its `x` alone would be fine.
        for member in ["jku", "x5u", "x5c", "x5t", "x5t#S256"] {
            let mut remote = ok.clone();
            remote[member] = json!("https://attacker.example/keys.json");
            check(remote, Err(JwkError::RemoteReference(member.into())));
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        // The last character of a 32-byte value carries 4 unused bits; flipping one gives the same
        // bytes under a lenient decoder, and must not give a second spelling of the key.
        let mut x = RFC8037_X.to_owned();
        let last = x.pop().expect("non-empty");
        let twin = match last {
            'o' => 'p',
            other => other,
        };
        x.push(twin);
        check(json!({"kty": "OKP", "crv": "Ed25519", "x": x}), Err(JwkError::BadEncoding));
    }
}
