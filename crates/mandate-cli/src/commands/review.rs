//! `mandate review`.

use crate::client::{query, Client};
use crate::commands::{cell, print_json};
use crate::{table, Remote};

/// Show what needs a human now: overdue recertifications, orphans (owner gone or deactivated), stale
/// agents, production agents on sandbox owners, and agents awaiting review after a change.
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    /// Review as of this time (RFC 3339, e.g. `2027-01-01T00:00:00Z`) to see what will be due.
    #[arg(long)]
    as_of: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Runs `mandate review`.
pub fn run(args: ReviewArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.remote)?;
    let report = client.get(&format!("/v1/review{}", query(&[("as_of", args.as_of)])))?;
    if args.json {
        return print_json(&report);
    }
    let items = report["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("Nothing is due as of {}.", cell(&report["as_of"]));
        return Ok(());
    }
    let mut rows = Vec::new();
    for item in &items {
        for (i, reason) in item["reasons"].as_array().cloned().unwrap_or_default().iter().enumerate() {
            let (agent, owner, env) = if i == 0 {
                (cell(&item["agent"]), cell(&item["owner"]), cell(&item["environment"]))
            } else {
                (String::new(), String::new(), String::new())
            };
            rows.push(vec![agent, owner, env, cell(&reason["code"]), cell(&reason["message"])]);
        }
    }
    table::print(&["AGENT", "OWNER", "ENV", "REASON", "WHAT TO DO"], &rows);
    println!("\n{} agent(s) need review as of {}.", items.len(), cell(&report["as_of"]));
    Ok(())
}
