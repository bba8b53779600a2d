//! Ledger verification of arbitrary rows: the verifier never panics, whatever the events, their
//! order, hashes or sequence numbers; and a chain built correctly from the same contents verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::event::{chain_hash, Event, NewEvent, GENESIS_HASH};
use mandate_core::ledger::Verifier;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // One event per line: `seq|prev_hash|hash|kind|detail`, all taken as they come.
    let rows: Vec<Event> = text
        .lines()
        .take(64)
        .map(|line| {
            let mut f = line.splitn(5, '|');
            let seq = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let prev_hash = f.next().unwrap_or("").to_owned();
            let hash = f.next().unwrap_or("").to_owned();
            let kind = f.next().unwrap_or("decision");
            let detail = serde_json::json!({"text": f.next().unwrap_or("")});
            Event { seq, event: NewEvent::new(kind, "system", seq, &detail), prev_hash, hash }
        })
        .collect();
    let mut verifier = Verifier::new();
    for e in &rows {
        if verifier.push(e).is_err() {
            break;
        }
    }
    let _ = verifier.finish();

    // The same contents, chained as the store chains them, verify.
    let mut prev = GENESIS_HASH.to_owned();
    let mut verifier = Verifier::new();
    for (i, e) in rows.iter().enumerate() {
        let seq = i64::try_from(i).unwrap_or(i64::MAX - 1) + 1;
        let hash = chain_hash(&prev, seq, &e.event);
        let good = Event { seq, event: e.event.clone(), prev_hash: prev.clone(), hash: hash.clone() };
        verifier.push(&good).expect("a correct chain verifies");
        prev = hash;
    }
    verifier.finish().expect("a correct chain verifies to the end");
});
