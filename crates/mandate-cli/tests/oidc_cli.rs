//! `mandate serve` with an `[oidc]` issuer, as an operator runs it: the JWKS file read at start (a bad
//! one stops the start, naming the file) and read again on SIGHUP when the IdP rotates its keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mandate_test::oidc::{TestIssuer, IDP_AUDIENCE, IDP_ISSUER};
use mandate_test::process::Serve;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mandate");
const TOKEN: &str = "oidc-test-admin-token-0123456789";

fn write_config(dir: &Path) {
    let text =
        format!("[oidc]\nissuer = \"{IDP_ISSUER}\"\naudience = \"{IDP_AUDIENCE}\"\njwks_file = \"idp-jwks.json\"\n");
    std::fs::write(dir.join("mandate.toml"), text).unwrap();
}

/// The status and problem code of `GET /v1/approvals` with `idp`'s ID token for alice.
fn approvals_as_alice(server: &Serve, idp: &TestIssuer) -> (u16, String) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = idp.id_token(&idp.claims("alice@example.org", &["finance"], now));
    let result =
        ureq::get(&format!("{}/v1/approvals", server.url)).set("Authorization", &format!("Bearer {token}")).call();
    match result {
        Ok(r) => (r.status(), String::new()),
        Err(ureq::Error::Status(status, r)) => {
            let problem: Value = r.into_json().unwrap();
            (status, problem["code"].as_str().unwrap_or_default().to_owned())
        }
        Err(e) => panic!("{e}"),
    }
}

fn hang_up(server: &Serve) {
    let status = Command::new("kill").arg("-HUP").arg(server.child.id().to_string()).status().unwrap();
    assert!(status.success());
}

/// Waits until `check` holds, for at most ten seconds.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sighup_reloads_the_issuers_rotated_keys_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (TestIssuer::new(21), TestIssuer::new(22));
    old.config(dir.path(), &[]);
    write_config(dir.path());
    let server = Serve::start(BIN, dir.path(), &[], Some(TOKEN));
    assert_eq!(approvals_as_alice(&server, &old), (200, String::new()));
    assert_eq!(approvals_as_alice(&server, &new), (401, "oidc.unknown_kid".to_owned()));
    // The IdP rotated: the operator replaces the file and signals.
    new.config(dir.path(), &[]);
    hang_up(&server);
    assert!(eventually(|| approvals_as_alice(&server, &new).0 == 200), "the new key was never loaded");
    assert_eq!(approvals_as_alice(&server, &old), (401, "oidc.unknown_kid".to_owned()));
    // A broken file is refused and the keys in use stay.
    std::fs::write(dir.path().join("idp-jwks.json"), "{\"keys\": []}").unwrap();
    hang_up(&server);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(approvals_as_alice(&server, &new), (200, String::new()));
}

#[test]
fn a_bad_jwks_file_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let serve = || Command::new(BIN).args(["serve", "--data-dir", "data"]).current_dir(dir.path()).output().unwrap();
    let out = serve();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("error: oidc.jwks_file: cannot read `idp-jwks.json`: "), "{err}");
    std::fs::write(dir.path().join("idp-jwks.json"), "{\"keys\": []}").unwrap();
    let out = serve();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err,
        "error: oidc.jwks_file: `idp-jwks.json`: the issuer's JWKS has no usable `RS256` or `EdDSA` verification key (0 skipped)\n"
    );
}
