//! Test helpers: a real server on `127.0.0.1:0` over a real SQLite file (or, with
//! `MANDATE_TEST_BACKEND=postgres`, a real PostgreSQL database of its own), with a clock the test
//! moves; a blocking HTTP client that returns status and JSON; deterministic agent keys.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod faulty;
pub mod interop;
pub mod oidc;
pub mod process;

use ed25519_dalek::SigningKey;
use mandate_core::id::TrustDomain;
use mandate_core::jwk::Ed25519PublicJwk;
use mandate_core::lifecycle::ReviewSettings;
use mandate_core::mandate::MandateLimits;
use mandate_engine::clock::ManualClock;
use mandate_engine::engine::{MandateSettings, Settings};
use mandate_server::{Server, ServerConfig};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::macros::datetime;

/// The issuer (and audience) of test servers' mandates. Proofs name `<ISSUER>/oauth/token`, whatever
/// port the server listens on, as behind a proxy.
pub const ISSUER: &str = "https://mandate.test";

/// How often test servers checkpoint their ledger: often enough that tests see checkpoints.
pub const LEDGER: mandate_engine::ledger::LedgerSettings =
    mandate_engine::ledger::LedgerSettings { checkpoint_every_events: 20, checkpoint_every_seconds: 3600 };

/// The administrator token every test server uses.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A running server. Dropping it shuts it down gracefully and waits.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The clock the server reads; move it with `clock.advance(..)`.
    pub clock: Arc<ManualClock>,
    data_dir: PathBuf,
    settings: Settings,
    /// The PostgreSQL database it runs on, if not SQLite.
    database: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The settings tests run with.
pub fn settings() -> Settings {
    Settings {
        trust_domain: TrustDomain::parse("example.org").unwrap(),
        review: ReviewSettings { stale_after_days: 30 },
        max_body_bytes: 64 * 1024,
        arguments: mandate_engine::engine::ArgumentRetention::default(),
        mandates: MandateSettings {
            issuer: ISSUER.to_owned(),
            audience: ISSUER.to_owned(),
            limits: MandateLimits {
                default_ttl_secs: 900,
                max_ttl_secs: 3600,
                default_max_calls: 100,
                max_calls_ceiling: 100_000,
            },
            proof_max_age_secs: 60,
            approval_ttl_secs: 900,
            max_pending_approvals: 20,
            replay_cache_capacity: 100_000,
            clock_skew_secs: 30,
            allow_unbound: false,
        },
        oidc: None,
        refusals: mandate_engine::refusals::RefusalSettings {
            per_source_per_sec: 20,
            burst: 200,
            summary_every_secs: 1,
            // Tests count 429s by the hundred: held, they would take minutes.
            tarpit_ms: 0,
            max_tarpitted_per_source: 64,
            max_connections_per_source: 64,
        },
        drift: mandate_engine::behaviour::DriftSettings {
            internal_domains: vec!["example.org".to_owned()],
            ..Default::default()
        },
    }
}

/// The variable that puts test servers on PostgreSQL: `MANDATE_TEST_BACKEND=postgres` (with
/// `MANDATE_TEST_POSTGRES_URL` naming the server; see `mandate_store::testing`).
pub const BACKEND_VAR: &str = "MANDATE_TEST_BACKEND";

/// Whether test servers run on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(BACKEND_VAR).is_ok_and(|v| v == "postgres")
}

/// The PostgreSQL database of the server whose data directory is `data_dir`, when test servers run
/// on PostgreSQL: created on first use and named in a file in the directory, so that a server
/// started again over the same directory finds the same database, as one over the same SQLite file
/// would. Databases are removed with the test run's cluster.
pub fn database_url(data_dir: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    std::fs::create_dir_all(data_dir).unwrap();
    let marker = data_dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let created = runtime.block_on(mandate_store::testing::PostgresDatabase::create()).unwrap();
    let db = created.unwrap_or_else(|| panic!("{BACKEND_VAR}=postgres needs {}", mandate_store::testing::URL_VAR));
    std::fs::write(&marker, &db.url).unwrap();
    Some(db.url)
}

impl TestServer {
    /// Starts a server over the database in `data_dir` (created if needed) at the clock's time.
    pub fn start(data_dir: &Path, clock: Arc<ManualClock>) -> Self {
        Self::start_with(data_dir, clock, settings())
    }

    /// [`TestServer::start`] with other settings, e.g. [`settings`] with an OIDC issuer
    /// ([`oidc::TestIssuer::config`]).
    pub fn start_with(data_dir: &Path, clock: Arc<ManualClock>, settings: Settings) -> Self {
        Self::start_on(data_dir, clock, settings, database_url(data_dir))
    }

    /// [`TestServer::start`] on the embedded SQLite file whatever the test backend, for tests of
    /// what only it does (the file system under it filling up, its file read offline).
    pub fn start_on_sqlite(data_dir: &Path, clock: Arc<ManualClock>) -> Self {
        Self::start_on(data_dir, clock, settings(), None)
    }

    fn start_on(data_dir: &Path, clock: Arc<ManualClock>, settings: Settings, database: Option<String>) -> Self {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.to_owned(),
            settings: settings.clone(),
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            demo: false,
            issuer_from_listener: false,
            catalogue: Vec::new(),
            intents: Vec::new(),
            gateway: Default::default(),
            keys_dir: None,
            ledger: LEDGER,
            database_url: database.clone(),
            database_max_connections: 16,
            database_max_lag: std::time::Duration::from_secs(1),
            web: Default::default(),
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server_clock = clock.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let server = Server::start(config, server_clock).await.unwrap();
                addr_tx.send(server.addr).unwrap();
                server
                    .serve(async {
                        let _ = shutdown_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().expect("the server failed to start");
        Self {
            url: format!("http://{addr}"),
            clock,
            data_dir: data_dir.to_owned(),
            settings,
            database,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// Starts a server in a new temporary directory at 2026-11-01 09:00 UTC.
    pub fn fresh() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(datetime!(2026-11-01 09:00 UTC)));
        let server = Self::start(dir.path(), clock);
        (dir, server)
    }

    /// A server with `settings` over a new database in `dir` at 2026-11-01 09:00 UTC; for settings
    /// that name files the test writes in the same directory first (an OIDC issuer's JWKS).
    pub fn fresh_in(dir: &Path, settings: Settings) -> Self {
        let clock = Arc::new(ManualClock::new(datetime!(2026-11-01 09:00 UTC)));
        Self::start_with(&dir.join("data"), clock, settings)
    }

    /// Stops this server and starts another over the same database, clock and settings.
    pub fn restart(mut self) -> Self {
        self.stop();
        Self::start_on(&self.data_dir.clone(), self.clock.clone(), self.settings.clone(), self.database.clone())
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// A client authenticated as the administrator.
    pub fn admin(&self) -> Client {
        self.client(Some(ADMIN_TOKEN))
    }

    /// A client with the given API key, or none.
    pub fn client(&self, token: Option<&str>) -> Client {
        Client { url: self.url.clone(), token: token.map(str::to_owned) }
    }

    /// Creates a human through the API and returns a client acting as them.
    pub fn human(&self, id: &str, spec: Value) -> Client {
        let mut body = spec;
        body["id"] = json!(id);
        let (status, created) = self.admin().post("/v1/humans", &body);
        assert_eq!(status, 201, "{created}");
        self.client(created["api_key"].as_str())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking client returning `(status, json)` for every answer, errors included.
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `url` (`http://host:port`), with a bearer `token`.
    pub fn new(url: &str, token: Option<&str>) -> Self {
        Self { url: url.to_owned(), token: token.map(str::to_owned) }
    }

    /// `GET`.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None)
    }
    /// `POST` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("POST", path, Some(body))
    }
    /// `PUT` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("PUT", path, Some(body))
    }
    /// `PATCH` with a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("PATCH", path, Some(body))
    }

    /// Any request, with the raw response for header checks.
    pub fn raw(&self, method: &str, path: &str, body: Option<&str>) -> ureq::Response {
        let mut request = ureq::request(method, &format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            request = request.set("Authorization", &format!("Bearer {t}"));
        }
        let result = match body {
            Some(b) => request.set("Content-Type", "application/json").send_string(b),
            None => request.call(),
        };
        match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text = body.map(Value::to_string);
        let response = self.raw(method, path, text.as_deref());
        let status = response.status();
        let content_type = response.content_type().to_owned();
        let value: Value = response.into_json().unwrap_or(Value::Null);
        if status >= 400 {
            assert_eq!(content_type, "application/problem+json", "{method} {path} -> {status}: {value}");
        }
        (status, value)
    }
}

/// A deterministic agent key from a one-byte seed.
pub fn agent_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The public JWK of `agent_key(seed)`.
pub fn agent_jwk(seed: u8) -> Value {
    Ed25519PublicJwk::from_verifying_key(agent_key(seed).verifying_key()).to_json()
}

/// A registration in the shape of docs/contract.md, owned by `owner`, with overrides applied.
pub fn agent_spec(id: &str, owner: &str, overrides: Value) -> Value {
    let mut spec = json!({
        "id": id, "name": format!("Agent {id}"), "owner": owner,
        "purpose": "Prepare the monthly close report", "class": "enterprise", "environment": "production",
        "boundary": {"tools": ["erp/*", "fx/convert"], "data_classes": ["internal", "financial"],
                     "may_delegate_to": ["reconciler"], "max_depth": 2},
        "public_key_jwk": agent_jwk(1), "certify_every_days": 90
    });
    for (k, v) in overrides.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

/// Signs a DPoP proof with `agent_key(seed)` for `htm` `htu`, bound to `access_token`.
pub fn proof(seed: u8, htm: &str, htu: &str, access_token: &str, iat: i64, jti: &str) -> String {
    let claims = mandate_core::jose::ProofClaims { jti, htm, htu, iat, access_token: Some(access_token) };
    mandate_core::jose::sign_proof(&claims, &agent_key(seed)).unwrap()
}

/// The claims of a JWT, read without verifying it (for tests that look inside a mandate).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWS compact token");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// A DPoP proof with no access token (`ath`), as a client sends to the token endpoint to get a
/// key-bound token (RFC 9449 section 5), signed by `agent_key(seed)`.
pub fn client_proof(seed: u8, htu: &str, iat: i64, jti: &str) -> String {
    let claims = mandate_core::jose::ProofClaims { jti, htm: "POST", htu, iat, access_token: None };
    mandate_core::jose::sign_proof(&claims, &agent_key(seed)).unwrap()
}

/// An actor assertion for token exchange: signed by `agent_key(seed)`, about `agent`, for `aud`.
pub fn actor_token(seed: u8, agent: &str, aud: &str, iat: i64, jti: &str) -> String {
    let spiffe = format!("spiffe://example.org/agent/{agent}");
    let claims = json!({"iss": spiffe, "sub": spiffe, "aud": aud, "iat": iat, "exp": iat + 120, "jti": jti});
    let header = mandate_core::jose::SignHeader { typ: "JWT", kid: "agent" };
    mandate_core::jose::sign(&claims, &agent_key(seed), &header).unwrap()
}

/// Posts a form with an optional `DPoP` header; returns status and JSON.
pub fn post_form(url: &str, dpop: Option<&str>, form: &[(&str, &str)]) -> (u16, Value) {
    let mut request = ureq::post(url);
    if let Some(p) = dpop {
        request = request.set("DPoP", p);
    }
    match request.send_form(form) {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("POST {url}: {e}"),
    }
}
