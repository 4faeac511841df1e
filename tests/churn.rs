//! 10,000 connect/disconnect cycles: every session is admitted, every close
//! reaches ws-api, and the gateway ends with nothing open and nothing lost.

mod common;

use common::*;
use futures_util::StreamExt;

const CYCLES: usize = 10_000;
const IN_FLIGHT: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_disconnect_cycles() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    let admin = gw.admin.unwrap();
    connect(gw.addr, "1").await.close(None).await.unwrap();
    let addr = gw.addr;
    futures_util::stream::iter(0..CYCLES)
        .map(|i| async move {
            let mut ws = connect(addr, &(1000 + i % 500).to_string()).await;
            // Half close politely, half just drop the TCP connection.
            if i % 2 == 0 {
                ws.close(None).await.expect("close");
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .for_each(|()| async {})
        .await;
    eventually("every session is gone", || async {
        metric(admin, "gateway_websocket_online_totals") == Some(0.0)
    })
    .await;
    assert_eq!(
        metric(admin, "gateway_handshakes_accepted_total"),
        Some((CYCLES + 1) as f64)
    );
    assert_eq!(
        metric(admin, "gateway_disconnect_failures_total"),
        Some(0.0)
    );
    assert_eq!(metric(admin, "gateway_messages_lost_total"), Some(0.0));
    for uid in [1000u64, 1250, 1499] {
        assert_eq!(
            push(api.addr, uid, "probe", "").await,
            0,
            "presence of {uid} left behind"
        );
    }
}
