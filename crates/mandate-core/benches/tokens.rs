//! Benchmarks of the hot paths of a mandate, each beside raw Ed25519 measured in the same run.
//!
//! What is measured, in one process so that ratios hold on a noisy machine:
//!
//! - `tokens/ed25519_sign` and `tokens/ed25519_verify_strict`: `ed25519_dalek` alone over the signing
//!   input of the benchmark mandate (`base64url(header).base64url(claims)`), the floor any JWS pays;
//! - `tokens/mandate_issue`: [`sign`] of a realistic mandate claim set (the token format (docs/contract.md), one
//!   delegation hop);
//! - `tokens/mandate_verify`: what a server does with a presented mandate and a cached key: decode
//!   (size, base64url, strict JSON, header rules), `typ`, key lookup by `kid`, `verify_strict`, then
//!   the time, issuer and audience checks;
//! - `tokens/mandate_decode`: the decode step alone, to show where verification time goes;
//! - `tokens/proof_sign` and `tokens/proof_verify`: a DPoP-style proof with `ath` over the mandate;
//! - `patterns/*`: the subset test and matching over tool and resource pattern sets.
//!
//! The signing rows are measured round-robin with each other, call by call, and so are the
//! verifying rows, and each prints its ratio to its baseline over the same iterations (see
//! [`interleaved`]), so the ratio holds even when other jobs come and go on the machine.
//! `scripts/bench.sh` runs this and writes the table in BENCHMARKS.md. Compare ratios, not times.

// Benchmark setup with fixed, valid inputs: a failure is a bug in the benchmark itself, and
// panicking is the right way for a bench binary to report it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use mandate_core::jose::{
    check_audience, check_issuer, check_time, sign, sign_proof, verify_proof, Htu, Limits, ProofClaims,
    ProofExpectations, RawToken, SignHeader, TimeRules,
};
use mandate_core::jwk::Ed25519PublicJwk;
use mandate_core::pattern::{PatternSet, ResourcePattern, ResourceUri, ToolName, ToolPattern};
use serde_json::{json, Value};

const ISSUER: &str = "https://mandate.example.org";
const AUDIENCE: &str = "https://mandate.example.org";
const KID: &str = "2026-10-k1";
const TYP: &str = "mandate+jwt";
const NOW: i64 = 1_790_000_000;
/// Criterion's samples per benchmark.
const SAMPLES: usize = 40;
const AUTHORIZE_URL: &str = "https://mandate.example.org/v1/authorize";

/// The mandate of the benchmark: a child mandate one delegation hop below a human's grant, with
/// every claim docs/contract.md lists.
fn mandate_claims(agent_jkt: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "spiffe://example.org/agent/reconciler",
        "aud": AUDIENCE,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW + 840,
        "jti": "01JBQ4Z8M6X3K9T2V5R7N1P0HD",
        "cnf": {"jkt": agent_jkt},
        "act": {
            "sub": "spiffe://example.org/agent/reconciler",
            "act": {"sub": "spiffe://example.org/agent/finance-close"}
        },
        "authorization_details": [{
            "type": "mcp_tool",
            "tools": ["erp/read_ledger", "erp/list_accounts", "fx/convert"],
            "resources": ["erp://ledger/2026-10/*", "erp://accounts/eu-west/*"],
            "data_classes": ["financial", "internal"],
            "actions": ["read"]
        }],
        "mandate": {
            "id": "01JBQ4Z8M6X3K9T2V5R7N1P0HD",
            "chain_id": "01JBQ4Y2C8W1F6D3H9S5A7E0QK",
            "parent_id": "01JBQ4Y2C8W1F6D3H9S5A7E0QK",
            "depth": 1,
            "root": {"type": "human", "id": "alice@example.org"},
            "intent": {"purpose": "Prepare the October 2026 close report", "category": "finance.close"},
            "budget": {"max_calls": 150},
            "max_depth": 2
        }
    })
}

/// The keys, the claims and the signed mandate and proof of the benchmark.
struct Fixture {
    issuer: SigningKey,
    agent: SigningKey,
    claims: Value,
    token: String,
    proof: String,
    agent_jkt: String,
    htu: Htu,
}

fn fixture() -> Fixture {
    let issuer = SigningKey::from_bytes(&[7; 32]);
    let agent = SigningKey::from_bytes(&[9; 32]);
    let agent_jkt = Ed25519PublicJwk::from_verifying_key(agent.verifying_key()).thumbprint();
    let claims = mandate_claims(&agent_jkt);
    let token = sign(&claims, &issuer, &SignHeader { typ: TYP, kid: KID }).unwrap();
    let proof_claims = ProofClaims {
        jti: "c2a1f0e4-9b7d-4e8a-a5c3-1f2e3d4c5b6a",
        htm: "POST",
        htu: AUTHORIZE_URL,
        iat: NOW - 1,
        access_token: Some(&token),
    };
    let proof = sign_proof(&proof_claims, &agent).unwrap();
    let htu = Htu::parse(AUTHORIZE_URL).unwrap();
    Fixture { issuer, agent, claims, token, proof, agent_jkt, htu }
}

fn time_rules() -> TimeRules {
    TimeRules { now: NOW, skew_secs: 30, require_nbf: true, require_iat: true, max_lifetime_secs: Some(900) }
}

/// The full check a server makes of a presented mandate before looking at its scope.
fn verify_mandate<K: Fn(&str) -> Option<VerifyingKey>>(token: &str, keys: &K) -> i64 {
    let verified = RawToken::decode(token, &Limits::TOKEN).unwrap().verify(keys, Some(TYP)).unwrap();
    let times = check_time(verified.claims(), &time_rules()).unwrap();
    check_issuer(verified.claims(), ISSUER).unwrap();
    check_audience(verified.claims(), AUDIENCE).unwrap();
    times.exp
}

fn tokens(c: &mut Criterion) {
    let f = fixture();
    let signing_input = f.token.rsplit_once('.').unwrap().0.as_bytes().to_vec();
    let issuer_public = f.issuer.verifying_key();
    let raw_signature = f.issuer.sign(&signing_input);
    // The key cache: the verifying key was parsed (point decompressed) once, ahead of time.
    let keys = move |kid: &str| (kid == KID).then_some(issuer_public);

    // Sanity: everything verifies before it is timed.
    issuer_public.verify_strict(&signing_input, &raw_signature).unwrap();
    verify_mandate(&f.token, &keys);
    let expectations = ProofExpectations {
        htm: "POST",
        htu: &f.htu,
        access_token: Some(&f.token),
        expected_jkt: &f.agent_jkt,
        now: NOW,
        max_age_secs: 60,
        skew_secs: 5,
        known_key: None,
    };
    verify_proof(&f.proof, &expectations).unwrap();
    eprintln!(
        "mandate token: {} bytes, signing input {} bytes; proof: {} bytes",
        f.token.len(),
        signing_input.len(),
        f.proof.len()
    );

    let header = SignHeader { typ: TYP, kid: KID };
    let proof_claims = ProofClaims {
        jti: "c2a1f0e4-9b7d-4e8a-a5c3-1f2e3d4c5b6a",
        htm: "POST",
        htu: AUTHORIZE_URL,
        iat: NOW - 1,
        access_token: Some(&f.token),
    };
    let signing: [(&str, &dyn Fn()); 3] = [
        ("ed25519_sign", &|| {
            black_box(f.issuer.sign(black_box(&signing_input)));
        }),
        ("mandate_issue", &|| {
            black_box(sign(black_box(&f.claims), &f.issuer, &header).unwrap());
        }),
        ("proof_sign", &|| {
            black_box(sign_proof(black_box(&proof_claims), &f.agent).unwrap());
        }),
    ];
    let verifying: [(&str, &dyn Fn()); 3] = [
        ("ed25519_verify_strict", &|| {
            black_box(issuer_public.verify_strict(black_box(&signing_input), black_box(&raw_signature))).unwrap()
        }),
        ("mandate_verify", &|| {
            black_box(verify_mandate(black_box(&f.token), &keys));
        }),
        ("proof_verify", &|| {
            black_box(verify_proof(black_box(&f.proof), &expectations).unwrap());
        }),
    ];

    let mut group = c.benchmark_group("tokens");
    interleaved(&mut group, &signing);
    interleaved(&mut group, &verifying);
    group.bench_function("mandate_decode", |b| {
        b.iter(|| RawToken::decode(black_box(&f.token), &Limits::TOKEN).unwrap())
    });
    group.finish();
}

/// Benchmarks each of `ops` (the first is the baseline) interleaved with all the others, and prints
/// each one's ratio to the baseline measured in the very same iterations.
///
/// Each operation is timed with its baseline interleaved, call by call, rather than in a window of
/// its own a few seconds apart: on a shared machine, load that comes and goes then weighs on both
/// alike. Criterion records only the operation's own time, so its ratio to the baseline's separate
/// bench would still mix two windows; the paired ratio printed here does not. For each of the last
/// [`SAMPLES`] calls (criterion's measured samples, after its warm-up) it divides the operation's
/// total by the baseline's total over the same iterations, and prints the median, a line that
/// `scripts/bench.sh` reads.
fn interleaved<const N: usize>(group: &mut BenchmarkGroup<'_, WallTime>, ops: &[(&str, &dyn Fn()); N]) {
    let baseline = ops[0].0;
    for (index, (name, _)) in ops.iter().enumerate() {
        let mut ratios = Vec::new();
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let totals = round_robin(ops, iters);
                ratios.push(totals[index].as_secs_f64() / totals[0].as_secs_f64());
                totals[index]
            })
        });
        if index == 0 || ratios.is_empty() {
            continue;
        }
        let mut samples = ratios.split_off(ratios.len().saturating_sub(SAMPLES));
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        println!(
            "paired ratio tokens/{name} / tokens/{baseline}: {median:.4} (median of {} interleaved samples)",
            samples.len()
        );
    }
}

/// Runs the operations in turn, `iters` rounds, and returns the time each took in total. Two clock
/// reads per call cost tens of nanoseconds against tens of microseconds.
fn round_robin<const N: usize>(ops: &[(&str, &dyn Fn()); N], iters: u64) -> [Duration; N] {
    let mut totals = [Duration::ZERO; N];
    for _ in 0..iters {
        for ((_, op), total) in ops.iter().zip(totals.iter_mut()) {
            let start = Instant::now();
            op();
            *total += start.elapsed();
        }
    }
    totals
}

fn tool_set(items: &[&str]) -> PatternSet<ToolPattern> {
    PatternSet::parse(items).unwrap()
}

fn resource_set(items: &[&str]) -> PatternSet<ResourcePattern> {
    PatternSet::parse(items).unwrap()
}

fn patterns(c: &mut Criterion) {
    // A child's request (5 patterns) against its parent's scope (10), the worst case for the
    // "each element within some element" rule: the covering element is late in the list.
    let child_tools = tool_set(&["erp/read_ledger", "erp/list_*", "fx/convert", "crm/get_account", "docs/search_*"]);
    let parent_tools = tool_set(&[
        "mail/send",
        "calendar/*",
        "hr/read_*",
        "erp/post_journal",
        "erp/read_*",
        "erp/list_*",
        "fx/*",
        "crm/get_*",
        "docs/*",
        "wiki/read_page",
    ]);
    let child_resources = resource_set(&[
        "erp://ledger/2026-10/*",
        "erp://ledger/2026-09/ap",
        "erp://accounts/eu-west/*",
        "crm://accounts/acme/contacts/*",
        "docs://finance/close/2026-10.md",
    ]);
    let parent_resources = resource_set(&[
        "mail://outbox/*",
        "calendar://team/*",
        "hr://people/*",
        "erp://journal/*",
        "erp://ledger/2026-*",
        "erp://accounts/*",
        "fx://rates/*",
        "crm://accounts/*",
        "docs://finance/*",
        "wiki://finance/*",
    ]);
    assert!(child_tools.is_subset_of(&parent_tools));
    assert!(child_resources.is_subset_of(&parent_resources));
    let tool = ToolName::parse("docs/search_policies").unwrap();
    let resource = ResourceUri::parse("docs://finance/close/2026-10.md").unwrap();
    assert!(child_tools.matches(&tool));
    assert!(child_resources.matches(&resource));

    let mut group = c.benchmark_group("patterns");
    group.bench_function("tool_subset_5_of_10", |b| {
        b.iter(|| black_box(&child_tools).is_subset_of(black_box(&parent_tools)))
    });
    group.bench_function("resource_subset_5_of_10", |b| {
        b.iter(|| black_box(&child_resources).is_subset_of(black_box(&parent_resources)))
    });
    group.bench_function("tool_matches_5", |b| b.iter(|| black_box(&child_tools).matches(black_box(&tool))));
    group
        .bench_function("resource_matches_5", |b| b.iter(|| black_box(&child_resources).matches(black_box(&resource))));
    group.finish();
}

fn config() -> Criterion {
    // Two shared cores: short runs, enough samples for a stable median.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(SAMPLES)
}

criterion_group! {
    name = benches;
    config = config();
    targets = tokens, patterns
}
criterion_main!(benches);
