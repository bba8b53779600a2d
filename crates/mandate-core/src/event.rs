//! Events: what the registry, the mandate layer and the decision engine record, and the hash that
//! links each event to the one before it.
//!
//! The hash covers every field exactly as stored (the detail document as its stored text, times as
//! integer milliseconds), each field length-prefixed so that no two different events can encode to the
//! same bytes. Changing, removing or reordering a stored event therefore changes a hash that the next
//! event, and every checkpoint after it, has already committed to.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// The hash that stands before the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event before it is appended: everything but its place in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct NewEvent {
    /// When it happened, in Unix milliseconds.
    pub at_ms: i64,
    /// What happened, dotted: `agent.registered`, `human.deactivated`, ...
    pub kind: String,
    /// Who did it: `user:<id>`, `admin`, `system`, or an agent's SPIFFE id.
    pub actor: String,
    /// The agent concerned, if any.
    pub agent: Option<String>,
    /// The mandate chain concerned, if any.
    pub chain_id: Option<String>,
    /// The mandate concerned, if any.
    pub mandate_id: Option<String>,
    /// The tool concerned, if any.
    pub tool: Option<String>,
    /// The resource concerned, if any.
    pub resource: Option<String>,
    /// The decision, for authorization events.
    pub decision: Option<String>,
    /// A compact detail document, as JSON text.
    pub detail: String,
}

impl NewEvent {
    /// An event of `kind` by `actor` at `at_ms` with a JSON detail document.
    pub fn new(kind: &str, actor: &str, at_ms: i64, detail: &serde_json::Value) -> Self {
        Self { at_ms, kind: kind.to_owned(), actor: actor.to_owned(), detail: detail.to_string(), ..Self::default() }
    }

    /// The same event, about `agent`.
    pub fn with_agent(mut self, agent: &str) -> Self {
        self.agent = Some(agent.to_owned());
        self
    }
}

/// An event in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Its sequence number, from 1, without gaps.
    pub seq: i64,
    /// Its content.
    #[serde(flatten)]
    pub event: NewEvent,
    /// The hash of the event before it.
    pub prev_hash: String,
    /// The hash of this event.
    pub hash: String,
}

/// The hash of the event at `seq` with content `event`, following `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: i64, event: &NewEvent) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(&seq.to_be_bytes());
    field(&event.at_ms.to_be_bytes());
    field(event.kind.as_bytes());
    field(event.actor.as_bytes());
    for optional in [&event.agent, &event.chain_id, &event.mandate_id, &event.tool, &event.resource, &event.decision] {
        match optional {
            // A tag byte keeps `None` apart from `Some("")`.
            None => field(&[0]),
            Some(v) => {
                field(&[1]);
                field(v.as_bytes());
            }
        }
    }
    field(event.detail.as_bytes());
    hex_lower(&h.finalize())
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_covered_and_none_differs_from_empty() {
        let base = NewEvent::new("agent.registered", "admin", 1, &serde_json::json!({"a": 1}));
        let h = chain_hash(GENESIS_HASH, 1, &base);
        assert_eq!(h.len(), 64);
        let variants = [
            NewEvent { at_ms: 2, ..base.clone() },
            NewEvent { kind: "agent.retired".into(), ..base.clone() },
            NewEvent { actor: "user:a@b.c".into(), ..base.clone() },
            NewEvent { agent: Some(String::new()), ..base.clone() },
            NewEvent { chain_id: Some("c".into()), ..base.clone() },
            NewEvent { mandate_id: Some("m".into()), ..base.clone() },
            NewEvent { tool: Some("t".into()), ..base.clone() },
            NewEvent { resource: Some("r".into()), ..base.clone() },
            NewEvent { decision: Some("allow".into()), ..base.clone() },
            NewEvent { detail: r#"{"a":2}"#.into(), ..base.clone() },
        ];
        for v in &variants {
            assert_ne!(chain_hash(GENESIS_HASH, 1, v), h, "{v:?}");
        }
        assert_ne!(chain_hash(GENESIS_HASH, 2, &base), h, "the sequence number is covered");
        assert_ne!(chain_hash(&h, 1, &base), h, "the previous hash is covered");
        // Moving bytes between adjacent fields must not give the same hash.
        let a = NewEvent { kind: "ab".into(), actor: "c".into(), ..base.clone() };
        let b = NewEvent { kind: "a".into(), actor: "bc".into(), ..base };
        assert_ne!(chain_hash(GENESIS_HASH, 1, &a), chain_hash(GENESIS_HASH, 1, &b));
    }
}
