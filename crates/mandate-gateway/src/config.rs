//! The gateway's configuration, validated: upstreams, their credentials (resolved from `${file:...}`
//! and `${env:...}` references at start, never shown to agents), the tools' resource templates, and
//! the listener's limits.

use crate::template::ResourceTemplate;
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything the gateway needs.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The upstream servers, each served at `/mcp/{name}`.
    pub servers: Vec<UpstreamSpec>,
    /// Origins (`scheme://host[:port]`) a browser may call the gateway from, besides the gateway's
    /// own. A request with any other `Origin` is refused (DNS rebinding).
    pub allowed_origins: Vec<String>,
    /// `Host` values accepted besides the issuer's authority and, on a loopback listener,
    /// `localhost` / `127.0.0.1` / `[::1]` with the listener's port.
    pub allowed_hosts: Vec<String>,
    /// The largest upstream result forwarded, in bytes.
    pub max_result_bytes: usize,
    /// The deepest nesting of JSON accepted from agents and upstreams.
    pub max_json_depth: usize,
    /// The most 2025-11-25 sessions kept at once (the idlest are dropped beyond it).
    pub max_sessions: usize,
    /// A session unused this long is forgotten.
    pub session_idle: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_result_bytes: 4 * 1024 * 1024,
            max_json_depth: 64,
            max_sessions: 10_000,
            session_idle: Duration::from_secs(3600),
        }
    }
}

/// One upstream MCP server.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// Its name: `/mcp/{name}`, and the `server` of `server/tool`.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Per tool: the resource template its calls are decided on.
    pub tools: BTreeMap<String, ToolSpec>,
    /// How long a request to it may take before the agent gets an error.
    pub timeout: Duration,
    /// How long a tool list read from it is reused before it is read again (a `list_changed`
    /// notification from a stdio upstream reads it again at once).
    pub list_ttl: Duration,
    /// Whether `resources/list` and `resources/read` are mediated (each read decided as tool
    /// `{name}/resources/read` on the resource's URI); otherwise refused.
    pub resources: bool,
    /// Whether `prompts/list` and `prompts/get` are mediated (tool `{name}/prompts/get`, resource
    /// `prompt://{name}/{prompt}`); otherwise refused.
    pub prompts: bool,
}

/// How an upstream is reached.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A child process speaking newline-delimited JSON-RPC on stdin and stdout.
    Stdio {
        /// The program and its arguments.
        command: Vec<String>,
        /// Its environment, besides `PATH`, `HOME` and `LANG` (nothing else of Mandate's is passed).
        env: Vec<(String, Secret)>,
    },
    /// MCP Streamable HTTP.
    Http {
        /// The endpoint.
        url: String,
        /// Headers sent with every request (its credential).
        headers: Vec<(String, Secret)>,
    },
}

/// A configured tool.
#[derive(Debug, Clone, Default)]
pub struct ToolSpec {
    /// The resource of a call, from its arguments (`erp://ledger/{period}/{account}`).
    pub resource: Option<ResourceTemplate>,
}

/// A configured value that may hold a credential: its resolved text, and whether any part came
/// from a reference (those parts are scrubbed from everything that flows back to agents).
#[derive(Clone)]
pub struct Secret {
    /// The value, references resolved.
    pub value: String,
    /// The resolved references' texts.
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.secrets.is_empty() {
            write!(f, "{:?}", self.value)
        } else {
            f.write_str("\"[redacted]\"")
        }
    }
}

/// A reference that cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `${file:PATH}` whose file cannot be read.
    #[error("`${{file:{path}}}`: {error}")]
    File { path: String, error: String },
    /// `${env:NAME}` that is not set.
    #[error("`${{env:{0}}}` is not set")]
    Env(String),
    /// `${...}` of another kind, or unterminated.
    #[error("`{0}`: a reference is `${{file:PATH}}` or `${{env:NAME}}`")]
    Shape(String),
}

impl Secret {
    /// Resolves the `${file:PATH}` and `${env:NAME}` references in `text` (a file's content loses
    /// its trailing newline). `$$` is a literal `$`.
    pub fn resolve(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, SecretError> {
        let mut value = String::new();
        let mut secrets = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            value.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                value.push('$');
                rest = tail;
                continue;
            }
            let Some(body) = after.strip_prefix('{') else {
                value.push('$');
                rest = after;
                continue;
            };
            let end = body.find('}').ok_or_else(|| SecretError::Shape(text.chars().take(80).collect()))?;
            let reference = &body[..end];
            let resolved = if let Some(path) = reference.strip_prefix("file:") {
                std::fs::read_to_string(path)
                    .map_err(|e| SecretError::File { path: path.to_owned(), error: e.to_string() })?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned()
            } else if let Some(name) = reference.strip_prefix("env:") {
                env(name).ok_or_else(|| SecretError::Env(name.to_owned()))?
            } else {
                return Err(SecretError::Shape(format!("${{{reference}}}")));
            };
            value.push_str(&resolved);
            if !resolved.is_empty() {
                secrets.push(resolved);
            }
            rest = &body[end + 1..];
        }
        value.push_str(rest);
        Ok(Self { value, secrets })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_are_remembered_as_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("erp");
        std::fs::write(&path, "s3cr3t-token\n").unwrap();
        let env = |n: &str| (n == "CRM").then(|| "crm-key".to_owned());
        let s = Secret::resolve(&format!("Bearer ${{file:{}}} and ${{env:CRM}} $$5", path.display()), &env).unwrap();
        assert_eq!(s.value, "Bearer s3cr3t-token and crm-key $5");
        assert_eq!(s.secrets, vec!["s3cr3t-token".to_owned(), "crm-key".to_owned()]);
        assert_eq!(format!("{s:?}"), "\"[redacted]\"");
        assert!(matches!(Secret::resolve("${env:NOPE}", &env), Err(SecretError::Env(_))));
        assert!(matches!(Secret::resolve("${vault:x}", &env), Err(SecretError::Shape(_))));
        assert!(matches!(Secret::resolve("${env:CRM", &env), Err(SecretError::Shape(_))));
        assert!(matches!(Secret::resolve("${file:/nonexistent/x}", &env), Err(SecretError::File { .. })));
    }
}
