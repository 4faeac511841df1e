//! ws-api killed and restarted: open sessions survive, messages sent during
//! the outage wait in the core's bounded buffer and are delivered after the
//! reconnect, new clients get 503 meanwhile, and past the buffer's bound a
//! client gets an error frame instead of silent loss.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::Error as WsError;

#[tokio::test]
async fn outage_is_buffered_then_recovered() {
    let mut api = ws_api("127.0.0.1:0", "echo");
    let addr = api.addr;
    let gw = gateway(addr, 1, &[]);
    let mut ws = connect(gw.addr, "3").await;
    send_text(&mut ws, &frame("message", b"before")).await;
    assert_eq!(
        recv(&mut ws).await.into_text().unwrap().as_str(),
        frame("message", b"before")
    );

    // Acknowledged: the restarted ws-api is not sent it again.
    wait_all_acked(gw.admin.expect("admin"));
    api.kill();
    eventually("new clients are refused with 503", || async {
        matches!(try_connect(gw.addr, Some("4")).await, Err(WsError::Http(r)) if r.status() == 503)
    })
    .await;
    send_text(&mut ws, &frame("message", b"during")).await;

    let _api = ws_api(&addr.to_string(), "echo");
    assert_eq!(
        recv(&mut ws).await.into_text().unwrap().as_str(),
        frame("message", b"during")
    );
    send_text(&mut ws, &frame("message", b"after")).await;
    assert_eq!(
        recv(&mut ws).await.into_text().unwrap().as_str(),
        frame("message", b"after")
    );
    connect(gw.addr, "5").await;
}

#[tokio::test]
async fn full_buffer_answers_with_an_error_frame() {
    let mut api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--upstream-buffer", "200"]);
    let mut ws = connect(gw.addr, "3").await;
    api.kill();
    eventually("the gateway notices ws-api is gone", || async {
        matches!(try_connect(gw.addr, Some("4")).await, Err(WsError::Http(r)) if r.status() == 503)
    })
    .await;
    let big = vec![b'x'; 150];
    send_text(&mut ws, &frame("message", &big)).await;
    send_text(&mut ws, &frame("message", &big)).await;
    let reply = recv(&mut ws).await.into_text().unwrap();
    let want = frame(
        "error",
        b"ws-api unavailable: message not delivered, try again later",
    );
    assert_eq!(reply.as_str(), want);
}
