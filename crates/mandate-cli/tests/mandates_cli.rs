//! Mandates from the command line against the demo, and verified offline by another language's JWT
//! library (PyJWT) from nothing but the published JWKS.
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

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn grant(demo: &Serve) -> Value {
    let out = ok(run(
        demo,
        &demo.demo_key("alice@example.org"),
        &[
            "grant",
            "--agent",
            "finance-close",
            "--category",
            "finance.close",
            "--purpose",
            "Prepare the October 2026 close report",
            "--tools",
            "erp/read_ledger,fx/convert",
            "--resources",
            "erp://ledger/2026-10/*",
            "--data-classes",
            "financial",
            "--max-depth",
            "1",
            "--json",
        ],
    ));
    serde_json::from_str(&out).unwrap()
}

fn pyjwt(demo: &Serve, token: &str) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/verify_mandate.py");
    Command::new("python3")
        .arg(script)
        .arg(format!("{}/.well-known/jwks.json", demo.url))
        .arg(token)
        .arg(&demo.url)
        .arg(&demo.url)
        .output()
        .expect("python3 runs (./scripts/test.sh installs PyJWT)")
}

#[test]
fn pyjwt_verifies_a_mandate_from_the_jwks_alone() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let granted = grant(&demo);
    let token = granted["token"].as_str().unwrap();
    let out = pyjwt(&demo, token);
    assert!(out.status.success(), "PyJWT refused our mandate: {}", String::from_utf8_lossy(&out.stderr));
    let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verified["header"]["alg"], "EdDSA");
    assert_eq!(verified["header"]["typ"], "mandate+jwt");
    assert_eq!(verified["claims"]["sub"], "spiffe://example.org/agent/finance-close");
    assert_eq!(verified["claims"]["jti"], granted["mandate_id"]);
    assert_eq!(verified["claims"]["mandate"]["root"], "user:alice@example.org");
    // And PyJWT refuses the same token with one claim changed.
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["mandate"]["max_depth"] = 8.into();
    let tampered = format!("{}.{}.{}", parts[0], engine.encode(claims.to_string()), parts[2]);
    let out = pyjwt(&demo, &tampered);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidSignatureError"));
}

#[test]
fn grant_delegate_chain_and_revoke_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let granted = grant(&demo);
    let chain_id = granted["chain_id"].as_str().unwrap().to_owned();
    let parent = dir.path().join("mandate.jwt");
    std::fs::write(&parent, granted["token"].as_str().unwrap()).unwrap();
    let key = format!("{}/finance-close.jwk", demo.demo_keys_dir());
    let to_key = format!("{}/reconciler.jwk", demo.demo_keys_dir());
    let token_arg = format!("@{}", parent.display());
    let out = ok(run(
        &demo,
        &demo.demo_key("alice@example.org"),
        &[
            "delegate",
            "--token",
            &token_arg,
            "--key",
            &key,
            "--to",
            "reconciler",
            "--to-key",
            &to_key,
            "--tools",
            "erp/read_ledger",
            "--resources",
            "erp://ledger/2026-10/ap",
            "--data-classes",
            "financial",
            "--json",
        ],
    ));
    let child: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(child["chain_id"], chain_id.as_str());
    // Widening is refused with the OAuth error and Mandate's code, on one line.
    let widen = run(
        &demo,
        &demo.demo_key("alice@example.org"),
        &[
            "delegate",
            "--token",
            &token_arg,
            "--key",
            &key,
            "--to",
            "reconciler",
            "--to-key",
            &to_key,
            "--tools",
            "erp/*",
            "--data-classes",
            "financial",
        ],
    );
    assert_eq!(widen.status.code(), Some(1));
    let err = String::from_utf8_lossy(&widen.stderr);
    assert!(err.contains("invalid_scope delegation.scope_widened"), "{err}");

    let tree = ok(run(&demo, &demo.demo_key("alice@example.org"), &["chain", &chain_id]));
    assert!(tree.contains("- finance-close [active]"), "{tree}");
    assert!(tree.contains("  - reconciler [active]"), "{tree}");
    let revoked = ok(run(
        &demo,
        &demo.demo_key("alice@example.org"),
        &["revoke", "--chain", &chain_id, "--reason", "report done"],
    ));
    assert!(revoked.starts_with("Revoked 2 mandate(s)"), "{revoked}");
    let tree = ok(run(&demo, &demo.admin_token(), &["chain", &chain_id]));
    assert!(tree.contains("[revoked]") && tree.contains("report done") && !tree.contains("[active]"), "{tree}");
    let keys = ok(run(&demo, &demo.admin_token(), &["keys", "rotate"]));
    assert!(keys.contains("signing") && keys.contains("verifying only"), "{keys}");
}
