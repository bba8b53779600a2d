//! The `mandate` command line: `mandate serve` runs the server; every other verb is a client of its
//! HTTP API at `MANDATE_URL`, authenticated with `MANDATE_TOKEN`.
//!
//! Errors are one line on standard error and a non-zero exit; reads print tables for people and, with
//! `--json`, the API's JSON for programs.
#![forbid(unsafe_code)]

mod client;
mod commands;
pub mod config;
mod demo_upstream;
mod serve;
mod table;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Runtime identity and authorization for enterprise AI agents.
#[derive(Debug, Parser)]
#[command(name = "mandate", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the client finds the server.
#[derive(Debug, clap::Args)]
pub struct Remote {
    /// The server's URL.
    #[arg(long, env = "MANDATE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// An API key: the admin token printed at first start, or a human's key.
    #[arg(long, env = "MANDATE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Register, inspect and manage agents and their lifecycle.
    #[command(subcommand)]
    Agent(commands::agent::AgentCommand),
    /// Manage development humans (in production, humans come from your IdP).
    #[command(subcommand)]
    Human(commands::human::HumanCommand),
    /// Show what in the registry needs a human: overdue certifications, orphans, stale agents, ...
    Review(commands::review::ReviewArgs),
    /// Grant an agent a mandate for one task (as a human).
    Grant(commands::mandate::GrantArgs),
    /// Delegate part of a mandate to a sub-agent (RFC 8693 token exchange, signed with both agents' keys).
    Delegate(commands::mandate::DelegateArgs),
    /// Revoke a mandate and its descendants, a whole chain, or everything a human granted.
    Revoke(commands::mandate::RevokeArgs),
    /// Show a mandate chain as a tree.
    Chain(commands::mandate::ChainArgs),
    /// Decide one tool call without making it (exit 0 allow, 1 deny, 2 approval required).
    Check(commands::decide::CheckArgs),
    /// The human approval queue: list, approve, deny.
    #[command(subcommand)]
    Approvals(commands::decide::ApprovalsCommand),
    /// Organisation policy as code: validate and test offline, get and put on the server.
    #[command(subcommand)]
    Policy(commands::decide::PolicyCommand),
    /// The tool catalogue: list and classify tools; the gateway's pinned definitions, their diffs
    /// and approval.
    #[command(subcommand)]
    Tools(commands::decide::ToolsCommand),
    /// Drift from intent: the taxonomy of intent categories, and what each kind of task has been
    /// seen to do (profiles, reset).
    #[command(subcommand)]
    Drift(commands::drift::DriftCommand),
    /// Clients seen at the MCP gateway without a valid mandate (shadow agents).
    Discover(commands::gateway::DiscoverArgs),
    /// Be an agent at the MCP gateway: list the tools a mandate shows, call one.
    #[command(subcommand)]
    Mcp(commands::mcp::McpCommand),
    /// The demo's MCP server (an ERP of make-believe) on stdin and stdout; the demo starts it.
    #[command(hide = true)]
    DemoMcpServer,
    /// List or rotate the mandate signing keys.
    #[command(subcommand)]
    Keys(commands::mandate::KeysCommand),
    /// Read the event ledger.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Agent(cmd) => commands::agent::run(cmd),
        Command::Human(cmd) => commands::human::run(cmd),
        Command::Review(args) => commands::review::run(args),
        Command::Audit(cmd) => commands::audit::run(cmd),
        Command::Grant(a) => commands::mandate::grant(a),
        Command::Delegate(a) => commands::mandate::delegate(a),
        Command::Revoke(a) => commands::mandate::revoke(a),
        Command::Chain(a) => commands::mandate::chain(a),
        Command::Keys(cmd) => commands::mandate::keys(cmd),
        Command::Check(a) => return exit(commands::decide::check(a)),
        Command::Approvals(cmd) => commands::decide::approvals(cmd),
        Command::Policy(cmd) => commands::decide::policy(cmd),
        Command::Tools(cmd) => commands::decide::tools(cmd),
        Command::Discover(a) => commands::gateway::discover(a),
        Command::Drift(cmd) => commands::drift::run(cmd),
        Command::Mcp(cmd) => return exit(commands::mcp::run(cmd)),
        Command::DemoMcpServer => demo_upstream::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(ToString::to_string).collect::<Vec<_>>().join(": ")
}

/// Reads a JSON document from a file, or standard input for `-`.
fn read_json(path: &PathBuf) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))
}
