//! The floor of the gateway benchmark: a TCP relay in front of the fast upstream, in a process of
//! its own on a Tokio runtime like `mandate serve`'s. It copies bytes both ways and does nothing
//! else: no HTTP parsing, no decision, no ledger. What calling the upstream through it adds is what
//! one more hop on loopback costs on this machine, the least any gateway in front of the upstream
//! can add.

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};

/// Relays every connection to `to` until killed; prints the endpoint (the upstream's path on the
/// relay's address).
pub fn run(to: &str) -> anyhow::Result<()> {
    let (upstream, path) = crate::gateway::path_of(to).context("the relay's upstream")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the relay")?;
        println!("http://{}{path}", listener.local_addr()?);
        use std::io::Write as _;
        std::io::stdout().flush()?;
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(upstream.addr).await else { return };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
        Ok(())
    })
}
