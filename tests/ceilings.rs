//! What clients and callers control cannot grow ws-api past its ceilings:
//! a client that sends unique message ids as fast as it can stays under
//! `--dedup-ids` (ids are kept as hashes, the oldest forgotten first; the
//! issue: one client grew ws-api by 824 MiB in 20 s with 60 KB ids), and
//! pushes to many never-connected users stay under `--history-bytes` (the
//! issue: 5,000 users took ws-api from 5.8 to 7,966 MiB).

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use ws_util::procfs::{self, Process};

const FLOOD: usize = 10_000;
const ID_BYTES: usize = 4096;

fn rss_kib(pid: u32) -> u64 {
    let status = Process::Pid(pid).read("status").expect("status");
    procfs::rss_kib(&status).expect("VmRSS")
}

fn message(n: usize) -> String {
    let id = format!("{n:06}-{}", "x".repeat(ID_BYTES));
    format!(r#"{{"type":"chat","payload":"","id":"{id}"}}"#)
}

/// Sends message `n` and returns whether its ack says `duplicate`.
async fn send_and_ack(ws: &mut Client, n: usize) -> bool {
    ws.send(Message::text(message(n))).await.expect("send");
    let want = format!("{n:06}-");
    loop {
        let frame = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("an ack in time")
            .expect("open")
            .expect("frame");
        let Message::Text(t) = frame else { continue };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON");
        if v["type"] == "ack" && v["id"].as_str().is_some_and(|id| id.starts_with(&want)) {
            return v["duplicate"] == true;
        }
    }
}

#[tokio::test]
async fn unique_ids_cannot_grow_ws_api_past_its_ceiling() {
    let extra = ["--dedup-ids", "1000", "--dedup-ids-per-user", "100"];
    let api = ws_api_with("127.0.0.1:0", "discard", &extra);
    let gw = gateway(api.addr, 1, &[]);
    let mut ws = connect(gw.addr, "5").await;
    for n in 0..10 {
        assert!(!send_and_ack(&mut ws, n).await);
    }
    let before = rss_kib(api.pid());
    // The flood, in batches whose acks are awaited: as fast as ws-api
    // takes them, never past the gateway's upstream buffer.
    for batch in (10..10 + FLOOD).collect::<Vec<_>>().chunks(500) {
        for &n in batch {
            ws.feed(Message::text(message(n))).await.expect("send");
        }
        ws.flush().await.expect("flush");
        let mut acks = 0;
        while acks < batch.len() {
            let frame = tokio::time::timeout(DEADLINE, ws.next()).await;
            let Ok(Some(Ok(Message::Text(t)))) = frame else {
                panic!("flood: {acks} acks, then {frame:?}");
            };
            assert!(t.as_str().contains(r#""type":"ack""#), "{t}");
            acks += 1;
        }
    }
    let after = rss_kib(api.pid());
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    let sent_mib = (FLOOD * ID_BYTES) as f64 / (1024.0 * 1024.0);
    println!(
        "ws-api RSS {before} KiB -> {after} KiB (+{grown_mib:.1} MiB) after {sent_mib:.0} MiB of unique ids"
    );
    assert!(grown_mib < sent_mib / 4.0, "ws-api grew {grown_mib:.1} MiB");

    assert!(
        send_and_ack(&mut ws, 10 + FLOOD - 1).await,
        "the newest id is remembered"
    );
    assert!(!send_and_ack(&mut ws, 10).await, "the oldest was forgotten");
}

#[tokio::test]
async fn pushes_to_many_users_cannot_grow_ws_api_past_its_history_budget() {
    const USERS: u64 = 1000;
    const PUSHES: usize = 4;
    const PAYLOAD: usize = 16 * 1024;
    let api = ws_api_with("127.0.0.1:0", "echo", &["--history-bytes", "4194304"]);
    let mut client = biz(api.addr).await;
    let msg = |uid| ws_api::proto::wsapi::BizMsg {
        biz_code: "news".into(),
        biz_payload: "p".repeat(PAYLOAD),
        uid,
        ..Default::default()
    };
    client.push(msg(1)).await.expect("push");
    let before = rss_kib(api.pid());
    for uid in 1..=USERS {
        for _ in 0..PUSHES {
            client.push(msg(uid)).await.expect("push");
        }
    }
    let after = rss_kib(api.pid());
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    let pushed_mib = (USERS as usize * PUSHES * PAYLOAD) as f64 / (1024.0 * 1024.0);
    println!(
        "ws-api RSS {before} KiB -> {after} KiB (+{grown_mib:.1} MiB) after {pushed_mib:.0} MiB pushed to {USERS} users"
    );
    assert!(
        grown_mib < pushed_mib / 4.0,
        "ws-api grew {grown_mib:.1} MiB"
    );
}
