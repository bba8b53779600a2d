//! The server's configuration: defaults, then `mandate.toml`, then `MANDATE_*` environment variables,
//! then flags, each overriding the one before. This is the only place that reads files or the
//! environment for settings; the server receives one validated [`ServerConfig`].

use anyhow::{bail, Context as _};
use mandate_core::agent::Environment;
use mandate_core::human::Role;
use mandate_core::id::{Group, TrustDomain};
use mandate_core::lifecycle::ReviewSettings;
use mandate_core::mandate::{Action, MandateLimits};
use mandate_core::oidc::{IssuerKeys, OidcSettings};
use mandate_core::pattern::ToolName;
use mandate_engine::catalogue::Classification;
use mandate_engine::engine::{MandateSettings, Settings};
use mandate_engine::ledger::LedgerSettings;
use mandate_engine::oidc::OidcConfig;
use mandate_server::ServerConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file's shape. Every field is optional; unknown fields are errors, so a typo never passes
/// silently as a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The organisation's name space.
    pub trust_domain: Option<String>,
    /// Where to listen.
    pub listen: Option<String>,
    /// Where the data lives.
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL URL; the same as `[store] database_url`.
    pub database_url: Option<String>,
    /// Where the data is stored.
    #[serde(default)]
    pub store: StoreSection,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// HTTP server settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Lifecycle review settings.
    #[serde(default)]
    pub review: ReviewSection,
    /// Mandate issuance settings.
    #[serde(default)]
    pub mandates: MandatesSection,
    /// MCP servers behind the gateway, and the classification of their tools.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// The IdP whose OIDC ID tokens authenticate humans (absent: API keys only).
    pub oidc: Option<OidcSection>,
    /// Ledger checkpoints.
    #[serde(default)]
    pub ledger: LedgerSection,
    /// Where the signing keys are.
    #[serde(default)]
    pub keys: KeysSection,
    /// The intent taxonomy and drift scoring.
    #[serde(default)]
    pub intents: IntentsSection,
    /// MCP's authorization flow (the consent page and the authorization code grant).
    #[serde(default)]
    pub oauth: OAuthSection,
    /// The web console.
    #[serde(default)]
    pub console: ConsoleSection,
}

/// `[oauth]`: MCP's authorization flow.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSection {
    /// Grant a client that proves no key at the token endpoint an unbound (bearer) mandate, marked
    /// so and visible to policy as `context.binding == "bearer"`, and honour such mandates (default false).
    pub allow_unbound: Option<bool>,
    /// How long an authorization code may wait for the token endpoint, in seconds (default 60).
    pub code_ttl_seconds: Option<i64>,
    /// Extra trust anchors (a PEM file) for fetching client metadata documents over HTTPS.
    pub client_metadata_ca_file: Option<PathBuf>,
    /// Fetch client metadata documents from loopback and private addresses (default false: a
    /// client id could otherwise make Mandate reach into its own network).
    pub danger_allow_private_client_hosts: Option<bool>,
}

/// `[console]`: the web console.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// How long a console session lasts, in seconds (default 28800, 8 hours).
    pub session_ttl_seconds: Option<i64>,
}

/// `[intents]`: drift scoring, the organisation's own domains, and intent categories.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentsSection {
    /// Score calls for drift from their intent (default true).
    pub drift: Option<bool>,
    /// The organisation's own domains (`example.org` covers its subdomains): egress to them is
    /// internal. Default: the trust domain.
    pub internal_domains: Option<Vec<String>>,
    /// In `enforce`, only calls scoring below this teach a category's profile (default 10: a call
    /// that raised any signal but `deep_chain` does not teach it, so drift cannot teach itself).
    pub learn_below: Option<u32>,
    /// A score from which a call is a drift alert (default 50).
    pub alert_score: Option<u32>,
    /// Categories added to (or replacing) the shipped ones, applied at every start.
    #[serde(default)]
    pub categories: Vec<IntentCategoryEntry>,
}

/// `[[intents.categories]]`.
#[derive(Debug, Deserialize)]
pub struct IntentCategoryEntry {
    /// Its name, as mandates' `category` names it.
    pub name: String,
    /// The rest, as `PUT /v1/intents/{category}` takes it.
    #[serde(flatten)]
    pub spec: mandate_engine::behaviour::taxonomy::CategorySpec,
}

/// `[store]`: the database.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// A PostgreSQL URL, `postgres://user:password@host:port/database` (`MANDATE_DATABASE_URL`):
    /// any number of nodes share it. Absent: the embedded SQLite file in the data directory.
    pub database_url: Option<String>,
    /// The connections this node keeps to PostgreSQL at most (default 16).
    pub max_connections: Option<u32>,
    /// How long this node may go without confirming it has every other node's changes before it
    /// refuses to decide, in milliseconds (default 1000).
    pub max_lag_ms: Option<u64>,
}

/// `[keys]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// The directory of the signing keys (default `<data-dir>/signing-keys`; `MANDATE_KEYS_DIR`):
    /// every node of a fleet reads the same one, and sees a rotation made on any of them within a
    /// second. Keep it out of the database and readable by Mandate only.
    pub dir: Option<PathBuf>,
}

/// `[ledger]`: how often the server signs a checkpoint of the ledger's head.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// Sign a checkpoint once this many events were appended since the last one (default 10000).
    pub checkpoint_every_events: Option<u64>,
    /// Sign a checkpoint this many seconds after the last one, if events were appended (default 60).
    pub checkpoint_every_seconds: Option<u64>,
    /// Keep the values of tool-call arguments in decision events (default false: hash and size only).
    pub keep_arguments: Option<bool>,
    /// Argument member names never kept, at any depth, case-insensitive (default: common secret names).
    pub redact_arguments: Option<Vec<String>>,
}

/// Argument names redacted by default when argument values are kept.
const DEFAULT_REDACTED: &[&str] =
    &["password", "passwd", "secret", "token", "api_key", "apikey", "authorization", "cookie", "private_key", "ssn"];

/// `[oidc]`: the organisation's IdP. Humans present its ID tokens as bearer credentials.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// The issuer identifier, compared exactly with `iss` (required).
    pub issuer: Option<String>,
    /// Mandate's client id at the IdP, which `aud` must contain (required).
    pub audience: Option<String>,
    /// The issuer's JWKS as a file (required): Mandate never fetches keys over the network. Read at
    /// start and again on SIGHUP.
    pub jwks_file: Option<PathBuf>,
    /// The claim holding the human id, a lower-case `name@domain` (default `email`).
    pub username_claim: Option<String>,
    /// The claim holding the human's groups (default `groups`).
    pub groups_claim: Option<String>,
    /// Tolerated disagreement between the IdP's clock and ours, in seconds (default 60).
    pub clock_skew_seconds: Option<u32>,
    /// Refuse ID tokens whose `auth_time` is older than this many seconds (default: not checked).
    pub max_auth_age_seconds: Option<u32>,
    /// The IdP's authorization endpoint: set, the console's sign-in page offers "Sign in with" the
    /// IdP (OpenID Connect's authorization code flow with PKCE); `token_endpoint` is then required.
    pub authorization_endpoint: Option<String>,
    /// The IdP's token endpoint, where the console redeems the code for the ID token.
    pub token_endpoint: Option<String>,
    /// Mandate's client secret at the IdP (`${env:NAME}`, `${file:PATH}`), sent with HTTP Basic;
    /// absent: a public client, PKCE only.
    pub client_secret: Option<String>,
    /// The scopes the console asks for (default `["openid", "email", "profile"]`; `openid` is added
    /// when missing). Add the IdP's scope for the groups claim where it has one.
    pub scopes: Option<Vec<String>>,
    /// Extra trust anchors (PEM) for the token endpoint, for an IdP on an internal CA.
    pub token_endpoint_ca_file: Option<PathBuf>,
    /// The sign-in button's label (default "Sign in with your organisation").
    pub sign_in_label: Option<String>,
    /// `[oidc.roles]`: IdP groups that give Mandate roles.
    #[serde(default)]
    pub roles: OidcRolesSection,
}

/// `[oidc.roles]`: for each Mandate role, the IdP groups whose members hold it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcRolesSection {
    /// Groups whose members are administrators.
    pub admin: Option<Vec<String>>,
    /// Groups whose members are approvers.
    pub approver: Option<Vec<String>>,
    /// Groups whose members are auditors.
    pub auditor: Option<Vec<String>>,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// `[[gateway.servers]]`.
    #[serde(default)]
    pub servers: Vec<GatewayServer>,
    /// Browser origins allowed to call the gateway besides its own (default none).
    pub allowed_origins: Option<Vec<String>>,
    /// `Host` values accepted besides the issuer's authority (and `localhost` names on loopback).
    pub allowed_hosts: Option<Vec<String>>,
    /// The largest upstream result forwarded, in bytes (default 4194304).
    pub max_result_bytes: Option<usize>,
    /// The deepest JSON nesting accepted from agents and upstreams (default 64).
    pub max_json_depth: Option<usize>,
}

/// One `[[gateway.servers]]`: an upstream MCP server and its tools' classification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayServer {
    /// The server's name: the `server` part of `server/tool`, served at `/mcp/<name>`.
    pub name: String,
    /// A stdio upstream: the command to start.
    pub command: Option<Vec<String>>,
    /// A Streamable HTTP upstream.
    pub url: Option<String>,
    /// Headers injected towards the upstream (never shown to agents); `${file:PATH}` and
    /// `${env:NAME}` are replaced by a file's content or a variable's value.
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Environment of a stdio upstream (its credentials), with the same references.
    pub env: Option<std::collections::BTreeMap<String, String>>,
    /// How long a request to the upstream may take, in seconds (default 30).
    pub timeout_seconds: Option<u64>,
    /// How long the upstream's tool list is reused before it is read again, in seconds (default 10).
    pub list_ttl_seconds: Option<u64>,
    /// Mediate `resources/list` and `resources/read` (decided as `<name>/resources/read`; default
    /// false: refused).
    pub resources: Option<bool>,
    /// Mediate `prompts/list` and `prompts/get` (decided as `<name>/prompts/get`; default false).
    pub prompts: Option<bool>,
    /// The environment of the server: `sandbox`, `pilot` or `production` (default).
    pub environment: Option<String>,
    /// `[gateway.servers.tools.<tool>]`: data class and risk level of each tool.
    #[serde(default)]
    pub tools: std::collections::BTreeMap<String, ToolClassification>,
}

/// `[gateway.servers.tools.<tool>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolClassification {
    /// `public`, `internal`, `financial`, `pii`, `secret`, or one the organisation adds.
    pub data_class: String,
    /// `read`, `write`, `destructive` or `egress`.
    pub risk: String,
    /// The resource a call acts on, from its arguments: `erp://ledger/{period}/{account}`.
    pub resource: Option<String>,
}

/// `[mandates]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MandatesSection {
    /// `iss` of mandates and base URL of the token endpoint (default `http://<listen>`).
    pub issuer: Option<String>,
    /// `aud` of mandates (default: the issuer).
    pub audience: Option<String>,
    /// Default lifetime in seconds (default 900).
    pub default_ttl_seconds: Option<u32>,
    /// Longest lifetime in seconds (default 3600).
    pub max_ttl_seconds: Option<u32>,
    /// Default call budget (default 100).
    pub default_max_calls: Option<u64>,
    /// Largest call budget (default 100000).
    pub max_calls: Option<u64>,
    /// How old a proof of possession may be, in seconds (default 60).
    pub proof_max_age_seconds: Option<u32>,
    /// Clock skew tolerated, in seconds (default 30).
    pub clock_skew_seconds: Option<u32>,
    /// How long a held call waits for approval, in seconds (default 900).
    pub approval_ttl_seconds: Option<u32>,
    /// How many approvals one mandate may have waiting at once (default 20).
    pub max_pending_approvals: Option<u32>,
    /// How many proof ids the replay cache remembers (default 1000000, about 100 MB at most).
    pub replay_cache_capacity: Option<usize>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// The largest request body accepted, in bytes (default 65536).
    pub max_body_bytes: Option<usize>,
    /// Refused requests that name no mandate one source address may cause per second, on average,
    /// before it is answered `429` (default 20).
    pub refusals_per_second: Option<u32>,
    /// How many such refusals a source may cause in a burst (default 200).
    pub refusal_burst: Option<u32>,
    /// How often their counts are written to the ledger as one `refusal.summary` event, in seconds
    /// (default 10).
    pub refusal_summary_seconds: Option<u32>,
    /// How long a `429` is held before it is sent, in milliseconds (default 1000; 0: at once).
    pub refusal_tarpit_ms: Option<u32>,
    /// How many `429`s one source may have held at once; beyond, they are sent at once and the
    /// connection closed (default 64).
    pub refusal_tarpit_connections: Option<u32>,
    /// How many connections one source address (an IPv6 /64) may have open at once; one more is
    /// closed as soon as it is accepted (default 1024).
    pub max_connections_per_source: Option<u32>,
}

/// `[review]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewSection {
    /// Days without activity after which an agent is stale (default 30).
    pub stale_after_days: Option<u32>,
}

/// Values from flags and the environment (clap merges those two; flags win).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen` / `MANDATE_LISTEN`.
    pub listen: Option<String>,
    /// `--data-dir` / `MANDATE_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--trust-domain` / `MANDATE_TRUST_DOMAIN`.
    pub trust_domain: Option<String>,
    /// `MANDATE_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--log-format` / `MANDATE_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `MANDATE_ADMIN_TOKEN`.
    pub admin_token: Option<String>,
    /// `--demo`.
    pub demo: bool,
}

/// How the server logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Reads the configuration file: `explicit` must exist; otherwise `./mandate.toml` is used when present.
pub fn read_file(explicit: Option<&Path>) -> anyhow::Result<(FileConfig, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None => {
            let default = PathBuf::from("mandate.toml");
            if !default.exists() {
                return Ok((with_env("", Path::new("(no file)"), std::env::vars())?, None));
            }
            default
        }
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read config file `{}`", path.display()))?;
    Ok((with_env(&text, &path, std::env::vars())?, Some(path)))
}

/// The sections of `mandate.toml` whose settings also read from `MANDATE_<SECTION>_<KEY>`.
const ENV_SECTIONS: &[&str] =
    &["server", "review", "mandates", "ledger", "gateway", "oidc", "keys", "intents", "store", "oauth", "console"];

/// `MANDATE_*` variables that are not settings of a section: flags' own variables (read by the
/// command line), the CLI's, and the log filter.
const ENV_NOT_SETTINGS: &[&str] = &[
    "MANDATE_CONFIG",
    "MANDATE_LISTEN",
    "MANDATE_DATA_DIR",
    "MANDATE_TRUST_DOMAIN",
    "MANDATE_LOG_FORMAT",
    "MANDATE_DATABASE_URL",
    "MANDATE_ADMIN_TOKEN",
    "MANDATE_LOG",
    "MANDATE_URL",
    "MANDATE_TOKEN",
];

/// The file's settings with `MANDATE_<SECTION>_<KEY>` variables over them: every scalar or list
/// setting of a section also reads from the environment, so that nodes run from one image with no
/// file edits (`MANDATE_MANDATES_ISSUER=https://mandate.example.org`,
/// `MANDATE_SERVER_MAX_BODY_BYTES=131072`, `MANDATE_GATEWAY_ALLOWED_HOSTS='["mandate.internal:8080"]'`).
/// A value is read as TOML (a number, `true`, a `[list]`, a "quoted string") and otherwise as the
/// text itself. A variable naming a section but no setting of it is an error naming the variable.
pub fn with_env(text: &str, path: &Path, vars: impl Iterator<Item = (String, String)>) -> anyhow::Result<FileConfig> {
    let file = parse_file(text, path)?;
    let mut overlay: Vec<(String, String, String, toml::Value)> = Vec::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix("MANDATE_") else { continue };
        if ENV_NOT_SETTINGS.contains(&name.as_str()) {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let Some(section) = ENV_SECTIONS.iter().find(|s| lower.starts_with(&format!("{s}_"))) else { continue };
        let key = lower[section.len() + 1..].to_owned();
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        overlay.push((name, (*section).to_owned(), key, value));
    }
    if overlay.is_empty() {
        return Ok(file);
    }
    let mut table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut names = Vec::new();
    for (name, section, key, value) in overlay {
        let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(t) = entry.as_table_mut() else { bail!("{name}: `{section}` in the file is not a table") };
        t.insert(key, value);
        names.push(name);
    }
    names.sort();
    toml::Value::Table(table).try_into::<FileConfig>().map_err(|e| {
        anyhow::anyhow!("{} with {}: {}", path.display(), names.join(", "), e.message().trim_end_matches('\n'))
    })
}

/// Parses the file's text, naming the file, line, column and field of any error.
pub fn parse_file(text: &str, path: &Path) -> anyhow::Result<FileConfig> {
    toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message().trim_end_matches('\n'))
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// Merges defaults, file and overrides into the server's configuration and validates it, naming the
/// setting at fault.
pub fn resolve(file: FileConfig, o: Overrides) -> anyhow::Result<(ServerConfig, LogFormat)> {
    if file.database_url.is_some() && file.store.database_url.is_some() {
        bail!("database_url and [store] database_url are the same setting; keep one");
    }
    let database_url = o
        .database_url
        .or(file.store.database_url.clone())
        .or(file.database_url.clone())
        .filter(|u| !u.trim().is_empty())
        .map(|u| resolve_database_url(&u))
        .transpose()?;
    if o.demo && database_url.is_some() {
        bail!("--demo runs on the embedded SQLite store in the data directory; unset MANDATE_DATABASE_URL (or `[store] database_url`) to run it");
    }
    let max_lag_ms = file.store.max_lag_ms.unwrap_or(1000);
    if !(250..=60_000).contains(&max_lag_ms) {
        bail!("store.max_lag_ms: {max_lag_ms} must be between 250 and 60000");
    }
    let database_max_connections = file.store.max_connections.unwrap_or(16);
    if !(2..=1000).contains(&database_max_connections) {
        bail!("store.max_connections: {database_max_connections} must be between 2 and 1000");
    }
    let listen_text = o.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listen: SocketAddr = listen_text
        .parse()
        .with_context(|| format!("listen: `{listen_text}` is not an address such as `127.0.0.1:8080`"))?;
    let domain_text = o.trust_domain.or(file.trust_domain).unwrap_or_else(|| "example.org".to_owned());
    let trust_domain = TrustDomain::parse(&domain_text).map_err(|e| anyhow::anyhow!("trust_domain: {e}"))?;
    let log_format = match o.log_format.or(file.log_format).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => bail!("log_format: `{other}` must be `text` or `json`"),
    };
    let max_body_bytes = file.server.max_body_bytes.unwrap_or(64 * 1024);
    if !(1024..=16 * 1024 * 1024).contains(&max_body_bytes) {
        bail!("server.max_body_bytes: {max_body_bytes} must be between 1024 and 16777216");
    }
    let refusals = mandate_engine::refusals::RefusalSettings {
        per_source_per_sec: file.server.refusals_per_second.unwrap_or(20),
        burst: file.server.refusal_burst.unwrap_or(200),
        summary_every_secs: file.server.refusal_summary_seconds.unwrap_or(10),
        tarpit_ms: file.server.refusal_tarpit_ms.unwrap_or(1000),
        max_tarpitted_per_source: file.server.refusal_tarpit_connections.unwrap_or(64),
        max_connections_per_source: file.server.max_connections_per_source.unwrap_or(1024),
    };
    if !(1..=1_000_000).contains(&refusals.max_connections_per_source) {
        bail!(
            "server.max_connections_per_source: {} must be between 1 and 1000000",
            refusals.max_connections_per_source
        );
    }
    if refusals.tarpit_ms > 10_000 {
        bail!("server.refusal_tarpit_ms: {} must be at most 10000", refusals.tarpit_ms);
    }
    if !(1..=100_000).contains(&refusals.max_tarpitted_per_source) {
        bail!("server.refusal_tarpit_connections: {} must be between 1 and 100000", refusals.max_tarpitted_per_source);
    }
    if !(1..=1_000_000).contains(&refusals.per_source_per_sec) {
        bail!("server.refusals_per_second: {} must be between 1 and 1000000", refusals.per_source_per_sec);
    }
    if !(1..=1_000_000).contains(&refusals.burst) {
        bail!("server.refusal_burst: {} must be between 1 and 1000000", refusals.burst);
    }
    if !(1..=3600).contains(&refusals.summary_every_secs) {
        bail!("server.refusal_summary_seconds: {} must be between 1 and 3600", refusals.summary_every_secs);
    }
    let drift = resolve_drift(&file.intents, &trust_domain)?;
    let mut intents = Vec::new();
    for entry in &file.intents.categories {
        mandate_engine::behaviour::taxonomy::Category::new(&entry.name, entry.spec.clone())
            .map_err(|e| anyhow::anyhow!("intents.categories: {}", e.0))?;
        if intents.iter().any(|(n, _)| n == &entry.name) {
            bail!("intents.categories: `{}` is named twice", entry.name);
        }
        intents.push((entry.name.clone(), entry.spec.clone()));
    }
    let stale_after_days = file.review.stale_after_days.unwrap_or(30);
    if !(1..=3650).contains(&stale_after_days) {
        bail!("review.stale_after_days: {stale_after_days} must be between 1 and 3650");
    }
    if let Some(token) = &o.admin_token {
        mandate_server::validate_admin_token(token).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let issuer_from_listener = file.mandates.issuer.is_none();
    let mut mandates = resolve_mandates(file.mandates, listen)?;
    mandates.allow_unbound = file.oauth.allow_unbound.unwrap_or(false);
    let web = resolve_web(&file.oauth, &file.console, file.oidc.as_ref())?;
    let oidc = file.oidc.map(resolve_oidc).transpose()?;
    let mut gateway = resolve_gateway(&file.gateway, &|name| std::env::var(name).ok())?;
    if o.demo && !gateway.servers.iter().any(|s| s.name == "erp") {
        gateway.servers.push(demo_erp()?);
    }
    let config = ServerConfig {
        listen,
        data_dir: o.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./mandate-data")),
        settings: Settings {
            trust_domain,
            review: ReviewSettings { stale_after_days },
            max_body_bytes,
            mandates,
            oidc,
            refusals,
            drift,
            arguments: mandate_engine::engine::ArgumentRetention {
                keep: file.ledger.keep_arguments.unwrap_or(false),
                redact: file
                    .ledger
                    .redact_arguments
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REDACTED.iter().map(|s| (*s).to_owned()).collect()),
            },
        },
        admin_token: o.admin_token,
        demo: o.demo,
        issuer_from_listener,
        catalogue: resolve_catalogue(&file.gateway)?,
        intents,
        ledger: resolve_ledger(&file.ledger)?,
        gateway,
        keys_dir: file.keys.dir.clone(),
        database_url,
        database_max_connections,
        database_max_lag: std::time::Duration::from_millis(max_lag_ms),
        web,
    };
    Ok((config, log_format))
}

fn resolve_web(
    oauth: &OAuthSection,
    console: &ConsoleSection,
    oidc: Option<&OidcSection>,
) -> anyhow::Result<mandate_server::web::WebSettings> {
    let code_ttl_secs = oauth.code_ttl_seconds.unwrap_or(60);
    if !(10..=600).contains(&code_ttl_secs) {
        bail!("oauth.code_ttl_seconds: {code_ttl_secs} must be between 10 and 600");
    }
    let session_ttl_secs = console.session_ttl_seconds.unwrap_or(8 * 3600);
    if !(300..=7 * 86_400).contains(&session_ttl_secs) {
        bail!("console.session_ttl_seconds: {session_ttl_secs} must be between 300 and 604800");
    }
    if let Some(path) = &oauth.client_metadata_ca_file {
        if !path.is_file() {
            bail!("oauth.client_metadata_ca_file: `{}` is not a readable file", path.display());
        }
    }
    Ok(mandate_server::web::WebSettings {
        session_ttl_secs,
        code_ttl_secs,
        client_metadata_ca_file: oauth.client_metadata_ca_file.clone(),
        allow_private_client_hosts: oauth.danger_allow_private_client_hosts.unwrap_or(false),
        sign_in: oidc.map(|o| resolve_sign_in(o, &|name| std::env::var(name).ok())).transpose()?.flatten(),
    })
}

/// `[oidc]`'s sign-in settings: `None` when `authorization_endpoint` is not set.
fn resolve_sign_in(
    o: &OidcSection,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<mandate_server::web::SignInSettings>> {
    let Some(authorization) = &o.authorization_endpoint else {
        for (set, name) in
            [(o.token_endpoint.is_some(), "token_endpoint"), (o.client_secret.is_some(), "client_secret")]
        {
            if set {
                bail!("oidc.{name}: set without `oidc.authorization_endpoint`, which turns the console's sign-in through the IdP on");
            }
        }
        return Ok(None);
    };
    // HTTPS, except on this machine (an IdP run beside Mandate for development or tests).
    let endpoint = |name: &str, value: &str| -> anyhow::Result<url::Url> {
        let url = url::Url::parse(value).map_err(|e| anyhow::anyhow!("oidc.{name}: `{value}` is not a URL: {e}"))?;
        let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
            || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
            || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            bail!("oidc.{name}: `{value}` must be https (http only on a loopback address)");
        }
        if url.fragment().is_some() {
            bail!("oidc.{name}: `{value}` must not have a fragment");
        }
        Ok(url)
    };
    let authorization_endpoint = endpoint("authorization_endpoint", authorization)?;
    let Some(token) = &o.token_endpoint else {
        bail!("oidc.token_endpoint: required with `oidc.authorization_endpoint` (where the code is redeemed)");
    };
    let token_endpoint = endpoint("token_endpoint", token)?;
    let client_id = o.audience.clone().unwrap_or_default();
    let client_secret = match &o.client_secret {
        Some(text) => {
            let secret = mandate_gateway::config::Secret::resolve(text, env)
                .map_err(|e| anyhow::anyhow!("oidc.client_secret: {e}"))?
                .value;
            if secret.is_empty() {
                bail!("oidc.client_secret: must not be empty (leave it out for a public client)");
            }
            Some(secret)
        }
        None => None,
    };
    let mut scopes = o.scopes.clone().unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if let Some(bad) =
        scopes.iter().find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\'))
    {
        bail!("oidc.scopes: `{bad}` is not a scope (RFC 6749 section 3.3)");
    }
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    if let Some(path) = &o.token_endpoint_ca_file {
        if !path.is_file() {
            bail!("oidc.token_endpoint_ca_file: `{}` is not a readable file", path.display());
        }
    }
    Ok(Some(mandate_server::web::SignInSettings {
        authorization_endpoint,
        token_endpoint,
        client_id,
        client_secret,
        scopes: scopes.join(" "),
        ca_file: o.token_endpoint_ca_file.clone(),
        label: o.sign_in_label.clone().unwrap_or_else(|| "Sign in with your organisation".to_owned()),
    }))
}

/// Checks that `url` is a PostgreSQL URL, naming what is wrong without echoing a password.
fn resolve_database_url(url: &str) -> anyhow::Result<String> {
    let shown = mandate_store::redacted_database_url(url);
    let parsed = url::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("database_url / MANDATE_DATABASE_URL: {shown} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        bail!(
            "database_url / MANDATE_DATABASE_URL: `{}:` is not supported; use postgres://user:password@host:port/database, or unset it for the embedded SQLite store",
            parsed.scheme()
        );
    }
    if parsed.host_str().is_none_or(str::is_empty) && !parsed.query_pairs().any(|(k, _)| k == "host") {
        bail!("database_url / MANDATE_DATABASE_URL: {shown} names no host");
    }
    Ok(url.to_owned())
}

fn resolve_ledger(section: &LedgerSection) -> anyhow::Result<LedgerSettings> {
    let events = section.checkpoint_every_events.unwrap_or(LedgerSettings::DEFAULT.checkpoint_every_events);
    if !(1..=100_000_000).contains(&events) {
        bail!("ledger.checkpoint_every_events: {events} must be between 1 and 100000000");
    }
    let seconds = section.checkpoint_every_seconds.unwrap_or(LedgerSettings::DEFAULT.checkpoint_every_seconds);
    if !(1..=86_400).contains(&seconds) {
        bail!("ledger.checkpoint_every_seconds: {seconds} must be between 1 and 86400");
    }
    Ok(LedgerSettings { checkpoint_every_events: events, checkpoint_every_seconds: seconds })
}

/// The demo's ERP behind the gateway: this binary's `demo-mcp-server`, over stdio.
fn demo_erp() -> anyhow::Result<mandate_gateway::config::UpstreamSpec> {
    use mandate_gateway::config::{ToolSpec, Transport, UpstreamSpec};
    use mandate_gateway::template::ResourceTemplate;
    let exe = std::env::current_exe().context("finding this program, to start the demo's MCP server")?;
    let mut tools = std::collections::BTreeMap::new();
    for (tool, template) in [
        ("read_ledger", "erp://ledger/{period}/{account}"),
        ("match_entries", "erp://ledger/{period}/{account}"),
        ("post_journal", "erp://ledger/{period}/{account}"),
        ("read_invoices", "erp://invoices/{period}"),
    ] {
        let resource = Some(ResourceTemplate::parse(template).map_err(|e| anyhow::anyhow!("{e}"))?);
        tools.insert(tool.to_owned(), ToolSpec { resource });
    }
    Ok(UpstreamSpec {
        name: "erp".to_owned(),
        transport: Transport::Stdio {
            command: vec![exe.display().to_string(), "demo-mcp-server".to_owned()],
            env: Vec::new(),
        },
        tools,
        timeout: std::time::Duration::from_secs(10),
        list_ttl: std::time::Duration::from_secs(10),
        resources: false,
        prompts: false,
    })
}

/// The gateway's upstreams, with their credentials' references resolved (`env` reads the
/// environment).
pub fn resolve_gateway(
    section: &GatewaySection,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<mandate_gateway::config::GatewaySettings> {
    use mandate_gateway::config::{GatewaySettings, Secret, ToolSpec, Transport, UpstreamSpec};
    let mut settings = GatewaySettings::default();
    let mut names = std::collections::BTreeSet::new();
    for (i, server) in section.servers.iter().enumerate() {
        let at = format!("gateway.servers[{i}] (`{}`)", server.name);
        if !names.insert(server.name.clone()) {
            bail!("{at}: another server has this name");
        }
        // The name is the `server` of `server/tool`: parse it as one.
        ToolName::parse(&format!("{}/x", server.name)).map_err(|e| anyhow::anyhow!("{at}.name: {e}"))?;
        let secret = |what: String, v: &str| Secret::resolve(v, env).map_err(|e| anyhow::anyhow!("{what}: {e}"));
        let transport = match (&server.command, &server.url) {
            (Some(command), None) => {
                if command.is_empty() || command[0].is_empty() {
                    bail!("{at}.command: give the program and its arguments");
                }
                if server.headers.is_some() {
                    bail!("{at}.headers: a stdio upstream takes its credential in `env`");
                }
                let mut vars = Vec::new();
                for (k, v) in server.env.iter().flatten() {
                    vars.push((k.clone(), secret(format!("{at}.env.{k}"), v)?));
                }
                Transport::Stdio { command: command.clone(), env: vars }
            }
            (None, Some(url)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    bail!("{at}.url: `{url}` must be an http(s) URL");
                }
                if server.env.is_some() {
                    bail!("{at}.env: an HTTP upstream takes its credential in `headers`");
                }
                let mut headers = Vec::new();
                for (k, v) in server.headers.iter().flatten() {
                    headers.push((k.clone(), secret(format!("{at}.headers.{k}"), v)?));
                }
                Transport::Http { url: url.clone(), headers }
            }
            // Classification only: the tools are decided through /v1/authorize, nothing is proxied.
            (None, None) => continue,
            (Some(_), Some(_)) => bail!("{at}: give either `command` or `url`, not both"),
        };
        let mut tools = std::collections::BTreeMap::new();
        for (tool, class) in &server.tools {
            let resource = class
                .resource
                .as_deref()
                .map(mandate_gateway::template::ResourceTemplate::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("{at}.tools.{tool}.resource: {e}"))?;
            tools.insert(tool.clone(), ToolSpec { resource });
        }
        let seconds = |v: Option<u64>, default: u64, what: &str| -> anyhow::Result<std::time::Duration> {
            let v = v.unwrap_or(default);
            if !(1..=3600).contains(&v) {
                bail!("{at}.{what}: {v} must be between 1 and 3600");
            }
            Ok(std::time::Duration::from_secs(v))
        };
        settings.servers.push(UpstreamSpec {
            name: server.name.clone(),
            transport,
            tools,
            timeout: seconds(server.timeout_seconds, 30, "timeout_seconds")?,
            list_ttl: seconds(server.list_ttl_seconds, 10, "list_ttl_seconds")?,
            resources: server.resources.unwrap_or(false),
            prompts: server.prompts.unwrap_or(false),
        });
    }
    settings.allowed_origins = section.allowed_origins.clone().unwrap_or_default();
    settings.allowed_hosts = section.allowed_hosts.clone().unwrap_or_default();
    if let Some(n) = section.max_result_bytes {
        if !(1024..=256 * 1024 * 1024).contains(&n) {
            bail!("gateway.max_result_bytes: {n} must be between 1024 and 268435456");
        }
        settings.max_result_bytes = n;
    }
    if let Some(n) = section.max_json_depth {
        if !(4..=512).contains(&n) {
            bail!("gateway.max_json_depth: {n} must be between 4 and 512");
        }
        settings.max_json_depth = n;
    }
    Ok(settings)
}

fn resolve_catalogue(gateway: &GatewaySection) -> anyhow::Result<Vec<(ToolName, Classification)>> {
    let mut out = Vec::new();
    for (i, server) in gateway.servers.iter().enumerate() {
        let at = format!("gateway.servers[{i}] (`{}`)", server.name);
        if server.command.is_some() && server.url.is_some() {
            bail!("{at}: give either `command` or `url`, not both");
        }
        let environment = match server.environment.as_deref() {
            None | Some("production") => Environment::Production,
            Some("pilot") => Environment::Pilot,
            Some("sandbox") => Environment::Sandbox,
            Some(other) => bail!("{at}.environment: `{other}` must be `sandbox`, `pilot` or `production`"),
        };
        for (tool, class) in &server.tools {
            let name = ToolName::parse(&format!("{}/{tool}", server.name))
                .map_err(|e| anyhow::anyhow!("{at}.tools.{tool}: {e}"))?;
            mandate_core::pattern::DataClass::parse(&class.data_class)
                .map_err(|e| anyhow::anyhow!("{at}.tools.{tool}.data_class: {e}"))?;
            let risk: Action = serde_json::from_value(serde_json::Value::String(class.risk.clone())).map_err(|_| {
                anyhow::anyhow!(
                    "{at}.tools.{tool}.risk: `{}` must be `read`, `write`, `destructive` or `egress`",
                    class.risk
                )
            })?;
            out.push((
                name,
                Classification { data_class: class.data_class.clone(), risk, server_environment: Some(environment) },
            ));
        }
    }
    Ok(out)
}

fn resolve_drift(
    section: &IntentsSection,
    trust_domain: &TrustDomain,
) -> anyhow::Result<mandate_engine::behaviour::DriftSettings> {
    let internal_domains = section.internal_domains.clone().unwrap_or_else(|| vec![trust_domain.to_string()]);
    for d in &internal_domains {
        let ok = d.contains('.')
            && d.split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        if !ok {
            bail!("intents.internal_domains: `{d}` must be a lowercase domain such as `example.org`");
        }
    }
    let learn_below = section.learn_below.unwrap_or(10);
    let alert_score = section.alert_score.unwrap_or(50);
    for (field, v) in [("learn_below", learn_below), ("alert_score", alert_score)] {
        if !(1..=100).contains(&v) {
            bail!("intents.{field}: {v} must be between 1 and 100");
        }
    }
    Ok(mandate_engine::behaviour::DriftSettings {
        enabled: section.drift.unwrap_or(true),
        internal_domains,
        learn_below,
        alert_score,
    })
}

fn resolve_mandates(m: MandatesSection, listen: SocketAddr) -> anyhow::Result<MandateSettings> {
    let issuer = m.issuer.unwrap_or_else(|| format!("http://{listen}"));
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) || issuer.ends_with('/') {
        bail!("mandates.issuer: `{issuer}` must be an http(s) URL without a trailing `/`");
    }
    let audience = m.audience.unwrap_or_else(|| issuer.clone());
    let max_ttl = m.max_ttl_seconds.unwrap_or(3600);
    if !(60..=86_400).contains(&max_ttl) {
        bail!("mandates.max_ttl_seconds: {max_ttl} must be between 60 and 86400");
    }
    let default_ttl = m.default_ttl_seconds.unwrap_or(900.min(max_ttl));
    if !(1..=max_ttl).contains(&default_ttl) {
        bail!("mandates.default_ttl_seconds: {default_ttl} must be between 1 and max_ttl_seconds ({max_ttl})");
    }
    let ceiling = m.max_calls.unwrap_or(100_000);
    if ceiling == 0 {
        bail!("mandates.max_calls: must be at least 1");
    }
    let default_calls = m.default_max_calls.unwrap_or(100.min(ceiling));
    if !(1..=ceiling).contains(&default_calls) {
        bail!("mandates.default_max_calls: {default_calls} must be between 1 and max_calls ({ceiling})");
    }
    let proof_max_age_secs = m.proof_max_age_seconds.unwrap_or(60);
    if !(5..=600).contains(&proof_max_age_secs) {
        bail!("mandates.proof_max_age_seconds: {proof_max_age_secs} must be between 5 and 600");
    }
    let approval_ttl_secs = m.approval_ttl_seconds.unwrap_or(900);
    if !(60..=86_400).contains(&approval_ttl_secs) {
        bail!("mandates.approval_ttl_seconds: {approval_ttl_secs} must be between 60 and 86400");
    }
    let max_pending_approvals = m.max_pending_approvals.unwrap_or(20);
    if !(1..=1_000).contains(&max_pending_approvals) {
        bail!("mandates.max_pending_approvals: {max_pending_approvals} must be between 1 and 1000");
    }
    let replay_cache_capacity = m.replay_cache_capacity.unwrap_or(1_000_000);
    if !(1_000..=50_000_000).contains(&replay_cache_capacity) {
        bail!("mandates.replay_cache_capacity: {replay_cache_capacity} must be between 1000 and 50000000");
    }
    let clock_skew_secs = m.clock_skew_seconds.unwrap_or(30);
    if clock_skew_secs > 300 {
        bail!("mandates.clock_skew_seconds: {clock_skew_secs} must be at most 300");
    }
    Ok(MandateSettings {
        issuer,
        audience,
        limits: MandateLimits {
            default_ttl_secs: default_ttl,
            max_ttl_secs: max_ttl,
            default_max_calls: default_calls,
            max_calls_ceiling: ceiling,
        },
        proof_max_age_secs,
        clock_skew_secs,
        allow_unbound: false,
        approval_ttl_secs,
        max_pending_approvals,
        replay_cache_capacity,
    })
}

fn resolve_oidc(section: OidcSection) -> anyhow::Result<OidcConfig> {
    let required = |value: Option<String>, name: &str, what: &str| -> anyhow::Result<String> {
        match value {
            Some(value) if !value.trim().is_empty() => Ok(value),
            Some(_) => bail!("oidc.{name}: must not be empty"),
            None => bail!("oidc.{name}: required when `[oidc]` is present ({what})"),
        }
    };
    let issuer = required(section.issuer, "issuer", "the issuer identifier, compared exactly with `iss`")?;
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        bail!("oidc.issuer: `{issuer}` must be the issuer's http(s) URL, exactly as its ID tokens' `iss` says it");
    }
    let audience = required(section.audience, "audience", "Mandate's client id at the IdP, which `aud` must contain")?;
    let Some(jwks_file) = section.jwks_file else {
        bail!("oidc.jwks_file: required when `[oidc]` is present (the issuer's JWKS as a file: Mandate never fetches keys over the network)");
    };
    let mut settings = OidcSettings::new(issuer, audience);
    if let Some(claim) = section.username_claim {
        settings.username_claim = required(Some(claim), "username_claim", "")?;
    }
    if let Some(claim) = section.groups_claim {
        settings.groups_claim = required(Some(claim), "groups_claim", "")?;
    }
    settings.skew_secs = section.clock_skew_seconds.unwrap_or(OidcSettings::DEFAULT_SKEW_SECS);
    if settings.skew_secs > 300 {
        bail!("oidc.clock_skew_seconds: {} must be at most 300", settings.skew_secs);
    }
    if let Some(max_age) = section.max_auth_age_seconds {
        if max_age == 0 {
            bail!("oidc.max_auth_age_seconds: must be at least 1");
        }
        settings.max_age_secs = Some(max_age);
    }
    let mut roles = std::collections::BTreeMap::new();
    let listed = [
        (Role::Admin, "admin", section.roles.admin),
        (Role::Approver, "approver", section.roles.approver),
        (Role::Auditor, "auditor", section.roles.auditor),
    ];
    for (role, name, groups) in listed {
        let groups = groups
            .unwrap_or_default()
            .iter()
            .map(|group| Group::parse(group).map_err(|e| anyhow::anyhow!("oidc.roles.{name}: `{group}`: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if !groups.is_empty() {
            roles.insert(role, groups);
        }
    }
    let keys = load_jwks(&jwks_file)?;
    Ok(OidcConfig { settings, keys, jwks_file, roles })
}

/// Reads the OIDC issuer's JWKS file (at start, and again when the server is told to reload it),
/// naming the file in every error.
pub fn load_jwks(path: &Path) -> anyhow::Result<IssuerKeys> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("oidc.jwks_file: cannot read `{shown}`"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("oidc.jwks_file: `{shown}` is not JSON"))?;
    IssuerKeys::from_jwks_json(&json).map_err(|e| anyhow::anyhow!("oidc.jwks_file: `{shown}`: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_file(text, Path::new("mandate.toml")).unwrap_err().to_string()
    }

    #[test]
    fn no_file_and_no_flags_gives_the_documented_defaults() {
        let (config, format) = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./mandate-data"));
        assert_eq!(config.settings.trust_domain.as_str(), "example.org");
        assert_eq!(config.settings.review.stale_after_days, 30);
        assert_eq!(format, LogFormat::Text);
    }

    #[test]
    fn flags_and_env_override_the_file() {
        let file =
            parse_file("listen = \"127.0.0.1:9000\"\ntrust_domain = \"acme.test\"\n", Path::new("m.toml")).unwrap();
        let o = Overrides { listen: Some("127.0.0.1:9100".into()), ..Overrides::default() };
        let (config, _) = resolve(file, o).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(config.settings.trust_domain.as_str(), "acme.test");
    }

    #[test]
    fn intent_categories_and_drift_settings_come_from_the_file() {
        let text = "trust_domain = \"acme.test\"\n[intents]\nalert_score = 60\n\
                    [[intents.categories]]\nname = \"legal.review\"\ntools = [\"docs/*\"]\n\
                    data_classes = [\"internal\"]\ndestinations = [\"counsel.example\"]\nmode = \"enforce\"\n";
        let (config, _) = resolve(parse_file(text, Path::new("m.toml")).unwrap(), Overrides::default()).unwrap();
        assert_eq!(config.settings.drift.internal_domains, ["acme.test"], "the trust domain by default");
        assert_eq!((config.settings.drift.alert_score, config.settings.drift.learn_below), (60, 10));
        assert_eq!(config.intents.len(), 1);
        assert_eq!(config.intents[0].0, "legal.review");
        assert_eq!(config.intents[0].1.destinations, ["counsel.example"]);
        let refused = |text: &str| {
            resolve(parse_file(text, Path::new("m.toml")).unwrap(), Overrides::default()).unwrap_err().to_string()
        };
        assert!(refused("[[intents.categories]]\nname = \"x\"\ntools = [\"*\"]\ndata_classes = [\"internal\"]\n")
            .starts_with("intents.categories: category `x`: tool pattern `*`"),);
        assert_eq!(refused("[intents]\nalert_score = 0\n"), "intents.alert_score: 0 must be between 1 and 100");
        assert_eq!(
            refused("[intents]\ninternal_domains = [\"Corp\"]\n"),
            "intents.internal_domains: `Corp` must be a lowercase domain such as `example.org`"
        );
    }

    #[test]
    fn a_postgres_url_comes_from_the_environment_or_the_file_and_bad_ones_are_named_without_passwords() {
        let file = |text: &str| parse_file(text, Path::new("m.toml")).unwrap();
        let env = |url: &str| Overrides { database_url: Some(url.into()), ..Overrides::default() };
        let (c, _) = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.database_url, None, "SQLite in the data directory by default");
        let (c, _) = resolve(
            file("[store]\ndatabase_url = \"postgres://m@db:5432/m\"\nmax_connections = 40\n"),
            Overrides::default(),
        )
        .unwrap();
        assert_eq!((c.database_url.as_deref(), c.database_max_connections), (Some("postgres://m@db:5432/m"), 40));
        let (c, _) = resolve(file("database_url = \"postgres://m@file/m\"\n"), env("postgresql://m@env/m")).unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgresql://m@env/m"), "MANDATE_DATABASE_URL wins");
        let (c, _) = resolve(FileConfig::default(), env("  ")).unwrap();
        assert_eq!(c.database_url, None, "an empty variable is unset");
        let refused = |f: FileConfig, o: Overrides| resolve(f, o).unwrap_err().to_string();
        let e = refused(FileConfig::default(), env("mysql://root:hunter2@db/m"));
        assert!(e.contains("`mysql:` is not supported") && !e.contains("hunter2"), "{e}");
        let e = refused(FileConfig::default(), env("postgres:///m"));
        assert!(e.contains("names no host"), "{e}");
        let e = refused(FileConfig::default(), env("postgres://root:hunter2@/m"));
        assert!(e.contains("is not a URL") && !e.contains("hunter2"), "{e}");
        let e = refused(FileConfig::default(), env("not a url hunter2"));
        assert!(e.contains("is not a URL") && !e.contains("hunter2"), "{e}");
        let e = refused(
            file("database_url = \"postgres://a/m\"\n[store]\ndatabase_url = \"postgres://b/m\"\n"),
            Overrides::default(),
        );
        assert!(e.contains("the same setting"), "{e}");
        let e = refused(FileConfig::default(), Overrides { demo: true, ..env("postgres://db/m") });
        assert!(e.starts_with("--demo runs on the embedded SQLite store"), "{e}");
        let e = refused(file("[store]\nmax_connections = 1\n"), Overrides::default());
        assert_eq!(e, "store.max_connections: 1 must be between 2 and 1000");
    }

    #[test]
    fn bad_files_name_the_file_line_and_field() {
        assert_eq!(
            err("trust_domain = \"example.org\"\nlisen = \"x\"\n"),
            "mandate.toml:2:1: unknown field `lisen`, expected one of `trust_domain`, `listen`, `data_dir`, `database_url`, `store`, `log_format`, `server`, `review`, `mandates`, `gateway`, `oidc`, `ledger`, `keys`, `intents`, `oauth`, `console`"
        );
        let e = err("[review]\nstale_after_days = \"soon\"\n");
        assert!(e.starts_with("mandate.toml:2:20: invalid type: string \"soon\""), "{e}");
        let e = err("listen = \n");
        assert!(e.starts_with("mandate.toml:1:"), "{e}");
    }

    #[test]
    fn every_section_setting_also_reads_from_the_environment() {
        let file = "[mandates]\nissuer = \"https://file.example.org\"\ndefault_ttl_seconds = 600\n";
        let vars =
            |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
        let c = with_env(
            file,
            Path::new("mandate.toml"),
            vars(&[
                ("MANDATE_MANDATES_ISSUER", "https://env.example.org"),
                ("MANDATE_SERVER_MAX_BODY_BYTES", "131072"),
                ("MANDATE_GATEWAY_ALLOWED_HOSTS", r#"["mandate.internal:8080"]"#),
                ("MANDATE_LEDGER_KEEP_ARGUMENTS", "true"),
                ("MANDATE_TOKEN", "not a setting"),
                ("MANDATE_SOAK_CYCLES", "3"),
                ("PATH", "/usr/bin"),
            ])
            .into_iter(),
        )
        .unwrap();
        assert_eq!(c.mandates.issuer.as_deref(), Some("https://env.example.org"), "the environment wins over the file");
        assert_eq!(c.mandates.default_ttl_seconds, Some(600), "the file's other settings stay");
        assert_eq!(c.server.max_body_bytes, Some(131_072));
        assert_eq!(c.gateway.allowed_hosts, Some(vec!["mandate.internal:8080".to_owned()]));
        assert_eq!(c.ledger.keep_arguments, Some(true));
        // A typo in a setting's name is an error naming the variable, never a silent default.
        let e =
            with_env("", Path::new("mandate.toml"), vars(&[("MANDATE_MANDATES_ISUER", "x")]).into_iter()).unwrap_err();
        assert!(e.to_string().contains("MANDATE_MANDATES_ISUER") && e.to_string().contains("isuer"), "{e}");
        let e = with_env("", Path::new("mandate.toml"), vars(&[("MANDATE_SERVER_MAX_BODY_BYTES", "lots")]).into_iter())
            .unwrap_err();
        assert!(e.to_string().contains("MANDATE_SERVER_MAX_BODY_BYTES"), "{e}");
    }

    #[test]
    fn gateway_servers_classify_their_tools() {
        let text = r#"
[[gateway.servers]]
name = "everything"
command = ["npx", "@modelcontextprotocol/server-everything"]
environment = "sandbox"
[gateway.servers.tools.echo]
data_class = "public"
risk = "read"
"#;
        let (config, _) = resolve(parse_file(text, Path::new("m.toml")).unwrap(), Overrides::default()).unwrap();
        assert_eq!(config.catalogue.len(), 1);
        let (name, class) = &config.catalogue[0];
        assert_eq!(name.as_str(), "everything/echo");
        assert_eq!(
            (class.data_class.as_str(), class.risk, class.server_environment),
            ("public", Action::Read, Some(Environment::Sandbox))
        );
        let bad = text.replace("risk = \"read\"", "risk = \"fast\"");
        let e = resolve(parse_file(&bad, Path::new("m.toml")).unwrap(), Overrides::default()).unwrap_err().to_string();
        assert_eq!(e, "gateway.servers[0] (`everything`).tools.echo.risk: `fast` must be `read`, `write`, `destructive` or `egress`");
    }

    /// A JWKS file with one Ed25519 key in `dir`, and the `[oidc]` section naming it.
    fn oidc_file(dir: &Path) -> (PathBuf, String) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let mut jwk = mandate_core::jwk::Ed25519PublicJwk::from_verifying_key(key.verifying_key()).to_json();
        jwk["kid"] = "idp-1".into();
        let path = dir.join("idp-jwks.json");
        std::fs::write(&path, serde_json::json!({"keys": [jwk]}).to_string()).unwrap();
        let text = format!(
            "[oidc]\nissuer = \"https://idp.example.org\"\naudience = \"mandate\"\njwks_file = '{}'\n",
            path.display()
        );
        (path, text)
    }

    fn resolve_text(text: &str) -> anyhow::Result<ServerConfig> {
        Ok(resolve(parse_file(text, Path::new("m.toml"))?, Overrides::default())?.0)
    }

    #[test]
    fn the_oidc_section_is_read_with_its_defaults_and_role_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let (path, section) = oidc_file(dir.path());
        assert!(resolve_text("").unwrap().settings.oidc.is_none(), "no section, no OIDC");
        let text = format!("{section}clock_skew_seconds = 10\n[oidc.roles]\napprover = [\"finance-approvers\"]\nauditor = [\"audit\", \"risk\"]\n");
        let oidc = resolve_text(&text).unwrap().settings.oidc.unwrap();
        let mut expected = OidcSettings::new("https://idp.example.org", "mandate");
        expected.skew_secs = 10;
        assert_eq!(oidc.settings, expected);
        assert_eq!((oidc.settings.username_claim.as_str(), oidc.settings.groups_claim.as_str()), ("email", "groups"));
        assert_eq!(oidc.jwks_file, path);
        assert_eq!(oidc.keys.kids().collect::<Vec<_>>(), [Some("idp-1")]);
        let roles: Vec<(Role, Vec<String>)> =
            oidc.roles.iter().map(|(r, g)| (*r, g.iter().map(ToString::to_string).collect())).collect();
        assert_eq!(
            roles,
            [
                (Role::Approver, vec!["finance-approvers".to_owned()]),
                (Role::Auditor, vec!["audit".to_owned(), "risk".to_owned()])
            ]
        );
        let claims = format!(
            "{section}username_claim = \"preferred_username\"\ngroups_claim = \"roles\"\nmax_auth_age_seconds = 3600\n"
        );
        let oidc = resolve_text(&claims).unwrap().settings.oidc.unwrap();
        assert_eq!(
            (oidc.settings.username_claim.as_str(), oidc.settings.groups_claim.as_str(), oidc.settings.max_age_secs),
            ("preferred_username", "roles", Some(3600))
        );
    }

    #[test]
    fn sign_in_through_the_idp_is_read_and_its_endpoints_must_be_https_off_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let (_, section) = oidc_file(dir.path());
        assert!(resolve_text(&section).unwrap().web.sign_in.is_none(), "no endpoints, no sign-in button");
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        let endpoints = format!(
            "{section}authorization_endpoint = \"https://idp.example.org/authorize\"\ntoken_endpoint = \"https://idp.example.org/token\"\n"
        );
        let with_secret = format!(
            "{endpoints}client_secret = \"${{file:{}}}\"\nscopes = [\"email\", \"groups\"]\n",
            dir.path().join("secret").display()
        );
        let sign_in = resolve_text(&with_secret).unwrap().web.sign_in.unwrap();
        assert_eq!(sign_in.client_id, "mandate", "the audience is the client id");
        assert_eq!(sign_in.client_secret.as_deref(), Some("s3cret"), "read from its file, without the newline");
        assert_eq!(sign_in.scopes, "openid email groups", "openid is always asked for");
        assert!(!format!("{sign_in:?}").contains("s3cret"), "never in debug output");
        let public = resolve_text(&endpoints).unwrap().web.sign_in.unwrap();
        assert_eq!((public.client_secret, public.scopes.as_str()), (None, "openid email profile"));
        let local = endpoints.replace("https://idp.example.org", "http://127.0.0.1:8081");
        assert!(resolve_text(&local).is_ok(), "http on this machine");
        let check = |text: &str, expected: &str| {
            let e = format!("{:#}", resolve_text(text).unwrap_err());
            assert!(e.starts_with(expected), "{e}\nshould start with {expected}");
        };
        check(
            &endpoints.replace("https://idp.example.org/token", "http://idp.example.org/token"),
            "oidc.token_endpoint: `http://idp.example.org/token` must be https",
        );
        check(
            &endpoints.replace("token_endpoint = \"https://idp.example.org/token\"\n", ""),
            "oidc.token_endpoint: required with",
        );
        check(
            &format!("{section}token_endpoint = \"https://idp.example.org/token\"\n"),
            "oidc.token_endpoint: set without `oidc.authorization_endpoint`",
        );
        check(
            &format!("{endpoints}client_secret = \"${{env:MANDATE_TEST_NO_SUCH_SECRET}}\"\n"),
            "oidc.client_secret: `${env:MANDATE_TEST_NO_SUCH_SECRET}` is not set",
        );
        check(&format!("{endpoints}scopes = [\"open id\"]\n"), "oidc.scopes: `open id` is not a scope");
    }

    #[test]
    fn the_readme_example_configuration_parses() {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
        let start = readme.find("```toml\n# mandate.toml").expect("the example in README.md") + "```toml\n".len();
        let example = &readme[start..start + readme[start..].find("```").unwrap()];
        let file = parse_file(example, Path::new("README.md")).unwrap();
        let oidc = file.oidc.unwrap();
        assert_eq!(oidc.roles.approver, Some(vec!["finance-approvers".to_owned()]));
        assert_eq!(oidc.jwks_file, Some(PathBuf::from("/etc/mandate/idp-jwks.json")));
    }

    #[test]
    fn a_bad_oidc_section_names_the_field_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, section) = oidc_file(dir.path());
        let check = |text: &str, expected: &str| {
            let e = format!("{:#}", resolve_text(text).unwrap_err());
            assert!(e.starts_with(expected), "{e}\nshould start with {expected}");
        };
        check(&section.replace("audience = \"mandate\"\n", ""), "oidc.audience: required when `[oidc]` is present");
        check(&section.replace("issuer = \"https://idp.example.org\"\n", ""), "oidc.issuer: required");
        check(&section.replace("https://idp.example.org", "idp.example.org"), "oidc.issuer: `idp.example.org`");
        check(&section.replace("audience = \"mandate\"", "audience = \" \""), "oidc.audience: must not be empty");
        check(&section.replace(&format!("jwks_file = '{}'\n", path.display()), ""), "oidc.jwks_file: required");
        check(&format!("{section}clock_skew_seconds = 301\n"), "oidc.clock_skew_seconds: 301");
        check(
            &format!("{section}[oidc.roles]\napprover = [\"Finance Approvers\"]\n"),
            "oidc.roles.approver: `Finance Approvers`",
        );
        check(
            &format!("{section}jwks_url = \"https://idp.example.org/jwks\"\n"),
            "m.toml:5:1: unknown field `jwks_url`",
        );
        check(&format!("{section}[oidc.roles]\nowner = [\"x\"]\n"), "m.toml:6:1: unknown field `owner`");
        // The file: missing, not JSON, or without a usable key; each error names it.
        let missing = dir.path().join("nowhere.json");
        let shown = missing.display().to_string();
        check(&section.replace(&path.display().to_string(), &shown), &format!("oidc.jwks_file: cannot read `{shown}`"));
        std::fs::write(&path, "{not json").unwrap();
        check(&section, &format!("oidc.jwks_file: `{}` is not JSON", path.display()));
        std::fs::write(&path, r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#).unwrap();
        check(&section, &format!("oidc.jwks_file: `{}`: the issuer's JWKS has no usable", path.display()));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let check = |file: &str, o: Overrides, expected: &str| {
            let e = resolve(parse_file(file, Path::new("m.toml")).unwrap(), o).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{e}");
        };
        check("listen = \"localhost\"", Overrides::default(), "listen: `localhost`");
        check("trust_domain = \"Example\"", Overrides::default(), "trust_domain:");
        check("log_format = \"xml\"", Overrides::default(), "log_format:");
        check("[server]\nmax_body_bytes = 1", Overrides::default(), "server.max_body_bytes:");
        check("", Overrides { database_url: Some("sqlite://x".into()), ..Overrides::default() }, "database_url");
        check("", Overrides { admin_token: Some("short".into()), ..Overrides::default() }, "MANDATE_ADMIN_TOKEN");
        let dotted =
            Overrides { admin_token: Some("looks.like.a-jwt-0123456789abcdef".into()), ..Overrides::default() };
        check("", dotted, "MANDATE_ADMIN_TOKEN must not contain `.`");
    }

    #[test]
    fn argument_values_are_kept_only_on_request_with_a_default_redaction_list() {
        let read =
            |text: &str| resolve(parse_file(text, Path::new("m.toml")).unwrap(), Overrides::default()).unwrap().0;
        assert!(!read("").settings.arguments.keep);
        let kept = read("[ledger]\nkeep_arguments = true\n").settings.arguments;
        assert!(kept.keep && kept.redact.contains(&"password".to_owned()));
        let custom = read("[ledger]\nkeep_arguments = true\nredact_arguments = [\"iban\"]\n").settings.arguments;
        assert_eq!(custom.redact, vec!["iban".to_owned()]);
    }

    #[test]
    fn the_ledger_section_sets_how_often_checkpoints_are_signed() {
        let ledger = |text: &str| resolve(parse_file(text, Path::new("m.toml")).unwrap(), Overrides::default());
        let defaults = ledger("").unwrap().0.ledger;
        assert_eq!((defaults.checkpoint_every_events, defaults.checkpoint_every_seconds), (10_000, 60));
        let set = ledger("[ledger]\ncheckpoint_every_events = 500\ncheckpoint_every_seconds = 5\n").unwrap().0.ledger;
        assert_eq!((set.checkpoint_every_events, set.checkpoint_every_seconds), (500, 5));
        let e = ledger("[ledger]\ncheckpoint_every_events = 0\n").unwrap_err().to_string();
        assert!(e.starts_with("ledger.checkpoint_every_events: 0"), "{e}");
        let e = ledger("[ledger]\ncheckpoint_every_seconds = 90000\n").unwrap_err().to_string();
        assert!(e.starts_with("ledger.checkpoint_every_seconds: 90000"), "{e}");
    }
}
