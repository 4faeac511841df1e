//! SIGTERM drains: every client gets close 1001, ws-api gets a Disconnect
//! for each session, readiness turns 503, and the process exits 0 in time.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn sigterm_closes_with_1001_and_disconnects() {
    let api = ws_api("127.0.0.1:0", "echo");
    let mut gw = gateway(
        api.addr,
        2,
        &["--drain-window", "200ms", "--shutdown-timeout", "5s"],
    );
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(gw.addr, "11").await);
    }
    assert_eq!(push(api.addr, 11, "probe", "").await, 20);
    for ws in &mut clients {
        // Drain the probe message so the next frame is the close.
        recv(ws).await;
    }

    gw.signal(libc::SIGTERM);
    for ws in &mut clients {
        let (code, reason) = expect_close(ws).await;
        assert_eq!(code, 1001);
        assert!(reason.contains("shutting down"), "{reason}");
    }
    let status = gw
        .wait_exit(Duration::from_secs(7))
        .expect("exited within the deadline");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        push(api.addr, 11, "probe", "").await,
        0,
        "every session sent Disconnect"
    );
}
