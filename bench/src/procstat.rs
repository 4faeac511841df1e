//! CPU time and memory from /proc: the gateway's (by PID) and the bench's own
//! (the parsing is `ws_util::procfs`, shared with the gateway and the tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use ws_util::procfs::{self, Process};

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub at: Instant,
    pub cpu_seconds: f64,
    /// User and system time (utime, stime), seconds.
    pub user_seconds: f64,
    pub sys_seconds: f64,
    pub rss_kib: u64,
    /// Context switches of every thread (voluntary and not); `None` when unreadable.
    pub context_switches: Option<u64>,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` once the process is gone.
pub fn snapshot(pid: u32) -> Option<Snapshot> {
    let stat = Process::Pid(pid).read("stat").ok()?;
    let ticks = procfs::cpu_ticks(&stat)?;
    let status = Process::Pid(pid).read("status").ok()?;
    Some(Snapshot {
        at: Instant::now(),
        cpu_seconds: ticks.cpu_seconds(),
        user_seconds: ticks.user_seconds(),
        sys_seconds: ticks.sys_seconds(),
        rss_kib: procfs::rss_kib(&status).unwrap_or(0),
        context_switches: context_switches(pid),
    })
}

/// The sum over `/proc/<pid>/task/*/status`: the process's own status
/// counts its main thread only, and a glommio executor is another thread.
fn context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
        sum += procfs::context_switches(&status)?;
    }
    Some(sum)
}

/// CPU seconds (user + system, every thread) this process has used: the
/// process CPU-time clock, the same total `getrusage(RUSAGE_SELF)` gives.
pub fn self_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Samples a process every 250 ms in the background, for peak and settled RSS.
pub struct Sampler {
    pid: u32,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Snapshot>>,
}

/// What the gateway used during the measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayUse {
    pub pid: u32,
    pub cpu_seconds: f64,
    pub cpu_percent_of_one_core: f64,
    pub window_seconds: f64,
    pub rss_start_mib: f64,
    pub rss_peak_mib: f64,
    pub rss_settled_mib: f64,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                samples.extend(snapshot(pid));
                std::thread::sleep(Duration::from_millis(250));
            }
            samples.extend(snapshot(pid));
            samples
        });
        Sampler { pid, stop, handle }
    }

    /// Stops sampling; CPU is measured between `from` and `to`.
    pub fn finish(self, from: Option<Snapshot>, to: Option<Snapshot>) -> Option<GatewayUse> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.join().ok()?;
        let (from, to) = (from?, to?);
        let mib = |kib: u64| kib as f64 / 1024.0;
        let window = to.at.duration_since(from.at).as_secs_f64().max(1e-9);
        let cpu = to.cpu_seconds - from.cpu_seconds;
        let peak = samples
            .iter()
            .map(|s| s.rss_kib)
            .max()
            .unwrap_or(to.rss_kib)
            .max(to.rss_kib);
        Some(GatewayUse {
            pid: self.pid,
            cpu_seconds: cpu,
            cpu_percent_of_one_core: 100.0 * cpu / window,
            window_seconds: window,
            rss_start_mib: mib(from.rss_kib),
            rss_peak_mib: mib(peak),
            rss_settled_mib: mib(to.rss_kib),
        })
    }
}
