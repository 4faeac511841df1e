//! Nothing is lost between the gateway and ws-api when ws-api stalls: the
//! gateway numbers what it writes, the reference ws-api acknowledges, and
//! what was not acknowledged when the stalled connection was torn down is
//! written again on the next one, where ws-api drops what it had already
//! received. Counted on both sides: what the clients sent, what ws-api
//! appended to Redis (`--handler redis-stream`), and the gateway's metrics.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: u64 = 20;
const EACH: u64 = 150;

/// Sends `EACH` frames 5 ms apart, adding each to `sent`, counting the
/// error frames that come back (a full upstream buffer); returns how many
/// it got.
async fn client(ws: Client, uid: u64, sent: Arc<AtomicU64>) -> u64 {
    let (mut tx, mut rx) = ws.split();
    let errors = tokio::spawn(async move {
        let mut errors = 0;
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), rx.next()).await {
            if m.to_text().is_ok_and(|t| t.contains(r#""type":"error""#)) {
                errors += 1;
            }
        }
        errors
    });
    for i in 0..EACH {
        let text = frame("chat", format!("{uid}-{i}").as_bytes());
        tx.send(Message::text(text)).await.expect("send");
        sent.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    errors.await.expect("reader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_ws_api_loses_nothing() {
    let redis = RedisServer::start();
    let api = ws_api_with("127.0.0.1:0", "redis-stream", &["--redis", &redis.url()]);
    // A stall is noticed within 200 ms + 300 ms.
    let gw = gateway(
        api.addr,
        1,
        &["--upstream-keepalive", "200ms", "--rpc-timeout", "300ms"],
    );
    let admin = gw.admin.expect("admin");
    let sent_so_far = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for uid in 1..=CLIENTS {
        let ws = connect(gw.addr, &uid.to_string()).await;
        tasks.push(tokio::spawn(client(ws, uid, Arc::clone(&sent_so_far))));
    }
    eventually("ws-api appending mid-traffic", || async {
        redis.query::<u64>(redis::cmd("XLEN").arg("chat")) > 0
    })
    .await;
    api.signal(libc::SIGSTOP);
    eventually("the gateway tears the stalled connection down", || async {
        metric(admin, "gateway_upstream_ping_timeouts_total").unwrap_or(0.0) >= 1.0
    })
    .await;
    // Clients keep sending while the link is down: those messages wait in
    // the gateway's buffer for the next connection.
    let at_teardown = sent_so_far.load(Ordering::Relaxed);
    eventually("clients sending while ws-api is stopped", || async {
        sent_so_far.load(Ordering::Relaxed) >= (at_teardown + 2 * CLIENTS).min(CLIENTS * EACH)
    })
    .await;
    api.signal(libc::SIGCONT);
    let mut errors = 0;
    for t in tasks {
        errors += t.await.expect("client");
    }
    let sent = CLIENTS * EACH;
    let lost = |reason| metric_with(admin, "gateway_messages_lost_total", "reason", reason) as u64;
    assert_eq!(
        lost("upstream_buffer_full"),
        errors,
        "every refusal counted"
    );
    let until = Instant::now() + DEADLINE;
    let received = loop {
        let len: u64 = redis.query(redis::cmd("XLEN").arg("chat"));
        if len >= sent - errors || Instant::now() > until {
            break len;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<Entry> = redis.query(redis::cmd("XRANGE").arg("chat").arg("-").arg("+"));
    let distinct: HashSet<Vec<u8>> = entries
        .iter()
        .filter_map(|(_, fields)| {
            fields
                .iter()
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| v.clone())
        })
        .collect();
    let resent = metric(admin, "gateway_upstream_resent_messages_total").unwrap_or(0.0);
    println!(
        "ws-api stopped mid-traffic: sent {sent}, refused {errors} (error frames), ws-api \
         received {received} ({} distinct), written again after the stall {resent}, \
         unconfirmed {}",
        distinct.len(),
        lost("upstream_unconfirmed")
    );
    assert_eq!(
        received,
        sent - errors,
        "lost or duplicated between gateway and ws-api"
    );
    assert_eq!(
        distinct.len() as u64,
        received,
        "duplicates reached the handler"
    );
    assert_eq!(lost("upstream_unconfirmed"), 0);
    assert!(
        resent > 0.0,
        "the stall never made the gateway write anything again"
    );
}
