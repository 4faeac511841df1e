//! Frames make the round trip client → gateway → ws-api (echo) → client,
//! in the format the client speaks.

mod common;

use common::*;
use futures_util::SinkExt;
use prost::Message as _;
use tokio_tungstenite::tungstenite::Message;
use ws_gateway::proto::wsgateway::Protocol;

#[tokio::test]
async fn json_and_protobuf_frames_are_echoed() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    let mut ws = connect(gw.addr, "9").await;

    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut seen = 0;
    for name in ["50b.txt", "1k.txt"] {
        let seed = std::fs::read_to_string(testdata.join(name)).expect("seed frame");
        let seed = seed.trim_end();
        send_text(&mut ws, seed).await;
        assert_eq!(
            recv(&mut ws).await.into_text().unwrap().as_str(),
            seed,
            "{name}"
        );
        seen += 1;
    }
    assert_eq!(seen, 2);

    let p = Protocol {
        r#type: "bin".into(),
        payload: vec![0u8, 1, 2, 254, 255].into(),
    };
    ws.send(Message::Binary(p.encode_to_vec().into()))
        .await
        .unwrap();
    match recv(&mut ws).await {
        Message::Binary(b) => assert_eq!(Protocol::decode(b).unwrap(), p),
        other => panic!("expected a binary reply, got {other:?}"),
    }

    // Back to text: replies follow the client's latest format.
    send_text(&mut ws, &frame("HEARTBEAT", b"")).await;
    assert_eq!(
        recv(&mut ws).await.into_text().unwrap().as_str(),
        frame("HEARTBEAT", b"")
    );
}
