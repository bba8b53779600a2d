//! `mandate-load`: a load test of `POST /v1/authorize` over HTTP, on loopback only.
//!
//! It starts `mandate serve` from a binary over a fresh data directory (or targets one already
//! running on loopback), sets up an organisation through the HTTP API (a human, an agent, the tool's
//! classification, mandates with budgets far above what a run spends), then, for each concurrency
//! level, drives `POST /v1/authorize` from N clients for a fixed time: one keep-alive connection and
//! one request in flight per client, a DPoP proof of its own on every call. It prints decisions per
//! second, latency percentiles, error counts and where the CPU went, and stops by itself: every
//! level is bounded in time and in calls (the proofs signed for it), and the server it started is
//! stopped at the end.
//!
//! `scripts/load.sh` builds the binaries, runs this, and writes the `## Load` section of
//! BENCHMARKS.md from its JSON output.

mod cpu;
mod gateway;
mod http;
mod proxy;
mod relay;
mod run;
mod server;
mod upstream;

use anyhow::{bail, Context as _};
use clap::Parser;
use http::Target;
use run::{LevelPlan, LevelResult};
use std::path::PathBuf;
use std::time::Duration;

/// Load test of `POST /v1/authorize` on loopback.
#[derive(Debug, Parser)]
#[command(name = "mandate-load", version, args_override_self = true)]
struct Args {
    /// The `mandate` binary to start (over a fresh temporary data directory).
    #[arg(long, conflicts_with = "url", required_unless_present = "url")]
    server: Option<PathBuf>,
    /// Or the base URL of a server already running on loopback, e.g. `http://127.0.0.1:8080`.
    #[arg(long, requires = "admin_token")]
    url: Option<String>,
    /// The administrator token of the server given by `--url`.
    #[arg(long, env = "MANDATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Where to create the started server's data directory (its file system decides what an fsync
    /// costs; the default is the system's temporary directory).
    #[arg(long)]
    data_parent: Option<PathBuf>,
    /// `MANDATE_LOG` for the started server (its own default: one log line per decision).
    #[arg(long, default_value = "info,sqlx=warn")]
    server_log: String,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Seconds measured at each level.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of unmeasured calls before each level's window.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// All clients share one mandate (one chain) instead of one mandate each.
    #[arg(long)]
    shared_mandate: bool,
    /// The highest rate, in decisions per second, the proofs signed for a level can sustain; a
    /// level that runs out is flagged.
    #[arg(long, default_value_t = 20_000)]
    max_rate: usize,
    /// The highest rate one client can sustain (caps the proofs signed per client).
    #[arg(long, default_value_t = 5_000)]
    max_rate_per_client: usize,
    /// Before each level, wait up to this many seconds for the machine to be quiet (other processes
    /// using at most `--disturbed` cores over a second).
    #[arg(long, default_value_t = 0)]
    quiet_wait: u64,
    /// Run a level again, up to this many times, when other processes used more than `--disturbed`
    /// cores during its window; the least disturbed attempt is kept.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Cores used by other processes above which a level counts as disturbed.
    #[arg(long, default_value_t = 0.15)]
    disturbed: f64,
    /// Connections flooding the server with garbage from other loopback addresses beside the
    /// clients (0: none), to measure what a flood costs real agents.
    #[arg(long, default_value_t = 0)]
    flood: usize,
    /// Run each level this many times and report the run with the median rate (with every run's
    /// rate beside it): runs on a virtual machine vary by several percent.
    #[arg(long, default_value_t = 1)]
    repeats: u32,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Start this many nodes of `--server` on the PostgreSQL database `--database-url`, sharing
    /// their signing keys and issuer; clients are spread over them in turn.
    #[arg(long, default_value_t = 1, requires = "server")]
    nodes: usize,
    /// Put the started node(s) on this PostgreSQL database (it should be empty: a fresh one per run).
    #[arg(long, requires = "server")]
    database_url: Option<String>,
}

/// Limits that keep a run bounded whatever the flags say.
const MAX_CLIENTS: usize = 512;
const MAX_LEVELS: usize = 8;
const MAX_SECONDS: u64 = 50;
const MAX_PROOFS_PER_LEVEL: usize = 2_000_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RETRIES: u32 = 5;
const MAX_REPEATS: u32 = 5;
const MAX_QUIET_WAIT: u64 = 600;

/// Runs a level until a run is not disturbed by other processes (or the retries are spent, keeping
/// the least disturbed run).
fn run_clean(
    args: &Args,
    targets: &[Target],
    org: &server::Org,
    plan: &LevelPlan,
    server_pids: &[u32],
    repeat: u32,
) -> anyhow::Result<LevelResult> {
    let mut best: Option<LevelResult> = None;
    let mut attempts = 0;
    for attempt in 0..=args.retries.min(MAX_RETRIES) {
        wait_quiet(server_pids, args.quiet_wait.min(MAX_QUIET_WAIT), args.disturbed);
        eprintln!(
            "level: {} client(s), run {}, signing {} proofs, then {} s + {} s{}",
            plan.clients,
            repeat + 1,
            plan.proofs_per_client * plan.clients,
            args.warmup,
            args.duration,
            if attempt > 0 { format!(" (attempt {})", attempt + 1) } else { String::new() }
        );
        let r = run::run_level(targets, org, plan, server_pids)
            .with_context(|| format!("level of {} clients", plan.clients))?;
        eprintln!("  {}", summary(&r));
        attempts += 1;
        let disturbed = r.other_cores > args.disturbed;
        if best.as_ref().is_none_or(|b| r.other_cores < b.other_cores) {
            best = Some(r);
        }
        if !disturbed {
            break;
        }
    }
    let mut best = best.ok_or_else(|| anyhow::anyhow!("no run of the level of {} clients", plan.clients))?;
    best.attempts = attempts;
    Ok(best)
}

/// The run with the median rate, carrying every run's rate and the attempts of all.
fn median_run(mut runs: Vec<LevelResult>) -> LevelResult {
    runs.sort_by(|a, b| a.decisions_per_sec.total_cmp(&b.decisions_per_sec));
    let rates: Vec<f64> = runs.iter().map(|r| r.decisions_per_sec).collect();
    let attempts = runs.iter().map(|r| r.attempts).sum();
    let index = runs.len() / 2;
    let mut median = runs.swap_remove(index);
    median.rates = rates;
    median.attempts = attempts;
    median
}

/// Waits until other processes use at most `threshold` cores, for at most `max_secs`.
fn wait_quiet(server_pids: &[u32], max_secs: u64, threshold: f64) {
    if max_secs == 0 {
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(max_secs);
    loop {
        let busy = cpu::others_busy(server_pids, Duration::from_secs(1));
        if busy <= threshold {
            return;
        }
        if std::time::Instant::now() >= deadline {
            eprintln!("  the machine is still busy ({busy:.2} cores used by other processes); going on");
            return;
        }
        eprintln!("  waiting for a quiet machine ({busy:.2} cores used by other processes)");
    }
}

fn main() {
    // `mandate-load gateway ...`, `mandate-load upstream`, `mandate-load relay <url>` and
    // `mandate-load proxy <url>`: the gateway benchmark, its upstream, and its two floors.
    let mut argv = std::env::args();
    let first = argv.nth(1);
    let result = match first.as_deref() {
        Some("gateway") => gateway::run(<gateway::GatewayArgs as clap::Parser>::parse_from(std::env::args().skip(1))),
        Some("upstream") => gateway::upstream(),
        Some("proxy") => match argv.next() {
            Some(to) => proxy::run(&to),
            None => Err(anyhow::anyhow!("usage: mandate-load proxy <upstream URL>")),
        },
        Some("relay") => match argv.next() {
            Some(to) => relay::run(&to),
            None => Err(anyhow::anyhow!("usage: mandate-load relay <upstream URL>")),
        },
        _ => run(Args::parse()),
    };
    if let Err(e) = result {
        eprintln!("mandate-load: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.clients.is_empty() || args.clients.len() > MAX_LEVELS {
        bail!("--clients: give 1 to {MAX_LEVELS} levels");
    }
    if let Some(c) = args.clients.iter().find(|c| **c == 0 || **c > MAX_CLIENTS) {
        bail!("--clients: {c} is not within 1..={MAX_CLIENTS}");
    }
    // Proofs are accepted up to 60 s after they were signed: the warm-up and window must fit.
    if args.duration == 0 || args.duration + args.warmup > MAX_SECONDS {
        bail!("--duration and --warmup: at least 1 s measured and at most {MAX_SECONDS} s in all, so that proofs signed before a level are still fresh at its end");
    }
    if args.nodes == 0 || args.nodes > 8 {
        bail!("--nodes: 1 to 8");
    }
    if args.nodes > 1 && args.database_url.is_none() {
        bail!("--nodes above 1 share a PostgreSQL database: give --database-url");
    }
    let parent = args.data_parent.clone().unwrap_or_else(std::env::temp_dir);
    // Several nodes share one keys directory and one issuer, as a fleet behind one address does.
    let shared = tempfile::Builder::new().prefix("mandate-load-fleet-").tempdir_in(
        std::fs::create_dir_all(&parent).map(|()| parent.clone()).unwrap_or_else(|_| std::env::temp_dir()),
    )?;
    let mut env: Vec<(&str, String)> = Vec::new();
    if let Some(url) = &args.database_url {
        env.push(("MANDATE_DATABASE_URL", url.clone()));
        env.push(("MANDATE_KEYS_DIR", shared.path().join("keys").display().to_string()));
    }
    let fleet_token = format!("load-fleet-admin-{}-{}", std::process::id(), server::unix_now());
    let mut spawned = Vec::new();
    if let Some(binary) = &args.server {
        for n in 0..args.nodes {
            let options = server::SpawnOptions {
                binary,
                data_parent: &parent,
                log_filter: &args.server_log,
                config_extra: "",
                env: &env,
                issuer: (args.nodes > 1).then_some("https://mandate.load"),
                admin_token: (args.nodes > 1).then_some(fleet_token.as_str()),
            };
            let node = server::Spawned::start(&options)?;
            // The first node migrates the database; the others start once it answers.
            if n == 0 {
                let first = Target::parse(&node.url)?;
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(server::wait_healthy(&first, Duration::from_secs(30)))?;
            }
            spawned.push(node);
        }
    }
    let (urls, admin_token) = match (spawned.first(), &args.url, &args.admin_token) {
        (Some(s), _, _) => (spawned.iter().map(|n| n.url.clone()).collect::<Vec<_>>(), s.admin_token.clone()),
        (None, Some(u), Some(t)) => (vec![u.clone()], t.clone()),
        _ => bail!("give --server, or --url with --admin-token"),
    };
    let url = urls.join(",");
    let targets = urls.iter().map(|u| Target::parse(u)).collect::<anyhow::Result<Vec<_>>>()?;
    let target = targets[0].clone();
    let server_pids: Vec<u32> = spawned.iter().map(server::Spawned::pid).collect();
    for s in &spawned {
        eprintln!(
            "server: pid {}, {}, data in {}, log {}",
            s.pid(),
            s.url,
            s.data_dir.path().display(),
            s.log_path().display()
        );
    }

    let setup = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let most_clients = args.clients.iter().copied().max().unwrap_or(1);
    let mandates = if args.shared_mandate { 1 } else { most_clients };
    let org = setup.block_on(async {
        for t in &targets {
            server::wait_healthy(t, Duration::from_secs(30)).await?;
        }
        server::set_up(&target, &admin_token, mandates).await
    })?;
    drop(setup);
    eprintln!("org: {} mandate(s) for one agent, proofs for {}", org.tokens.len(), org.authorize_url);

    let mut results: Vec<LevelResult> = Vec::new();
    for &clients in &args.clients {
        let seconds = (args.warmup + args.duration) as usize;
        let per_client = (args.max_rate * seconds / clients).min(args.max_rate_per_client * seconds).max(1);
        let per_client = per_client.min(MAX_PROOFS_PER_LEVEL / clients);
        let plan = LevelPlan {
            clients,
            warmup: Duration::from_secs(args.warmup),
            duration: Duration::from_secs(args.duration),
            proofs_per_client: per_client,
            shared_mandate: args.shared_mandate,
            request_timeout: REQUEST_TIMEOUT,
            flood: args.flood,
        };
        let mut runs = Vec::new();
        for repeat in 0..args.repeats.clamp(1, MAX_REPEATS) {
            runs.push(run_clean(&args, &targets, &org, &plan, &server_pids, repeat)?);
        }
        results.push(median_run(runs));
    }

    println!("{}", table(&results));
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "url": url,
            "started_server": args.server.as_ref().map(|p| p.display().to_string()),
            "nodes": args.nodes,
            "database": if args.database_url.is_some() { "postgresql" } else { "sqlite" },
            "server_log": args.server_log,
            "shared_mandate": args.shared_mandate,
            "warmup_secs": args.warmup,
            "duration_secs": args.duration,
            "levels": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(r) = results.iter().find(|r| r.denied + r.http_errors + r.io_errors > 0 || r.proofs_exhausted) {
        eprintln!(
            "warning: level of {} clients: {}",
            r.clients,
            r.first_error.clone().unwrap_or_else(|| "ran out of proofs".into())
        );
    }
    Ok(())
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn summary(r: &LevelResult) -> String {
    format!(
        "{:.0} decisions/s, p50 {} ms, p99 {} ms, errors {}, cores: server {:.2} (nodes {}), database {:.2}, client {:.2}, other {:.2}{}",
        r.decisions_per_sec,
        ms(r.p50_us),
        ms(r.p99_us),
        r.denied + r.http_errors + r.io_errors,
        r.server_cores,
        r.node_cores.iter().map(|c| format!("{c:.2}")).collect::<Vec<_>>().join(" + "),
        r.database_cores,
        r.client_cores,
        r.other_cores,
        if r.proofs_exhausted { " (ran out of proofs)" } else { "" }
    )
}

/// The results as a Markdown table.
fn table(results: &[LevelResult]) -> String {
    let mut out = String::from(
        "| clients | mandates | decisions/s | p50 ms | p90 ms | p99 ms | max ms | allowed | denied | http errors | io errors | flood sent | flood 429 | server cores | client cores | other cores |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {:.0}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |\n",
            r.clients,
            r.mandates,
            r.decisions_per_sec,
            if r.proofs_exhausted { " (ran out of proofs)" } else { "" },
            ms(r.p50_us),
            ms(r.p90_us),
            ms(r.p99_us),
            ms(r.max_us),
            r.allowed,
            r.denied,
            r.http_errors,
            r.io_errors,
            r.flood_requests,
            r.flood_limited,
            r.server_cores,
            r.client_cores,
            r.other_cores
        ));
    }
    out
}
