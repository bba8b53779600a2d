//! `mandate mcp tools|call`: an MCP client of the gateway, as an agent would be one: it speaks the
//! stateless revision 2026-07-28 to `/mcp/{server}`, with `Authorization: DPoP <mandate>` and a
//! fresh DPoP proof signed by the agent's key on every request.

use crate::commands::mandate::{random_id, read_token, signing_key};
use crate::commands::print_json;
use crate::table;
use anyhow::{bail, Context as _};
use mandate_core::jose::{sign_proof, ProofClaims};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// What every `mandate mcp` verb needs.
#[derive(Debug, clap::Args)]
pub struct Agent {
    /// The gateway server's name (`/mcp/<server>`).
    #[arg(long)]
    server: String,
    /// The agent's mandate token, or `@FILE`.
    #[arg(long)]
    token: String,
    /// The agent's private key (a JWK file with `d`), to sign the proofs.
    #[arg(long)]
    key: PathBuf,
    /// Print the JSON-RPC answer.
    #[arg(long)]
    json: bool,
    /// Mandate's URL.
    #[arg(long, env = "MANDATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

/// `mandate mcp`.
#[derive(Debug, clap::Subcommand)]
pub enum McpCommand {
    /// The tools the mandate shows at a gateway server.
    Tools(Agent),
    /// Call a tool through the gateway (exit 0 result, 1 refused or failed, 2 held for approval).
    Call {
        #[command(flatten)]
        agent: Agent,
        /// The tool's name at the server (without `server/`).
        #[arg(long)]
        tool: String,
        /// Its arguments as JSON.
        #[arg(long, default_value = "{}")]
        arguments: String,
        /// Retry a held call with its approval.
        #[arg(long)]
        approval_id: Option<String>,
    },
}

fn rpc(agent: &Agent, method: &str, name: Option<&str>, params: Value) -> anyhow::Result<(u16, Value)> {
    let token = read_token(&agent.token)?;
    let key = signing_key(&agent.key)?;
    let url = format!("{}/mcp/{}", agent.url.trim_end_matches('/'), agent.server);
    let iat = time::OffsetDateTime::now_utc().unix_timestamp();
    let jti = random_id();
    let proof = sign_proof(&ProofClaims { jti: &jti, htm: "POST", htu: &url, iat, access_token: Some(&token) }, &key)
        .context("signing the proof")?;
    let mut params = params;
    // The 2026-07-28 envelope, beside whatever `_meta` the call carries (its approval id).
    let mut meta = params.get("_meta").cloned().unwrap_or_else(|| json!({}));
    meta["io.modelcontextprotocol/protocolVersion"] = json!("2026-07-28");
    meta["io.modelcontextprotocol/clientCapabilities"] = json!({});
    meta["io.modelcontextprotocol/clientInfo"] = json!({"name": "mandate-cli", "version": env!("CARGO_PKG_VERSION")});
    params["_meta"] = meta;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let mut req = ureq::post(&url)
        .set("Content-Type", "application/json")
        .set("Accept", "application/json, text/event-stream")
        .set("MCP-Protocol-Version", "2026-07-28")
        .set("Mcp-Method", method)
        .set("Authorization", &format!("DPoP {token}"))
        .set("DPoP", &proof);
    if let Some(n) = name {
        req = req.set("Mcp-Name", n);
    }
    let resp = match req.send_string(&body.to_string()) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => bail!("cannot reach {url}: {e}"),
    };
    let status = resp.status();
    let value: Value = resp.into_json().unwrap_or(Value::Null);
    Ok((status, value))
}

fn refused(v: &Value) -> String {
    let e = &v["error"];
    let code = e["data"]["code"].as_str().or_else(|| e["data"]["reasons"][0]["code"].as_str()).unwrap_or("");
    format!("{} ({})", table::visible(e["message"].as_str().unwrap_or("refused")), code)
}

/// Runs a `mandate mcp` verb.
pub fn run(cmd: McpCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        McpCommand::Tools(agent) => {
            let (_, v) = rpc(&agent, "tools/list", None, json!({}))?;
            if agent.json {
                print_json(&v)?;
            } else if v["error"].is_object() {
                bail!("{}", refused(&v));
            } else {
                let rows: Vec<Vec<String>> = v["result"]["tools"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|t| {
                        vec![
                            table::visible(t["name"].as_str().unwrap_or("")).into_owned(),
                            table::visible(t["description"].as_str().unwrap_or("")).into_owned(),
                        ]
                    })
                    .collect();
                table::print(&["TOOL", "DESCRIPTION"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::Call { agent, tool, arguments, approval_id } => {
            let arguments: Value = serde_json::from_str(&arguments).context("--arguments must be JSON")?;
            let mut params = json!({"name": tool, "arguments": arguments});
            if let Some(id) = approval_id {
                params["_meta"] = json!({"mandate/approval_id": id});
            }
            let (_, v) = rpc(&agent, "tools/call", Some(&tool), params)?;
            if agent.json {
                print_json(&v)?;
            }
            if v["error"].is_object() {
                if !agent.json {
                    eprintln!("error: {}", refused(&v));
                }
                return Ok(ExitCode::from(1));
            }
            let result = &v["result"];
            let text: Vec<String> = result["content"]
                .as_array()
                .map(|c| c.iter().filter_map(|p| p["text"].as_str()).map(|t| table::visible(t).into_owned()).collect())
                .unwrap_or_default();
            if !agent.json {
                println!("{}", text.join("\n"));
            }
            if result["isError"] == true {
                let held = result["structuredContent"]["decision"] == "approval_required";
                return Ok(ExitCode::from(if held { 2 } else { 1 }));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
