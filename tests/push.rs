//! ws-api's `Push` reaches every session of a uid and only those, through
//! the stream of whichever core owns each session; `Disconnect` on close
//! removes the session from ws-api's presence.

mod common;

use common::*;

#[tokio::test]
async fn push_reaches_exactly_the_users_sessions() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);

    // Enough sessions of user 5 that SO_REUSEPORT spreads them over both cores.
    let mut mine = Vec::new();
    for _ in 0..8 {
        mine.push(connect(gw.addr, "5").await);
    }
    let mut other = connect(gw.addr, "6").await;

    assert_eq!(push(api.addr, 5, "notice", "hello").await, 8);
    for ws in &mut mine {
        assert_eq!(
            without_offset(recv(ws).await.into_text().unwrap().as_str()),
            frame("notice", b"hello")
        );
    }

    // The other user got nothing: its next frame is its own echo.
    send_text(&mut other, &frame("message", b"mine")).await;
    assert_eq!(
        recv(&mut other).await.into_text().unwrap().as_str(),
        frame("message", b"mine")
    );

    // Closing sessions reaches ws-api as Disconnect.
    for mut ws in mine.drain(..4) {
        ws.close(None).await.expect("close");
    }
    eventually("ws-api sees 4 sessions of user 5", || async {
        push(api.addr, 5, "notice", "x").await == 4
    })
    .await;
    drop(mine);
    eventually("ws-api sees no session of user 5", || async {
        push(api.addr, 5, "notice", "x").await == 0
    })
    .await;
}
