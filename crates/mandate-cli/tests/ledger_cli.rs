//! The ledger through the `mandate` binary: a SIGKILL in the middle of concurrent authorizations
//! loses no decision any client was given; tampering with the database file is named at its
//! sequence number online and offline; the demo's chain and blast radius read as a story; exports
//! verify offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use mandate_test::agent_spec;
use mandate_test::process::Serve;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mandate");

fn run(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("MANDATE_URL", url).env("MANDATE_TOKEN", token).output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn offline(data: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .args(extra)
        .env_remove("MANDATE_TOKEN")
        .output()
        .unwrap()
}

fn post(url: &str, token: Option<&str>, body: &Value) -> Result<Value, String> {
    let mut request = ureq::post(url).timeout(Duration::from_secs(10));
    if let Some(t) = token {
        request = request.set("Authorization", &format!("Bearer {t}"));
    }
    match request.send_json(body.clone()) {
        Ok(r) => r.into_json().map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Starts `mandate serve` (its log is read continuously by `Serve`).
fn started(dir: &Path, extra: &[&str]) -> Serve {
    Serve::start(BIN, dir, extra, None)
}

fn demo_key(serve: &Serve, agent: &str) -> SigningKey {
    let text = std::fs::read_to_string(format!("{}/{agent}.jwk", serve.demo_keys_dir())).unwrap();
    let jwk: Value = serde_json::from_str(&text).unwrap();
    let d: [u8; 32] = URL_SAFE_NO_PAD.decode(jwk["d"].as_str().unwrap()).unwrap().try_into().unwrap();
    SigningKey::from_bytes(&d)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[test]
fn sigkill_during_authorizations_loses_no_decision_a_client_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = started(dir.path(), &["--demo"]);
    let admin = serve.admin_token();
    let alice = serve.demo_key("alice@example.org");
    let granted = post(
        &format!("{}/v1/mandates", serve.url),
        Some(&alice),
        &json!({"agent": "finance-close", "purpose": "Load the October ledger", "category": "finance.close",
            "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/*"],
                "data_classes": ["financial"], "actions": ["read"]}], "max_calls": 100000, "ttl_seconds": 3600}),
    )
    .unwrap();
    let token = granted["token"].as_str().unwrap().to_owned();
    let key = Arc::new(demo_key(&serve, "finance-close"));
    let endpoint = format!("{}/v1/authorize", serve.url);
    let given = Arc::new(Mutex::new(Vec::<(i64, String, String)>::new()));
    let registered = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for w in 0..6 {
        let (given, stop, counter, key, token, endpoint) =
            (given.clone(), stop.clone(), counter.clone(), key.clone(), token.clone(), endpoint.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let jti = format!("crash-{w}-{n}");
                let claims = mandate_core::jose::ProofClaims {
                    jti: &jti,
                    htm: "POST",
                    htu: &endpoint,
                    iat: now(),
                    access_token: Some(&token),
                };
                let proof = mandate_core::jose::sign_proof(&claims, &key).unwrap();
                let resource = format!("erp://ledger/2026-10/ap/{w}-{n}");
                let body = json!({"token": token, "proof": proof, "tool": "erp/read_ledger", "resource": resource, "arguments": {"n": n}});
                // An answer is a promise that its decision is in the ledger; no answer promises nothing.
                if let Ok(d) = post(&endpoint, None, &body) {
                    if let Some(seq) = d["ledger_seq"].as_i64() {
                        given.lock().unwrap().push((seq, d["decision"].as_str().unwrap().to_owned(), resource));
                    }
                }
            }
        }));
    }
    // State changes with events of their own, interleaved with the batched decisions.
    {
        let (registered, stop, url, admin) = (registered.clone(), stop.clone(), serve.url.clone(), admin.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("crash-agent-{n}");
                let spec = agent_spec(&id, "user:alice@example.org", json!({}));
                if post(&format!("{url}/v1/agents"), Some(&admin), &spec).is_ok() {
                    registered.lock().unwrap().push(id);
                }
                n += 1;
            }
        }));
    }
    let start = Instant::now();
    while given.lock().unwrap().len() < 300 && start.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(20));
    }
    serve.kill();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let given = given.lock().unwrap().clone();
    assert!(given.len() >= 300, "only {} decisions before the kill", given.len());

    // Offline, straight after the crash: the file verifies, write-ahead log included.
    let data = dir.path().join("data");
    let o = offline(&data, &[]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).starts_with("The ledger verifies (database"), "{}", out(&o));

    let restarted = started(dir.path(), &[]);
    let export = Command::new(BIN)
        .args(["audit", "export"])
        .env("MANDATE_URL", &restarted.url)
        .env("MANDATE_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", err(&export));
    let stored: HashMap<i64, Value> = out(&export)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| (e["seq"].as_i64().unwrap(), e))
        .collect();
    for (seq, decision, resource) in &given {
        let e =
            stored.get(seq).unwrap_or_else(|| panic!("decision {seq} was given to a client but is not in the ledger"));
        assert_eq!((e["kind"].as_str(), e["decision"].as_str()), (Some("decision"), Some(decision.as_str())), "{e}");
        assert_eq!(e["resource"].as_str(), Some(resource.as_str()), "{e}");
    }
    let agents: Vec<&str> =
        stored.values().filter(|e| e["kind"] == "agent.registered").filter_map(|e| e["agent"].as_str()).collect();
    for id in registered.lock().unwrap().iter() {
        assert!(agents.contains(&id.as_str()), "registration of {id} was acknowledged but has no event");
    }
    let verify = run(&restarted.url, &admin, &["audit", "verify"]);
    assert!(verify.status.success(), "{}", err(&verify));
}

/// A demo ledger with an exported checkpoint, stopped cleanly; returns the data dir's parent, the
/// checkpoint file and the admin token.
fn stopped_demo() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = started(dir.path(), &["--demo"]);
    let admin = serve.admin_token();
    let cp = dir.path().join("checkpoint.json");
    let o = run(&serve.url, &admin, &["audit", "checkpoint", "--new", "--output", cp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("written to"), "{}", err(&o));
    let status = Command::new("kill").arg("-TERM").arg(serve.child.id().to_string()).status().unwrap();
    assert!(status.success());
    let _ = serve.child.wait();
    (dir, cp, admin)
}

fn tamper(db: &Path, sql: &[&str]) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use sqlx::Connection as _;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        for s in sql {
            sqlx::query(s).execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn tampering_with_the_database_is_named_online_and_offline() {
    let (dir, cp, admin) = stopped_demo();
    let data = dir.path().join("data");
    let o = offline(&data, &["--checkpoint", cp.to_str().unwrap()]);
    assert!(o.status.success(), "{}", err(&o));
    let checkpoint: Value = serde_json::from_str(&std::fs::read_to_string(&cp).unwrap()).unwrap();
    let head = checkpoint["seq"].as_i64().unwrap();
    let cases: [(&str, Vec<String>, i64, &str); 4] = [
        (
            "edit",
            vec!["UPDATE events SET decision = 'allow' WHERE kind = 'decision' AND decision = 'deny'".into()],
            0,
            "ledger.event_edited",
        ),
        ("delete", vec!["DELETE FROM events WHERE seq = 7".into()], 7, "ledger.event_missing"),
        (
            "swap",
            vec![
                "UPDATE events SET seq = -1 WHERE seq = 10".into(),
                "UPDATE events SET seq = 10 WHERE seq = 11".into(),
                "UPDATE events SET seq = 11 WHERE seq = -1".into(),
            ],
            10,
            "ledger.event_moved",
        ),
        (
            "truncate",
            vec![format!("DELETE FROM events WHERE seq > {}", head - 3), "DELETE FROM ledger_checkpoints".into()],
            head - 2,
            "ledger.truncated",
        ),
    ];
    for (name, sql, seq, code) in cases {
        let case = dir.path().join(name);
        copy_dir(&data, &case.join("data"));
        let db = case.join("data/mandate.db");
        let denied_seq: Option<i64> = if name == "edit" {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                use sqlx::Connection as _;
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
                sqlx::query_scalar("SELECT MIN(seq) FROM events WHERE kind = 'decision' AND decision = 'deny'")
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            })
        } else {
            None
        };
        let seq = denied_seq.unwrap_or(seq);
        let sql: Vec<&str> = sql.iter().map(String::as_str).collect();
        tamper(&db, &sql);
        let expected = format!("the first bad event is seq {seq}:");
        let checkpoint_args = ["--checkpoint", cp.to_str().unwrap()];
        let o = offline(&case.join("data"), &checkpoint_args);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", out(&o));
        assert!(err(&o).contains(&expected) && err(&o).contains(code), "{name}: {}", err(&o));
        // The same through a server running over the tampered file.
        let serve = started(&case, &[]);
        let mut args = vec!["audit", "verify"];
        args.extend(checkpoint_args);
        let o = run(&serve.url, &admin, &args);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", out(&o));
        assert!(err(&o).contains(&expected) && err(&o).contains(code), "{name} online: {}", err(&o));
        let o = run(&serve.url, &admin, &["audit", "verify", "--json"]);
        if name == "truncate" {
            // Without the exported checkpoint a shorter chain is still a chain.
            assert!(o.status.success(), "{}", err(&o));
        } else {
            let report: Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!((report["ok"].as_bool(), report["problem"]["seq"].as_i64()), (Some(false), Some(seq)));
        }
    }
}

#[test]
fn the_demo_tells_its_story_through_audit_chain_and_blast_radius() {
    let dir = tempfile::tempdir().unwrap();
    let serve = started(dir.path(), &["--demo"]);
    let admin = serve.admin_token();
    let chain_line = serve.line("mandate chain mdt_");
    let chain = chain_line.split_whitespace().nth(2).unwrap().to_owned();

    let story = run(&serve.url, &admin, &["audit", "chain", &chain]);
    assert!(story.status.success(), "{}", err(&story));
    let text = out(&story);
    for expected in [
        &format!("Chain {chain}, started by user:alice@example.org"),
        "finance-close holds mandate",
        "granted by user:alice@example.org",
        "reconciler holds mandate",
        "delegated by finance-close",
        "ALLOW  erp/read_ledger",
        "DENY   erp/read_ledger",
        "scope.resource_not_in_mandate (hop 2)",
        "HELD   mail/send",
        "purpose: Prepare the October 2026 close report",
    ] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
    // The report to the controller went out; the payroll mailed outside waits, and the approver
    // sees why.
    assert!(text.contains("ALLOW  mail/send"), "{text}");
    let carol = serve.demo_key("carol@example.org");
    let queue = run(&serve.url, &carol, &["approvals", "list"]);
    let text = out(&queue);
    for expected in ["finance-close", "mail/send", "exfiltration", "`mailbox.example`", "read `financial` data"] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
    // The drift story: the category and what its chains were seen to do, for the approver.
    let categories = out(&run(&serve.url, &carol, &["drift", "categories"]));
    assert!(categories.contains("finance.close") && categories.contains("enforce"), "{categories}");
    let profile = run(&serve.url, &carol, &["drift", "profile", "finance.close"]);
    let text = out(&profile);
    assert!(profile.status.success(), "{}", err(&profile));
    for expected in
        ["Category finance.close (enforce", "erp/read_ledger", "^                erp/read_ledger  2", "mail/send"]
    {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
    let reset = run(&serve.url, &carol, &["drift", "reset", "finance.close"]);
    assert_eq!(reset.status.code(), Some(1), "an approver may not reset: {}", out(&reset));
    assert!(err(&reset).contains("403 auth.forbidden"), "{}", err(&reset));
    let reset = run(&serve.url, &admin, &["drift", "reset", "finance.close"]);
    assert!(out(&reset).starts_with("Category finance.close forgot what it learned (ledger #"), "{}", out(&reset));

    let radius = run(&serve.url, &admin, &["audit", "blast-radius", "--agent", "finance-close"]);
    assert!(radius.status.success(), "{}", err(&radius));
    let text = out(&radius);
    for expected in [
        "Blast radius of agent finance-close",
        "Agents reached (2)",
        "reconciler     2      finance-close",
        "Tools called (3)",
        "mail/send",
        "Data classes of the tools called (2)",
        "Approvals (1)",
        "Authority still live (2)",
    ] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
    let bad = run(&serve.url, &admin, &["audit", "blast-radius"]);
    assert_eq!(bad.status.code(), Some(1));
    let json =
        run(&serve.url, &admin, &["audit", "blast-radius", "--human", "alice@example.org", "--since", "1d", "--json"]);
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["scope"], json!({"kind": "human", "id": "user:alice@example.org"}));

    // Tail filters, and follow mode printing what comes next.
    let denied = out(&run(&serve.url, &admin, &["audit", "tail", "--kind", "decision", "--decision", "deny"]));
    assert!(denied.contains("scope.resource_not_in_mandate") && !denied.contains(" allow "), "{denied}");
    let mut follow = Command::new(BIN)
        .args(["audit", "tail", "--follow", "--interval-ms", "200", "--kind", "agent.suspended", "--limit", "1"])
        .env("MANDATE_URL", &serve.url)
        .env("MANDATE_TOKEN", &admin)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let suspend = run(&serve.url, &admin, &["agent", "suspend", "reconciler", "--reason", "incident 42"]);
    assert!(suspend.status.success(), "{}", err(&suspend));
    std::thread::sleep(Duration::from_millis(1200));
    follow.kill().unwrap();
    follow.wait().unwrap();
    let followed = std::io::read_to_string(follow.stdout.take().unwrap()).unwrap();
    assert!(followed.contains("incident 42"), "{followed}");

    // An export verifies offline, also against a checkpoint; an OCSF export is one event per line.
    let file = dir.path().join("ledger.jsonl");
    let o = run(&serve.url, &admin, &["audit", "export", "--output", file.to_str().unwrap()]);
    assert!(o.status.success() && err(&o).contains("events"), "{}", err(&o));
    let cp = dir.path().join("cp.json");
    assert!(run(&serve.url, &admin, &["audit", "checkpoint", "--new", "--output", cp.to_str().unwrap()])
        .status
        .success());
    let o = run(
        &serve.url,
        &admin,
        &["audit", "verify", "--file", file.to_str().unwrap(), "--checkpoint", cp.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", err(&o));
    let ocsf = out(&run(&serve.url, &admin, &["audit", "export", "--format", "ocsf", "--kind", "decision"]));
    assert!(ocsf.lines().all(|l| serde_json::from_str::<Value>(l).unwrap()["class_uid"] == 6003), "{ocsf}");
    let list = out(&run(&serve.url, &admin, &["audit", "checkpoints"]));
    assert!(list.starts_with("SEQ"), "{list}");
}

#[test]
fn an_agent_cannot_forge_or_hide_rows_in_a_responders_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let serve = started(dir.path(), &["--demo"]);
    let admin = serve.admin_token();
    let alice = serve.demo_key("alice@example.org");
    let granted = post(
        &format!("{}/v1/mandates", serve.url),
        Some(&alice),
        &json!({"agent": "finance-close", "purpose": "Forgery attempt", "category": "finance.close",
            "authorization_details": [{"type": "mcp_tool", "tools": ["erp/read_ledger"], "resources": ["erp://ledger/2026-10/*"],
                "data_classes": ["financial"], "actions": ["read"]}], "ttl_seconds": 900}),
    )
    .unwrap();
    let token = granted["token"].as_str().unwrap().to_owned();
    let chain = granted["chain_id"].as_str().unwrap().to_owned();
    let key = demo_key(&serve, "finance-close");
    let endpoint = format!("{}/v1/authorize", serve.url);
    let claims = mandate_core::jose::ProofClaims {
        jti: "forgery",
        htm: "POST",
        htu: &endpoint,
        iat: now(),
        access_token: Some(&token),
    };
    let proof = mandate_core::jose::sign_proof(&claims, &key).unwrap();
    // A tool name that clears the line, moves up and writes a row of its own; a resource that hides
    // the rest of its line behind an escape and a bidirectional override.
    let forged_tool =
        "erp/read_ledger\r\x1b[2K\x1b[1A4242  2026-11-01 09:00:00.000  decision  admin  -  allow  erp/approve_all\n";
    let forged_resource = "erp://ledger/2026-10/ap\x1b[8m hidden \u{202e}";
    let body =
        json!({"token": token, "proof": proof, "tool": forged_tool, "resource": forged_resource, "arguments": {}});
    let d = post(&endpoint, None, &body).unwrap();
    // Refused at the door as a decision: such a tool is never a valid name, and the attempt is
    // recorded exactly (JSON keeps the bytes).
    assert_eq!(
        (d["decision"].as_str(), d["reasons"][0]["code"].as_str()),
        (Some("deny"), Some("request.invalid_tool")),
        "{d}"
    );
    let json = run(&serve.url, &admin, &["audit", "tail", "--kind", "decision", "--json"]);
    let recorded = out(&json);
    assert!(
        serde_json::from_str::<Value>(&recorded).unwrap()["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["tool"] == forged_tool && e["resource"] == forged_resource),
        "{recorded}"
    );

    for args in [vec!["audit", "tail", "--kind", "decision"], vec!["audit", "chain", chain.as_str()]] {
        let shown = run(&serve.url, &admin, &args);
        assert!(shown.status.success(), "{}", err(&shown));
        let bytes = &shown.stdout;
        for hazard in [b'\r', 0x1b] {
            assert!(!bytes.contains(&hazard), "{args:?} printed byte {hazard:#x}:\n{}", out(&shown));
        }
        let text = out(&shown);
        assert!(!text.contains('\u{202e}'), "{args:?}");
        assert!(text.contains(r"erp/read_ledger\r\u{1b}[2K\u{1b}[1A4242"), "{args:?}:\n{text}");
        assert!(text.contains(r"ap\u{1b}[8m hidden \u{202e}"), "{args:?}:\n{text}");
        // The forged row is not a row of its own.
        assert!(!text.lines().any(|l| l.starts_with("4242")), "{args:?}:\n{text}");
    }
}
