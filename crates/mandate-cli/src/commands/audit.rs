//! `mandate audit`.

use crate::client::{query, Client};
use crate::commands::{cell, print_json};
use crate::{table, Remote};
use clap::Subcommand;

/// Ledger verbs.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print events, oldest first.
    Tail {
        /// Only events about this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only events of this kind (e.g. `agent.suspended`).
        #[arg(long)]
        kind: Option<String>,
        /// Only events after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Runs an audit verb.
pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Tail { agent, kind, after, limit, json, remote } => {
            let client = Client::new(&remote)?;
            let q = query(&[
                ("agent", agent),
                ("kind", kind),
                ("after", after.map(|a| a.to_string())),
                ("limit", Some(limit.to_string())),
            ]);
            let page = client.get(&format!("/v1/audit{q}"))?;
            if json {
                return print_json(&page);
            }
            let rows: Vec<Vec<String>> = page["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|e| {
                    vec![
                        cell(&e["seq"]),
                        format_ms(e["at_ms"].as_i64()),
                        cell(&e["kind"]),
                        cell(&e["actor"]),
                        cell(&e["agent"]),
                        e["detail"].as_str().unwrap_or_default().chars().take(100).collect(),
                    ]
                })
                .collect();
            table::print(&["SEQ", "AT", "KIND", "ACTOR", "AGENT", "DETAIL"], &rows);
            Ok(())
        }
    }
}

/// Unix milliseconds as RFC 3339.
pub fn format_ms(ms: Option<i64>) -> String {
    ms.and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}
