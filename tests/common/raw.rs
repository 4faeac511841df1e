//! A raw WebSocket client over a plain socket, for tests that must see or
//! send exactly the bytes (RSV bits, lengths, when TCP closes).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::DEADLINE;

/// Upgrades a raw socket with `token` and the header lines `extra` (each
/// ending in CRLF); returns it and the 101's head, retrying while the
/// gateway answers 503 (its stream to ws-api not up yet).
pub fn upgrade(gw: SocketAddr, token: &str, extra: &str) -> (TcpStream, String) {
    let until = Instant::now() + DEADLINE;
    loop {
        let mut s = TcpStream::connect(gw).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        write!(
            s,
            "GET /gateway/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\ntoken: {token}\r\n{extra}\r\n"
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
            return (s, head);
        }
        assert!(head.contains(" 503 ") && Instant::now() < until, "{head}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads one unmasked server frame; returns (first header byte: FIN, RSV
/// and opcode, payload).
pub fn read_frame_with_bits(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).expect("length");
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).expect("length");
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).expect("payload");
    (h[0], payload)
}

/// Reads one unmasked server frame; returns (opcode, payload).
pub fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let (b0, payload) = read_frame_with_bits(s);
    (b0 & 0x0f, payload)
}

/// Reads frames up to the server's Close; returns its code and reason.
pub fn read_close(s: &mut TcpStream) -> (u16, String) {
    loop {
        let (op, payload) = read_frame(s);
        if op == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
        }
    }
}

/// A final masked client frame (mask 0: the bytes are sent as they are)
/// whose header announces `payload_len` bytes, however many follow.
pub fn client_frame(op: u8, payload_len: usize, payload: &[u8]) -> Vec<u8> {
    client_frame_with_bits(0x80 | op, payload_len, payload)
}

/// As [`client_frame`], with the whole first header byte given (FIN, RSV
/// bits, opcode).
pub fn client_frame_with_bits(b0: u8, payload_len: usize, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    ws_util::frame::header(&mut f, b0, Some([0; 4]), payload_len as u64);
    f.extend_from_slice(payload);
    f
}
