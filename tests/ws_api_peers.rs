//! The gateway is a drop-in for any gRPC ws-api: the same end-to-end
//! behaviours against tonic (eager response headers, and lazy with
//! `--lazy-headers`), grpc-go and gRPC C-core (both lazy: a stream's
//! response headers come with its first message, or never), including a
//! client's resume that the node cannot serve.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::peers::{self, Peer};
use common::*;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Starts `peer` and a 2-core gateway in front of it.
fn setup(peer: Peer) -> Option<(Proc, Proc)> {
    let api = peers::start(peer, "127.0.0.1:0")?;
    let gw = gateway(api.addr, 2, &[]);
    Some((api, gw))
}

/// The gateway answers /readyz 200 and serves a client within a second of
/// starting, although the peer sends no response headers until it has a
/// message to push.
async fn ready_within_a_second(peer: Peer) {
    let Some(api) = peers::start(peer, "127.0.0.1:0") else {
        return;
    };
    let started = Instant::now();
    let gw = gateway(api.addr, 2, &[]);
    let admin = gw.admin.expect("admin address");
    eventually("readyz answers 200", || async {
        http_get(admin, "/readyz").0 == 200
    })
    .await;
    let ready = started.elapsed();
    let mut ws = connect(gw.addr, "1").await;
    nothing_pending(&mut ws, "first").await;
    let served = started.elapsed();
    println!("{peer:?}: ready after {ready:?}, first echo after {served:?}");
    assert!(served < Duration::from_secs(1), "{peer:?}: took {served:?}");
}

async fn refused_tokens_get_401(peer: Peer) {
    let Some((_api, gw)) = setup(peer) else {
        return;
    };
    connect(gw.addr, "2").await;
    for token in [None, Some("deny-me")] {
        match try_connect(gw.addr, token).await {
            Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401, "{token:?}"),
            other => panic!("{peer:?} {token:?}: expected 401, got {other:?}"),
        }
    }
}

/// Many sessions over both cores, each getting its own frames back in order.
async fn echo_in_order_for_many_sessions(peer: Peer) {
    let Some((_api, gw)) = setup(peer) else {
        return;
    };
    const SESSIONS: usize = 40;
    const EACH: usize = 25;
    let mut clients = Vec::new();
    for i in 0..SESSIONS {
        clients.push(connect(gw.addr, &(100 + i).to_string()).await);
    }
    for n in 0..EACH {
        for (i, ws) in clients.iter_mut().enumerate() {
            send_text(ws, &frame("message", format!("{i}:{n}").as_bytes())).await;
        }
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        for n in 0..EACH {
            let want = frame("message", format!("{i}:{n}").as_bytes());
            assert_eq!(
                recv(ws).await.into_text().unwrap().as_str(),
                want,
                "{peer:?}"
            );
        }
    }
}

async fn protobuf_binary_echo(peer: Peer) {
    let Some((_api, gw)) = setup(peer) else {
        return;
    };
    let mut ws = connect(gw.addr, "3").await;
    protobuf_round_trip(&mut ws).await;
}

/// `BizMsgService.Push`, called with tonic, reaches every session of the uid
/// and no other.
async fn push_by_uid(peer: Peer) {
    let Some((api, gw)) = setup(peer) else {
        return;
    };
    let mut user = vec![connect(gw.addr, "77").await, connect(gw.addr, "77").await];
    let mut other = connect(gw.addr, "78").await;
    assert_eq!(push(api.addr, 77, "news", "hello").await, 2, "{peer:?}");
    let b64 = base64::engine::general_purpose::STANDARD.encode("hello");
    for ws in &mut user {
        let got = recv(ws).await.into_text().unwrap();
        assert_eq!(
            without_offset(got.as_str()),
            format!(r#"{{"type":"news","payload":"{b64}"}}"#)
        );
    }
    nothing_pending(&mut other, "not pushed").await;
}

async fn kick_closes_the_users_sessions(peer: Peer) {
    let Some((api, gw)) = setup(peer) else {
        return;
    };
    let mut victim = connect(gw.addr, "21").await;
    let mut bystander = connect(gw.addr, "22").await;
    let closed = kick_uid(api.addr, 21, 4001, "account suspended").await;
    assert_eq!(closed, 1, "{peer:?}");
    assert_eq!(
        expect_close(&mut victim).await,
        (4001, "account suspended".to_owned())
    );
    nothing_pending(&mut bystander, "still here").await;
}

/// ws-api killed while a client keeps sending, then started again on the
/// same address: the session survives and its messages flow again.
async fn restarted_mid_traffic_and_recovered(peer: Peer) {
    let Some((mut api, gw)) = setup(peer) else {
        return;
    };
    let addr = api.addr;
    let mut ws = connect(gw.addr, "5").await;
    nothing_pending(&mut ws, "before").await;
    if matches!(peer, Peer::Tonic | Peer::TonicLazyHeaders) {
        // The reference ws-api acknowledges: once it has, "before" is not
        // written again to its successor.
        wait_all_acked(gw.admin.expect("admin"));
    }
    api.kill();
    eventually("new clients are refused with 503", || async {
        matches!(try_connect(gw.addr, Some("6")).await, Err(WsError::Http(r)) if r.status() == 503)
    })
    .await;
    send_text(&mut ws, &frame("message", b"during")).await;
    let _api = peers::start(peer, &addr.to_string()).expect("started once already");
    assert_eq!(
        recv(&mut ws).await.into_text().unwrap().as_str(),
        frame("message", b"during"),
        "{peer:?}: the message buffered during the outage"
    );
    nothing_pending(&mut ws, "after").await;
    connect(gw.addr, "6").await;
}

/// A client resuming from a position (docs/delivery.md) is told
/// `resume-failed` first, and the session then works as any other, whether
/// ws-api keeps no history (grpc-go and gRPC C-core never set
/// `ConnectReply.resume`) or keeps one that never held that position (ours).
async fn a_resume_the_node_cannot_serve_fails_cleanly(peer: Peer) {
    let Some((_api, gw)) = setup(peer) else {
        return;
    };
    let mut ws = connect_since(gw.addr, 8, Some("otherepoch:5")).await;
    let first = next_json(&mut ws).await.expect("open");
    assert_eq!(first["type"], "resume-failed", "{peer:?}: {first}");
    nothing_pending(&mut ws, "after the resume").await;
    let admin = gw.admin.expect("admin address");
    assert_eq!(
        metric_with(admin, "gateway_resumes_total", "outcome", "failed"),
        1.0,
        "{peer:?}"
    );
}

/// One module per peer, each running every behaviour above.
macro_rules! against {
    ($($module:ident => $peer:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[tokio::test]
            async fn ready_within_a_second() { super::ready_within_a_second($peer).await }
            #[tokio::test]
            async fn refused_tokens_get_401() { super::refused_tokens_get_401($peer).await }
            #[tokio::test]
            async fn echo_in_order_for_many_sessions() { super::echo_in_order_for_many_sessions($peer).await }
            #[tokio::test]
            async fn protobuf_binary_echo() { super::protobuf_binary_echo($peer).await }
            #[tokio::test]
            async fn push_by_uid() { super::push_by_uid($peer).await }
            #[tokio::test]
            async fn kick_closes_the_users_sessions() { super::kick_closes_the_users_sessions($peer).await }
            #[tokio::test]
            async fn restarted_mid_traffic_and_recovered() { super::restarted_mid_traffic_and_recovered($peer).await }
            #[tokio::test]
            async fn a_resume_the_node_cannot_serve_fails_cleanly() { super::a_resume_the_node_cannot_serve_fails_cleanly($peer).await }
        }
    )*};
}

against! {
    tonic => Peer::Tonic,
    tonic_lazy_headers => Peer::TonicLazyHeaders,
    grpc_go => Peer::GrpcGo,
    grpcio => Peer::Grpcio,
}

/// grpc-go allows a client one ping per 5 minutes while it sends nothing
/// and answers more with GOAWAY ENHANCE_YOUR_CALM `too_many_pings`; the
/// gateway then pings that node half as often (gRPC's keepalive design,
/// A8), counts it, reconnects and serves.
#[tokio::test]
async fn grpc_go_too_many_pings_slows_the_keepalive_down() {
    let Some(api) = peers::start(Peer::GrpcGo, "127.0.0.1:0") else {
        return;
    };
    let gw = gateway(api.addr, 1, &["--upstream-keepalive", "200ms"]);
    let admin = gw.admin.expect("admin address");
    eventually("ws-api refuses the pings", || async {
        metric(admin, "gateway_upstream_ping_slowdowns_total").unwrap_or(0.0) >= 1.0
    })
    .await;
    let mut ws = connect(gw.addr, "8").await;
    nothing_pending(&mut ws, "after the GOAWAY").await;
}
