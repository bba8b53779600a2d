//! The engine: the store, the clock, the settings, the metrics, and every cache a decision reads,
//! behind one owner.

use crate::clock::Clock;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use mandate_core::id::TrustDomain;
use mandate_core::jose::ReplayCache;
use mandate_core::lifecycle::ReviewSettings;
use mandate_core::mandate::{MandateLimits, MandateRecord};
use mandate_store::{DecisionStore, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::{Mutex, RwLock};

/// Settings the handlers read. Built once at start from the validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The organisation's name space; agents' SPIFFE ids live in it.
    pub trust_domain: TrustDomain,
    /// Thresholds of the lifecycle review.
    pub review: ReviewSettings,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How mandates are issued and checked.
    pub mandates: MandateSettings,
    /// Whether decision events keep the call's argument values (redacted), beside their hash.
    pub arguments: ArgumentRetention,
    /// The IdP whose OIDC ID tokens authenticate humans; `None` accepts API keys only.
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// How refusals that name no mandate are limited per source and summarised.
    pub refusals: crate::refusals::RefusalSettings,
    /// How calls are scored for drift from their intent.
    pub drift: crate::behaviour::DriftSettings,
}

/// What the ledger keeps of a call's arguments. By default only their SHA-256 and size; with `keep`,
/// also their value, with every member whose name is in `redact` (at any depth, case-insensitive)
/// replaced by `"[redacted]"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgumentRetention {
    /// Keep argument values.
    pub keep: bool,
    /// Member names whose values are never kept.
    pub redact: Vec<String>,
}

impl ArgumentRetention {
    /// The arguments with every member named in `redact` replaced, whether or not values are kept
    /// in the ledger: what an approver is shown of a held call.
    pub fn redacted(&self, arguments: &serde_json::Value) -> serde_json::Value {
        Self { keep: true, redact: self.redact.clone() }.kept(arguments).unwrap_or(serde_json::Value::Null)
    }

    /// The value to keep, if any.
    pub fn kept(&self, arguments: &serde_json::Value) -> Option<serde_json::Value> {
        fn scrub(v: &serde_json::Value, redact: &[String]) -> serde_json::Value {
            match v {
                serde_json::Value::Object(map) => serde_json::Value::Object(
                    map.iter()
                        .map(|(k, v)| {
                            let hidden = redact.iter().any(|r| r.eq_ignore_ascii_case(k));
                            (k.clone(), if hidden { serde_json::Value::from("[redacted]") } else { scrub(v, redact) })
                        })
                        .collect(),
                ),
                serde_json::Value::Array(items) => {
                    serde_json::Value::Array(items.iter().map(|i| scrub(i, redact)).collect())
                }
                other => other.clone(),
            }
        }
        self.keep.then(|| scrub(arguments, &self.redact))
    }
}

/// How mandates are issued and checked.
#[derive(Debug, Clone)]
pub struct MandateSettings {
    /// `iss` of every mandate, and the base of the token endpoint's URL (`<issuer>/oauth/token`).
    pub issuer: String,
    /// `aud` of every mandate.
    pub audience: String,
    /// TTL and budget limits.
    pub limits: MandateLimits,
    /// How old a proof of possession may be, in seconds.
    pub proof_max_age_secs: u32,
    /// How long a held call waits for a human, in seconds.
    pub approval_ttl_secs: u32,
    /// How many approvals one mandate may have waiting for a human at once; a further held call is
    /// denied (`approval.too_many_pending`) instead of queueing more work for people.
    pub max_pending_approvals: u32,
    /// How many proof ids to remember (size it for the proof rate times the proof window); when
    /// full of live ids, new proofs are refused rather than letting an old one be replayed.
    pub replay_cache_capacity: usize,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub clock_skew_secs: u32,
    /// Whether a client that cannot prove a key at the token endpoint may get an unbound (bearer)
    /// mandate through the authorization flow, and whether such mandates are honoured
    /// (`[oauth] allow_unbound`; default no).
    pub allow_unbound: bool,
}

impl MandateSettings {
    /// The token endpoint's URL, as proofs and actor assertions must name it.
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.issuer.trim_end_matches('/'))
    }

    /// How long, in seconds, a proof or assertion stays acceptable (its maximum age plus the skew on
    /// either side), and so how long its id must be remembered to refuse every replay.
    pub fn replay_window_secs(&self) -> u32 {
        self.proof_max_age_secs + 2 * self.clock_skew_secs
    }

    /// The authorize endpoint's URL, as proofs must name it.
    pub fn authorize_endpoint(&self) -> String {
        format!("{}/v1/authorize", self.issuer.trim_end_matches('/'))
    }
}

/// Mandate tokens that verified, by the SHA-256 of their exact text, so that an agent's repeated calls
/// with the same mandate pay for its signature once. Bounded; expired entries go first, and when
/// still full the cache is emptied (a miss only costs a verification).
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], (CachedToken, i64)>>,
}

/// A verified token's facts.
#[derive(Debug, Clone)]
pub struct CachedToken {
    /// Its stored mandate.
    pub stored: mandate_store::StoredMandate,
    /// The key that signed it.
    pub kid: String,
    /// Its `exp`, `nbf` and `iat`, checked again on every use.
    pub time_claims: serde_json::Map<String, serde_json::Value>,
}

const TOKEN_CACHE_CAPACITY: usize = 100_000;

impl TokenCache {
    /// The cache key of a token.
    pub fn digest(token: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(token.as_bytes()).into()
    }

    /// A verified token, if cached.
    pub fn get(&self, digest: &[u8; 32]) -> Option<CachedToken> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(digest).map(|(t, _)| t.clone())
    }

    /// Remembers a verified token until `expires_at`.
    pub fn insert(&self, digest: [u8; 32], token: CachedToken, expires_at: i64, now: i64) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= TOKEN_CACHE_CAPACITY {
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= TOKEN_CACHE_CAPACITY {
                map.clear();
            }
        }
        map.insert(digest, (token, expires_at));
    }
}

/// Agents and humans as last written by this server, so that a decision does not read the registry
/// from the database. Every registry write goes through `registry.rs`, which puts the new value here
/// after the write commits; a reader that missed only fills an empty entry, so a read that raced a
/// write can never put back the older value. Where several nodes share one database, each applies
/// the others' writes from the ledger ([`crate::feed`]).
#[derive(Debug, Default)]
pub struct RegistryCache {
    agents: RwLock<HashMap<mandate_core::id::AgentId, mandate_core::agent::Agent>>,
    humans: RwLock<HashMap<mandate_core::id::HumanId, Option<mandate_core::human::Human>>>,
}

impl RegistryCache {
    /// The agent as just written.
    pub fn put_agent(&self, agent: &mandate_core::agent::Agent) {
        self.agents.write().unwrap_or_else(|p| p.into_inner()).insert(agent.id.clone(), agent.clone());
    }

    /// The human as just written.
    pub fn put_human(&self, human: &mandate_core::human::Human) {
        self.humans.write().unwrap_or_else(|p| p.into_inner()).insert(human.id.clone(), Some(human.clone()));
    }

    /// Forgets an agent that is not in the store (any more).
    pub fn forget_agent(&self, id: &mandate_core::id::AgentId) {
        self.agents.write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Forgets every human, to be read again (another node created or deactivated one).
    pub fn forget_humans(&self) {
        self.humans.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Engine {
    /// An agent, from memory or the store.
    pub async fn cached_agent(
        &self,
        id: &mandate_core::id::AgentId,
    ) -> Result<Option<mandate_core::agent::Agent>, mandate_store::StoreError> {
        if let Some(a) = self.registry.agents.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(Some(a.clone()));
        }
        let agent = self.store.agent(id).await?;
        if let Some(a) = &agent {
            self.registry
                .agents
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(id.clone())
                .or_insert_with(|| a.clone());
        }
        Ok(agent)
    }

    /// The registered public key of agent `id`, when the agent is in memory (never a store read).
    pub fn remembered_agent_key(&self, id: &mandate_core::id::AgentId) -> Option<mandate_core::jwk::Ed25519PublicJwk> {
        self.registry.agents.read().unwrap_or_else(|p| p.into_inner()).get(id).map(|a| a.public_key_jwk.clone())
    }

    /// A human (or the fact that there is none), from memory or the store.
    pub async fn cached_human(
        &self,
        id: &mandate_core::id::HumanId,
    ) -> Result<Option<mandate_core::human::Human>, mandate_store::StoreError> {
        if let Some(h) = self.registry.humans.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(h.clone());
        }
        let human = self.store.human(id).await?;
        self.registry
            .humans
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_insert_with(|| human.clone());
        Ok(human)
    }
}

/// Revoked mandates that have not expired yet, checked in memory on every use.
#[derive(Debug, Default)]
pub struct Revocations {
    ids: RwLock<HashMap<String, i64>>,
}

impl Revocations {
    /// Remembers revoked ids with their expiry; forgets expired ones as it goes.
    pub fn insert(&self, ids: impl IntoIterator<Item = (String, i64)>, now: i64) {
        let mut map = self.ids.write().unwrap_or_else(|p| p.into_inner());
        map.extend(ids);
        if map.len() > 10_000 {
            map.retain(|_, exp| *exp > now);
        }
    }

    /// The id of the first revoked mandate among `record` and its ancestors, if any.
    pub fn revoked_in(&self, record: &MandateRecord) -> Option<String> {
        let map = self.ids.read().unwrap_or_else(|p| p.into_inner());
        record.lineage.iter().chain(std::iter::once(&record.id)).find(|id| map.contains_key(*id)).cloned()
    }
}
/// The decision engine: every operation of the registry, mandates and decisions is a method of it.
/// Cheap to clone (every field is shared).
#[derive(Clone)]
pub struct Engine {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The settings.
    pub settings: Arc<Settings>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// The signing keys.
    pub keys: Arc<KeyRing>,
    /// Revoked, unexpired mandates.
    pub revocations: Arc<Revocations>,
    /// Proof and assertion ids seen recently.
    pub replay: Arc<Mutex<ReplayCache>>,
    /// The decision engine's repository (the same database as `store`).
    pub decisions: Arc<dyn DecisionStore>,
    /// The active organisation policy.
    pub policy: Arc<crate::policy::PolicyHandle>,
    /// Call budgets.
    pub budgets: Arc<crate::budget::Budgets>,
    /// Behaviour per chain.
    pub behaviour: Arc<crate::behaviour::Behaviour>,
    /// The tool catalogue.
    pub catalogue: Arc<crate::catalogue::Catalogue>,
    /// Verified mandate tokens.
    pub tokens: Arc<TokenCache>,
    /// Refusals that name no mandate, counted per source.
    pub refusals: Arc<crate::refusals::Refusals>,
    /// Agents and humans, for decisions.
    pub registry: Arc<RegistryCache>,
    /// The OIDC issuer humans authenticate with, when configured; its keys can be replaced while
    /// running.
    pub oidc: Option<Arc<crate::oidc::OidcAuthenticator>>,
    /// Pinned tool definitions of the gateway.
    pub pins: Arc<crate::pins::Pins>,
    /// Clients seen at the gateway without a valid mandate.
    pub discovery: Arc<crate::discovery::Discovery>,
    /// Where this node is in the shared ledger (several nodes).
    pub feed: Arc<crate::feed::Feed>,
}

impl Engine {
    /// State over `store`, reading time from `clock`.
    pub fn new<S: Store + DecisionStore>(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        keys: Arc<KeyRing>,
    ) -> Self {
        let window = settings.mandates.replay_window_secs();
        let settings_replay_capacity = settings.mandates.replay_cache_capacity;
        let oidc = settings.oidc.clone().map(|config| Arc::new(crate::oidc::OidcAuthenticator::new(config)));
        let refusals = Arc::new(crate::refusals::Refusals::new(settings.refusals));
        let behaviour = Arc::new(crate::behaviour::Behaviour::new(settings.drift.clone()));
        Self {
            decisions: store.clone(),
            store,
            clock,
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::new()),
            keys,
            revocations: Arc::new(Revocations::default()),
            replay: Arc::new(Mutex::new(ReplayCache::new(settings_replay_capacity, window))),
            policy: Arc::default(),
            budgets: Arc::default(),
            behaviour,
            catalogue: Arc::default(),
            tokens: Arc::default(),
            refusals,
            registry: Arc::default(),
            oidc,
            pins: Arc::default(),
            discovery: Arc::default(),
            feed: Arc::default(),
        }
    }

    /// Now, in Unix seconds.
    pub fn now_secs(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }
}
