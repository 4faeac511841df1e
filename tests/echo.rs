//! Frames make the round trip client → gateway → ws-api (echo) → client,
//! in the format the client speaks.

mod common;

use common::*;

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

    protobuf_round_trip(&mut ws).await;

    // Back to text: replies follow the client's latest format.
    send_text(&mut ws, &frame("HEARTBEAT", b"")).await;
    assert_eq!(
        recv(&mut ws).await.into_text().unwrap().as_str(),
        frame("HEARTBEAT", b"")
    );
}
