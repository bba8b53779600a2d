//! `mandate demo-mcp-server`: the small MCP server the demo puts behind the gateway, over stdio.
//! An ERP of make-believe: `read_ledger`, `match_entries`, `post_journal`, `read_invoices`. It is a
//! plain newline-delimited JSON-RPC loop (MCP 2025-11-25), with no state beyond the process.

use serde_json::{json, Value};
use std::io::{BufRead as _, Write as _};

fn tool(name: &str, description: &str, properties: Value, required: &[&str]) -> Value {
    json!({"name": name, "description": description,
           "inputSchema": {"type": "object", "properties": properties, "required": required}})
}

fn tools() -> Value {
    let period = json!({"type": "string", "description": "The period, YYYY-MM"});
    let account = json!({"type": "string", "description": "The account: ap, ar, gl, ..."});
    json!([
        tool(
            "read_ledger",
            "Reads the entries of one account of the ledger for one period.",
            json!({"period": period, "account": account}),
            &["period", "account"]
        ),
        tool(
            "match_entries",
            "Matches the open entries of one account for one period.",
            json!({"period": period, "account": account}),
            &["period", "account"]
        ),
        tool(
            "post_journal",
            "Posts a journal entry to one account.",
            json!({"period": period, "account": account, "amount": {"type": "string"}}),
            &["period", "account", "amount"]
        ),
        tool("read_invoices", "Lists the invoices of one period.", json!({"period": period}), &["period"]),
    ])
}

fn call(name: &str, args: &Value) -> Value {
    let s = |k: &str| args.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let text = match name {
        "read_ledger" => format!("ledger {}/{}: 3 entries, total 1,250.00 EUR", s("period"), s("account")),
        "match_entries" => format!("{}/{}: 3 entries matched, 0 open", s("period"), s("account")),
        "post_journal" => format!("posted {} to {}/{}", s("amount"), s("period"), s("account")),
        "read_invoices" => format!("{}: 12 invoices, 2 overdue", s("period")),
        _ => return json!({"content": [{"type": "text", "text": format!("no tool `{name}`")}], "isError": true}),
    };
    json!({"content": [{"type": "text", "text": text}]})
}

/// Serves on stdin and stdout until stdin closes.
pub fn run() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        let Some(id) = msg.get("id").cloned() else { continue };
        let Some(method) = msg.get("method").and_then(Value::as_str) else { continue };
        let answer = match method {
            "initialize" => json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}}, "serverInfo": {"name": "mandate-demo-erp", "version": env!("CARGO_PKG_VERSION")}}}),
            "tools/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools()}}),
            "tools/call" => {
                let p = &msg["params"];
                json!({"jsonrpc": "2.0", "id": id, "result": call(p["name"].as_str().unwrap_or(""), &p["arguments"])})
            }
            "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            _ => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "no such method"}}),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    Ok(())
}
