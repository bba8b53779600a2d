//! Token and JWK decoding on arbitrary bytes: never a panic; a token that decodes has a header and
//! claims that are JSON objects, and a decoded JWK gives one canonical spelling back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::jose::{Limits, RawToken};
use mandate_core::jwk::Ed25519PublicJwk;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for limits in [Limits::TOKEN, Limits::PROOF] {
        if let Ok(raw) = RawToken::decode(text, &limits) {
            let _ = raw.header();
            let _ = raw.danger_unverified_claims();
            assert!(text.len() <= limits.max_bytes);
        }
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if let Ok(jwk) = Ed25519PublicJwk::from_json(&value) {
            // Decoding what we encode gives back the same key and thumbprint.
            let again = Ed25519PublicJwk::from_json(&jwk.to_json()).expect("our own encoding decodes");
            assert_eq!(again.thumbprint(), jwk.thumbprint());
        }
    }
});
