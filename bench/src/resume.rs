//! Resume storm (issue 12): users 1..=N connect and learn their position
//! from one `Push` each; they lose their connections (the gateway restarts
//! and closes them with 1001, or, without `--restart`, the bench closes
//! them); K more messages are pushed to each user meanwhile; then all N
//! reconnect at once with `X-Resume-Since` and read their replay up to
//! `{"type":"resumed"}` (docs/delivery.md).
//!
//! With `--restart` someone else restarts the gateway: the bench prints
//! [`POSITIONS_READ`] once every position is known (the moment to stop the
//! gateway), waits for the gateway's closes, pushes, prints
//! [`WAITING_FOR_GO`] and reconnects on the next line on stdin (the moment
//! the new gateway is ready), so the storm's clock does not include the
//! gateway's start-up. [`STORM_OVER`] marks the last `resumed`, before the
//! connections close, for whoever measures the storm's CPU from outside.
//! Every wait ends at `--deadline`. One thread (a current-thread runtime)
//! holds every connection; `--threads` does not apply.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::grpc::biz_msg_service_client::BizMsgServiceClient;
use anyhow::Context;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use ws_proto::wsapi::BizMsg;

use crate::Common;
use crate::load::{Target, users_within_nofile};
use crate::procstat;
use crate::stats::Percentiles;

pub const POSITIONS_READ: &str = "ws-bench resume: positions read";
pub const WAITING_FOR_GO: &str = "ws-bench resume: pushed, waiting for a line on stdin";
pub const STORM_OVER: &str = "ws-bench resume: storm over";

/// Pushes in flight at once (as in `push`).
const PUSH_CONCURRENCY: usize = 64;

/// What the storm does beyond the [`Common`] options.
#[derive(Debug, Clone, clap::Args)]
pub struct ResumeArgs {
    /// ws-api's gRPC address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub api: String,
    /// Messages pushed to each user while it is disconnected (K).
    #[arg(long, default_value_t = 10)]
    pub messages: u64,
    /// The gateway is restarted by someone else between the phases (see
    /// the module docs); otherwise the bench closes its connections itself.
    #[arg(long)]
    pub restart: bool,
    /// Reconnects in flight at once (0: all at once).
    #[arg(long, default_value_t = 0)]
    pub storm_concurrency: usize,
    /// The whole run ends by then, finished or not.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Connect,
    Disconnect,
    Storm,
    End,
}

#[derive(Debug)]
struct Tally {
    established: usize,
    connect_failures: BTreeMap<String, u64>,
    /// How the first connections ended: close code, or how else.
    lost: BTreeMap<String, u64>,
    /// Failed reconnect attempts that were tried again, by reason.
    retries: BTreeMap<String, u64>,
    resumed: u64,
    resume_failed: u64,
    /// Reconnects that never got `resumed` / `resume-failed`, by reason.
    errors: BTreeMap<String, u64>,
    replayed: u64,
    duplicates: u64,
    missing: u64,
    /// `resumed` naming another position than the replay's last.
    wrong_resumed_offset: u64,
    /// Connect attempt to `resumed`, microseconds.
    resume: Histogram<u64>,
    /// The handshake of the reconnect that resumed, microseconds.
    handshake: Histogram<u64>,
    /// Its 101 to `resumed` (ws-api's replay as the client sees it), microseconds.
    replay: Histogram<u64>,
    last_resumed: Option<Instant>,
}

struct Shared {
    target: Target,
    args: ResumeArgs,
    tally: RefCell<Tally>,
    connected: Cell<usize>,
    positioned: Cell<usize>,
    /// Connections that went before their first push arrived.
    unpositioned: Cell<usize>,
    lost: Cell<usize>,
    finished: Cell<usize>,
    connect_slots: Semaphore,
    storm_slots: Semaphore,
    storm_start: OnceCell<Instant>,
}

impl Shared {
    /// Never held across an await.
    fn tally(&self) -> std::cell::RefMut<'_, Tally> {
        self.tally.borrow_mut()
    }
}

/// Everything one storm measured.
#[derive(Debug, Serialize)]
pub struct ResumeReport {
    pub name: String,
    pub mode: String,
    pub host: String,
    pub users: usize,
    pub messages_per_user: u64,
    pub restart: bool,
    pub connections_established: usize,
    pub connect_failures: BTreeMap<String, u64>,
    pub connect_seconds: f64,
    pub positions_read: usize,
    pub lost: BTreeMap<String, u64>,
    pub push_seconds: f64,
    pub pushed: u64,
    pub push_errors: u64,
    pub reconnected: usize,
    pub retries: BTreeMap<String, u64>,
    pub resumed: u64,
    pub resume_failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub replayed: u64,
    pub expected_replayed: u64,
    pub duplicates: u64,
    pub missing: u64,
    pub wrong_resumed_offset: u64,
    /// First reconnect attempt to the last `resumed`.
    pub storm_seconds: f64,
    pub resume_us: Percentiles,
    pub storm_handshake_us: Percentiles,
    pub replay_us: Percentiles,
    /// The phase the deadline cut short, if any.
    pub deadline_hit: Option<String>,
    pub bench_cpu_seconds: f64,
}

pub fn run(common: &Common, args: &ResumeArgs) -> anyhow::Result<()> {
    let (users, _) = users_within_nofile(common);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = tokio::task::LocalSet::new().block_on(&rt, storm(common, args, users))?;
    // Connections still open past the deadline are dropped with the runtime.
    rt.shutdown_timeout(Duration::from_secs(1));
    print!("{}", report.text());
    if let Some(path) = &common.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn storm(common: &Common, args: &ResumeArgs, users: usize) -> anyhow::Result<ResumeReport> {
    let started = Instant::now();
    let deadline = started + args.deadline;
    let cpu0 = procstat::self_cpu_seconds();
    let storm_slots = match args.storm_concurrency {
        0 => users.max(1),
        n => n,
    };
    let shared = Rc::new(Shared {
        target: Target::new(common)?,
        args: args.clone(),
        tally: RefCell::new(Tally {
            established: 0,
            connect_failures: BTreeMap::new(),
            lost: BTreeMap::new(),
            retries: BTreeMap::new(),
            resumed: 0,
            resume_failed: 0,
            errors: BTreeMap::new(),
            replayed: 0,
            duplicates: 0,
            missing: 0,
            wrong_resumed_offset: 0,
            resume: histogram(),
            handshake: histogram(),
            replay: histogram(),
            last_resumed: None,
        }),
        connected: Cell::new(0),
        positioned: Cell::new(0),
        unpositioned: Cell::new(0),
        lost: Cell::new(0),
        finished: Cell::new(0),
        connect_slots: Semaphore::new(common.concurrency.max(1)),
        storm_slots: Semaphore::new(storm_slots),
        storm_start: OnceCell::new(),
    });
    let (phase, phase_rx) = watch::channel(Phase::Connect);
    let tasks: Vec<_> = (0..users)
        .map(|i| tokio::task::spawn_local(client(i, Rc::clone(&shared), phase_rx.clone())))
        .collect();
    // The first phase the deadline cut short.
    let deadline_hit = OnceCell::new();
    let wait = async |what: &str, done: &dyn Fn() -> bool| {
        while !done() {
            if Instant::now() >= deadline {
                let _ = deadline_hit.set(what.to_owned());
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let count = Cell::get;

    wait("connect", &|| count(&shared.connected) >= users).await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let established = shared.tally().established;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.api))?
        .connect()
        .await
        .with_context(|| format!("connecting to ws-api at {}", args.api))?;
    let api = BizMsgServiceClient::new(channel);
    push_all(&api, users, 1).await;
    let settled = || count(&shared.positioned) + count(&shared.unpositioned) >= established;
    wait("position", &settled).await;
    let positioned = count(&shared.positioned);
    say(POSITIONS_READ);

    let _ = phase.send(Phase::Disconnect);
    wait("disconnect", &|| count(&shared.lost) >= positioned).await;
    let push_start = Instant::now();
    let (pushed, push_errors) = push_all(&api, users, args.messages).await;
    let push_seconds = push_start.elapsed().as_secs_f64();
    if args.restart {
        say(WAITING_FOR_GO);
        let go = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()));
        if tokio::time::timeout_at(deadline.into(), go).await.is_err() {
            let _ = deadline_hit.set("waiting for stdin".to_owned());
        }
    }

    let storm_start = *shared.storm_start.get_or_init(Instant::now);
    let _ = phase.send(Phase::Storm);
    wait("storm", &|| count(&shared.finished) >= positioned).await;
    say(STORM_OVER);
    let _ = phase.send(Phase::End);
    let closing = futures_util::future::join_all(tasks);
    let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;

    let t = shared.tally();
    Ok(ResumeReport {
        name: common.name.clone(),
        mode: "resume".into(),
        host: common.host.clone(),
        users,
        messages_per_user: args.messages,
        restart: args.restart,
        connections_established: t.established,
        connect_failures: t.connect_failures.clone(),
        connect_seconds,
        positions_read: positioned,
        lost: t.lost.clone(),
        push_seconds,
        pushed,
        push_errors,
        reconnected: shared.finished.get(),
        retries: t.retries.clone(),
        resumed: t.resumed,
        resume_failed: t.resume_failed,
        errors: t.errors.clone(),
        replayed: t.replayed,
        expected_replayed: positioned as u64 * args.messages,
        duplicates: t.duplicates,
        missing: t.missing,
        wrong_resumed_offset: t.wrong_resumed_offset,
        storm_seconds: t
            .last_resumed
            .map_or(0.0, |l| l.duration_since(storm_start).as_secs_f64()),
        resume_us: Percentiles::of(&t.resume),
        storm_handshake_us: Percentiles::of(&t.handshake),
        replay_us: Percentiles::of(&t.replay),
        deadline_hit: deadline_hit.into_inner(),
        bench_cpu_seconds: procstat::self_cpu_seconds() - cpu0,
    })
}

/// A line for whoever drives the bench (see the module docs), at once.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant digits; these bounds are valid.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// `rounds` Pushes to every uid 1..=users; returns (sent, failed calls).
async fn push_all(
    api: &BizMsgServiceClient<tonic::transport::Channel>,
    users: usize,
    rounds: u64,
) -> (u64, u64) {
    let calls = futures_util::stream::iter(1..=rounds).flat_map(|round| {
        futures_util::stream::iter(1..=users as u64).map(move |uid| {
            let mut api = api.clone();
            async move {
                let msg = BizMsg {
                    biz_code: "bench".into(),
                    biz_payload: round.to_string(),
                    uid,
                    ..Default::default()
                };
                api.push(msg).await.is_ok()
            }
        })
    });
    calls
        .buffer_unordered(PUSH_CONCURRENCY)
        .fold((0, 0), |(ok, bad), sent| async move {
            if sent { (ok + 1, bad) } else { (ok, bad + 1) }
        })
        .await
}

/// A pushed message's position, `(epoch, n)`.
fn position(v: &serde_json::Value) -> Option<(String, u64)> {
    let (epoch, n) = v["offset"].as_str()?.split_once(':')?;
    Some((epoch.to_owned(), n.parse().ok()?))
}

fn json(msg: &Message) -> Option<serde_json::Value> {
    match msg {
        Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
        _ => None,
    }
}

async fn client(i: usize, sh: Rc<Shared>, mut phase: watch::Receiver<Phase>) {
    let first = {
        let _slot = sh.connect_slots.acquire().await;
        sh.target.connect(i).await
    };
    let mut ws = match first {
        Ok(ws) => {
            sh.tally().established += 1;
            sh.connected.set(sh.connected.get() + 1);
            ws
        }
        Err(reason) => {
            *sh.tally().connect_failures.entry(reason).or_default() += 1;
            sh.connected.set(sh.connected.get() + 1);
            return;
        }
    };
    // Reading all along answers the gateway's pings while the others connect.
    let since = loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(m)) => if let Some(p) = json(&m).as_ref().and_then(position) { break p },
                _ => {
                    *sh.tally().lost.entry("before_position".into()).or_default() += 1;
                    sh.unpositioned.set(sh.unpositioned.get() + 1);
                    return;
                }
            },
            _ = phase.wait_for(|p| *p == Phase::End) => return,
        }
    };
    sh.positioned.set(sh.positioned.get() + 1);
    let how = lose(&mut ws, &sh, &mut phase).await;
    *sh.tally().lost.entry(how).or_default() += 1;
    sh.lost.set(sh.lost.get() + 1);
    drop(ws);
    let storm = phase.wait_for(|p| *p >= Phase::Storm).await.map(|p| *p);
    if !matches!(storm, Ok(Phase::Storm)) {
        return;
    }
    let outcome = resume(i, &since, &sh, &mut phase).await;
    sh.finished.set(sh.finished.get() + 1);
    // Stay connected until every client is done, as clients would: closes
    // stay out of the storm. A late positioned message would be a duplicate.
    if let Some(mut ws) = outcome {
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(m)) => if json(&m).as_ref().and_then(position).is_some() {
                        sh.tally().duplicates += 1;
                    },
                    _ => return,
                },
                _ = phase.wait_for(|p| *p == Phase::End) => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
}

/// The first connection goes: closed by the gateway (its close code) or,
/// without `--restart`, by the bench once told to.
async fn lose(
    ws: &mut WebSocketStream<TcpStream>,
    sh: &Shared,
    phase: &mut watch::Receiver<Phase>,
) -> String {
    let mut how = "cut".to_owned();
    let mut closing = false;
    loop {
        let now = *phase.borrow_and_update();
        if now == Phase::End {
            return "deadline".into();
        }
        if now >= Phase::Disconnect && !closing && !sh.args.restart {
            closing = true;
            how = "closed_by_bench".into();
            let _ = ws.close(None).await;
        }
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(frame))) if !closing => {
                    how = frame.map_or("close_no_code".into(), |f| format!("close_{}", u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                _ => return how,
            },
            changed = phase.changed() => if changed.is_err() {
                return "deadline".into();
            },
        }
    }
}

/// Reconnects with the position and reads the replay up to `resumed` or
/// `resume-failed`; hands back the connection if it got either.
async fn resume(
    i: usize,
    (epoch, n0): &(String, u64),
    sh: &Shared,
    phase: &mut watch::Receiver<Phase>,
) -> Option<WebSocketStream<TcpStream>> {
    let since = format!("{epoch}:{n0}");
    let start = Instant::now();
    let error = |reason: String| {
        *sh.tally().errors.entry(reason).or_default() += 1;
        None
    };
    let (mut ws, handshake, upgraded) = {
        let _slot = sh.storm_slots.acquire().await;
        loop {
            let t0 = Instant::now();
            match sh.target.connect_since(i, Some(&since)).await {
                Ok(ws) => break (ws, t0.elapsed(), Instant::now()),
                // Refused, reset or 503 while the gateway is busy or its
                // stream to ws-api not up: clients retry, so does the bench.
                Err(reason) if !ended(phase) => {
                    *sh.tally().retries.entry(reason).or_default() += 1;
                    let jitter = Duration::from_millis(20 + (i % 80) as u64);
                    tokio::time::sleep(jitter).await;
                }
                Err(reason) => return error(format!("connect_{reason}")),
            }
        }
    };
    let want = n0 + sh.args.messages;
    let mut next = n0 + 1;
    let (mut replayed, mut duplicates, mut missing) = (0, 0, 0);
    let resumed = loop {
        let msg = tokio::select! {
            msg = ws.next() => msg,
            _ = phase.wait_for(|p| *p == Phase::End) => return error("deadline".into()),
        };
        let v = match msg {
            Some(Ok(m)) => json(&m),
            Some(Err(_)) | None => return error("closed_before_resumed".into()),
        };
        let Some(v) = v else { continue };
        match v["type"].as_str() {
            Some("resumed") => break Some(position(&v)),
            Some("resume-failed") => break None,
            _ => match position(&v) {
                Some((e, n)) if e == *epoch => {
                    replayed += 1;
                    if n < next {
                        duplicates += 1;
                    } else {
                        missing += n - next;
                        next = n + 1;
                    }
                }
                _ => {}
            },
        }
    };
    let now = Instant::now();
    let mut t = sh.tally();
    t.replayed += replayed;
    t.duplicates += duplicates;
    match resumed {
        Some(end) => {
            t.resumed += 1;
            if end != Some((epoch.clone(), want)) {
                t.wrong_resumed_offset += 1;
            }
            t.missing += missing + want.saturating_sub(next - 1);
            let _ = t
                .resume
                .record(now.duration_since(start).as_micros().max(1) as u64);
            let _ = t.handshake.record(handshake.as_micros().max(1) as u64);
            let _ = t
                .replay
                .record(now.duration_since(upgraded).as_micros().max(1) as u64);
            t.last_resumed = Some(t.last_resumed.map_or(now, |l| l.max(now)));
        }
        None => t.resume_failed += 1,
    }
    Some(ws)
}

fn ended(phase: &watch::Receiver<Phase>) -> bool {
    *phase.borrow() == Phase::End
}

impl ResumeReport {
    /// The human-readable form.
    pub fn text(&self) -> String {
        let r = &self.resume_us;
        let h = &self.storm_handshake_us;
        let p = &self.replay_us;
        let mut s = format!(
            "== ws-bench resume {} ({} users × {} messages, {})\n",
            self.name,
            self.users,
            self.messages_per_user,
            if self.restart {
                "gateway restarted"
            } else {
                "connections closed by the bench"
            }
        );
        s += &format!(
            "connect: {} of {} in {:.2} s {:?}; positions read {}; lost {:?}\n",
            self.connections_established,
            self.users,
            self.connect_seconds,
            self.connect_failures,
            self.positions_read,
            self.lost
        );
        s += &format!(
            "push: {} in {:.2} s ({:.0}/s), {} failed\n",
            self.pushed,
            self.push_seconds,
            self.pushed as f64 / self.push_seconds.max(1e-9),
            self.push_errors
        );
        s += &format!(
            "storm: {} reconnected, {} resumed, {} resume-failed, errors {:?}, retries {:?}; \
             all resumed in {:.2} s\n",
            self.reconnected,
            self.resumed,
            self.resume_failed,
            self.errors,
            self.retries,
            self.storm_seconds
        );
        s += &format!(
            "per client, attempt to resumed: p50 {:.1} ms p99 {:.1} ms max {:.1} ms; \
             handshake p50 {:.1} ms p99 {:.1} ms; 101 to resumed p50 {:.1} ms p99 {:.1} ms\n",
            r.p50 as f64 / 1e3,
            r.p99 as f64 / 1e3,
            r.max as f64 / 1e3,
            h.p50 as f64 / 1e3,
            h.p99 as f64 / 1e3,
            p.p50 as f64 / 1e3,
            p.p99 as f64 / 1e3
        );
        s += &format!(
            "replayed {} of {} expected; duplicates {} missing {} wrong resumed offset {}\n",
            self.replayed,
            self.expected_replayed,
            self.duplicates,
            self.missing,
            self.wrong_resumed_offset
        );
        if let Some(phase) = &self.deadline_hit {
            s += &format!("DEADLINE passed during: {phase}\n");
        }
        s += &format!("bench cpu: {:.2} s\n", self.bench_cpu_seconds);
        s
    }
}
