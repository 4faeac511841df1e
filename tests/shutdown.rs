//! SIGTERM drains: every client gets close 1001, ws-api gets a Disconnect
//! for each session, readiness turns 503, and the process exits 0 in time;
//! a second SIGTERM only hurries the drain.

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
    assert_eq!(online(api.addr).await, 0, "every session sent Disconnect");
}

/// A second SIGTERM (an impatient operator, a supervisor's escalation)
/// closes every remaining session at once instead of over the drain
/// window, and each still sends its Disconnect: ws-api is left with no
/// dead presence (the issue: 1,768 of 2,000 sessions left behind).
#[tokio::test]
async fn a_second_sigterm_closes_at_once_and_still_disconnects() {
    const CLIENTS: i64 = 200;
    let api = ws_api("127.0.0.1:0", "echo");
    let mut gw = gateway(
        api.addr,
        2,
        &["--drain-window", "50s", "--shutdown-timeout", "60s"],
    );
    let mut clients = Vec::new();
    for uid in 0..CLIENTS {
        clients.push(connect(gw.addr, &(100 + uid).to_string()).await);
    }
    assert_eq!(online(api.addr).await, CLIENTS);
    gw.signal(libc::SIGTERM);
    // The drain has begun once the first sessions are gone from ws-api.
    let until = std::time::Instant::now() + DEADLINE;
    while online(api.addr).await == CLIENTS {
        assert!(std::time::Instant::now() < until, "no session drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.signal(libc::SIGTERM);
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("exited long before the 50 s drain window");
    assert!(status.success(), "{status:?}");
    assert_eq!(online(api.addr).await, 0, "every session sent Disconnect");
    for ws in &mut clients {
        assert_eq!(expect_close(ws).await.0, 1001);
    }
}
