//! DPoP proof verification on arbitrary text: never a panic, never an accepted proof (no input can
//! carry a signature by the fixed key without that key's secret).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::jose::{verify_proof, Htu, ProofExpectations};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(htu) = Htu::parse("https://mandate.test/v1/authorize") else { return };
    let expected = ProofExpectations {
        htm: "POST",
        htu: &htu,
        access_token: Some("token"),
        // Not the thumbprint of any key anyone holds: finding one is a SHA-256 preimage.
        expected_jkt: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        now: 1_800_000_000,
        max_age_secs: 60,
        skew_secs: 30,
        known_key: None,
    };
    assert!(verify_proof(text, &expected).is_err(), "a proof nobody could sign was accepted");
});
