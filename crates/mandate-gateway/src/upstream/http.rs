//! A Streamable HTTP upstream. The gateway opens an MCP session with `initialize` on first use,
//! keeps the upstream's `Mcp-Session-Id`, and opens a new one when the upstream forgets it (`404`).
//! Answers may come as JSON or as an SSE stream; either way the bytes are bounded and the stream is
//! read only until the answer to the gateway's own request id. The configured headers (the
//! upstream's credential) go with every request; the agent's `Authorization` never does.

use super::{read_reply, request_line, Reply, UpstreamError, UPSTREAM_PROTOCOL};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Body as _;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Idle connections kept per upstream, at most; more are closed when their call ends.
const MAX_IDLE: usize = 256;

/// How long an idle connection is kept: one unused longer may have died silently on the way (a
/// NAT or firewall forgetting it), and a call written into it would wait out its whole deadline.
const IDLE_FOR: Duration = Duration::from_secs(60);

/// A Streamable HTTP endpoint.
///
/// Each call takes an idle keep-alive connection (or opens one) and drives it itself: the request's
/// own task writes the request and reads the answer, with no connection task beside it to hand the
/// bytes over and wake. Under load that hand-off (and the wake-ups of a general client's pool) cost
/// more CPU than the HTTP itself, all of it the gateway's alone.
pub struct HttpUpstream {
    name: String,
    target: Target,
    headers: HeaderMap,
    tls: Option<tokio_rustls::TlsConnector>,
    idle: std::sync::Mutex<Vec<Conn>>,
    timeout: Duration,
    max_bytes: usize,
    max_depth: usize,
    session: tokio::sync::Mutex<Option<Option<String>>>,
}

/// Where the endpoint is.
struct Target {
    /// To connect to (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// The `Host` header.
    authority: HeaderValue,
    /// The request target (origin form).
    path: hyper::Uri,
}

/// One keep-alive HTTP/1.1 connection: the handle to send on, and the connection's own future,
/// which moves its bytes only while someone polls it (see [`Conn::drive`]).
struct Conn {
    send: SendRequest<Full<Bytes>>,
    io: Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>,
    ended: bool,
    /// When its last exchange ended.
    idle_since: std::time::Instant,
}

impl Conn {
    /// HTTP/1.1 over `io` (a TCP stream, or TLS over one).
    async fn handshake<T>(io: T) -> Result<Self, hyper::Error>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(io)).await?;
        Ok(Self { send, io: Box::pin(conn), ended: false, idle_since: std::time::Instant::now() })
    }

    /// Polls `fut` and the connection together until `fut` is ready; `None` when the connection
    /// ended and `fut` cannot finish without it.
    async fn drive<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if !self.ended && self.io.as_mut().poll(cx).is_ready() {
                self.ended = true;
            }
            match fut.as_mut().poll(cx) {
                Poll::Ready(out) => Poll::Ready(Some(out)),
                Poll::Pending if self.ended => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Whether an idle connection can take a request: the upstream has not closed it meanwhile.
    fn usable(&mut self) -> bool {
        if self.ended || self.send.is_closed() || self.idle_since.elapsed() > IDLE_FOR {
            return false;
        }
        // One poll without a waker reads what arrived while it was idle (a close, say); the next
        // poll, in `drive`, registers the caller's waker.
        let mut cx = Context::from_waker(Waker::noop());
        if self.io.as_mut().poll(&mut cx).is_ready() {
            self.ended = true;
            return false;
        }
        self.send.is_ready()
    }
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
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header `{k}`: {e}"))?;
            // The gateway frames each message itself; a configured header must not reframe it.
            if [
                hyper::header::HOST,
                hyper::header::CONTENT_LENGTH,
                hyper::header::TRANSFER_ENCODING,
                hyper::header::CONNECTION,
            ]
            .contains(&name)
            {
                return Err(format!("header `{k}`: set by the gateway itself, not configurable"));
            }
            let mut value = HeaderValue::from_str(v).map_err(|_| format!("header `{k}`: not a valid value"))?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        let url = url.trim();
        // Errors name the URL without its user information and query, where credentials hide.
        let shown = {
            let no_query = url.split(['?', '#']).next().unwrap_or_default();
            match no_query.split_once("://") {
                Some((scheme, rest)) => {
                    format!("{scheme}://{}", rest.rsplit_once('@').map_or(rest, |(_, host)| host))
                }
                None => "(not a URL)".to_owned(),
            }
        };
        let uri: hyper::Uri = url.parse().map_err(|e| format!("url `{shown}`: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("url `{shown}`: only http:// and https:// upstreams are supported")),
        };
        let authority = uri.authority().ok_or_else(|| format!("url `{shown}`: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("url `{shown}`: put the upstream's credential in `headers`, not in the URL"));
        }
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(format!("url `{shown}`: no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path: hyper::Uri =
            uri.path_and_query().map_or("/", |p| p.as_str()).parse().map_err(|e| format!("url `{shown}`: {e}"))?;
        let target = Target {
            authority: HeaderValue::from_str(authority.as_str()).map_err(|_| format!("url `{shown}`: a bad host"))?,
            host,
            port,
            path,
        };
        let tls = https.then(|| {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    let mut config = b.with_root_certificates(roots).with_no_client_auth();
                    config.alpn_protocols = vec![b"http/1.1".to_vec()];
                    tokio_rustls::TlsConnector::from(Arc::new(config))
                })
                .map_err(|e| format!("TLS: {e}"))
        });
        Ok(Self {
            name: name.to_owned(),
            target,
            headers: map,
            tls: tls.transpose()?,
            idle: std::sync::Mutex::new(Vec::new()),
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
        // Its answer (202, no body) matters to no one; a failure shows on the next request.
        // A connection whose answer is still open (an event stream, a body without a length) is
        // dropped rather than read: nothing in it is for the gateway.
        if let Ok((resp, conn)) = self.exchange(self.message(id.as_deref(), None, note.to_owned())).await {
            if resp.body().is_end_stream() {
                self.release(conn);
            }
        }
        *guard = Some(id.clone());
        Ok(id)
    }

    /// A POST of `body`, with the configured headers (the upstream's credential).
    fn message(&self, session: Option<&str>, method: Option<&str>, body: String) -> hyper::Request<Full<Bytes>> {
        let mut req = hyper::Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = self.target.path.clone();
        let h = req.headers_mut();
        h.clone_from(&self.headers);
        h.insert(hyper::header::HOST, self.target.authority.clone());
        h.insert(hyper::header::ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
        h.insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("mcp-protocol-version", HeaderValue::from_static(UPSTREAM_PROTOCOL));
        if let Some(m) = method.and_then(|m| HeaderValue::from_str(m).ok()) {
            h.insert("mcp-method", m);
        }
        if let Some(s) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
            h.insert("mcp-session-id", s);
        }
        req
    }

    /// An idle connection, or a new one.
    async fn connection(&self) -> Result<Conn, UpstreamError> {
        loop {
            let popped = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match popped {
                Some(mut c) => {
                    if c.usable() {
                        return Ok(c);
                    }
                }
                None => break,
            }
        }
        let unreachable = |what: &str| UpstreamError::Unavailable(format!("cannot reach it: {what}"));
        let tcp = tokio::net::TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(|_| unreachable("the connection failed"))?;
        let _ = tcp.set_nodelay(true);
        let conn = match &self.tls {
            None => Conn::handshake(tcp).await,
            Some(tls) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.target.host.clone())
                    .map_err(|_| unreachable("not a TLS server name"))?;
                let stream = tls.connect(name, tcp).await.map_err(|_| unreachable("the TLS handshake failed"))?;
                Conn::handshake(stream).await
            }
        };
        conn.map_err(|_| unreachable("the connection failed"))
    }

    /// Hands a connection whose exchange ended cleanly back for the next call.
    fn release(&self, mut conn: Conn) {
        if !conn.ended && !conn.send.is_closed() {
            conn.idle_since = std::time::Instant::now();
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            // The stale ones sit at the bottom of the stack: close them as the stack is used.
            while idle.first().is_some_and(|c| c.idle_since.elapsed() > IDLE_FOR) {
                idle.remove(0);
            }
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    /// Sends `req` and answers the response's head, with the connection it arrived on. A request
    /// the connection never wrote (it was closed while idle) is sent once more on another; a written
    /// one never is, since a tool call must not run twice.
    async fn exchange(
        &self,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<(hyper::Response<hyper::body::Incoming>, Conn), UpstreamError> {
        let mut req = req;
        for _ in 0..2 {
            let mut conn = self.connection().await?;
            let mut sent = std::pin::pin!(conn.send.try_send_request(req));
            let mut failed = match conn.drive(sent.as_mut()).await {
                Some(Ok(resp)) => return Ok((resp, conn)),
                Some(Err(e)) => e,
                None => {
                    // The connection ended with the request still queued or under way: dropping it
                    // hands back a request it never wrote.
                    drop(conn);
                    match sent.await {
                        Err(e) => e,
                        Ok(_) => {
                            return Err(UpstreamError::Unavailable("the request failed: the connection closed".into()))
                        }
                    }
                }
            };
            match failed.take_message() {
                Some(unsent) => req = unsent,
                None => {
                    return Err(UpstreamError::Unavailable(format!("the request failed: {}", kind(failed.error()))))
                }
            }
        }
        Err(UpstreamError::Unavailable("cannot reach it: the connection keeps closing".into()))
    }

    /// Posts one request; `Err(Forgotten)` when the upstream no longer knows the session.
    async fn post(
        &self,
        method: &str,
        params: Option<&str>,
        session: Option<&str>,
    ) -> Result<Result<(Box<RawValue>, Option<String>), UpstreamError>, Forgotten> {
        let id = super::next_id();
        let req = self.message(session, Some(method), request_line(id, method, params));
        let (resp, mut conn) = match self.exchange(req).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let status = resp.status();
        let session_id = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let sse = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        let mut body = resp.into_body();
        if status == hyper::StatusCode::NOT_FOUND && session.is_some() {
            return Err(Forgotten);
        }
        if !status.is_success() {
            return Ok(Err(UpstreamError::Unavailable(format!("it answered HTTP {}", status.as_u16()))));
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut events = EventEnds::default();
        loop {
            let frame = match conn.drive(body.frame()).await {
                Some(Some(Ok(frame))) => frame,
                // The end of the body: the connection is clean, and kept for the next call.
                Some(None) => break,
                Some(Some(Err(e))) => {
                    return Ok(Err(UpstreamError::Unavailable(format!("reading its answer: {}", kind(&e)))))
                }
                None => return Ok(Err(UpstreamError::Unavailable("reading its answer: the connection closed".into()))),
            };
            let Ok(chunk) = frame.into_data() else { continue };
            // Checked before the bytes are kept, so that no frame takes the buffer past the limit.
            if buf.len().saturating_add(chunk.len()) > self.max_bytes {
                return Ok(Err(UpstreamError::TooLarge(format!("over the gateway's {} byte limit", self.max_bytes))));
            }
            buf.extend_from_slice(&chunk);
            if sse {
                // Events end with a blank line; look at each complete one for our answer. The
                // stream may go on after it, so this connection is not reused.
                while let Some(event) = events.next(&buf) {
                    if let Some(outcome) = self.event_answer(&buf[event], id) {
                        return Ok(outcome.map(|raw| (raw, session_id)));
                    }
                }
            }
        }
        self.release(conn);
        if sse {
            if let Some(outcome) = self.event_answer(&buf[events.start..], id) {
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

/// An HTTP error described by its kind only: its text could carry what the upstream sent.
fn kind(e: &hyper::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_incomplete_message() || e.is_body_write_aborted() {
        "the answer broke off"
    } else if e.is_parse() {
        "not HTTP"
    } else if e.is_closed() || e.is_canceled() {
        "the connection closed"
    } else {
        "the exchange failed"
    }
}

/// Finds the events of a growing SSE buffer, each byte looked at a bounded number of times: an
/// upstream that sends one long event a byte at a time costs a linear scan, not a quadratic one.
#[derive(Default)]
struct EventEnds {
    /// Where the event being read starts (the end of the last one found).
    start: usize,
    /// How far past `start` the buffer was searched without finding an end.
    searched: usize,
    /// Bytes looked at so far, for the test of linearity.
    #[cfg(test)]
    looked: usize,
}

impl EventEnds {
    /// The next complete event in `buf` (events end with a blank line: `\n\n` or `\r\n\r\n`),
    /// as a range of `buf`; `None` until more bytes come.
    fn next(&mut self, buf: &[u8]) -> Option<std::ops::Range<usize>> {
        let pending = buf.get(self.start..)?;
        // A terminator may straddle the bytes searched before and the new ones: back up by its
        // length less one.
        let from = self.searched.saturating_sub(3);
        let window = pending.get(from..)?;
        #[cfg(test)]
        {
            self.looked += window.len();
        }
        let mut found = None;
        for (i, &b) in window.iter().enumerate() {
            if b != b'\n' {
                continue;
            }
            let rest = &window[i..];
            if rest.starts_with(b"\n\n") {
                found = Some(from + i + 2);
                break;
            }
            if i >= 1 && window[i - 1] == b'\r' && rest.starts_with(b"\n\r\n") {
                found = Some(from + i + 3);
                break;
            }
        }
        match found {
            Some(len) => {
                let event = self.start..self.start + len;
                self.start += len;
                self.searched = 0;
                Some(event)
            }
            None => {
                self.searched = pending.len();
                None
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    /// Feeds `stream` to an [`EventEnds`] `step` bytes at a time; answers the events and the bytes
    /// it looked at.
    fn scan(stream: &[u8], step: usize) -> (Vec<String>, usize) {
        let mut buf = Vec::new();
        let mut ends = EventEnds::default();
        let mut events = Vec::new();
        for chunk in stream.chunks(step) {
            buf.extend_from_slice(chunk);
            while let Some(e) = ends.next(&buf) {
                events.push(String::from_utf8(buf[e].to_vec()).unwrap());
            }
        }
        (events, ends.looked)
    }

    #[test]
    fn events_are_found_whatever_the_chunks_and_terminators_straddle_them() {
        let stream = b"data: one\n\ndata: two\r\n\r\n: note\ndata: three\r\n\n";
        let expected = vec!["data: one\n\n", "data: two\r\n\r\n", ": note\ndata: three\r\n\n"];
        for step in 1..=stream.len() {
            let (events, _) = scan(stream, step);
            assert_eq!(events, expected, "chunks of {step} bytes");
        }
    }

    #[test]
    fn a_long_event_sent_a_byte_at_a_time_is_scanned_in_linear_time() {
        // 64 KiB of one event, then its end: the old scan looked at every byte again for each new
        // one (about two billion looks); this one looks at each about four times at most.
        let mut stream = b"data: ".to_vec();
        stream.extend(std::iter::repeat_n(b'x', 64 * 1024));
        stream.extend_from_slice(b"\n\n");
        let (events, looked) = scan(&stream, 1);
        assert_eq!(events.len(), 1);
        assert!(looked <= 4 * stream.len(), "looked at {looked} bytes for {}", stream.len());
    }

    /// How the scripted upstream treats the connection after each answer.
    #[derive(Clone, Copy)]
    enum After {
        KeepAlive,
        /// Closes the connection once the answer is written (without saying so in a header).
        Close,
        /// Writes half the announced body, then closes.
        BreakOff,
        /// Answers nothing to `tools/call`.
        Mute,
    }

    struct Scripted {
        url: String,
        connections: Arc<AtomicUsize>,
        /// The JSON-RPC ids of the `tools/call` requests it received, in order.
        calls: Arc<std::sync::Mutex<Vec<u64>>>,
    }

    async fn scripted(after: After) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, k) = (connections.clone(), calls.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, after, k.clone()));
            }
        });
        Scripted { url, connections, calls }
    }

    async fn serve(mut stream: TcpStream, after: After, calls: Arc<std::sync::Mutex<Vec<u64>>>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let len: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < head_end + len {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: serde_json::Value = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap();
            buf.drain(..head_end + len);
            let Some(id) = body.get("id").and_then(serde_json::Value::as_u64) else {
                let _ = stream.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").await;
                continue;
            };
            let method = body["method"].as_str().unwrap_or_default().to_owned();
            if method == "tools/call" {
                calls.lock().unwrap().push(id);
                if matches!(after, After::Mute) {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
            }
            let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {"content": [], "method": method}})
                .to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s1\r\ncontent-length: {}\r\n\r\n",
                answer.len()
            );
            let whole = format!("{head}{answer}");
            let cut = match after {
                After::BreakOff if method == "tools/call" => head.len() + answer.len() / 2,
                _ => whole.len(),
            };
            if stream.write_all(&whole.as_bytes()[..cut]).await.is_err() {
                return;
            }
            if matches!(after, After::Close | After::BreakOff) && method != "initialize" {
                return;
            }
        }
    }

    fn upstream(url: &str, timeout: Duration) -> HttpUpstream {
        HttpUpstream::new("t", url, &[("x-api-key".into(), "k".into())], timeout, 1 << 20, 64).unwrap()
    }

    #[tokio::test]
    async fn calls_share_one_keep_alive_connection() {
        let s = scripted(After::KeepAlive).await;
        let up = upstream(&s.url, Duration::from_secs(5));
        for _ in 0..5 {
            let r = up.request("tools/call", Some(r#"{"name":"a"}"#)).await.unwrap();
            assert!(r.get().contains("tools/call"), "{}", r.get());
        }
        // The handshake, its notification and five calls, all on the first connection.
        assert_eq!(s.connections.load(Ordering::SeqCst), 1);
        assert_eq!(s.calls.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_replaced_and_no_call_is_sent_twice() {
        let s = scripted(After::Close).await;
        let up = upstream(&s.url, Duration::from_secs(5));
        for _ in 0..4 {
            up.request("tools/call", Some(r#"{"name":"a"}"#)).await.unwrap();
            // Let the close reach the gateway's side of the idle connection.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let calls = s.calls.lock().unwrap().clone();
        let mut unique = calls.clone();
        unique.dedup();
        assert_eq!(calls.len(), 4, "each call reached the upstream once: {calls:?}");
        assert_eq!(unique, calls);
        assert!(s.connections.load(Ordering::SeqCst) >= 4);
    }

    #[tokio::test]
    async fn an_answer_that_breaks_off_is_a_clear_error_and_the_call_is_never_sent_again() {
        let s = scripted(After::BreakOff).await;
        let up = upstream(&s.url, Duration::from_secs(5));
        let e = up.request("tools/call", Some(r#"{"name":"a"}"#)).await.unwrap_err();
        assert!(matches!(&e, UpstreamError::Unavailable(m) if m.starts_with("reading its answer")), "{e:?}");
        let e = up.request("tools/call", Some(r#"{"name":"a"}"#)).await.unwrap_err();
        assert!(matches!(&e, UpstreamError::Unavailable(_)), "{e:?}");
        assert_eq!(s.calls.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_mute_upstream_times_out_and_its_connection_is_not_reused() {
        let s = scripted(After::Mute).await;
        let up = upstream(&s.url, Duration::from_millis(300));
        let started = std::time::Instant::now();
        let e = up.request("tools/call", Some(r#"{"name":"a"}"#)).await.unwrap_err();
        assert!(matches!(e, UpstreamError::Timeout(_)), "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let before = s.connections.load(Ordering::SeqCst);
        let _ = up.request("tools/call", Some(r#"{"name":"a"}"#)).await;
        assert_eq!(s.connections.load(Ordering::SeqCst), before + 1, "a timed-out exchange's connection is dropped");
    }

    #[test]
    fn urls_with_a_credential_or_another_scheme_are_refused() {
        let d = Duration::from_secs(1);
        let e = HttpUpstream::new("t", "http://user:s3cret@127.0.0.1:1/mcp?key=k3y", &[], d, 1, 1).err().unwrap();
        assert!(e.contains("headers"), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("k3y") && e.contains("127.0.0.1:1/mcp"), "{e}");
        for framing in ["Content-Length", "transfer-encoding", "Host", "connection"] {
            let e =
                HttpUpstream::new("t", "http://127.0.0.1:1/", &[(framing.into(), "1".into())], d, 1, 1).err().unwrap();
            assert!(e.contains("set by the gateway"), "{e}");
        }
        let e = HttpUpstream::new("t", "ftp://127.0.0.1/mcp", &[], d, 1, 1).err().unwrap();
        assert!(e.contains("only http"), "{e}");
        assert!(HttpUpstream::new("t", "https://example.com/mcp", &[], d, 1, 1).is_ok());
        let up = HttpUpstream::new("t", "http://[::1]:8/x?y=1", &[], d, 1, 1).unwrap();
        assert_eq!((up.target.host.as_str(), up.target.port, up.target.path.to_string()), ("::1", 8, "/x?y=1".into()));
    }
}
