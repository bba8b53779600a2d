//! One load level: N clients, each on its own keep-alive connection with one request in flight,
//! calling `POST /v1/authorize` as fast as the answers come back, for a fixed time.
//!
//! Every call carries a DPoP proof of its own (unique `jti`, fresh `iat`), signed before the clock
//! starts so that the client's signing does not take CPU from the server during the measurement.
//! Proofs may be at most 60 s old when they arrive, so a level's proofs are signed right before it
//! runs, and a level lasts well under that.

use crate::cpu::{CpuSample, NodeSample};
use crate::http::{Conn, Target};
use crate::server::{unix_now, Org, TOOL};
use anyhow::Context as _;
use mandate_core::jose::{sign_proof, ProofClaims};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How a level runs.
pub struct LevelPlan {
    /// Concurrent clients (connections).
    pub clients: usize,
    /// Untimed calls first: connections warm, the token cache filled.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Proofs signed ahead for each client: the most calls it can make in the level.
    pub proofs_per_client: usize,
    /// Clients share one mandate (one chain) instead of one mandate each.
    pub shared_mandate: bool,
    /// A request that takes longer than this counts as an error.
    pub request_timeout: Duration,
    /// Connections that send garbage (a token that names no mandate) as fast as they can, from
    /// other loopback addresses (127.0.0.2 and up), beside the clients: an attacker who can reach
    /// the port.
    pub flood: usize,
}

/// What a level measured. Latencies in microseconds, over calls started inside the window.
#[derive(Debug, Clone, Serialize)]
pub struct LevelResult {
    /// Concurrent clients.
    pub clients: usize,
    /// Mandates (chains) the clients used.
    pub mandates: usize,
    /// The measured window, in seconds.
    pub seconds: f64,
    /// Allowed decisions per second.
    pub decisions_per_sec: f64,
    /// Allowed decisions.
    pub allowed: u64,
    /// Answers 200 that were not `allow` (none expected).
    pub denied: u64,
    /// Answers other than 200.
    pub http_errors: u64,
    /// Connection failures and timeouts.
    pub io_errors: u64,
    /// Latency percentiles.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// The slowest call.
    pub max_us: u64,
    /// CPU the server used in the window, in cores (1.0 = one core busy all the time).
    pub server_cores: f64,
    /// CPU this load generator used in the window, in cores.
    pub client_cores: f64,
    /// CPU everything else on the machine used in the window, in cores (but the database server's
    /// processes, when nodes were started here: those are `database_cores`).
    pub other_cores: f64,
    /// CPU of each node started here, in cores (their sum is `server_cores`).
    pub node_cores: Vec<f64>,
    /// CPU of every `postgres` process on the machine in the window, in cores (0 on SQLite).
    pub database_cores: f64,
    /// Seconds spent signing the level's proofs before it ran (not in the window).
    pub signing_secs: f64,
    /// Some client ran out of proofs before the window ended (sign more: `--max-rate`).
    pub proofs_exhausted: bool,
    /// The first unexpected answer, for diagnosis.
    pub first_error: Option<String>,
    /// Runs of this level made to get one that other processes did not disturb (1 when the first was
    /// clean).
    pub attempts: u32,
    /// Garbage requests the flood had answered in the window.
    pub flood_requests: u64,
    /// Flood connections the server closed without an answer in the window (refused at accept).
    pub flood_dropped: u64,
    /// Of those, answered `429`.
    pub flood_limited: u64,
    /// The rate of every run of this level when it was repeated, lowest first (this result is the
    /// median one).
    pub rates: Vec<f64>,
}

#[derive(Default)]
struct ClientResult {
    latencies_us: Vec<u32>,
    allowed: u64,
    denied: u64,
    http_errors: u64,
    io_errors: u64,
    exhausted: bool,
    first_error: Option<String>,
}

/// Signs `count` proofs for `token`, on two threads.
fn sign_pool(org: &Org, token: &str, tag: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let iat = unix_now();
    let half = count / 2;
    let sign_range = |range: std::ops::Range<usize>| -> anyhow::Result<Vec<String>> {
        range
            .map(|i| {
                let jti = format!("{tag}-{i}");
                let claims =
                    ProofClaims { jti: &jti, htm: "POST", htu: &org.authorize_url, iat, access_token: Some(token) };
                sign_proof(&claims, &org.agent_key).map_err(|e| anyhow::anyhow!("signing a proof: {e}"))
            })
            .collect()
    };
    std::thread::scope(|s| {
        let second = s.spawn(|| sign_range(half..count));
        let mut first = sign_range(0..half)?;
        let second = second.join().map_err(|_| anyhow::anyhow!("a signing thread panicked"))??;
        first.extend(second);
        Ok(first)
    })
}

/// Runs one level against `targets` (client `c` calls node `c % targets.len()`), with `server_pids`
/// (the nodes started here, if any) for CPU accounting.
pub fn run_level(targets: &[Target], org: &Org, plan: &LevelPlan, server_pids: &[u32]) -> anyhow::Result<LevelResult> {
    anyhow::ensure!(!targets.is_empty(), "no server to call");
    let target = &targets[0];
    let mandates = if plan.shared_mandate { 1 } else { plan.clients };
    anyhow::ensure!(org.tokens.len() >= mandates, "{mandates} mandates needed, {} granted", org.tokens.len());
    let signing_started = Instant::now();
    // Unique across levels and their retries: a `jti` the server saw before would be a replay.
    static LEVELS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let level = LEVELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let run_tag = format!("{}-{}-l{level}-c{}", std::process::id(), unix_now(), plan.clients);
    let pools: Vec<(String, Vec<String>)> = (0..plan.clients)
        .map(|c| {
            let token = org.tokens[if plan.shared_mandate { 0 } else { c }].clone();
            let pool = sign_pool(org, &token, &format!("{run_tag}-{c}"), plan.proofs_per_client)?;
            Ok((token, pool))
        })
        .collect::<anyhow::Result<_>>()?;
    let signing_secs = signing_started.elapsed().as_secs_f64();

    // One thread for every client: the load generator never takes more than one of the two cores.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (results, window, (cpu_before, nodes_before), (cpu_after, nodes_after), flooded) = runtime.block_on(async {
        let mut conns = Vec::with_capacity(plan.clients);
        for c in 0..plan.clients {
            conns.push(Conn::connect(&targets[c % targets.len()]).await?);
        }
        let start = Instant::now();
        let measure_from = start + plan.warmup;
        let end = measure_from + plan.duration;
        let flood: Vec<_> = (0..plan.flood)
            .map(|k| tokio::spawn(flooder(target.clone(), k, measure_from, end, plan.request_timeout)))
            .collect();
        let mut tasks = Vec::with_capacity(plan.clients);
        for (c, (conn, (token, pool))) in conns.into_iter().zip(pools).enumerate() {
            let target = targets[c % targets.len()].clone();
            let timeout = plan.request_timeout;
            tasks.push(tokio::spawn(client(conn, target, token, pool, measure_from, end, timeout)));
        }
        // CPU is sampled at the window's edges, from this same thread.
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu_before = CpuSample::take_all(server_pids);
        let nodes_before = NodeSample::take(server_pids);
        let window_started = Instant::now();
        tokio::time::sleep_until(end.into()).await;
        let cpu_after = CpuSample::take_all(server_pids);
        let nodes_after = NodeSample::take(server_pids);
        let window = window_started.elapsed();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await.context("a client task failed")?);
        }
        let mut flooded = (0, 0, 0);
        for f in flood {
            let (sent, limited, dropped) = f.await.context("a flood task failed")?;
            flooded = (flooded.0 + sent, flooded.1 + limited, flooded.2 + dropped);
        }
        anyhow::Ok((results, window, (cpu_before, nodes_before), (cpu_after, nodes_after), flooded))
    })?;

    let mut latencies: Vec<u32> = Vec::new();
    let mut total = ClientResult::default();
    for r in results {
        latencies.extend_from_slice(&r.latencies_us);
        total.allowed += r.allowed;
        total.denied += r.denied;
        total.http_errors += r.http_errors;
        total.io_errors += r.io_errors;
        total.exhausted |= r.exhausted;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        u64::from(latencies[rank.clamp(1, latencies.len()) - 1])
    };
    let secs = plan.duration.as_secs_f64();
    let (server_cores, client_cores, other_cores) = CpuSample::cores(&cpu_before, &cpu_after, window);
    let (node_cores, database_cores) = NodeSample::cores(&nodes_before, &nodes_after, window);
    // The database server is part of the system under test, not a disturbance of it.
    let other_cores = if server_pids.is_empty() { other_cores } else { (other_cores - database_cores).max(0.0) };
    Ok(LevelResult {
        clients: plan.clients,
        mandates,
        seconds: secs,
        decisions_per_sec: total.allowed as f64 / secs,
        allowed: total.allowed,
        denied: total.denied,
        http_errors: total.http_errors,
        io_errors: total.io_errors,
        p50_us: pct(50.0),
        p90_us: pct(90.0),
        p99_us: pct(99.0),
        max_us: latencies.last().copied().map_or(0, u64::from),
        server_cores,
        client_cores,
        other_cores,
        node_cores,
        database_cores,
        signing_secs,
        proofs_exhausted: total.exhausted,
        first_error: total.first_error,
        attempts: 1,
        flood_requests: flooded.0,
        flood_limited: flooded.1,
        flood_dropped: flooded.2,
        rates: vec![total.allowed as f64 / secs],
    })
}

/// One flood connection from 127.0.0.(2 + k % 8): garbage `POST /v1/authorize` requests back to back
/// until `end`; returns how many it sent inside the window and how many were answered `429`.
async fn flooder(target: Target, k: usize, measure_from: Instant, end: Instant, timeout: Duration) -> (u64, u64, u64) {
    let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + u8::try_from(k % 8).unwrap_or(0));
    let body = br#"{"token":"garbage.garbage.garbage","proof":"x","tool":"load/flood","arguments":{}}"#;
    let (mut sent, mut limited, mut dropped) = (0, 0, 0);
    while Instant::now() < end {
        // An attacker reconnects at once, whatever the server did with its last connection.
        let Ok(mut conn) = Conn::connect_from(&target, source).await else {
            dropped += u64::from(Instant::now() >= measure_from);
            continue;
        };
        while Instant::now() < end {
            let measured = Instant::now() >= measure_from;
            match tokio::time::timeout(timeout, conn.send("POST", "/v1/authorize", None, Some(body))).await {
                Ok(Ok(a)) => {
                    sent += u64::from(measured);
                    limited += u64::from(measured && a.status == 429);
                }
                // Closed by the server: reconnect.
                _ => {
                    dropped += u64::from(measured);
                    break;
                }
            }
        }
    }
    (sent, limited, dropped)
}

/// One client: calls until `end` (or until its proofs run out), counting only calls started at or
/// after `measure_from`.
async fn client(
    mut conn: Conn,
    target: Target,
    token: String,
    pool: Vec<String>,
    measure_from: Instant,
    end: Instant,
    timeout: Duration,
) -> ClientResult {
    let mut r = ClientResult { latencies_us: Vec::with_capacity(pool.len()), ..ClientResult::default() };
    let mut body = String::with_capacity(token.len() + 1024);
    let mut ran_out = true;
    for (i, proof) in pool.iter().enumerate() {
        let started = Instant::now();
        if started >= end {
            ran_out = false;
            break;
        }
        body.clear();
        body.push_str(r#"{"token":""#);
        body.push_str(&token);
        body.push_str(r#"","proof":""#);
        body.push_str(proof);
        body.push_str(&format!(r#"","tool":"{TOOL}","resource":"load://items/{i}","arguments":{{"n":{i}}}}}"#));
        let answer =
            tokio::time::timeout(timeout, conn.send("POST", "/v1/authorize", None, Some(body.as_bytes()))).await;
        let elapsed = started.elapsed();
        let measured = started >= measure_from;
        let note = |r: &mut ClientResult, what: String| {
            if r.first_error.is_none() {
                r.first_error = Some(what);
            }
        };
        match answer {
            Ok(Ok(a)) if a.status == 200 && a.body.starts_with(br#"{"decision":"allow""#) => {
                if measured {
                    r.allowed += 1;
                    r.latencies_us.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
                }
            }
            Ok(Ok(a)) => {
                let text = String::from_utf8_lossy(&a.body).chars().take(500).collect::<String>();
                if a.status == 200 {
                    r.denied += u64::from(measured);
                } else {
                    r.http_errors += u64::from(measured);
                }
                note(&mut r, format!("{}: {text}", a.status));
            }
            Ok(Err(e)) => {
                r.io_errors += u64::from(measured);
                note(&mut r, format!("{e:#}"));
                match Conn::connect(&target).await {
                    Ok(c) => conn = c,
                    Err(_) => {
                        ran_out = false;
                        break;
                    }
                }
            }
            Err(_) => {
                r.io_errors += u64::from(measured);
                note(&mut r, format!("no answer within {timeout:?}"));
                // The connection may still deliver the late answer: start afresh.
                match Conn::connect(&target).await {
                    Ok(c) => conn = c,
                    Err(_) => {
                        ran_out = false;
                        break;
                    }
                }
            }
        }
    }
    r.exhausted = ran_out && Instant::now() < end;
    r
}
