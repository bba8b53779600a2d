//! Three `mandate serve` nodes on one PostgreSQL database (the test run's own server, see
//! `mandate_store::testing`), sharing their signing keys and issuer as a fleet behind one address
//! does. What one node changes is in force on the others within a second (measured, p99 over 20
//! tries and more); a proof is accepted once whichever nodes see it; a budget raced from all three
//! allows exactly its calls; after load on every node the ledger is one verified sequence holding
//! every decision a client was answered, exactly once; and a node killed with SIGKILL under load
//! loses nothing it acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use mandate_store::testing::PostgresDatabase;
use mandate_test::process::Serve;
use mandate_test::{agent_spec, proof, Client};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mandate");
const ADMIN: &str = "nodes-admin-token-0123456789abcdef";
const ISSUER: &str = "https://mandate.fleet";
const ALICE: &str = "user:alice@example.org";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

static JTI: AtomicU64 = AtomicU64::new(0);

/// A fresh proof id.
fn jti() -> String {
    format!("nodes-{}", JTI.fetch_add(1, Ordering::Relaxed))
}

/// `/v1/authorize` on `node` with a proof of its own (or `reuse`).
fn call(node: &str, token: &str, resource: &str, proof_jwt: Option<&str>) -> Value {
    let fresh;
    let p = match proof_jwt {
        Some(p) => p,
        None => {
            fresh = proof(1, "POST", &format!("{ISSUER}/v1/authorize"), token, now(), &jti());
            &fresh
        }
    };
    let body = json!({"token": token, "proof": p, "tool": "erp/read_ledger", "resource": resource, "arguments": {}});
    let (status, d) = Client::new(node, None).post("/v1/authorize", &body);
    assert!(status == 200 || status == 403 || status == 503, "{status}: {d}");
    d
}

fn code(d: &Value) -> &str {
    d["reasons"][0]["code"].as_str().unwrap_or("")
}

struct Fleet {
    _dir: tempfile::TempDir,
    db: Option<PostgresDatabase>,
    nodes: Vec<Serve>,
    alice_key: String,
}

impl Fleet {
    fn start(n: usize) -> Option<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let db = runtime.block_on(PostgresDatabase::create()).unwrap()?;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let config = dir.path().join("mandate.toml");
        std::fs::write(&config, format!("[mandates]\nissuer = \"{ISSUER}\"\n")).unwrap();
        let config = config.to_str().unwrap().to_owned();
        let keys = keys.to_str().unwrap().to_owned();
        let env = [("MANDATE_DATABASE_URL", db.url.as_str()), ("MANDATE_KEYS_DIR", keys.as_str())];
        let mut nodes = Vec::new();
        for i in 0..n {
            let home = dir.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&home).unwrap();
            nodes.push(Serve::start_env(BIN, &home, &["--config", &config], Some(ADMIN), &env));
        }
        let admin = Client::new(&nodes[0].url, Some(ADMIN));
        let (status, alice) = admin.post("/v1/humans", &json!({"id": "alice@example.org", "groups": ["finance"]}));
        assert_eq!(status, 201, "{alice}");
        let spec = agent_spec("finance-close", ALICE, json!({}));
        assert_eq!(admin.post("/v1/agents", &spec).0, 201);
        let classified = json!({"data_class": "financial", "risk": "read", "server_environment": "production"});
        assert_eq!(admin.put("/v1/tools/erp/read_ledger", &classified).0, 200);
        let alice_key = alice["api_key"].as_str().unwrap().to_owned();
        let fleet = Self { _dir: dir, db: Some(db), nodes, alice_key };
        // The set-up, made on node 0, is in force on every node within the feed's bound (the tool's
        // classification above all): wait for it before anything is measured.
        let (token, _) = fleet.grant(0, 1000);
        for i in 0..n {
            let start = Instant::now();
            while call(fleet.url(i), &token, "erp://ledger/2026-10/ap", None)["decision"] != "allow" {
                assert!(start.elapsed() < Duration::from_secs(5), "node {i} never saw the set-up");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Some(fleet)
    }

    fn url(&self, i: usize) -> &str {
        &self.nodes[i].url
    }

    /// A mandate granted by Alice on node `on`: its token and id.
    fn grant(&self, on: usize, max_calls: u64) -> (String, String) {
        let body = json!({"agent": "finance-close", "purpose": "close October", "category": "finance.close",
            "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/*"],
                "data_classes": ["financial"], "actions": ["read"]}], "max_calls": max_calls, "ttl_seconds": 3600});
        let (status, g) = Client::new(self.url(on), Some(&self.alice_key)).post("/v1/mandates", &body);
        assert_eq!(status, 201, "{g}");
        (g["token"].as_str().unwrap().to_owned(), g["mandate_id"].as_str().unwrap().to_owned())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.nodes.clear();
        if let Some(db) = self.db.take() {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let _ = runtime.block_on(db.drop_database());
        }
    }
}

/// Time until a call on `node` is denied for one of `reasons`, polling with fresh proofs.
fn reach(node: &str, token: &str, reasons: &[&str]) -> Duration {
    let start = Instant::now();
    loop {
        let d = call(node, token, "erp://ledger/2026-10/ap", None);
        if d["decision"] == "deny" && reasons.contains(&code(&d)) {
            return start.elapsed();
        }
        assert_eq!(d["decision"], "allow", "{d}");
        assert!(start.elapsed() < Duration::from_secs(10), "{reasons:?} never reached {node}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
fn three_nodes_on_one_database_answer_alike() {
    let Some(mut fleet) = Fleet::start(3) else { return };
    let admin = |fleet: &Fleet, i: usize| Client::new(fleet.url(i), Some(ADMIN));

    // A revocation on one node is in force on the others within a second.
    let mut reaches = Vec::new();
    // 20 rounds (40 tries, and two for a suspension) unless `MANDATE_NODES_TRIES` asks for more
    // (scripts/bench-nodes.sh does, for BENCHMARKS.md).
    let rounds =
        std::env::var("MANDATE_NODES_TRIES").ok().and_then(|t| t.parse::<usize>().ok()).map_or(20, |t| t.div_ceil(2));
    for round in 0..rounds {
        let on = round % 3;
        let (token, id) = fleet.grant(on, 1000);
        // Twice on each node: the chains a node learns its drift profile from then hold the
        // repeated read a close task makes. Called once only, the last node polled below (already
        // denied) would learn chains of one call, and after 20 of them (its profile warm) score a
        // repeated read as a rare step, and hold the budget race's calls on that node.
        for other in (0..3).filter(|o| *o != on) {
            for _ in 0..2 {
                let d = call(fleet.url(other), &token, "erp://ledger/2026-10/ap", None);
                assert_eq!(d["decision"], "allow", "node {other}, round {round}: {d}");
            }
        }
        let (status, r) = Client::new(fleet.url(on), Some(&fleet.alice_key))
            .post(&format!("/v1/mandates/{id}/revoke"), &json!({"reason": "done"}));
        assert_eq!(status, 200, "{r}");
        for other in (0..3).filter(|o| *o != on) {
            reaches.push(reach(fleet.url(other), &token, &["mandate.revoked"]));
        }
    }
    // A suspension, too (the registry, not only mandates).
    let (token, _) = fleet.grant(0, 1000);
    assert_eq!(admin(&fleet, 1).post("/v1/agents/finance-close/suspend", &json!({"reason": "incident"})).0, 200);
    for other in [0, 2] {
        reaches.push(reach(fleet.url(other), &token, &["mandate.revoked", "agent.suspended"]));
    }
    assert_eq!(admin(&fleet, 2).post("/v1/agents/finance-close/resume", &json!({})).0, 200);
    reaches.sort();
    let (p50, p99) = (percentile(&reaches, 0.5), percentile(&reaches, 0.99));
    eprintln!("revocation reach over {} tries: p50 {p50:?}, p99 {p99:?}", reaches.len());
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?} over {reaches:?}");

    // A key rotated on one node: every node publishes the same JWKS within a second or two (each
    // reads the shared keys directory every second), and signs with the new key.
    let jwks = |i: usize| Client::new(fleet.url(i), None).get("/.well-known/jwks.json").1;
    let before = jwks(0);
    assert_eq!((jwks(1), jwks(2)), (before.clone(), before.clone()), "one JWKS everywhere");
    assert_eq!(admin(&fleet, 0).post("/v1/keys/rotate", &json!({})).0, 200);
    let rotated = Instant::now();
    loop {
        let now_published = [jwks(0), jwks(1), jwks(2)];
        if now_published.iter().all(|j| *j == now_published[0] && *j != before) {
            break;
        }
        assert!(rotated.elapsed() < Duration::from_secs(5), "the rotation did not reach every node: {now_published:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // A grant made on one node, after the resumption seen there.
    std::thread::sleep(Duration::from_millis(300));
    let (token, _) = fleet.grant(2, 1000);

    // The same proof, presented to every node: accepted once.
    let p = proof(1, "POST", &format!("{ISSUER}/v1/authorize"), &token, now(), &jti());
    assert_eq!(call(fleet.url(0), &token, "erp://ledger/2026-10/ap", Some(&p))["decision"], "allow");
    for other in [1, 2, 0] {
        let d = call(fleet.url(other), &token, "erp://ledger/2026-10/ap", Some(&p));
        assert_eq!((d["decision"].as_str(), code(&d)), (Some("deny"), "proof.replayed"), "node {other}: {d}");
    }

    // A budget raced from all three nodes at once allows exactly its calls.
    let (token, _) = fleet.grant(1, 40);
    let given: Arc<Mutex<Vec<(i64, String)>>> = Arc::default();
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let (node, token, given) = (fleet.url(t % 3).to_owned(), token.clone(), given.clone());
            std::thread::spawn(move || {
                (0..10)
                    .map(|_| {
                        let d = call(&node, &token, "erp://ledger/2026-10/ap", None);
                        if let Some(seq) = d["ledger_seq"].as_i64() {
                            given.lock().unwrap().push((seq, d["decision"].as_str().unwrap().to_owned()));
                        }
                        // The whole answer (reasons, risk and its signals), should it be neither.
                        let why = d.to_string();
                        (d["decision"].as_str().unwrap().to_owned(), code(&d).to_owned(), why)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let outcomes: Vec<(String, String, String)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let allowed = outcomes.iter().filter(|(d, _, _)| d == "allow").count();
    let other: Vec<_> = outcomes.iter().filter(|(d, c, _)| d != "allow" && c != "budget.exhausted").collect();
    assert!(other.is_empty(), "{allowed} allowed; neither an allow nor an exhausted budget: {other:?}");
    assert_eq!(allowed, 40, "{outcomes:?}");

    // Load on every node, one of them killed with SIGKILL in the middle: every answered decision
    // is in the ledger, once, as answered.
    let (token, _) = fleet.grant(0, 100_000);
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..6)
        .map(|t| {
            let (node, token, given, stop) = (fleet.url(t % 3).to_owned(), token.clone(), given.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let p = proof(1, "POST", &format!("{ISSUER}/v1/authorize"), &token, now(), &jti());
                    let body = json!({"token": token, "proof": p, "tool": "erp/read_ledger", "resource": "erp://ledger/2026-10/ap", "arguments": {}});
                    let answered = ureq::post(&format!("{node}/v1/authorize"))
                        .timeout(Duration::from_secs(5))
                        .send_json(body)
                        .ok()
                        .and_then(|r| r.into_json::<Value>().ok());
                    if let Some(d) = answered {
                        if let Some(seq) = d["ledger_seq"].as_i64() {
                            given.lock().unwrap().push((seq, d["decision"].as_str().unwrap().to_owned()));
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    fleet.nodes[1].kill();
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let given = given.lock().unwrap().clone();
    assert!(given.len() > 200, "too little load to show anything: {}", given.len());
    let seqs: HashSet<i64> = given.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs.len(), given.len(), "a sequence number was given twice");

    // One verified sequence, read directly from the database and through a surviving node.
    let url = fleet.db.as_ref().unwrap().url.clone();
    let o = Command::new(BIN).args(["audit", "verify", "--json", "--database-url", &url]).output().unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let (_, through) = admin(&fleet, 2).get("/v1/audit/verify");
    assert_eq!(through["ok"], true, "{through}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let stored: HashMap<i64, (String, Option<String>)> = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let rows: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT seq, kind, decision FROM events").fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.into_iter().map(|(s, k, d)| (s, (k, d))).collect()
    });
    assert_eq!(report["events"].as_u64(), Some(stored.len() as u64));
    for (seq, decision) in &given {
        assert_eq!(
            stored.get(seq),
            Some(&("decision".to_owned(), Some(decision.clone()))),
            "decision {seq} was answered {decision} but is not in the ledger as answered"
        );
    }
}

#[test]
fn a_node_that_cannot_reach_the_database_stops_allowing_and_says_so_then_recovers() {
    let Some(fleet) = Fleet::start(1) else { return };
    let (token, _) = fleet.grant(0, 1000);
    assert_eq!(call(fleet.url(0), &token, "erp://ledger/2026-10/ap", None)["decision"], "allow");
    let ready = || Client::new(fleet.url(0), None).get("/readyz");
    assert_eq!(ready().0, 200);
    // The database refuses this node's connections (a partition, a failover in progress).
    let url = fleet.db.as_ref().unwrap().url.clone();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let admin_url = std::env::var(mandate_store::testing::URL_VAR).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let set_connections = |allow: bool| {
        runtime.block_on(async {
            let pool = sqlx::PgPool::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}")).execute(&pool).await.unwrap();
            if !allow {
                sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&name)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            pool.close().await;
        })
    };
    set_connections(false);
    let cut = Instant::now();
    // Within its bound (1 s) and a poll, the node refuses, with the reason, and is not ready.
    let refused = loop {
        let d = call(fleet.url(0), &token, "erp://ledger/2026-10/ap", None);
        if d["decision"] == "deny" && code(&d) == "internal.node_behind" {
            break d;
        }
        assert!(cut.elapsed() < Duration::from_secs(5), "still deciding after {:?}: {d}", cut.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(refused["reasons"][0]["message"].as_str().unwrap().contains("bound"), "{refused}");
    let (status, problem) = ready();
    assert_eq!((status, problem["code"].as_str()), (503, Some("server.node_behind")), "{problem}");
    // A human cannot be granted a mandate on stale state either.
    let body = json!({"agent": "finance-close", "purpose": "p", "category": "finance.close",
        "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["financial"], "actions": ["read"]}]});
    let (status, _) = Client::new(fleet.url(0), Some(&fleet.alice_key)).post("/v1/mandates", &body);
    assert!(status == 503, "{status}");
    // Back: the node catches up by itself.
    set_connections(true);
    let back = Instant::now();
    loop {
        if ready().0 == 200 && call(fleet.url(0), &token, "erp://ledger/2026-10/ap", None)["decision"] == "allow" {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(15), "the node did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}
