//! JSON-RPC frames at the gateway, from agents and from upstreams, on arbitrary bytes: never a
//! panic; a frame accepted from an agent is one JSON-RPC 2.0 message (not a batch) nested no
//! deeper than the limit, as `serde_json` counts it (where its `Value` can hold the numbers); a reply accepted from an upstream is within
//! the same limit; and a resource filled from arguments never gets a `/`, `?`, `#` or `@` from
//! an argument's value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_gateway::jsonrpc;
use mandate_gateway::template::ResourceTemplate;
use mandate_gateway::upstream::read_reply;
use serde_json::Value;

const DEPTH: usize = 16;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = jsonrpc::parse(data, DEPTH) {
        assert_eq!(m.jsonrpc.as_deref(), Some("2.0"));
        assert!(m.method.is_some() || m.result.is_some() || m.error.is_some());
        let text = std::str::from_utf8(data).expect("an accepted frame is UTF-8");
        let raw: &serde_json::value::RawValue = serde_json::from_str(text).expect("an accepted frame is JSON");
        assert!(raw.get().starts_with('{'), "never a batch");
        // `Value` refuses numbers beyond f64 that the raw reader (rightly) forwards as written.
        if let Ok(whole) = serde_json::from_str::<Value>(text) {
            assert!(depth(&whole) <= DEPTH, "nested deeper than the limit");
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if read_reply(text, DEPTH).is_ok() {
            let _: &serde_json::value::RawValue = serde_json::from_str(text).expect("an accepted reply is JSON");
            if let Ok(whole) = serde_json::from_str::<Value>(text) {
                assert!(depth(&whole) <= DEPTH);
            }
        }
        if let Ok(args) = serde_json::from_str::<Value>(text) {
            let t = ResourceTemplate::parse("erp://ledger/{period}/{account}").expect("a valid template");
            if let Ok(resource) = t.fill(&args) {
                let filled = &resource["erp://ledger/".len()..];
                let (period, account) = filled.split_once('/').expect("the template's own `/`");
                for part in [period, account] {
                    assert!(!part.contains(['/', '?', '#', '@']), "{resource}");
                }
            }
        }
    }
});
