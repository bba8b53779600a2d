//! The verifier against every kind of tampering, and checkpoints against forgery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::event::NewEvent;

fn chain(n: i64) -> Vec<Event> {
    let mut prev = GENESIS_HASH.to_owned();
    (1..=n)
        .map(|seq| {
            let event =
                NewEvent::new("decision", "spiffe://example.org/agent/a", seq * 10, &serde_json::json!({"n": seq}));
            let hash = chain_hash(&prev, seq, &event);
            let e = Event { seq, event, prev_hash: prev.clone(), hash: hash.clone() };
            prev = hash;
            e
        })
        .collect()
}

fn rehash(events: &mut [Event], from: usize) {
    for i in from..events.len() {
        if i > 0 {
            events[i].prev_hash = events[i - 1].hash.clone();
        }
        events[i].hash = chain_hash(&events[i].prev_hash, events[i].seq, &events[i].event);
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn checkpoint(events: &[Event], seq: i64) -> Checkpoint {
    let e = &events[usize::try_from(seq - 1).unwrap()];
    Checkpoint::sign(&LedgerHead { seq, hash: e.hash.clone() }, 1_000, &key())
}

/// Runs the verifier over `events` with `checkpoints` and returns the problem's (seq, kind) or the head.
fn check(events: &[Event], checkpoints: &[Checkpoint], trust: &Trust) -> Result<Option<i64>, (i64, ProblemKind)> {
    let mut v = Verifier::new();
    for c in checkpoints {
        v.add_stored_checkpoint(c, trust);
    }
    for e in events {
        v.push(e).map_err(|p| (p.seq, p.kind))?;
    }
    v.finish().map(|h| h.map(|h| h.seq)).map_err(|p| (p.seq, p.kind))
}

fn any() -> Trust {
    Trust::AnyKey
}

#[test]
fn an_untouched_ledger_verifies_with_its_checkpoints() {
    let events = chain(20);
    let cps = [checkpoint(&events, 5), checkpoint(&events, 20)];
    assert_eq!(check(&events, &cps, &any()), Ok(Some(20)));
    assert_eq!(check(&[], &[], &any()), Ok(None));
    let kids = Trust::Keys([cps[0].kid.clone()].into_iter().collect());
    assert_eq!(check(&events, &cps, &kids), Ok(Some(20)));
}

#[test]
fn each_kind_of_tampering_is_named_at_its_sequence_number() {
    let events = chain(10);

    let mut edited = events.clone();
    edited[3].event.tool = Some("erp/post".into());
    assert_eq!(check(&edited, &[], &any()), Err((4, ProblemKind::EventEdited)));

    let mut rewritten = events.clone();
    rewritten[3].event.detail = r#"{"n":99}"#.into();
    rewritten[3].hash = chain_hash(&rewritten[3].prev_hash, 4, &rewritten[3].event);
    assert_eq!(check(&rewritten, &[], &any()), Err((4, ProblemKind::EventRewritten)));

    let mut deleted = events.clone();
    deleted.remove(6);
    assert_eq!(check(&deleted, &[], &any()), Err((7, ProblemKind::EventMissing)));

    // Renumbering after a deletion to hide the gap breaks the hashes instead.
    let mut renumbered = deleted.clone();
    for e in renumbered.iter_mut().skip(6) {
        e.seq -= 1;
    }
    assert_eq!(check(&renumbered, &[], &any()), Err((7, ProblemKind::EventEdited)));

    // Rows swapped whole (sequence numbers exchanged): the first is named, and the row knows where
    // it was written.
    let mut swapped = events.clone();
    swapped.swap(2, 5);
    swapped[2].seq = 3;
    swapped[5].seq = 6;
    let mut v = Verifier::new();
    let problem = swapped.iter().try_for_each(|e| v.push(e)).unwrap_err();
    assert_eq!((problem.seq, problem.kind), (3, ProblemKind::EventEdited));
    assert_eq!(written_at(&swapped[2], 1..=10), Some(6));
    assert_eq!(moved(3, 6).kind, ProblemKind::EventMoved);

    let mut bad_start = events.clone();
    bad_start[0].prev_hash = "1".repeat(64);
    rehash(&mut bad_start, 0);
    assert_eq!(check(&bad_start, &[], &any()), Err((1, ProblemKind::BadStart)));

    let mut first_missing = events.clone();
    first_missing.remove(0);
    assert_eq!(check(&first_missing, &[], &any()), Err((1, ProblemKind::EventMissing)));
}

#[test]
fn checkpoints_catch_truncation_and_rebuilt_chains() {
    let events = chain(10);
    let cp = checkpoint(&events, 8);
    // Without a checkpoint, a shorter ledger is a valid ledger; with one, the removal is named.
    assert_eq!(check(&events[..6], &[], &any()), Ok(Some(6)));
    assert_eq!(check(&events[..6], std::slice::from_ref(&cp), &any()), Err((7, ProblemKind::Truncated)));
    assert_eq!(check(&events[..8], std::slice::from_ref(&cp), &any()), Ok(Some(8)));

    // Edit event 4 and rebuild every hash after it: only a checkpoint sees it.
    let mut rebuilt = events.clone();
    rebuilt[3].event.detail = r#"{"n":"forged"}"#.into();
    rehash(&mut rebuilt, 3);
    assert_eq!(check(&rebuilt, &[], &any()), Ok(Some(10)));
    let early = checkpoint(&events, 2);
    let mut v = Verifier::new();
    v.add_stored_checkpoint(&early, &any());
    v.add_stored_checkpoint(&cp, &any());
    let problem = rebuilt.iter().try_for_each(|e| v.push(e)).unwrap_err();
    assert_eq!((problem.seq, problem.kind), (8, ProblemKind::CheckpointMismatch));
    assert!(problem.message.contains("between 3 and 8"), "{problem}");
}

#[test]
fn forged_and_foreign_checkpoints_are_reported() {
    let events = chain(10);
    let mut forged = checkpoint(&events, 5);
    forged.at_ms += 1;
    assert_eq!(check(&events, &[forged.clone()], &any()), Err((5, ProblemKind::CheckpointInvalid)));
    assert!(matches!(forged.verify(), Err(CheckpointError::BadSignature(_))));

    // A checkpoint signed by another key verifies, but is not one of the server's.
    let other = SigningKey::from_bytes(&[9; 32]);
    let foreign = Checkpoint::sign(&LedgerHead { seq: 5, hash: events[4].hash.clone() }, 1, &other);
    assert!(foreign.verify().is_ok());
    let ours = Trust::Keys([checkpoint(&events, 1).kid].into_iter().collect());
    assert_eq!(check(&events, std::slice::from_ref(&foreign), &ours), Err((5, ProblemKind::CheckpointUntrusted)));

    // A key swapped in under the original kid is caught by the thumbprint.
    let mut swapped = checkpoint(&events, 5);
    swapped.public_key_jwk = foreign.public_key_jwk.clone();
    assert!(matches!(swapped.verify(), Err(CheckpointError::KidMismatch(_))));

    let mut bad_hash = checkpoint(&events, 5);
    bad_hash.hash = "XYZ".into();
    assert!(matches!(bad_hash.verify(), Err(CheckpointError::BadHash(_))));
    let mut bad_sig = checkpoint(&events, 5);
    bad_sig.signature = "AAAA".into();
    assert_eq!(bad_sig.verify(), Err(CheckpointError::BadSignatureEncoding));
}

#[test]
fn the_first_problem_wins() {
    let events = chain(10);
    let mut both = events.clone();
    both[6].event.kind = "x".into();
    let mut forged = checkpoint(&events, 3);
    forged.at_ms += 1;
    assert_eq!(check(&both, &[forged], &any()), Err((3, ProblemKind::CheckpointInvalid)));
    let mut late = checkpoint(&events, 9);
    late.at_ms += 1;
    assert_eq!(check(&both, &[late], &any()), Err((7, ProblemKind::EventEdited)));
}

#[test]
fn checkpoints_round_trip_as_json() {
    let events = chain(3);
    let cp = checkpoint(&events, 3);
    let text = serde_json::to_string(&cp).unwrap();
    let back: Checkpoint = serde_json::from_str(&text).unwrap();
    assert_eq!(back, cp);
    assert!(back.verify().is_ok());
    assert_eq!(signing_input(3, "ab", 7), b"mandate-ledger-checkpoint:v1\n3\nab\n7".to_vec());
}
