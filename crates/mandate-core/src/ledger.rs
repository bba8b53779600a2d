//! The ledger's tamper evidence: signed checkpoints, and the verifier that walks the hash chain and
//! names the first event that is not what was written.
//!
//! Every event's hash covers its content, its sequence number and the hash before it
//! ([`crate::event::chain_hash`]). A *checkpoint* is the server's Ed25519 signature over one point of
//! that chain (sequence number, head hash, time), kept beside the events and exportable. Together they
//! catch:
//!
//! | what was done to the stored events | what the verifier reports |
//! |---|---|
//! | a field edited | `ledger.event_edited` at that event: its content no longer gives its hash |
//! | an event edited *and* its hash recomputed | `ledger.event_rewritten` at that event: the next event (or a checkpoint) committed to the old hash |
//! | a row deleted | `ledger.event_missing` at the missing sequence number |
//! | rows swapped or moved | `ledger.event_moved` (the store finds where the row was written) or `ledger.event_edited` |
//! | the tail removed past a checkpoint | `ledger.truncated` at the first removed sequence number |
//! | the chain rebuilt from some point on | `ledger.checkpoint_mismatch` at the first checkpoint that disagrees |
//!
//! What no hash chain can catch on its own is the removal of the newest events when no checkpoint
//! covers them; exporting checkpoints regularly (`mandate audit checkpoint --output`) bounds that window.
//!
//! The checkpoint signature covers the text `mandate-ledger-checkpoint:v1\n<seq>\n<hash>\n<at_ms>`
//! (decimal integers, the lower-case hex hash): a fixed, documented byte string rather than a JWS, so
//! that a verifier in any language needs nothing but Ed25519. A checkpoint carries its key (`kid`, the
//! RFC 7638 thumbprint, and the public JWK) so it still verifies after the key is rotated out; whether
//! that key is one of the server's is a separate question the caller answers ([`Trust`]).

use crate::event::{chain_hash, Event, GENESIS_HASH};
use crate::jwk::Ed25519PublicJwk;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use utoipa::ToSchema;

/// The newest event: its sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LedgerHead {
    /// Its sequence number.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// A signed checkpoint as stored or exported: untrusted until [`Checkpoint::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Checkpoint {
    /// The sequence number of the event it covers.
    pub seq: i64,
    /// That event's hash: the head of the chain when the checkpoint was taken.
    pub hash: String,
    /// When it was signed, in Unix milliseconds.
    pub at_ms: i64,
    /// The signing key's id (its RFC 7638 thumbprint).
    pub kid: String,
    /// The signing key's public half, so the checkpoint verifies after the key is retired.
    #[schema(value_type = Object)]
    pub public_key_jwk: Ed25519PublicJwk,
    /// The Ed25519 signature over [`signing_input`], unpadded base64url.
    pub signature: String,
}

/// A checkpoint whose signature verified under the key it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint(Checkpoint);

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The sequence number is not positive.
    #[error("the checkpoint's sequence number {0} is not positive")]
    BadSeq(i64),
    /// The hash is not 64 lower-case hex digits.
    #[error("the checkpoint's hash `{0}` is not a SHA-256 in lower-case hex")]
    BadHash(String),
    /// `kid` is not the thumbprint of the key.
    #[error("the checkpoint's `kid` `{0}` is not the thumbprint of its public key")]
    KidMismatch(String),
    /// The signature is not 64 bytes of base64url.
    #[error("the checkpoint's signature is not an Ed25519 signature in base64url")]
    BadSignatureEncoding,
    /// The signature does not verify.
    #[error("the checkpoint's signature does not verify under key `{0}`")]
    BadSignature(String),
}

/// The bytes a checkpoint signs.
pub fn signing_input(seq: i64, hash: &str, at_ms: i64) -> Vec<u8> {
    format!("mandate-ledger-checkpoint:v1\n{seq}\n{hash}\n{at_ms}").into_bytes()
}

impl Checkpoint {
    /// Signs `head` at `at_ms` with `key`.
    pub fn sign(head: &LedgerHead, at_ms: i64, key: &SigningKey) -> Self {
        let jwk = Ed25519PublicJwk::from_verifying_key(key.verifying_key());
        let signature = key.sign(&signing_input(head.seq, &head.hash, at_ms));
        Self {
            seq: head.seq,
            hash: head.hash.clone(),
            at_ms,
            kid: jwk.thumbprint(),
            public_key_jwk: jwk,
            signature: URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        }
    }

    /// Checks the form, that `kid` names the key, and the signature (strict Ed25519 verification).
    pub fn verify(&self) -> Result<VerifiedCheckpoint, CheckpointError> {
        if self.seq < 1 {
            return Err(CheckpointError::BadSeq(self.seq));
        }
        if !is_sha256_hex(&self.hash) {
            return Err(CheckpointError::BadHash(self.hash.clone()));
        }
        if self.public_key_jwk.thumbprint() != self.kid {
            return Err(CheckpointError::KidMismatch(self.kid.clone()));
        }
        let bytes: [u8; 64] = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::BadSignatureEncoding)?;
        let signature = Signature::from_bytes(&bytes);
        self.public_key_jwk
            .verifying_key()
            .verify_strict(&signing_input(self.seq, &self.hash, self.at_ms), &signature)
            .map_err(|_| CheckpointError::BadSignature(self.kid.clone()))?;
        Ok(VerifiedCheckpoint(self.clone()))
    }

    /// How the checkpoint is named in reports.
    pub fn label(&self) -> String {
        format!("the checkpoint of seq {} signed at {} by key `{}`", self.seq, rfc3339_ms(self.at_ms), self.kid)
    }
}

impl VerifiedCheckpoint {
    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.0
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Which checkpoint keys to believe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Only checkpoints signed by one of these key ids (the server's keys, current and retired): a
    /// checkpoint signed by any other key is reported, since whoever rewrote the events could also
    /// have signed new checkpoints with a key of their own.
    Keys(HashSet<String>),
    /// Any key whose signature verifies (when the server's keys are not at hand); said in the report.
    AnyKey,
}

/// What is wrong, as a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ProblemKind {
    /// A sequence number is missing: the event was deleted.
    #[serde(rename = "ledger.event_missing")]
    EventMissing,
    /// An event's content does not give its stored hash: it was edited.
    #[serde(rename = "ledger.event_edited")]
    EventEdited,
    /// An event is intact but stands at another position than the one it was written at.
    #[serde(rename = "ledger.event_moved")]
    EventMoved,
    /// An event was edited and its hash recomputed: the next event committed to its old hash.
    #[serde(rename = "ledger.event_rewritten")]
    EventRewritten,
    /// The first event does not follow the genesis hash.
    #[serde(rename = "ledger.bad_start")]
    BadStart,
    /// Events a checkpoint covers are gone from the end of the ledger.
    #[serde(rename = "ledger.truncated")]
    Truncated,
    /// The chain at a checkpoint's sequence number has another hash than the one signed.
    #[serde(rename = "ledger.checkpoint_mismatch")]
    CheckpointMismatch,
    /// A stored checkpoint's signature does not verify.
    #[serde(rename = "ledger.checkpoint_invalid")]
    CheckpointInvalid,
    /// A stored checkpoint is signed by a key that is not one of the server's.
    #[serde(rename = "ledger.checkpoint_untrusted")]
    CheckpointUntrusted,
}

impl ProblemKind {
    /// The stable dotted code, e.g. `ledger.event_edited`.
    pub fn code(self) -> &'static str {
        match self {
            Self::EventMissing => "ledger.event_missing",
            Self::EventEdited => "ledger.event_edited",
            Self::EventMoved => "ledger.event_moved",
            Self::EventRewritten => "ledger.event_rewritten",
            Self::BadStart => "ledger.bad_start",
            Self::Truncated => "ledger.truncated",
            Self::CheckpointMismatch => "ledger.checkpoint_mismatch",
            Self::CheckpointInvalid => "ledger.checkpoint_invalid",
            Self::CheckpointUntrusted => "ledger.checkpoint_untrusted",
        }
    }
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// The first sequence number known to be bad.
    pub seq: i64,
    /// What is wrong.
    pub kind: ProblemKind,
    /// What is wrong, for people.
    pub message: String,
}

impl Problem {
    fn new(seq: i64, kind: ProblemKind, message: String) -> Self {
        Self { seq, kind, message }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {}: {} ({})", self.seq, self.message, self.kind.code())
    }
}

#[derive(Debug, Clone)]
enum Mark {
    Anchor { hash: String, label: String },
    Defect { kind: ProblemKind, message: String },
}

/// Walks the ledger in sequence order and stops at the first problem.
///
/// Feed it every event, oldest first, with [`Verifier::push`]; before pushing the event at a
/// checkpoint's sequence number, add the checkpoint ([`Verifier::add_anchor`]) or what is wrong with it
/// ([`Verifier::add_defect`]). [`Verifier::finish`] then checks the checkpoints beyond the last event.
#[derive(Debug, Clone)]
pub struct Verifier {
    next_seq: i64,
    prev_hash: String,
    last_anchor: i64,
    marks: BTreeMap<(i64, u64), Mark>,
    added: u64,
    events: u64,
    anchors: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier at the start of the ledger.
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            last_anchor: 0,
            marks: BTreeMap::new(),
            added: 0,
            events: 0,
            anchors: 0,
        }
    }

    /// Expects the chain to have `hash` at `seq`; `label` names the source in the report.
    pub fn add_anchor(&mut self, seq: i64, hash: &str, label: String) {
        self.mark(seq, Mark::Anchor { hash: hash.to_owned(), label });
    }

    /// Adds a trusted checkpoint as an anchor.
    pub fn add_checkpoint(&mut self, checkpoint: &VerifiedCheckpoint) {
        let c = checkpoint.checkpoint();
        self.add_anchor(c.seq, &c.hash, c.label());
    }

    /// Records a problem found at `seq` outside the chain (a checkpoint that does not verify); it is
    /// reported when the walk reaches `seq`, unless an earlier problem is found first.
    pub fn add_defect(&mut self, seq: i64, kind: ProblemKind, message: String) {
        self.mark(seq, Mark::Defect { kind, message });
    }

    fn mark(&mut self, seq: i64, mark: Mark) {
        self.added += 1;
        self.marks.insert((seq, self.added), mark);
    }

    /// Checks a stored checkpoint and adds it as an anchor, or as a defect if it does not verify or
    /// is signed by a key `trust` does not accept.
    pub fn add_stored_checkpoint(&mut self, checkpoint: &Checkpoint, trust: &Trust) {
        match checkpoint.verify() {
            Err(e) => self.add_defect(checkpoint.seq, ProblemKind::CheckpointInvalid, e.to_string()),
            Ok(verified) => match trust {
                Trust::Keys(kids) if !kids.contains(&checkpoint.kid) => self.add_defect(
                    checkpoint.seq,
                    ProblemKind::CheckpointUntrusted,
                    format!("{} is signed by a key that is not one of the server's signing keys", checkpoint.label()),
                ),
                _ => self.add_checkpoint(&verified),
            },
        }
    }

    /// The number of events checked so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The number of checkpoints matched so far.
    pub fn anchors(&self) -> u64 {
        self.anchors
    }

    /// Checks the next event.
    pub fn push(&mut self, event: &Event) -> Result<(), Problem> {
        let seq = event.seq;
        if seq > self.next_seq {
            let missing = if seq - self.next_seq == 1 {
                format!("event {} is missing: it was deleted", self.next_seq)
            } else {
                format!("events {} to {} are missing: they were deleted", self.next_seq, seq - 1)
            };
            return Err(Problem::new(self.next_seq, ProblemKind::EventMissing, missing));
        }
        if seq < self.next_seq {
            return Err(Problem::new(
                seq,
                ProblemKind::EventMoved,
                format!("event {seq} appears again after event {}", self.next_seq - 1),
            ));
        }
        if chain_hash(&event.prev_hash, seq, &event.event) != event.hash {
            return Err(Problem::new(
                seq,
                ProblemKind::EventEdited,
                format!("event {seq} does not match its hash: its content was edited"),
            ));
        }
        if event.prev_hash != self.prev_hash {
            // The event is consistent in itself, so it was written after a different predecessor.
            return Err(if seq == 1 {
                Problem::new(1, ProblemKind::BadStart, "the first event does not follow the genesis hash".to_owned())
            } else {
                Problem::new(
                    seq - 1,
                    ProblemKind::EventRewritten,
                    format!(
                        "event {} was rewritten: event {seq} was written after a different event {}",
                        seq - 1,
                        seq - 1
                    ),
                )
            });
        }
        self.prev_hash.clone_from(&event.hash);
        self.next_seq = seq + 1;
        self.events += 1;
        self.check_marks(seq)
    }

    fn check_marks(&mut self, seq: i64) -> Result<(), Problem> {
        while let Some(entry) = self.marks.first_entry() {
            if entry.key().0 > seq {
                break;
            }
            let (at, _) = *entry.key();
            // Marks for sequence numbers already passed were added too late to be checked; the
            // store adds each before the event it covers.
            let mark = entry.remove();
            if at < seq {
                continue;
            }
            match mark {
                Mark::Defect { kind, message } => return Err(Problem::new(at, kind, message)),
                Mark::Anchor { hash, label } => {
                    if hash != self.prev_hash {
                        let since = self.last_anchor + 1;
                        return Err(Problem::new(
                            at,
                            ProblemKind::CheckpointMismatch,
                            format!(
                                "the chain at event {at} is not what {label} signed: events between {since} and {at} were rewritten"
                            ),
                        ));
                    }
                    self.last_anchor = at;
                    self.anchors += 1;
                }
            }
        }
        Ok(())
    }

    /// Ends the walk: checks that no checkpoint covers events beyond the last one, and returns the
    /// head (`None` for an empty ledger).
    pub fn finish(mut self) -> Result<Option<LedgerHead>, Problem> {
        if let Some(((at, _), mark)) = self.marks.pop_first() {
            let last = self.next_seq - 1;
            return Err(match mark {
                Mark::Defect { kind, message } => Problem::new(at, kind, message),
                Mark::Anchor { label, .. } => Problem::new(
                    self.next_seq,
                    ProblemKind::Truncated,
                    format!(
                        "the ledger ends at event {last} although {label} exists: events {} to {at} were removed",
                        self.next_seq
                    ),
                ),
            });
        }
        Ok((self.next_seq > 1).then(|| LedgerHead { seq: self.next_seq - 1, hash: self.prev_hash }))
    }
}

/// Where an intact event was written: the sequence number among `candidates` whose hash, with the
/// event's stored predecessor hash and content, gives the event's stored hash. Used to tell a moved
/// row from an edited one.
pub fn written_at(event: &Event, candidates: impl IntoIterator<Item = i64>) -> Option<i64> {
    candidates.into_iter().find(|s| *s != event.seq && chain_hash(&event.prev_hash, *s, &event.event) == event.hash)
}

/// The problem for an event found at `found` that was written at `written`.
pub fn moved(found: i64, written: i64) -> Problem {
    Problem::new(
        found,
        ProblemKind::EventMoved,
        format!("event {found} is the event written as {written}: events were reordered"),
    )
}

#[cfg(test)]
mod tests;
