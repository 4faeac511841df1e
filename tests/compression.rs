//! permessage-deflate (`--compression deflate`) with clients that are not
//! the gateway's code: Python `websockets` (which offers it by default)
//! negotiates it and exchanges compressed text and binary messages; a
//! client that does not offer it gets plain frames from the same gateway;
//! and from a raw socket, a zip bomb (1009), data that does not inflate
//! (1007), RSV1 on a control frame and RSV1 when nothing was negotiated
//! (1002) each end their session with their code, counted, while a
//! neighbour on the same core carries on. With
//! `--compression-context-takeover`, Python `websockets` keeps its
//! inflater from message to message and reads what the gateway compressed
//! against the ones before.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use flate2::{Compress, Compression, FlushCompress};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

fn stack() -> (Proc, Proc) {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(
        api.addr,
        1,
        &["--compression", "deflate", "--max-message-size", "64KiB"],
    );
    until_ready(&gw);
    (api, gw)
}

/// `data` as one permessage-deflate message payload (raw deflate, sync
/// flush, the 00 00 ff ff tail removed).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("deflate");
    assert!(
        c.total_in() as usize == data.len(),
        "output buffer too small"
    );
    out.truncate(out.len() - 4);
    out
}

#[test]
fn python_websockets_negotiates_it_and_messages_round_trip() {
    let (_api, gw) = stack();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/deflate/client.py");
    let out = Command::new(peers::python())
        .arg(script)
        .arg(format!("ws://{}/gateway/ws?token=3", gw.addr))
        .output()
        .expect("the venv's python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        seen["extensions"],
        serde_json::json!(["permessage-deflate"]),
        "{seen}"
    );
    assert_eq!(
        seen["echoed"],
        serde_json::json!([true, true, true]),
        "{seen}"
    );
    let admin = gw.admin.expect("admin");
    // The large text and the binary one both ways; the small one (under
    // --compression-min-size) only from Python, which compresses all.
    assert!(metric(admin, "gateway_compressed_messages_out_total") >= Some(2.0));
    assert!(metric(admin, "gateway_compressed_messages_in_total") >= Some(2.0));
    let (before, after) = (
        metric(admin, "gateway_compression_out_before_bytes_total").unwrap_or(0.0),
        metric(admin, "gateway_compression_out_after_bytes_total").unwrap_or(f64::MAX),
    );
    assert!(after * 10.0 < before, "{before} -> {after}");
}

/// Python websockets through `alike` texts; what it printed.
fn python_alike(gw: &Proc, texts: &[String]) -> serde_json::Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/deflate/client.py");
    let mut child = Command::new(peers::python())
        .arg(script)
        .arg(format!("ws://{}/gateway/ws?token=6", gw.addr))
        .arg("alike")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the venv's python runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(texts.join("\n").as_bytes()).expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("python ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn context_takeover_compresses_against_the_messages_before() {
    let texts = alike_texts(30);
    let api = ws_api("127.0.0.1:0", "echo");
    let mut ratios = Vec::new();
    for takeover in [false, true] {
        let mut flags = vec![
            "--compression",
            "deflate",
            "--compression-window-bits",
            "11",
        ];
        if takeover {
            flags.push("--compression-context-takeover");
        }
        let gw = gateway(api.addr, 1, &flags);
        until_ready(&gw);
        let seen = python_alike(&gw, &texts);
        assert_eq!(seen["server_takeover"], takeover, "{seen}");
        assert_eq!(seen["echoed"], serde_json::json!(vec![true; 30]), "{seen}");
        let admin = gw.admin.expect("admin");
        assert_eq!(
            metric(admin, "gateway_compressed_messages_out_total"),
            Some(30.0)
        );
        ratios.push(compression_out_ratio(admin));
    }
    // Alone each text barely shrinks; against the one before it, to a
    // few bytes.
    assert!(ratios[0] < 1.6, "{ratios:?}");
    assert!(ratios[1] > 5.0, "{ratios:?}");
}

#[test]
fn with_and_without_the_offer_from_raw_sockets() {
    let (_api, gw) = stack();
    let big = frame("message", &b"plain or not ".repeat(200));
    // No offer: no extension in the 101, and the echo comes back plain.
    let (mut plain, head) = raw::upgrade(gw.addr, "4", "");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions"),
        "{head}"
    );
    plain
        .write_all(&raw::client_frame(0x1, big.len(), big.as_bytes()))
        .expect("send");
    let (b0, payload) = raw::read_frame_with_bits(&mut plain);
    assert_eq!((b0, payload.as_slice()), (0x81, big.as_bytes()));

    // The offer: the 101 agrees it, and a compressed message is echoed
    // compressed (RSV1), inflating to the same text.
    let (mut packed, head) = raw::upgrade(gw.addr, "5", OFFER);
    assert!(
        head.contains("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"),
        "{head}"
    );
    let data = deflate(big.as_bytes());
    packed
        .write_all(&raw::client_frame_with_bits(0xc1, data.len(), &data))
        .expect("send");
    let (b0, payload) = raw::read_frame_with_bits(&mut packed);
    assert_eq!(b0, 0xc1, "FIN, RSV1, text");
    let mut inflater = flate2::Decompress::new(false);
    let mut text = Vec::with_capacity(big.len() + 16);
    inflater
        .decompress_vec(
            &[payload, vec![0, 0, 0xff, 0xff]].concat(),
            &mut text,
            flate2::FlushDecompress::Sync,
        )
        .expect("inflates");
    assert_eq!(text, big.as_bytes());
}

#[tokio::test]
async fn bad_compressed_input_ends_only_its_session() {
    let (_api, gw) = stack();
    let mut neighbour = connect(gw.addr, "9").await;
    let bomb = deflate(&vec![0u8; 10 << 20]);
    assert!(bomb.len() < 20_000);
    let invalid = [0x07u8, 0x00];
    let cases: [(&str, Vec<u8>, u16, &str); 4] = [
        (
            OFFER,
            raw::client_frame_with_bits(0xc1, bomb.len(), &bomb),
            1009,
            "message too big",
        ),
        (
            OFFER,
            raw::client_frame_with_bits(0xc2, 2, &invalid),
            1007,
            "invalid compressed data",
        ),
        (
            OFFER,
            raw::client_frame_with_bits(0xc9, 0, &[]),
            1002,
            "protocol error",
        ),
        (
            "",
            raw::client_frame_with_bits(0xc1, 2, &invalid),
            1002,
            "protocol error",
        ),
    ];
    for (offer, bytes, code, reason) in cases {
        let (mut s, _) = raw::upgrade(gw.addr, "6", offer);
        s.write_all(&bytes).expect("send");
        let (got, why) = raw::read_close(&mut s);
        assert_eq!(got, code, "{why}");
        assert!(why.starts_with(reason), "{why}");
        send_text(&mut neighbour, &frame("message", b"still here")).await;
        assert_eq!(
            recv(&mut neighbour)
                .await
                .into_text()
                .expect("text")
                .as_str(),
            frame("message", b"still here")
        );
    }
    let admin = gw.admin.expect("admin");
    assert_eq!(metric(admin, "gateway_inflate_too_big_total"), Some(1.0));
    assert_eq!(metric(admin, "gateway_inflate_failures_total"), Some(1.0));
}
