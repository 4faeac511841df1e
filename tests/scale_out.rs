//! Scale-out on Redis: two gateways of two cores and two ws-api nodes (on
//! 127.0.0.2 and 127.0.0.3) sharing presence in a real `redis-server`.
//! Every gateway core streams to both nodes, so a Push on either node reaches
//! users on either gateway, and a Broadcast reaches every session once; a
//! dead node's users move to the other; a dead gateway's presence is purged;
//! `--handler redis-stream` appends upstream messages to Redis Streams.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::redis_server::RedisServer;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

struct Cluster {
    redis: RedisServer,
    apis: Vec<Proc>,
    gateways: Vec<Proc>,
}

/// Cores each gateway runs (2 where the machine has them).
fn cores() -> usize {
    online_cpus().min(2)
}

impl Cluster {
    fn start(handler: &str) -> Cluster {
        let redis = RedisServer::start();
        let url = redis.url();
        let node = |ip: &str| {
            let mut args = vec!["--redis", &url, "--server-ttl", "1s"];
            args.extend(keep_pushed());
            ws_api_with(&format!("{ip}:0"), handler, &args)
        };
        let apis = vec![node("127.0.0.2"), node("127.0.0.3")];
        let upstreams = format!("{},{}", apis[0].addr, apis[1].addr);
        let gateways: Vec<Proc> = (0..2).map(|_| gateway_to(&upstreams, 2, &[])).collect();
        for gw in &gateways {
            let admin = gw.admin.expect("admin address");
            wait_for_metric(admin, "gateway_upstream_up", 2.0 * cores() as f64);
        }
        Cluster {
            redis,
            apis,
            gateways,
        }
    }
}

#[tokio::test]
async fn push_on_either_node_reaches_users_on_either_gateway() {
    let c = Cluster::start("echo");
    // Users 1..=6 on gateway 0, 7..=12 on gateway 1, and user 1 on both.
    let mut users = Vec::new();
    for uid in 1..=12u64 {
        let gw = &c.gateways[usize::from(uid > 6)];
        users.push((uid, connect(gw.addr, &uid.to_string()).await));
    }
    users.push((1, connect(c.gateways[1].addr, "1").await));

    for (n, api) in c.apis.iter().enumerate() {
        for uid in 1..=12u64 {
            let text = format!("from node {n} to {uid}");
            let want = if uid == 1 { 2 } else { 1 };
            assert_eq!(push(api.addr, uid, "news", &text).await, want, "uid {uid}");
        }
        for (uid, ws) in &mut users {
            let text = format!("from node {n} to {uid}");
            assert_eq!(
                without_offset(recv(ws).await.into_text().unwrap().as_str()),
                frame("news", text.as_bytes())
            );
        }
    }
    // A broadcast on one node goes once down each of its streams (one per
    // gateway core) and reaches every session exactly once.
    let all = ws_api::proto::wsapi::BizMsg {
        biz_code: "all".into(),
        biz_payload: "everyone".into(),
        ..Default::default()
    };
    let reply = biz(c.apis[1].addr)
        .await
        .broadcast(all)
        .await
        .expect("broadcast");
    assert_eq!(reply.into_inner().success_count, users.len() as i64);
    for (_, ws) in &mut users {
        assert_eq!(
            recv(ws).await.into_text().unwrap().as_str(),
            frame("all", b"everyone")
        );
        nothing_pending(ws, "after broadcast").await;
    }
    // Each session is one field of its user's hash in Redis.
    let fields: i64 = c.redis.query(redis::cmd("HLEN").arg("ws:user:1"));
    assert_eq!(fields, 2);
}

/// Sends tagged frames until `stop`, then an `end` frame, adding each echo
/// to `echoes` as it arrives; returns (sent, distinct echoes, echoes seen
/// twice, the client).
async fn chatter(
    ws: Client,
    stop: Arc<AtomicBool>,
    echoes: Arc<AtomicU64>,
) -> (u64, u64, u64, Client) {
    let (mut tx, mut rx) = ws.split();
    let reader = tokio::spawn(async move {
        let end = frame("message", b"end");
        let mut seen = std::collections::HashSet::new();
        let mut twice = 0;
        loop {
            let next = tokio::time::timeout(DEADLINE, rx.next()).await;
            match next.expect("traffic never resumed") {
                Some(Ok(Message::Text(t))) if t.as_str() == end => {
                    return (seen.len() as u64, twice, rx);
                }
                Some(Ok(Message::Text(t))) => {
                    echoes.fetch_add(1, Ordering::Relaxed);
                    twice += u64::from(!seen.insert(t.to_string()));
                }
                Some(Ok(_)) => {}
                other => panic!("session ended: {other:?}"),
            }
        }
    });
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let text = frame("message", format!("m{sent}").as_bytes());
        tx.send(Message::text(text)).await.expect("send");
        sent += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tx.send(Message::text(frame("message", b"end")))
        .await
        .expect("send end");
    let (echoed, twice, rx) = reader.await.expect("reader");
    (sent, echoed, twice, tx.reunite(rx).expect("same stream"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_moves_its_users_to_the_other() {
    let mut c = Cluster::start("echo");
    let stop = Arc::new(AtomicBool::new(false));
    let echoes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for uid in 1..=20u64 {
        let gw = &c.gateways[(uid % 2) as usize];
        let ws = connect(gw.addr, &uid.to_string()).await;
        tasks.push(tokio::spawn(chatter(
            ws,
            Arc::clone(&stop),
            Arc::clone(&echoes),
        )));
    }
    eventually("echoes flowing before the kill", || async {
        echoes.load(Ordering::Relaxed) >= 100
    })
    .await;

    // Killed mid-traffic: what it had not acknowledged goes to the other
    // node (at least once: what it had read but not yet acknowledged is
    // echoed twice).
    c.apis[0].kill();
    for gw in &c.gateways {
        wait_for_metric(gw.admin.unwrap(), "gateway_upstream_up", cores() as f64);
    }
    let before = echoes.load(Ordering::Relaxed);
    eventually("echoes flowing again through the live node", || async {
        echoes.load(Ordering::Relaxed) >= before + 100
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut echoed, mut twice, mut clients) = (0, 0, 0, Vec::new());
    for t in tasks {
        let (s, e, d, ws) = t.await.expect("client task");
        sent += s;
        echoed += e;
        twice += d;
        clients.push(ws);
    }
    let (mut counted, mut moved, mut resent) = (0.0, 0.0, 0.0);
    for gw in &c.gateways {
        let admin = gw.admin.unwrap();
        for reason in ["upstream_unconfirmed", "upstream_buffer_full"] {
            counted += metric_with(admin, "gateway_messages_lost_total", "reason", reason);
        }
        moved += metric(admin, "gateway_upstream_failover_messages_total").unwrap_or(0.0);
        resent += metric(admin, "gateway_upstream_resent_messages_total").unwrap_or(0.0);
    }
    let counted = counted as u64;
    println!(
        "node killed mid-traffic: sent {sent}, echoed {echoed} (+{twice} twice), counted lost \
         {counted}, moved to the live node {moved} (of which written before {resent})"
    );
    assert!(moved > 0.0, "nothing failed over to the live node");
    // ws-api acknowledges: every message reached a node and came back.
    assert_eq!(
        (echoed, counted),
        (sent, 0),
        "lost between gateway and ws-api"
    );

    // Presence lives in Redis, so the surviving node reaches everyone.
    let survivor = c.apis[1].addr;
    for uid in 1..=20u64 {
        assert_eq!(push(survivor, uid, "news", "still here").await, 1);
    }
    for ws in &mut clients {
        assert_eq!(
            without_offset(recv(ws).await.into_text().unwrap().as_str()),
            frame("news", b"still here")
        );
    }
}

#[tokio::test]
async fn a_dead_gateway_leaves_no_presence() {
    let mut c = Cluster::start("echo");
    let doomed = c.gateways[1].addr;
    let mut kept = connect(c.gateways[0].addr, "1").await;
    let mut gone = Vec::new();
    for uid in 2..=5 {
        gone.push(connect(doomed, &uid.to_string()).await);
    }
    let pattern = format!("ws:server:{doomed}#*");
    assert!(!c.redis.keys(&pattern).is_empty(), "no presence to purge");

    c.gateways[1].kill();
    let until = std::time::Instant::now() + DEADLINE;
    while !c.redis.keys(&pattern).is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "presence of {doomed} outlived its TTL"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for uid in 2..=5u64 {
        assert_eq!(push(c.apis[0].addr, uid, "news", "anyone?").await, 0);
        assert!(c.redis.keys(&format!("ws:user:{uid}")).is_empty());
    }
    assert_eq!(push(c.apis[1].addr, 1, "news", "you").await, 1);
    assert_eq!(
        without_offset(recv(&mut kept).await.into_text().unwrap().as_str()),
        frame("news", b"you")
    );
}

#[tokio::test]
async fn redis_stream_handler_appends_upstream_messages() {
    let c = Cluster::start("redis-stream");
    let mut sent = 0;
    for (n, gw) in c.gateways.iter().enumerate() {
        let uid = 40 + n as u64;
        let mut ws = connect(gw.addr, &uid.to_string()).await;
        for i in 0..5 {
            send_text(&mut ws, &frame("chat", format!("{uid}-{i}").as_bytes())).await;
            sent += 1;
        }
    }
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        let len: usize = c.redis.query(redis::cmd("XLEN").arg("chat"));
        if len == sent {
            break;
        }
        assert!(len < sent, "more entries than messages: {len}");
        assert!(
            std::time::Instant::now() < until,
            "{len} of {sent} in the stream"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<Entry> = c
        .redis
        .query(redis::cmd("XRANGE").arg("chat").arg("-").arg("+"));
    for (_, fields) in &entries {
        let get = |k: &str| {
            let v = fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
            String::from_utf8(v.unwrap_or_else(|| panic!("no field {k}"))).unwrap()
        };
        let payload = get("payload");
        let uid = get("uid");
        assert!(
            payload.starts_with(&format!("{uid}-")),
            "{payload} from uid {uid}: {entries:?}"
        );
        assert!(get("server").contains('#'));
        assert!(!get("sid").is_empty());
    }
}

#[tokio::test]
async fn a_user_resumes_on_the_other_gateway_from_redis_history() {
    let c = Cluster::start("discard");
    let uid = 9101;
    let mut ws = connect_since(c.gateways[0].addr, uid, None).await;
    // Pushed through one node; the replay comes from whichever node the
    // other gateway routes the user to: both read the history in Redis.
    let pushing = push_in_background(c.apis[1].addr, uid);
    let (epoch, last) = read_pushes(&mut ws, 250).await;
    drop(ws);
    let since = format!("{epoch}:{last}");
    let mut ws = connect_since(c.gateways[1].addr, uid, Some(&since)).await;
    expect_resumed_in_order(&mut ws, &epoch, last).await;
    pushing.await.expect("pushes");
}
