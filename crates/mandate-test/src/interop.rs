//! The software written by others that the interoperability tests run, as `scripts/interop-setup.sh`
//! installed it under `target/interop` (the test command runs it), and the scripts of
//! `tests/interop/mcp` that drive it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/interop`: the Python SDK's venv and the npm packages.
pub fn dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/interop");
    assert!(
        dir.join("venv/bin/python").exists() && dir.join("node/node_modules").exists(),
        "the MCP SDKs are not installed: run scripts/interop-setup.sh (the test command does)"
    );
    dir
}

/// `tests/interop/mcp`: the Python scripts (the Node ones run from a copy beside their packages).
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/mcp")
}

/// The venv's Python, with the official MCP SDK.
pub fn python() -> PathBuf {
    dir().join("venv/bin/python")
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python SDK server of `upstream_server.py` on `port`, recording what reached it in `state`
/// (and reading `read_ledger`'s description from `state/description`), once it accepts connections.
pub fn python_upstream(port: u16, state: &Path) -> Proc {
    let child = Command::new(python())
        .arg(scripts().join("upstream_server.py"))
        .arg(port.to_string())
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the venv's python runs");
    let child = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the Python SDK server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}
