//! Mandate's HTTP server: the router, its middleware, start-up and graceful shutdown.
//!
//! [`app`] builds the whole API as a `Router` over an [`AppState`], so tests can drive it without a
//! socket; [`Server`] adds what a process needs: the data directory, the database, the bootstrap
//! administrator credential, the optional demo organisation, the listener and the shutdown signal.
#![forbid(unsafe_code)]

pub mod auth;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod state;
pub mod web;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use mandate_core::event::NewEvent;
use mandate_engine::clock::Clock;
use mandate_engine::Settings;
use mandate_store::{hash_api_key, PostgresStore, SqliteStore, StoreError};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Mandate", description = "Runtime identity and authorization for enterprise AI agents."),
    modifiers(&BearerAuth),
    tags((name = "agents", description = "The agent registry and lifecycle"),
         (name = "humans", description = "Human principals for development"),
         (name = "mandates", description = "Granting, delegating, revoking and verifying mandates"),
         (name = "decisions", description = "Deciding tool calls, and human approval of held calls"),
         (name = "policies", description = "Organisation policy as code, and the tool catalogue"),
         (name = "audit", description = "The event ledger"),
         (name = "gateway", description = "What the MCP gateway saw: discovered clients and pinned tool definitions"),
         (name = "drift", description = "The intent taxonomy, and what each kind of task has been seen to do"),
         (name = "system", description = "Health, metrics and this document"))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and their OpenAPI description, from one list so that neither can miss a route.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use routes::{agents, audit, decisions, gateway, humans, intents, mandates, review, system};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(agents::register, agents::list))
        .routes(routes!(agents::show, agents::update))
        .routes(routes!(agents::history))
        .routes(routes!(agents::suspend))
        .routes(routes!(agents::resume))
        .routes(routes!(agents::retire))
        .routes(routes!(agents::certify))
        .routes(routes!(review::review))
        .routes(routes!(humans::create, humans::list))
        .routes(routes!(humans::show))
        .routes(routes!(humans::deactivate))
        .routes(routes!(audit::query))
        .routes(routes!(audit::verify, audit::verify_against))
        .routes(routes!(audit::checkpoints, audit::take_checkpoint))
        .routes(routes!(audit::latest_checkpoint))
        .routes(routes!(audit::export))
        .routes(routes!(audit::chain_story))
        .routes(routes!(audit::blast_radius))
        .routes(routes!(mandates::grant))
        .routes(routes!(mandates::show))
        .routes(routes!(mandates::revoke))
        .routes(routes!(mandates::chain))
        .routes(routes!(mandates::revoke_chain))
        .routes(routes!(mandates::revoke_human))
        .routes(routes!(mandates::token))
        .routes(routes!(mandates::jwks))
        .routes(routes!(mandates::metadata))
        .routes(routes!(mandates::keys))
        .routes(routes!(mandates::rotate))
        .routes(routes!(decisions::authorize))
        .routes(routes!(decisions::approvals))
        .routes(routes!(decisions::approve))
        .routes(routes!(decisions::deny))
        .routes(routes!(decisions::get_policies, decisions::put_policies))
        .routes(routes!(decisions::validate_policies))
        .routes(routes!(decisions::tools))
        .routes(routes!(decisions::classify))
        .routes(routes!(gateway::discovered))
        .routes(routes!(gateway::pins))
        .routes(routes!(gateway::diff))
        .routes(routes!(gateway::approve))
        .routes(routes!(intents::list))
        .routes(routes!(intents::put, intents::remove))
        .routes(routes!(intents::profile))
        .routes(routes!(intents::reset))
        .split_for_parts()
}

/// The OpenAPI document of the whole API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = routes();
    doc.paths.paths.insert(
        "/openapi.json".to_owned(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .tag("system")
                .summary(Some("This OpenAPI document"))
                .response("200", utoipa::openapi::ResponseBuilder::new().description("OpenAPI 3.1 JSON")),
        ),
    );
    gateway_paths(&mut doc);
    doc
}

/// The MCP gateway's routes (served by the `mandate-gateway` crate), described for clients: the
/// JSON-RPC inside is MCP's, not this document's.
fn gateway_paths(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
    use utoipa::openapi::{HttpMethod, Required, ResponseBuilder};
    let server = || {
        ParameterBuilder::new()
            .name("server")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The upstream MCP server's name, as configured in `[[gateway.servers]]`"))
            .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String)))
            .build()
    };
    let op = |summary: &str, responses: &[(&str, &str)]| -> Operation {
        let mut b = OperationBuilder::new().tag("gateway").summary(Some(summary)).parameter(server());
        for (status, description) in responses {
            b = b.response(*status, ResponseBuilder::new().description(*description));
        }
        b.build()
    };
    let mut mcp = PathItem::new(
        HttpMethod::Post,
        op(
            "MCP Streamable HTTP (revisions 2026-07-28 and 2025-11-25): one JSON-RPC message; `Authorization: DPoP <mandate>` and a `DPoP` proof per request",
            &[
                ("200", "the JSON-RPC answer (a refused call is a result with `isError`, or error -32602)"),
                ("202", "a notification, accepted"),
                ("400", "malformed JSON-RPC (-32700, -32600), headers that disagree with the body (-32020), an unsupported version (-32022)"),
                ("401", "no or a bad mandate or proof; `WWW-Authenticate: DPoP ... resource_metadata=...`"),
                ("403", "a Host or Origin the gateway does not answer to, or a chain whose agents may not act"),
                ("404", "no such gateway server, or no such session"),
                ("429", "too many refusals from this address"),
            ],
        ),
    );
    mcp.delete = Some(op(
        "End a 2025-11-25 session (`Mcp-Session-Id`), with its owner's proof",
        &[("204", "ended"), ("404", "no such session")],
    ));
    doc.paths.paths.insert("/mcp/{server}".to_owned(), mcp);
    doc.paths.paths.insert(
        "/.well-known/oauth-protected-resource/mcp/{server}".to_owned(),
        PathItem::new(
            HttpMethod::Get,
            op(
                "RFC 9728 protected resource metadata of a gateway server, naming Mandate as its authorization server",
                &[("200", "the metadata"), ("404", "no such gateway server")],
            ),
        ),
    );
}

/// The whole API over `state`.
pub fn app(state: AppState) -> Router {
    app_with(state, None)
}

/// The API and, when there is one, the MCP gateway's routes (`/mcp/{server}` and its metadata),
/// behind the same middleware.
pub fn app_with(state: AppState, gateway: Option<&mandate_gateway::Gateway>) -> Router {
    let (router, _) = routes();
    let doc = Arc::new(openapi().to_json().unwrap_or_default());
    let max_body = state.settings.max_body_bytes;
    let mut router: Router = router
        .route("/openapi.json", axum::routing::get(routes::system::openapi_handler(doc)))
        .merge(web::router())
        .with_state(state.clone());
    if let Some(gateway) = gateway {
        router = router.merge(gateway.router());
    }
    router
        .fallback(|| async { ApiError::not_found("request.no_route", "no such route; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "request.method_not_allowed",
                "this route does not take that method",
            )
        })
        .route_layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(metrics::request_context))
}

/// Everything `mandate serve` needs, validated by the caller (the CLI builds it from file, env and flags).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where the database and keys live.
    pub data_dir: PathBuf,
    /// The handlers' settings.
    pub settings: Settings,
    /// The administrator token to install instead of generating one.
    pub admin_token: Option<String>,
    /// Start a fresh demo organisation.
    pub demo: bool,
    /// Set the mandate issuer and audience to `http://<bound address>` (when none was configured).
    pub issuer_from_listener: bool,
    /// Tool classifications from the configuration file.
    pub catalogue: Vec<(mandate_core::pattern::ToolName, mandate_engine::catalogue::Classification)>,
    /// Intent categories from the configuration file (`[[intents.categories]]`).
    pub intents: Vec<(String, mandate_engine::behaviour::taxonomy::CategorySpec)>,
    /// How often the ledger is checkpointed.
    pub ledger: mandate_engine::ledger::LedgerSettings,
    /// The MCP gateway's upstreams and limits (no servers: no gateway).
    pub gateway: mandate_gateway::config::GatewaySettings,
    /// Where the signing keys are (`[keys] dir`, `MANDATE_KEYS_DIR`; default
    /// `<data-dir>/signing-keys`): a directory every node of a fleet reads, read again every second.
    pub keys_dir: Option<PathBuf>,
    /// The shared PostgreSQL database (`MANDATE_DATABASE_URL`, `[store] database_url`); `None`: the
    /// embedded SQLite file in the data directory.
    pub database_url: Option<String>,
    /// The connections a node keeps to PostgreSQL at most (`[store] max_connections`).
    pub database_max_connections: u32,
    /// How long a node on a shared database may go without confirming it has every other node's
    /// changes before it refuses to decide (`[store] max_lag_ms`).
    pub database_max_lag: std::time::Duration,
    /// The console's and the authorization flow's settings (`[console]`, `[oauth]`).
    pub web: web::WebSettings,
}

/// The store a node runs on.
#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Backend {
    async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be prepared.
    #[error("data directory `{path}`: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The database refused to open.
    #[error("database {at}: {source}")]
    Store {
        /// The database: its file, or its URL without the password.
        at: String,
        /// The failure.
        source: StoreError,
    },
    /// `--demo` was asked for on PostgreSQL.
    #[error("`--demo` runs on the embedded SQLite store in the data directory; unset MANDATE_DATABASE_URL (or `[store] database_url`) to run it")]
    DemoOnPostgres,
    /// `--demo` was asked for over a database holding real data.
    #[error("`--demo` starts a fresh demo organisation and would replace `{0}`, which holds data that is not a demo's; pass another `--data-dir`")]
    NotADemoDatabase(PathBuf),
    /// The administrator token given is too weak.
    #[error("MANDATE_ADMIN_TOKEN must be at least 24 characters")]
    WeakAdminToken,
    /// The administrator token given contains a `.`, so it would be taken for an OIDC ID token.
    #[error("MANDATE_ADMIN_TOKEN must not contain `.`: a bearer value with dots is read as an OIDC ID token")]
    DottedAdminToken,
    /// The signing keys could not be loaded or created.
    #[error("{0}")]
    Keys(String),
    /// The decision engine's state (policy, catalogue, budgets) could not be loaded.
    #[error("loading the decision engine: {0}")]
    Decisions(String),
    /// Seeding the demo failed.
    #[error("seeding the demo failed: {0}")]
    Demo(String),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// The MCP gateway could not start.
    #[error("the MCP gateway: {0}")]
    Gateway(String),
    /// The console's or the authorization flow's settings are unusable.
    #[error("{0}")]
    Web(String),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// What start-up created that must be shown to the operator once.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    /// A generated administrator token (only on the first start without `MANDATE_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// The demo organisation, when `--demo` seeded one.
    pub demo: Option<demo::DemoOrg>,
}

/// A started server, bound and ready to serve.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
    store: Backend,
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// What to show the operator.
    pub bootstrap: Bootstrap,
    ledger: mandate_engine::ledger::LedgerSettings,
    gateway: Option<mandate_gateway::Gateway>,
}

/// The database file inside a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("mandate.db")
}

impl Server {
    /// Prepares the data directory and database, installs the administrator credential, seeds the
    /// demo if asked, and binds the listener.
    pub async fn start(config: ServerConfig, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        if let Some(token) = &config.admin_token {
            validate_admin_token(token)?;
        }
        let dir = &config.data_dir;
        mandate_engine::keys::create_private_dir(dir)
            .map_err(|source| StartError::DataDir { path: dir.clone(), source })?;
        let (store, at) = match &config.database_url {
            None => {
                let db_path = database_path(dir);
                if config.demo {
                    demo::reset(&db_path).await?;
                }
                let at = format!("`{}`", db_path.display());
                let opened = SqliteStore::open(&db_path).await;
                (opened.map(Backend::Sqlite), at)
            }
            Some(_) if config.demo => return Err(StartError::DemoOnPostgres),
            Some(url) => {
                let options = mandate_store::PostgresOptions {
                    max_connections: config.database_max_connections,
                    ..mandate_store::PostgresOptions::default()
                };
                let at = mandate_store::redacted_database_url(url);
                (PostgresStore::connect_with(url, options).await.map(Backend::Postgres), at)
            }
        };
        let store = store.map_err(|source| StartError::Store { at: at.clone(), source })?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let mut settings = config.settings;
        if config.issuer_from_listener {
            // With no configured issuer, mandates name the address actually bound (port 0 included).
            settings.mandates.issuer = format!("http://{addr}");
            settings.mandates.audience = settings.mandates.issuer.clone();
        }
        let now = clock.now().unix_timestamp();
        let keys_dir = config.keys_dir.clone().unwrap_or_else(|| dir.join("signing-keys"));
        let keys = mandate_engine::keys::KeyRing::open(&keys_dir, settings.mandates.limits.max_ttl_secs, now)
            .map_err(|e| StartError::Keys(e.to_string()))?;
        let mut state = match &store {
            Backend::Sqlite(s) => AppState::new(Arc::new(s.clone()), clock, settings, Arc::new(keys)),
            Backend::Postgres(s) => AppState::new(Arc::new(s.clone()), clock, settings, Arc::new(keys)),
        };
        let servers = config.gateway.servers.iter().map(|s| s.name.clone()).collect();
        state.web = Arc::new(web::Web::new(config.web.clone()).map_err(StartError::Web)?.with_servers(servers));
        // Where the ledger is shared, where it stands before this node loads its state: whatever
        // another node commits while it loads is read again by the change feed, not missed.
        let head = state.store.head().await.map_err(|source| StartError::Store { at: at.clone(), source })?;
        state.engine.feed.start_at(head.map_or(0, |h| h.seq), config.database_max_lag);
        let revoked =
            state.store.revoked_unexpired(now).await.map_err(|source| StartError::Store { at: at.clone(), source })?;
        state.revocations.insert(revoked, now);
        state.engine.load_decision_state(&config.catalogue).await.map_err(StartError::Decisions)?;
        state.engine.load_intents(&config.intents).await.map_err(StartError::Decisions)?;
        let admin_token = bootstrap_admin(&state, config.admin_token.as_deref())
            .await
            .map_err(|source| StartError::Store { at: at.clone(), source })?;
        let demo = if config.demo { Some(demo::seed(&state, dir).await?) } else { None };
        // Mounted even with no server configured, so that `/mcp/{server}` answers as the gateway does.
        let gateway = Some(
            mandate_gateway::Gateway::start(state.engine.clone(), config.gateway, addr).map_err(StartError::Gateway)?,
        );
        Ok(Self {
            listener,
            state,
            store,
            addr,
            bootstrap: Bootstrap { admin_token, demo },
            ledger: config.ledger,
            gateway,
        })
    }

    /// The shared state (for tests that want to look inside).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The servers behind the MCP gateway, each at `/mcp/{name}`.
    pub fn gateway_servers(&self) -> Vec<String> {
        self.gateway.as_ref().map(mandate_gateway::Gateway::server_names).unwrap_or_default()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish,
    /// signs a last ledger checkpoint, and closes the database (checkpointing its write-ahead log).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let app = app_with(self.state.clone(), self.gateway.as_ref());
        if let Some(gateway) = self.gateway.clone() {
            tokio::spawn(async move { gateway.warm().await });
        }
        let checkpointer = mandate_engine::ledger::spawn_checkpointer(self.state.engine.clone(), self.ledger);
        let summaries = mandate_engine::refusals::spawn_summaries(self.state.engine.clone());
        let keys = mandate_engine::keys::spawn_reload(self.state.engine.keys.clone());
        let profiles = mandate_engine::intents::spawn_flush(self.state.engine.clone());
        let feed = self.state.store.shared().then(|| mandate_engine::feed::spawn(self.state.engine.clone()));
        tracing::info!(addr = %self.addr, "listening");
        // The peer's address reaches handlers (`ConnectInfo`), for the limits per source.
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let listener = Capped {
            inner: self.listener,
            connections: mandate_engine::refusals::PerSource::default(),
            max: self.state.settings.refusals.max_connections_per_source,
        };
        // `tap_io` only so that axum's `ConnectInfo<SocketAddr>` applies to this listener.
        let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
        let result = axum::serve(listener, service).with_graceful_shutdown(shutdown).await;
        checkpointer.abort();
        summaries.abort();
        keys.abort();
        profiles.abort();
        if let Some(feed) = feed {
            feed.abort();
        }
        if let Err(e) = self.state.flush_drift_profiles().await {
            tracing::warn!(error = ?e, "the learned drift profiles could not be written");
        }
        if let Some(gateway) = &self.gateway {
            gateway.shutdown();
        }
        if let Err(e) = self.state.summarise_refusals().await {
            tracing::warn!(error = %e, "the last refusal summary could not be written");
        }
        // After a clean stop the whole ledger is covered by a signed checkpoint.
        if let Err(e) = self.state.checkpoint().await {
            tracing::warn!(error = %e, "the last ledger checkpoint failed");
        }
        self.store.close().await;
        tracing::info!("stopped");
        result.map_err(StartError::Serve)
    }
}

/// Installs the administrator credential: the given token (replacing any other), or a generated one
/// on first start. Returns the generated token, which is shown once and stored only as a hash.
/// The listener, with at most `max` connections open per source address: one more is closed as
/// soon as it is accepted, so that a single source cannot hold every socket, nor buy a faster
/// flood with more connections than the tarpit holds.
struct Capped {
    inner: tokio::net::TcpListener,
    connections: mandate_engine::refusals::PerSource,
    max: u32,
}

/// An accepted connection, counted against its source until it closes.
struct Counted {
    io: tokio::net::TcpStream,
    _slot: mandate_engine::refusals::SourceSlot,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl axum::serve::Listener for Capped {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            match self.connections.take(Some(addr.ip()), self.max) {
                Some(slot) => return (Counted { io, _slot: slot }, addr),
                None => {
                    tracing::debug!(source = %addr.ip(), "a connection over the source's limit; closed");
                    drop(io);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

async fn bootstrap_admin(state: &AppState, given: Option<&str>) -> Result<Option<String>, StoreError> {
    let now = mandate_engine::clock::millis(state.clock.now());
    match given {
        Some(token) => {
            if state.store.credential(&hash_api_key(token)).await? != Some(mandate_store::CredentialOwner::Admin) {
                let event = NewEvent::new(
                    "admin.credential_set",
                    "system",
                    now,
                    &serde_json::json!({"source": "MANDATE_ADMIN_TOKEN"}),
                );
                state.store.set_admin_credential(&hash_api_key(token), event).await?;
            }
            Ok(None)
        }
        None if state.store.has_admin_credential().await? => Ok(None),
        None => {
            let token = auth::generate_api_key();
            let event =
                NewEvent::new("admin.credential_set", "system", now, &serde_json::json!({"source": "generated"}));
            state.store.set_admin_credential(&hash_api_key(&token), event).await?;
            Ok(Some(token))
        }
    }
}

/// Checks an administrator token given from outside.
pub fn validate_admin_token(token: &str) -> Result<(), StartError> {
    if token.chars().count() < 24 {
        return Err(StartError::WeakAdminToken);
    }
    if token.contains('.') {
        return Err(StartError::DottedAdminToken);
    }
    Ok(())
}
