//! What every handler shares: the engine, which every route calls and none bypasses.

use mandate_engine::clock::Clock;
use mandate_engine::keys::KeyRing;
use mandate_engine::{Engine, Settings};
use mandate_store::{DecisionStore, Store};
use std::sync::Arc;

/// The state of the HTTP API: the engine. Handlers parse, call the engine and respond; they decide
/// nothing. It dereferences to the [`Engine`], so a handler reads `state.store` or calls
/// `state.grant(..)` as the engine's own.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// The console's sessions and the authorization flow's state.
    pub web: Arc<crate::web::Web>,
}

impl AppState {
    /// The API over a new engine on `store`, reading time from `clock`.
    pub fn new<S: Store + DecisionStore>(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        keys: Arc<KeyRing>,
    ) -> Self {
        Self { engine: Engine::new(store, clock, settings, keys), web: Arc::new(crate::web::Web::default()) }
    }
}

impl std::ops::Deref for AppState {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}
