//! The strict JSON reader and RFC 8785 canonical arguments on arbitrary text: never a panic; what is
//! accepted canonicalises to a fixed point (the canonical text parses to the same canonical text and
//! digest), and is a JSON object that `serde_json` reads as the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::arguments::CanonicalArguments;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(args) = CanonicalArguments::parse(text) else { return };
    let again = CanonicalArguments::parse(args.canonical()).expect("the canonical form is accepted");
    assert_eq!(again.canonical(), args.canonical());
    assert_eq!(again.sha256_hex(), args.sha256_hex());
    let plain: serde_json::Value = serde_json::from_str(text).expect("strict JSON is JSON");
    assert_eq!(&plain, args.value());
});
