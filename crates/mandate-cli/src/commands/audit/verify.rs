//! `mandate audit verify`: through the server, against the database file with the server stopped
//! (`--data-dir`), against a shared PostgreSQL database directly (`--database-url`), or against an
//! export (`--file`); each also against checkpoints kept outside
//! (`--checkpoint`). A ledger that does not verify is an error naming the first bad sequence number.

use crate::client::Client;
use crate::commands::print_json;
use crate::Remote;
use anyhow::{bail, Context as _};
use clap::Args;
use mandate_core::event::Event;
use mandate_core::jwk::Ed25519PublicJwk;
use mandate_core::ledger::{Checkpoint, LedgerHead, Problem, Trust, VerifiedCheckpoint, Verifier};
use mandate_store::{VerifyOptions, VerifyReport};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

/// `mandate audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify the database in this data directory directly, read-only (stop the server first for a
    /// final answer); stored checkpoints must be signed by a key in `<DIR>/signing-keys`.
    #[arg(long, conflicts_with = "file")]
    data_dir: Option<PathBuf>,
    /// Verify the ledger of this PostgreSQL database directly, read-only, in one consistent
    /// snapshot (nodes may keep running); stored checkpoints must be signed by a key in
    /// `--keys-dir`, or any valid signature is accepted without it.
    #[arg(long, value_name = "URL", conflicts_with_all = ["file", "data_dir"])]
    database_url: Option<String>,
    /// The signing keys' directory (`MANDATE_KEYS_DIR`) whose keys stored checkpoints must be
    /// signed by, with `--database-url`.
    #[arg(long, env = "MANDATE_KEYS_DIR", requires = "database_url")]
    keys_dir: Option<PathBuf>,
    /// Verify a JSON Lines export (`mandate audit export`) of the whole ledger instead.
    #[arg(long)]
    file: Option<PathBuf>,
    /// A checkpoint exported earlier (`mandate audit checkpoint --output`): the ledger must still
    /// hold it. Repeat for several.
    #[arg(long)]
    checkpoint: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// Runs `mandate audit verify`.
pub fn run(a: VerifyArgs) -> anyhow::Result<()> {
    let anchors = a.checkpoint.iter().map(|p| read_checkpoint(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let (report, source) = if let Some(dir) = &a.data_dir {
        (offline(dir, anchors)?, format!("database {}", mandate_server::database_path(dir).display()))
    } else if let Some(url) = &a.database_url {
        let trust = match &a.keys_dir {
            Some(keys) => server_kids(keys)?.map_or(Trust::AnyKey, Trust::Keys),
            None => Trust::AnyKey,
        };
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
        let report = runtime.block_on(mandate_store::verify_database(url, &VerifyOptions { trust, anchors }))?;
        (report, format!("database {}", mandate_store::redacted_database_url(url)))
    } else if let Some(file) = &a.file {
        (export_file(file, &anchors)?, format!("export {}", file.display()))
    } else {
        let client = Client::new(&a.remote)?;
        let value = if anchors.is_empty() {
            client.get("/v1/audit/verify")?
        } else {
            let checkpoints: Vec<&Checkpoint> = anchors.iter().map(VerifiedCheckpoint::checkpoint).collect();
            client.post("/v1/audit/verify", Some(&json!({ "checkpoints": checkpoints })))?
        };
        let report: VerifyReport = serde_json::from_value(value).context("the server's verification report")?;
        (report, format!("server {}", a.remote.url))
    };
    if a.json {
        print_json(&serde_json::to_value(&report)?)?;
    }
    match &report.problem {
        None => {
            if !a.json {
                println!("{}", verified(&report, &source, a.checkpoint.len()));
            }
            Ok(())
        }
        Some(p) => bail!(
            "the ledger does not verify ({source}): the first bad event is seq {}: {} ({}); {} events before it verified",
            p.seq,
            p.message,
            p.kind.code(),
            report.events
        ),
    }
}

fn verified(report: &VerifyReport, source: &str, given: usize) -> String {
    let head = match &report.head {
        Some(h) => format!("{} events, head seq {} (hash {})", report.events, h.seq, h.hash),
        None => "an empty ledger".to_owned(),
    };
    let trust =
        if report.trust == "any_key" { " (signatures checked, but no signing keys to trust them by)" } else { "" };
    let given = if given > 0 { format!(", {given} of them given") } else { String::new() };
    format!(
        "The ledger verifies ({source}): {head}; every hash and link checked; {} checkpoints matched{given}{trust}.",
        report.checkpoints_matched
    )
}

fn read_checkpoint(path: &Path) -> anyhow::Result<VerifiedCheckpoint> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading checkpoint `{}`", path.display()))?;
    let checkpoint: Checkpoint = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a Mandate ledger checkpoint", path.display()))?;
    checkpoint.verify().with_context(|| format!("checkpoint `{}`", path.display()))
}

/// The ids of the server's signing keys, current and retired, from the public halves of the key
/// files in `keys`.
fn server_kids(keys: &Path) -> anyhow::Result<Option<HashSet<String>>> {
    let Ok(entries) = std::fs::read_dir(keys) else { return Ok(None) };
    let mut kids = HashSet::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("`{}` is not a signing key file", path.display()))?;
        let jwk = Ed25519PublicJwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": file["x"]}))
            .map_err(|e| anyhow::anyhow!("`{}`: {e}", path.display()))?;
        if Some(jwk.thumbprint().as_str()) != file["kid"].as_str() {
            bail!("`{}`: the key does not match its `kid`", path.display());
        }
        kids.insert(jwk.thumbprint());
    }
    Ok(Some(kids))
}

fn offline(dir: &Path, anchors: Vec<VerifiedCheckpoint>) -> anyhow::Result<VerifyReport> {
    let db = mandate_server::database_path(dir);
    if !db.exists() {
        bail!("no Mandate database at `{}`", db.display());
    }
    let trust = server_kids(&dir.join("signing-keys"))?.map_or(Trust::AnyKey, Trust::Keys);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    let report = runtime.block_on(mandate_store::verify_file(&db, &VerifyOptions { trust, anchors }));
    report.with_context(|| format!("reading `{}`", db.display()))
}

/// Verifies a JSON Lines export: it must be the whole ledger from its first event.
fn export_file(path: &Path, anchors: &[VerifiedCheckpoint]) -> anyhow::Result<VerifyReport> {
    let file = std::fs::File::open(path).with_context(|| format!("reading `{}`", path.display()))?;
    let mut v = Verifier::new();
    for a in anchors {
        v.add_checkpoint(a);
    }
    let report = |v: &Verifier, head: Option<LedgerHead>, problem: Option<Problem>| VerifyReport {
        ok: problem.is_none(),
        events: v.events(),
        checkpoints_matched: v.anchors(),
        checkpoints_stored: 0,
        head,
        problem,
        trust: "any_key".to_owned(),
    };
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading `{}`", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line).with_context(|| {
            format!("`{}` line {}: not a ledger event (export with --format jsonl)", path.display(), n + 1)
        })?;
        if let Err(p) = v.push(&event) {
            return Ok(report(&v, None, Some(p)));
        }
    }
    let counted = v.clone();
    Ok(match v.finish() {
        Ok(head) => report(&counted, head, None),
        Err(p) => report(&counted, None, Some(p)),
    })
}
