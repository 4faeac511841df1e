//! The admin endpoint: /metrics parses as Prometheus text and moves with
//! traffic, /healthz answers, /readyz follows the ws-api streams.

mod common;

use common::*;

#[tokio::test]
async fn metrics_move_and_readiness_follows_ws_api() {
    let mut api = ws_api("127.0.0.1:0", "echo");
    let api_addr = api.addr;
    let gw = gateway(api.addr, 2, &[]);
    let admin = gw.admin.expect("admin address");

    assert_eq!(http_get(admin, "/healthz").0, 200);
    eventually("readyz is 200 once both streams are up", || async {
        http_get(admin, "/readyz").0 == 200
    })
    .await;
    for name in [
        "gateway_websocket_online_totals",
        "gateway_websocket_input_bytes",
        "gateway_websocket_output_bytes",
    ] {
        assert_eq!(metric(admin, name), Some(0.0), "{name}");
    }

    let mut ws = connect(gw.addr, "8").await;
    let text = frame("message", b"count me");
    send_text(&mut ws, &text).await;
    recv(&mut ws).await;
    send_text(&mut ws, "garbage").await;
    recv(&mut ws).await;
    assert_eq!(metric(admin, "gateway_websocket_online_totals"), Some(1.0));
    assert!(metric(admin, "gateway_websocket_input_bytes").unwrap() >= text.len() as f64);
    assert!(metric(admin, "gateway_websocket_output_bytes").unwrap() >= text.len() as f64);
    assert_eq!(metric(admin, "gateway_messages_in_total"), Some(2.0));
    assert_eq!(
        metric_with(admin, "gateway_messages_lost_total", "reason", "bad_frame"),
        1.0
    );
    assert_eq!(
        metric(admin, "gateway_handshakes_accepted_total"),
        Some(1.0)
    );
    assert!(metric(admin, "process_resident_memory_bytes").unwrap() > 0.0);
    assert_eq!(metric(admin, "gateway_send_queue_messages"), Some(0.0));
    let (_, body) = http_get(admin, "/metrics");
    let connects = body
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"gateway_upstream_rpc_duration_seconds_count{method="Connect"} "#)
        })
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(
        connects,
        Some(1),
        "one Connect timed in the latency histogram"
    );

    assert!(try_connect(gw.addr, None).await.is_err());
    assert_eq!(
        metric_with(
            admin,
            "gateway_handshakes_rejected_total",
            "reason",
            "missing_token"
        ),
        1.0
    );

    api.kill();
    eventually("readyz is 503 while ws-api is down", || async {
        http_get(admin, "/readyz").0 == 503
    })
    .await;
    let (_, why) = http_get(admin, "/readyz");
    assert!(why.contains("ws-api stream down"), "{why}");
    let _api = ws_api(&api_addr.to_string(), "echo");
    eventually("readyz is 200 again", || async {
        http_get(admin, "/readyz").0 == 200
    })
    .await;
    assert!(metric(admin, "gateway_upstream_reconnects_total").unwrap() >= 1.0);
}
