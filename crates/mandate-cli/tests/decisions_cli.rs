//! Decisions from the command line against the demo: `check` (exit codes), approvals, and policy
//! as code validated and tested offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_test::process::Serve;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_mandate");

fn demo(dir: &Path) -> Serve {
    Serve::start(BIN, dir, &["--demo"], None)
}

fn run(demo: &Serve, token: &str, args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("MANDATE_URL", &demo.url).env("MANDATE_TOKEN", token).output().unwrap()
}

#[test]
fn check_answers_with_exit_codes_and_a_held_call_goes_through_once_approved() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let alice = demo.demo_key("alice@example.org");
    let carol = demo.demo_key("carol@example.org");
    let out = run(
        &demo,
        &alice,
        &[
            "grant",
            "--agent",
            "finance-close",
            "--category",
            "finance.close",
            "--purpose",
            "October close",
            "--tools",
            "erp/read_ledger,mail/send",
            "--data-classes",
            "financial,internal",
            "--actions",
            "read,egress",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let granted: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token_file = dir.path().join("m.jwt");
    std::fs::write(&token_file, granted["token"].as_str().unwrap()).unwrap();
    let token = format!("@{}", token_file.display());
    let key = format!("{}/finance-close.jwk", demo.demo_keys_dir());

    let allowed =
        run(&demo, &alice, &["check", "--token", &token, "--key", &key, "--tool", "erp/read_ledger", "--explain"]);
    let text = String::from_utf8_lossy(&allowed.stdout);
    assert_eq!(allowed.status.code(), Some(0), "{text}");
    assert!(text.starts_with("ALLOW (ledger #") && text.contains("policy     pass"), "{text}");

    let denied = run(&demo, &alice, &["check", "--token", &token, "--key", &key, "--tool", "erp/post_journal"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stdout).contains("scope.tool_not_in_mandate [hop 1]"));

    // After the ledger read, mail to an address outside: the exfiltration shape waits for a human.
    let args = r#"{"to": "controller@outside.example"}"#;
    let held = run(
        &demo,
        &alice,
        &["check", "--token", &token, "--key", &key, "--tool", "mail/send", "--arguments", args, "--json"],
    );
    assert_eq!(held.status.code(), Some(2));
    let held: Value = serde_json::from_slice(&held.stdout).unwrap();
    let approval = held["approval_id"].as_str().unwrap();
    let queue = String::from_utf8_lossy(&run(&demo, &carol, &["approvals", "list"]).stdout).into_owned();
    assert!(queue.contains(approval), "{queue}");
    assert!(queue.contains("exfiltration: egress to `outside.example`"), "the approver sees why: {queue}");
    let approved = run(&demo, &carol, &["approvals", "approve", approval]);
    assert!(approved.status.success(), "{}", String::from_utf8_lossy(&approved.stderr));
    let retry = run(
        &demo,
        &alice,
        &[
            "check",
            "--token",
            &token,
            "--key",
            &key,
            "--tool",
            "mail/send",
            "--arguments",
            args,
            "--approval-id",
            approval,
        ],
    );
    assert_eq!(retry.status.code(), Some(0), "{}", String::from_utf8_lossy(&retry.stdout));
    let again = run(
        &demo,
        &alice,
        &[
            "check",
            "--token",
            &token,
            "--key",
            &key,
            "--tool",
            "mail/send",
            "--arguments",
            args,
            "--approval-id",
            approval,
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stdout).contains("approval.used"));
}

#[test]
fn policies_are_validated_and_tested_offline() {
    let dir = tempfile::tempdir().unwrap();
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../mandate-policy/policies/default.cedar");
    let cases = concat!(env!("CARGO_MANIFEST_DIR"), "/../mandate-policy/policies/default.cases.json");
    let ok = Command::new(BIN).args(["policy", "validate", policies]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid"), "{}", String::from_utf8_lossy(&ok.stdout));
    let broken = dir.path().join("broken.cedar");
    std::fs::write(
        &broken,
        "@id(\"x\")\npermit (principal, action == Mandate::Action::\"call\", resource) when { context.nope };\n",
    )
    .unwrap();
    let bad = Command::new(BIN).args(["policy", "validate"]).arg(&broken).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("nope") && err.contains("is not a valid policy set"), "{err}");
    let tested = Command::new(BIN).args(["policy", "test", cases]).output().unwrap();
    assert!(
        tested.status.success(),
        "{}{}",
        String::from_utf8_lossy(&tested.stdout),
        String::from_utf8_lossy(&tested.stderr)
    );
    // A case that expects the opposite fails the run.
    let text = std::fs::read_to_string(cases).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    let first = &mut doc["cases"][0]["expect"];
    *first = Value::from(if first == "allow" { "deny" } else { "allow" });
    let flipped = dir.path().join("flipped.json");
    std::fs::write(&flipped, doc.to_string()).unwrap();
    let failed = Command::new(BIN).args(["policy", "test"]).arg(&flipped).output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("FAIL"));
}
