//! `mandate human`.

use crate::client::Client;
use crate::commands::{cell, print_json};
use crate::{table, Remote};
use clap::Subcommand;
use serde_json::json;

/// Human verbs (development humans; production humans come from the IdP).
#[derive(Debug, Subcommand)]
pub enum HumanCommand {
    /// Create a human and print their API key, shown once.
    Add {
        /// The human's id, `name@domain`.
        id: String,
        /// An IdP group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A role: `admin`, `approver` or `auditor` (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Mark as a sandbox identity (a test account that should own no production agent).
        #[arg(long)]
        sandbox: bool,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List humans.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deactivate a human (a leaver): their keys stop working, their agents become orphans.
    Deactivate {
        /// The human's id.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Runs a human verb.
pub fn run(cmd: HumanCommand) -> anyhow::Result<()> {
    match cmd {
        HumanCommand::Add { id, groups, roles, sandbox, json, remote } => {
            let created = Client::new(&remote)?
                .post("/v1/humans", Some(&json!({"id": id, "groups": groups, "roles": roles, "sandbox": sandbox})))?;
            if json {
                return print_json(&created);
            }
            println!("Created {}. API key (shown once): {}", cell(&created["principal"]), cell(&created["api_key"]));
            Ok(())
        }
        HumanCommand::List { json, remote } => {
            let list = Client::new(&remote)?.get("/v1/humans")?;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list["humans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|h| {
                    let state = if h["active"].as_bool() == Some(true) { "active" } else { "deactivated" };
                    let kind = if h["sandbox"].as_bool() == Some(true) { "sandbox" } else { "person" };
                    vec![cell(&h["id"]), state.to_owned(), kind.to_owned(), cell(&h["groups"]), cell(&h["roles"])]
                })
                .collect();
            table::print(&["HUMAN", "STATE", "KIND", "GROUPS", "ROLES"], &rows);
            Ok(())
        }
        HumanCommand::Deactivate { id, json, remote } => {
            let human =
                Client::new(&remote)?.post(&format!("/v1/humans/{}/deactivate", crate::client::encode(&id)), None)?;
            if json {
                return print_json(&human);
            }
            println!(
                "Deactivated {}: their API keys no longer work. `mandate review` lists the agents they owned.",
                cell(&human["principal"])
            );
            Ok(())
        }
    }
}
