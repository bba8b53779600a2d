//! The intent taxonomy and the drift baselines as operations: list, change and remove categories;
//! inspect and reset what a category learned; write the learned profiles to the store and read them
//! back at start.
//!
//! Where a category comes from, latest first: the configuration (`[[intents.categories]]`, applied
//! at every start, like tool classifications), then changes made through the API (stored, with a
//! ledger event each), then the shipped categories. A category removed through the API stays removed
//! across restarts, unless the configuration names it.

use crate::behaviour::profile::{Profile, ProfileView};
use crate::behaviour::taxonomy::{Category, CategorySpec};
use crate::clock::millis;
use crate::engine::Engine;
use crate::error::Error;
use mandate_core::event::NewEvent;
use mandate_store::IntentRecord;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// A category as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntentView {
    /// Its name, as mandates' `intent.category` names it.
    pub name: String,
    /// The category.
    #[serde(flatten)]
    pub spec: CategorySpec,
}

/// What `POST /v1/drift/{category}/reset` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DriftReset {
    /// The category.
    pub category: String,
    /// Whether it had learned anything.
    pub forgot: bool,
    /// The sequence number of the `drift.reset` event.
    pub ledger_seq: i64,
}

/// How often learned profiles are written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

impl Engine {
    /// Every category of the taxonomy, by name.
    pub fn intents(&self) -> Vec<IntentView> {
        self.behaviour.categories().iter().map(|c| IntentView { name: c.name.clone(), spec: c.spec.clone() }).collect()
    }

    /// Adds or replaces a category, with an `intent.updated` event; unchanged, it records nothing.
    pub async fn put_intent(&self, actor: &str, name: &str, spec: CategorySpec) -> Result<IntentView, Error> {
        let category = Category::new(name, spec).map_err(|e| Error::invalid("intent.invalid", e.0))?;
        let before = self.behaviour.category(name);
        if before.as_ref().is_some_and(|b| b.spec == category.spec) {
            return Ok(IntentView { name: name.to_owned(), spec: category.spec });
        }
        let body = serde_json::to_string(&category.spec).map_err(|e| Error::internal(e.to_string()))?;
        let at = millis(self.clock.now());
        let detail =
            serde_json::json!({"category": name, "before": before.map(|b| b.spec.clone()), "after": category.spec});
        let event = NewEvent::new("intent.updated", actor, at, &detail);
        let record =
            IntentRecord { name: name.to_owned(), body: Some(body), updated_ms: at, updated_by: actor.to_owned() };
        self.decisions.put_intent(&record, event).await?;
        self.metrics.event("intent.updated");
        let view = IntentView { name: name.to_owned(), spec: category.spec.clone() };
        self.behaviour.put_category(category);
        Ok(view)
    }

    /// Removes a category, with an `intent.removed` event. Mandates naming it score
    /// `unknown_category` from then on; what it learned is kept until reset.
    pub async fn delete_intent(&self, actor: &str, name: &str) -> Result<(), Error> {
        let Some(before) = self.behaviour.category(name) else {
            return Err(Error::not_found("intent.not_found", format!("no intent category `{}`", name.escape_debug())));
        };
        let at = millis(self.clock.now());
        let detail = serde_json::json!({"category": name, "before": before.spec});
        let event = NewEvent::new("intent.removed", actor, at, &detail);
        let record = IntentRecord { name: name.to_owned(), body: None, updated_ms: at, updated_by: actor.to_owned() };
        self.decisions.put_intent(&record, event).await?;
        self.metrics.event("intent.removed");
        self.behaviour.remove_category(name);
        Ok(())
    }

    /// What a category learned.
    pub fn drift_profile(&self, category: &str) -> Result<ProfileView, Error> {
        let view = self.behaviour.profile(category);
        if self.behaviour.category(category).is_none() && view.calls == 0 {
            return Err(Error::not_found(
                "intent.not_found",
                format!("no intent category `{}`, and nothing learned for it", category.escape_debug()),
            ));
        }
        Ok(view)
    }

    /// Forgets what a category learned, with a `drift.reset` event.
    pub async fn reset_drift(&self, actor: &str, category: &str) -> Result<DriftReset, Error> {
        let view = self.drift_profile(category)?;
        let detail = serde_json::json!({"category": category, "chains": view.chains, "calls": view.calls});
        let event = NewEvent::new("drift.reset", actor, millis(self.clock.now()), &detail);
        // The store first: a reset that is not durable must not look done.
        let _writing = self.behaviour.writes.lock().await;
        let ledger_seq = self.decisions.reset_drift_profile(category, event).await?;
        let forgot = self.behaviour.reset(category);
        self.metrics.event("drift.reset");
        Ok(DriftReset { category: category.to_owned(), forgot, ledger_seq })
    }

    /// Writes the profiles that learned something since the last write; how many.
    pub async fn flush_drift_profiles(&self) -> Result<usize, Error> {
        let _writing = self.behaviour.writes.lock().await;
        let dirty = self.behaviour.take_dirty_profiles();
        if dirty.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.decisions.save_drift_profiles(&dirty, millis(self.clock.now())).await {
            for (category, _) in &dirty {
                self.behaviour.mark_dirty(category);
            }
            return Err(e.into());
        }
        Ok(dirty.len())
    }

    /// Loads the taxonomy (stored changes, then `configured`, recorded when they change it) and the
    /// learned profiles, at start.
    pub async fn load_intents(&self, configured: &[(String, CategorySpec)]) -> Result<(), String> {
        self.reload_taxonomy().await?;
        for (name, spec) in configured {
            self.put_intent("config", name, spec.clone()).await.map_err(|e| e.detail().to_owned())?;
        }
        let mut profiles = Vec::new();
        for (category, body) in self.decisions.drift_profiles().await.map_err(|e| e.to_string())? {
            match serde_json::from_str::<Profile>(&body) {
                Ok(p) => profiles.push((category, p)),
                // A profile is learned, not authority: one that cannot be read starts over, loudly.
                Err(e) => {
                    tracing::error!(%category, error = %e, "a stored drift profile does not parse; it starts over")
                }
            }
        }
        tracing::info!(
            categories = self.behaviour.categories().len(),
            profiles = profiles.len(),
            "intent taxonomy loaded"
        );
        self.behaviour.load_profiles(profiles);
        Ok(())
    }
}

impl Engine {
    /// Applies the stored changes to the taxonomy (what another node, or this one, wrote).
    pub async fn reload_taxonomy(&self) -> Result<(), String> {
        for stored in self.decisions.intents().await.map_err(|e| e.to_string())? {
            match stored.body {
                None => {
                    self.behaviour.remove_category(&stored.name);
                }
                Some(body) => {
                    let spec: CategorySpec = serde_json::from_str(&body)
                        .map_err(|e| format!("stored intent category `{}` does not parse: {e}", stored.name))?;
                    let c = Category::new(&stored.name, spec)
                        .map_err(|e| format!("stored intent category `{}`: {}", stored.name, e.0))?;
                    self.behaviour.put_category(c);
                }
            }
        }
        Ok(())
    }
}

/// Writes learned profiles every [`FLUSH_EVERY`] until the task is dropped; call
/// [`Engine::flush_drift_profiles`] once more at shutdown.
pub fn spawn_flush(engine: Engine) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = engine.flush_drift_profiles().await {
                tracing::warn!(error = ?e, "drift profiles could not be written; retrying");
            }
        }
    })
}
