//! Hostile clients and a hung backend: each gets its specific answer and
//! nobody else notices.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const UPGRADE: &str = "GET /gateway/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\ntoken: 9\r\n\r\n";

fn read_some(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).expect("read");
    buf.truncate(n);
    buf
}

#[test]
fn slowloris_handshake_gets_408() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--handshake-timeout", "300ms"]);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(b"GET /gateway/ws HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let resp = String::from_utf8_lossy(&read_some(&mut s)).into_owned();
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let admin = gw.admin.unwrap();
    assert_eq!(
        metric_with(
            admin,
            "gateway_handshakes_rejected_total",
            "reason",
            "timeout"
        ),
        1.0
    );
}

#[test]
fn unmasked_client_frame_is_a_protocol_error() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let mut s = raw_upgrade(gw.addr);
    // A client frame without a mask (RFC 6455 §5.1: the server must fail the connection).
    s.write_all(b"\x81\x05hello").unwrap();
    let frame = read_some(&mut s);
    assert_eq!(frame[0], 0x88, "a close frame: {frame:?}");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_others_keep_their_latency() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(
        api.addr,
        1,
        &["--send-queue", "64", "--write-timeout", "2s"],
    );
    let admin = gw.admin.unwrap();
    let mut good = connect(gw.addr, "81").await;
    let _deaf = connect(gw.addr, "82").await;
    // ws-api pushes 16 KiB messages to the client that never reads.
    let api_addr = api.addr;
    let pusher = tokio::spawn(async move {
        let mut client = biz(api_addr).await;
        let payload = "x".repeat(16 * 1024);
        for _ in 0..5000 {
            let msg = ws_api::proto::wsapi::BizMsg {
                biz_code: "flood".into(),
                biz_payload: payload.clone(),
                uid: 82,
                ..Default::default()
            };
            if client
                .push(msg)
                .await
                .map(|r| r.into_inner().success_count)
                .unwrap_or(0)
                == 0
            {
                break;
            }
        }
    });
    let mut worst = Duration::ZERO;
    let mut round_trips = 0;
    while !pusher.is_finished() {
        let t = Instant::now();
        nothing_pending(&mut good, "ping").await;
        worst = worst.max(t.elapsed());
        round_trips += 1;
    }
    pusher.await.unwrap();
    assert!(
        round_trips > 10,
        "the flood ended too soon to measure ({round_trips} round trips)"
    );
    eventually("the deaf client is closed", || async {
        metric(admin, "gateway_websocket_online_totals") == Some(1.0)
    })
    .await;
    assert!(
        metric_with(
            admin,
            "gateway_messages_lost_total",
            "reason",
            "send_queue_full"
        ) >= 1.0
    );
    println!("reading client: {round_trips} round trips, worst {worst:?}");
    // Not a speed claim: had the core waited on the deaf client's blocked
    // write, the reading client would have waited out the 2 s write timeout.
    assert!(
        worst < Duration::from_secs(1),
        "the reading client waited {worst:?}"
    );
}

#[tokio::test]
async fn hung_ws_api_means_503_and_not_ready() {
    // Accepts connections and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gw = gateway(hung.local_addr().unwrap(), 1, &["--rpc-timeout", "300ms"]);
    let admin = gw.admin.unwrap();
    let started = Instant::now();
    match try_connect(gw.addr, Some("1")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(http_get(admin, "/readyz").0, 503);
    eventually("the core keeps retrying", || async {
        metric(admin, "gateway_upstream_reconnects_total").unwrap_or(0.0) >= 2.0
    })
    .await;
}

/// Copies `from` to `to` until either ends; once frozen, forwards nothing more.
async fn pump<R, W>(mut from: R, mut to: W, mut frozen: tokio::sync::watch::Receiver<bool>)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            n = from.read(&mut buf) => match n { Ok(0) | Err(_) => return, Ok(n) => n },
            changed = frozen.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        let is_frozen = *frozen.borrow();
        if is_frozen {
            return std::future::pending().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy to ws-api that can be frozen: frozen connections stop
/// forwarding forever, as a hung ws-api would; new ones work after a thaw.
async fn freezable_proxy(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (frozen_tx, frozen_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, frozen_rx.clone()));
            tokio::spawn(pump(sr, cw, frozen_rx.clone()));
        }
    });
    (addr, frozen_tx)
}

#[tokio::test]
async fn ws_api_hung_mid_stream_is_detected_by_http2_pings() {
    let api = ws_api("127.0.0.1:0", "echo");
    let (proxy, freeze) = freezable_proxy(api.addr).await;
    let gw = gateway(
        proxy,
        1,
        &["--upstream-keepalive", "200ms", "--rpc-timeout", "300ms"],
    );
    let admin = gw.admin.unwrap();
    let mut ws = connect(gw.addr, "91").await;
    nothing_pending(&mut ws, "before").await;

    freeze.send(true).unwrap();
    eventually("the hung stream is torn down", || async {
        http_get(admin, "/readyz").0 == 503
    })
    .await;
    assert!(metric(admin, "gateway_upstream_ping_timeouts_total").unwrap() >= 1.0);

    freeze.send(false).unwrap();
    eventually("a new stream is up", || async {
        http_get(admin, "/readyz").0 == 200
    })
    .await;
    nothing_pending(&mut ws, "after").await;
}

/// A masked client frame (RFC 6455 §5.2), as a browser would send it.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    ws_util::frame::masked((u8::from(fin) << 7) | opcode, [1, 2, 3, 4], payload)
}

#[test]
fn fragmented_flood_past_the_message_limit_is_1009() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(
        api.addr,
        1,
        &["--max-message-size", "8192", "--max-frame-size", "4096"],
    );
    let mut s = raw_upgrade(gw.addr);
    // Many small fragments of one text message, none over the frame limit,
    // together past the message limit.
    let mut flood = client_frame(false, 0x1, &[b'a'; 100]);
    for _ in 0..200 {
        flood.extend(client_frame(false, 0x0, &[b'a'; 100]));
    }
    let _ = s.write_all(&flood);
    let frame = read_some(&mut s);
    assert_eq!(frame[0], 0x88, "a close frame: {frame:?}");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1009);
}

/// Completes an upgrade over a raw socket (retrying while ws-api is not up yet).
fn raw_upgrade(gw: std::net::SocketAddr) -> TcpStream {
    loop {
        let mut s = TcpStream::connect(gw).unwrap();
        s.write_all(UPGRADE.as_bytes()).unwrap();
        if read_some(&mut s).starts_with(b"HTTP/1.1 101") {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn invalid_utf8_in_a_text_frame_is_1007() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let mut s = raw_upgrade(gw.addr);
    s.write_all(&client_frame(true, 0x1, &[0xce, 0xba, 0xff, 0xfe]))
        .unwrap();
    let frame = read_some(&mut s);
    assert_eq!(frame[0], 0x88, "a close frame: {frame:?}");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1007);
}

/// RFC 6455 4.2.1, from a raw socket: no Host, or two keys, is a 400 with
/// its reason, counted as a bad request.
#[test]
fn an_upgrade_without_host_or_with_two_keys_gets_400() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let two_keys = UPGRADE.replace(
        "token: 9\r\n",
        "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\ntoken: 9\r\n",
    );
    let cases = [
        (UPGRADE.replace("Host: x\r\n", ""), "missing Host"),
        (two_keys, "more than one Sec-WebSocket-Key"),
    ];
    for (request, reason) in &cases {
        let mut s = TcpStream::connect(gw.addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let resp = String::from_utf8_lossy(&read_some(&mut s)).into_owned();
        assert!(
            resp.starts_with("HTTP/1.1 400") && resp.contains(reason),
            "{resp}"
        );
    }
    let rejected = metric_with(
        gw.admin.unwrap(),
        "gateway_handshakes_rejected_total",
        "reason",
        "bad_request",
    );
    assert_eq!(rejected, 2.0);
}

#[test]
fn oversized_headers_get_431_and_a_full_core_503() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--max-connections-per-core", "1"]);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    let padding = format!("X-Pad: {}\r\n", "p".repeat(9000));
    s.write_all(UPGRADE.replace("token: 9\r\n", &padding).as_bytes())
        .unwrap();
    let resp = String::from_utf8_lossy(&read_some(&mut s)).into_owned();
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");

    let _first = raw_upgrade(gw.addr);
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(UPGRADE.as_bytes()).unwrap();
    let resp = String::from_utf8_lossy(&read_some(&mut s)).into_owned();
    assert!(
        resp.starts_with("HTTP/1.1 503") && resp.contains("too many connections"),
        "{resp}"
    );
    let admin = gw.admin.unwrap();
    assert_eq!(
        metric_with(
            admin,
            "gateway_handshakes_rejected_total",
            "reason",
            "header_too_large"
        ),
        1.0
    );
    assert_eq!(
        metric_with(
            admin,
            "gateway_handshakes_rejected_total",
            "reason",
            "overloaded"
        ),
        1.0
    );
}

#[test]
fn a_client_that_vanishes_without_fin_is_cleaned_up() {
    use std::os::fd::AsRawFd;
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--ping-interval", "200ms"]);
    let s = raw_upgrade(gw.addr);
    let admin = gw.admin.unwrap();
    wait_for_metric(admin, "gateway_websocket_online_totals", 1.0);
    // TCP_REPAIR (root): closing the socket then sends neither FIN nor RST,
    // as when a client's host disappears.
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a correctly sized int.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_REPAIR,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    assert_eq!(
        rc,
        0,
        "TCP_REPAIR needs CAP_NET_ADMIN: {}",
        std::io::Error::last_os_error()
    );
    drop(s);
    wait_for_metric(admin, "gateway_websocket_online_totals", 0.0);
}
