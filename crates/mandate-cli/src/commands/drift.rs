//! `mandate drift`: the intent taxonomy, and what each kind of task has been seen to do.

use crate::client::{encode, Client};
use crate::commands::{cell, print_json};
use crate::{table, Remote};
use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::path::PathBuf;

/// `mandate drift` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum DriftCommand {
    /// What a category's tasks have been seen to do: tools, transitions between an agent's
    /// consecutive tools, external destinations (admins, auditors, approvers).
    Profile {
        /// The intent category, e.g. `hr.onboarding`.
        category: String,
        /// Show every transition and destination, not the 15 most frequent.
        #[arg(long)]
        all: bool,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Forget what a category learned; it starts cold again (admin; recorded as `drift.reset`).
    Reset {
        /// The intent category.
        category: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// The intent taxonomy: each category's tools, data classes, destinations, limits and mode.
    Categories {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Add or replace a category from a JSON file (`-` for standard input), as
    /// `PUT /v1/intents/{category}` takes it (admin).
    Set {
        /// The intent category.
        category: String,
        /// The JSON file.
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
    },
    /// Put a category in `learn` (scores are recorded and alerted on, policy sees 0) or
    /// `enforce` (admin).
    Mode {
        /// The intent category.
        category: String,
        /// `learn` or `enforce`.
        #[arg(value_parser = ["learn", "enforce"])]
        mode: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove a category: mandates naming it score `unknown_category` (admin).
    Remove {
        /// The intent category.
        category: String,
        #[command(flatten)]
        remote: Remote,
    },
}

fn list(v: &Value) -> String {
    v.as_array().map(|a| a.iter().map(cell).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

fn category(client: &Client, name: &str) -> anyhow::Result<Value> {
    let all = client.get("/v1/intents")?;
    all["categories"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name).cloned())
        .with_context(|| format!("no intent category `{name}` (see `mandate drift categories`)"))
}

/// Runs a `mandate drift` verb.
pub fn run(cmd: DriftCommand) -> anyhow::Result<()> {
    match cmd {
        DriftCommand::Profile { category, all, json, remote } => {
            let p = Client::new(&remote)?.get(&format!("/v1/drift/{}", encode(&category)))?;
            if json {
                return print_json(&p);
            }
            let warm = if p["warm"] == true { "warm" } else { "cold: sequence rarity is not judged yet" };
            println!(
                "Category {} ({}, {warm}): learned from {} chain(s), {} call(s).",
                cell(&p["category"]),
                cell(&p["mode"]),
                cell(&p["chains"]),
                cell(&p["calls"])
            );
            let limit = if all { usize::MAX } else { 15 };
            let rows = |key: &str, f: &dyn Fn(&Value) -> Vec<String>| -> Vec<Vec<String>> {
                p[key].as_array().cloned().unwrap_or_default().iter().take(limit).map(f).collect()
            };
            println!("\nTools");
            table::print(&["TOOL", "CALLS"], &rows("tools", &|t| vec![cell(&t["name"]), cell(&t["count"])]));
            println!("\nTransitions (`^` is an agent's first call)");
            table::print(
                &["FROM", "TO", "COUNT"],
                &rows("transitions", &|t| vec![cell(&t["from"]), cell(&t["to"]), cell(&t["count"])]),
            );
            println!("\nExternal destinations");
            table::print(&["DOMAIN", "CALLS"], &rows("destinations", &|t| vec![cell(&t["name"]), cell(&t["count"])]));
            Ok(())
        }
        DriftCommand::Reset { category, json, remote } => {
            let r = Client::new(&remote)?.post(&format!("/v1/drift/{}/reset", encode(&category)), None)?;
            if json {
                return print_json(&r);
            }
            let what = if r["forgot"] == true { "forgot what it learned" } else { "had learned nothing" };
            println!("Category {} {what} (ledger #{}).", cell(&r["category"]), cell(&r["ledger_seq"]));
            Ok(())
        }
        DriftCommand::Categories { json, remote } => {
            let all = Client::new(&remote)?.get("/v1/intents")?;
            if json {
                return print_json(&all);
            }
            let rows: Vec<Vec<String>> = all["categories"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    vec![
                        cell(&c["name"]),
                        cell(&c["mode"]),
                        list(&c["tools"]),
                        list(&c["data_classes"]),
                        list(&c["destinations"]),
                        format!(
                            "{}/min, {} resources, {} agents",
                            cell(&c["max_calls_per_minute"]),
                            cell(&c["max_resources"]),
                            cell(&c["max_agents"])
                        ),
                    ]
                })
                .collect();
            table::print(&["CATEGORY", "MODE", "TOOLS", "DATA CLASSES", "DESTINATIONS", "LIMITS PER CHAIN"], &rows);
            Ok(())
        }
        DriftCommand::Set { category, file, remote } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            let body: Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
            let c = Client::new(&remote)?.put(&format!("/v1/intents/{}", encode(&category)), &body)?;
            println!("Category {} is set ({}).", cell(&c["name"]), cell(&c["mode"]));
            Ok(())
        }
        DriftCommand::Mode { category: name, mode, remote } => {
            let client = Client::new(&remote)?;
            let mut c = category(&client, &name)?;
            if let Some(o) = c.as_object_mut() {
                o.remove("name");
                o.insert("mode".into(), json!(mode));
            } else {
                bail!("the server's answer is not a category");
            }
            let c = client.put(&format!("/v1/intents/{}", encode(&name)), &c)?;
            println!("Category {} is in {}.", cell(&c["name"]), cell(&c["mode"]));
            Ok(())
        }
        DriftCommand::Remove { category, remote } => {
            Client::new(&remote)?.delete(&format!("/v1/intents/{}", encode(&category)))?;
            println!("Category {category} is removed; mandates naming it now score `unknown_category`.");
            Ok(())
        }
    }
}
