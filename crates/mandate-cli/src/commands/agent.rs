//! `mandate agent`: the registry and the lifecycle.

use crate::client::{encode, query, Client};
use crate::commands::audit::format_ms;
use crate::commands::{cell, print_json};
use crate::{read_json, table, Remote};
use anyhow::{bail, Context as _};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

/// Fields of an agent that can be given as flags (to `register`, or to change with `update`).
#[derive(Debug, Default, clap::Args)]
pub struct AgentFields {
    /// A readable name.
    #[arg(long)]
    name: Option<String>,
    /// The accountable owner, `user:<name@domain>`.
    #[arg(long)]
    owner: Option<String>,
    /// What the agent is for.
    #[arg(long)]
    purpose: Option<String>,
    /// `coding`, `in_product` or `enterprise`.
    #[arg(long)]
    class: Option<String>,
    /// `sandbox`, `pilot` or `production`.
    #[arg(long)]
    environment: Option<String>,
    /// Boundary tool patterns, comma-separated (`erp/*,fx/convert`); replaces the list.
    #[arg(long, value_delimiter = ',')]
    tools: Option<Vec<String>>,
    /// Boundary data classes, comma-separated; replaces the list.
    #[arg(long, value_delimiter = ',')]
    data_classes: Option<Vec<String>>,
    /// Boundary environments of reachable tools, comma-separated (default: the agent's own).
    #[arg(long, value_delimiter = ',')]
    environments: Option<Vec<String>>,
    /// Agents it may delegate to, comma-separated; replaces the list.
    #[arg(long, value_delimiter = ',')]
    may_delegate_to: Option<Vec<String>>,
    /// How many further delegation hops it may start.
    #[arg(long)]
    max_depth: Option<u8>,
    /// A file holding the agent's Ed25519 public key as a JWK.
    #[arg(long)]
    public_key_file: Option<PathBuf>,
    /// Recertification period in days.
    #[arg(long)]
    certify_every_days: Option<u32>,
}

/// Agent verbs.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register an agent (the joiner event), from a JSON file (`--file`, `-` for stdin) and/or flags.
    Register {
        /// The agent id (a slug such as `finance-close`).
        id: Option<String>,
        /// The registration as JSON, in the shape of `POST /v1/agents`; flags override its fields.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        fields: AgentFields,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List agents.
    List {
        /// Only agents of this owner (`user:alice@example.org`).
        #[arg(long)]
        owner: Option<String>,
        /// Only agents in this environment.
        #[arg(long)]
        environment: Option<String>,
        /// Only agents in this state (`active`, `suspended`, `retired`).
        #[arg(long)]
        state: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show an agent with its review status and full history.
    Show {
        /// The agent id.
        id: String,
        /// Print the API's JSON (`{"agent": ..., "history": ...}`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Change an agent (the mover event). Widening its boundary, moving environment, replacing its key,
    /// changing owner or class puts it up for review.
    Update {
        /// The agent id.
        id: String,
        /// The change as JSON, in the shape of `PATCH /v1/agents/{id}`; flags override its fields.
        #[arg(long)]
        file: Option<PathBuf>,
        #[command(flatten)]
        fields: AgentFields,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Suspend an agent: its mandates are refused until it is resumed (the kill switch).
    Suspend(LifecycleArgs),
    /// Resume a suspended agent.
    Resume(LifecycleArgs),
    /// Retire an agent for good (the leaver event).
    Retire(LifecycleArgs),
    /// Certify an agent: attest it is still needed and its boundary right; clears mover reviews.
    Certify(LifecycleArgs),
}

/// Arguments of the lifecycle verbs.
#[derive(Debug, clap::Args)]
pub struct LifecycleArgs {
    /// The agent id.
    id: String,
    /// Why, for the record.
    #[arg(long)]
    reason: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Runs an agent verb.
pub fn run(cmd: AgentCommand) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::Register { id, file, fields, json, remote } => {
            let mut body = match &file {
                Some(path) => read_json(path)?,
                None => json!({}),
            };
            let object = body.as_object_mut().context("the registration must be a JSON object")?;
            if let Some(id) = id {
                object.insert("id".into(), json!(id));
            }
            let boundary = object.entry("boundary").or_insert_with(|| json!({"tools": []})).clone();
            apply_fields(object, &fields, boundary)?;
            if !object.contains_key("id") {
                bail!("give the agent id as an argument or in --file");
            }
            let agent = Client::new(&remote)?.post("/v1/agents", Some(&body))?;
            if json {
                return print_json(&agent);
            }
            println!(
                "Registered {} ({}), owner {}.",
                cell(&agent["id"]),
                cell(&agent["spiffe_id"]),
                cell(&agent["owner"])
            );
            Ok(())
        }
        AgentCommand::List { owner, environment, state, json, remote } => {
            let q = query(&[("owner", owner), ("environment", environment), ("state", state)]);
            let list = Client::new(&remote)?.get(&format!("/v1/agents{q}"))?;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list["agents"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    vec![
                        cell(&a["id"]),
                        cell(&a["state"]),
                        cell(&a["environment"]),
                        cell(&a["class"]),
                        cell(&a["owner"]),
                        cell(&a["review"]["pending"]),
                    ]
                })
                .collect();
            table::print(&["AGENT", "STATE", "ENV", "CLASS", "OWNER", "REVIEW"], &rows);
            Ok(())
        }
        AgentCommand::Show { id, json, remote } => {
            let client = Client::new(&remote)?;
            let agent = client.get(&format!("/v1/agents/{}", encode(&id)))?;
            let history = client.get(&format!("/v1/agents/{}/history", encode(&id)))?;
            if json {
                return print_json(&json!({"agent": agent, "history": history}));
            }
            print_agent(&agent, &history);
            Ok(())
        }
        AgentCommand::Update { id, file, fields, json, remote } => {
            let client = Client::new(&remote)?;
            let mut body = match &file {
                Some(path) => read_json(path)?,
                None => json!({}),
            };
            let object = body.as_object_mut().context("the change must be a JSON object")?;
            // Boundary flags change parts of the boundary: start from the one the agent has now.
            let boundary = match object.get("boundary") {
                Some(b) => b.clone(),
                None => client.get(&format!("/v1/agents/{}", encode(&id)))?["boundary"].clone(),
            };
            apply_fields(object, &fields, boundary)?;
            if object.is_empty() {
                bail!("nothing to change: give --file or at least one field flag (see --help)");
            }
            let agent = client.patch(&format!("/v1/agents/{}", encode(&id)), &body)?;
            if json {
                return print_json(&agent);
            }
            println!("Updated {} to version {}.", cell(&agent["id"]), cell(&agent["version"]));
            let pending = agent["review"]["pending"].as_array().cloned().unwrap_or_default();
            if !pending.is_empty() {
                println!(
                    "Up for review: {}. The owner or an admin clears it with `mandate agent certify {}`.",
                    cell(&json!(pending)),
                    cell(&agent["id"])
                );
            }
            Ok(())
        }
        AgentCommand::Suspend(a) => lifecycle("suspend", a),
        AgentCommand::Resume(a) => lifecycle("resume", a),
        AgentCommand::Retire(a) => lifecycle("retire", a),
        AgentCommand::Certify(a) => lifecycle("certify", a),
    }
}

fn apply_fields(object: &mut Map<String, Value>, f: &AgentFields, mut boundary: Value) -> anyhow::Result<()> {
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            object.insert(key.to_owned(), v);
        }
    };
    set("name", f.name.clone().map(Value::from));
    set("owner", f.owner.clone().map(Value::from));
    set("purpose", f.purpose.clone().map(Value::from));
    set("class", f.class.clone().map(Value::from));
    set("environment", f.environment.clone().map(Value::from));
    set("certify_every_days", f.certify_every_days.map(Value::from));
    if let Some(path) = &f.public_key_file {
        set("public_key_jwk", Some(read_json(path)?));
    }
    let boundary_parts = [
        ("tools", f.tools.clone().map(Value::from)),
        ("data_classes", f.data_classes.clone().map(Value::from)),
        ("environments", f.environments.clone().map(Value::from)),
        ("may_delegate_to", f.may_delegate_to.clone().map(Value::from)),
        ("max_depth", f.max_depth.map(Value::from)),
    ];
    if boundary_parts.iter().any(|(_, v)| v.is_some()) {
        let b = boundary.as_object_mut().context("the boundary must be a JSON object")?;
        for (key, value) in boundary_parts {
            if let Some(v) = value {
                b.insert(key.to_owned(), v);
            }
        }
        object.insert("boundary".to_owned(), boundary);
    }
    Ok(())
}

fn lifecycle(verb: &str, a: LifecycleArgs) -> anyhow::Result<()> {
    let body = a.reason.map(|r| json!({"reason": r}));
    let agent = Client::new(&a.remote)?.post(&format!("/v1/agents/{}/{verb}", encode(&a.id)), body.as_ref())?;
    if a.json {
        return print_json(&agent);
    }
    println!("{} is {} (version {}).", cell(&agent["id"]), cell(&agent["state"]), cell(&agent["version"]));
    Ok(())
}

fn print_agent(a: &Value, history: &Value) {
    let b = &a["boundary"];
    let rows = [
        ("Agent", cell(&a["id"])),
        ("Name", cell(&a["name"])),
        ("SPIFFE id", cell(&a["spiffe_id"])),
        ("State", cell(&a["state"])),
        ("Owner", cell(&a["owner"])),
        ("Purpose", cell(&a["purpose"])),
        ("Class", cell(&a["class"])),
        ("Environment", cell(&a["environment"])),
        ("Tools", cell(&b["tools"])),
        ("Data classes", cell(&b["data_classes"])),
        ("Tool environments", cell(&b["environments"])),
        ("May delegate to", cell(&b["may_delegate_to"])),
        ("Max depth", cell(&b["max_depth"])),
        ("Key thumbprint", cell(&a["key_thumbprint"])),
        ("Version", cell(&a["version"])),
        ("Registered", cell(&a["created_at"])),
        ("Certified", cell(&a["certified_at"])),
        ("Certification due", cell(&a["review"]["due_at"])),
        ("Review pending", cell(&a["review"]["pending"])),
    ];
    for (k, v) in rows {
        println!("{k:<18} {v}");
    }
    println!("\nHistory:");
    let rows: Vec<Vec<String>> = history["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| {
            vec![
                cell(&v["version"]),
                format_ms(v["at_ms"].as_i64()),
                cell(&v["action"]),
                cell(&v["actor"]),
                diff(&v["before"], &v["after"]),
            ]
        })
        .collect();
    table::print(&["VERSION", "AT", "ACTION", "BY", "CHANGED"], &rows);
}

/// The top-level fields that differ between two versions.
fn diff(before: &Value, after: &Value) -> String {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
        return "-".to_owned();
    };
    let changed: Vec<&str> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v) && !matches!(k.as_str(), "version" | "updated_at"))
        .map(|(k, _)| k.as_str())
        .collect();
    if changed.is_empty() {
        "-".to_owned()
    } else {
        changed.join(", ")
    }
}
