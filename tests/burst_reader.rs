//! A client that sends thousands of frames in one write and reads
//! everything gets every echo: ws-api answers the burst in batches larger
//! than the send queue (256 here), which a session that can write is not
//! closed for; it alternates between its client and its queue and stops
//! reading the client while its replies pile up.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_bursting_client_that_reads_gets_every_echo() {
    const FRAMES: usize = 3000;
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--send-queue", "256"]);
    let ws = connect(gw.addr, "31").await;
    let (mut tx, mut rx) = ws.split();
    let writer = tokio::spawn(async move {
        for i in 0..FRAMES {
            tx.feed(Message::text(frame("m", format!("{i:0200}").as_bytes())))
                .await
                .expect("feed");
        }
        // One flush: the frames leave in as few writes as the socket takes.
        tx.flush().await.expect("flush");
        tx
    });
    for i in 0..FRAMES {
        let want = frame("m", format!("{i:0200}").as_bytes());
        let got = tokio::time::timeout(DEADLINE, rx.next())
            .await
            .unwrap_or_else(|_| panic!("echo {i} not within the deadline"));
        match got {
            Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), want, "echo {i}"),
            other => panic!("echo {i}: got {other:?}"),
        }
    }
    // The write half lives until every echo is in: dropping it closes the socket.
    let _tx = writer.await.expect("writer");
    let admin = gw.admin.expect("admin");
    assert_eq!(
        metric_with(
            admin,
            "gateway_messages_lost_total",
            "reason",
            "send_queue_full"
        ),
        0.0
    );
}
