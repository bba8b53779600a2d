//! Clients seen at the gateway without a valid mandate: shadow agents surface instead of failing
//! silently.
//!
//! A client is known by the thumbprint of the key its proof names when it sent one (a claim, not
//! verified: it is what the client would register), else by its source address and user agent. The
//! table is bounded: when full, the client seen longest ago is forgotten. The first sighting of a
//! client is one ledger event (`gateway.client_discovered`); later sightings only update counts, so
//! a client retrying in a loop costs no fsync. The table lives in memory: after a restart a client
//! seen again is discovered again (one more event).

use crate::caller::Caller;
use crate::clock::millis;
use crate::engine::Engine;
use crate::error::Error;
use mandate_core::event::NewEvent;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use utoipa::ToSchema;

/// The most clients remembered.
pub const MAX_DISCOVERED: usize = 10_000;

/// What the gateway saw of a client without a valid mandate.
#[derive(Debug, Clone, Default)]
pub struct Sighting {
    /// The gateway server it reached.
    pub server: String,
    /// The thumbprint of the key its proof names, when it sent a proof.
    pub key_thumbprint: Option<String>,
    /// `clientInfo.name` (and version) from its request, when it sent one.
    pub client_name: Option<String>,
    /// `clientInfo.version`.
    pub client_version: Option<String>,
    /// Its `User-Agent`.
    pub user_agent: Option<String>,
    /// Its source address.
    pub source: String,
    /// Why it was refused (the first reason code).
    pub reason: String,
}

/// A discovered client, as `GET /v1/discovered` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DiscoveredClient {
    /// The key it is known by.
    pub id: String,
    /// The gateway servers it reached.
    pub servers: Vec<String>,
    /// The thumbprint of the key its proofs name (unverified).
    pub key_thumbprint: Option<String>,
    /// Its `clientInfo.name`.
    pub client_name: Option<String>,
    /// Its `clientInfo.version`.
    pub client_version: Option<String>,
    /// Its `User-Agent`.
    pub user_agent: Option<String>,
    /// The source address it last came from.
    pub source: String,
    /// How many requests it made.
    pub requests: u64,
    /// The last reason it was refused.
    pub last_reason: String,
    /// First seen (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: time::OffsetDateTime,
    /// Last seen (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: time::OffsetDateTime,
}

/// The table.
#[derive(Debug, Default)]
pub struct Discovery {
    clients: Mutex<HashMap<String, DiscoveredClient>>,
}

fn clip(s: Option<String>, n: usize) -> Option<String> {
    s.map(|s| s.chars().take(n).collect())
}

impl Engine {
    /// Records a sighting; the first of a client is a ledger event.
    pub async fn discovered(&self, sighting: Sighting) {
        let now = self.clock.now();
        let id = match &sighting.key_thumbprint {
            Some(jkt) => format!("jkt:{jkt}"),
            None => format!(
                "src:{}|{}",
                sighting.source,
                sighting.user_agent.as_deref().unwrap_or("").chars().take(200).collect::<String>()
            ),
        };
        let first = {
            let mut clients = self.discovery.clients.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = clients.get_mut(&id) {
                c.requests += 1;
                c.last_seen = now;
                c.last_reason.clone_from(&sighting.reason);
                c.source.clone_from(&sighting.source);
                if !c.servers.contains(&sighting.server) {
                    c.servers.push(sighting.server.clone());
                }
                None
            } else {
                if clients.len() >= MAX_DISCOVERED {
                    if let Some(oldest) = clients.values().min_by_key(|c| c.last_seen).map(|c| c.id.clone()) {
                        clients.remove(&oldest);
                    }
                }
                let c = DiscoveredClient {
                    id: id.clone(),
                    servers: vec![sighting.server.clone()],
                    key_thumbprint: sighting.key_thumbprint.clone(),
                    client_name: clip(sighting.client_name.clone(), 200),
                    client_version: clip(sighting.client_version.clone(), 100),
                    user_agent: clip(sighting.user_agent.clone(), 200),
                    source: sighting.source.clone(),
                    requests: 1,
                    last_reason: sighting.reason.clone(),
                    first_seen: now,
                    last_seen: now,
                };
                clients.insert(id.clone(), c.clone());
                Some(c)
            }
        };
        if let Some(c) = first {
            let detail = serde_json::json!({
                "client": c.id, "server": sighting.server, "key_thumbprint": c.key_thumbprint,
                "client_name": c.client_name, "client_version": c.client_version,
                "user_agent": c.user_agent, "source": c.source, "reason": c.last_reason,
            });
            let event = NewEvent::new("gateway.client_discovered", "gateway", millis(now), &detail);
            if let Err(e) = self.record_gateway_event(event).await {
                tracing::error!(error = ?e, "could not record a discovered client");
            }
        }
    }

    /// Every discovered client, most recently seen first.
    pub fn discovered_clients(&self, caller: &Caller) -> Result<Vec<DiscoveredClient>, Error> {
        if !caller.reads_everything() {
            return Err(Error::forbidden("only administrators and auditors see discovered clients"));
        }
        let mut all: Vec<DiscoveredClient> =
            self.discovery.clients.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        all.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }
}
