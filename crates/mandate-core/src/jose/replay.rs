//! A bounded memory of recently seen proof ids (`jti`), to refuse replayed proofs (RFC 9449
//! section 11.1).
//!
//! The server owns one per node and feeds it the `jti` of every proof that verified. Time comes in
//! as `now`; the cache never reads a clock.
//!
//! Memory is bounded twice: at most `capacity` entries, and each entry is a SHA-256 digest of the
//! `jti` (32 bytes) plus its expiry, whatever the `jti`'s length.
//!
//! Design notes:
//! - Entries expire `window_secs` after they were inserted. Use at least the proof's maximum age
//!   plus the clock skew: a proof is acceptable until `iat + max_age` and `iat` may be up to `skew`
//!   ahead of `now`, so it must be remembered until `now + skew + max_age`.
//! - Expiry times only grow (a clock stepping back does not shorten them), so the oldest entry is
//!   always at the front of a queue and eviction of expired entries is amortised O(1) pops.
//! - Lookup is a `BTreeMap` (O(log n)), not a `HashMap`: `RandomState` seeds itself from the OS
//!   random number generator, which this crate never reads, and a fixed-key hash would invite
//!   flooding. Keys are digests, so comparisons are short.
//! - When full after dropping expired entries, the cache refuses the new proof instead of evicting a
//!   live entry. Evicting would let an attacker who floods the cache push out the `jti` of a
//!   captured proof and replay it while it is still fresh; refusing turns a flood into a denial of
//!   service, which fails closed and shows up in metrics. Size `capacity` for the proof rate times
//!   the window.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};

/// Why a `jti` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The `jti` was seen within the window.
    #[error("the proof id was already used")]
    Replayed,
    /// The cache holds `capacity` live entries; the proof is refused rather than forgetting one.
    #[error("the replay cache is full")]
    Full,
}

impl ReplayError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ReplayError::Replayed => "proof.replayed",
            ReplayError::Full => "proof.replay_cache_full",
        }
    }
}

/// Remembers each `jti` for a fixed window, up to a fixed number of entries.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    capacity: usize,
    window_secs: i64,
    /// Digest of the `jti` to its expiry.
    seen: BTreeMap<[u8; 32], i64>,
    /// The same entries in insertion order, which is also expiry order.
    order: VecDeque<(i64, [u8; 32])>,
}

impl ReplayCache {
    /// An empty cache that holds at most `capacity` ids, each for `window_secs` seconds.
    pub fn new(capacity: usize, window_secs: u32) -> Self {
        Self { capacity, window_secs: i64::from(window_secs), seen: BTreeMap::new(), order: VecDeque::new() }
    }

    /// Records `jti` at time `now`, or refuses it if it was seen within the window or the cache is
    /// full of live entries.
    pub fn check_and_insert(&mut self, jti: &str, now: i64) -> Result<(), ReplayError> {
        self.evict_expired(now);
        let key: [u8; 32] = Sha256::digest(jti.as_bytes()).into();
        if self.seen.contains_key(&key) {
            return Err(ReplayError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        let latest = self.order.back().map_or(i64::MIN, |(expiry, _)| *expiry);
        let expiry = now.saturating_add(self.window_secs).max(latest);
        self.seen.insert(key, expiry);
        self.order.push_back((expiry, key));
        Ok(())
    }

    /// How many ids are remembered, expired ones included until the next insertion drops them.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The most ids the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn evict_expired(&mut self, now: i64) {
        while let Some(&(expiry, key)) = self.order.front() {
            if expiry > now {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_within_the_window_is_refused() {
        let mut cache = ReplayCache::new(10, 60);
        assert_eq!(cache.check_and_insert("a", 100), Ok(()));
        assert_eq!(cache.check_and_insert("b", 100), Ok(()));
        assert_eq!(cache.check_and_insert("a", 159), Err(ReplayError::Replayed));
        assert_eq!(cache.check_and_insert("a", 160), Ok(()));
        assert_eq!(ReplayError::Replayed.code(), "proof.replayed");
    }

    #[test]
    fn expiry_frees_space_and_a_full_cache_refuses() {
        let mut cache = ReplayCache::new(2, 60);
        assert_eq!(cache.check_and_insert("a", 100), Ok(()));
        assert_eq!(cache.check_and_insert("b", 130), Ok(()));
        assert_eq!(cache.check_and_insert("c", 159), Err(ReplayError::Full));
        assert_eq!(cache.len(), 2);
        // "a" expires at 160 and makes room; "b" is still live and still refused.
        assert_eq!(cache.check_and_insert("c", 160), Ok(()));
        assert_eq!(cache.check_and_insert("b", 160), Err(ReplayError::Replayed));
        assert_eq!(cache.check_and_insert("d", 160), Err(ReplayError::Full));
        assert_eq!(ReplayError::Full.code(), "proof.replay_cache_full");
    }

    #[test]
    fn a_clock_stepping_back_never_shortens_memory() {
        let mut cache = ReplayCache::new(10, 60);
        assert_eq!(cache.check_and_insert("a", 1_000), Ok(()));
        assert_eq!(cache.check_and_insert("b", 10), Ok(()));
        assert_eq!(cache.check_and_insert("b", 1_059), Err(ReplayError::Replayed));
        assert_eq!(cache.check_and_insert("a", 1_059), Err(ReplayError::Replayed));
        assert_eq!(cache.check_and_insert("a", 1_060), Ok(()));
    }

    #[test]
    fn zero_capacity_refuses_everything() {
        let mut cache = ReplayCache::new(0, 60);
        assert_eq!(cache.check_and_insert("a", 0), Err(ReplayError::Full));
        assert!(cache.is_empty());
        assert_eq!(cache.capacity(), 0);
    }
}
