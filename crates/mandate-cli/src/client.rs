//! A small blocking client for the server's API; problem documents become one-line errors.

use crate::Remote;
use anyhow::{anyhow, bail};
use serde_json::Value;

/// A client bound to a server and a credential.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client from `--url`/`MANDATE_URL` and `--token`/`MANDATE_TOKEN`.
    pub fn new(remote: &Remote) -> anyhow::Result<Self> {
        let Some(token) = remote.token.clone().filter(|t| !t.is_empty()) else {
            bail!("set MANDATE_TOKEN (or --token) to an API key: the administrator token printed at the server's first start, or a human's key");
        };
        let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(30)).build();
        Ok(Self { base: remote.url.trim_end_matches('/').to_owned(), token, agent })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send("GET", path, None)
    }

    /// `POST path` with an optional JSON body.
    pub fn post(&self, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.send("POST", path, body)
    }

    /// `PATCH path` with a JSON body.
    pub fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send("PATCH", path, Some(body))
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send("PUT", path, Some(body))
    }

    /// `PUT path` with a text body.
    pub fn put_text(&self, path: &str, text: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = self.agent.request("PUT", &url).set("Authorization", &format!("Bearer {}", self.token));
        self.answer(request.set("Content-Type", "text/plain").send_string(text))
    }

    /// `DELETE path`; the answer has no body.
    pub fn delete(&self, path: &str) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let request = self.agent.request("DELETE", &url).set("Authorization", &format!("Bearer {}", self.token));
        match request.call() {
            Ok(_) => Ok(()),
            Err(e) => self.answer(Err(e)).map(|_| ()),
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let request = self.agent.request(method, &url).set("Authorization", &format!("Bearer {}", self.token));
        let result = match body {
            Some(b) => request.send_json(b),
            None => request.call(),
        };
        self.answer(result)
    }

    fn answer(&self, result: Result<ureq::Response, ureq::Error>) -> anyhow::Result<Value> {
        match result {
            Ok(response) => response.into_json().map_err(|e| anyhow!("the server's answer is not JSON: {e}")),
            Err(ureq::Error::Status(status, response)) => {
                let problem: Value = response.into_json().unwrap_or(Value::Null);
                let detail = problem["detail"].as_str().unwrap_or("no detail given");
                let code = problem["code"].as_str().unwrap_or("unknown");
                bail!("{detail} ({status} {code})")
            }
            Err(ureq::Error::Transport(t)) => {
                bail!(
                    "cannot reach the Mandate server at {}: {t} (is `mandate serve` running? is MANDATE_URL right?)",
                    self.base
                )
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `?a=b&c=d` from the present pairs.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}
