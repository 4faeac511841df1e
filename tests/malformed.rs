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
            r#"{"type":"message","text":"hi"}"#,
            "bad frame: invalid JSON envelope: unknown field `text`",
        ),
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

/// Empty frames (6 bytes each) answered by ~100-byte error frames: ten get
/// an answer, the flood after them closes the session with 1008, counted.
#[tokio::test]
async fn a_flood_of_bad_frames_is_answered_ten_times_then_closed() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let admin = gw.admin.expect("admin");
    let mut ws = connect(gw.addr, "3").await;
    for _ in 0..100 {
        if ws.feed(Message::text("")).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    let mut errors = 0;
    let (code, reason) = loop {
        match recv_or_close(&mut ws).await {
            Ok(text) => {
                error_frame("bad frame:", &text);
                errors += 1;
            }
            Err(close) => break close,
        }
    };
    assert_eq!((code, reason.as_str()), (1008, "too many bad frames"));
    assert!((10..=12).contains(&errors), "{errors} error frames");
    assert_eq!(metric(admin, "gateway_bad_frame_closes_total"), Some(1.0));
}

/// The next text message, or the close frame's (code, reason).
async fn recv_or_close(ws: &mut Client) -> Result<String, (u16, String)> {
    use futures_util::StreamExt;
    loop {
        let next = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("deadline");
        match next {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(Some(c)))) => return Err((c.code.into(), c.reason.to_string())),
            Some(Ok(_)) => continue,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}
