//! `--frame-format raw`: messages pass verbatim both ways, keeping their
//! frame type, with no JSON envelope.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn raw_frames_echo_verbatim() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &["--frame-format", "raw"]);
    let mut ws = connect(gw.addr, "71").await;
    send_text(&mut ws, "plain text, not JSON").await;
    assert_eq!(recv(&mut ws).await, Message::text("plain text, not JSON"));
    let bytes = vec![0u8, 159, 146, 150, 255];
    ws.send(Message::Binary(bytes.clone().into()))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await, Message::Binary(bytes.into()));
}
