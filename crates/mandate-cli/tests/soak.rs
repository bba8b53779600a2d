//! Crash soak: `mandate serve` killed with SIGKILL again and again under concurrent decisions, grants
//! and revocations. After every kill the database verifies offline, and every decision, grant and
//! revocation a client was answered is in it. `MANDATE_SOAK_CYCLES` sets the number of cycles (3 by
//! default, as the test command runs it; `scripts/soak.sh` runs 1,000 and writes BENCHMARKS.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use mandate_test::process::Serve;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mandate");
const ADMIN: &str = "soak-admin-token-0123456789abcdef";
/// Every start listens on another port, so mandates and proofs name one fixed issuer (as nodes behind
/// one public address do).
const ISSUER: &str = "https://mandate.soak";

fn post(url: &str, token: Option<&str>, body: &Value) -> Option<Value> {
    let mut request = ureq::post(url).timeout(Duration::from_secs(5));
    if let Some(t) = token {
        request = request.set("Authorization", &format!("Bearer {t}"));
    }
    request.send_json(body.clone()).ok()?.into_json().ok()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// What clients were answered in one cycle.
#[derive(Default)]
struct Acknowledged {
    decisions: Vec<(i64, String, String)>,
    grants: Vec<String>,
    revocations: Vec<String>,
}

fn grant_body(purpose: &str, max_calls: u64) -> Value {
    json!({"agent": "finance-close", "purpose": purpose, "category": "finance.close",
        "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/*"],
            "data_classes": ["financial"], "actions": ["read"]}], "max_calls": max_calls, "ttl_seconds": 3600})
}

/// One cycle: load until the first answers, `load` more, then SIGKILL. Returns what was acknowledged.
fn cycle(
    serve: &mut Serve,
    cycle_no: u64,
    token: &str,
    key: &Arc<SigningKey>,
    alice: &str,
    load: Duration,
) -> Acknowledged {
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let endpoint = format!("{}/v1/authorize", serve.url);
    let htu = format!("{ISSUER}/v1/authorize");
    for w in 0..3 {
        let (acked, stop, counter, key, token, endpoint, htu) = (
            acked.clone(),
            stop.clone(),
            counter.clone(),
            key.clone(),
            token.to_owned(),
            endpoint.clone(),
            htu.clone(),
        );
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let jti = format!("soak-{cycle_no}-{w}-{n}");
                let claims = mandate_core::jose::ProofClaims {
                    jti: &jti,
                    htm: "POST",
                    htu: &htu,
                    iat: now(),
                    access_token: Some(&token),
                };
                let proof = mandate_core::jose::sign_proof(&claims, &key).unwrap();
                let resource = format!("erp://ledger/2026-10/ap/{cycle_no}-{w}-{n}");
                let body = json!({"token": token, "proof": proof, "tool": "erp/read_ledger", "resource": resource, "arguments": {"n": n}});
                if let Some(d) = post(&endpoint, None, &body) {
                    if let Some(seq) = d["ledger_seq"].as_i64() {
                        acked.lock().unwrap().decisions.push((seq, d["decision"].as_str().unwrap().to_owned(), resource));
                    }
                }
            }
        }));
    }
    {
        let (acked, stop, url, alice) = (acked.clone(), stop.clone(), serve.url.clone(), alice.to_owned());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if let Some(g) =
                    post(&format!("{url}/v1/mandates"), Some(&alice), &grant_body(&format!("soak {cycle_no}-{n}"), 10))
                {
                    let id = g["mandate_id"].as_str().unwrap().to_owned();
                    acked.lock().unwrap().grants.push(id.clone());
                    // Every other grant is revoked at once.
                    if n % 2 == 0 {
                        let revoked =
                            post(&format!("{url}/v1/mandates/{id}/revoke"), Some(&alice), &json!({"reason": "soak"}));
                        if revoked.is_some_and(|r| r["revoked"].as_array().is_some_and(|a| !a.is_empty())) {
                            acked.lock().unwrap().revocations.push(id);
                        }
                    }
                }
            }
        }));
    }
    // Traffic first (a loaded machine may take a while to answer the first calls), then a kill at a
    // varied point after it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().decisions.len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(load);
    serve.kill();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(acked).ok().unwrap().into_inner().unwrap()
}

/// Checks, after a kill, that the database verifies offline and holds everything acknowledged.
fn check(data: &Path, acked: &Acknowledged) {
    let o = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .env_remove("MANDATE_TOKEN")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "offline verification failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", data.join("mandate.db").display());
        let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for (seq, decision, resource) in &acked.decisions {
            let row: Option<(String, Option<String>, Option<String>)> =
                sqlx::query_as("SELECT kind, decision, resource FROM events WHERE seq = $1")
                    .bind(seq)
                    .fetch_optional(&mut db)
                    .await
                    .unwrap();
            assert_eq!(
                row,
                Some(("decision".to_owned(), Some(decision.clone()), Some(resource.clone()))),
                "decision {seq} was answered but is not in the ledger as answered"
            );
        }
        for id in &acked.grants {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM events WHERE kind = 'mandate.granted' AND mandate_id = $1")
                    .bind(id)
                    .fetch_one(&mut db)
                    .await
                    .unwrap();
            assert_eq!(n, 1, "grant of {id} was answered but has no event");
        }
        for id in &acked.revocations {
            let revoked: Option<i64> = sqlx::query_scalar("SELECT revoked_at FROM mandates WHERE id = $1")
                .bind(id)
                .fetch_one(&mut db)
                .await
                .unwrap();
            assert!(revoked.is_some(), "revocation of {id} was answered but is not stored");
        }
        db.close().await.unwrap();
    });
}

#[test]
fn every_acknowledged_decision_grant_and_revocation_survives_repeated_sigkill() {
    let cycles: u64 = std::env::var("MANDATE_SOAK_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("mandate.toml");
    std::fs::write(&config, format!("[mandates]\nissuer = \"{ISSUER}\"\n")).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut serve = Serve::start(BIN, dir.path(), &["--demo", "--config", &config], Some(ADMIN));
    let alice = serve.demo_key("alice@example.org");
    let keys_dir = serve.demo_keys_dir();
    let jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{keys_dir}/finance-close.jwk")).unwrap()).unwrap();
    let d: [u8; 32] = URL_SAFE_NO_PAD.decode(jwk["d"].as_str().unwrap()).unwrap().try_into().unwrap();
    let key = Arc::new(SigningKey::from_bytes(&d));
    let granted = post(&format!("{}/v1/mandates", serve.url), Some(&alice), &grant_body("soak", 100_000)).unwrap();
    let token = granted["token"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let (mut decisions, mut grants, mut revocations) = (0, 0, 0);
    for n in 0..cycles {
        if n > 0 {
            serve = Serve::start(BIN, dir.path(), &["--config", &config], Some(ADMIN));
        }
        // Kills land at varied points: 20 to 170 ms after the first answers (short, so that a
        // thousand cycles keep the ledger, and each cycle's offline verification of all of it, small).
        let load = Duration::from_millis(20 + (n * 37) % 150);
        let acked = cycle(&mut serve, n, &token, &key, &alice, load);
        assert!(!acked.decisions.is_empty(), "cycle {n}: no decision was answered before the kill");
        check(&data, &acked);
        decisions += acked.decisions.len();
        grants += acked.grants.len();
        revocations += acked.revocations.len();
    }
    println!(
        "soak: {cycles} SIGKILL cycles in {:.0} s; answered and found after the kill: {decisions} decisions, {grants} grants, {revocations} revocations; every offline verification passed",
        started.elapsed().as_secs_f64()
    );
}
