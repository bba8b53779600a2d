//! Tests of the JOSE layer as a whole: hostile token and proof corpora with the exact error each
//! must get, round trips, and property tests that the decoders never panic.
//!
//! Everything is deterministic: keys come from fixed seeds (`SigningKey::from_bytes(&[n; 32])`),
//! times from a fixed `NOW`. Hostile inputs are assembled by hand here, bypassing `sign`, so the
//! corpus does not depend on the code under test to build its attacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fuzz;
mod proof;
mod token;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::Value;

/// The fixed "current time" of every test, unix seconds.
const NOW: i64 = 1_800_000_000;

/// A deterministic key.
fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// A compact JWS of raw JSON texts, signed by `key` over exactly those bytes.
fn compact_text(header: &str, payload: &str, key: &SigningKey) -> String {
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(signature.to_bytes()))
}

/// A compact JWS of JSON values, signed by `key`.
fn compact(header: &Value, payload: &Value, key: &SigningKey) -> String {
    compact_text(&header.to_string(), &payload.to_string(), key)
}

/// The three parts of a compact JWS.
fn parts(token: &str) -> [String; 3] {
    let parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts.try_into().expect("three parts")
}

/// `{"a":[[...[1]...]]}` nesting `depth` containers deep, the outer object included.
fn nested(depth: usize) -> Value {
    let mut value = serde_json::json!(1);
    for _ in 1..depth {
        value = Value::Array(vec![value]);
    }
    serde_json::json!({ "a": value })
}
