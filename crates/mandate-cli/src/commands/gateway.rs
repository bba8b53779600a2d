//! What the MCP gateway saw: `mandate discover` (clients without a valid mandate) and
//! `mandate tools pins|diff|approve` (pinned tool definitions and their changes).

use crate::client::{encode, Client};
use crate::commands::{cell, print_json};
use crate::{table, Remote};
use anyhow::bail;
use serde_json::{json, Value};

/// `mandate discover`.
#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Lists clients seen at the gateway without a valid mandate, most recent first.
pub fn discover(args: DiscoverArgs) -> anyhow::Result<()> {
    let list = Client::new(&args.remote)?.get("/v1/discovered")?;
    if args.json {
        return print_json(&list);
    }
    let clients = list["clients"].as_array().cloned().unwrap_or_default();
    if clients.is_empty() {
        println!("No client reached the gateway without a valid mandate.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = clients
        .iter()
        .map(|c| {
            let servers: Vec<String> =
                c["servers"].as_array().map(|a| a.iter().map(cell).collect()).unwrap_or_default();
            let client = match (c["client_name"].as_str(), c["client_version"].as_str()) {
                (Some(n), Some(v)) => format!("{n} {v}"),
                (Some(n), None) => n.to_owned(),
                _ => cell(&c["user_agent"]),
            };
            vec![
                client,
                cell(&c["key_thumbprint"]),
                cell(&c["source"]),
                servers.join(","),
                cell(&c["requests"]),
                cell(&c["last_reason"]),
                cell(&c["first_seen"]),
                cell(&c["last_seen"]),
            ]
        })
        .collect();
    table::print(
        &["CLIENT", "KEY THUMBPRINT", "SOURCE", "SERVERS", "REQUESTS", "LAST REASON", "FIRST SEEN", "LAST SEEN"],
        &rows,
    );
    Ok(())
}

fn tool_path(tool: &str) -> anyhow::Result<String> {
    let Some((server, name)) = tool.split_once('/') else { bail!("the tool must be `server/tool`") };
    Ok(format!("/v1/tools/{}/{}", encode(server), encode(name)))
}

/// `mandate tools pins`.
pub fn pins(json: bool, remote: &Remote) -> anyhow::Result<()> {
    let list = Client::new(remote)?.get("/v1/tools/pins")?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list["pins"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let state = if p["pending_sha256"].is_string() { "waits for approval" } else { "pinned" };
            let flags: Vec<String> = p["flags"].as_array().map(|a| a.iter().map(cell).collect()).unwrap_or_default();
            vec![
                cell(&p["name"]),
                state.to_owned(),
                cell(&p["pinned_sha256"]).chars().take(16).collect(),
                flags.join(","),
                cell(&p["updated_at"]),
                cell(&p["updated_by"]),
            ]
        })
        .collect();
    table::print(&["TOOL", "STATE", "PINNED SHA-256", "FLAGS", "UPDATED", "BY"], &rows);
    Ok(())
}

/// `mandate tools diff <server>/<tool>`: the pinned definition against the one waiting, line by
/// line, every control character shown escaped (a poisoned description cannot redraw the
/// terminal).
pub fn diff(tool: &str, json: bool, remote: &Remote) -> anyhow::Result<()> {
    let d = Client::new(remote)?.get(&format!("{}/diff", tool_path(tool)?))?;
    if json {
        return print_json(&d);
    }
    let pretty =
        |v: &Value| if v.is_null() { String::new() } else { serde_json::to_string_pretty(v).unwrap_or_default() };
    let (old, new) = (pretty(&d["pinned"]), pretty(&d["pending"]));
    println!("tool      {}", table::visible(&cell(&d["name"])));
    println!("pinned    {}", cell(&d["pinned_sha256"]));
    println!("waiting   {}", cell(&d["pending_sha256"]));
    let flags: Vec<String> = d["flags"].as_array().map(|a| a.iter().map(cell).collect()).unwrap_or_default();
    if !flags.is_empty() {
        println!("flags     {}", flags.join(", "));
    }
    if d["pending"].is_null() {
        println!("\nNo changed definition waits for approval.");
        return Ok(());
    }
    println!();
    let text = similar::TextDiff::from_lines(&old, &new);
    for change in text.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => "-",
            similar::ChangeTag::Insert => "+",
            similar::ChangeTag::Equal => " ",
        };
        println!("{sign} {}", table::visible(change.value().trim_end_matches('\n')));
    }
    println!("\nApprove with: mandate tools approve {} --sha256 {}", table::visible(tool), cell(&d["pending_sha256"]));
    Ok(())
}

/// `mandate tools approve <server>/<tool>`.
pub fn approve(tool: &str, sha256: Option<&str>, remote: &Remote) -> anyhow::Result<()> {
    let body = match sha256 {
        Some(s) => json!({"sha256": s}),
        None => json!({}),
    };
    let d = Client::new(remote)?.post(&format!("{}/approve", tool_path(tool)?), Some(&body))?;
    println!(
        "{} is pinned at {}: shown and callable again.",
        table::visible(&cell(&d["name"])),
        cell(&d["pinned_sha256"])
    );
    Ok(())
}
