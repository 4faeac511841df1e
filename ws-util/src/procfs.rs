//! A process's CPU time (`/proc/<pid>/stat`), resident memory and context
//! switches (`/proc/<pid>/status`), for the gateway's `/metrics`, ws-bench's
//! readings of the gateway and the tests' memory checks. Parsing is apart
//! from reading, so each caller keeps its own answer to a missing file.

use std::io;

/// Whose /proc directory: this process's (`/proc/self`) or another's.
#[derive(Debug, Clone, Copy)]
pub enum Process {
    This,
    Pid(u32),
}

impl Process {
    /// The text of one of its /proc files (`"stat"`, `"status"`); an error
    /// once the process is gone.
    pub fn read(self, file: &str) -> io::Result<String> {
        match self {
            Process::This => std::fs::read_to_string(format!("/proc/self/{file}")),
            Process::Pid(pid) => std::fs::read_to_string(format!("/proc/{pid}/{file}")),
        }
    }
}

/// User and system CPU time from a stat line, in clock ticks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    pub user: u64,
    pub system: u64,
}

impl CpuTicks {
    /// User + system, in seconds.
    pub fn cpu_seconds(self) -> f64 {
        (self.user + self.system) as f64 / ticks_per_second()
    }

    pub fn user_seconds(self) -> f64 {
        self.user as f64 / ticks_per_second()
    }

    pub fn sys_seconds(self) -> f64 {
        self.system as f64 / ticks_per_second()
    }
}

/// utime and stime (fields 14 and 15 of proc(5)) from the text of
/// `/proc/<pid>/stat`, counted after the parenthesised command name (which
/// may hold spaces and parentheses itself). `None` without that name; a
/// missing or unreadable field counts 0.
pub fn cpu_ticks(stat: &str) -> Option<CpuTicks> {
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(CpuTicks {
        user: field(11),
        system: field(12),
    })
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`; `None` where it
/// has none (a zombie, a kernel thread).
pub fn rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` from the text
/// of a `status` file (a process's is its main thread's alone: sum those
/// of `/proc/<pid>/task/*/status` for every thread); `None` without them.
pub fn context_switches(status: &str) -> Option<u64> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(field("voluntary_ctxt_switches:")? + field("nonvoluntary_ctxt_switches:")?)
}

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`), at least 1.
pub fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line's shape, with a command name that holds `) (` and spaces.
    const STAT: &str = "4242 (ws gw) (x) S 1 4242 4242 0 -1 4194560 1043 0 0 0 \
                        713 289 0 0 20 0 3 0 123456 104857600 2560 18446744073709551615";

    #[test]
    fn stat_fields_count_after_the_last_parenthesis() {
        assert_eq!(
            cpu_ticks(STAT),
            Some(CpuTicks {
                user: 713,
                system: 289
            })
        );
    }

    #[test]
    fn a_short_stat_counts_missing_fields_as_zero() {
        assert_eq!(cpu_ticks("1 (init) S 0 1"), Some(CpuTicks::default()));
        assert_eq!(cpu_ticks("no name here"), None);
    }

    #[test]
    fn rss_is_read_from_its_line() {
        let status = "Name:\tws-gateway\nVmPeak:\t  90000 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(rss_kib(status), Some(10240));
        assert_eq!(rss_kib("Name:\tzombie\nState:\tZ (zombie)\n"), None);
    }

    #[test]
    fn context_switches_add_both_kinds() {
        let status =
            "Name:\tws-gateway\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(context_switches(status), Some(123));
        assert_eq!(context_switches("voluntary_ctxt_switches:\t1\n"), None);
    }

    #[test]
    fn this_process_reads_itself() {
        let stat = Process::This.read("stat").expect("stat");
        assert!(cpu_ticks(&stat).is_some());
        let status = Process::Pid(std::process::id())
            .read("status")
            .expect("status");
        assert!(rss_kib(&status).expect("VmRSS") > 0);
    }
}
