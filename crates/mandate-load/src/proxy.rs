//! The second floor of the gateway benchmark: an HTTP proxy in front of the fast upstream built from
//! the parts Mandate's gateway is built from (axum and hyper's server in, hyper's HTTP/1.1 client
//! connection out, driven by the request's own task; a Tokio runtime like `mandate serve`'s), doing
//! only what any proxy must: read the request, send its body upstream with the MCP headers, read
//! the answer, send it back. No authentication, no decision, no ledger. What calling the upstream
//! through it adds is what HTTP in and out costs on this machine; what Mandate adds beyond that
//! and the engine's decision is the cost of putting the two together.

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The request headers an MCP client's call needs upstream, and the answer's it needs back.
const REQUEST_HEADERS: [&str; 5] = ["accept", "content-type", "mcp-protocol-version", "mcp-session-id", "mcp-method"];
const ANSWER_HEADERS: [&str; 2] = ["content-type", "mcp-session-id"];

/// One keep-alive connection to the upstream: the handle to send on and the connection's future.
struct Upstream {
    send: SendRequest<Full<Bytes>>,
    io: Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>,
    /// The connection's future has finished: it is not polled again, nor the connection reused.
    ended: bool,
}

impl Upstream {
    async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (send, io) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        Ok(Self { send, io: Box::pin(io), ended: false })
    }

    /// Polls `fut` with the connection until `fut` is ready (the connection moves bytes only when
    /// polled); an error when the connection ended first and `fut` cannot finish without it.
    async fn drive<F: Future>(&mut self, fut: F) -> anyhow::Result<F::Output> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if !self.ended && self.io.as_mut().poll(cx).is_ready() {
                self.ended = true;
            }
            match fut.as_mut().poll(cx) {
                std::task::Poll::Ready(out) => std::task::Poll::Ready(Ok(out)),
                std::task::Poll::Pending if self.ended => {
                    std::task::Poll::Ready(Err(anyhow::anyhow!("the upstream closed the connection")))
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        })
        .await
    }
}

#[derive(Clone)]
struct Proxy {
    addr: std::net::SocketAddr,
    path: axum::http::Uri,
    host: HeaderValue,
    idle: Arc<Mutex<Vec<Upstream>>>,
}

impl Proxy {
    async fn forward(&self, headers: &HeaderMap, body: Bytes) -> anyhow::Result<Response> {
        let popped = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match popped {
            Some(c) if !c.ended && !c.send.is_closed() => c,
            _ => Upstream::connect(self.addr).await?,
        };
        let mut req = hyper::Request::new(Full::new(body));
        *req.method_mut() = hyper::Method::POST;
        *req.uri_mut() = self.path.clone();
        for name in REQUEST_HEADERS {
            if let Some(v) = headers.get(name) {
                req.headers_mut().insert(name, v.clone());
            }
        }
        req.headers_mut().insert(hyper::header::HOST, self.host.clone());
        let sent = conn.send.send_request(req);
        let answer = conn.drive(sent).await??;
        let (parts, mut body) = answer.into_parts();
        let mut bytes = Vec::new();
        while let Some(frame) = conn.drive(body.frame()).await? {
            if let Ok(data) = frame?.into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        let mut response = Response::new(axum::body::Body::from(bytes));
        *response.status_mut() = parts.status;
        for name in ANSWER_HEADERS {
            if let Some(v) = parts.headers.get(name) {
                response.headers_mut().insert(name, v.clone());
            }
        }
        Ok(response)
    }
}

async fn handle(State(proxy): State<Proxy>, headers: HeaderMap, body: Bytes) -> Response {
    match proxy.forward(&headers, body).await {
        Ok(r) => r,
        Err(e) => (StatusCode::BAD_GATEWAY, format!("the upstream: {e:#}")).into_response(),
    }
}

/// Proxies `POST <path>` to `to` (an `http://host:port/path` URL) until killed; prints the endpoint.
pub fn run(to: &str) -> anyhow::Result<()> {
    let (upstream, path) = crate::gateway::path_of(to).context("the proxy's upstream")?;
    let proxy = Proxy {
        host: HeaderValue::from_str(&upstream.host).context("the upstream's authority")?,
        path: path.parse().context("the upstream's path")?,
        addr: upstream.addr,
        idle: Arc::new(Mutex::new(Vec::new())),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the proxy")?;
        println!("http://{}{path}", listener.local_addr()?);
        use std::io::Write as _;
        std::io::stdout().flush()?;
        let app = axum::Router::new().route(&path, axum::routing::post(handle)).with_state(proxy);
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        Ok(())
    })
}
