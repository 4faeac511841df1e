//! Drives the connections: each worker thread runs a current-thread tokio
//! runtime holding its share of connections, so the bench scales by threads
//! without locks; tallies are per thread and merged at the end.
//!
//! Phases: connect (paced by --connectInterval, or --concurrency in flight),
//! a barrier once every connection has been attempted, then the load (hold
//! idle, or send open-loop on a fixed schedule per connection) and a grace
//! period for outstanding echoes. A message load with --duration also has a
//! steady window (after --warmup, before the last stretch) that the main
//! thread measures while the workers send; see [`crate::window`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::deflate;
use crate::procstat::{self, Sampler};
use crate::stats::{Percentiles, Report, ThreadStats};
use crate::window::{Probe, Window};
use crate::{Common, MessageArgs, parse_sources};

/// What each connection does once all are connected.
#[derive(Debug, Clone)]
pub enum Mode {
    Hold(Duration),
    Messages(MessageArgs, Message),
}

/// Progress counters shared by the worker threads and the main thread.
#[derive(Debug, Default)]
struct Progress {
    connected: AtomicUsize,
    finished: AtomicUsize,
    /// Messages sent so far (read by the steady window).
    sent: AtomicU64,
}

/// How to reach the gateway.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub token: String,
    pub sources: Vec<Ipv4Addr>,
    /// Offer permessage-deflate and require it.
    pub compression: bool,
    /// Let the server keep its compression context.
    pub takeover: bool,
}

impl Target {
    pub fn new(common: &Common) -> anyhow::Result<Target> {
        let addr = common
            .host
            .to_socket_addrs()
            .with_context(|| format!("resolving {}", common.host))?
            .next()
            .context("no address for --host")?;
        let sources = common
            .source
            .as_deref()
            .map(parse_sources)
            .transpose()?
            .unwrap_or_default();
        Ok(Target {
            addr,
            host: common.host.clone(),
            path: common.path.clone(),
            token: common.token.clone(),
            sources,
            compression: common.compression,
            takeover: common.compression_takeover,
        })
    }

    /// Opens connection `i` (numbered from 0), bound to its source address.
    pub async fn connect(&self, i: usize) -> Result<WebSocketStream<TcpStream>, String> {
        self.connect_since(i, None).await
    }

    /// Opens connection `i` resuming after `since` (`X-Resume-Since`), if given.
    pub async fn connect_since(
        &self,
        i: usize,
        since: Option<&str>,
    ) -> Result<WebSocketStream<TcpStream>, String> {
        let sock = TcpSocket::new_v4().map_err(|e| io_reason(&e))?;
        if !self.sources.is_empty() {
            let ip = self.sources[i % self.sources.len()];
            sock.bind(SocketAddr::from((ip, 0)))
                .map_err(|e| io_reason(&e))?;
        }
        let connect = async {
            let stream = sock.connect(self.addr).await.map_err(|e| io_reason(&e))?;
            stream.set_nodelay(true).map_err(|e| io_reason(&e))?;
            let mut req = format!("ws://{}{}", self.host, self.path)
                .into_client_request()
                .map_err(|e| ws_reason(&e))?;
            let token = self.token.replace("{i}", &(i + 1).to_string());
            req.headers_mut()
                .insert("token", token.parse().map_err(|_| "bad_token".to_owned())?);
            if let Some(since) = since {
                let since = since.parse().map_err(|_| "bad_since".to_owned())?;
                req.headers_mut().insert("x-resume-since", since);
            }
            if !self.compression {
                return tokio_tungstenite::client_async(req, stream)
                    .await
                    .map(|(ws, _)| ws)
                    .map_err(|e| ws_reason(&e));
            }
            req.headers_mut().insert(
                "sec-websocket-extensions",
                HeaderValue::from_static(deflate::offer(self.takeover)),
            );
            let config = deflate::config(self.takeover);
            let (ws, resp) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
                .await
                .map_err(|e| ws_reason(&e))?;
            let answer = resp.headers().get("sec-websocket-extensions");
            match deflate::accepted(answer.and_then(|a| a.to_str().ok())) {
                true => Ok(ws),
                false => Err("deflate_declined".to_owned()),
            }
        };
        tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| "timeout".to_owned())?
    }
}

fn io_reason(e: &std::io::Error) -> String {
    format!("io_{:?}", e.kind()).to_lowercase()
}

fn ws_reason(e: &WsError) -> String {
    match e {
        WsError::Http(resp) => format!("http_{}", resp.status().as_u16()),
        WsError::Io(io) => io_reason(io),
        _ => "websocket_protocol".into(),
    }
}

/// Raises the open-files soft limit to the hard limit; returns the limit.
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    // On failure the limit stays as it was; reading it back reports what holds.
    let _ = setrlimit(Resource::Nofile, lim);
    // `None` is RLIM_INFINITY.
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// `--user`, capped to what the open-files limit (raised first) allows,
/// with a line saying so; and that limit.
pub fn users_within_nofile(common: &Common) -> (usize, u64) {
    let nofile = raise_nofile();
    let users = common.user.min(nofile.saturating_sub(64) as usize);
    if users < common.user {
        eprintln!(
            "ws-bench: open-files limit {nofile}: capping --user {} to {users}",
            common.user
        );
    }
    (users, nofile)
}

/// Runs a `conn` or `message` load and reports on it.
pub fn run(common: &Common, mode: Mode) -> anyhow::Result<Report> {
    let (users, nofile) = users_within_nofile(common);
    let target = Target::new(common)?;
    let threads = common.threads.max(1);
    let progress = Arc::new(Progress::default());
    let sampler = common.gateway_pid.map(Sampler::start);
    let cpu0 = procstat::self_cpu_seconds();
    let start = Instant::now() + Duration::from_millis(20);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (target, mode, progress) = (target.clone(), mode.clone(), Arc::clone(&progress));
            let (interval, concurrency) = (
                common.connect_interval,
                common.concurrency.div_ceil(threads).max(1),
            );
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let plan = Rc::new(Plan {
                    target,
                    mode,
                    users,
                    start,
                    interval,
                    progress,
                    connect_slots: Semaphore::new(concurrency),
                });
                let local = tokio::task::LocalSet::new();
                Ok::<_, std::io::Error>(local.block_on(&rt, worker(t, threads, plan)))
            })
        })
        .collect();

    let all_done = || handles.iter().all(|h| h.is_finished());
    let wait = |counter: &AtomicUsize| {
        while counter.load(Ordering::Relaxed) < users && !all_done() {
            std::thread::sleep(Duration::from_millis(2));
        }
        Instant::now()
    };
    let connected_at = wait(&progress.connected);
    let gw_from = common.gateway_pid.and_then(procstat::snapshot);
    let window = steady_window(common, &mode, connected_at, &progress, all_done);
    // A hold's memory is read while every connection is still held: once
    // they close, the gateway may hand the freed memory back (malloc_trim)
    // before the last one has finished, and "settled" would read low.
    let held = match &mode {
        Mode::Hold(d) => {
            wait_until(connected_at + d.mul_f64(0.9), all_done);
            common.gateway_pid.and_then(procstat::snapshot)
        }
        Mode::Messages(..) => None,
    };
    let finished_at = wait(&progress.finished);
    let gw_to = held.or_else(|| common.gateway_pid.and_then(procstat::snapshot));
    let mut total = ThreadStats::default();
    for h in handles {
        let stats = h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
        total.merge(&stats);
    }
    let cpu = procstat::self_cpu_seconds() - cpu0;
    let wall = start.elapsed().as_secs_f64().max(1e-9);
    let load = finished_at
        .duration_since(connected_at)
        .as_secs_f64()
        .max(1e-9);
    let connect = connected_at.duration_since(start).as_secs_f64().max(1e-9);
    let (mode_name, echo) = match &mode {
        Mode::Hold(_) => ("conn", false),
        Mode::Messages(m, _) => ("message", !m.no_echo),
    };
    let cpu_percent = 100.0 * cpu / (wall * threads as f64);
    let failed: u64 = total.failures.values().sum();
    Ok(Report {
        name: common.name.clone(),
        mode: mode_name.into(),
        host: common.host.clone(),
        users,
        threads,
        nofile_limit: nofile,
        connections_attempted: total.attempted,
        connections_established: total.established,
        connections_failed: failed,
        failures: total.failures.clone(),
        connections_closed_early: total.closed_early,
        connect_seconds: connect,
        connect_rate_per_s: total.established as f64 / connect,
        handshake_us: Percentiles::of(&total.handshake),
        load_seconds: load,
        messages_sent: total.sent,
        messages_received: total.received,
        messages_lost: if echo {
            total.sent.saturating_sub(total.received)
        } else {
            0
        },
        echo,
        sent_per_s: total.sent as f64 / load,
        received_per_s: total.received as f64 / load,
        late_sends: total.late_sends,
        rtt_us: Percentiles::of(&total.rtt),
        rtt_warmup_seconds: match &mode {
            Mode::Messages(m, _) => m.warmup.as_secs_f64(),
            Mode::Hold(_) => 0.0,
        },
        bench_cpu_seconds: cpu,
        bench_cpu_percent_of_threads: cpu_percent,
        bench_saturated: cpu_percent > 90.0 || total.late_sends * 100 > total.sent.max(1),
        gateway: sampler.and_then(|s| s.finish(gw_from, gw_to)),
        window,
        json_path: common.json.clone(),
    })
}

/// Sleeps until `t`, or until `done()` holds (checked every 20 ms).
fn wait_until(t: Instant, done: impl Fn() -> bool) {
    while Instant::now() < t && !done() {
        std::thread::sleep((t - Instant::now()).min(Duration::from_millis(20)));
    }
}

/// Measures the steady window of a message load with --duration: from
/// --warmup after every connection is up until the last stretch of the load
/// (a quarter of the rest, at most 5 s), which counts syscalls when asked.
fn steady_window(
    common: &Common,
    mode: &Mode,
    connected_at: Instant,
    progress: &Progress,
    all_done: impl Fn() -> bool,
) -> Option<Window> {
    let Mode::Messages(m, _) = mode else {
        return None;
    };
    let duration = m.duration?;
    let steady = duration.checked_sub(m.warmup).filter(|d| !d.is_zero())?;
    let tail = if common.syscalls && common.gateway_pid.is_some() {
        (steady / 4).min(Duration::from_secs(5))
    } else {
        Duration::ZERO
    };
    let probe = Probe {
        target: common.gateway_pid,
        api: common.api_pid,
    };
    let sent = || progress.sent.load(Ordering::Relaxed);
    wait_until(connected_at + m.warmup, &all_done);
    let a = probe.mark(sent());
    wait_until(connected_at + duration - tail, &all_done);
    let b = probe.mark(sent());
    let mut w = probe.window(&a, &b);
    if let Some(pid) = common
        .gateway_pid
        .filter(|_| !tail.is_zero() && !all_done())
    {
        // Four fifths of the stretch: perf's own start-up must not run it into the closes.
        w.count_syscalls(pid, tail.mul_f64(0.8), sent);
    }
    Some(w)
}

/// One worker thread's share of the plan.
struct Plan {
    target: Target,
    mode: Mode,
    users: usize,
    start: Instant,
    interval: Duration,
    progress: Arc<Progress>,
    connect_slots: Semaphore,
}

async fn worker(t: usize, threads: usize, plan: Rc<Plan>) -> ThreadStats {
    let stats = Rc::new(RefCell::new(ThreadStats::default()));
    // One poller per thread turns the global "everyone connected" into a local signal.
    let (all_in_tx, all_in) = watch::channel(None::<Instant>);
    let poll_plan = Rc::clone(&plan);
    tokio::task::spawn_local(async move {
        while poll_plan.progress.connected.load(Ordering::Relaxed) < poll_plan.users {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let _ = all_in_tx.send(Some(Instant::now()));
    });
    let tasks: Vec<_> = (t..plan.users)
        .step_by(threads)
        .map(|i| {
            tokio::task::spawn_local(connection(
                i,
                Rc::clone(&plan),
                Rc::clone(&stats),
                all_in.clone(),
            ))
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    stats.borrow().clone()
}

async fn connection(
    i: usize,
    plan: Rc<Plan>,
    stats: Rc<RefCell<ThreadStats>>,
    mut all_in: watch::Receiver<Option<Instant>>,
) {
    tokio::time::sleep_until((plan.start + plan.interval * i as u32).into()).await;
    let ws = {
        let _slot = plan.connect_slots.acquire().await;
        stats.borrow_mut().attempted += 1;
        let t0 = Instant::now();
        let ws = plan.target.connect(i).await;
        let mut s = stats.borrow_mut();
        match &ws {
            Ok(_) => {
                s.established += 1;
                let _ = s.handshake.record(t0.elapsed().as_micros().max(1) as u64);
            }
            Err(reason) => *s.failures.entry(reason.clone()).or_default() += 1,
        }
        plan.progress.connected.fetch_add(1, Ordering::Relaxed);
        ws
    };
    if let Ok(mut ws) = ws {
        // Reading while the other connections come up answers the
        // gateway's pings: a connect phase longer than its --ping-interval
        // would otherwise lose every early connection to keepalive timeouts.
        let load_start = loop {
            tokio::select! {
                ready = all_in.wait_for(Option::is_some) => {
                    break ready.ok().and_then(|v| *v).unwrap_or_else(Instant::now);
                }
                msg = ws.next() => if !matches!(msg, Some(Ok(_))) {
                    stats.borrow_mut().closed_early += 1;
                    plan.progress.finished.fetch_add(1, Ordering::Relaxed);
                    return;
                },
            }
        };
        match &plan.mode {
            Mode::Hold(d) => hold(ws, load_start + *d, &stats).await,
            Mode::Messages(m, frame) => {
                let phase = if m.burst {
                    0.0
                } else {
                    i as f64 / plan.users.max(1) as f64
                };
                send_load(phase, ws, m, frame, load_start, &stats, &plan.progress.sent).await
            }
        }
    }
    plan.progress.finished.fetch_add(1, Ordering::Relaxed);
}

async fn hold(mut ws: WebSocketStream<TcpStream>, until: Instant, stats: &RefCell<ThreadStats>) {
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(_)) => continue,
                _ => { stats.borrow_mut().closed_early += 1; return; }
            },
            _ = tokio::time::sleep_until(until.into()) => break,
        }
    }
    let _ = ws.close(None).await;
}

/// Sends on one connection; `phase` (0..1) places its first send within the
/// first period, so the connections' sends spread evenly over every period
/// (or, all at 0 with `--burst`, come in the same instant).
async fn send_load(
    phase: f64,
    mut ws: WebSocketStream<TcpStream>,
    m: &MessageArgs,
    frame: &Message,
    load_start: Instant,
    stats: &RefCell<ThreadStats>,
    sent_total: &AtomicU64,
) {
    let period = m.period();
    let mut next = load_start + period.mul_f64(phase);
    let end = m.duration.map(|d| load_start + d);
    let mut outstanding: VecDeque<Instant> = VecDeque::new();
    let mut sent = 0u64;
    let echo = !m.no_echo;
    let measure_from = load_start + m.warmup;
    let more = |sent: u64, next: Instant| match end {
        Some(end) => next < end,
        None => sent < m.times,
    };
    while more(sent, next) {
        tokio::select! {
            msg = ws.next() => if !on_reply(msg, &mut outstanding, measure_from, stats) { return; },
            _ = tokio::time::sleep_until(next.into()) => {
                let now = Instant::now();
                if now.duration_since(next) > period {
                    stats.borrow_mut().late_sends += 1;
                }
                if ws.send(frame.clone()).await.is_err() {
                    stats.borrow_mut().closed_early += 1;
                    return;
                }
                if echo {
                    outstanding.push_back(now);
                }
                stats.borrow_mut().sent += 1;
                sent_total.fetch_add(1, Ordering::Relaxed);
                sent += 1;
                next += period;
            }
        }
    }
    // Stay connected until the load's end: closes (and the gateway's work
    // on them) stay out of the steady window and the syscall stretch.
    if let Some(end) = end {
        let until = tokio::time::sleep_until(end.into());
        tokio::pin!(until);
        loop {
            tokio::select! {
                msg = ws.next() => if !on_reply(msg, &mut outstanding, measure_from, stats) { return; },
                _ = &mut until => break,
            }
        }
    }
    let grace = tokio::time::sleep(m.grace);
    tokio::pin!(grace);
    while !outstanding.is_empty() {
        tokio::select! {
            msg = ws.next() => if !on_reply(msg, &mut outstanding, measure_from, stats) { return; },
            _ = &mut grace => break,
        }
    }
    let _ = ws.close(None).await;
}

/// Records an echo's round trip; `false` when the connection is gone.
fn on_reply(
    msg: Option<Result<Message, WsError>>,
    outstanding: &mut VecDeque<Instant>,
    measure_from: Instant,
    stats: &RefCell<ThreadStats>,
) -> bool {
    match msg {
        Some(Ok(Message::Text(_) | Message::Binary(_))) => {
            let mut s = stats.borrow_mut();
            s.received += 1;
            if let Some(t) = outstanding.pop_front().filter(|t| *t >= measure_from) {
                let _ = s.rtt.record(t.elapsed().as_micros().max(1) as u64);
            }
            true
        }
        Some(Ok(_)) => true,
        _ => {
            stats.borrow_mut().closed_early += 1;
            false
        }
    }
}
