//! The tool catalogue: each tool's data class, risk level and its server's environment.
//!
//! Tools are classified in `mandate.toml` (under the gateway's servers) or with
//! `PUT /v1/tools/{server}/{tool}`. A tool nobody classified is treated as the most sensitive thing
//! it could be: data class `secret`, risk `write`, on a `production` server, and the call carries
//! the `unclassified_tool` signal. The catalogue is read on every decision, so it is kept in memory
//! and written through to the store.

use crate::behaviour::CallShape;
use crate::clock::millis;
use crate::engine::Engine;
use crate::error::Error;
use mandate_core::event::NewEvent;
use mandate_core::mandate::{Action, MandateRecord};
use mandate_core::pattern::{DataClass, ToolName};
use mandate_store::ToolRecord;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
use utoipa::ToSchema;

/// The class given to tools nobody classified.
pub const UNCLASSIFIED_DATA_CLASS: &str = "secret";

/// The catalogue in memory.
#[derive(Debug, Default)]
pub struct Catalogue {
    tools: RwLock<HashMap<String, ToolRecord>>,
}

/// A tool as a decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// Its data class.
    pub data_class: DataClass,
    /// Its risk level, which is the action a call of it performs.
    pub action: Action,
    /// Its server's environment.
    pub server_environment: mandate_core::agent::Environment,
    /// Whether anyone classified it.
    pub classified: bool,
}

/// A classification, as `PUT /v1/tools/{server}/{tool}` takes it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Classification {
    /// `public`, `internal`, `financial`, `pii`, `secret`, or one the organisation adds.
    pub data_class: String,
    /// `read`, `write`, `destructive` or `egress`.
    pub risk: Action,
    /// The environment of the tool's server (default `production`).
    pub server_environment: Option<mandate_core::agent::Environment>,
}

fn parse_env(s: &str) -> mandate_core::agent::Environment {
    use mandate_core::agent::Environment;
    match s {
        "sandbox" => Environment::Sandbox,
        "pilot" => Environment::Pilot,
        _ => Environment::Production,
    }
}

fn parse_action(s: &str) -> Action {
    match s {
        "read" => Action::Read,
        "destructive" => Action::Destructive,
        "egress" => Action::Egress,
        // Anything else is treated as a write: never less than it could be.
        _ => Action::Write,
    }
}

impl Catalogue {
    /// Replaces the whole catalogue (at start).
    pub fn load(&self, tools: Vec<ToolRecord>) {
        let mut map = self.tools.write().unwrap_or_else(|p| p.into_inner());
        map.clear();
        map.extend(tools.into_iter().map(|t| (t.name.clone(), t)));
    }

    /// One tool's record.
    pub fn get(&self, name: &str) -> Option<ToolRecord> {
        self.tools.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// How a decision sees `tool`.
    pub fn classify(&self, tool: &ToolName) -> Classified {
        let map = self.tools.read().unwrap_or_else(|p| p.into_inner());
        match map.get(tool.as_str()).and_then(|t| DataClass::parse(&t.data_class).ok().map(|dc| (t, dc))) {
            Some((t, data_class)) => Classified {
                data_class,
                action: parse_action(&t.risk),
                server_environment: parse_env(&t.server_environment),
                classified: true,
            },
            None => Classified {
                data_class: DataClass::parse(UNCLASSIFIED_DATA_CLASS).unwrap_or_else(|_| unreachable_class()),
                action: Action::Write,
                server_environment: mandate_core::agent::Environment::Production,
                classified: false,
            },
        }
    }

    /// Every catalogued tool that `pattern` matches.
    pub fn matching(&self, pattern: &mandate_core::pattern::ToolPattern) -> Vec<ToolRecord> {
        let map = self.tools.read().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|t| ToolName::parse(&t.name).is_ok_and(|n| pattern.matches(&n))).cloned().collect()
    }

    fn put(&self, t: ToolRecord) {
        self.tools.write().unwrap_or_else(|p| p.into_inner()).insert(t.name.clone(), t);
    }
}

#[allow(clippy::panic)]
fn unreachable_class() -> DataClass {
    // INVARIANT: `secret` is a valid data class name (a literal that `DataClass::parse` accepts).
    panic!("`secret` is a valid data class")
}

impl Engine {
    /// Classifies a tool (from configuration or the API) and records it.
    pub async fn classify_tool(
        &self,
        actor: &str,
        tool: &ToolName,
        c: &Classification,
        source: &str,
    ) -> Result<ToolRecord, Error> {
        DataClass::parse(&c.data_class).map_err(|e| Error::invalid("tool.invalid_data_class", e.to_string()))?;
        let record = ToolRecord {
            name: tool.to_string(),
            server: tool.server().to_owned(),
            data_class: c.data_class.clone(),
            risk: c.risk.as_str().to_owned(),
            server_environment: c
                .server_environment
                .unwrap_or(mandate_core::agent::Environment::Production)
                .as_str()
                .to_owned(),
            source: source.to_owned(),
            updated_ms: millis(self.clock.now()),
            updated_by: actor.to_owned(),
        };
        let unchanged = self.catalogue.get(tool.as_str()).is_some_and(|old| {
            (old.data_class.as_str(), old.risk.as_str(), old.server_environment.as_str())
                == (record.data_class.as_str(), record.risk.as_str(), record.server_environment.as_str())
        });
        if !unchanged {
            let before = self.catalogue.get(tool.as_str());
            let detail = serde_json::json!({"before": before, "data_class": record.data_class, "risk": record.risk,
                "server_environment": record.server_environment, "source": source});
            let mut event = NewEvent::new("tool.classified", actor, record.updated_ms, &detail);
            event.tool = Some(record.name.clone());
            self.decisions.upsert_tool(&record, event).await?;
            self.catalogue.put(record.clone());
            self.metrics.event("tool.classified");
        }
        Ok(self.catalogue.get(tool.as_str()).unwrap_or(record))
    }
}

impl Engine {
    /// Loads what decisions need at start: the policy set, the proof ids of the replay window, the
    /// catalogue (with the configuration's classifications applied), and the budgets spent so far
    /// (rebuilt from the ledger).
    pub async fn load_decision_state(&self, configured: &[(ToolName, Classification)]) -> Result<(), String> {
        self.load_policies().await?;
        self.load_pins().await.map_err(|e| e.detail().to_owned())?;
        let remembered = self.load_replay_window().await.map_err(|e| e.to_string())?;
        tracing::info!(remembered, "proof ids of the replay window reloaded");
        self.catalogue.load(self.decisions.tools().await.map_err(|e| e.to_string())?);
        for (tool, c) in configured {
            self.classify_tool("config", tool, c, "config")
                .await
                .map_err(|e| format!("classifying `{tool}`: {e:?}"))?;
        }
        // Each mandate's own allowed calls count against it and its ancestors, except those whose
        // count is no longer kept (see budget.rs); ancestors are read once each.
        let now = self.now_secs();
        let mut records: HashMap<String, Option<MandateRecord>> = HashMap::new();
        let live_after = now - crate::expiry::KEEP_AFTER_EXPIRY_SECS;
        for (mandate_id, n) in self.decisions.allow_counts(live_after).await.map_err(|e| e.to_string())? {
            let Some(m) = self.store.mandate(&mandate_id).await.map_err(|e| e.to_string())? else {
                continue;
            };
            for id in &m.record.lineage {
                if !records.contains_key(id) {
                    let ancestor = self.store.mandate(id).await.map_err(|e| e.to_string())?;
                    records.insert(id.clone(), ancestor.map(|a| a.record));
                }
            }
            let mut chain: Vec<&MandateRecord> =
                m.record.lineage.iter().filter_map(|id| records.get(id).and_then(Option::as_ref)).collect();
            chain.push(&m.record);
            self.budgets.add(&chain, n, now);
        }
        // The behaviour so far of every chain still in use, replayed from its allowed calls, so that
        // a restart does not give a drifting chain a clean baseline (which raises fewer signals).
        let after = now.saturating_sub(crate::expiry::KEEP_AFTER_EXPIRY_SECS);
        for call in self.decisions.allowed_calls_of_chains_ending_after(after).await.map_err(|e| e.to_string())? {
            let Ok(tool) = ToolName::parse(&call.tool) else {
                continue;
            };
            let data_class = call.data_class.as_deref().unwrap_or("public");
            self.behaviour.replay(&CallShape {
                chain_id: &call.chain_id,
                agent: &call.agent,
                parent_agent: None,
                tool: tool.as_str(),
                // Unknown, the least sensitive: a later call can only raise an escalation, never hide one.
                data_class,
                // Unknown, a read: a later egress then meets the exfiltration shape rather than missing it.
                action: call.action.as_deref().map_or(Action::Read, parse_action),
                classified: true,
                depth: 0,
                category: "",
                resource: call.resource.as_deref(),
                arguments: &serde_json::Value::Null,
                now: call.at_ms.div_euclid(1000),
                chain_expires_at: call.chain_expires_at,
            });
        }
        Ok(())
    }
}
