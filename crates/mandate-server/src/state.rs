//! What every handler shares: the store, the clock, the settings, the metrics and the lifecycle feed.

use crate::clock::Clock;
use crate::metrics::Metrics;
use mandate_core::agent::AgentState;
use mandate_core::id::{AgentId, TrustDomain};
use mandate_core::lifecycle::ReviewSettings;
use mandate_store::Store;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Settings the handlers read. Built once at start from the validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The organisation's name space; agents' SPIFFE ids live in it.
    pub trust_domain: TrustDomain,
    /// Thresholds of the lifecycle review.
    pub review: ReviewSettings,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// An agent's lifecycle moved in a way that concerns its mandates.
///
/// This is the hook through which suspension and retirement reach authority already handed out:
/// the mandate layer subscribes and refuses every mandate whose chain contains `agent` while it is not
/// active. Decisions also read the agent's state from the registry, so a missed notice can delay
/// nothing: the feed is for caches, not for correctness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleNotice {
    /// The agent.
    pub agent: AgentId,
    /// Its new state.
    pub state: AgentState,
}

/// The state shared by every request.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The settings.
    pub settings: Arc<Settings>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Lifecycle notices for subscribers (see [`LifecycleNotice`]).
    pub lifecycle: broadcast::Sender<LifecycleNotice>,
}

impl AppState {
    /// State over `store`, reading time from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: Settings) -> Self {
        let (lifecycle, _) = broadcast::channel(1024);
        Self { store, clock, settings: Arc::new(settings), metrics: Arc::new(Metrics::new()), lifecycle }
    }
}
