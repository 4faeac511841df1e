//! Closes the gateway starts are clean (RFC 6455 §7.1.1): after its Close
//! frame it waits for the client's Close before closing TCP, and after an
//! oversized frame it reads what the client still sends instead of closing
//! with unread data (which sends RST, and RST can overtake the Close frame:
//! browsers then report 1006 and `wasClean === false`).
//!
//! The client here is a raw socket, so the test sees exactly when the
//! gateway closes TCP and whether it resets.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use ws_api::proto::wsapi::KickRequest;

/// Upgrades a raw socket with `token`; returns it after the 101.
fn raw_upgrade(gw: SocketAddr, token: &str) -> TcpStream {
    let until = Instant::now() + DEADLINE;
    loop {
        let mut s = TcpStream::connect(gw).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        write!(
            s,
            "GET /gateway/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\ntoken: {token}\r\n\r\n"
        )
        .expect("write upgrade");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).expect("read response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        if head.starts_with("HTTP/1.1 101") {
            return s;
        }
        // 503 until the gateway's stream to ws-api is up.
        assert!(head.contains(" 503 ") && Instant::now() < until, "{head}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads one unmasked server frame; returns (opcode, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).expect("length");
            u16::from_be_bytes(l) as usize
        }
        127 => panic!("unexpectedly long server frame"),
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("payload");
    (h[0] & 0x0f, payload)
}

/// Reads frames up to the server's Close; returns its code and reason.
fn read_close(s: &mut TcpStream) -> (u16, String) {
    loop {
        let (op, payload) = read_frame(s);
        if op == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
        }
    }
}

/// A masked client frame (mask 0: the bytes are sent as they are) whose
/// header announces `payload_len` bytes, however many follow.
fn client_frame(op: u8, payload_len: usize, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    ws_util::frame::header(&mut f, 0x80 | op, Some([0; 4]), payload_len as u64);
    f.extend_from_slice(payload);
    f
}

/// What reading the socket gives now: `Ok(0)` for a clean end (FIN), the
/// error kind otherwise; `None` while the gateway keeps it open.
fn end_within(s: &mut TcpStream, wait: Duration) -> Option<Result<usize, ErrorKind>> {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(0) => Some(Ok(0)),
        Ok(n) => panic!("{n} unexpected bytes after the Close"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
        Err(e) => Some(Err(e.kind())),
    }
}

#[test]
fn after_its_close_the_gateway_waits_for_the_clients() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let mut s = raw_upgrade(gw.addr, "42");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kick = KickRequest {
        uid: 42,
        code: 4002,
        reason: "bye".into(),
        ..Default::default()
    };
    let kicked = rt.block_on(async { biz(api.addr).await.kick(kick).await.unwrap().into_inner() });
    assert_eq!(kicked.closed, 1);
    assert_eq!(read_close(&mut s), (4002, "bye".to_owned()));
    assert_eq!(
        end_within(&mut s, Duration::from_millis(300)),
        None,
        "the gateway closed TCP before the client's Close"
    );
    s.write_all(&client_frame(0x8, 2, &1000u16.to_be_bytes()))
        .expect("client Close");
    assert_eq!(
        end_within(&mut s, DEADLINE),
        Some(Ok(0)),
        "no clean end after the handshake"
    );
}

#[test]
fn an_oversized_frame_while_the_client_still_sends_is_1009_without_a_reset() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    for round in 0..5 {
        let mut s = raw_upgrade(gw.addr, "43");
        // A 100 KiB frame over the 64 KiB limit: the gateway refuses it at
        // its header, with the payload still arriving.
        let mut bytes = client_frame(0x2, 100 * 1024, &[]);
        bytes.resize(bytes.len() + 100 * 1024, 7);
        s.write_all(&bytes).expect("write the big frame");
        let (code, reason) = read_close(&mut s);
        assert_eq!(code, 1009, "round {round}: {reason}");
        assert_eq!(
            end_within(&mut s, DEADLINE),
            Some(Ok(0)),
            "round {round}: reset, not FIN"
        );
    }
}
