//! Nothing is lost between ws-api and the gateway when the link breaks
//! while ws-api is writing: ws-api numbers what it sends each core, keeps
//! it until the core acknowledges, and writes it again on the core's next
//! stream, where the gateway drops what it had already received.
//!
//! Two ways a link breaks with messages on it: ws-api stalls (SIGSTOP)
//! under echo load, the gateway gives up on the connection, and ws-api
//! wakes to read what was already in its socket and answers onto the dead
//! connection; and the gateway itself stalls under a group fan-out, so
//! that what ws-api wrote meanwhile sits in a connection the gateway may
//! tear down when it wakes.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: u64 = 20;
const EACH: u64 = 150;

/// What one client saw come back.
#[derive(Debug, Default)]
struct Seen {
    /// Each echoed payload and how often it came.
    echoes: HashMap<String, u32>,
    /// Error frames (a full upstream buffer refused a message).
    errors: u64,
}

/// Sends `EACH` frames 5 ms apart and reads until every one is echoed or
/// refused, or nothing comes for 5 s.
async fn client(ws: Client, uid: u64, sent: Arc<AtomicU64>) -> Seen {
    let (mut tx, mut rx) = ws.split();
    let reader = tokio::spawn(async move {
        let mut seen = Seen::default();
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), rx.next()).await {
            let Ok(text) = m.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            match v["type"].as_str() {
                Some("error") => seen.errors += 1,
                Some("chat") => {
                    let p = v["payload"].as_str().unwrap_or_default().to_owned();
                    *seen.echoes.entry(p).or_default() += 1;
                }
                _ => {}
            }
            if seen.errors + seen.echoes.len() as u64 == EACH {
                break;
            }
        }
        seen
    });
    for i in 0..EACH {
        let text = frame("chat", format!("{uid}-{i}").as_bytes());
        tx.send(Message::text(text)).await.expect("send");
        sent.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reader.await.expect("reader")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_ws_api_loses_no_echo() {
    let api = ws_api("127.0.0.1:0", "echo");
    // A stall is noticed within 200 ms + 300 ms.
    let gw = gateway(
        api.addr,
        1,
        &["--upstream-keepalive", "200ms", "--rpc-timeout", "300ms"],
    );
    let admin = gw.admin.expect("admin");
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for uid in 1..=CLIENTS {
        let ws = connect(gw.addr, &uid.to_string()).await;
        tasks.push(tokio::spawn(client(ws, uid, Arc::clone(&sent))));
    }
    eventually("echoes flowing", || async {
        metric(admin, "gateway_messages_out_total").unwrap_or(0.0) >= 100.0
    })
    .await;
    api.signal(libc::SIGSTOP);
    eventually("the gateway tears the stalled connection down", || async {
        metric(admin, "gateway_upstream_ping_timeouts_total").unwrap_or(0.0) >= 1.0
    })
    .await;
    api.signal(libc::SIGCONT);
    let (mut echoed, mut twice, mut errors) = (0, 0, 0);
    for t in tasks {
        let seen = t.await.expect("client");
        echoed += seen.echoes.len() as u64;
        twice += seen.echoes.values().filter(|n| **n > 1).count();
        errors += seen.errors;
    }
    let total = CLIENTS * EACH;
    let duplicates = metric(admin, "gateway_downstream_duplicate_messages_total").unwrap_or(0.0);
    let acked = metric(admin, "gateway_downstream_acked_messages_total").unwrap_or(0.0);
    println!(
        "ws-api stopped under echo load: sent {total}, echoed {echoed}, refused {errors}, \
         echoed twice {twice}; the gateway dropped {duplicates} written again and acknowledged {acked}"
    );
    assert_eq!(twice, 0, "a client got an echo twice");
    assert_eq!(
        echoed + errors,
        total,
        "echoes lost between ws-api and the clients"
    );
    assert!(acked > 0.0, "the gateway acknowledged nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_gateway_misses_no_group_message() {
    const SESSIONS: u64 = 50;
    const PUSHES: u64 = 400;
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(
        api.addr,
        1,
        &["--upstream-keepalive", "200ms", "--rpc-timeout", "300ms"],
    );
    let admin = gw.admin.expect("admin");
    let mut biz_client = biz(api.addr).await;
    let mut readers = Vec::new();
    for uid in 1..=SESSIONS {
        let ws = connect(gw.addr, &uid.to_string()).await;
        let req = ws_api::proto::wsapi::GroupRequest {
            uid,
            group: "room".into(),
        };
        biz_client.join_group(req).await.expect("join");
        readers.push(tokio::spawn(count_group_messages(ws, PUSHES)));
    }
    let pushes = tokio::spawn(async move {
        for i in 0..PUSHES {
            let msg = ws_api::proto::wsapi::GroupMsg {
                group: "room".into(),
                biz_code: "news".into(),
                biz_payload: i.to_string(),
            };
            biz_client.push_group(msg).await.expect("PushGroup");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    eventually("group messages flowing", || async {
        metric(admin, "gateway_messages_out_total").unwrap_or(0.0) >= (SESSIONS * 20) as f64
    })
    .await;
    // Stopped, what ws-api writes piles up unread in the gateway's socket;
    // the connection is then cut under it (as a NAT or a proxy would drop
    // it), which loses that socket's unread bytes.
    gw.signal(libc::SIGSTOP);
    let unread = || {
        let port = gateway_side(gw.pid(), api.addr);
        socket_queue(port, api.addr)
    };
    eventually("ws-api writing to the stopped gateway", || async {
        unread() > 16 * 1024
    })
    .await;
    let before = unread();
    cut(gateway_side(gw.pid(), api.addr), api.addr);
    gw.signal(libc::SIGCONT);
    pushes.await.expect("pushes");
    let mut short = Vec::new();
    for (uid, r) in (1..=SESSIONS).zip(readers) {
        let (got, twice) = r.await.expect("reader");
        if got != PUSHES || twice > 0 {
            short.push((uid, got, twice));
        }
    }
    let timeouts = metric(admin, "gateway_upstream_ping_timeouts_total").unwrap_or(0.0);
    let duplicates = metric(admin, "gateway_downstream_duplicate_messages_total").unwrap_or(0.0);
    println!(
        "gateway stopped under a group fan-out of {PUSHES} to {SESSIONS}, its link cut with \
         {before} bytes unread: ping timeouts {timeouts}, written again and dropped \
         {duplicates}; sessions short: {short:?}"
    );
    assert!(
        short.is_empty(),
        "sessions missed group messages or got one twice"
    );
}

/// Reads `news` group messages until `want` distinct ones came (or nothing
/// for 5 s); returns how many distinct and how many came twice.
async fn count_group_messages(mut ws: Client, want: u64) -> (u64, u64) {
    let mut seen: HashMap<String, u32> = HashMap::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        let Ok(v) = serde_json::from_str::<Value>(m.to_text().unwrap_or_default()) else {
            continue;
        };
        if v["type"] == "news" {
            let p = v["payload"].as_str().unwrap_or_default().to_owned();
            *seen.entry(p).or_default() += 1;
            if seen.len() as u64 == want {
                break;
            }
        }
    }
    let twice = seen.values().filter(|n| **n > 1).count() as u64;
    (seen.len() as u64, twice)
}

/// The gateway's local port of its connection to `api` (`ss -p` names the
/// process owning each socket).
fn gateway_side(pid: u32, api: std::net::SocketAddr) -> u16 {
    let out = ss(&["-tnpH", "state", "established", "dst", &api.to_string()]);
    let owner = format!("pid={pid},");
    let line = out
        .lines()
        .find(|l| l.contains(&owner))
        .unwrap_or_else(|| panic!("no connection of pid {pid} to {api}: {out}"));
    let local = line.split_whitespace().nth(2).expect("local address");
    local
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// Bytes waiting unread in the gateway's socket.
fn socket_queue(port: u16, api: std::net::SocketAddr) -> u64 {
    let sport = format!("sport = :{port}");
    let out = ss(&[
        "-tnH",
        "state",
        "established",
        "dst",
        &api.to_string(),
        &sport,
    ]);
    out.split_whitespace()
        .next()
        .and_then(|q| q.parse().ok())
        .unwrap_or(0)
}

/// Destroys the gateway's socket (`ss -K`, root): its unread bytes go with it.
fn cut(port: u16, api: std::net::SocketAddr) {
    let sport = format!("sport = :{port}");
    ss(&[
        "-K",
        "state",
        "established",
        "dst",
        &api.to_string(),
        &sport,
    ]);
}

fn ss(args: &[&str]) -> String {
    let out = std::process::Command::new("ss")
        .args(args)
        .output()
        .expect("ss (iproute2)");
    assert!(out.status.success(), "ss {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
