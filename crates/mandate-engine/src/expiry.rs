//! State kept per mandate or per chain only while it can still decide something.
//!
//! Nothing is allowed under a mandate past its expiry (checked on the server's clock, without skew),
//! and a delegation never outlives its parent. So a mandate's call count, or a chain's behaviour
//! baseline (which lives until the chain's root mandate expires), is dead weight once its end has
//! passed, and [`KEEP_AFTER_EXPIRY_SECS`] more. The maps that hold such state drop it as calls come
//! in, at most once a minute of the calls' own clock, so memory follows what is in use, not
//! everything ever issued.

use std::collections::HashMap;

/// How long past its end an entry is kept: longer than any decision takes between its expiry check
/// and the moment it counts or records, so a call that passed the check never meets a fresh entry.
pub const KEEP_AFTER_EXPIRY_SECS: i64 = 300;

/// How often, in seconds of the calls' clock, entries past their end are looked for.
pub(crate) const PRUNE_EVERY_SECS: i64 = 60;

/// Whether state for something ending at `ends_at` is no longer kept at `now`.
pub fn forgotten(ends_at: i64, now: i64) -> bool {
    now > ends_at.saturating_add(KEEP_AFTER_EXPIRY_SECS)
}

/// A value that ends: a mandate's count at the mandate's expiry, a chain's baseline at its root's.
pub(crate) trait Ends {
    /// Unix seconds.
    fn ends_at(&self) -> i64;
}

/// Entries by id, each dropped once [`forgotten`].
#[derive(Debug)]
pub(crate) struct ExpiringMap<V> {
    pub(crate) entries: HashMap<String, V>,
    next_prune: i64,
}

impl<V> Default for ExpiringMap<V> {
    fn default() -> Self {
        Self { entries: HashMap::new(), next_prune: 0 }
    }
}

impl<V: Ends> ExpiringMap<V> {
    /// Drops the entries forgotten at `now`, when a minute has passed since it last did.
    pub(crate) fn prune_if_due(&mut self, now: i64) {
        self.prune_if_due_with(now, |_| {});
    }

    /// The same, handing each dropped entry to `dropped`.
    pub(crate) fn prune_if_due_with(&mut self, now: i64, mut dropped: impl FnMut(V)) {
        if now >= self.next_prune {
            let gone: Vec<String> =
                self.entries.iter().filter(|(_, v)| forgotten(v.ends_at(), now)).map(|(k, _)| k.clone()).collect();
            for k in gone {
                if let Some(v) = self.entries.remove(&k) {
                    dropped(v);
                }
            }
            self.next_prune = now.saturating_add(PRUNE_EVERY_SECS);
        }
    }
}
