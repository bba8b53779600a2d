//! A Streamable HTTP upstream. The gateway opens an MCP session with `initialize` on first use,
//! keeps the upstream's `Mcp-Session-Id`, and opens a new one when the upstream forgets it (`404`).
//! Answers may come as JSON or as an SSE stream; either way the bytes are bounded and the stream is
//! read only until the answer to the gateway's own request id. The configured headers (the
//! upstream's credential) go with every request; the agent's `Authorization` never does.

use super::{read_reply, request_line, Reply, UpstreamError, UPSTREAM_PROTOCOL};
use serde_json::value::RawValue;
use std::time::Duration;

/// A Streamable HTTP endpoint.
pub struct HttpUpstream {
    name: String,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    client: reqwest::Client,
    timeout: Duration,
    max_bytes: usize,
    max_depth: usize,
    session: tokio::sync::Mutex<Option<Option<String>>>,
}

impl HttpUpstream {
    /// A client for `url`, sending `headers`.
    pub fn new(
        name: &str,
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
        max_bytes: usize,
        max_depth: usize,
    ) -> Result<Self, String> {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            let name =
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header `{k}`: {e}"))?;
            let mut value =
                reqwest::header::HeaderValue::from_str(v).map_err(|_| format!("header `{k}`: not a valid value"))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let url = reqwest::Url::parse(url).map_err(|e| format!("url `{url}`: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            url,
            headers: map,
            client,
            timeout,
            max_bytes,
            max_depth,
            session: tokio::sync::Mutex::new(None),
        })
    }

    /// One request, within the deadline (the handshake included).
    pub async fn request(&self, method: &str, params: Option<&str>) -> Result<Box<RawValue>, UpstreamError> {
        match tokio::time::timeout(self.timeout, self.request_inner(method, params)).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
        }
    }

    async fn request_inner(&self, method: &str, params: Option<&str>) -> Result<Box<RawValue>, UpstreamError> {
        for attempt in 0..2 {
            let session = self.session().await?;
            match self.post(method, params, session.as_deref()).await {
                Err(Forgotten) if attempt == 0 => {
                    tracing::info!(upstream = %self.name, "the upstream forgot its session; opening a new one");
                    *self.session.lock().await = None;
                }
                Err(Forgotten) => break,
                Ok(r) => return r.map(|(raw, _)| raw),
            }
        }
        Err(UpstreamError::Unavailable("the upstream keeps forgetting its session".into()))
    }

    async fn session(&self) -> Result<Option<String>, UpstreamError> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let (_, id) = match self.post("initialize", Some(&super::initialize_params()), None).await {
            Ok(r) => r?,
            Err(Forgotten) => return Err(UpstreamError::Unavailable("the upstream refused to open a session".into())),
        };
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let mut req = self.base(id.as_deref()).body(note);
        req = req.header("content-type", "application/json");
        let _ = req.send().await;
        *guard = Some(id.clone());
        Ok(id)
    }

    fn base(&self, session: Option<&str>) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", UPSTREAM_PROTOCOL);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req
    }

    /// Posts one request; `Err(Forgotten)` when the upstream no longer knows the session.
    async fn post(
        &self,
        method: &str,
        params: Option<&str>,
        session: Option<&str>,
    ) -> Result<Result<(Box<RawValue>, Option<String>), UpstreamError>, Forgotten> {
        let id = super::next_id();
        let body = request_line(id, method, params);
        let sent = self
            .base(session)
            .header("content-type", "application/json")
            .header("mcp-method", method)
            .body(body)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return Ok(Err(UpstreamError::Unavailable(format!("cannot reach it: {}", without_url(&e))))),
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND && session.is_some() {
            return Err(Forgotten);
        }
        if !status.is_success() {
            return Ok(Err(UpstreamError::Unavailable(format!("it answered HTTP {}", status.as_u16()))));
        }
        let session_id = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let mut buf: Vec<u8> = Vec::new();
        let mut scanned = 0;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    return Ok(Err(UpstreamError::Unavailable(format!("reading its answer: {}", without_url(&e)))))
                }
            };
            buf.extend_from_slice(&chunk);
            if buf.len() > self.max_bytes {
                return Ok(Err(UpstreamError::TooLarge(format!("over the gateway's {} byte limit", self.max_bytes))));
            }
            if sse {
                // Events end with a blank line; look at each complete one for our answer.
                while let Some(end) = find_event_end(&buf[scanned..]) {
                    let event = &buf[scanned..scanned + end];
                    scanned += end;
                    if let Some(outcome) = self.event_answer(event, id) {
                        return Ok(outcome.map(|raw| (raw, session_id)));
                    }
                }
            }
        }
        if sse {
            if let Some(outcome) = self.event_answer(&buf[scanned..], id) {
                return Ok(outcome.map(|raw| (raw, session_id)));
            }
            return Ok(Err(UpstreamError::Malformed("the event stream ended without the answer".into())));
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(t) => t,
            Err(_) => return Ok(Err(UpstreamError::Malformed("not UTF-8".into()))),
        };
        Ok(match read_reply(text, self.max_depth) {
            Ok(Reply::Response { id: Some(got), outcome }) if got == id => outcome.map(|raw| (raw, session_id)),
            Ok(Reply::Response { .. }) => Err(UpstreamError::Malformed("an answer to another request id".into())),
            Ok(_) => Err(UpstreamError::Malformed("a request or notification where an answer was due".into())),
            Err(e) => Err(e),
        })
    }

    fn event_answer(&self, event: &[u8], id: u64) -> Option<Result<Box<RawValue>, UpstreamError>> {
        let text = std::str::from_utf8(event).ok()?;
        let data: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
        if data.is_empty() {
            return None;
        }
        let payload = data.join("\n");
        match read_reply(&payload, self.max_depth) {
            Ok(Reply::Response { id: Some(got), outcome }) if got == id => Some(outcome),
            Ok(Reply::Response { id: got, .. }) => {
                tracing::warn!(upstream = %self.name, ?got, "a response to another request id on the stream; dropped");
                None
            }
            Ok(_) => None,
            Err(e @ UpstreamError::TooLarge(_)) => Some(Err(e)),
            Err(e) => {
                tracing::debug!(upstream = %self.name, error = %e, "an event that is not JSON-RPC; ignored");
                None
            }
        }
    }
}

struct Forgotten;

/// An HTTP client error described by its kind only: its text would carry the URL, which may hold
/// a credential in its query.
fn without_url(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "the connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer's body broke off"
    } else {
        "the request failed"
    }
}

fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
