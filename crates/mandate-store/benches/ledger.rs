//! The ledger's two benchmarks, each against its baseline in the same run:
//!
//! 1. Durable appends: group commit (`append_event`, one fsync per batch) against one transaction,
//!    and so one fsync, per event (`GroupCommitOptions { max_batch: 1 }`), same SQLite file, same
//!    `synchronous = FULL`, same number of concurrent appenders. Reported: events/s and the wait from
//!    calling `append_event` until it returned (the event durable), p50/p99/max.
//! 2. Verification: `Ledger::verify` (hash, link, sequence and checkpoint checks) against
//!    `SqliteStore::scan_events` (the same paged read of the same rows, decoding every column, no
//!    checks), over everything the first benchmark wrote, with a signed checkpoint every 10,000
//!    events.
//!
//! `cargo bench -p mandate-store --bench ledger` prints the `## Ledger` section of BENCHMARKS.md;
//! `scripts/bench-ledger.sh` runs it and writes the section with the details of the run.
//! `LEDGER_BENCH_SECONDS` sets each append run's length (default 3). The database lives under
//! `target/tmp` (a real disk, not tmpfs: the point is the fsync).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use ed25519_dalek::SigningKey;
use mandate_core::event::NewEvent;
use mandate_core::ledger::{Checkpoint, LedgerHead, Trust};
use mandate_store::{GroupCommitOptions, Ledger, SqliteStore, Store, VerifyOptions};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn event(n: u64) -> NewEvent {
    let detail = json!({
        "reasons": [{"code": "scope.ok", "message": "within the mandate's scope", "hop": 1}],
        "policies": ["org.finance.read"], "risk": {"score": 12, "signals": []}, "data_class": "financial",
        "action": "read", "depth": 1, "root": "user:alice@example.org", "approval_id": null,
        "policy_version": "3", "arguments": {"sha256": format!("{n:064x}"), "bytes": 42}
    });
    let mut e = NewEvent::new("decision", "spiffe://example.org/agent/finance-close", 1_790_000_000_000, &detail)
        .with_agent("finance-close");
    // A thousand mandates in a hundred chains: index inserts spread as they would in production.
    e.chain_id = Some(format!("mdt_chain{:018}", n % 100));
    e.mandate_id = Some(format!("mdt_{:022}", n % 1000));
    e.tool = Some("erp/read_ledger".into());
    e.resource = Some(format!("erp://ledger/2026-10/{}", n % 1000));
    e.decision = Some("allow".into());
    e
}

struct Run {
    events: u64,
    seconds: f64,
    waits_us: Vec<u64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.waits_us.len() as f64 - 1.0) * p).round() as usize;
        self.waits_us[i] as f64 / 1000.0
    }
}

/// `appenders` tasks append as fast as they can for `seconds`; every wait is recorded.
async fn appends(store: &SqliteStore, appenders: u64, seconds: f64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(tokio::sync::Barrier::new(usize::try_from(appenders).unwrap() + 1));
    let tasks: Vec<_> = (0..appenders)
        .map(|a| {
            let (store, stop, go) = (store.clone(), stop.clone(), go.clone());
            // Events are built before the clock starts: the benchmark measures the ledger, not JSON.
            let events: Vec<NewEvent> = (0..16).map(|i| event(a * 16 + i)).collect();
            tokio::spawn(async move {
                go.wait().await;
                let mut waits = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let e = events[n % events.len()].clone();
                    let t = Instant::now();
                    store.append_event(e).await.unwrap();
                    waits.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                    n += 1;
                }
                waits
            })
        })
        .collect();
    go.wait().await;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut waits_us = Vec::new();
    for t in tasks {
        waits_us.extend(t.await.unwrap());
    }
    let seconds = start.elapsed().as_secs_f64();
    waits_us.sort_unstable();
    Run { events: waits_us.len() as u64, seconds, waits_us }
}

/// Concurrent appenders in the group-commit runs.
const LEVELS: [u64; 5] = [1, 16, 256, 1024, MOST];
/// The most concurrent appenders: where both runs are compared.
const MOST: u64 = 4096;

fn fs_type(dir: &Path) -> String {
    std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let seconds: f64 = std::env::var("LEDGER_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(seconds));
}

async fn run(seconds: f64) {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ledger-bench");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let path = base.join("ledger.db");
    eprintln!("database: {} ({})", path.display(), fs_type(&base));

    // 1. One fsync per event, then group commit, on the same file. The baseline's rate does not
    // depend on how many wait (they queue for the one writer); it runs at both ends of the range.
    let single =
        SqliteStore::open_with(&path, GroupCommitOptions { max_batch: 1, ..Default::default() }).await.unwrap();
    let mut baseline = Vec::new();
    for n in [1, MOST] {
        let r = appends(&single, n, seconds).await;
        eprintln!("one fsync per event, {n} appenders: {:.0} events/s", r.rate());
        baseline.push((n, r));
    }
    single.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    let mut group = Vec::new();
    for n in LEVELS {
        let r = appends(&store, n, seconds).await;
        eprintln!("group commit, {n} appenders: {:.0} events/s, p99 {:.2} ms", r.rate(), r.pct(0.99));
        group.push((n, r));
    }

    // 2. Verification against a plain scan of the same rows, with a checkpoint every 10,000 events.
    let key = SigningKey::from_bytes(&[42; 32]);
    let head = store.head().await.unwrap().unwrap();
    let mut checkpoints = 0;
    for seq in (10_000..=head.seq).step_by(10_000) {
        let at = store
            .query_events(&mandate_store::LedgerQuery { after_seq: Some(seq - 1), limit: 1, ..Default::default() })
            .await
            .unwrap();
        let cp = Checkpoint::sign(&LedgerHead { seq, hash: at[0].hash.clone() }, 0, &key);
        store.insert_checkpoint(&cp).await.unwrap();
        checkpoints += 1;
    }
    let options = VerifyOptions { trust: Trust::Keys([Checkpoint::sign(&head, 0, &key).kid].into()), anchors: vec![] };
    // Nine rounds; the order inside a round alternates, so neither read always follows the other.
    let (mut scans, mut verifies) = (Vec::new(), Vec::new());
    for round in 0..9 {
        for verify_now in [round % 2 == 1, round % 2 == 0] {
            let t = Instant::now();
            if verify_now {
                let report = store.verify(&options).await.unwrap();
                verifies.push(t.elapsed().as_secs_f64());
                assert!(report.ok, "{report:?}");
                assert_eq!(report.checkpoints_matched, checkpoints);
            } else {
                let n = store.scan_events().await.unwrap();
                scans.push(t.elapsed().as_secs_f64());
                assert_eq!(n, u64::try_from(head.seq).unwrap());
            }
        }
    }
    store.close().await;
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let ((scan_best, scan_median), (verify_best, verify_median)) = (stats(&mut scans), stats(&mut verifies));
    let rows = head.seq as f64;
    let (scan_rate, verify_rate) = (rows / scan_best, rows / verify_best);

    let best = group.iter().map(|(_, r)| r.rate()).fold(0.0, f64::max);
    let at_most = |runs: &[(u64, Run)]| runs.iter().find(|(n, _)| *n == MOST).map_or(0.0, |(_, r)| r.rate());
    let speedup = at_most(&group) / at_most(&baseline);
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let e = event(0);
    let bytes = e.detail.len() + e.kind.len() + e.actor.len() + e.resource.map_or(0, |r| r.len()) + 128;
    println!("## Ledger\n");
    println!("Generated by `scripts/bench-ledger.sh`; rerun it to refresh this section.\n");
    println!("**Targets** (issue 6): durable appends with group commit at least 20x the rate of one fsync per");
    println!("event, and at least 50,000 durable events/s; verification at least half the rate of a plain scan of");
    println!("the same rows. Each measured against its baseline in the same run.\n");
    println!(
        "**{}**: group commit = **{speedup:.1}x** one fsync per event, both with {MOST} concurrent appenders ({:.0} vs {:.0} events/s).  ",
        verdict(speedup >= 20.0),
        at_most(&group),
        at_most(&baseline)
    );
    println!("**{}**: best sustained durable rate **{best:.0} events/s**.  ", verdict(best >= 50_000.0));
    println!(
        "**{}**: verification = **{:.2}x** the plain scan rate ({verify_rate:.0} vs {scan_rate:.0} events/s over {} events and {checkpoints} checkpoints).\n",
        verdict(verify_rate >= 0.5 * scan_rate),
        verify_rate / scan_rate,
        head.seq
    );
    println!("### How to read this\n");
    println!("- Both append runs write the same SQLite file in WAL mode with `synchronous = FULL` (one fsync per");
    println!("  commit). The baseline is the same code with batches of one (`GroupCommitOptions {{ max_batch: 1 }}`):");
    println!("  one transaction, and one fsync, per event, as `append_event` was before group commit.");
    println!(
        "- Appenders are tasks on a tokio runtime of 2 workers, each appending as fast as it can for {seconds} s."
    );
    println!("  The wait is from calling `append_event` until it returned, which is after the commit that made the");
    println!("  event durable. Group commit's rate grows with the appends waiting at once (a batch takes what");
    println!("  queued during the previous commit); the baseline's does not (every append waits for its own fsync).");
    println!("- Each event is a decision of about {bytes} bytes (detail, ids and both hashes) in one of 100 chains");
    println!("  and 1,000 mandates, so the indexes of migration 0003 (agent, kind, chain, tool, time) are updated");
    println!("  as in production.");
    println!("- Reading: both rows walk every event in pages of 4,096 in one read transaction, decoding every column;");
    println!("  `verify` adds each event's SHA-256, the link and sequence checks, and the checkpoint checks (one");
    println!("  signed checkpoint per 10,000 events; each an Ed25519 verification). Nine rounds of each, alternating");
    println!("  which goes first; rates are from the best time, and the medians show the spread on a shared machine.");
    println!(
        "- The database is in `target/tmp/ledger-bench` (file system `{}`): an fsync there is what a server on this",
        fs_type(&base)
    );
    println!("  machine pays.\n");
    println!("### Results\n");
    println!("| durable appends | appenders | events | events/s | wait p50 | wait p99 | wait max |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let row = |what: &str, n: u64, r: &Run| {
        println!(
            "| {what} | {n} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
            r.events,
            r.rate(),
            r.pct(0.5),
            r.pct(0.99),
            r.pct(1.0)
        );
    };
    for (n, r) in &baseline {
        row("one transaction (one fsync) per event: the baseline", *n, r);
    }
    for (n, r) in &group {
        row("group commit", *n, r);
    }
    println!();
    println!("| reading every event | events/s (best) | best time | median time |");
    println!("|---|---:|---:|---:|");
    println!(
        "| plain scan (baseline): paged `SELECT`, every column decoded | {scan_rate:.0} | {scan_best:.3} s | {scan_median:.3} s |"
    );
    println!(
        "| `verify`: the same read plus hash, link, sequence and checkpoint checks | {verify_rate:.0} | {verify_best:.3} s | {verify_median:.3} s |"
    );
    let _ = std::fs::remove_dir_all(&base);
}
