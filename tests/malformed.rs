//! Malformed input gets a specific answer, and never disturbs another session.

mod common;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn error_frame(reason_prefix: &str, text: &str) {
    let v: serde_json::Value = serde_json::from_str(text).expect("error frame is JSON");
    assert_eq!(v["type"], "error", "{text}");
    use base64::Engine;
    let reason = base64::engine::general_purpose::STANDARD
        .decode(v["payload"].as_str().expect("payload"))
        .expect("base64 payload");
    let reason = String::from_utf8(reason).expect("utf-8 reason");
    assert!(reason.starts_with(reason_prefix), "{reason}");
}

#[tokio::test]
async fn bad_frames_get_errors_and_others_carry_on() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(
        api.addr,
        1,
        &["--max-message-size", "4096", "--max-frame-size", "4096"],
    );
    let mut bad = connect(gw.addr, "1").await;
    let mut good = connect(gw.addr, "2").await;

    for (input, why) in [
        ("not json", "bad frame: invalid JSON"),
        (r#"{"payload":"YQ=="}"#, "bad frame: invalid JSON"),
        (
            r#"{"type":"m","payload":"***"}"#,
            "bad frame: payload is not base64",
        ),
    ] {
        send_text(&mut bad, input).await;
        error_frame(why, recv(&mut bad).await.to_text().unwrap());
    }
    bad.send(Message::Binary(vec![0xff, 0xff, 0xff].into()))
        .await
        .unwrap();
    match recv(&mut bad).await {
        Message::Binary(b) => {
            use prost::Message as _;
            let p = ws_gateway::proto::wsgateway::Protocol::decode(b).unwrap();
            assert_eq!(p.r#type, "error");
            assert!(p.payload.starts_with(b"bad frame: invalid protobuf"));
        }
        other => panic!("expected a binary error frame, got {other:?}"),
    }

    // The bad session still works after its errors.
    send_text(&mut bad, &frame("message", b"still here")).await;
    assert_eq!(
        recv(&mut bad).await.into_text().unwrap().as_str(),
        frame("message", b"still here")
    );

    // Oversize: closed with 1009 and a reason.
    send_text(&mut bad, &"x".repeat(5000)).await;
    let (code, reason) = expect_close(&mut bad).await;
    assert_eq!(code, 1009);
    assert!(reason.contains("too big"), "{reason}");

    send_text(&mut good, &frame("message", b"unaffected")).await;
    assert_eq!(
        recv(&mut good).await.into_text().unwrap().as_str(),
        frame("message", b"unaffected")
    );
}
