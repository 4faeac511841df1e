//! The session loop on a loopback connection, in-process: a glommio
//! executor runs the session and an async-tungstenite client against it.
//! There is no ws-api node: messages for ws-api find no stream and are
//! refused, as they are while every node is down.

use std::rc::Rc;
use std::sync::Arc;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use bytes::Bytes;
use futures_lite::StreamExt;
use glommio::net::{TcpListener, TcpStream};

use crate::codec::{self, Format};
use crate::config;
use crate::metrics::Loss;
use crate::proto::wsgateway::Protocol;
use crate::routing::sessions::{Outbound, SessionHandle};
use crate::session::claim::Claim;
use crate::session::context::SessionContext;
use crate::session::stream::ClientStream;
use crate::session::{Admitted, End, Session};
use crate::shard::ws_config;
use crate::testing::{context, run, soon, test_config};

type Client = WebSocketStream<TcpStream>;

/// A session for uid 1 and the client connected to it.
async fn connect(ctx: &Rc<SessionContext>) -> (Session, Rc<SessionHandle>, Client) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = glommio::spawn_local(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let url = format!("ws://{addr}/ws");
        async_tungstenite::client_async(url, tcp).await.unwrap().0
    });
    let tcp = listener.accept().await.unwrap();
    let ws = async_tungstenite::accept_async_with_config(
        ClientStream::Plain(tcp),
        Some(ws_config(&ctx.config)),
    )
    .await
    .unwrap();
    let client = client.await;
    let (handle, rx) = SessionHandle::new(
        ctx.config.send_queue,
        ctx.tick.get(),
        Arc::clone(&ctx.counters),
    );
    let slot = ctx.sessions.insert(Rc::clone(&handle)).unwrap();
    let sid = format!("test-{slot}");
    let mut claim = Claim::new(Rc::clone(ctx), slot, sid.clone());
    claim.admitted(1);
    let admitted = Admitted {
        claim,
        handle: Rc::clone(&handle),
        rx,
        uid: 1,
        format: Format::Json,
        resume: None,
        device: None,
        deflate: None,
    };
    let session = Session::new(Rc::clone(ctx), ws, admitted);
    (session, handle, client)
}

async fn next_frame(client: &mut Client) -> Protocol {
    match soon("a frame", client.next()).await {
        Some(Ok(Message::Text(text))) => codec::decode_json(&text).unwrap(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

fn frame(kind: &str, payload: &str) -> Protocol {
    Protocol {
        r#type: kind.into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        ..Protocol::default()
    }
}

/// Writes what the core queues, answers what ws-api cannot take with an
/// error frame, notes when the client was heard, and closes with the code
/// the core asked for; then gives its slot back and tells ws-api.
#[test]
fn session_writes_reads_and_closes() {
    run(async {
        let ctx = context(test_config());
        let (session, handle, mut client) = connect(&ctx).await;
        let session = glommio::spawn_local(session.run());

        handle.push(Outbound::Frame(frame("hello", "hi"))).unwrap();
        let got = next_frame(&mut client).await;
        assert_eq!(
            (got.r#type.as_str(), &got.payload[..]),
            ("hello", &b"hi"[..])
        );

        // A message for ws-api while no node is up: an error frame, counted.
        ctx.tick.set(3);
        let up = codec::encode_json(&frame("say", "x"));
        client.send(Message::text(up)).await.unwrap();
        let got = next_frame(&mut client).await;
        assert_eq!(got.r#type, "error");
        assert!(got.payload.starts_with(b"ws-api unavailable"));
        assert_eq!(ctx.counters.lost(Loss::UpstreamBufferFull), 1);
        assert_eq!(handle.heard.get(), 3, "the client was heard in round 3");

        // A frame that does not decode: an error frame, counted.
        client.send(Message::text("not json")).await.unwrap();
        let got = next_frame(&mut client).await;
        assert_eq!(got.r#type, "error");
        assert!(got.payload.starts_with(b"bad frame"));
        assert_eq!(ctx.counters.lost(Loss::BadFrame), 1);

        // The core closes the session (a kick, keepalive, drain).
        handle.push(Outbound::Close(4000, "bye".into())).unwrap();
        match soon("the close", client.next()).await {
            Some(Ok(Message::Close(Some(f)))) => {
                assert_eq!(f.code, CloseCode::from(4000));
                assert_eq!(f.reason, "bye");
            }
            other => panic!("expected Close 4000, got {other:?}"),
        }
        // The client's answering Close ends the linger.
        while let Some(Ok(_)) = soon("the end", client.next()).await {}
        match soon("the session", session).await {
            End::Closed(4000, reason) => assert_eq!(reason, "bye"),
            other => panic!("expected Closed(4000), got {other}"),
        }
        assert!(ctx.sessions.is_empty(), "the slot was given back");
        assert_eq!(ctx.counters.online.get(), 0);
        assert_eq!(
            ctx.counters.disconnect_failures.get(),
            1,
            "no ws-api node heard Disconnect"
        );
    });
}

#[test]
fn client_close_ends_the_session() {
    run(async {
        let ctx = context(test_config());
        let (session, _handle, mut client) = connect(&ctx).await;
        let session = glommio::spawn_local(session.run());
        client.close(None).await.unwrap();
        assert!(matches!(
            soon("the session", session).await,
            End::ClientClosed
        ));
        assert!(ctx.sessions.is_empty());
    });
}

/// A client that does not read while the core queues for it: once a
/// write waits longer than `--write-timeout`, or the queue overflows,
/// the session is closed as a slow consumer.
#[test]
fn slow_consumer_is_closed() {
    run(async {
        let config = config::load([
            "ws-gateway",
            "--upstream",
            "127.0.0.1:9",
            "--send-queue",
            "4",
            "--write-timeout",
            "200ms",
        ])
        .unwrap();
        let ctx = context(config);
        let (session, handle, _client) = connect(&ctx).await;
        let session = glommio::spawn_local(session.run());
        let big = "x".repeat(60 * 1024);
        let pushing = async {
            // The client never reads: the socket fills, then the queue.
            while handle.push(Outbound::Frame(frame("push", &big))).is_ok() {
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
            }
        };
        let end = soon(
            "the session",
            futures_lite::future::or(session, async {
                pushing.await;
                futures_lite::future::pending().await
            }),
        )
        .await;
        match end {
            End::Closed(1008, reason) => assert!(
                reason.starts_with("write timeout") || reason.starts_with("slow consumer"),
                "{reason}"
            ),
            other => panic!("expected a 1008 close, got {other}"),
        }
    });
}
