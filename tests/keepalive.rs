//! Server pings keep a silent browser-like client alive, and a client that
//! stops answering is closed in time, with a reason, and counted.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn pings_keep_quiet_clients_and_close_deaf_ones() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &["--ping-interval", "200ms"]);
    let mut quiet = connect(gw.addr, "61").await;
    let mut deaf = connect(gw.addr, "62").await;

    // The quiet client never sends data but keeps reading, so its WebSocket
    // library answers each ping with a pong, as a browser does.
    let until = Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while Instant::now() < until {
        match tokio::time::timeout(until - Instant::now(), quiet.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
            Ok(other) => panic!("quiet client lost its connection: {other:?}"),
            Err(_) => break,
        }
    }
    assert!(pings >= 4, "only {pings} pings in 1.5 s");
    nothing_pending(&mut quiet, "alive").await;

    // The deaf client read nothing all this time, so it answered no ping.
    let (code, reason) = expect_close(&mut deaf).await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("keepalive timeout"), "{reason}");
    let admin = gw.admin.expect("admin");
    assert!(metric(admin, "gateway_keepalive_timeouts_total").unwrap() >= 1.0);
}
