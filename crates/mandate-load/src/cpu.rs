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
        Self {
            server: server_pid.and_then(|p| process_ticks(&p.to_string())),
            this: process_ticks("self"),
            machine_busy: machine_busy_ticks(),
        }
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

/// Cores used by processes other than this one and `server_pid`, over `over`.
pub fn others_busy(server_pid: Option<u32>, over: Duration) -> f64 {
    let before = CpuSample::take(server_pid);
    let started = std::time::Instant::now();
    std::thread::sleep(over);
    let after = CpuSample::take(server_pid);
    CpuSample::cores(&before, &after, started.elapsed()).2
}
