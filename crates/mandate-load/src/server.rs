//! The server under test: started from a `mandate` binary over a fresh data directory (or one already
//! running on loopback), and the organisation the load runs in, set up through the HTTP API.

use crate::http::{Conn, Target};
use anyhow::{anyhow, bail, Context as _};
use ed25519_dalek::SigningKey;
use mandate_core::jwk::Ed25519PublicJwk;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tool every load call names: internal data, read-only, in production.
pub const TOOL: &str = "load/echo";

/// A `mandate serve` child process over a temporary data directory; stopped (SIGTERM, then SIGKILL
/// after ten seconds) when dropped.
pub struct Spawned {
    child: Child,
    /// Its base URL.
    pub url: String,
    /// The administrator token it was started with.
    pub admin_token: String,
    /// Its data directory (removed on drop).
    pub data_dir: tempfile::TempDir,
}

/// How to start the server.
pub struct SpawnOptions<'a> {
    /// The `mandate` binary.
    pub binary: &'a Path,
    /// Where to create the temporary data directory.
    pub data_parent: &'a Path,
    /// `MANDATE_LOG` for the server (its default is `info,sqlx=warn`: one line per decision).
    pub log_filter: &'a str,
    /// More of `mandate.toml` (the gateway's servers, for the gateway benchmark).
    pub config_extra: &'a str,
    /// More environment (a shared database and keys directory, for several nodes).
    pub env: &'a [(&'a str, String)],
    /// `[mandates] issuer` (several nodes behind one name); default: the node's own address.
    pub issuer: Option<&'a str>,
    /// The administrator token; default: one made up for this node.
    pub admin_token: Option<&'a str>,
}

impl Spawned {
    /// Starts `mandate serve` on a free loopback port with budgets large enough not to be measured.
    pub fn start(options: &SpawnOptions<'_>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(options.data_parent)?;
        let data_dir = tempfile::Builder::new().prefix("mandate-load-").tempdir_in(options.data_parent)?;
        // Budgets are not what is measured: the ceiling and every grant allow far more calls than a run
        // makes. Everything else is the server's default, durability included (SQLite WAL,
        // `synchronous = FULL`, an append acknowledged only once on disk).
        let config = data_dir.path().join("mandate.toml");
        let issuer = options.issuer.map(|i| format!("issuer = \"{i}\"\n")).unwrap_or_default();
        std::fs::write(&config, format!("[mandates]\nmax_calls = 100000000\n{issuer}{}", options.config_extra))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let admin_token = options
            .admin_token
            .map_or_else(|| format!("load-admin-{}-{}", std::process::id(), unix_now()), str::to_owned);
        let log = std::fs::File::create(data_dir.path().join("server.log"))?;
        let child = Command::new(options.binary)
            .args(["serve", "--listen", &listen])
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(data_dir.path().join("data"))
            .env_clear()
            .env("MANDATE_ADMIN_TOKEN", &admin_token)
            .env("MANDATE_LOG", options.log_filter)
            .envs(options.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting `{}`", options.binary.display()))?;
        Ok(Self { child, url: format!("http://{listen}"), admin_token, data_dir })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("server.log")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Graceful first, so that the database is closed (and its WAL checkpointed) as in production.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now, Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Waits until `/healthz` answers, for at most `timeout`.
pub async fn wait_healthy(target: &Target, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut conn) = Conn::connect(target).await {
            if let Ok(a) = conn.send("GET", "/healthz", None, None).await {
                if a.status == 200 {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the server at {} did not become healthy within {timeout:?}", target.host);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The organisation a run uses: one agent, and its mandates with their tokens.
pub struct Org {
    /// The URL proofs must name in `htu` (the server's authorize endpoint).
    pub authorize_url: String,
    /// The agent's key, which signs every proof.
    pub agent_key: SigningKey,
    /// Mandate tokens, each a chain of its own.
    pub tokens: Vec<String>,
}

async fn call(conn: &mut Conn, method: &str, path: &str, bearer: Option<&str>, body: &Value) -> anyhow::Result<Value> {
    let bytes = body.to_string().into_bytes();
    let answer = conn.send(method, path, bearer, (method != "GET").then_some(&bytes[..])).await?;
    let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    if !(200..300).contains(&answer.status) {
        bail!("{method} {path}: {} {value}", answer.status);
    }
    Ok(value)
}

/// Sets up, through the API: a human, an agent owned by them, the tool's classification, and
/// `mandates` grants of that tool to the agent, each with a budget of 100 million calls.
pub async fn set_up(target: &Target, admin_token: &str, mandates: usize) -> anyhow::Result<Org> {
    let mut conn = Conn::connect(target).await?;
    let meta = call(&mut conn, "GET", "/.well-known/oauth-authorization-server", None, &Value::Null).await?;
    let authorize_url =
        meta["authorize_endpoint"].as_str().ok_or_else(|| anyhow!("no authorize_endpoint in {meta}"))?.to_owned();
    // Unique names, so that a run against a server that already holds an earlier run's still works.
    let tag = format!("{}-{}", unix_now(), std::process::id());
    let human = format!("load-{tag}@example.org");
    let created = call(&mut conn, "POST", "/v1/humans", Some(admin_token), &json!({"id": human})).await?;
    let human_key = created["api_key"].as_str().ok_or_else(|| anyhow!("no api_key in {created}"))?.to_owned();
    let agent_key = SigningKey::from_bytes(&[42; 32]);
    let agent = format!("load-agent-{tag}");
    let spec = json!({
        "id": agent, "name": "Load test agent", "owner": format!("user:{human}"),
        "purpose": "Make many allowed calls", "class": "enterprise", "environment": "production",
        "boundary": {"tools": ["load/*"], "data_classes": ["internal"]},
        "public_key_jwk": Ed25519PublicJwk::from_verifying_key(agent_key.verifying_key()).to_json(),
        "certify_every_days": 90
    });
    call(&mut conn, "POST", "/v1/agents", Some(admin_token), &spec).await?;
    call(
        &mut conn,
        "PUT",
        &format!("/v1/tools/{TOOL}"),
        Some(admin_token),
        &json!({"data_class": "internal", "risk": "read", "server_environment": "production"}),
    )
    .await?;
    // The task's intent category, in `learn`: every call is scored for drift, as in production, but
    // a load test's volume (thousands of calls a second down one chain, each on a resource of its
    // own) is not what policy should hold here.
    call(
        &mut conn,
        "PUT",
        "/v1/intents/load.test",
        Some(admin_token),
        &json!({"description": "Load test", "tools": ["load/*"], "data_classes": ["internal"],
                "max_calls_per_minute": 1000, "max_resources": 1000, "mode": "learn"}),
    )
    .await?;
    let mut tokens = Vec::with_capacity(mandates);
    for _ in 0..mandates {
        let grant = json!({
            "agent": agent, "purpose": "Load test", "category": "load.test",
            "authorization_details": [{"type": "mcp_tool", "tools": [TOOL], "resources": ["load://items/*"],
                                       "data_classes": ["internal"], "actions": ["read"]}],
            "max_calls": 100_000_000u64, "ttl_seconds": 3600
        });
        let granted = call(&mut conn, "POST", "/v1/mandates", Some(&human_key), &grant).await?;
        tokens.push(granted["token"].as_str().ok_or_else(|| anyhow!("no token in {granted}"))?.to_owned());
    }
    Ok(Org { authorize_url, agent_key, tokens })
}
