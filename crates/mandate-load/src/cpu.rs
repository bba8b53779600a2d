//! CPU used by the server, by this process and by everything else, from `/proc` (Linux), so that a
//! result says how much of the two cores the load generator itself took.

use std::time::Duration;

/// Cumulative CPU ticks at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    server: Option<u64>,
    this: Option<u64>,
    machine_busy: Option<u64>,
}

/// Cumulative CPU ticks of several server processes, one by one, and of the database server's.
#[derive(Debug, Clone, Default)]
pub struct NodeSample {
    nodes: Vec<Option<u64>>,
    database: u64,
}

/// `utime + stime` of every process named `postgres` (the database server and its backends).
fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .filter_map(|pid| process_ticks(&pid))
        .sum()
}

impl NodeSample {
    /// Now, for `pids`.
    pub fn take(pids: &[u32]) -> Self {
        Self { nodes: pids.iter().map(|p| process_ticks(&p.to_string())).collect(), database: postgres_ticks() }
    }

    /// Cores each node and the database used between two samples `window` apart.
    pub fn cores(before: &Self, after: &Self, window: Duration) -> (Vec<f64>, f64) {
        let per = ticks_per_sec() * window.as_secs_f64();
        let nodes = before
            .nodes
            .iter()
            .zip(&after.nodes)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => b.saturating_sub(*a) as f64 / per,
                _ => f64::NAN,
            })
            .collect();
        (nodes, after.database.saturating_sub(before.database) as f64 / per)
    }
}

/// `utime + stime` of a process, in clock ticks (`/proc/<pid>/stat`, fields 14 and 15).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy ticks of the whole machine: everything in `/proc/stat`'s `cpu` line but idle and iowait.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already counted in user).
    let total: u64 = values.iter().take(8).sum();
    Some(total - values.get(3)? - values.get(4)?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be asked).
fn ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

impl CpuSample {
    /// Now, for the server process `server_pid` (if it is known and local).
    pub fn take(server_pid: Option<u32>) -> Self {
        Self::take_all(server_pid.as_slice())
    }

    /// Now, for the server processes `pids` together.
    pub fn take_all(pids: &[u32]) -> Self {
        let server = if pids.is_empty() {
            None
        } else {
            pids.iter().map(|p| process_ticks(&p.to_string())).sum::<Option<u64>>()
        };
        Self { server, this: process_ticks("self"), machine_busy: machine_busy_ticks() }
    }

    /// Cores used between two samples `window` apart: (server, this process, everything else).
    /// A value that could not be read is `NaN`.
    pub fn cores(before: &Self, after: &Self, window: Duration) -> (f64, f64, f64) {
        let per_sec = ticks_per_sec();
        let secs = window.as_secs_f64();
        let delta = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / per_sec / secs,
            _ => f64::NAN,
        };
        let server = delta(before.server, after.server);
        let this = delta(before.this, after.this);
        let machine = delta(before.machine_busy, after.machine_busy);
        let other = if server.is_nan() { machine - this } else { (machine - server - this).max(0.0) };
        (server, this, other)
    }
}

/// Cores used by processes other than this one and `pids`, over `over`.
pub fn others_busy(pids: &[u32], over: Duration) -> f64 {
    let before = CpuSample::take_all(pids);
    let started = std::time::Instant::now();
    std::thread::sleep(over);
    let after = CpuSample::take_all(pids);
    CpuSample::cores(&before, &after, started.elapsed()).2
}
