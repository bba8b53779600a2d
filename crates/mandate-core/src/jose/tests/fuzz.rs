//! Property tests: no input panics the decoders, and what we sign verifies to what we signed.

use super::{b64, key, NOW};
use crate::jose::*;
use proptest::prelude::*;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Runs every entry point that takes untrusted text; a panic fails the property.
fn exercise(text: &str) {
    let keys = |kid: &str| (kid == "k1").then(|| key(1).verifying_key());
    if let Ok(raw) = RawToken::decode(text, &Limits::TOKEN) {
        if let Ok(verified) = raw.verify(&keys, Some("mandate+jwt")) {
            let rules = TimeRules {
                now: NOW,
                skew_secs: 30,
                require_nbf: true,
                require_iat: true,
                max_lifetime_secs: Some(900),
            };
            let _ = check_time(verified.claims(), &rules);
            let _ = check_audience(verified.claims(), "mandate");
        }
    }
    let htu = Htu::parse("https://mandate.example/v1/authorize");
    if let Ok(htu) = htu {
        let jkt = key(1).verifying_key();
        let jkt = crate::jwk::Ed25519PublicJwk::from_verifying_key(jkt).thumbprint();
        let expected = ProofExpectations {
            htm: "POST",
            htu: &htu,
            access_token: Some("t"),
            expected_jkt: &jkt,
            now: NOW,
            max_age_secs: 60,
            skew_secs: 5,
            known_key: None,
        };
        let _ = verify_proof(text, &expected);
    }
    let _ = Htu::parse(text);
}

/// JSON-flavoured text, so that some inputs get past base64 into the JSON parser and the header rules.
fn jsonish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[{}\\[\\]\":,a-z0-9 \\\\.-]{0,64}",
        "[{}\\[\\]\":,a-z0-9 \\\\.-]{0,48}"
            .prop_map(|tail| format!(r#"{{"alg":"EdDSA","typ":"dpop+jwt","kid":"k1"{tail}"#)),
        Just(r#"{"alg":"EdDSA","typ":"mandate+jwt","kid":"k1"}"#.to_owned()),
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn base64ish_parts_never_panic(text in "[A-Za-z0-9_=+/-]{0,80}(\\.[A-Za-z0-9_=+/-]{0,90}){0,4}") {
        exercise(&text);
    }

    #[test]
    fn three_encoded_parts_never_panic(
        header in jsonish(),
        payload in jsonish(),
        signature in proptest::collection::vec(any::<u8>(), 0..70),
    ) {
        exercise(&format!("{}.{}.{}", b64(header), b64(payload), b64(signature)));
    }

    #[test]
    fn signed_claims_verify_to_themselves(
        claims in proptest::collection::btree_map("[a-z_]{1,8}", any::<i64>(), 0..8),
        strings in proptest::collection::btree_map("[A-Z]{1,8}", any::<String>(), 0..4),
        seed in any::<u8>(),
    ) {
        let mut expected: Map<String, Value> = claims.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
        expected.extend(strings.into_iter().map(|(k, v)| (k, Value::from(v))));
        let signer = key(seed);
        let token = sign(&expected, &signer, &SignHeader { typ: "mandate+jwt", kid: "any" }).unwrap();
        let keys = |_: &str| Some(signer.verifying_key());
        let verified = RawToken::decode(&token, &Limits { max_bytes: 1 << 16, max_depth: 16 })
            .unwrap()
            .verify(&keys, Some("mandate+jwt"))
            .unwrap();
        prop_assert_eq!(verified.into_claims(), expected);
    }

    #[test]
    fn replay_cache_never_exceeds_capacity(ops in proptest::collection::vec((0u8..20, 0i64..200), 0..200)) {
        let mut cache = ReplayCache::new(8, 30);
        let mut seen: BTreeMap<u8, i64> = BTreeMap::new();
        let mut now = 0;
        for (id, step) in ops {
            now += step % 7;
            let result = cache.check_and_insert(&id.to_string(), now);
            prop_assert!(cache.len() <= 8);
            // A live id is always refused, whatever else happens.
            if seen.get(&id).is_some_and(|&expiry| expiry > now) {
                prop_assert_eq!(result.clone(), Err(ReplayError::Replayed));
            }
            if result.is_ok() {
                seen.insert(id, now + 30);
            }
        }
    }
}
