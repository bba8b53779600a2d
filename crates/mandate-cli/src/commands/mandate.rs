//! `mandate grant`, `delegate`, `revoke`, `chain` and `keys`.

use crate::client::{encode, Client};
use crate::commands::{cell, print_json};
use crate::{read_json, Remote};
use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use mandate_core::jose::{sign, sign_proof, ProofClaims, SignHeader};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The scope of a mandate, from flags or a file.
#[derive(Debug, clap::Args)]
pub struct ScopeArgs {
    /// `authorization_details` as a JSON file (`-` for stdin); replaces the scope flags.
    #[arg(long)]
    details_file: Option<PathBuf>,
    /// Tool patterns, comma-separated (`erp/read_ledger,fx/convert`).
    #[arg(long, value_delimiter = ',')]
    tools: Vec<String>,
    /// Resource patterns, comma-separated (`erp://ledger/2026-10/*`).
    #[arg(long, value_delimiter = ',')]
    resources: Vec<String>,
    /// Data classes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    data_classes: Vec<String>,
    /// Actions (risk levels), comma-separated: `read`, `write`, `destructive`, `egress`.
    #[arg(long, value_delimiter = ',', default_value = "read")]
    actions: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long)]
    ttl: Option<u32>,
    /// Call budget.
    #[arg(long)]
    max_calls: Option<u64>,
    /// Further delegations allowed.
    #[arg(long)]
    max_depth: Option<u8>,
}

impl ScopeArgs {
    fn details(&self) -> anyhow::Result<Value> {
        if let Some(path) = &self.details_file {
            return read_json(path);
        }
        if self.tools.is_empty() || self.data_classes.is_empty() {
            bail!("give --tools and --data-classes (or --details-file)");
        }
        let mut entry = json!({"type": "mcp_tool", "tools": self.tools, "data_classes": self.data_classes, "actions": self.actions});
        if !self.resources.is_empty() {
            entry["resources"] = json!(self.resources);
        }
        Ok(json!([entry]))
    }
}

/// Arguments of `mandate grant`.
#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// The agent receiving the mandate.
    #[arg(long)]
    agent: String,
    /// The task, in your words.
    #[arg(long)]
    purpose: String,
    /// The task's category, dotted (`finance.close`).
    #[arg(long)]
    category: String,
    #[command(flatten)]
    scope: ScopeArgs,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Runs `mandate grant`.
pub fn grant(a: GrantArgs) -> anyhow::Result<()> {
    let mut body = json!({"agent": a.agent, "purpose": a.purpose, "category": a.category, "authorization_details": a.scope.details()?});
    if let Some(t) = a.scope.ttl {
        body["ttl_seconds"] = json!(t);
    }
    if let Some(n) = a.scope.max_calls {
        body["max_calls"] = json!(n);
    }
    if let Some(d) = a.scope.max_depth {
        body["max_depth"] = json!(d);
    }
    let granted = Client::new(&a.remote)?.post("/v1/mandates", Some(&body))?;
    if a.json {
        return print_json(&granted);
    }
    eprintln!(
        "Granted {} (chain {}) until {}. The token:",
        cell(&granted["mandate_id"]),
        cell(&granted["chain_id"]),
        cell(&granted["expires_at"])
    );
    println!("{}", cell(&granted["token"]));
    Ok(())
}

/// Arguments of `mandate delegate`.
#[derive(Debug, clap::Args)]
pub struct DelegateArgs {
    /// The parent mandate token, or `@FILE` to read it from a file.
    #[arg(long)]
    token: String,
    /// The delegating agent's private key (a JWK file with `d`).
    #[arg(long)]
    key: PathBuf,
    /// The sub-agent receiving the child mandate.
    #[arg(long)]
    to: String,
    /// The sub-agent's private key, to sign its actor assertion.
    #[arg(long)]
    to_key: PathBuf,
    #[command(flatten)]
    scope: ScopeArgs,
    /// Print the token endpoint's JSON.
    #[arg(long)]
    json: bool,
    /// The server's URL.
    #[arg(long, env = "MANDATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

pub fn signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let jwk = read_json(&path.to_owned())?;
    let d = jwk["d"].as_str().with_context(|| format!("`{}` has no private key (`d`)", path.display()))?;
    let bytes: [u8; 32] = URL_SAFE_NO_PAD
        .decode(d)
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("`{}`: `d` is not a base64url Ed25519 seed", path.display()))?;
    Ok(SigningKey::from_bytes(&bytes))
}

pub fn random_id() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A token given on the command line, or `@FILE` to read it from a file.
pub fn read_token(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => Ok(std::fs::read_to_string(path).with_context(|| format!("reading `{path}`"))?.trim().to_owned()),
        None => Ok(arg.to_owned()),
    }
}

/// Runs `mandate delegate`: signs the parent's proof and the sub-agent's assertion, and exchanges.
pub fn delegate(a: DelegateArgs) -> anyhow::Result<()> {
    let token = read_token(&a.token)?;
    let base = a.url.trim_end_matches('/');
    let meta: Value = ureq::get(&format!("{base}/.well-known/oauth-authorization-server"))
        .call()
        .with_context(|| format!("cannot read the server's metadata at {base}"))?
        .into_json()?;
    let endpoint = meta["token_endpoint"].as_str().context("the server's metadata has no token_endpoint")?.to_owned();
    let trust_domain = mandate_trust_domain(&token)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let proof_jti = random_id();
    let proof = sign_proof(
        &ProofClaims { jti: &proof_jti, htm: "POST", htu: &endpoint, iat: now, access_token: Some(&token) },
        &signing_key(&a.key)?,
    )?;
    let spiffe = format!("spiffe://{trust_domain}/agent/{}", a.to);
    let actor = sign(
        &json!({"iss": spiffe, "sub": spiffe, "aud": endpoint, "iat": now, "exp": now + 60, "jti": random_id()}),
        &signing_key(&a.to_key)?,
        &SignHeader { typ: "JWT", kid: &a.to },
    )?;
    let details = a.scope.details()?.to_string();
    let mut form: Vec<(&str, String)> = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange".into()),
        ("subject_token", token.clone()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt".into()),
        ("actor_token", actor),
        ("actor_token_type", "urn:ietf:params:oauth:token-type:jwt".into()),
        ("authorization_details", details),
    ];
    if let Some(t) = a.scope.ttl {
        form.push(("ttl_seconds", t.to_string()));
    }
    if let Some(n) = a.scope.max_calls {
        form.push(("max_calls", n.to_string()));
    }
    if let Some(d) = a.scope.max_depth {
        form.push(("max_depth", d.to_string()));
    }
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The proof names the endpoint as the issuer publishes it; the request goes to the server's URL,
    // which differs when the server sits behind a proxy.
    let response = ureq::post(&format!("{base}/oauth/token")).set("DPoP", &proof).send_form(&pairs);
    let body: Value = match response {
        Ok(r) => r.into_json()?,
        Err(ureq::Error::Status(_, r)) => {
            let e: Value = r.into_json().unwrap_or(Value::Null);
            bail!("{} ({} {})", cell(&e["error_description"]), cell(&e["error"]), cell(&e["code"]));
        }
        Err(e) => bail!("cannot reach the Mandate server at {base}: {e}"),
    };
    if a.json {
        return print_json(&body);
    }
    eprintln!(
        "Delegated {} to {} (chain {}), {} s left. The token:",
        cell(&body["mandate_id"]),
        a.to,
        cell(&body["chain_id"]),
        cell(&body["expires_in"])
    );
    println!("{}", cell(&body["access_token"]));
    Ok(())
}

/// The trust domain from a mandate's `sub` (`spiffe://<domain>/agent/<id>`), read without verifying:
/// the server verifies; this only names the sub-agent in the same domain.
fn mandate_trust_domain(token: &str) -> anyhow::Result<String> {
    let payload = token.split('.').nth(1).context("the parent token is not a JWT")?;
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).context("the parent token is not a JWT")?)?;
    let sub = claims["sub"].as_str().context("the parent token has no `sub`")?;
    sub.strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned)
        .context("the parent token's `sub` is not a SPIFFE id")
}

/// Arguments of `mandate revoke`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["mandate", "chain", "human"])))]
pub struct RevokeArgs {
    /// A mandate id: revokes it and every mandate descending from it.
    mandate: Option<String>,
    /// A chain id: revokes the whole chain.
    #[arg(long)]
    chain: Option<String>,
    /// A human id: revokes every mandate that human granted.
    #[arg(long)]
    human: Option<String>,
    /// Why, for the record.
    #[arg(long)]
    reason: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Runs `mandate revoke`.
pub fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    let path = match (&a.mandate, &a.chain, &a.human) {
        (Some(m), _, _) => format!("/v1/mandates/{}/revoke", encode(m)),
        (_, Some(c), _) => format!("/v1/chains/{}/revoke", encode(c)),
        (_, _, Some(h)) => format!("/v1/humans/{}/revoke-mandates", encode(h)),
        _ => bail!("name a mandate, --chain or --human"),
    };
    let body = a.reason.map(|r| json!({"reason": r}));
    let revoked = Client::new(&a.remote)?.post(&path, body.as_ref())?;
    if a.json {
        return print_json(&revoked);
    }
    let ids = revoked["revoked"].as_array().cloned().unwrap_or_default();
    println!(
        "Revoked {} mandate(s){}",
        ids.len(),
        if ids.is_empty() { " (nothing live was left)".to_owned() } else { format!(": {}", cell(&json!(ids))) }
    );
    Ok(())
}

/// Arguments of `mandate chain`.
#[derive(Debug, clap::Args)]
pub struct ChainArgs {
    /// The chain id (the root mandate's id).
    chain: String,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Runs `mandate chain`: the chain as a tree.
pub fn chain(a: ChainArgs) -> anyhow::Result<()> {
    let tree = Client::new(&a.remote)?.get(&format!("/v1/chains/{}", encode(&a.chain)))?;
    if a.json {
        return print_json(&tree);
    }
    println!(
        "Chain {} granted by {} for {}: {}",
        cell(&tree["chain_id"]),
        cell(&tree["root"]),
        cell(&tree["intent"]["category"]),
        cell(&tree["intent"]["purpose"])
    );
    print_node(&tree, 0);
    Ok(())
}

fn print_node(node: &Value, indent: usize) {
    let pad = "  ".repeat(indent);
    let tools: Vec<String> = node["authorization_details"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| cell(&e["tools"]))
        .collect();
    println!(
        "{pad}- {} [{}] {} calls {}/{} tools {} ({})",
        cell(&node["agent"]),
        cell(&node["state"]),
        cell(&node["id"]),
        cell(&node["used_calls"]),
        cell(&node["max_calls"]),
        tools.join(" "),
        cell(&node["revocation"]["reason"]),
    );
    for child in node["children"].as_array().cloned().unwrap_or_default() {
        print_node(&child, indent + 1);
    }
}

/// `mandate keys` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// List the signing keys and until when each is published.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Rotate the signing key; live mandates keep verifying.
    Rotate {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Runs a `mandate keys` verb.
pub fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    let (list, json) = match cmd {
        KeysCommand::List { json, remote } => (Client::new(&remote)?.get("/v1/keys")?, json),
        KeysCommand::Rotate { json, remote } => (Client::new(&remote)?.post("/v1/keys/rotate", None)?, json),
    };
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|k| {
            let state = if k["retired_at"].is_null() { "signing" } else { "verifying only" };
            vec![cell(&k["kid"]), state.to_owned(), cell(&k["created_at"]), cell(&k["published_until"])]
        })
        .collect();
    crate::table::print(&["KID", "STATE", "CREATED", "PUBLISHED UNTIL"], &rows);
    Ok(())
}
