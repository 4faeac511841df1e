//! The publish API from outside the code: `ws-api push|kick|…` (the CLI,
//! tonic) and a client that learns the services from ws-api's gRPC
//! reflection (grpcio-reflection, gRPC C-core, as grpcurl does) each reach
//! a live session through the real gateway.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pushes_joins_broadcasts_and_kicks() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let mut ws = connect(gw.addr, "42").await;

    let said = ws_api_cli(
        &api,
        &[
            "push",
            "--uid",
            "42",
            "--type",
            "notice",
            "--payload",
            "hello",
        ],
    )
    .await;
    assert!(
        said.starts_with("pushed to 1 session(s) of uid 42, offset "),
        "{said}"
    );
    assert_eq!(next_payload_of(&mut ws, "notice").await, "hello");

    let said = ws_api_cli(&api, &["join", "--uid", "42", "--group", "room"]).await;
    assert_eq!(said.trim(), "1 session(s) joined");
    let said = ws_api_cli(
        &api,
        &[
            "push-group",
            "--group",
            "room",
            "--type",
            "say",
            "--payload",
            "hi room",
        ],
    )
    .await;
    assert_eq!(said.trim(), "sent to the group's 1 session(s)");
    assert_eq!(next_payload_of(&mut ws, "say").await, "hi room");

    ws_api_cli(
        &api,
        &["broadcast", "--type", "all", "--payload", "everyone"],
    )
    .await;
    assert_eq!(next_payload_of(&mut ws, "all").await, "everyone");

    let said = ws_api_cli(
        &api,
        &["kick", "--uid", "42", "--code", "4000", "--reason", "bye"],
    )
    .await;
    assert_eq!(said.trim(), "closed 1 session(s)");
    assert_eq!(expect_close(&mut ws).await, (4000, "bye".to_owned()));
}

#[tokio::test]
async fn the_cli_says_why_a_call_failed() {
    let out = Command::new(workspace_bin("ws-api"))
        .args(["push", "--uid", "1", "--type", "t", "--api", "127.0.0.1:1"])
        .output()
        .await
        .expect("ws-api runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach ws-api at http://127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflection_client_pushes_without_the_proto() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let mut ws = connect(gw.addr, "7").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/reflection/call.py");
    let body = r#"{"uid": "7", "bizCode": "notice", "bizPayload": "via reflection"}"#;
    let out = Command::new(peers::python())
        .arg(&script)
        .args([&api.addr.to_string(), "wsapi.BizMsgService/Push", body])
        .output()
        .await
        .expect("the venv's python runs (make deps installs grpcio-reflection)");
    assert!(
        out.status.success(),
        "call.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(answer["successCount"], "1", "{answer}");
    assert_eq!(next_payload_of(&mut ws, "notice").await, "via reflection");
}
