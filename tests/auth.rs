//! Admission: a token gets a session, and every refusal is an HTTP status
//! with a reason before any WebSocket exists.

mod common;

use common::*;

#[tokio::test]
async fn token_admits_and_refusals_say_why() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);

    let mut ws = connect(gw.addr, "42").await;
    send_text(&mut ws, &frame("message", b"hi")).await;
    assert_eq!(
        recv(&mut ws).await.into_text().unwrap().as_str(),
        frame("message", b"hi")
    );

    let (status, body) = refusal(try_connect(gw.addr, None).await.unwrap_err());
    assert_eq!(status, 401);
    assert!(body.contains("missing token"), "{body}");

    let (status, body) = refusal(try_connect(gw.addr, Some("deny-me")).await.unwrap_err());
    assert_eq!(status, 401);
    assert!(body.contains("connect refused"), "{body}");
}

#[tokio::test]
async fn token_from_query_and_subprotocol() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    connect(gw.addr, "1").await;

    let url = format!("ws://{}/gateway/connect?token=7", gw.addr);
    tokio_tungstenite::connect_async(url)
        .await
        .expect("query token admitted");

    let mut req = format!("ws://{}/gateway/ws", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "token, abc".parse().unwrap());
    let (_, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("subprotocol token admitted");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "token");
}

#[tokio::test]
async fn unreachable_ws_api_is_503() {
    let api = ws_api("127.0.0.1:0", "echo");
    let addr = api.addr;
    drop(api);
    let gw = gateway(addr, 1, &[]);
    let (status, body) = refusal(try_connect(gw.addr, Some("1")).await.unwrap_err());
    assert_eq!(status, 503);
    assert!(body.contains("ws-api unavailable"), "{body}");
}

#[tokio::test]
async fn foreign_origin_is_403() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let api = ws_api("127.0.0.1:0", "echo");
    // HTTP refusals here; browsers get them in-band (tests/browser_refusals.rs).
    let gw = gateway(
        api.addr,
        1,
        &[
            "--allowed-origins",
            "https://app.example",
            "--refuse-in-band",
            "never",
        ],
    );
    connect(gw.addr, "1").await;
    let request = |origin: &str| {
        let mut req = format!("ws://{}/gateway/ws", gw.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("token", "5".parse().unwrap());
        req.headers_mut().insert("origin", origin.parse().unwrap());
        req
    };
    tokio_tungstenite::connect_async(request("https://app.example"))
        .await
        .expect("allowed origin");
    let (status, body) = refusal(
        tokio_tungstenite::connect_async(request("https://evil.example"))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 403);
    assert!(
        body.contains("origin https://evil.example not allowed"),
        "{body}"
    );
}
