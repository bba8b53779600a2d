//! A disk that fills and then frees: the ledger writer fails the batches it cannot commit, never
//! returns an allow without its event, says so on `/readyz`, and recovers by itself once space is
//! back. The data directory is a real file system of a few megabytes (tmpfs, mounted by the test,
//! which needs root as the test command runs it), filled with a real file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_test::{agent_spec, proof, TestServer};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use time::macros::datetime;

const ALICE: &str = "user:alice@example.org";
const AUTHORIZE: &str = "https://mandate.test/v1/authorize";

/// A tmpfs mounted at a fresh directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn new(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}M"), "tmpfs"])
            .arg(&mount)
            .status()
            .expect("`mount` runs");
        assert!(status.success(), "mounting a {megabytes} MiB tmpfs needs root (the test command runs as root)");
        Self { dir, mount }
    }

    /// Writes a file until the file system is full; returns it.
    fn fill(&self) -> PathBuf {
        let path = self.mount.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = self.dir.path();
    }
}

fn ready(server: &TestServer) -> u16 {
    match ureq::get(&format!("{}/readyz", server.url)).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("GET /readyz: {e}"),
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_disk_that_fills_and_frees_fails_closed_then_recovers_by_itself() {
    let disk = SmallDisk::new(16);
    let clock = Arc::new(mandate_engine::clock::ManualClock::new(datetime!(2026-11-01 09:00 UTC)));
    let server = TestServer::start_on_sqlite(&disk.mount.join("data"), clock);
    let alice = server.human("alice@example.org", json!({"groups": ["finance"]}));
    assert_eq!(server.admin().post("/v1/agents", &agent_spec("finance-close", ALICE, json!({}))).0, 201);
    let classified = server.admin().raw(
        "PUT",
        "/v1/tools/erp/read_ledger",
        Some(&json!({"data_class": "financial", "risk": "read"}).to_string()),
    );
    assert_eq!(classified.status(), 200);
    let (status, granted) = alice.post(
        "/v1/mandates",
        &json!({"agent": "finance-close", "purpose": "October close", "category": "finance.close",
            "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "data_classes": ["financial"], "actions": ["read"]}],
            "max_calls": 10000}),
    );
    assert_eq!(status, 201, "{granted}");
    let token = granted["token"].as_str().unwrap().to_owned();
    let anon = server.client(None);
    let mut n = 0;
    let mut decide = |bulk: usize| -> Value {
        n += 1;
        let t = server.clock.now_secs();
        let body = json!({"token": token, "proof": proof(1, "POST", AUTHORIZE, &token, t, &format!("disk-{n}")),
            "tool": "erp/read_ledger", "arguments": {"padding": "x".repeat(bulk)}});
        anon.post("/v1/authorize", &body).1
    };
    let mut given: Vec<i64> = Vec::new();
    let first = decide(0);
    assert_eq!(first["decision"], "allow", "{first}");
    given.push(first["ledger_seq"].as_i64().unwrap());
    assert_eq!(ready(&server), 200);

    // The disk fills. Decisions now cannot be recorded: none is allowed, and /readyz says so.
    let filler = disk.fill();
    let mut refused = 0;
    for _ in 0..40 {
        let d = decide(32 * 1024);
        match d["decision"].as_str() {
            Some("allow") => given.push(d["ledger_seq"].as_i64().expect("an allow always has its event")),
            Some("deny") => {
                assert_eq!(d["reasons"][0]["code"], "internal.ledger_unavailable", "{d}");
                assert!(d["ledger_seq"].is_null());
                refused += 1;
            }
            other => panic!("{other:?}: {d}"),
        }
    }
    assert!(refused > 0, "the disk was full, yet every decision was recorded");
    wait_for("/readyz says not ready", || ready(&server) == 503);
    assert_eq!(
        ureq::get(&format!("{}/healthz", server.url)).call().unwrap().status(),
        200,
        "liveness is not readiness"
    );

    // Space comes back: the writer recovers without a restart.
    std::fs::remove_file(&filler).unwrap();
    wait_for("/readyz is ready again", || ready(&server) == 200);
    let d = decide(0);
    assert_eq!(d["decision"], "allow", "{d}");
    given.push(d["ledger_seq"].as_i64().unwrap());

    // Every allow a client was given is in the ledger, and the ledger verifies.
    let admin = server.admin();
    for seq in &given {
        let (_, page) = admin.get(&format!("/v1/audit?after={}&limit=1", seq - 1));
        let e = &page["events"][0];
        assert_eq!((e["seq"].as_i64(), e["decision"].as_str()), (Some(*seq), Some("allow")), "{page}");
    }
    let (_, report) = admin.get("/v1/audit/verify");
    assert_eq!(report["ok"], true, "{report}");
    drop(server);
    let _ = Path::new("/");
}
