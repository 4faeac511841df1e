//! Push fan-out: connect users 1..=N, then call ws-api `Push` for every
//! uid (or `Broadcast` once) per round, and time each delivery from the call
//! to the frame's arrival (the payload carries the send time). Without an
//! API address the host is `ws-bench sink --push-users N`, which starts
//! writing once every user is connected: the floor's deliveries are counted
//! (rounds × users awaited), with no latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::grpc::biz_msg_service_client::BizMsgServiceClient;
use futures_util::StreamExt;
use tokio::sync::Mutex as AsyncMutex;
use tokio_tungstenite::tungstenite::Message;
use ws_proto::wsapi::BizMsg;

use crate::Common;
use crate::load::{Target, raise_nofile};
use crate::procstat::{self, Sampler};
use crate::stats::{Percentiles, Report, ThreadStats};

/// Pushes in flight at once.
const PUSH_CONCURRENCY: usize = 64;

pub fn run(
    common: &Common,
    api: Option<&str>,
    rounds: usize,
    broadcast: bool,
) -> anyhow::Result<Report> {
    let nofile = raise_nofile();
    let users = common.user.min(nofile.saturating_sub(64) as usize);
    let threads = common.threads.max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(fan_out(
        common, api, rounds, broadcast, users, threads, nofile,
    ))
}

async fn fan_out(
    common: &Common,
    api: Option<&str>,
    rounds: usize,
    broadcast: bool,
    users: usize,
    threads: usize,
    nofile: u64,
) -> anyhow::Result<Report> {
    let target = Arc::new(Target::new(common)?);
    let epoch = Instant::now();
    let cpu0 = procstat::self_cpu_seconds();
    let stats = Arc::new(AsyncMutex::new(ThreadStats::default()));
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let connect_start = Instant::now();
    for i in 0..users {
        stats.lock().await.attempted += 1;
        let t0 = Instant::now();
        match target.connect(i).await {
            Ok(ws) => {
                let mut s = stats.lock().await;
                s.established += 1;
                let _ = s.handshake.record(t0.elapsed().as_micros().max(1) as u64);
                readers.push(tokio::spawn(read_pushes(
                    ws,
                    epoch,
                    Arc::clone(&stats),
                    Arc::clone(&received),
                )));
            }
            Err(reason) => *stats.lock().await.failures.entry(reason).or_default() += 1,
        }
    }
    let connect = connect_start.elapsed().as_secs_f64().max(1e-9);
    let sampler = common.gateway_pid.map(Sampler::start);
    let gw_from = common.gateway_pid.and_then(procstat::snapshot);
    let load_start = Instant::now();
    let sent = match api {
        Some(api) => call_api(api, rounds, broadcast, users, epoch).await?,
        None => (rounds * users) as u64,
    };
    // Until everything sent arrived, or nothing more did for 10 s.
    let (mut seen, mut progress) = (0, Instant::now());
    while received.load(Ordering::Relaxed) < sent && progress.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = received.load(Ordering::Relaxed);
        if now > seen {
            (seen, progress) = (now, Instant::now());
        }
    }
    let load = load_start.elapsed().as_secs_f64().max(1e-9);
    let gw_to = common.gateway_pid.and_then(procstat::snapshot);
    for r in &readers {
        r.abort();
    }
    let total = stats.lock().await.clone();
    let got = received.load(Ordering::Relaxed);
    let cpu = procstat::self_cpu_seconds() - cpu0;
    let wall = epoch.elapsed().as_secs_f64();
    Ok(Report {
        name: common.name.clone(),
        mode: if broadcast { "broadcast" } else { "push" }.into(),
        host: common.host.clone(),
        users,
        threads,
        nofile_limit: nofile,
        connections_attempted: total.attempted,
        connections_established: total.established,
        connections_failed: total.failures.values().sum(),
        failures: total.failures.clone(),
        connections_closed_early: total.closed_early,
        connect_seconds: connect,
        connect_rate_per_s: total.established as f64 / connect,
        handshake_us: Percentiles::of(&total.handshake),
        load_seconds: load,
        messages_sent: sent,
        messages_received: got,
        messages_lost: sent.saturating_sub(got),
        echo: true,
        sent_per_s: sent as f64 / load,
        received_per_s: got as f64 / load,
        late_sends: 0,
        rtt_us: Percentiles::of(&total.rtt),
        rtt_warmup_seconds: 0.0,
        bench_cpu_seconds: cpu,
        bench_cpu_percent_of_threads: 100.0 * cpu / (wall * threads as f64),
        bench_saturated: cpu / (wall * threads as f64) > 0.9,
        gateway: sampler.and_then(|s| s.finish(gw_from, gw_to)),
        window: None,
        json_path: common.json.clone(),
    })
}

/// Calls ws-api: a Push per user (or one Broadcast) per round; what it
/// reports sent (a Push's success count, a Broadcast's users).
async fn call_api(
    api: &str,
    rounds: usize,
    broadcast: bool,
    users: usize,
    epoch: Instant,
) -> anyhow::Result<u64> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{api}"))?
        .connect()
        .await?;
    let client = BizMsgServiceClient::new(channel);
    let mut sent = 0u64;
    for _ in 0..rounds {
        if broadcast {
            let msg = BizMsg {
                biz_code: "bench".into(),
                biz_payload: epoch.elapsed().as_micros().to_string(),
                ..Default::default()
            };
            client.clone().broadcast(msg).await?;
            sent += users as u64;
            continue;
        }
        let calls = futures_util::stream::iter(1..=users as u64).map(|uid| {
            let mut client = client.clone();
            async move {
                let msg = BizMsg {
                    biz_code: "bench".into(),
                    biz_payload: epoch.elapsed().as_micros().to_string(),
                    uid,
                    ..Default::default()
                };
                client
                    .push(msg)
                    .await
                    .map(|r| r.into_inner().success_count as u64)
                    .unwrap_or(0)
            }
        });
        sent += calls
            .buffer_unordered(PUSH_CONCURRENCY)
            .fold(0, |a, n| async move { a + n })
            .await;
    }
    Ok(sent)
}

/// Counts pushed frames and their Push → delivery latency.
async fn read_pushes(
    mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    epoch: Instant,
    stats: Arc<AsyncMutex<ThreadStats>>,
    received: Arc<AtomicU64>,
) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let sent_us = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["payload"].as_str().map(str::to_owned))
            .and_then(|b64| decode_b64(&b64))
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(us) = sent_us {
            let now = epoch.elapsed().as_micros() as u64;
            let _ = stats.lock().await.rtt.record(now.saturating_sub(us).max(1));
        }
        received.fetch_add(1, Ordering::Relaxed);
    }
}

fn decode_b64(s: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    String::from_utf8(bytes).ok()
}
