//! What a browser sees: the web console at `/console` and MCP's authorization flow at
//! `/oauth/authorize` (the consent page). Both are a third front door onto the same engine, and
//! neither decides or authorizes anything itself: every console page calls the HTTP API's own
//! handler with the signed-in human as the caller and renders its answer, so that a page shows and
//! does exactly what that human's credential may over the API; the consent page grants through the
//! engine's grant, the same trust decision as `POST /v1/mandates`.
//!
//! State kept here, in this node's memory and bounded: console sessions (a random cookie naming the
//! credential the human signed in with, resolved again on every request, so that a deactivated
//! human or a replaced key is signed out at once), authorization requests waiting for consent,
//! authorization codes (single use, 60 s), and sign-ins waiting for the IdP (single use, 10 min). See ARCHITECTURE.md for what that means behind a load
//! balancer.

pub mod client_metadata;
pub mod console;
pub mod html;
pub mod oauth;
pub mod session;
pub mod sign_in;

use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use std::path::PathBuf;

/// The console's and the authorization flow's settings (`[console]`, `[oauth]`).
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// How long a console session lasts, in seconds (`[console] session_ttl_seconds`, 8 hours).
    pub session_ttl_secs: i64,
    /// How long an authorization code may wait for the token endpoint (`[oauth] code_ttl_seconds`, 60).
    pub code_ttl_secs: i64,
    /// Extra trust anchors (PEM) for fetching client metadata documents over HTTPS
    /// (`[oauth] client_metadata_ca_file`), for clients published on an internal CA.
    pub client_metadata_ca_file: Option<PathBuf>,
    /// Fetch client metadata documents from loopback and private addresses
    /// (`[oauth] danger_allow_private_client_hosts`): off, so that a client id cannot make Mandate
    /// reach into its own network (SSRF). Tests on one machine turn it on.
    pub allow_private_client_hosts: bool,
    /// Signing in through the organisation's IdP (`[oidc] authorization_endpoint` and its
    /// companions): absent, an ID token can only be pasted on the sign-in page.
    pub sign_in: Option<SignInSettings>,
}

/// `[oidc]`'s sign-in settings: the console's OpenID Connect authorization code flow with the organisation's
/// IdP (PKCE S256, `state`, `nonce`; the ID token is verified as every ID token is, against
/// `[oidc]`'s issuer, audience and JWKS file).
#[derive(Clone)]
pub struct SignInSettings {
    /// Where the browser is sent to sign in.
    pub authorization_endpoint: url::Url,
    /// Where the code is redeemed for the ID token.
    pub token_endpoint: url::Url,
    /// Mandate's client id at the IdP (`[oidc] audience`).
    pub client_id: String,
    /// Mandate's client secret at the IdP, sent with HTTP Basic (`client_secret_basic`); absent: a
    /// public client, PKCE only.
    pub client_secret: Option<String>,
    /// The scopes asked for, space-separated (`openid` always among them).
    pub scopes: String,
    /// Extra trust anchors (PEM) for the token endpoint, for an IdP on an internal CA.
    pub ca_file: Option<PathBuf>,
    /// The button's label on the sign-in page.
    pub label: String,
}

impl std::fmt::Debug for SignInSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInSettings")
            .field("authorization_endpoint", &self.authorization_endpoint.as_str())
            .field("token_endpoint", &self.token_endpoint.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .field("scopes", &self.scopes)
            .field("ca_file", &self.ca_file)
            .field("label", &self.label)
            .finish()
    }
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            session_ttl_secs: 8 * 3600,
            code_ttl_secs: 60,
            client_metadata_ca_file: None,
            allow_private_client_hosts: false,
            sign_in: None,
        }
    }
}

/// The web front door's state: sessions, authorization requests and codes, the metadata fetcher.
pub struct Web {
    /// Its settings.
    pub settings: WebSettings,
    pub(crate) sessions: session::Sessions,
    pub(crate) flows: oauth::Flows,
    pub(crate) clients: client_metadata::Fetcher,
    pub(crate) sign_ins: sign_in::SignIns,
    /// The gateway's servers: what a `resource` indicator may name.
    pub(crate) servers: Vec<String>,
}

impl Web {
    /// A web front door with `settings`.
    pub fn new(settings: WebSettings) -> Result<Self, String> {
        let clients = client_metadata::Fetcher::new(&settings)?;
        let sign_ins = sign_in::SignIns::new(settings.sign_in.as_ref())?;
        Ok(Self::with_fetcher(settings, clients, sign_ins))
    }

    fn with_fetcher(settings: WebSettings, clients: client_metadata::Fetcher, sign_ins: sign_in::SignIns) -> Self {
        Self {
            settings,
            sessions: session::Sessions::default(),
            flows: oauth::Flows::default(),
            clients,
            sign_ins,
            servers: Vec::new(),
        }
    }

    /// The same, for a gateway serving `servers`.
    pub fn with_servers(mut self, servers: Vec<String>) -> Self {
        self.servers = servers;
        self
    }
}

impl Default for Web {
    fn default() -> Self {
        let settings = WebSettings::default();
        let clients = client_metadata::Fetcher::without_extra_roots(&settings);
        Self::with_fetcher(settings, clients, sign_in::SignIns::default())
    }
}

/// The console's and the authorization endpoint's routes.
pub fn router() -> Router<AppState> {
    use console as c;
    Router::new()
        .route("/console", get(c::home))
        .route("/console/", get(c::home))
        .route("/console/assets/console.css", get(html::stylesheet))
        .route("/console/assets/console.js", get(html::script))
        .route("/console/login", get(session::login_page).post(session::login))
        .route("/console/logout", post(session::logout))
        .route("/console/oidc/start", get(sign_in::start))
        .route("/console/oidc/callback", get(sign_in::callback))
        .route("/console/approvals", get(c::approvals))
        .route("/console/approvals/count", get(c::approvals_count))
        .route("/console/approvals/{id}/{answer}", post(c::answer_approval))
        .route("/console/chains", get(c::chains))
        .route("/console/chains/{id}", get(c::chain))
        .route("/console/mandates/{id}/revoke", post(c::revoke_mandate))
        .route("/console/incident", get(c::incident))
        .route("/console/kill", post(c::kill))
        .route("/console/registry", get(c::registry))
        .route("/console/agents/{id}", get(c::agent))
        .route("/console/agents/{id}/{action}", post(c::agent_action))
        .route("/console/register", get(c::register_page).post(c::register))
        .route("/console/tools/{server}/{tool}", get(c::tool))
        .route("/console/tools/{server}/{tool}/approve", post(c::approve_tool))
        .route("/oauth/authorize", get(oauth::authorize).post(oauth::consent))
}

/// Makes room in a bounded map of things waiting (`MAX_PENDING` of them): when it is full, the
/// expired ones go; `false` when it is still full.
pub(crate) fn bounded<K: std::hash::Hash + Eq, V>(
    map: &mut std::collections::HashMap<K, V>,
    now_ms: i64,
    expires: impl Fn(&V) -> i64,
) -> bool {
    if map.len() >= MAX_PENDING {
        map.retain(|_, v| expires(v) > now_ms);
    }
    map.len() < MAX_PENDING
}

/// The most of one kind of thing waiting (consent requests, codes, sign-ins) one node keeps.
pub(crate) const MAX_PENDING: usize = 10_000;

/// PKCE's S256 challenge of `verifier` (RFC 7636 section 4.2): BASE64URL(SHA-256(verifier)).
pub(crate) fn pkce_challenge(verifier: &str) -> String {
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Extra trust anchors (PEM) from the file `setting` names, read now; an error names both.
pub(crate) fn extra_roots(path: &std::path::Path, setting: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{setting} `{shown}`: {e}"))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{setting} `{shown}`: not PEM certificates: {e}"))?;
    if roots.is_empty() {
        return Err(format!("{setting} `{shown}` holds no certificate"));
    }
    Ok(roots)
}

/// A random secret, 256 bits, base64url.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a secret: what is kept in place of it.
pub(crate) fn digest(secret: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (digest(a), digest(b));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
