//! 1,000 sessions spread over two cores each get exactly their own replies,
//! in order.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const SESSIONS: usize = 1000;
const PER_SESSION: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_gets_its_own_replies_in_order() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    connect(gw.addr, "0").await;

    let mut clients = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        clients.push(connect(gw.addr, &(i + 1).to_string()).await);
    }
    let tasks = clients.into_iter().enumerate().map(|(i, ws)| {
        tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let sender = async {
                for k in 0..PER_SESSION {
                    let body = format!("{i}:{k}");
                    tx.send(Message::text(frame("message", body.as_bytes())))
                        .await
                        .unwrap();
                }
            };
            let receiver = async {
                for k in 0..PER_SESSION {
                    let want = frame("message", format!("{i}:{k}").as_bytes());
                    let got = tokio::time::timeout(DEADLINE, rx.next())
                        .await
                        .expect("reply before deadline")
                        .expect("open")
                        .expect("frame");
                    assert_eq!(got.into_text().unwrap().as_str(), want, "session {i}");
                }
            };
            tokio::join!(sender, receiver);
        })
    });
    for t in tasks {
        t.await.expect("session task");
    }
    // And the gateway's own account agrees: nothing more, nothing lost.
    let admin = gw.admin.expect("admin");
    let total = (SESSIONS * PER_SESSION) as f64;
    assert_eq!(metric(admin, "gateway_messages_in_total"), Some(total));
    assert_eq!(metric(admin, "gateway_messages_out_total"), Some(total));
    assert_eq!(metric(admin, "gateway_messages_lost_total"), Some(0.0));
}
