//! `mandate check`, `approvals`, `policy` and `tools`.

use crate::client::{encode, Client};
use crate::commands::mandate::{random_id, read_token, signing_key};
use crate::commands::{cell, print_json};
use crate::{table, Remote};
use anyhow::{bail, Context as _};
use mandate_core::jose::{sign_proof, ProofClaims};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Arguments of `mandate check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The agent's mandate token, or `@FILE`.
    #[arg(long)]
    token: String,
    /// The agent's private key (a JWK file with `d`), to sign the proof of possession.
    #[arg(long)]
    key: PathBuf,
    /// The tool, `server/tool`.
    #[arg(long)]
    tool: String,
    /// The resource the call acts on.
    #[arg(long)]
    resource: Option<String>,
    /// The call's arguments as JSON.
    #[arg(long, default_value = "{}")]
    arguments: String,
    /// Retry a held call with its approval.
    #[arg(long)]
    approval_id: Option<String>,
    /// Print every step of the evaluation.
    #[arg(long)]
    explain: bool,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    /// The server's URL.
    #[arg(long, env = "MANDATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

/// Runs `mandate check`: asks the server to decide one tool call, without calling the tool.
/// Exits 0 on allow, 1 on deny, 2 when approval is required.
pub fn check(a: CheckArgs) -> anyhow::Result<std::process::ExitCode> {
    let token = read_token(&a.token)?;
    let base = a.url.trim_end_matches('/');
    let meta: Value = ureq::get(&format!("{base}/.well-known/oauth-authorization-server"))
        .call()
        .with_context(|| format!("cannot read the server's metadata at {base}"))?
        .into_json()?;
    let endpoint = meta["authorize_endpoint"].as_str().context("the server's metadata has no authorize_endpoint")?;
    let arguments: Value = serde_json::from_str(&a.arguments).context("--arguments is not JSON")?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let proof = sign_proof(
        &ProofClaims { jti: &random_id(), htm: "POST", htu: endpoint, iat: now, access_token: Some(&token) },
        &signing_key(&a.key)?,
    )?;
    let body = json!({"token": token, "proof": proof, "tool": a.tool, "arguments": arguments,
        "resource": a.resource, "approval_id": a.approval_id});
    let path = if a.explain { "/v1/authorize?explain=true" } else { "/v1/authorize" };
    let decision: Value = match ureq::post(&format!("{base}{path}")).send_json(body) {
        Ok(r) => r.into_json()?,
        Err(ureq::Error::Status(status, r)) => {
            let p: Value = r.into_json().unwrap_or(Value::Null);
            bail!("{} ({status} {})", cell(&p["detail"]), cell(&p["code"]));
        }
        Err(e) => bail!("cannot reach the Mandate server at {base}: {e}"),
    };
    if a.json {
        print_json(&decision)?;
    } else {
        println!("{} (ledger #{})", cell(&decision["decision"]).to_uppercase(), cell(&decision["ledger_seq"]));
        for r in decision["reasons"].as_array().cloned().unwrap_or_default() {
            println!("  {} [hop {}] {}", cell(&r["code"]), cell(&r["hop"]), cell(&r["message"]));
        }
        if !decision["policies"].as_array().is_none_or(Vec::is_empty) {
            println!("  policies: {}", cell(&decision["policies"]));
        }
        if decision["risk"]["score"].as_u64().unwrap_or(0) > 0 {
            let risk = &decision["risk"];
            println!(
                "  risk {} ({} {}): {}",
                cell(&risk["score"]),
                cell(&risk["category"]),
                cell(&risk["mode"]),
                cell(&risk["signals"])
            );
            for d in risk["details"].as_array().cloned().unwrap_or_default() {
                println!("    {} (+{}): {}", cell(&d["name"]), cell(&d["weight"]), cell(&d["why"]));
            }
        }
        if let Some(id) = decision["approval_id"].as_str() {
            println!("  approval {id}: retry with --approval-id {id} once a human approves");
        }
        if a.explain {
            println!("Evaluation:");
            for s in decision["explain"].as_array().cloned().unwrap_or_default() {
                println!("  {:<10} {:<7} {}", cell(&s["step"]), cell(&s["outcome"]), cell(&s["detail"]));
            }
        }
    }
    Ok(match decision["decision"].as_str() {
        Some("allow") => std::process::ExitCode::SUCCESS,
        Some("approval_required") => std::process::ExitCode::from(2),
        _ => std::process::ExitCode::FAILURE,
    })
}

/// `mandate approvals` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalsCommand {
    /// The approval queue.
    List {
        /// `pending` (default), `approved`, `denied`, `used` or `all`.
        #[arg(long)]
        status: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Approve a held call: the agent may make that exact call once.
    Approve {
        /// The approval id.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deny a held call.
    Deny {
        /// The approval id.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Runs an approvals verb.
pub fn approvals(cmd: ApprovalsCommand) -> anyhow::Result<()> {
    match cmd {
        ApprovalsCommand::List { status, json, remote } => {
            let q = status.map(|s| format!("?status={}", encode(&s))).unwrap_or_default();
            let list = Client::new(&remote)?.get(&format!("/v1/approvals{q}"))?;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list["approvals"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    vec![
                        cell(&a["id"]),
                        cell(&a["status"]),
                        cell(&a["agent"]),
                        cell(&a["tool"]),
                        cell(&a["resource"]),
                        cell(&a["detail"]["root"]),
                        why_held(&a["detail"]),
                    ]
                })
                .collect();
            table::print(&["APPROVAL", "STATUS", "AGENT", "TOOL", "RESOURCE", "ROOT", "WHY HELD"], &rows);
            Ok(())
        }
        ApprovalsCommand::Approve { id, json, remote } => answer("approve", &id, json, &remote),
        ApprovalsCommand::Deny { id, json, remote } => answer("deny", &id, json, &remote),
    }
}

/// The hold's reasons, and the drift signals behind them with why each was raised: what an
/// approver needs to see before answering.
fn why_held(detail: &Value) -> String {
    let mut why = cell(&detail["reasons"]);
    let signals: Vec<String> = detail["risk"]["details"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| format!("{}: {}", cell(&d["name"]), cell(&d["why"])))
        .collect();
    if !signals.is_empty() {
        why.push_str(&format!(" (risk {}: {})", cell(&detail["risk"]["score"]), signals.join("; ")));
    }
    why
}

fn answer(verb: &str, id: &str, json: bool, remote: &Remote) -> anyhow::Result<()> {
    let a = Client::new(remote)?.post(&format!("/v1/approvals/{}/{verb}", encode(id)), None)?;
    if json {
        return print_json(&a);
    }
    println!("Approval {} is {} ({} on {}).", cell(&a["id"]), cell(&a["status"]), cell(&a["agent"]), cell(&a["tool"]));
    Ok(())
}

/// `mandate policy` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Validate a Cedar policy file against Mandate's schema (offline; no server needed).
    Validate {
        /// The policy file.
        file: PathBuf,
    },
    /// Run a file of test cases (JSON: requests with expected outcomes) against a policy file
    /// (offline), like `opa test`; exits non-zero if any case fails.
    Test {
        /// The cases file.
        cases: PathBuf,
        /// The policy file (default: the shipped default policies).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Print the server's active policy set.
    Get {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace the server's active policy set (validated first; a failing set changes nothing).
    Put {
        /// The policy file.
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the shipped Cedar schema.
    Schema,
}

fn read_text(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))
}

/// Runs a policy verb.
pub fn policy(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Validate { file } => match mandate_policy::ValidatedPolicySet::parse(&read_text(&file)?) {
            Ok(set) => {
                println!(
                    "{}: valid, {} policies ({})",
                    file.display(),
                    set.ids().len(),
                    set.ids().collect::<Vec<_>>().join(", ")
                );
                for w in set.warnings() {
                    println!("  warning: {w}");
                }
                Ok(())
            }
            Err(e) => {
                for p in mandate_engine::policy::problems(&e) {
                    eprintln!("{}: {p}", file.display());
                }
                bail!("`{}` is not a valid policy set", file.display())
            }
        },
        PolicyCommand::Test { cases, policies } => {
            let text = match &policies {
                Some(p) => read_text(p)?,
                None => mandate_policy::DEFAULT_POLICIES.to_owned(),
            };
            let set = mandate_policy::ValidatedPolicySet::parse(&text).map_err(|e| {
                anyhow::anyhow!("the policy set is invalid: {}", mandate_engine::policy::problems(&e).join("; "))
            })?;
            let report = mandate_policy::run_cases(&set, &read_text(&cases)?).map_err(|e| anyhow::anyhow!("{e}"))?;
            print!("{report}");
            if !report.all_passed() {
                bail!("{} of {} cases failed", report.failed(), report.results.len());
            }
            Ok(())
        }
        PolicyCommand::Get { json, remote } => {
            let p = Client::new(&remote)?.get("/v1/policies")?;
            if json {
                return print_json(&p);
            }
            println!("// version {} sha256 {}", cell(&p["version"]), cell(&p["sha256"]));
            print!("{}", p["text"].as_str().unwrap_or_default());
            Ok(())
        }
        PolicyCommand::Put { file, remote } => {
            let client = Client::new(&remote)?;
            let p = client.put_text("/v1/policies", &read_text(&file)?)?;
            println!(
                "Policy set version {} is active ({} policies).",
                cell(&p["version"]),
                p["ids"].as_array().map_or(0, Vec::len)
            );
            Ok(())
        }
        PolicyCommand::Schema => {
            print!("{}", mandate_policy::SCHEMA);
            Ok(())
        }
    }
}

/// `mandate tools` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum ToolsCommand {
    /// The tool catalogue.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Classify a tool.
    Classify {
        /// The tool, `server/tool`.
        tool: String,
        /// Its data class.
        #[arg(long)]
        data_class: String,
        /// Its risk level: `read`, `write`, `destructive`, `egress`.
        #[arg(long)]
        risk: String,
        /// Its server's environment (default `production`).
        #[arg(long)]
        environment: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Tool definitions the gateway pinned, and those waiting for approval.
    Pins {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// A tool's pinned definition against the changed one waiting for approval.
    Diff {
        /// The tool, `server/tool`.
        tool: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Pin the changed definition of a tool: it is shown and callable again.
    Approve {
        /// The tool, `server/tool`.
        tool: String,
        /// The hash `mandate tools diff` showed: refused if another definition arrived since.
        #[arg(long)]
        sha256: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Runs a tools verb.
pub fn tools(cmd: ToolsCommand) -> anyhow::Result<()> {
    match cmd {
        ToolsCommand::List { json, remote } => {
            let list = Client::new(&remote)?.get("/v1/tools")?;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list["tools"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|t| {
                    vec![
                        cell(&t["name"]),
                        cell(&t["data_class"]),
                        cell(&t["risk"]),
                        cell(&t["server_environment"]),
                        cell(&t["source"]),
                    ]
                })
                .collect();
            table::print(&["TOOL", "DATA CLASS", "RISK", "ENV", "SOURCE"], &rows);
            Ok(())
        }
        ToolsCommand::Pins { json, remote } => crate::commands::gateway::pins(json, &remote),
        ToolsCommand::Diff { tool, json, remote } => crate::commands::gateway::diff(&tool, json, &remote),
        ToolsCommand::Approve { tool, sha256, remote } => {
            crate::commands::gateway::approve(&tool, sha256.as_deref(), &remote)
        }
        ToolsCommand::Classify { tool, data_class, risk, environment, remote } => {
            let Some((server, name)) = tool.split_once('/') else { bail!("the tool must be `server/tool`") };
            let mut body = json!({"data_class": data_class, "risk": risk});
            if let Some(e) = environment {
                body["server_environment"] = json!(e);
            }
            let t = Client::new(&remote)?.put(&format!("/v1/tools/{}/{}", encode(server), encode(name)), &body)?;
            println!(
                "{} is {} / {} on a {} server.",
                cell(&t["name"]),
                cell(&t["data_class"]),
                cell(&t["risk"]),
                cell(&t["server_environment"])
            );
            Ok(())
        }
    }
}
