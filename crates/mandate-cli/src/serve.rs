//! `mandate serve`: configuration, logging, the start-up banner, signals.

use crate::config::{self, LogFormat, Overrides};
use anyhow::Context as _;
use mandate_engine::clock::SystemClock;
use mandate_server::{Bootstrap, Server};
use std::path::PathBuf;
use std::sync::Arc;

/// Flags of `mandate serve`. Each also reads from the environment; flags win over the environment,
/// which wins over the file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file (default: `./mandate.toml` when it exists).
    #[arg(long, env = "MANDATE_CONFIG")]
    config: Option<PathBuf>,
    /// The address to listen on (default `127.0.0.1:8080`).
    #[arg(long, env = "MANDATE_LISTEN")]
    listen: Option<String>,
    /// Where the database and keys live (default `./mandate-data`).
    #[arg(long, env = "MANDATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The organisation's trust domain (default `example.org`).
    #[arg(long, env = "MANDATE_TRUST_DOMAIN")]
    trust_domain: Option<String>,
    /// `text` (default) or `json` logs on standard error.
    #[arg(long, env = "MANDATE_LOG_FORMAT")]
    log_format: Option<String>,
    /// Start a fresh demo organisation (replaces a previous demo's data, never real data).
    #[arg(long)]
    demo: bool,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let (file, _) = config::read_file(args.config.as_deref())?;
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        trust_domain: args.trust_domain,
        database_url: std::env::var("MANDATE_DATABASE_URL").ok(),
        log_format: args.log_format,
        admin_token: std::env::var("MANDATE_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()),
        demo: args.demo,
    };
    let (config, log_format) = config::resolve(file, overrides)?;
    init_logging(log_format);
    if let Some(oidc) = &config.settings.oidc {
        log_issuer_keys(&oidc.jwks_file, &oidc.keys);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let server = Server::start(config, Arc::new(SystemClock)).await?;
        if let Some(oidc) = server.state().oidc.clone() {
            tokio::spawn(reload_issuer_keys_on_hangup(oidc));
        }
        print_banner(server.addr, &server.bootstrap, &server.gateway_servers());
        server.serve(shutdown_signal()).await?;
        Ok(())
    })
}

/// Logs go to standard error, in colour only when it is a terminal (a log file or a collector gets
/// plain text). Each line is one write, from the thread that logs it: a writer thread was measured
/// and cost more in wake-ups than it saved (BENCHMARKS.md, Load).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MANDATE_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, SIGTERM still stops the server.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}

/// Logs which of the OIDC issuer's keys are in use, and why any were left out.
fn log_issuer_keys(file: &std::path::Path, keys: &mandate_core::oidc::IssuerKeys) {
    let kids: Vec<&str> = keys.kids().map(|kid| kid.unwrap_or("(no kid)")).collect();
    tracing::info!(file = %file.display(), kids = ?kids, "OIDC issuer keys loaded");
    for skipped in keys.skipped() {
        tracing::warn!(file = %file.display(), kid = skipped.kid.as_deref().unwrap_or("(no kid)"), reason = %skipped.reason, "OIDC issuer key left out");
    }
}

/// Reads the OIDC issuer's JWKS file again on every SIGHUP, so an operator hands over rotated keys by
/// replacing the file and signalling, without a restart. A file that fails to load changes nothing:
/// the keys in use stay, and the error is logged.
async fn reload_issuer_keys_on_hangup(oidc: Arc<mandate_engine::oidc::OidcAuthenticator>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: restart the server to load a new OIDC JWKS file");
            return;
        };
        while hangups.recv().await.is_some() {
            match config::load_jwks(oidc.jwks_file()) {
                Ok(keys) => {
                    log_issuer_keys(oidc.jwks_file(), &keys);
                    oidc.replace_keys(keys);
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "SIGHUP: the OIDC JWKS file did not load; the keys in use stay")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = oidc;
}

fn print_banner(addr: std::net::SocketAddr, bootstrap: &Bootstrap, gateway: &[String]) {
    let url = format!("http://{addr}");
    println!("Mandate {} listening on {url}", env!("CARGO_PKG_VERSION"));
    for name in gateway {
        println!("MCP gateway: {url}/mcp/{name}  (Streamable HTTP; Authorization: DPoP <mandate> and a DPoP proof per request)");
    }
    if let Some(token) = &bootstrap.admin_token {
        println!();
        println!("An administrator token was created. It is shown this once and stored only as a hash:");
        println!();
        println!("    export MANDATE_URL={url}");
        println!("    export MANDATE_TOKEN={token}");
    }
    if let Some(demo) = &bootstrap.demo {
        println!();
        println!("Demo organisation example.org (fresh on every `serve --demo`):");
        for (human, key) in &demo.humans {
            println!("    {human:<20} {key}");
        }
        println!("Demo agents' private keys: {}", demo.agent_keys_dir.display());
        println!();
        let carol = demo.humans.iter().find(|(h, _)| h == "carol@example.org").map(|(_, k)| k.as_str()).unwrap_or("");
        let alice = demo.humans.iter().find(|(h, _)| h == "alice@example.org").map(|(_, k)| k.as_str()).unwrap_or("");
        let keys = demo.agent_keys_dir.display();
        println!("Today's story already happened: Alice granted the finance agent a mandate for the October close;");
        println!("it read the ledger, converted currency and delegated accounts payable to the reconciler, which");
        println!("strayed into November and was refused. Its report to the controller went out; then an instruction");
        println!("hidden in an invoice memo made it read the payroll ledger and mail it to an outside address: within");
        println!("its mandate, far from its intent, and held for a person (drift: `exfiltration`).");
        println!();
        println!("Try, in another terminal with the two exports above:");
        println!("    mandate chain {}      # the chain: who granted what, each hop", demo.chain_id);
        println!("    mandate audit tail --kind decision    # every call: allowed, refused, held, with reasons");
        println!("    mandate audit chain {}   # the story: every call under every hop, and why", demo.chain_id);
        println!("    mandate audit blast-radius --agent finance-close  # what it touched; what is still live");
        println!("    mandate audit verify                  # the hash chain and its signed checkpoints");
        println!(
            "    MANDATE_TOKEN={carol} mandate approvals list   # Carol, an approver, sees the held e-mail and why"
        );
        println!("    MANDATE_TOKEN={carol} mandate drift profile finance.close   # what close chains were seen to do");
        println!("    mandate agent list                    # six agents: finance, HR, the lab, ...");
        println!("    mandate review                        # an orphan, a stale and overdue agent, a widened boundary, a sandbox owner");
        println!("    mandate agent show hr-onboarding      # its history: registered, certified, boundary widened");
        println!(
            "    mandate agent suspend reconciler --reason 'incident 42'   # the kill switch: revokes its mandates"
        );
        println!("    mandate policy get                    # organisation policy as code (Cedar)");
        println!();
        println!("Grant, delegate and check a call yourself:");
        println!("    MANDATE_TOKEN={alice} mandate grant --agent finance-close --category finance.close \\");
        println!("      --purpose 'Prepare the October 2026 close report' --tools erp/read_ledger,fx/convert \\");
        println!(
            "      --resources 'erp://ledger/2026-10/*' --data-classes financial,internal --max-depth 1 > mandate.jwt"
        );
        println!("    mandate check --token @mandate.jwt --key {keys}/finance-close.jwk \\");
        println!("      --tool erp/read_ledger --resource erp://ledger/2026-10/ap --explain");
        println!("    mandate delegate --token @mandate.jwt --key {keys}/finance-close.jwk \\");
        println!("      --to reconciler --to-key {keys}/reconciler.jwk --tools erp/read_ledger \\");
        println!("      --resources 'erp://ledger/2026-10/ap' --data-classes financial > child.jwt");
        println!();
        println!("Be the agent at the MCP gateway (the demo's ERP runs behind {url}/mcp/erp):");
        println!("    mandate mcp tools --server erp --token @mandate.jwt --key {keys}/finance-close.jwk");
        println!("    mandate mcp call --server erp --token @mandate.jwt --key {keys}/finance-close.jwk \\");
        println!("      --tool read_ledger --arguments '{{\"period\":\"2026-10\",\"account\":\"ap\"}}'     # allowed");
        println!("    mandate mcp call --server erp --token @mandate.jwt --key {keys}/finance-close.jwk \\");
        println!("      --tool read_ledger --arguments '{{\"period\":\"2026-11\",\"account\":\"ap\"}}'     # refused: November");
        println!("Any MCP client connects to {url}/mcp/erp with `Authorization: DPoP <mandate>` and a DPoP proof per request.");
        println!("(with cargo: `cargo run --release -- agent list`, and so on)");
    }
    if bootstrap.admin_token.is_none() && bootstrap.demo.is_none() {
        println!("Use the administrator token printed at the first start (or set MANDATE_ADMIN_TOKEN).");
    }
}
