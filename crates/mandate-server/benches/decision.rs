//! The whole tool-call decision, in process, beside its own unavoidable parts measured in the same run.
//!
//! What is measured (issue 5: "the whole decision costs at most 1.5x the sum of those parts"):
//!
//! - `decision/authorize`: [`AppState::authorize`] for an allowed call with a warm token cache: token
//!   (cache hit), proof, revocation, chain (registry reads), scope (stored ancestors), budget,
//!   behaviour, one Cedar evaluation (the policy set's memo of decisions turned off, so that Cedar
//!   runs in every decision as it does for a call not seen before), and the decision event appended
//!   to the ledger, durable (SQLite, WAL,
//!   `synchronous = FULL`, on the directory in `MANDATE_BENCH_DIR` or the system's temporary one).
//!   Every call carries its own proof, signed before the clock starts, with a fresh `iat` and a unique
//!   `jti`, exactly as an agent would send it;
//! - `decision/ed25519_verify_proof`: one raw `verify_strict` of such a proof's signature, the
//!   signature check no decision can skip;
//! - `decision/cedar_call`: one Cedar evaluation (`evaluate_call`) of the same request against the
//!   same active policy set;
//! - `decision/ledger_append`: one durable append of an event of the decision's size, alone: the
//!   fsync the contract ("an allow is durable before it is returned") puts on every decision;
//! - `decision/authorize_remembered`: the same decision with the policy set's memo on, as the server
//!   runs it: a call repeated with the same facts gets Cedar's earlier answer without evaluating.
//!
//! The five run round-robin, call by call (as `mandate-core`'s token benchmarks do), so that load
//! that comes and goes on a shared two-core machine weighs on all of them alike; each prints its time
//! relative to the parts over the very same iterations. `scripts/bench.sh` reads those lines and
//! writes the table in BENCHMARKS.md.
//!
//! Besides, `behaviour/assess_*` measures the drift check alone with as many recent calls in its
//! one-minute window as a chain making calls at that rate has, because it grows with the call rate.

// Benchmark setup with fixed, valid inputs: a failure is a bug in the benchmark itself, and
// panicking is the right way for a bench binary to report it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signature, SigningKey};
use mandate_core::arguments::CanonicalArguments;
use mandate_core::event::NewEvent;
use mandate_core::id::{AgentId, HumanId};
use mandate_core::jose::{sign_proof, verify_proof, Htu, ProofClaims, ProofExpectations};
use mandate_core::jwk::Ed25519PublicJwk;
use mandate_engine::behaviour::{Behaviour, CallShape};
use mandate_engine::clock::SystemClock;
use mandate_engine::decision::{Call, Decision, Presented, ProofBinding, Verdict};
use mandate_policy::{AgentFacts, CallRequest, HumanFacts, Outcome, ToolFacts};
use mandate_server::state::AppState;
use mandate_server::{Server, ServerConfig};
use mandate_test::{agent_jwk, agent_key, agent_spec, ADMIN_TOKEN, ISSUER};
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// The allocator `mandate serve` runs with (crates/mandate-cli/src/main.rs), so that the decision is
/// measured as the server makes it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Criterion's samples per benchmark.
const SAMPLES: usize = 40;
const TOOL: &str = "erp/read_ledger";
const RESOURCE: &str = "erp://ledger/2026-10/ap";
const PURPOSE: &str = "Prepare the October 2026 close report";
const CATEGORY: &str = "finance.close";

/// A server's state over a fresh database, an organisation set up through the API, and a mandate.
struct Fixture {
    state: AppState,
    token: String,
    agent: SigningKey,
    authorize_url: String,
    /// Kept so that its store stays open; its listener is never served (requests go to the router
    /// and to `authorize` directly).
    _server: Server,
    /// Dropped after the server and before the directory (fields drop in order).
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn bench_dir() -> PathBuf {
    std::env::var_os("MANDATE_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)
}

async fn call(state: &AppState, method: &str, path: &str, bearer: &str, body: &Value) -> Value {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = mandate_server::app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {value}");
    value
}

fn fixture() -> Fixture {
    fixture_in(&bench_dir())
}

fn fixture_in(base: &std::path::Path) -> Fixture {
    // Two workers, as `mandate serve` has on this machine; the bench thread drives the decisions.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    std::fs::create_dir_all(bench_dir()).unwrap();
    let dir = tempfile::tempdir_in(base).unwrap();
    eprintln!("database in {}", dir.path().display());
    let mut settings = mandate_test::settings();
    // Neither the budget nor the replay cache is what is measured here.
    settings.mandates.limits.max_calls_ceiling = 100_000_000;
    settings.mandates.replay_cache_capacity = 2_000_000;
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        settings,
        admin_token: Some(ADMIN_TOKEN.to_owned()),
        demo: false,
        issuer_from_listener: false,
        catalogue: Vec::new(),
        intents: Vec::new(),
        gateway: Default::default(),
        keys_dir: None,
        database_url: None,
        database_max_connections: 16,
        database_max_lag: std::time::Duration::from_secs(1),
        web: Default::default(),
        ledger: mandate_engine::ledger::LedgerSettings::DEFAULT,
    };
    let (server, state, token) = runtime.block_on(async {
        let server = Server::start(config, Arc::new(SystemClock)).await.unwrap();
        let state = server.state().clone();
        let alice =
            call(&state, "POST", "/v1/humans", ADMIN_TOKEN, &json!({"id": "alice@example.org", "groups": ["finance"]}))
                .await;
        let alice_key = alice["api_key"].as_str().unwrap().to_owned();
        let spec = agent_spec("finance-close", "user:alice@example.org", json!({"public_key_jwk": agent_jwk(1)}));
        call(&state, "POST", "/v1/agents", ADMIN_TOKEN, &spec).await;
        call(
            &state,
            "PUT",
            &format!("/v1/tools/{TOOL}"),
            ADMIN_TOKEN,
            &json!({"data_class": "financial", "risk": "read", "server_environment": "production"}),
        )
        .await;
        let granted = call(
            &state,
            "POST",
            "/v1/mandates",
            &alice_key,
            &json!({"agent": "finance-close", "purpose": PURPOSE, "category": CATEGORY,
                    "authorization_details": [{"type": "mcp_tool", "tools": [TOOL, "fx/convert"],
                        "resources": ["erp://ledger/2026-10/*"], "data_classes": ["financial", "internal"],
                        "actions": ["read"]}],
                    "max_calls": 100_000_000u64, "ttl_seconds": 3600}),
        )
        .await;
        (server, state, granted["token"].as_str().unwrap().to_owned())
    });
    let authorize_url = format!("{ISSUER}/v1/authorize");
    Fixture { runtime, state, token, agent: agent_key(1), authorize_url, _server: server, _dir: dir }
}

impl Fixture {
    /// Grants `n` more mandates like the fixture's, each a chain of its own.
    fn more_mandates(&self, n: usize) -> Vec<String> {
        self.runtime.block_on(async {
            let alice = call(&self.state, "POST", "/v1/humans", ADMIN_TOKEN, &json!({"id": "bea@example.org", "groups": ["finance"]})).await;
            let key = alice["api_key"].as_str().unwrap().to_owned();
            let mut tokens = Vec::new();
            for _ in 0..n {
                let granted = call(
                    &self.state,
                    "POST",
                    "/v1/mandates",
                    &key,
                    &json!({"agent": "finance-close", "purpose": PURPOSE, "category": CATEGORY,
                            "authorization_details": [{"type": "mcp_tool", "tools": [TOOL], "resources": ["erp://ledger/2026-10/*"],
                                "data_classes": ["financial"], "actions": ["read"]}],
                            "max_calls": 100_000_000u64, "ttl_seconds": 3600}),
                )
                .await;
                tokens.push(granted["token"].as_str().unwrap().to_owned());
            }
            tokens
        })
    }

    /// A call under `token` with a fresh proof of its own.
    fn request_with(&self, token: &str, n: u64) -> CallInputs {
        let iat = time::OffsetDateTime::now_utc().unix_timestamp();
        let jti = format!("bench-{n}-{iat}");
        let claims = ProofClaims { jti: &jti, htm: "POST", htu: &self.authorize_url, iat, access_token: Some(token) };
        CallInputs {
            token: token.to_owned(),
            proof: sign_proof(&claims, &self.agent).unwrap(),
            arguments: json!({"period": "2026-10", "account": "ap"}).to_string(),
        }
    }

    /// A call with a fresh proof of its own.
    fn request(&self, n: u64) -> CallInputs {
        let iat = time::OffsetDateTime::now_utc().unix_timestamp();
        let jti = format!("bench-{n}-{iat}");
        let claims =
            ProofClaims { jti: &jti, htm: "POST", htu: &self.authorize_url, iat, access_token: Some(&self.token) };
        CallInputs {
            token: self.token.clone(),
            proof: sign_proof(&claims, &self.agent).unwrap(),
            arguments: json!({"period": "2026-10", "account": "ap"}).to_string(),
        }
    }

    /// What `POST /v1/authorize` does once the body is parsed: the arguments canonicalised, then the
    /// engine's decision.
    async fn decide(&self, request: &CallInputs) -> Decision {
        let call = Call {
            tool: TOOL.to_owned(),
            arguments: CanonicalArguments::parse(&request.arguments).unwrap(),
            resource: Some(RESOURCE.to_owned()),
            approval_id: None,
            refusal: None,
        };
        let presented = Presented {
            token: &request.token,
            proof: &request.proof,
            binding: ProofBinding { htm: "POST", htu: &self.authorize_url },
            source: None,
        };
        self.state.decide(&presented, &call, false).await
    }

    fn authorize(&self, request: &CallInputs) -> Value {
        let d = self.runtime.block_on(self.decide(request));
        json!({"decision": d.verdict.as_str(), "policies": d.policies, "risk": {"score": d.risk.score, "signals": d.risk.signals}})
    }
}

/// A decision's inputs: the mandate, a proof of its own, the arguments as the agent sent them.
struct CallInputs {
    token: String,
    proof: String,
    arguments: String,
}

/// The Cedar request `authorize` builds for the benchmark's call, from the same registry facts.
fn cedar_request(risk: &Value) -> CallRequest {
    let now = time::OffsetDateTime::now_utc();
    CallRequest {
        agent: AgentFacts {
            id: "finance-close".into(),
            class: "enterprise".into(),
            environment: "production".into(),
            owner: "alice@example.org".into(),
            state: "active".into(),
        },
        chain: Vec::new(),
        root: HumanFacts {
            id: "alice@example.org".into(),
            groups: vec!["finance".into()],
            roles: Vec::new(),
            sandbox: false,
        },
        tool: ToolFacts {
            name: TOOL.into(),
            server: "erp".into(),
            server_environment: "production".into(),
            data_class: "financial".into(),
            risk: "read".into(),
        },
        category: CATEGORY.into(),
        purpose: PURPOSE.into(),
        depth: 0,
        action: "read".into(),
        resource_uri: Some(RESOURCE.into()),
        hour: now.hour(),
        weekday: now.weekday().number_from_monday(),
        risk_score: risk["score"].as_u64().unwrap_or(0) as u32,
        signals: risk["signals"]
            .as_array()
            .map(|s| s.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        binding: "agent_key".into(),
    }
}

/// The ledger event of the benchmark's decision, with a detail of the same shape and size.
fn decision_event(n: u64) -> NewEvent {
    let detail = json!({
        "reasons": [{"code": "decision.allowed", "message": "within the mandate, every ancestor, the chain's boundaries and policy", "hop": 1}],
        "policies": ["call.within-mandate"], "risk": {"score": 20, "signals": ["volume"]},
        "data_class": "financial", "action": "read", "depth": 1, "root": "user:alice@example.org",
        "approval_id": null, "policy_version": "1:0123456789abcdef",
        "arguments": {"sha256": format!("{n:064x}"), "bytes": 34},
    });
    let at = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let mut event = NewEvent::new("decision", "spiffe://example.org/agent/finance-close", at, &detail);
    event.agent = Some("finance-close".into());
    event.chain_id = Some("bench-chain".into());
    event.mandate_id = Some("bench-mandate".into());
    event.tool = Some(TOOL.into());
    event.resource = Some(RESOURCE.into());
    event.decision = Some("allow".into());
    event
}

fn decision(c: &mut Criterion) {
    let f = fixture();
    let (_, policies) = f.state.policy.current().expect("a policy set is active");

    // Sanity, and the behaviour the Cedar request must carry: one real decision first.
    let first = f.authorize(&f.request(0));
    assert_eq!(first["decision"], "allow", "{first}");
    let cedar = cedar_request(&first["risk"]);
    let decided = policies.decide_call(&cedar);
    assert_eq!(
        (decided.outcome, decided.matched.clone()),
        (
            Outcome::Allow,
            first["policies"]
                .as_array()
                .map(|p| p.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        )
    );

    // The raw signature check of a proof: its signing input and signature, as `verify_proof` sees them.
    let sample = f.request(0).proof;
    let (signing_input, signature) = sample.rsplit_once('.').unwrap();
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    let agent_public = f.agent.verifying_key();
    agent_public.verify_strict(signing_input.as_bytes(), &signature).unwrap();
    eprintln!(
        "mandate token: {} bytes; proof: {} bytes; first decision: {} (risk {})",
        f.token.len(),
        sample.len(),
        first["decision"],
        first["risk"]
    );

    // `ops` run in this order in every round; `authorize` gets the pre-signed request of its round.
    const OPS: [&str; 6] = [
        "ed25519_verify_proof",
        "cedar_call",
        "ledger_append",
        "authorize",
        "authorize_remembered",
        "authorize_unscored",
    ];
    let (version, _) = f.state.policy.current().expect("a policy set is active");
    let evaluating = Arc::new(policies.as_ref().clone().without_call_memo());
    let remembering = policies.clone();
    let mut counter = 1u64;
    let mut run = |iters: u64| -> [Duration; 6] {
        let requests: Vec<CallInputs> = (0..iters).map(|i| f.request(counter + i)).collect();
        let again: Vec<CallInputs> = (0..iters).map(|i| f.request(counter + iters + i)).collect();
        let unscored: Vec<CallInputs> = (0..iters).map(|i| f.request(counter + 2 * iters + i)).collect();
        let events: Vec<NewEvent> = (0..iters).map(|i| decision_event(counter + i)).collect();
        counter += 3 * iters;
        let mut totals = [Duration::ZERO; 6];
        for (((request, again), unscored), event) in requests.iter().zip(&again).zip(&unscored).zip(events) {
            let start = Instant::now();
            black_box(agent_public.verify_strict(black_box(signing_input.as_bytes()), black_box(&signature))).unwrap();
            totals[0] += start.elapsed();

            let start = Instant::now();
            let d = policies.evaluate_call(black_box(&cedar));
            assert_eq!(d.outcome, Outcome::Allow);
            totals[1] += start.elapsed();

            let start = Instant::now();
            black_box(f.runtime.block_on(f.state.store.append_event(event)).unwrap());
            totals[2] += start.elapsed();

            f.state.policy.replace(version, evaluating.clone());
            let start = Instant::now();
            let response = f.runtime.block_on(f.decide(black_box(request)));
            totals[3] += start.elapsed();
            assert_eq!(response.verdict, Verdict::Allow, "{:?}", response.reasons);

            f.state.policy.replace(version, remembering.clone());
            let start = Instant::now();
            let response = f.runtime.block_on(f.decide(black_box(again)));
            totals[4] += start.elapsed();
            assert_eq!(response.verdict, Verdict::Allow, "{:?}", response.reasons);

            // The same decision as `authorize` (Cedar evaluating), with drift scoring off.
            f.state.policy.replace(version, evaluating.clone());
            f.state.behaviour.set_enabled(false);
            let start = Instant::now();
            let response = f.runtime.block_on(f.decide(black_box(unscored)));
            totals[5] += start.elapsed();
            f.state.behaviour.set_enabled(true);
            assert_eq!(response.verdict, Verdict::Allow, "{:?}", response.reasons);
        }
        totals
    };

    let mut group = c.benchmark_group("decision");
    for (index, name) in OPS.iter().enumerate() {
        // Per sample, over the same iterations: the op's time / (verify + Cedar), and the decision's
        // time / (verify + Cedar + the durable append).
        let mut ratios: Vec<(f64, f64)> = Vec::new();
        // Per sample: what scoring adds, `authorize` less `authorize_unscored`, per decision.
        let mut scoring: Vec<f64> = Vec::new();
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let t = run(iters);
                scoring.push((t[3].as_secs_f64() - t[5].as_secs_f64()) / iters as f64);
                let parts = t[0].as_secs_f64() + t[1].as_secs_f64();
                ratios.push((t[index].as_secs_f64() / parts, t[index].as_secs_f64() / (parts + t[2].as_secs_f64())));
                t[index]
            })
        });
        let mut samples = ratios.split_off(ratios.len().saturating_sub(SAMPLES));
        if samples.is_empty() {
            continue;
        }
        if *name == "authorize_unscored" {
            let mut added = scoring.split_off(scoring.len().saturating_sub(SAMPLES));
            added.sort_by(f64::total_cmp);
            println!(
                "paired difference decision/authorize - decision/authorize_unscored: {:.2} us (median of {} interleaved samples)",
                added[added.len() / 2] * 1e6,
                added.len()
            );
        }
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        let median = samples[samples.len() / 2].0;
        println!("paired ratio decision/{name} / parts: {median:.4} (median of {} interleaved samples)", samples.len());
        if name.starts_with("authorize") {
            samples.sort_by(|a, b| a.1.total_cmp(&b.1));
            let median = samples[samples.len() / 2].1;
            println!(
                "paired ratio decision/{name} / parts_and_ledger_append: {median:.4} (median of {} interleaved samples)",
                samples.len()
            );
        }
    }
    group.finish();

    // Where the rest of the time goes: the decision's other steps, each alone (not paired).
    let mut group = c.benchmark_group("decision_steps");
    let htu = Htu::parse(&f.authorize_url).unwrap();
    let jkt = Ed25519PublicJwk::from_verifying_key(agent_public).thumbprint();
    let agent_id = AgentId::parse("finance-close").unwrap();
    let human_id = HumanId::parse("alice@example.org").unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expectations = ProofExpectations {
        htm: "POST",
        htu: &htu,
        access_token: Some(&f.token),
        expected_jkt: &jkt,
        now,
        max_age_secs: 60,
        skew_secs: 30,
        known_key: None,
    };
    let proof = sample.clone();
    verify_proof(&proof, &expectations).unwrap();
    group.bench_function("verify_proof", |b| b.iter(|| verify_proof(black_box(&proof), &expectations).unwrap()));
    group.bench_function("verify_token_cached", |b| {
        b.iter(|| f.runtime.block_on(f.state.verify_token(black_box(&f.token))).unwrap())
    });
    group.bench_function("cached_agent", |b| {
        b.iter(|| f.runtime.block_on(f.state.cached_agent(black_box(&agent_id))).unwrap().unwrap())
    });
    group.bench_function("cached_human", |b| {
        b.iter(|| f.runtime.block_on(f.state.cached_human(black_box(&human_id))).unwrap().unwrap())
    });
    group.bench_function("store_agent", |b| {
        b.iter(|| f.runtime.block_on(f.state.store.agent(black_box(&agent_id))).unwrap().unwrap())
    });
    group.bench_function("store_human", |b| {
        b.iter(|| f.runtime.block_on(f.state.store.human(black_box(&human_id))).unwrap().unwrap())
    });
    // The part of each read that is not SQLite or the hand-off to its worker thread: the JSON document
    // the registry stores, parsed back into the core type.
    let agent_doc =
        serde_json::to_string(&f.runtime.block_on(f.state.store.agent(&agent_id)).unwrap().unwrap()).unwrap();
    let human_doc =
        serde_json::to_string(&f.runtime.block_on(f.state.store.human(&human_id)).unwrap().unwrap()).unwrap();
    group.bench_function("agent_from_json", |b| {
        b.iter(|| serde_json::from_str::<mandate_core::agent::Agent>(black_box(&agent_doc)).unwrap())
    });
    group.bench_function("human_from_json", |b| {
        b.iter(|| serde_json::from_str::<mandate_core::human::Human>(black_box(&human_doc)).unwrap())
    });
    group.bench_function("block_on_empty", |b| b.iter(|| f.runtime.block_on(async { black_box(1) })));
    group.finish();
}

/// Drift scoring alone, as a decision runs it (`assess`, then `record` of the allowed call), for a
/// chain in the middle of its task with a warm category profile: a read of a ledger resource (one of
/// 30), and an e-mail (arguments read for destinations) after this chain read financial data. Also
/// a chain at the volume window's limit.
fn behaviour(c: &mut Criterion) {
    use mandate_core::mandate::Action;
    use mandate_engine::behaviour::DriftSettings;
    let mut group = c.benchmark_group("behaviour");
    let b = Behaviour::new(DriftSettings { internal_domains: vec!["example.org".into()], ..Default::default() });
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let empty = json!({});
    let mail = json!({"to": ["controller@example.org"], "subject": "October close",
                      "body": "The October 2026 close report is ready: https://reports.example.org/close/2026-10"});
    let resources: Vec<String> = (0..30).map(|i| format!("erp://ledger/2026-10/account-{i}")).collect();
    let shape = |chain: &'static str,
                 tool: &'static str,
                 action: Action,
                 resource: Option<&'static str>,
                 arguments: &'static Value,
                 t: i64| CallShape {
        chain_id: chain,
        agent: "finance-close",
        parent_agent: None,
        tool,
        data_class: if action == Action::Read { "financial" } else { "internal" },
        action,
        classified: true,
        depth: 1,
        category: CATEGORY,
        resource,
        arguments,
        now: t,
        chain_expires_at: now + 3_600,
    };
    let empty: &'static Value = Box::leak(Box::new(empty));
    let mail: &'static Value = Box::leak(Box::new(mail));
    let resources: &'static [String] = Box::leak(resources.into_boxed_slice());
    // A warm profile: 25 chains of read, read, mail.
    for i in 0..25 {
        let chain: &'static str = Box::leak(format!("warm-{i}").into_boxed_str());
        for (tool, action, args) in
            [(TOOL, Action::Read, empty), (TOOL, Action::Read, empty), ("mail/send", Action::Egress, mail)]
        {
            let s = shape(chain, tool, action, Some(resources[i % 30].as_str()), args, now);
            let (risk, observed) = b.assess(&s);
            b.record(&s, &risk, &observed);
        }
    }
    let mut i = 0usize;
    group.bench_function("score_read", |bench| {
        bench.iter(|| {
            i += 1;
            let s = shape("chain", TOOL, Action::Read, Some(resources[i % 30].as_str()), empty, now);
            let (risk, observed) = b.assess(black_box(&s));
            b.record(&s, &risk, &observed);
            black_box(risk)
        })
    });
    group.bench_function("score_egress_after_sensitive_read", |bench| {
        bench.iter(|| {
            let s = shape("chain", "mail/send", Action::Egress, None, mail, now);
            let (risk, observed) = b.assess(black_box(&s));
            b.record(&s, &risk, &observed);
            black_box(risk)
        })
    });
    let full = Behaviour::default();
    for t in 0..1_000 {
        let s = shape("busy", TOOL, Action::Read, Some(resources[t % 30].as_str()), empty, now - 59 + (t as i64) / 20);
        let (risk, observed) = full.assess(&s);
        full.record(&s, &risk, &observed);
    }
    group.bench_function("assess_at_the_volume_limit", |bench| {
        bench.iter(|| {
            black_box(full.assess(black_box(&shape(
                "busy",
                TOOL,
                Action::Read,
                Some(resources[0].as_str()),
                empty,
                now,
            ))))
        })
    });
    group.finish();
}

/// Drift scoring inside the whole decision: the same decisions with scoring on and off, interleaved,
/// over a ledger in memory (`MANDATE_DRIFT_BENCH_DIR`, default `/dev/shm`). The scoring touches no
/// disk, and an fsync's noise (tens of microseconds on this VM) is larger than what is measured, so
/// the durable append is taken out of this comparison (the `decision` group above keeps it). Calls
/// go round-robin over 512 chains of one `finance.close` agent, allowed as many calls a minute as a
/// busy task makes, so that each chain's picture is one of ordinary work, not of a single chain
/// flooding (which would raise `volume` on every call).
fn drift(c: &mut Criterion) {
    let base =
        std::env::var_os("MANDATE_DRIFT_BENCH_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/dev/shm"));
    let base = if base.is_dir() { base } else { bench_dir() };
    let f = fixture_in(&base);
    let (version, policies) = f.state.policy.current().expect("a policy set is active");
    f.state.policy.replace(version, Arc::new(policies.as_ref().clone().without_call_memo()));
    let mut spec_enforce = f.state.behaviour.category(CATEGORY).unwrap().spec.clone();
    spec_enforce.max_calls_per_minute = 1_000;
    let tokens = f.more_mandates(512);
    // As an organisation starts: the category learns ordinary work first (a few calls in each of 40
    // chains), then enforces.
    let mut spec_learn = spec_enforce.clone();
    spec_learn.mode = mandate_engine::behaviour::taxonomy::Mode::Learn;
    f.runtime.block_on(f.state.put_intent("admin", CATEGORY, spec_learn)).unwrap();
    let mut counter = 0u64;
    for token in &tokens[..40] {
        for _ in 0..3 {
            counter += 1;
            let d = f.runtime.block_on(f.decide(&f.request_with(token, counter)));
            assert_eq!(d.verdict, Verdict::Allow);
        }
    }
    f.runtime.block_on(f.state.put_intent("admin", CATEGORY, spec_enforce)).unwrap();
    let mut diffs: Vec<f64> = Vec::new();
    let mut group = c.benchmark_group("drift");
    for (index, name) in ["decide_scored", "decide_unscored"].iter().enumerate() {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let mut totals = [Duration::ZERO; 2];
                for _ in 0..iters {
                    for (slot, on) in [(0, true), (1, false)] {
                        counter += 1;
                        let request = f.request_with(&tokens[(counter as usize / 2) % tokens.len()], counter);
                        f.state.behaviour.set_enabled(on);
                        let start = Instant::now();
                        let d = f.runtime.block_on(f.decide(black_box(&request)));
                        totals[slot] += start.elapsed();
                        assert_eq!(d.verdict, Verdict::Allow, "{:?} {:?}", d.reasons, d.risk);
                    }
                }
                f.state.behaviour.set_enabled(true);
                diffs.push((totals[0].as_secs_f64() - totals[1].as_secs_f64()) / iters as f64);
                totals[index]
            })
        });
    }
    group.finish();
    let mut added = diffs.split_off(diffs.len().saturating_sub(SAMPLES));
    added.sort_by(f64::total_cmp);
    println!(
        "paired difference drift/decide_scored - drift/decide_unscored: {:.2} us (median of {} interleaved samples, ledger in {})",
        added[added.len() / 2] * 1e6,
        added.len(),
        base.display()
    );
}

fn config() -> Criterion {
    // Two shared cores: short runs, enough samples for a stable median.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(SAMPLES)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decision, behaviour, drift
}
criterion_main!(benches);
