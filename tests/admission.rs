//! Admission limits: sessions per user per gateway, new connections per
//! second, and messages per second per connection.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::Error as WsError;

#[tokio::test]
async fn per_user_cap_counts_across_cores() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &["--max-connections-per-user", "3"]);
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(connect(gw.addr, "51").await);
    }
    for _ in 0..4 {
        match try_connect(gw.addr, Some("51")).await {
            Err(WsError::Http(resp)) => {
                assert_eq!(resp.status(), 429);
                let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
                    .into_owned();
                assert!(
                    body.contains("too many connections for this user"),
                    "{body}"
                );
            }
            other => panic!(
                "fourth session of user 51 admitted: {:?}",
                other.map(|_| ())
            ),
        }
    }
    connect(gw.addr, "52").await;
    drop(kept.pop());
    eventually("a slot frees when a session ends", || async {
        try_connect(gw.addr, Some("51")).await.is_ok()
    })
    .await;
    let admin = gw.admin.expect("admin");
    assert!(
        metric_with(
            admin,
            "gateway_handshakes_rejected_total",
            "reason",
            "user_limit"
        ) >= 4.0
    );
}

#[tokio::test]
async fn inbound_rate_limit_closes_with_1008() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--max-inbound-rate", "5"]);
    let mut ws = connect(gw.addr, "53").await;
    for i in 0..30 {
        // The gateway may close mid-burst; later sends can fail.
        if futures_util::SinkExt::send(
            &mut ws,
            tokio_tungstenite::tungstenite::Message::text(frame("m", &[i])),
        )
        .await
        .is_err()
        {
            break;
        }
    }
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1008);
    assert_eq!(reason, "inbound message rate limit exceeded");
}

#[tokio::test]
async fn connect_rate_limit_answers_503_with_retry_after() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--connect-rate", "2"]);
    let mut limited = None;
    for uid in 0..20 {
        match try_connect(gw.addr, Some(&uid.to_string())).await {
            Err(WsError::Http(resp)) if resp.headers().contains_key("retry-after") => {
                limited = Some(resp);
                break;
            }
            _ => continue,
        }
    }
    let resp = limited.expect("a burst past 2/s is refused");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
}

#[tokio::test]
async fn per_ip_rate_limit_answers_503() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--per-ip-connect-rate", "2"]);
    let mut refused = 0;
    for uid in 0..20 {
        let result = try_connect(gw.addr, Some(&uid.to_string())).await;
        let rate_limited =
            |resp: &tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>| {
                resp.headers().contains_key("retry-after")
                    && resp.body().as_deref().is_some_and(|b| {
                        String::from_utf8_lossy(b).contains("connection rate limit")
                    })
            };
        if matches!(&result, Err(WsError::Http(resp)) if rate_limited(resp)) {
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "20 connections from one IP at once were all admitted at 2/s"
    );
    let admin = gw.admin.expect("admin");
    assert_eq!(
        metric_with(
            admin,
            "gateway_handshakes_rejected_total",
            "reason",
            "rate_limited"
        ),
        refused as f64
    );
}
