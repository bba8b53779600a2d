//! A minimal HTTP/1.1 client over one keep-alive TCP connection: one request in flight at a time,
//! bodies framed by `Content-Length` (what the Mandate server sends). Loopback addresses only.
//!
//! Rejected: a general client (hyper's client, ureq). Both work, but the load generator shares two
//! cores with the server it measures, so every microsecond it spends per request is taken from the
//! server; this one writes a request with one `write_all` and parses the answer with `httparse`, the
//! parser the server's own stack uses.

use anyhow::{anyhow, bail, Context as _};
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// `http://<loopback address>:<port>`, parsed. Any other host is refused: this tool only ever sends
/// traffic to the machine it runs on.
#[derive(Debug, Clone)]
pub struct Target {
    /// The address to connect to.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
}

impl Target {
    /// Parses `http://127.0.0.1:8080` (or `localhost`, or `[::1]`); anything not on loopback is refused.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("`{url}`: only http:// URLs are supported"))?;
        let host = rest.trim_end_matches('/');
        if host.contains('/') {
            bail!("`{url}`: give the server's base URL, without a path");
        }
        let addr: SocketAddr = match host.strip_prefix("localhost:") {
            Some(port) => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port.parse().context("the port")?),
            None => host.parse().with_context(|| format!("`{url}`: expected http://<loopback ip>:<port>"))?,
        };
        if !addr.ip().is_loopback() {
            bail!("`{url}`: the load test only targets loopback addresses (127.0.0.0/8, ::1)");
        }
        Ok(Self { addr, host: host.to_owned() })
    }
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Its `Mcp-Session-Id` header, if any.
    pub session: Option<String>,
}

impl Answer {
    /// The JSON-RPC message in the body: the body itself, or the last `data:` of an SSE stream.
    pub fn json(&self) -> serde_json::Value {
        if let Ok(v) = serde_json::from_slice(&self.body) {
            return v;
        }
        let text = String::from_utf8_lossy(&self.body);
        text.lines()
            .rev()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
    request: Vec<u8>,
}

impl Conn {
    /// Connects to `target`.
    pub async fn connect(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(target.addr).await.with_context(|| format!("connecting to {}", target.addr))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, host: target.host.clone(), buf: Vec::with_capacity(8192), request: Vec::with_capacity(4096) })
    }

    /// Connects to `target` from the loopback address `source` (another source, as the server sees it).
    pub async fn connect_from(target: &Target, source: std::net::Ipv4Addr) -> anyhow::Result<Self> {
        anyhow::ensure!(source.is_loopback(), "the flood's source must be a loopback address");
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::from((source, 0)))?;
        let stream = socket.connect(target.addr).await.with_context(|| format!("connecting to {}", target.addr))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, host: target.host.clone(), buf: Vec::with_capacity(8192), request: Vec::with_capacity(4096) })
    }

    /// Sends one JSON POST with `headers` and reads its answer.
    pub async fn post_with(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> anyhow::Result<Answer> {
        use std::io::Write as _;
        self.request.clear();
        write!(self.request, "POST {path} HTTP/1.1\r\nHost: {}\r\n", self.host)?;
        for (k, v) in headers {
            write!(self.request, "{k}: {v}\r\n")?;
        }
        write!(self.request, "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len())?;
        self.request.extend_from_slice(body);
        self.stream.write_all(&self.request).await?;
        self.read_answer().await
    }

    /// Sends one request and reads its answer. `body` is JSON when given.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> anyhow::Result<Answer> {
        use std::io::Write as _;
        self.request.clear();
        write!(self.request, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host)?;
        if let Some(token) = bearer {
            write!(self.request, "Authorization: Bearer {token}\r\n")?;
        }
        match body {
            Some(b) => write!(self.request, "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", b.len())?,
            None => self.request.extend_from_slice(b"\r\n"),
        }
        if let Some(b) = body {
            self.request.extend_from_slice(b);
        }
        self.stream.write_all(&self.request).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> anyhow::Result<Answer> {
        loop {
            let head = {
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut response = httparse::Response::new(&mut headers);
                match response.parse(&self.buf)? {
                    httparse::Status::Complete(n) => {
                        let status = response.code.unwrap_or(0);
                        let mut length = None;
                        let mut chunked = false;
                        let mut session = None;
                        for h in response.headers.iter() {
                            if h.name.eq_ignore_ascii_case("content-length") {
                                length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                chunked = h.value.eq_ignore_ascii_case(b"chunked");
                            } else if h.name.eq_ignore_ascii_case("mcp-session-id") {
                                session = std::str::from_utf8(h.value).ok().map(str::to_owned);
                            }
                        }
                        if chunked {
                            self.buf.drain(..n);
                            let body = self.read_chunked().await?;
                            return Ok(Answer { status, body, session });
                        }
                        let length = match (length, status) {
                            (Some(l), _) => l,
                            (None, 202 | 204 | 304) => 0,
                            (None, _) => bail!("an answer without Content-Length"),
                        };
                        Some((n, status, length, session))
                    }
                    httparse::Status::Partial => None,
                }
            };
            if let Some((n, status, length, session)) = head {
                while self.buf.len() < n + length {
                    self.fill().await?;
                }
                let body = self.buf[n..n + length].to_vec();
                self.buf.drain(..n + length);
                return Ok(Answer { status, body, session });
            }
            self.fill().await?;
        }
    }

    /// A chunked body (RFC 9112 section 7.1), from the start of the first chunk's size line.
    async fn read_chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                self.fill().await?;
            };
            let size_text =
                std::str::from_utf8(&self.buf[..line_end])?.split(';').next().unwrap_or("").trim().to_owned();
            let size = usize::from_str_radix(&size_text, 16).map_err(|_| anyhow!("a bad chunk size `{size_text}`"))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        let empty = i == 0;
                        self.buf.drain(..i + 2);
                        if empty {
                            return Ok(body);
                        }
                        continue;
                    }
                    self.fill().await?;
                }
            }
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn only_loopback_targets_are_accepted() {
        for ok in ["http://127.0.0.1:8080", "http://127.1.2.3:9/", "http://[::1]:8080", "http://localhost:80"] {
            assert!(Target::parse(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.1:80",
            "http://192.168.1.1:80",
            "https://127.0.0.1:80",
            "http://example.org:80",
            "http://127.0.0.1:80/v1",
        ] {
            assert!(Target::parse(refused).is_err(), "{refused}");
        }
    }
}
