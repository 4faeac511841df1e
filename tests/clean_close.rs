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
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use ws_api::proto::wsapi::KickRequest;

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
    let mut s = raw::upgrade(gw.addr, "42", "").0;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let kick = KickRequest {
        uid: 42,
        code: 4002,
        reason: "bye".into(),
        ..Default::default()
    };
    let kicked = rt.block_on(async { biz(api.addr).await.kick(kick).await.unwrap().into_inner() });
    assert_eq!(kicked.closed, 1);
    assert_eq!(raw::read_close(&mut s), (4002, "bye".to_owned()));
    assert_eq!(
        end_within(&mut s, Duration::from_millis(300)),
        None,
        "the gateway closed TCP before the client's Close"
    );
    s.write_all(&raw::client_frame(0x8, 2, &1000u16.to_be_bytes()))
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
        let mut s = raw::upgrade(gw.addr, "43", "").0;
        // A 100 KiB frame over the 64 KiB limit: the gateway refuses it at
        // its header, with the payload still arriving.
        let mut bytes = raw::client_frame(0x2, 100 * 1024, &[]);
        bytes.resize(bytes.len() + 100 * 1024, 7);
        s.write_all(&bytes).expect("write the big frame");
        let (code, reason) = raw::read_close(&mut s);
        assert_eq!(code, 1009, "round {round}: {reason}");
        assert_eq!(
            end_within(&mut s, DEADLINE),
            Some(Ok(0)),
            "round {round}: reset, not FIN"
        );
    }
}
