//! `mandate serve` in a process of its own, as users run it: an ephemeral port, the banner read
//! from standard output, and the process killed when the value is dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `mandate serve`.
pub struct Serve {
    /// The process. Its standard error is read continuously into [`Serve::log`], so a chatty
    /// server never stalls on a full pipe.
    pub child: Child,
    log: Arc<Mutex<String>>,
    log_reader: Option<std::thread::JoinHandle<()>>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// What it printed at start.
    pub banner: Vec<String>,
}

impl Serve {
    /// Starts `bin serve --listen 127.0.0.1:0 --data-dir <dir>/data <extra>` in `dir` (`extra` may
    /// name a `--listen` of its own), with
    /// `MANDATE_ADMIN_TOKEN` set to `admin_token` (or unset), and waits for its banner.
    pub fn start(bin: &str, dir: &Path, extra: &[&str], admin_token: Option<&str>) -> Self {
        Self::start_env(bin, dir, extra, admin_token, &[])
    }

    /// [`Serve::start`] with more environment variables.
    pub fn start_env(bin: &str, dir: &Path, extra: &[&str], admin_token: Option<&str>, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.envs(env.iter().copied());
        cmd.arg("serve");
        if !extra.contains(&"--listen") {
            cmd.arg("--listen").arg("127.0.0.1:0");
        }
        cmd.arg("--data-dir").arg(dir.join("data")).args(extra);
        cmd.current_dir(dir).env_remove("MANDATE_ADMIN_TOKEN").env("MANDATE_LOG", "info");
        if let Some(t) = admin_token {
            cmd.env("MANDATE_ADMIN_TOKEN", t);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            let mut line = String::new();
            while matches!(stderr.read_line(&mut line), Ok(n) if n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(30)).expect("the server printed nothing");
        let url = first.rsplit(' ').next().unwrap().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{first}");
        // The rest of the banner arrives at once.
        let mut banner = vec![first];
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            banner.push(line);
        }
        Self { child, url, banner, log, log_reader: Some(log_reader) }
    }

    /// What the server logged so far; once it has exited, all of it.
    pub fn log(&mut self) -> String {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            if let Some(reader) = self.log_reader.take() {
                let _ = reader.join();
            }
        }
        self.log.lock().unwrap().clone()
    }

    /// The first banner line containing `needle`.
    pub fn line(&self, needle: &str) -> &str {
        self.banner.iter().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("`{needle}` in {:?}", self.banner))
    }

    /// The administrator token the banner printed.
    pub fn admin_token(&self) -> String {
        self.line("export MANDATE_TOKEN=").rsplit('=').next().unwrap().to_owned()
    }

    /// A demo human's API key, from the banner.
    pub fn demo_key(&self, human: &str) -> String {
        let line = self.line(&format!("    {human} "));
        line.split_whitespace().nth(1).unwrap().to_owned()
    }

    /// Where the demo wrote its agents' private keys.
    pub fn demo_keys_dir(&self) -> String {
        self.line("Demo agents' private keys:").rsplit(' ').next().unwrap().to_owned()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}
