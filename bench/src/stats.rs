//! Counts and latency histograms, kept per worker thread and merged into
//! the [`Report`] printed and written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::procstat::GatewayUse;
use crate::window::Window;

/// One worker thread's tallies.
#[derive(Debug, Clone)]
pub struct ThreadStats {
    pub attempted: u64,
    pub established: u64,
    pub failures: BTreeMap<String, u64>,
    pub sent: u64,
    pub received: u64,
    pub late_sends: u64,
    pub closed_early: u64,
    /// Round trips, microseconds.
    pub rtt: Histogram<u64>,
    /// WebSocket handshakes (TCP connect to 101), microseconds.
    pub handshake: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant digits; these bounds are valid.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            attempted: 0,
            established: 0,
            failures: BTreeMap::new(),
            sent: 0,
            received: 0,
            late_sends: 0,
            closed_early: 0,
            rtt: histogram(),
            handshake: histogram(),
        }
    }
}

impl ThreadStats {
    pub fn merge(&mut self, other: &ThreadStats) {
        self.attempted += other.attempted;
        self.established += other.established;
        for (k, v) in &other.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        self.sent += other.sent;
        self.received += other.received;
        self.late_sends += other.late_sends;
        self.closed_early += other.closed_early;
        let _ = self.rtt.add(&other.rtt);
        let _ = self.handshake.add(&other.handshake);
    }
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub mode: String,
    pub host: String,
    pub users: usize,
    pub threads: usize,
    pub nofile_limit: u64,
    pub connections_attempted: u64,
    pub connections_established: u64,
    pub connections_failed: u64,
    pub failures: BTreeMap<String, u64>,
    pub connections_closed_early: u64,
    pub connect_seconds: f64,
    pub connect_rate_per_s: f64,
    pub handshake_us: Percentiles,
    pub load_seconds: f64,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub messages_lost: u64,
    pub echo: bool,
    pub sent_per_s: f64,
    pub received_per_s: f64,
    pub late_sends: u64,
    pub rtt_us: Percentiles,
    /// Sends in this first part of the load are left out of `rtt_us`.
    pub rtt_warmup_seconds: f64,
    pub bench_cpu_seconds: f64,
    pub bench_cpu_percent_of_threads: f64,
    /// The bench itself may have limited the result (CPU-bound or behind schedule).
    pub bench_saturated: bool,
    pub gateway: Option<GatewayUse>,
    /// The steady window of a message load with --duration.
    pub window: Option<Window>,
    #[serde(skip)]
    pub json_path: Option<PathBuf>,
}

impl Report {
    /// The human-readable form.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== ws-bench {} {} ({} users, {} threads, nofile {})",
            self.mode, self.name, self.users, self.threads, self.nofile_limit
        );
        let _ = writeln!(
            s,
            "connections: attempted {} established {} failed {} {:?} closed early {}",
            self.connections_attempted,
            self.connections_established,
            self.connections_failed,
            self.failures,
            self.connections_closed_early
        );
        let h = &self.handshake_us;
        let _ = writeln!(
            s,
            "connect: {:.2} s, {:.0}/s; handshake p50 {} µs p99 {} µs max {} µs",
            self.connect_seconds, self.connect_rate_per_s, h.p50, h.p99, h.max
        );
        if self.messages_sent > 0 {
            let _ = writeln!(
                s,
                "messages: sent {} received {} lost {} in {:.2} s ({:.0}/s sent, {:.0}/s received, {} late sends)",
                self.messages_sent,
                self.messages_received,
                self.messages_lost,
                self.load_seconds,
                self.sent_per_s,
                self.received_per_s,
                self.late_sends
            );
            let r = &self.rtt_us;
            let _ = writeln!(
                s,
                "rtt µs: p50 {} p90 {} p99 {} p99.9 {} max {} mean {:.1}{}",
                r.p50,
                r.p90,
                r.p99,
                r.p999,
                r.max,
                r.mean,
                if self.rtt_warmup_seconds > 0.0 {
                    format!(
                        " (sends in the first {} s left out)",
                        self.rtt_warmup_seconds
                    )
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(
            s,
            "bench cpu: {:.2} s ({:.1}% of its threads){}",
            self.bench_cpu_seconds,
            self.bench_cpu_percent_of_threads,
            if self.bench_saturated {
                " — SATURATED: the bench may be the bottleneck"
            } else {
                ""
            }
        );
        if let Some(w) = &self.window {
            let _ = write!(
                s,
                "steady window {:.1} s: {} messages ({:.0}/s)",
                w.seconds, w.messages, w.messages_per_s
            );
            if let Some(t) = &w.target {
                let _ = write!(
                    s,
                    "; target cpu {:.2}% (user {:.2}%, sys {:.2}%) = {:.2} µs/message",
                    t.cpu_percent,
                    t.user_percent,
                    t.sys_percent,
                    w.target_us_per_message.unwrap_or(0.0)
                );
            }
            if let Some(a) = &w.api {
                let _ = write!(s, "; ws-api {:.1}%", a.cpu_percent);
            }
            let busy: Vec<String> = w
                .cpu_busy_percent
                .iter()
                .map(|b| format!("{b:.0}%"))
                .collect();
            let _ = writeln!(
                s,
                "; bench {:.1}%; CPUs busy [{}]",
                w.bench_cpu_percent,
                busy.join(" ")
            );
            match w.syscalls_per_message {
                Some(r) => {
                    let _ = writeln!(
                        s,
                        "syscalls: {} in {:.1} s for {} messages = {:.3} per message",
                        w.syscalls.unwrap_or(0),
                        w.syscall_seconds,
                        w.syscall_messages,
                        r
                    );
                }
                None if !w.syscalls_note.is_empty() => {
                    let _ = writeln!(s, "syscalls: {}", w.syscalls_note);
                }
                None => {}
            }
        }
        if let Some(g) = &self.gateway {
            let _ = writeln!(
                s,
                "gateway pid {}: cpu {:.3} s = {:.2}% of one core over {:.1} s; rss start {:.1} MiB peak {:.1} MiB settled {:.1} MiB",
                g.pid,
                g.cpu_seconds,
                g.cpu_percent_of_one_core,
                g.window_seconds,
                g.rss_start_mib,
                g.rss_peak_mib,
                g.rss_settled_mib
            );
        }
        s
    }
}
