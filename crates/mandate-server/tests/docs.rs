//! House rules as tests: every stable code the server can answer, and every event kind it records,
//! is documented in the README.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

const PREFIXES: &[&str] = &[
    "token",
    "proof",
    "mandate",
    "chain",
    "scope",
    "request",
    "budget",
    "policy",
    "approval",
    "decision",
    "internal",
    "grant",
    "delegation",
    "actor",
    "auth",
    "agent",
    "human",
    "tool",
    "oidc",
    "key",
    "admin",
    "gateway",
];

fn sources(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Tests may use codes that are only examples of what not to accept.
            if path.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
            out.push(std::fs::read_to_string(&path).unwrap());
        }
    }
}

/// Every `"prefix.word"` string literal in the sources.
fn codes() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut texts = Vec::new();
    for krate in
        ["mandate-core", "mandate-engine", "mandate-server", "mandate-policy", "mandate-store", "mandate-gateway"]
    {
        sources(&root.join(krate).join("src"), &mut texts);
    }
    let mut found = Vec::new();
    for text in texts {
        for literal in text.split('"').skip(1).step_by(2) {
            let Some((prefix, rest)) = literal.split_once('.') else { continue };
            let is_code = PREFIXES.contains(&prefix)
                && !rest.is_empty()
                && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && !matches!(literal, "mandate.db" | "mandate.toml");
            if is_code && !found.contains(&literal.to_owned()) {
                found.push(literal.to_owned());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_code_and_event_kind_is_in_the_readme() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let codes = codes();
    assert!(codes.len() > 100, "the scan found only {} codes: {codes:?}", codes.len());
    let missing: Vec<&String> = codes.iter().filter(|c| !readme.contains(&format!("`{c}`"))).collect();
    assert!(missing.is_empty(), "codes missing from README.md (add each in backticks with what it means): {missing:?}");
}

#[test]
fn the_engine_depends_on_no_http_crate() {
    // The engine is the one place that decides; the HTTP API, the gateway and the console are front
    // doors onto it, so none of their transport crates may be among its dependencies.
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../mandate-engine/Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest
        .lines()
        .skip_while(|l| !l.starts_with("[dependencies]"))
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .filter(|name| !name.is_empty())
        .collect();
    assert!(deps.contains(&"mandate-store"), "the manifest was read: {deps:?}");
    for http in ["axum", "hyper", "http", "tower", "tower-http", "ureq", "reqwest", "utoipa-axum", "mandate-server"] {
        assert!(!deps.contains(&http), "mandate-engine depends on `{http}`");
    }
}
