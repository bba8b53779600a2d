//! Refusals that no registered agent can be held to: counted per source and summarised, and a rate
//! limit per source.
//!
//! A request with a malformed token, a forged signature or an unknown key names no mandate anyone
//! granted, so there is no agent, chain or human to record it against; it is noise that anyone who
//! can reach the port can make at line rate. Recording each as its own hash-chained, fsynced event
//! would let that noise fill the disk and take the ledger writer from real decisions. So such
//! refusals are counted in memory per source address (an IPv6 address by its /64, the block one
//! host is given) and reason code, and written as one `refusal.summary` event per interval; and a
//! source that keeps sending them is answered `429` for a while, before any verification work.
//! A refusal of a mandate that verified (a replayed proof, a revoked mandate, a call outside the
//! scope) is evidence about an agent, and stays one event each.
//!
//! Memory is bounded: at most [`MAX_SOURCES`] sources are tracked at once; beyond that, the counts of
//! new sources go to one `other` entry, and idle rate-limit buckets are dropped first.

use crate::engine::Engine;
use mandate_core::event::NewEvent;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The most sources counted or limited at once.
pub const MAX_SOURCES: usize = 10_000;
/// The most sources named one by one in a summary; the rest are added up.
const MAX_NAMED: usize = 1_000;

/// How refusals without a mandate are limited and summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalSettings {
    /// Refusals without a mandate one source may cause per second, on average.
    pub per_source_per_sec: u32,
    /// How many it may cause in a burst before it is answered `429`.
    pub burst: u32,
    /// How often the counts are written to the ledger, in seconds.
    pub summary_every_secs: u32,
    /// How long a `429` is held before it is sent, in milliseconds (0: at once). A flooding client
    /// that waits for its answers (one request in flight per connection, as HTTP/1.1 has it) then
    /// sends one request per connection per tarpit, costing the server nothing in between.
    pub tarpit_ms: u32,
    /// How many `429`s one source may have held at once; beyond it they are sent at once with
    /// `Connection: close`, so that opening more connections does not buy a faster flood.
    pub max_tarpitted_per_source: u32,
    /// How many connections one source may have open at once; one more is closed as soon as it is
    /// accepted, before a byte of it is read.
    pub max_connections_per_source: u32,
}

/// Slots per source with a cap: open connections (for the listener), held `429`s (for the
/// tarpit). A slot is taken until its guard is dropped.
#[derive(Debug, Default, Clone)]
pub struct PerSource {
    taken: Arc<Mutex<HashMap<String, u32>>>,
}

/// One slot taken, given back when dropped.
#[derive(Debug)]
pub struct SourceSlot {
    key: String,
    taken: Arc<Mutex<HashMap<String, u32>>>,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = taken.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                taken.remove(&self.key);
            }
        }
    }
}

impl PerSource {
    /// Takes a slot for `source`, or `None` when it already has `max`.
    pub fn take(&self, source: Option<IpAddr>, max: u32) -> Option<SourceSlot> {
        let key = source_key(source);
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let n = taken.entry(key.clone()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot { key, taken: self.taken.clone() })
    }
}

/// The counts of one source since the last summary.
#[derive(Debug, Default, Clone)]
struct Counts {
    refusals: u64,
    limited: u64,
    codes: BTreeMap<String, u64>,
    first_ms: i64,
    last_ms: i64,
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    counts: HashMap<String, Counts>,
    buckets: HashMap<String, Bucket>,
}

/// The counter and limiter; one per engine.
#[derive(Debug)]
pub struct Refusals {
    settings: RefusalSettings,
    state: Mutex<State>,
    /// `429`s held now, per source.
    held: PerSource,
}

/// What to do with a `429`: hold it for the tarpit (the slot counts it as held until dropped),
/// or send it at once and close the connection.
#[derive(Debug)]
pub enum Tarpit {
    /// Wait this long, then answer.
    Hold(std::time::Duration, Option<SourceSlot>),
    /// Answer now, with `Connection: close`.
    Close,
}

/// The source key of an address: an IPv4 address, or an IPv6 address's /64.
pub fn source_key(addr: Option<IpAddr>) -> String {
    match addr {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl Refusals {
    /// A counter and limiter with `settings`.
    pub fn new(settings: RefusalSettings) -> Self {
        Self { settings, state: Mutex::default(), held: PerSource::default() }
    }

    /// How to send a `429` to `source` (see [`Tarpit`]).
    pub fn tarpit(&self, source: Option<IpAddr>) -> Tarpit {
        if self.settings.tarpit_ms == 0 {
            return Tarpit::Hold(std::time::Duration::ZERO, None);
        }
        match self.held.take(source, self.settings.max_tarpitted_per_source) {
            Some(slot) => {
                Tarpit::Hold(std::time::Duration::from_millis(u64::from(self.settings.tarpit_ms)), Some(slot))
            }
            None => Tarpit::Close,
        }
    }

    /// Holds a `429` for `source` as [`Refusals::tarpit`] says; answers whether its connection is
    /// to be closed after it (`Connection: close`). Every front door sends its `429`s through this.
    pub async fn hold_429(&self, source: Option<IpAddr>) -> bool {
        match self.tarpit(source) {
            Tarpit::Hold(wait, slot) => {
                tokio::time::sleep(wait).await;
                drop(slot);
                false
            }
            Tarpit::Close => true,
        }
    }

    /// The refill rate per second and the burst, as the bucket arithmetic needs them.
    fn limits(&self) -> (f64, f64) {
        (f64::from(self.settings.per_source_per_sec.max(1)), f64::from(self.settings.burst.max(1)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `source` may be served now: `Err(seconds)` to wait when it has used up its burst of
    /// refusals without a mandate. A refusal in that state is counted as limited.
    pub fn admit(&self, source: Option<IpAddr>, now_ms: i64) -> Result<(), u32> {
        let key = source_key(source);
        let mut state = self.lock();
        let (rate, burst) = self.limits();
        let Some(bucket) = state.buckets.get(&key).copied() else { return Ok(()) };
        let tokens = refill(bucket, now_ms, rate, burst);
        if tokens >= 1.0 {
            return Ok(());
        }
        let counts = counts_of(&mut state.counts, &key, now_ms);
        counts.limited += 1;
        // Whole seconds until one token is back.
        let wait = ((1.0 - tokens) / rate).ceil().max(1.0);
        Err(wait.min(f64::from(u32::MAX)) as u32)
    }

    /// Counts one refusal without a mandate from `source`, with its reason code.
    pub fn count(&self, source: Option<IpAddr>, code: &str, now_ms: i64) {
        let key = source_key(source);
        let mut state = self.lock();
        let (rate, burst) = self.limits();
        let counts = counts_of(&mut state.counts, &key, now_ms);
        counts.refusals += 1;
        *counts.codes.entry(code.to_owned()).or_insert(0) += 1;
        if !state.buckets.contains_key(&key) && state.buckets.len() >= MAX_SOURCES {
            // Idle buckets are full again and carry no information: drop them first.
            state.buckets.retain(|_, b| refill(*b, now_ms, rate, burst) < burst);
        }
        if state.buckets.contains_key(&key) || state.buckets.len() < MAX_SOURCES {
            let bucket = state.buckets.get(&key).copied().unwrap_or(Bucket { tokens: burst, at_ms: now_ms });
            let tokens = refill(bucket, now_ms, rate, burst) - 1.0;
            state.buckets.insert(key, Bucket { tokens, at_ms: now_ms });
        }
    }

    /// Takes the counts since the last call, as the detail of one summary event (`None` when there
    /// were none).
    fn take(&self) -> Option<serde_json::Value> {
        let counts = std::mem::take(&mut self.lock().counts);
        if counts.is_empty() {
            return None;
        }
        let mut sources: Vec<(String, Counts)> = counts.into_iter().collect();
        sources.sort_by(|a, b| b.1.refusals.cmp(&a.1.refusals).then_with(|| a.0.cmp(&b.0)));
        let total: u64 = sources.iter().map(|(_, c)| c.refusals).sum();
        let limited: u64 = sources.iter().map(|(_, c)| c.limited).sum();
        let others = sources.split_off(sources.len().min(MAX_NAMED));
        let named: Vec<serde_json::Value> = sources
            .iter()
            .map(|(source, c)| {
                serde_json::json!({"source": source, "refusals": c.refusals, "limited": c.limited, "codes": c.codes,
                    "first_ms": c.first_ms, "last_ms": c.last_ms})
            })
            .collect();
        Some(serde_json::json!({
            "refusals": total, "limited": limited, "sources": named,
            "other_sources": others.len(), "other_refusals": others.iter().map(|(_, c)| c.refusals).sum::<u64>(),
        }))
    }
}

fn refill(bucket: Bucket, now_ms: i64, rate: f64, burst: f64) -> f64 {
    let elapsed = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
    (bucket.tokens + elapsed * rate).min(burst)
}

fn counts_of<'a>(counts: &'a mut HashMap<String, Counts>, key: &str, now_ms: i64) -> &'a mut Counts {
    let key = if counts.contains_key(key) || counts.len() < MAX_SOURCES { key } else { "other" };
    let entry = counts.entry(key.to_owned()).or_insert_with(|| Counts { first_ms: now_ms, ..Counts::default() });
    entry.last_ms = now_ms;
    entry
}

impl Engine {
    /// Writes the counts of refusals without a mandate since the last summary as one
    /// `refusal.summary` event, if there were any.
    pub async fn summarise_refusals(&self) -> Result<(), mandate_store::StoreError> {
        let Some(detail) = self.refusals.take() else { return Ok(()) };
        let event = NewEvent::new("refusal.summary", "system", crate::clock::millis(self.clock.now()), &detail);
        self.store.append_event(event).await?;
        self.metrics.event("refusal.summary");
        Ok(())
    }
}

/// Writes a summary every `summary_every_secs` until the task is aborted.
pub fn spawn_summaries(engine: Engine) -> tokio::task::JoinHandle<()> {
    let every = std::time::Duration::from_secs(u64::from(engine.settings.refusals.summary_every_secs.max(1)));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = engine.summarise_refusals().await {
                tracing::warn!(error = %e, "the refusal summary could not be written; it is kept for the next");
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings() -> RefusalSettings {
        RefusalSettings {
            per_source_per_sec: 10,
            burst: 5,
            summary_every_secs: 10,
            tarpit_ms: 1000,
            max_tarpitted_per_source: 2,
            max_connections_per_source: 4,
        }
    }

    #[test]
    fn a_source_that_uses_up_its_burst_waits_and_others_do_not() {
        let r = Refusals::new(settings());
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        for _ in 0..5 {
            assert_eq!(r.admit(a, 0), Ok(()));
            r.count(a, "token.malformed", 0);
        }
        assert_eq!(r.admit(a, 0), Err(1));
        assert_eq!(r.admit(b, 0), Ok(()), "another source is not limited");
        assert_eq!(r.admit(a, 150), Ok(()), "one token back after 100 ms at 10/s");
        let summary = r.take().unwrap();
        assert_eq!((summary["refusals"].as_u64(), summary["limited"].as_u64()), (Some(5), Some(1)));
        assert_eq!(summary["sources"][0]["codes"]["token.malformed"], 5);
        assert!(r.take().is_none(), "taken once");
    }

    #[test]
    fn ipv6_sources_count_by_their_64_and_memory_is_bounded() {
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(source_key(Some(one)), source_key(Some(two)));
        assert_eq!(source_key(Some("::ffff:192.0.2.7".parse().unwrap())), "192.0.2.7");
        let r = Refusals::new(settings());
        for i in 0..(MAX_SOURCES as u32 + 50) {
            r.count(Some(IpAddr::V4(i.into())), "token.malformed", 0);
        }
        let state = r.lock();
        assert!(state.counts.len() <= MAX_SOURCES + 1 && state.buckets.len() <= MAX_SOURCES);
        assert_eq!(state.counts.get("other").map(|c| c.refusals), Some(50));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tarpit_tests {
    use super::*;

    #[test]
    fn a_source_gets_a_few_held_429s_then_closed_connections_until_they_are_answered() {
        let r = Refusals::new(RefusalSettings {
            per_source_per_sec: 10,
            burst: 5,
            summary_every_secs: 10,
            tarpit_ms: 1000,
            max_tarpitted_per_source: 2,
            max_connections_per_source: 4,
        });
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        let Tarpit::Hold(wait, first) = r.tarpit(a) else { panic!("the first is held") };
        assert_eq!(wait, std::time::Duration::from_secs(1));
        let Tarpit::Hold(_, second) = r.tarpit(a) else { panic!("the second is held") };
        assert!(matches!(r.tarpit(a), Tarpit::Close), "a third at once: its connection is closed");
        assert!(matches!(r.tarpit(b), Tarpit::Hold(..)), "another source has its own count");
        drop(first);
        assert!(matches!(r.tarpit(a), Tarpit::Hold(..)), "an answered one frees its place");
        drop(second);
    }

    #[test]
    fn a_source_has_at_most_its_connections_open_and_a_closed_one_frees_its_place() {
        let c = PerSource::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let open: Vec<SourceSlot> = (0..3).map(|_| c.take(a, 3).unwrap()).collect();
        assert!(c.take(a, 3).is_none(), "a fourth is refused");
        assert!(c.take(Some(IpAddr::from([10, 0, 0, 2])), 3).is_some(), "another source has its own count");
        drop(open);
        assert!(c.take(a, 3).is_some());
    }
}
