//! Refusals a browser can read: for a request with an `Origin` header the
//! gateway completes the upgrade and closes with 4401 / 4403 / 4429 / 4503
//! and a reason (browsers show page code only close 1006 for an HTTP
//! status); other clients keep the HTTP statuses. Subprotocols: an app
//! subprotocol and the `token` marker coexist, and a token may come as
//! `token.<base64url>`.

mod common;

use base64::Engine;
use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Connects as a browser on `origin` would, offering `protocols`.
async fn browser(
    gw: std::net::SocketAddr,
    query: &str,
    origin: &str,
    protocols: &str,
) -> Result<(Client, Option<String>), WsError> {
    let mut req = format!("ws://{gw}/gateway/ws{query}").into_client_request()?;
    req.headers_mut().insert("origin", origin.parse().unwrap());
    if !protocols.is_empty() {
        req.headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, chosen))
}

/// The close frame that ends an in-band refusal.
async fn refused(mut ws: Client) -> (u16, String) {
    let next = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("close in time");
    match next {
        Some(Ok(Message::Close(Some(c)))) => (c.code.into(), c.reason.to_string()),
        other => panic!("expected an in-band refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn browsers_get_close_codes_others_http_statuses() {
    let mut api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(
        api.addr,
        1,
        &[
            "--allowed-origins",
            "https://app.example/",
            "--max-connections-per-user",
            "1",
        ],
    );
    let app = "https://app.example";
    // Without an Origin a 503 stays HTTP: wait for the stream to ws-api.
    connect(gw.addr, "4").await;
    let (mut first, _) = browser(gw.addr, "?token=5", app, "")
        .await
        .expect("admitted");
    nothing_pending(&mut first, "admitted").await;
    let (ws, _) = browser(gw.addr, "", app, "").await.expect("upgrade");
    assert_eq!(refused(ws).await, (4401, "missing token".into()));
    let (ws, _) = browser(gw.addr, "?token=deny-1", app, "")
        .await
        .expect("upgrade");
    let (code, reason) = refused(ws).await;
    assert_eq!(code, 4401);
    assert!(reason.starts_with("connect refused"), "{reason}");
    let (ws, _) = browser(gw.addr, "?token=5", "https://evil.example", "")
        .await
        .expect("upgrade");
    assert_eq!(
        refused(ws).await,
        (4403, "origin https://evil.example not allowed".into())
    );
    let (ws, _) = browser(gw.addr, "?token=5", app, "")
        .await
        .expect("upgrade");
    let (code, reason) = refused(ws).await;
    assert_eq!(code, 4429, "{reason}");
    drop(first);
    // Without an Origin (an app, not a browser): HTTP as before.
    match try_connect(gw.addr, None).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected HTTP 401, got {other:?}"),
    }
    api.kill();
    eventually("ws-api down is a 4503 with a retry time", || async {
        match browser(gw.addr, "?token=6", app, "").await {
            Ok((ws, _)) => {
                let (code, reason) = refused(ws).await;
                code == 4503 && reason.ends_with("retry after 1s")
            }
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test]
async fn an_app_subprotocol_and_the_token_marker_coexist() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--subprotocols", "graphql-ws,chat.v1"]);
    connect(gw.addr, "1").await;
    let app = "https://app.example";
    let (_, chosen) = browser(gw.addr, "?token=7", app, "graphql-ws")
        .await
        .expect("app + query token");
    assert_eq!(chosen.as_deref(), Some("graphql-ws"));
    let (_, chosen) = browser(gw.addr, "?token=7", app, "token, 42")
        .await
        .expect("marker + query token");
    assert_eq!(chosen.as_deref(), Some("token"));
    let (_, chosen) = browser(gw.addr, "", app, "token, 42, chat.v1")
        .await
        .expect("marker + app");
    assert_eq!(chosen.as_deref(), Some("chat.v1"));
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("a+b/c=");
    let entry = format!("token.{b64}");
    let (mut ws, chosen) = browser(gw.addr, "", app, &entry)
        .await
        .expect("token.<base64url>");
    assert_eq!(chosen.as_deref(), Some(entry.as_str()));
    nothing_pending(&mut ws, "admitted").await;
}
