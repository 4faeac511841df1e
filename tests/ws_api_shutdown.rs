//! ws-api's own graceful stop: SIGTERM (what a container runtime or
//! systemd sends) refuses new connections, tells gateways to go elsewhere
//! (GOAWAY), gives calls in flight `--shutdown-grace`, and exits 0 rather
//! than dying of the signal (143); the gateway in front sees its stream go.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_0_within_the_grace_with_a_gateway_attached() {
    let mut api = ws_api_with("127.0.0.1:0", "echo", &["--shutdown-grace", "1s"]);
    let gw = gateway(api.addr, 1, &[]);
    let mut ws = connect(gw.addr, "3").await;
    send_text(&mut ws, &frame("message", b"before")).await;
    recv(&mut ws).await;

    let sent = Instant::now();
    api.signal(libc::SIGTERM);
    let status = api.wait_exit(DEADLINE).expect("ws-api exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?}",
        sent.elapsed()
    );

    let admin = gw.admin.expect("admin address");
    let until = Instant::now() + DEADLINE;
    while http_get(admin, "/readyz").0 == 200 {
        assert!(Instant::now() < until, "the gateway never saw ws-api go");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut api = ws_api_with("127.0.0.1:0", "echo", &["--shutdown-grace", "60s"]);
    // A stream held open keeps the graceful stop waiting for its grace.
    let gw = gateway(api.addr, 1, &[]);
    until_ready(&gw);
    api.signal(libc::SIGTERM);
    // The first one is seen once the listener is gone (the stop refuses new
    // connections); two signals before that could be delivered as one.
    let until = Instant::now() + DEADLINE;
    while std::net::TcpStream::connect(api.addr).is_ok() {
        assert!(
            Instant::now() < until,
            "ws-api kept accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    api.signal(libc::SIGTERM);
    let status = api
        .wait_exit(DEADLINE)
        .expect("ws-api exits after a second signal");
    assert_eq!(status.code(), Some(1), "{status:?}");
}
