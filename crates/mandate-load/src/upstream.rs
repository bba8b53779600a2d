//! The fast upstream of the gateway benchmark: an MCP server over Streamable HTTP (2025-11-25, JSON
//! answers) whose one tool, `echo`, answers at once. Hand-written on `httparse`, so that the
//! upstream costs as little as possible of the CPU the measured gateways share with it.

use anyhow::Context as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Starts the server on a free loopback port; answers its address.
pub async fn start() -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the fast upstream")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream));
        }
    });
    Ok(addr)
}

fn answer(body: &[u8]) -> (Value, bool) {
    let msg: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let id = msg.get("id").cloned().unwrap_or(Value::Null);
    let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
    let result = match method {
        "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                               "serverInfo": {"name": "fast-upstream", "version": "1"}}),
        "tools/list" => json!({"tools": [{"name": "echo", "description": "Answers at once.",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]}),
        "tools/call" => {
            let text = msg["params"]["arguments"]["text"].as_str().unwrap_or("").to_owned();
            json!({"content": [{"type": "text", "text": text}]})
        }
        _ => json!({}),
    };
    (json!({"jsonrpc": "2.0", "id": id, "result": result}), method == "initialize")
}

async fn serve(mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        // One request: its head, then its Content-Length body.
        let (head_len, body_len, notification) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let len = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (n, len, req.method == Some("DELETE"));
                }
                Ok(httparse::Status::Partial) => match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                Err(_) => return,
            }
        };
        while buf.len() < head_len + body_len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_len..head_len + body_len].to_vec();
        buf.drain(..head_len + body_len);
        let is_notification =
            notification || serde_json::from_slice::<Value>(&body).map(|v| v.get("id").is_none()).unwrap_or(true);
        let response = if is_notification {
            "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_owned()
        } else {
            let (value, init) = answer(&body);
            let text = value.to_string();
            let session = if init { "mcp-session-id: fast-upstream-session\r\n" } else { "" };
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{session}content-length: {}\r\n\r\n{text}",
                text.len()
            )
        };
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
