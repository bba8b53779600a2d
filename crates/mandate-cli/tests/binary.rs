//! The `mandate` binary as users run it: `serve` in a process of its own, the CLI against it,
//! signals, crashes and bad configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_test::agent_spec;
use mandate_test::process::Serve;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mandate");
const TOKEN: &str = "binary-test-admin-token-0123456789";

/// Starts `mandate serve` on an ephemeral port and waits for its banner.
fn serve(dir: &Path, extra: &[&str], admin_token: Option<&str>) -> Serve {
    Serve::start(BIN, dir, extra, admin_token)
}

fn cli(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("MANDATE_URL", url).env("MANDATE_TOKEN", token).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_demo_answers_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &["--demo"], None);
    let token_line =
        server.banner.iter().find(|l| l.contains("export MANDATE_TOKEN=")).expect("the admin token is printed");
    let token = token_line.rsplit('=').next().unwrap().to_owned();
    assert!(token.starts_with("mnd_"));
    assert!(server.banner.iter().any(|l| l.contains("alice@example.org")), "{:?}", server.banner);

    let list = cli(&server.url, &token, &["agent", "list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    let text = stdout(&list);
    for agent in ["finance-close", "reconciler", "hr-onboarding", "sandbox-experiment", "invoice-digest"] {
        assert!(text.contains(agent), "{text}");
    }
    let json_list: Value =
        serde_json::from_slice(&cli(&server.url, &token, &["agent", "list", "--json"]).stdout).unwrap();
    assert_eq!(json_list["agents"].as_array().unwrap().len(), 6);

    let review = stdout(&cli(&server.url, &token, &["review"]));
    for reason in ["owner_inactive", "certification_overdue", "stale", "boundary_changed", "sandbox_owner"] {
        assert!(review.contains(reason), "{review}");
    }
    let show = stdout(&cli(&server.url, &token, &["agent", "show", "hr-onboarding"]));
    assert!(show.contains("spiffe://example.org/agent/hr-onboarding") && show.contains("boundary"), "{show}");

    // The story's next steps work as printed.
    let certify = cli(&server.url, &token, &["agent", "certify", "hr-onboarding"]);
    assert!(certify.status.success(), "{}", stderr(&certify));
    let suspend = cli(&server.url, &token, &["agent", "suspend", "finance-close", "--reason", "incident 42"]);
    assert_eq!(stdout(&suspend).trim(), "finance-close is suspended (version 3).");
    let tail = stdout(&cli(&server.url, &token, &["audit", "tail", "--kind", "agent.suspended"]));
    assert!(tail.contains("incident 42"), "{tail}");

    // A second `--demo` start is fresh and prints new credentials.
    server.kill();
    let mut again = serve(dir.path(), &["--demo"], None);
    let token2 = again
        .banner
        .iter()
        .find(|l| l.contains("export MANDATE_TOKEN="))
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(token2, token);
    let agent: Value =
        serde_json::from_slice(&cli(&again.url, &token2, &["agent", "show", "finance-close", "--json"]).stdout)
            .unwrap();
    assert_eq!(agent["agent"]["state"], "active");
    again.kill();
}

#[test]
fn cli_errors_are_one_line_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], Some(TOKEN));
    let missing = cli(&server.url, TOKEN, &["agent", "show", "nobody"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing), "error: no agent `nobody` (404 agent.not_found)\n");
    let bad_token = cli(&server.url, "mnd_wrong", &["agent", "list"]);
    assert_eq!(bad_token.status.code(), Some(1));
    assert!(stderr(&bad_token).contains("auth.invalid_credentials"));
    let no_token = Command::new(BIN)
        .args(["agent", "list"])
        .env("MANDATE_URL", &server.url)
        .env_remove("MANDATE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(1));
    assert!(stderr(&no_token).starts_with("error: set MANDATE_TOKEN"), "{}", stderr(&no_token));
    server.kill();
    let down = cli(&server.url, TOKEN, &["agent", "list"]);
    assert_eq!(down.status.code(), Some(1));
    let message = stderr(&down);
    assert!(message.starts_with("error: cannot reach the Mandate server") && message.lines().count() == 1, "{message}");
}

#[test]
fn register_and_update_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], Some(TOKEN));
    assert!(cli(&server.url, TOKEN, &["human", "add", "alice@example.org", "--group", "finance"]).status.success());
    let spec_path = dir.path().join("agent.json");
    std::fs::write(&spec_path, agent_spec("finance-close", "user:alice@example.org", json!({})).to_string()).unwrap();
    let registered = cli(&server.url, TOKEN, &["agent", "register", "--file", spec_path.to_str().unwrap()]);
    assert!(registered.status.success(), "{}", stderr(&registered));
    assert!(stdout(&registered).contains("spiffe://example.org/agent/finance-close"));
    let updated = cli(&server.url, TOKEN, &["agent", "update", "finance-close", "--tools", "erp/*,fx/*"]);
    assert!(updated.status.success(), "{}", stderr(&updated));
    assert!(stdout(&updated).contains("Up for review: boundary_changed"), "{}", stdout(&updated));
    let shown: Value =
        serde_json::from_slice(&cli(&server.url, TOKEN, &["agent", "show", "finance-close", "--json"]).stdout).unwrap();
    assert_eq!(shown["agent"]["boundary"]["tools"], json!(["erp/*", "fx/*"]));
    assert_eq!(
        shown["agent"]["boundary"]["may_delegate_to"],
        json!(["reconciler"]),
        "flags change only what they name"
    );
    let listed =
        stdout(&cli(&server.url, TOKEN, &["agent", "list", "--environment", "production", "--state", "active"]));
    assert!(listed.contains("finance-close"), "{listed}");
    let bad = cli(&server.url, TOKEN, &["agent", "list", "--state", "sleeping"]);
    assert!(stderr(&bad).contains("request.invalid_query"), "{}", stderr(&bad));
    server.kill();
}

#[test]
fn sigterm_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], Some(TOKEN));
    let status = Command::new("kill").arg("-TERM").arg(server.child.id().to_string()).status().unwrap();
    assert!(status.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "the server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let err = server.log();
    assert!(err.contains("stopped"), "{err}");
    // Closing checkpointed the write-ahead log into the database file.
    let wal = dir.path().join("data/mandate.db-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

#[test]
fn sigkill_during_registrations_loses_no_acknowledged_registration() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], Some(TOKEN));
    let admin = |method: &str, path: &str, body: &Value| -> Result<u16, String> {
        ureq::request(method, &format!("{}{path}", server.url))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .send_json(body.clone())
            .map(|r| r.status())
            .map_err(|e| e.to_string())
    };
    assert_eq!(admin("POST", "/v1/humans", &json!({"id": "alice@example.org"})), Ok(201));

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, acknowledged, stop) = (server.url.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 10_000 {
                    let id = format!("agent-{w}-{n}");
                    let result = ureq::post(&format!("{url}/v1/agents"))
                        .set("Authorization", &format!("Bearer {TOKEN}"))
                        .timeout(Duration::from_secs(5))
                        .send_json(agent_spec(&id, "user:alice@example.org", json!({})));
                    match result {
                        Ok(r) if r.status() == 201 => acknowledged.lock().unwrap().push(id),
                        // Refused or cut off by the kill: not acknowledged, so not owed.
                        _ => {}
                    }
                    n += 1;
                }
            })
        })
        .collect();
    // Kill in the middle of the stream, once a good number are through.
    let start = Instant::now();
    while acknowledged.lock().unwrap().len() < 40 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 40, "only {} registrations went through before the kill", acknowledged.len());

    let mut restarted = serve(dir.path(), &[], Some(TOKEN));
    let list: Value = ureq::get(&format!("{}/v1/agents", restarted.url))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let stored: std::collections::HashSet<String> =
        list["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but lost after SIGKILL: {lost:?}");
    // Every stored agent has its event, and the events still chain.
    let events: Value = ureq::get(&format!("{}/v1/audit?kind=agent.registered&limit=10000", restarted.url))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), stored.len());
    let all: Value = ureq::get(&format!("{}/v1/audit?limit=10000", restarted.url))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let all = all["events"].as_array().unwrap();
    for pair in all.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
        assert_eq!(pair[1]["seq"].as_i64().unwrap(), pair[0]["seq"].as_i64().unwrap() + 1);
    }
    restarted.kill();
}

#[test]
fn bad_configuration_fails_fast_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mandate.toml");
    std::fs::write(&config, "trust_domain = \"example.org\"\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&config).current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("error: {}:2:1: unknown field `lisen`", config.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // The environment is read too, and named when wrong.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let out =
        Command::new(BIN).args(["serve"]).env("MANDATE_LISTEN", "nowhere").current_dir(&elsewhere).output().unwrap();
    assert_eq!(
        stderr(&out),
        "error: listen: `nowhere` is not an address such as `127.0.0.1:8080`: invalid socket address syntax\n"
    );
}

#[test]
fn demo_never_replaces_real_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], Some(TOKEN));
    server.kill();
    let out = Command::new(BIN)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("holds data that is not a demo's"), "{}", stderr(&out));
}

#[test]
fn settings_of_every_section_read_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let s = Serve::start_env(
        BIN,
        dir.path(),
        &[],
        Some("env-settings-admin-token-0123456789"),
        &[
            ("MANDATE_MANDATES_ISSUER", "https://mandate.fleet.example"),
            ("MANDATE_MANDATES_DEFAULT_TTL_SECONDS", "120"),
        ],
    );
    let meta: serde_json::Value =
        ureq::get(&format!("{}/.well-known/oauth-authorization-server", s.url)).call().unwrap().into_json().unwrap();
    assert_eq!(meta["issuer"], "https://mandate.fleet.example", "{meta}");
    // A misspelt setting stops the server with the variable's name.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("other"))
        .env("MANDATE_MANDATES_ISUER", "https://x.example")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MANDATE_MANDATES_ISUER"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nodes_sharing_a_key_directory_publish_the_same_keys_and_see_a_rotation_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("shared-keys");
    let keys_env = keys.display().to_string();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let a = Serve::start_env(BIN, &a_dir, &[], Some(TOKEN), &[("MANDATE_KEYS_DIR", &keys_env)]);
    let b = Serve::start_env(BIN, &b_dir, &[], Some(TOKEN), &[("MANDATE_KEYS_DIR", &keys_env)]);
    let kids = |url: &str| -> Vec<String> {
        let jwks: Value = ureq::get(&format!("{url}/.well-known/jwks.json")).call().unwrap().into_json().unwrap();
        let mut k: Vec<String> =
            jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
        k.sort();
        k
    };
    assert_eq!(kids(&a.url), kids(&b.url), "one key directory, one JWKS");
    assert!(!a_dir.join("data/signing-keys").exists(), "no key of its own in the data directory");
    let rotated = cli(&a.url, TOKEN, &["keys", "rotate"]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let after = kids(&a.url);
    assert_eq!(after.len(), 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while kids(&b.url) != after {
        assert!(Instant::now() < deadline, "node B did not see node A's rotation");
        std::thread::sleep(Duration::from_millis(100));
    }
}
