//! `mandate audit`: read, follow, verify, checkpoint and export the ledger; tell a chain's story and
//! a blast radius.

mod render;
mod verify;

use crate::client::{encode, query, Client};
use crate::commands::{cell, print_json};
use crate::{table, Remote};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::io::Write as _;
use std::path::PathBuf;

/// Ledger verbs.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print the newest events (oldest first); `--follow` keeps printing new ones.
    Tail(TailArgs),
    /// Verify the ledger's hash chain and checkpoints, online or (with `--data-dir`) offline against
    /// the database file; exits non-zero naming the first bad sequence number.
    Verify(verify::VerifyArgs),
    /// Export the newest checkpoint (a signed sequence number and hash) to keep outside the server.
    Checkpoint {
        /// Sign a new checkpoint of the head first.
        #[arg(long)]
        new: bool,
        /// Write it to this file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the stored checkpoints.
    Checkpoints {
        /// Only checkpoints after this sequence number.
        #[arg(long)]
        after: Option<i64>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Export events as JSON Lines (verifiable offline with `audit verify --file`) or OCSF.
    Export {
        /// `jsonl` (default) or `ocsf`.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write to this file (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        remote: Remote,
    },
    /// A chain as a tree: who granted what, each delegation, every call with its decision and reasons.
    Chain {
        /// The chain's id (its root mandate's id, printed by `mandate grant`).
        chain_id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Everything an agent, a chain or a human's authority touched, and what is still live.
    BlastRadius(BlastArgs),
}

/// Filters shared by `tail` and `export`; they combine with AND.
#[derive(Debug, Args)]
pub struct Filters {
    /// Only events about this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Only events of chains this human started, done by them, or about them.
    #[arg(long)]
    human: Option<String>,
    /// Only events of this chain.
    #[arg(long)]
    chain: Option<String>,
    /// Only events of this mandate.
    #[arg(long)]
    mandate: Option<String>,
    /// Only events about this tool (`server/tool`).
    #[arg(long)]
    tool: Option<String>,
    /// Only events with this decision (`allow`, `deny`, `approval_required`, ...).
    #[arg(long)]
    decision: Option<String>,
    /// Only events of this kind (`decision`, `agent.suspended`, ...).
    #[arg(long)]
    kind: Option<String>,
    /// Only events since this time: RFC 3339, or an age such as `30m`, `12h`, `7d`.
    #[arg(long)]
    since: Option<String>,
    /// Only events before this time: RFC 3339, or an age.
    #[arg(long)]
    until: Option<String>,
    /// Only events after this sequence number.
    #[arg(long)]
    after: Option<i64>,
}

impl Filters {
    fn pairs(&self) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
        Ok(vec![
            ("agent", self.agent.clone()),
            ("human", self.human.clone()),
            ("chain", self.chain.clone()),
            ("mandate", self.mandate.clone()),
            ("tool", self.tool.clone()),
            ("decision", self.decision.clone()),
            ("kind", self.kind.clone()),
            ("since", self.since.as_deref().map(when).transpose()?),
            ("until", self.until.as_deref().map(when).transpose()?),
            ("after", self.after.map(|a| a.to_string())),
        ])
    }
}

/// `mandate audit tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    filters: Filters,
    /// At most this many events (the newest, unless `--after` is given).
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Keep printing new events as they are appended (until interrupted).
    #[arg(long, short)]
    follow: bool,
    /// How often `--follow` asks, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Print the API's JSON (with `--follow`: one event per line).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// `mandate audit blast-radius`.
#[derive(Debug, Args)]
pub struct BlastArgs {
    /// An agent: what it and every sub-agent under its mandates did.
    #[arg(long, group = "whose")]
    agent: Option<String>,
    /// A chain.
    #[arg(long, group = "whose")]
    chain: Option<String>,
    /// A human: every chain they started.
    #[arg(long, group = "whose")]
    human: Option<String>,
    /// Only events since this time: RFC 3339, or an age such as `30m`, `12h`, `7d`.
    #[arg(long)]
    since: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Runs an audit verb.
pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Tail(args) => tail(args),
        AuditCommand::Verify(args) => verify::run(args),
        AuditCommand::Checkpoint { new, output, remote } => {
            let client = Client::new(&remote)?;
            let checkpoint = if new {
                client.post("/v1/audit/checkpoints", None)?
            } else {
                client.get("/v1/audit/checkpoints/latest")?
            };
            let text = serde_json::to_string_pretty(&checkpoint)?;
            match output {
                Some(path) => {
                    std::fs::write(&path, format!("{text}\n"))
                        .with_context(|| format!("writing `{}`", path.display()))?;
                    eprintln!(
                        "Checkpoint of event {} written to {}; keep it where the server cannot change it, and check \
                         the ledger against it with `mandate audit verify --checkpoint {}`.",
                        cell(&checkpoint["seq"]),
                        path.display(),
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        AuditCommand::Checkpoints { after, json, remote } => {
            let client = Client::new(&remote)?;
            let page = client.get(&format!(
                "/v1/audit/checkpoints{}",
                query(&[("after", after.map(|a| a.to_string())), ("limit", Some("10000".to_owned())),])
            ))?;
            if json {
                return print_json(&page);
            }
            let rows: Vec<Vec<String>> = page["checkpoints"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|c| vec![cell(&c["seq"]), format_ms(c["at_ms"].as_i64()), cell(&c["kid"]), cell(&c["hash"])])
                .collect();
            table::print(&["SEQ", "SIGNED AT", "KEY", "HASH"], &rows);
            Ok(())
        }
        AuditCommand::Export { format, output, filters, remote } => export(&format, output, &filters, &remote),
        AuditCommand::Chain { chain_id, json, remote } => {
            let story = Client::new(&remote)?.get(&format!("/v1/audit/chains/{}", encode(&chain_id)))?;
            if json {
                return print_json(&story);
            }
            print!("{}", render::chain(&story));
            Ok(())
        }
        AuditCommand::BlastRadius(a) => {
            let whose = [("agent", a.agent), ("chain", a.chain), ("human", a.human)];
            let Some((key, value)) = whose.iter().find(|(_, v)| v.is_some()) else {
                bail!("name whose blast radius: --agent, --chain or --human");
            };
            let since = a.since.as_deref().map(when).transpose()?;
            let q = query(&[(key, value.clone()), ("since", since)]);
            let radius = Client::new(&a.remote)?.get(&format!("/v1/audit/blast-radius{q}"))?;
            if a.json {
                return print_json(&radius);
            }
            print!("{}", render::blast_radius(&radius));
            Ok(())
        }
    }
}

fn tail(a: TailArgs) -> anyhow::Result<()> {
    let client = Client::new(&a.remote)?;
    let mut pairs = a.filters.pairs()?;
    let newest = a.filters.after.is_none();
    pairs.push(("limit", Some(a.limit.to_string())));
    pairs.push(("newest", newest.then(|| "true".to_owned())));
    let page = client.get(&format!("/v1/audit{}", query(&pairs)))?;
    let events = page["events"].as_array().cloned().unwrap_or_default();
    if a.json && !a.follow {
        return print_json(&page);
    }
    let mut last = events.last().and_then(|e| e["seq"].as_i64()).or(a.filters.after).unwrap_or(0);
    print_events(&events, a.json, true);
    if !a.follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(a.interval_ms.max(100)));
        let mut pairs = a.filters.pairs()?;
        pairs.retain(|(k, _)| *k != "after");
        pairs.push(("after", Some(last.to_string())));
        pairs.push(("limit", Some("1000".to_owned())));
        let page = client.get(&format!("/v1/audit{}", query(&pairs)))?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if let Some(seq) = events.last().and_then(|e| e["seq"].as_i64()) {
            last = seq;
        }
        print_events(&events, a.json, false);
        std::io::stdout().flush()?;
    }
}

fn print_events(events: &[Value], json: bool, header: bool) {
    if json {
        for e in events {
            println!("{e}");
        }
        return;
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                cell(&e["seq"]),
                format_ms(e["at_ms"].as_i64()),
                cell(&e["kind"]),
                cell(&e["actor"]),
                cell(&e["agent"]),
                cell(&e["decision"]),
                [e["tool"].as_str(), e["resource"].as_str()].into_iter().flatten().collect::<Vec<_>>().join(" "),
                render::summary(e),
            ]
            .into_iter()
            .map(|cell| table::visible(&cell).into_owned())
            .collect()
        })
        .collect();
    if header {
        table::print(&["SEQ", "AT", "KIND", "ACTOR", "AGENT", "DECISION", "TOOL / RESOURCE", "DETAIL"], &rows);
    } else {
        // Following: the columns of later pages need not line up with the first.
        for row in rows {
            println!("{}", row.join("  "));
        }
    }
}

fn export(format: &str, output: Option<PathBuf>, filters: &Filters, remote: &Remote) -> anyhow::Result<()> {
    let Some(token) = remote.token.clone().filter(|t| !t.is_empty()) else {
        bail!("set MANDATE_TOKEN (or --token) to an API key of an admin or auditor");
    };
    let mut pairs = filters.pairs()?;
    pairs.push(("format", Some(format.to_owned())));
    let url = format!("{}/v1/audit/export{}", remote.url.trim_end_matches('/'), query(&pairs));
    let response = match ureq::get(&url).set("Authorization", &format!("Bearer {token}")).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(status, r)) => {
            let problem: Value = r.into_json().unwrap_or(Value::Null);
            bail!(
                "{} ({status} {})",
                problem["detail"].as_str().unwrap_or("no detail given"),
                problem["code"].as_str().unwrap_or("unknown")
            )
        }
        Err(e) => bail!("cannot reach the Mandate server at {}: {e}", remote.url),
    };
    let mut reader = response.into_reader();
    match output {
        Some(path) => {
            let mut file = std::fs::File::create(&path).with_context(|| format!("creating `{}`", path.display()))?;
            let bytes = std::io::copy(&mut reader, &mut file).context("reading the export")?;
            file.sync_all()?;
            let lines = std::fs::read(&path).map(|b| b.iter().filter(|c| **c == b'\n').count()).unwrap_or(0);
            eprintln!("{lines} events ({bytes} bytes, {format}) written to {}.", path.display());
        }
        None => {
            std::io::copy(&mut reader, &mut std::io::stdout().lock()).context("reading the export")?;
        }
    }
    Ok(())
}

/// A time for the server: RFC 3339 as given, or an age (`90s`, `30m`, `12h`, `7d`) before now.
fn when(text: &str) -> anyhow::Result<String> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(text, rfc3339).is_ok() {
        return Ok(text.to_owned());
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let seconds = match (number.parse::<i64>(), unit) {
        (Ok(n), "s") => n,
        (Ok(n), "m") => n * 60,
        (Ok(n), "h") => n * 3600,
        (Ok(n), "d") => n * 86_400,
        _ => bail!("`{text}` is neither an RFC 3339 time (2026-11-01T09:00:00Z) nor an age such as 30m, 12h or 7d"),
    };
    let at = time::OffsetDateTime::now_utc() - time::Duration::seconds(seconds);
    Ok(at.replace_nanosecond(0).unwrap_or(at).format(rfc3339)?)
}

/// Unix milliseconds as RFC 3339.
pub fn format_ms(ms: Option<i64>) -> String {
    ms.and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}
