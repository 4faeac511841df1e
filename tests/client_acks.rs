//! Client → server acknowledgements survive a ws-api crash: a client sends
//! 300 messages with ids to ws-api `--handler redis-stream` (history and
//! dedup in a real `redis-server`) while ws-api is killed with SIGKILL and
//! started again; the client resends what it has no ack for, as a
//! reconnecting client does. In the end every message is in the Redis
//! Stream exactly once, and every one the client saw acknowledged was there.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const SENT: usize = 300;

fn chat(i: usize, resent: bool) -> String {
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD.encode(format!("m-{i}"));
    let resent = if resent { r#","resent":true"# } else { "" };
    format!(r#"{{"type":"chat","payload":"{payload}","id":"m-{i}"{resent}}}"#)
}

/// Payloads in the `chat` stream, with how often each appears.
fn stored(redis: &RedisServer) -> Vec<String> {
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let entries: Vec<Entry> = redis.query(redis::cmd("XRANGE").arg("chat").arg("-").arg("+"));
    entries
        .into_iter()
        .filter_map(|(_, fields)| {
            let (_, v) = fields.into_iter().find(|(f, _)| f == "payload")?;
            String::from_utf8(v).ok()
        })
        .collect()
}

#[tokio::test]
async fn acknowledged_messages_are_stored_and_resends_fill_the_gap() {
    let redis = RedisServer::start();
    let url = redis.url();
    let extra = ["--redis", url.as_str()];
    let mut api = ws_api_with("127.0.0.1:0", "redis-stream", &extra);
    let api_addr = api.addr;
    let gw = gateway(api_addr, 1, &[]);
    let ws = connect_since(gw.addr, 77, None).await;
    let (mut tx, mut rx) = ws.split();

    // Acks are read in their own task: ids as they come.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Text(t) = msg else { continue };
            let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON");
            if v["type"] == "ack" {
                let id = v["id"].as_str().expect("id").to_owned();
                if acked_tx.send(id).is_err() {
                    return;
                }
            }
        }
    });
    let mut acked = BTreeSet::new();
    for i in 0..SENT {
        tx.send(Message::text(chat(i, false))).await.expect("send");
        if i == SENT / 3 {
            // Kill ws-api once some messages are acknowledged.
            while acked.len() < 20 {
                let id = tokio::time::timeout(DEADLINE, acked_rx.recv())
                    .await
                    .expect("acks before the kill")
                    .expect("reader alive");
                acked.insert(id);
            }
            api.signal(libc::SIGKILL);
            api.wait_exit(DEADLINE).expect("ws-api killed");
        }
        if i == SENT / 2 {
            api = ws_api_with(&api_addr.to_string(), "redis-stream", &extra);
        }
    }
    // Every acknowledged id so far must already be stored.
    while let Ok(id) = acked_rx.try_recv() {
        acked.insert(id);
    }
    let kept: BTreeSet<String> = stored(&redis).into_iter().collect();
    for id in &acked {
        assert!(kept.contains(id), "{id} acknowledged but not stored");
    }
    // Resend what has no ack, as a client does after a reconnect, until
    // every message is acknowledged.
    let until = Instant::now() + DEADLINE;
    let before_resends = acked.len();
    let mut rounds = 0;
    while acked.len() < SENT {
        rounds += 1;
        assert!(
            Instant::now() < until,
            "{} of {SENT} acknowledged",
            acked.len()
        );
        for i in (0..SENT).filter(|i| !acked.contains(&format!("m-{i}"))) {
            tx.send(Message::text(chat(i, true))).await.expect("resend");
        }
        // Collect the acks this round brings (a round trip is well under this).
        let round = Instant::now() + Duration::from_millis(500);
        while let Ok(Some(id)) = tokio::time::timeout_at(round.into(), acked_rx.recv()).await {
            acked.insert(id);
        }
    }
    eprintln!("acknowledged before resending: {before_resends} of {SENT}; resend rounds: {rounds}");
    let stored = stored(&redis);
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), SENT, "every message stored");
    assert_eq!(stored.len(), SENT, "none stored twice");
    drop(tx);
    reader.abort();
    drop(api);
}
