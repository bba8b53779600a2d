//! `mandate-load gateway`: the same client calling the same fast upstream directly, through
//! Mandate's gateway, and through a peer gateway, in one run, beside the engine's own in-process
//! decision measured alone; `mandate-load upstream` runs the fast upstream.
//!
//! For each concurrency level the phases run one after the other, each for the same time with the
//! same number of sessions (one keep-alive connection and one call in flight each): the engine
//! alone (`Engine::decide` in this process, over a database of its own on the same disk), the
//! upstream directly, Mandate's gateway (MCP 2026-07-28, a DPoP proof per call), and the peer
//! (ContextForge, MCP 2025-11-25 sessions, its bearer token) when given, and the upstream through a
//! TCP relay (the floor: one more hop, no HTTP parsing, no decision) and through an HTTP proxy
//! built from the gateway's parts (the HTTP floor: no authentication, no decision) when given.
//! Proofs are signed before each call's clock starts: what is measured is the gateway, not the
//! client's signing. The "added" latency of a gateway is its percentile minus the direct call's.

use crate::http::{Conn, Target};
use anyhow::{anyhow, bail, Context as _};
use ed25519_dalek::SigningKey;
use mandate_core::jose::{sign_proof, ProofClaims};
use mandate_core::jwk::Ed25519PublicJwk;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `mandate-load gateway`.
#[derive(Debug, clap::Parser)]
#[command(name = "mandate-load gateway")]
pub struct GatewayArgs {
    /// The `mandate` binary to start.
    #[arg(long)]
    server: PathBuf,
    /// The fast upstream's MCP endpoint (`mandate-load upstream` prints it).
    #[arg(long)]
    upstream: String,
    /// The fast upstream's endpoint through a TCP relay (`mandate-load relay <upstream>` prints it):
    /// the floor, what one more hop costs without any HTTP or decision.
    #[arg(long)]
    relay: Option<String>,
    /// The fast upstream's endpoint through an HTTP proxy built from the gateway's parts
    /// (`mandate-load proxy <upstream>` prints it): the HTTP floor, no authentication or decision.
    #[arg(long)]
    proxy: Option<String>,
    /// The peer gateway's MCP endpoint for the same upstream tool, e.g. ContextForge's
    /// `http://127.0.0.1:4444/servers/<id>/mcp`.
    #[arg(long, requires = "peer_token")]
    peer: Option<String>,
    /// The peer's bearer token.
    #[arg(long, env = "PEER_TOKEN", hide_env_values = true)]
    peer_token: Option<String>,
    /// The tool's name at the peer (ContextForge renames tools `<gateway>-<tool>`).
    #[arg(long, default_value = "echo")]
    peer_tool: String,
    /// Where to create the data directories.
    #[arg(long, default_value = "target/bench-gateway")]
    data_parent: PathBuf,
    /// Concurrent sessions, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    sessions: Vec<usize>,
    /// Seconds measured per phase (per target and level), split evenly over the rounds.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Rounds per level: the phases run in turn (engine, direct, Mandate, the floors), this many
    /// times, and each target's percentiles are over all its rounds' calls (the peer runs once,
    /// after them, for the whole duration). On a shared machine whose speed drifts over tens of
    /// seconds, interleaving puts the baseline and the gateways in the same stretch of time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20))]
    rounds: u64,
    /// Seconds of unmeasured calls before each phase.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One phase's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `engine`, `direct`, `mandate`, `relay`, `proxy` or `peer`.
    pub target: String,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Calls measured.
    pub calls: usize,
    /// Calls that failed (not a result).
    pub errors: usize,
    /// Calls per second.
    pub throughput: f64,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Cores Mandate's server process used during the window (the `mandate` phase).
    pub server_cores: f64,
    /// Cores this process used (the client; in the `engine` phase, the engine too).
    pub this_cores: f64,
    /// Cores every other process used (the upstream, the peer).
    pub other_cores: f64,
}

/// CPU over a phase's measured window.
struct Window {
    before: crate::cpu::CpuSample,
    started: Instant,
}

impl Window {
    async fn open(measure_from: Instant, pid: Option<u32>) -> Self {
        tokio::time::sleep_until(measure_from.into()).await;
        Self { before: crate::cpu::CpuSample::take(pid), started: Instant::now() }
    }

    async fn close(self, end: Instant, pid: Option<u32>) -> (f64, f64, f64) {
        tokio::time::sleep_until(end.into()).await;
        let after = crate::cpu::CpuSample::take(pid);
        crate::cpu::CpuSample::cores(&self.before, &after, self.started.elapsed())
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summarise(
    target: &str,
    sessions: usize,
    mut lat: Vec<u64>,
    errors: usize,
    secs: f64,
    cores: (f64, f64, f64),
) -> Phase {
    lat.sort_unstable();
    Phase {
        server_cores: cores.0,
        this_cores: cores.1,
        other_cores: cores.2,
        target: target.to_owned(),
        sessions,
        calls: lat.len(),
        errors,
        throughput: lat.len() as f64 / secs,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
    }
}

/// A loopback `http://host:port/path` URL: where to connect, and the path.
pub(crate) fn path_of(url: &str) -> anyhow::Result<(Target, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("`{url}`: http:// only"))?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".to_owned()));
    Ok((Target::parse(&format!("http://{authority}"))?, path))
}

/// What a session sends, per target.
#[derive(Clone)]
enum Speaker {
    /// 2025-11-25 with a session, optionally a bearer token.
    Legacy { url: String, bearer: Option<String>, tool: String },
    /// Mandate's gateway: 2026-07-28 with DPoP.
    Mandate { url: String, token: String, key: SigningKey },
}

fn call_body(id: u64, tool: &str, modern: bool) -> Vec<u8> {
    let mut params = json!({"name": tool, "arguments": {"text": "ping"}});
    if modern {
        params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                 "io.modelcontextprotocol/clientCapabilities": {}});
    }
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string().into_bytes()
}

/// One session: connect (and `initialize` for 2025-11-25), then calls until `end`; latencies of
/// calls started after `measure_from`.
async fn session(speaker: Speaker, measure_from: Instant, end: Instant) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    match speaker {
        Speaker::Legacy { url, bearer, tool } => {
            let (target, path) = path_of(&url)?;
            let mut conn = Conn::connect(&target).await?;
            let auth = bearer.map(|b| format!("Bearer {b}"));
            let mut headers: Vec<(&str, &str)> =
                vec![("Accept", "application/json, text/event-stream"), ("MCP-Protocol-Version", "2025-11-25")];
            if let Some(a) = &auth {
                headers.push(("Authorization", a));
            }
            let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
                "capabilities": {}, "clientInfo": {"name": "mandate-load", "version": "1"}}});
            let answer = conn.post_with(&path, &headers, init.to_string().as_bytes()).await?;
            if answer.status != 200 {
                bail!("initialize at {url}: HTTP {} {}", answer.status, String::from_utf8_lossy(&answer.body));
            }
            let session_id = answer.session.clone();
            let mut h = headers.clone();
            if let Some(s) = &session_id {
                h.push(("Mcp-Session-Id", s));
            }
            let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
            conn.post_with(&path, &h, note).await?;
            let mut id = 1;
            while Instant::now() < end {
                let body = call_body(id, &tool, false);
                id += 1;
                let started = Instant::now();
                let ok = match conn.post_with(&path, &h, &body).await {
                    Ok(a) => a.status == 200 && a.json()["result"]["content"][0]["text"] == "ping",
                    Err(_) => false,
                };
                tally.record(started, measure_from, ok);
                if !ok && tally.errors > 100 {
                    bail!("too many errors calling {url}");
                }
            }
        }
        Speaker::Mandate { url, token, key } => {
            let (target, path) = path_of(&url)?;
            let mut conn = Conn::connect(&target).await?;
            let auth = format!("DPoP {token}");
            let mut id = 1;
            while Instant::now() < end {
                let jti = format!("bench-{id}-{}", rand_suffix());
                let iat = crate::server::unix_now();
                let proof = sign_proof(
                    &ProofClaims { jti: &jti, htm: "POST", htu: &url, iat, access_token: Some(&token) },
                    &key,
                )?;
                let body = call_body(id, "echo", true);
                id += 1;
                let headers = [
                    ("Accept", "application/json, text/event-stream"),
                    ("MCP-Protocol-Version", "2026-07-28"),
                    ("Mcp-Method", "tools/call"),
                    ("Mcp-Name", "echo"),
                    ("Authorization", auth.as_str()),
                    ("DPoP", proof.as_str()),
                ];
                let started = Instant::now();
                let ok = match conn.post_with(&path, &headers, &body).await {
                    Ok(a) => a.status == 200 && a.json()["result"]["content"][0]["text"] == "ping",
                    Err(_) => false,
                };
                tally.record(started, measure_from, ok);
                if !ok && tally.errors > 100 {
                    bail!("too many errors calling {url}");
                }
            }
        }
    }
    Ok(tally)
}

fn rand_suffix() -> u64 {
    use rand_core::RngCore as _;
    rand_core::OsRng.next_u64()
}

async fn run_phase(
    speaker: Speaker,
    sessions: usize,
    warmup: u64,
    duration: Duration,
    pid: Option<u32>,
) -> anyhow::Result<Measured> {
    let measure_from = Instant::now() + Duration::from_secs(warmup);
    let end = measure_from + duration;
    let tasks = (0..sessions).map(|_| tokio::spawn(session(speaker.clone(), measure_from, end))).collect();
    measure(tasks, measure_from, end, pid).await
}

/// Latencies of the calls that succeeded and the count of those that failed, among the calls
/// started in the measured window.
#[derive(Default, Clone)]
struct Tally {
    lat: Vec<u64>,
    errors: usize,
}

impl Tally {
    fn record(&mut self, started: Instant, measure_from: Instant, ok: bool) {
        if started < measure_from {
            return;
        }
        if ok {
            self.lat.push(started.elapsed().as_micros() as u64);
        } else {
            self.errors += 1;
        }
    }
}

/// What one round of a phase measured: its calls, its seconds, and the cores used over them.
#[derive(Default, Clone)]
struct Measured {
    tally: Tally,
    secs: f64,
    /// Core-seconds (Mandate, this process, the others).
    core_secs: (f64, f64, f64),
}

impl Measured {
    /// Adds another round.
    fn add(&mut self, other: Measured) {
        self.tally.lat.extend(other.tally.lat);
        self.tally.errors += other.tally.errors;
        self.secs += other.secs;
        self.core_secs.0 += other.core_secs.0;
        self.core_secs.1 += other.core_secs.1;
        self.core_secs.2 += other.core_secs.2;
    }

    /// Every round, summarised as phase `name`: percentiles over all the calls, cores on average.
    fn phase(self, name: &str, sessions: usize) -> Phase {
        let secs = self.secs.max(f64::MIN_POSITIVE);
        let cores = (self.core_secs.0 / secs, self.core_secs.1 / secs, self.core_secs.2 / secs);
        summarise(name, sessions, self.tally.lat, self.tally.errors, self.secs, cores)
    }
}

/// The CPU over the window, then every session's tally.
async fn measure(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Tally>>>,
    measure_from: Instant,
    end: Instant,
    pid: Option<u32>,
) -> anyhow::Result<Measured> {
    let window = Window::open(measure_from, pid).await;
    let cores = window.close(end, pid).await;
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await??;
        all.lat.extend(t.lat);
        all.errors += t.errors;
    }
    let secs = end.saturating_duration_since(measure_from).as_secs_f64();
    Ok(Measured { tally: all, secs, core_secs: (cores.0 * secs, cores.1 * secs, cores.2 * secs) })
}

/// The engine in this process, over a database of its own, and a mandate for `fast/echo`.
struct InProcess {
    state: mandate_server::state::AppState,
    token: String,
    key: SigningKey,
    htu: String,
    _dir: tempfile::TempDir,
}

async fn in_process(parent: &std::path::Path) -> anyhow::Result<InProcess> {
    let dir = tempfile::Builder::new().prefix("engine-").tempdir_in(parent)?;
    let file: mandate_cli::config::FileConfig = toml::from_str("[mandates]\nmax_calls = 100000000\n")?;
    let admin = format!("engine-admin-{}-{}", std::process::id(), crate::server::unix_now());
    let overrides = mandate_cli::config::Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().join("data")),
        trust_domain: None,
        database_url: None,
        log_format: None,
        admin_token: Some(admin.clone()),
        demo: false,
    };
    let (config, _) = mandate_cli::config::resolve(file, overrides)?;
    let server = mandate_server::Server::start(config, std::sync::Arc::new(mandate_engine::clock::SystemClock)).await?;
    let url = format!("http://{}", server.addr);
    let state = server.state().clone();
    tokio::spawn(server.serve(std::future::pending()));
    let (token, key) = set_up(&url, &admin, "load/echo").await?;
    Ok(InProcess { state, token, key, htu: format!("{url}/v1/authorize"), _dir: dir })
}

async fn engine_session(p: &InProcess, measure_from: Instant, end: Instant) -> anyhow::Result<Tally> {
    use mandate_engine::decision::{Call, Presented, ProofBinding, Verdict};
    let mut tally = Tally::default();
    let mut n = 0u64;
    while Instant::now() < end {
        n += 1;
        let jti = format!("engine-{n}-{}", rand_suffix());
        let iat = crate::server::unix_now();
        let proof = sign_proof(
            &ProofClaims { jti: &jti, htm: "POST", htu: &p.htu, iat, access_token: Some(&p.token) },
            &p.key,
        )?;
        let started = Instant::now();
        // What a front door does per call: canonical arguments, then the one decision.
        let arguments = mandate_core::arguments::CanonicalArguments::parse(r#"{"text":"ping"}"#)?;
        let call = Call::new("load/echo", arguments, None);
        let presented = Presented {
            token: &p.token,
            proof: &proof,
            binding: ProofBinding { htm: "POST", htu: &p.htu },
            source: None,
        };
        let d = p.state.decide(&presented, &call, false).await;
        tally.record(started, measure_from, d.verdict == Verdict::Allow);
    }
    Ok(tally)
}

async fn engine_phase(
    p: &std::sync::Arc<InProcess>,
    sessions: usize,
    warmup: u64,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let measure_from = Instant::now() + Duration::from_secs(warmup);
    let end = measure_from + duration;
    let tasks = (0..sessions)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { engine_session(&p, measure_from, end).await })
        })
        .collect();
    measure(tasks, measure_from, end, None).await
}

async fn http_json(
    target: &Target,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut conn = Conn::connect(target).await?;
    let bytes = body.to_string().into_bytes();
    let a = conn.send(method, path, bearer, (method != "GET").then_some(&bytes[..])).await?;
    let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    if !(200..300).contains(&a.status) {
        bail!("{method} {path}: {} {v}", a.status);
    }
    Ok(v)
}

/// A human, an agent whose boundary holds `fast/*` and `load/*`, the tools classified, and a
/// mandate for `tool` with a budget far above what a run spends.
async fn set_up(url: &str, admin: &str, tool: &str) -> anyhow::Result<(String, SigningKey)> {
    let target = Target::parse(url)?;
    let tag = format!("{}-{}", crate::server::unix_now(), rand_suffix());
    let human = format!("bench-{tag}@example.org");
    let created = http_json(&target, "POST", "/v1/humans", Some(admin), &json!({"id": human})).await?;
    let human_key = created["api_key"].as_str().context("api_key")?.to_owned();
    let key = SigningKey::from_bytes(&[43; 32]);
    let agent = format!("bench-agent-{}", &tag[tag.len() - 8..]);
    let spec = json!({"id": agent, "name": "Gateway bench agent", "owner": format!("user:{human}"),
        "purpose": "Call a fast tool", "class": "enterprise", "environment": "production",
        "boundary": {"tools": ["fast/*", "load/*"], "data_classes": ["internal"]},
        "public_key_jwk": Ed25519PublicJwk::from_verifying_key(key.verifying_key()).to_json(), "certify_every_days": 90});
    http_json(&target, "POST", "/v1/agents", Some(admin), &spec).await?;
    for t in ["fast/echo", "load/echo"] {
        http_json(
            &target,
            "PUT",
            &format!("/v1/tools/{t}"),
            Some(admin),
            &json!({"data_class": "internal", "risk": "read", "server_environment": "production"}),
        )
        .await?;
    }
    let grant = json!({"agent": agent, "purpose": "Gateway benchmark", "category": "load.test",
        "authorization_details": [{"type": "mcp_tool", "tools": [tool], "data_classes": ["internal"], "actions": ["read"]}],
        "max_calls": 100_000_000u64, "ttl_seconds": 3600});
    let granted = http_json(&target, "POST", "/v1/mandates", Some(&human_key), &grant).await?;
    Ok((granted["token"].as_str().context("token")?.to_owned(), key))
}

/// One phase's line on stderr, as it ends.
fn report(p: &Phase, round: Option<u64>) {
    let n = p.sessions;
    let head = format!(
        "{n:>3} sessions  {:<8} {:>8.0}/s p50 {:>6} µs p99 {:>6} µs",
        p.target, p.throughput, p.p50_us, p.p99_us
    );
    let cores = if p.target == "engine" {
        format!("cores: this {:.2} others {:.2}", p.this_cores, p.other_cores)
    } else {
        format!(
            "errors {}  cores: mandate {:.2} client {:.2} others {:.2}",
            p.errors, p.server_cores, p.this_cores, p.other_cores
        )
    };
    let round = round.map(|r| format!("  (round {r})")).unwrap_or_default();
    eprintln!("{head}  {cores}{round}");
}

/// Runs the benchmark and prints a Markdown table.
pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&args.data_parent)?;
        let config = format!(
            "[[gateway.servers]]\nname = \"fast\"\nurl = \"{}\"\n[gateway.servers.tools.echo]\ndata_class = \"internal\"\nrisk = \"read\"\n",
            args.upstream
        );
        let options = crate::server::SpawnOptions { binary: &args.server, data_parent: &args.data_parent, log_filter: "warn", config_extra: &config, env: &[], issuer: None, admin_token: None };
        let spawned = crate::server::Spawned::start(&options)?;
        let target = Target::parse(&spawned.url)?;
        crate::server::wait_healthy(&target, Duration::from_secs(30)).await?;
        let (token, key) = set_up(&spawned.url, &spawned.admin_token, "fast/echo").await?;
        let engine = std::sync::Arc::new(in_process(&args.data_parent).await?);
        let gateway_url = format!("{}/mcp/fast", spawned.url);
        let mut phases = Vec::new();
        let slice = Duration::from_secs(args.duration).div_f64(args.rounds as f64);
        for &n in &args.sessions {
            let mut speakers = vec![
                ("direct", Speaker::Legacy { url: args.upstream.clone(), bearer: None, tool: "echo".into() }),
                ("mandate", Speaker::Mandate { url: gateway_url.clone(), token: token.clone(), key: key.clone() }),
            ];
            if let Some(relay) = &args.relay {
                speakers.push(("relay", Speaker::Legacy { url: relay.clone(), bearer: None, tool: "echo".into() }));
            }
            if let Some(proxy) = &args.proxy {
                speakers.push(("proxy", Speaker::Legacy { url: proxy.clone(), bearer: None, tool: "echo".into() }));
            }
            let mut engine_rounds = Measured::default();
            let mut rounds: Vec<Measured> = speakers.iter().map(|_| Measured::default()).collect();
            for round in 1..=args.rounds {
                let m = engine_phase(&engine, n, args.warmup, slice).await?;
                report(&m.clone().phase("engine", n), Some(round));
                engine_rounds.add(m);
                for ((name, speaker), total) in speakers.iter().zip(rounds.iter_mut()) {
                    let m = run_phase(speaker.clone(), n, args.warmup, slice, Some(spawned.pid())).await?;
                    report(&m.clone().phase(name, n), Some(round));
                    total.add(m);
                }
            }
            phases.push(engine_rounds.phase("engine", n));
            for ((name, _), total) in speakers.iter().zip(rounds) {
                phases.push(total.phase(name, n));
            }
            // The peer is seconds per call under load, far from the targets' margins: one phase of
            // the whole duration, whose window its slow calls can start in.
            if let (Some(peer), Some(t)) = (&args.peer, &args.peer_token) {
                let speaker = Speaker::Legacy { url: peer.clone(), bearer: Some(t.clone()), tool: args.peer_tool.clone() };
                let whole = Duration::from_secs(args.duration);
                let p = run_phase(speaker, n, args.warmup, whole, Some(spawned.pid())).await?.phase("peer", n);
                report(&p, None);
                phases.push(p);
            }
        }
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_string_pretty(&phases)?)?;
        }
        drop(spawned);
        Ok(())
    })
}

/// `mandate-load upstream`: runs the fast upstream until killed; prints its endpoint.
pub fn upstream() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let addr = crate::upstream::start().await?;
        println!("http://{addr}/mcp");
        use std::io::Write as _;
        std::io::stdout().flush()?;
        std::future::pending::<()>().await;
        Ok(())
    })
}
