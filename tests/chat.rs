//! `ws-api --handler chat`, the demo's backend (`make run`): members of a
//! room get each line as a positioned push; other messages are echoed.

mod common;

use common::*;

#[tokio::test]
async fn room_members_get_each_line_with_a_position() {
    let api = ws_api("127.0.0.1:0", "chat");
    let gw = gateway(api.addr, 1, &[]);
    let mut ann = connect(gw.addr, "501").await;
    let mut bob = connect(gw.addr, "502").await;
    for ws in [&mut ann, &mut bob] {
        send_text(ws, &frame("join", b"r1")).await;
    }
    // Joins are not echoed: the next frame each gets is the echo of this.
    nothing_pending(&mut ann, "joined").await;
    nothing_pending(&mut bob, "joined").await;
    send_text(&mut ann, &frame("say", b"hi")).await;
    for ws in [&mut ann, &mut bob] {
        let v = next_json(ws).await.expect("open");
        assert_eq!(v["type"], "said", "{v}");
        assert_eq!(offset(&v).1, 1, "the first push to each user");
        use base64::Engine;
        let line = base64::engine::general_purpose::STANDARD
            .decode(v["payload"].as_str().expect("payload"))
            .expect("base64");
        let line: serde_json::Value = serde_json::from_slice(&line).expect("JSON line");
        assert_eq!(
            line,
            serde_json::json!({"room": "r1", "from": 501, "text": "hi"})
        );
    }
}
