//! The steady window of a message load: CPU of the target (the gateway or
//! the sink) split into user and system time, its context switches, ws-api's and the bench's own
//! CPU, every CPU's busy share from /proc/stat, and the target's syscalls
//! per message from `perf stat -e raw_syscalls:sys_enter` where perf works.
//!
//! The syscall count comes from a separate stretch right after the CPU
//! window: the tracepoint costs the target a little on every syscall, and
//! that cost stays out of the CPU figures.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procstat::{self, Snapshot};

/// The processes a window looks at.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub target: Option<u32>,
    pub api: Option<u32>,
}

/// One reading at a window's edge.
#[derive(Debug, Clone)]
pub struct Mark {
    at: Instant,
    target: Option<Snapshot>,
    api: Option<Snapshot>,
    bench_cpu: f64,
    cpus: Vec<(u64, u64)>,
    sent: u64,
}

/// A process's CPU over the window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcUse {
    pub pid: u32,
    pub cpu_seconds: f64,
    pub user_seconds: f64,
    pub sys_seconds: f64,
    pub cpu_percent: f64,
    pub user_percent: f64,
    pub sys_percent: f64,
    /// Context switches of all its threads over the window.
    pub context_switches: Option<u64>,
}

/// What the steady window measured.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub seconds: f64,
    /// Messages the bench sent inside the window.
    pub messages: u64,
    pub messages_per_s: f64,
    /// The gateway or the sink (`--gateway-pid`).
    pub target: Option<ProcUse>,
    pub target_us_per_message: Option<f64>,
    pub target_user_us_per_message: Option<f64>,
    pub target_sys_us_per_message: Option<f64>,
    pub target_context_switches_per_message: Option<f64>,
    /// ws-api (`--api-pid`).
    pub api: Option<ProcUse>,
    /// The bench's own CPU, percent of one core (all its threads).
    pub bench_cpu_percent: f64,
    /// Each CPU's busy share (everything but idle and iowait), from /proc/stat.
    pub cpu_busy_percent: Vec<f64>,
    /// The target's syscalls over `syscall_seconds` right after the window,
    /// and the messages sent in that time.
    pub syscalls: Option<u64>,
    pub syscall_seconds: f64,
    pub syscall_messages: u64,
    pub syscalls_per_message: Option<f64>,
    /// Why there is no syscall count, if there is none.
    pub syscalls_note: String,
}

impl Probe {
    pub fn mark(&self, sent: u64) -> Mark {
        Mark {
            at: Instant::now(),
            target: self.target.and_then(procstat::snapshot),
            api: self.api.and_then(procstat::snapshot),
            bench_cpu: procstat::self_cpu_seconds(),
            cpus: cpu_times(),
            sent,
        }
    }

    pub fn window(&self, a: &Mark, b: &Mark) -> Window {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        let messages = b.sent.saturating_sub(a.sent);
        let use_of = |pid: Option<u32>, x: &Option<Snapshot>, y: &Option<Snapshot>| {
            let (pid, x, y) = (pid?, x.as_ref()?, y.as_ref()?);
            let (cpu, user, sys) = (
                y.cpu_seconds - x.cpu_seconds,
                y.user_seconds - x.user_seconds,
                y.sys_seconds - x.sys_seconds,
            );
            Some(ProcUse {
                pid,
                cpu_seconds: cpu,
                user_seconds: user,
                sys_seconds: sys,
                cpu_percent: 100.0 * cpu / secs,
                user_percent: 100.0 * user / secs,
                sys_percent: 100.0 * sys / secs,
                context_switches: x
                    .context_switches
                    .zip(y.context_switches)
                    .map(|(from, to)| to.saturating_sub(from)),
            })
        };
        let target = use_of(self.target, &a.target, &b.target);
        let per = |s: f64| (messages > 0).then(|| 1e6 * s / messages as f64);
        let cpu_busy_percent = a
            .cpus
            .iter()
            .zip(&b.cpus)
            .map(|(&(b0, t0), &(b1, t1))| {
                100.0 * b1.saturating_sub(b0) as f64 / (t1.saturating_sub(t0)).max(1) as f64
            })
            .collect();
        Window {
            seconds: secs,
            messages,
            messages_per_s: messages as f64 / secs,
            target_us_per_message: target.as_ref().and_then(|t| per(t.cpu_seconds)),
            target_user_us_per_message: target.as_ref().and_then(|t| per(t.user_seconds)),
            target_sys_us_per_message: target.as_ref().and_then(|t| per(t.sys_seconds)),
            target_context_switches_per_message: target
                .as_ref()
                .and_then(|t| t.context_switches)
                .and_then(|n| (messages > 0).then(|| n as f64 / messages as f64)),
            target,
            api: use_of(self.api, &a.api, &b.api),
            bench_cpu_percent: 100.0 * (b.bench_cpu - a.bench_cpu) / secs,
            cpu_busy_percent,
            syscalls: None,
            syscall_seconds: 0.0,
            syscall_messages: 0,
            syscalls_per_message: None,
            syscalls_note: "not measured".into(),
        }
    }
}

impl Window {
    /// Counts the target's syscalls for `len` while the load goes on;
    /// `sent` reads the bench's send counter.
    pub fn count_syscalls(&mut self, pid: u32, len: Duration, sent: impl Fn() -> u64) {
        let before = sent();
        let t0 = Instant::now();
        let result = perf_syscalls(pid, len);
        let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
        // perf counts only while its `sleep` runs, not during its own start-up:
        // scale the messages sent meanwhile (a steady rate) to that time.
        let sent_meanwhile = sent().saturating_sub(before) as f64;
        self.syscall_seconds = len.as_secs_f64();
        self.syscall_messages =
            (sent_meanwhile * (len.as_secs_f64() / elapsed).min(1.0)).round() as u64;
        match result {
            Ok(n) => {
                self.syscalls = Some(n);
                self.syscalls_per_message =
                    (self.syscall_messages > 0).then(|| n as f64 / self.syscall_messages as f64);
                self.syscalls_note = String::new();
            }
            Err(note) => self.syscalls_note = note,
        }
    }
}

/// `perf stat -e raw_syscalls:sys_enter -p PID -- sleep LEN`: every thread
/// of the process, for LEN.
fn perf_syscalls(pid: u32, len: Duration) -> Result<u64, String> {
    let out = Command::new("perf")
        .args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p"])
        .arg(pid.to_string())
        .args(["--", "sleep", &format!("{:.3}", len.as_secs_f64())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "n/a (perf absent)".to_owned(),
            _ => format!("n/a (perf: {e})"),
        })?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.contains("raw_syscalls:sys_enter") && !l.starts_with('#'));
    match line.and_then(|l| l.split(',').next()?.trim().parse::<u64>().ok()) {
        Some(n) if out.status.success() => Ok(n),
        _ => {
            let why = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no count");
            Err(format!("n/a (perf unsupported: {why})"))
        }
    }
}

/// (busy, total) jiffies of each CPU from /proc/stat.
fn cpu_times() -> Vec<(u64, u64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}
