//! This process's resource use from /proc: RSS, CPU time, descriptors (the
//! parsing is `ws_util::procfs`, shared with ws-bench and the tests).

use ws_util::procfs::{self, Process};

/// A snapshot of the process's resource use.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcStat {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
}

pub fn read() -> ProcStat {
    let mut p = ProcStat::default();
    if let Ok(status) = Process::This.read("status") {
        p.rss_bytes = procfs::rss_kib(&status).unwrap_or(0) * 1024;
    }
    if let Ok(stat) = Process::This.read("stat") {
        p.cpu_seconds = procfs::cpu_ticks(&stat).unwrap_or_default().cpu_seconds();
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    p.max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    p
}
