//! Several ws-api nodes behind one gateway: every core streams to each node,
//! a user's messages go to the node its uid picks, move to a live node when
//! that one dies, and come back when it returns.

mod common;

use common::*;

/// Every client sends one frame tagged `tag` and gets exactly its echo.
async fn round(clients: &mut [Client], tag: &str) {
    for (i, ws) in clients.iter_mut().enumerate() {
        nothing_pending(ws, &format!("{tag}-{i}")).await;
    }
}

#[tokio::test]
async fn traffic_moves_to_a_live_node_and_back() {
    let mut a = ws_api("127.0.0.1:0", "echo");
    let mut b = ws_api("127.0.0.1:0", "echo");
    let a_addr = a.addr;
    let gw = gateway_to(&format!("{},{}", a.addr, b.addr), 2, &[]);
    let admin = gw.admin.expect("admin address");
    let cores = online_cpus().min(2) as f64;
    wait_for_metric(admin, "gateway_upstream_up", 2.0 * cores);
    assert_eq!(metric(admin, "gateway_upstream_nodes"), Some(2.0 * cores));

    let mut clients = Vec::new();
    for uid in 1..=20 {
        clients.push(connect(gw.addr, &uid.to_string()).await);
    }
    round(&mut clients, "both").await;

    // Once acknowledged, nothing is written again to the surviving node.
    wait_all_acked(admin);
    a.kill();
    wait_for_metric(admin, "gateway_upstream_up", cores);
    assert_eq!(http_get(admin, "/readyz").0, 200, "one live node is enough");
    round(&mut clients, "b-only").await;
    connect(gw.addr, "21").await;

    let _a = ws_api(&a_addr.to_string(), "echo");
    wait_for_metric(admin, "gateway_upstream_up", 2.0 * cores);
    wait_all_acked(admin);
    b.kill();
    wait_for_metric(admin, "gateway_upstream_up", cores);
    round(&mut clients, "a-again").await;
}

#[tokio::test]
async fn a_name_resolving_to_nothing_yet_is_not_ready() {
    let gw = gateway_to("no-such-host.invalid:8081", 1, &[]);
    let admin = gw.admin.expect("admin address");
    let (status, body) = http_get(admin, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert_eq!(metric(admin, "gateway_upstream_nodes"), Some(0.0));
    assert!(matches!(
        try_connect(gw.addr, Some("1")).await,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 503
    ));
}
