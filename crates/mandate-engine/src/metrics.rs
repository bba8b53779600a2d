//! Prometheus metrics of the engine and of the front doors that call it: decisions, events, and
//! requests per route (counted here, observed by the HTTP layer, which owns no registry of its own).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftLabels {
    category: String,
    signal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    kind: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    events: Family<EventLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    decision_latency: Histogram,
    drift_alerts: Family<DriftLabels, Counter>,
    feed_applied: Counter,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    /// A fresh registry with Mandate's metrics in it.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mandate");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let events = Family::<EventLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        registry.register("events", "Events recorded, by kind", events.clone());
        let decisions = Family::<DecisionLabels, Counter>::default();
        let decision_latency = latency_histogram();
        registry.register("decisions", "Tool-call decisions, by outcome", decisions.clone());
        registry.register(
            "decision_duration_seconds",
            "Time to decide a tool call, including making its event durable",
            decision_latency.clone(),
        );
        let drift_alerts = Family::<DriftLabels, Counter>::default();
        registry.register(
            "drift_alerts",
            "Drift alerts, by intent category and signal (once per chain and signal)",
            drift_alerts.clone(),
        );
        let feed_applied = Counter::default();
        registry.register(
            "feed_events_applied",
            "Ledger events read back from the shared database by this node's change feed (several nodes)",
            feed_applied.clone(),
        );
        Self { registry, requests, latency, events, decisions, decision_latency, drift_alerts, feed_applied }
    }

    /// Counts an event recorded in the ledger.
    pub fn event(&self, kind: &str) {
        self.events.get_or_create(&EventLabels { kind: kind.to_owned() }).inc();
    }

    /// Counts events the change feed applied.
    pub fn feed_applied(&self, n: usize) {
        self.feed_applied.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Counts and times a decision.
    pub fn decision(&self, decision: &str, seconds: f64) {
        self.decisions.get_or_create(&DecisionLabels { decision: decision.to_owned() }).inc();
        self.decision_latency.observe(seconds);
        self.event("decision");
    }

    /// Counts a drift alert. The caller keeps the category label bounded (a category the taxonomy
    /// does not know is `unknown`).
    pub fn drift_alert(&self, category: &str, signal: &str) {
        self.drift_alerts
            .get_or_create(&DriftLabels { category: category.to_owned(), signal: signal.to_owned() })
            .inc();
    }

    /// Counts and times one request of a front door under its route template (`/v1/agents/{id}`,
    /// never the raw path, so that label cardinality stays bounded).
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests.get_or_create(&RouteLabels { method: method.to_owned(), route: route.to_owned(), status }).inc();
        self.latency
            .get_or_create(&LatencyLabels { method: method.to_owned(), route: route.to_owned() })
            .observe(seconds);
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
