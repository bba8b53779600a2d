//! A stdio upstream: a child process the gateway starts, supervises, and restarts with backoff.
//!
//! The child gets a clean environment: `PATH`, `HOME` and `LANG` from Mandate's own, and the
//! configured `env` (its credentials); nothing else of Mandate's (its admin token, its database
//! URL) is passed. Its stdout carries newline-delimited JSON-RPC; a line that is not JSON-RPC is
//! logged and ignored, never answered (answering a chatty server's noise with parse errors makes
//! message storms). Its stderr is logged line by line, never parsed. When it exits, every request
//! waiting on it fails at once, and it is started again after a backoff that doubles from 100 ms up
//! to 30 s (and starts over once a run lasted a minute); other upstreams and sessions are untouched.

use super::{read_reply, request_line, Reply, UpstreamError};
use crate::jsonrpc;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{oneshot, watch};

type Waiter = oneshot::Sender<Result<Box<RawValue>, UpstreamError>>;

/// A supervised child process.
pub struct StdioUpstream {
    name: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
    max_bytes: usize,
    max_depth: usize,
    /// The credentials of its environment, scrubbed from its logged stderr.
    secrets: Vec<String>,
    pending: Mutex<HashMap<u64, Waiter>>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    ready: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    /// Moves on every `notifications/tools/list_changed` and every restart.
    pub list_generation: AtomicU64,
    /// How many times the child was started.
    pub starts: AtomicU64,
}

impl StdioUpstream {
    /// Starts the child and its supervisor.
    pub fn start(
        name: &str,
        command: Vec<String>,
        env: Vec<(String, String)>,
        timeout: Duration,
        max_bytes: usize,
        max_depth: usize,
        secrets: Vec<String>,
    ) -> Arc<Self> {
        let up = Arc::new(Self {
            name: name.to_owned(),
            command,
            env,
            timeout,
            secrets,
            max_bytes,
            max_depth,
            pending: Mutex::default(),
            stdin: tokio::sync::Mutex::new(None),
            ready: watch::channel(false).0,
            stop: watch::channel(false).0,
            list_generation: AtomicU64::new(0),
            starts: AtomicU64::new(0),
        });
        tokio::spawn(supervise(up.clone()));
        up
    }

    /// Sends a request once the child is up (waiting for it within the deadline).
    pub async fn request(&self, method: &str, params: Option<&str>) -> Result<Box<RawValue>, UpstreamError> {
        let deadline = Instant::now() + self.timeout;
        let mut ready = self.ready.subscribe();
        if !*ready.borrow() {
            let wait = tokio::time::timeout(self.timeout, ready.wait_for(|r| *r)).await;
            if !matches!(wait, Ok(Ok(_))) {
                return Err(UpstreamError::Unavailable("the server process is not running (restarting)".into()));
            }
        }
        self.send(method, params, deadline.saturating_duration_since(Instant::now())).await
    }

    async fn send(&self, method: &str, params: Option<&str>, wait: Duration) -> Result<Box<RawValue>, UpstreamError> {
        let id = super::next_id();
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id, tx);
        if let Err(e) = self.write_line(&request_line(id, method, params)).await {
            self.lock_pending().remove(&id);
            return Err(e);
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(UpstreamError::Unavailable("the server process exited".into())),
            Err(_) => {
                self.lock_pending().remove(&id);
                let cancel = format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":"timeout"}}}}"#
                );
                let _ = self.write_line(&cancel).await;
                Err(UpstreamError::Timeout(self.timeout))
            }
        }
    }

    async fn write_line(&self, line: &str) -> Result<(), UpstreamError> {
        let mut stdin = self.stdin.lock().await;
        let Some(w) = stdin.as_mut() else {
            return Err(UpstreamError::Unavailable("the server process is not running".into()));
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let written = async {
            w.write_all(&bytes).await?;
            w.flush().await
        };
        written.await.map_err(|e| UpstreamError::Unavailable(format!("writing to the server process: {e}")))
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fail_all(&self, why: &str) {
        for (_, w) in self.lock_pending().drain() {
            let _ = w.send(Err(UpstreamError::Unavailable(why.to_owned())));
        }
    }

    /// Stops the supervisor and kills the child.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let (program, args) = self.command.split_first().ok_or_else(|| std::io::Error::other("empty command"))?;
        let mut cmd = Command::new(program);
        cmd.args(args).env_clear();
        for key in ["PATH", "HOME", "LANG"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn()
    }

    async fn dispatch(&self, line: &str) {
        match read_reply(line, self.max_depth) {
            Ok(Reply::Response { id: Some(id), outcome }) => match self.lock_pending().remove(&id) {
                Some(w) => {
                    let _ = w.send(outcome);
                }
                None => {
                    tracing::warn!(upstream = %self.name, id, "a response to no waiting request (unsolicited or late); dropped")
                }
            },
            Ok(Reply::Response { id: None, .. }) => {
                tracing::warn!(upstream = %self.name, "a response with an id the gateway never sent; dropped")
            }
            Ok(Reply::Request { id, method }) => {
                let answer = if method == "ping" {
                    jsonrpc::result(Some(&id), "{}")
                } else {
                    tracing::info!(upstream = %self.name, method = %method.escape_debug(), "a request from the upstream; refused (the gateway does not relay them)");
                    jsonrpc::error(
                        Some(&id),
                        jsonrpc::METHOD_NOT_FOUND,
                        "the Mandate gateway does not relay requests from servers",
                        None,
                    )
                };
                let _ = self.write_line(&answer).await;
            }
            Ok(Reply::Notification { method }) => {
                if method == "notifications/tools/list_changed" {
                    self.list_generation.fetch_add(1, Ordering::AcqRel);
                }
            }
            Err(e) => {
                tracing::debug!(upstream = %self.name, error = %e, "a line from the server's stdout that is not JSON-RPC; ignored")
            }
        }
    }
}

async fn supervise(up: Arc<StdioUpstream>) {
    let mut stop = up.stop.subscribe();
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        match up.spawn() {
            Err(e) => tracing::error!(upstream = %up.name, error = %e, "cannot start the server process"),
            Ok(mut child) => {
                up.starts.fetch_add(1, Ordering::Relaxed);
                run(&up, &mut child, &mut stop).await;
                let _ = child.start_kill();
                let _ = child.wait().await;
                up.ready.send_replace(false);
                *up.stdin.lock().await = None;
                up.fail_all("the server process exited");
                up.list_generation.fetch_add(1, Ordering::AcqRel);
            }
        }
        if *stop.borrow() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(100);
        }
        tracing::warn!(upstream = %up.name, ?backoff, "the server process stopped; starting it again after the backoff");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Runs one child until it exits or the gateway stops.
async fn run(up: &Arc<StdioUpstream>, child: &mut Child, stop: &mut watch::Receiver<bool>) {
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return;
    };
    *up.stdin.lock().await = Some(stdin);
    let name = up.name.clone();
    let secrets = up.secrets.clone();
    let stderr_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut line: String = line.chars().take(2000).collect();
            // A server that prints its environment must not put its credential in Mandate's log.
            for s in &secrets {
                if line.contains(s.as_str()) {
                    line = line.replace(s.as_str(), "[redacted]");
                }
            }
            tracing::info!(upstream = %name, stderr = %line.escape_debug(), "upstream stderr");
        }
    });
    let reader = up.clone();
    let mut reader_task = tokio::spawn(async move {
        let mut out = BufReader::new(stdout);
        let hard = reader.max_bytes.saturating_mul(2).max(64 * 1024);
        loop {
            let mut buf = Vec::new();
            let n = match (&mut out).take(hard as u64).read_until(b'\n', &mut buf).await {
                Ok(n) => n,
                Err(_) => break,
            };
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') && buf.len() >= hard {
                tracing::warn!(upstream = %reader.name, limit = hard, "a line from the server over twice the result limit; dropped");
                // Skip the rest of the line.
                let mut sink = Vec::new();
                if out.read_until(b'\n', &mut sink).await.unwrap_or(0) == 0 {
                    break;
                }
                continue;
            }
            let Ok(line) = std::str::from_utf8(&buf) else { continue };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line.len() > reader.max_bytes {
                if let Ok(Reply::Response { id: Some(id), .. }) = read_reply(line, usize::MAX) {
                    if let Some(w) = reader.lock_pending().remove(&id) {
                        let _ = w.send(Err(UpstreamError::TooLarge(format!(
                            "{} bytes, over the gateway's {} byte limit",
                            line.len(),
                            reader.max_bytes
                        ))));
                    }
                }
                continue;
            }
            reader.dispatch(line).await;
        }
    });
    // The handshake, then wait for the child to exit or the gateway to stop.
    let handshake = up.send("initialize", Some(&super::initialize_params()), up.timeout).await;
    match handshake {
        Ok(_) => {
            let _ = up.write_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
            up.ready.send_replace(true);
            tracing::info!(upstream = %up.name, "server process started");
            tokio::select! {
                _ = child.wait() => {}
                _ = &mut reader_task => {}
                _ = stop.changed() => {}
            }
        }
        Err(e) => {
            tracing::error!(upstream = %up.name, error = %e, "the server process did not complete the MCP handshake")
        }
    }
    reader_task.abort();
    stderr_task.abort();
}
