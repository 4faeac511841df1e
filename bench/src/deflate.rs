//! permessage-deflate (RFC 7692) for the bench's client side: the offer
//! (with or without server context takeover; the bench itself always
//! compresses from a fresh state), a check of the answer, one message
//! compressed (RSV1 set on its frame) and the hook that inflates what
//! arrives with RSV1. Its own code, not the gateway's: the bench must not
//! share the implementation it measures.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{PerMessage, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error, Message};

/// The `Sec-WebSocket-Extensions` offer: `takeover` lets the server keep
/// its compression context from message to message.
pub fn offer(takeover: bool) -> &'static str {
    match takeover {
        false => "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        true => "permessage-deflate; client_no_context_takeover",
    }
}

/// What each message's deflate data ends with before the sender drops it (§7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// A client config that inflates RSV1 messages; with `takeover`, with an
/// inflater of its own that keeps its window from message to message
/// (leaked: tungstenite's hook is `'static`, and a bench run ends).
pub fn config(takeover: bool) -> WebSocketConfig {
    let hook: &'static dyn PerMessage = match takeover {
        false => &Inflate,
        true => Box::leak(Box::new(Keeping::default())),
    };
    WebSocketConfig::default().per_message(Some(hook))
}

/// Whether the server's `Sec-WebSocket-Extensions` answer agreed to it.
pub fn accepted(answer: Option<&str>) -> bool {
    answer.is_some_and(|a| {
        a.split(',')
            .any(|ext| ext.split(';').next().map(str::trim) == Some("permessage-deflate"))
    })
}

/// `msg` as one compressed frame (a browser compresses every data message
/// once negotiated); other messages as they are.
pub fn compressed(msg: &Message) -> Message {
    let (op, data) = match msg {
        Message::Text(t) => (Data::Text, t.as_bytes()),
        Message::Binary(b) => (Data::Binary, &b[..]),
        other => return other.clone(),
    };
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    loop {
        let _ = c.compress_vec(
            &data[c.total_in() as usize..],
            &mut out,
            FlushCompress::Sync,
        );
        if c.total_in() as usize == data.len() && out.ends_with(&TAIL) && out.len() < out.capacity()
        {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len() - TAIL.len());
    let mut frame = Frame::message(out, OpCode::Data(op), true);
    frame.header_mut().rsv1 = true;
    Message::Frame(frame)
}

/// Inflates a message that arrived with RSV1, from a fresh state.
#[derive(Debug)]
struct Inflate;

impl PerMessage for Inflate {
    fn decode(&self, payload: Bytes, max_size: Option<usize>) -> Result<Bytes, Error> {
        inflate(&mut Decompress::new(false), &payload, max_size)
    }
}

/// One connection's inflater, kept from message to message: it reads what
/// a server compressed with context takeover (and, as well, what it
/// compressed without). tungstenite's hook must be `Sync`; the lock is
/// only ever taken by the connection's own task, never contended, and the
/// bench is not a shard.
#[allow(clippy::disallowed_types)]
#[derive(Debug)]
struct Keeping(std::sync::Mutex<Decompress>);

impl Default for Keeping {
    fn default() -> Keeping {
        #[allow(clippy::disallowed_types)]
        Keeping(std::sync::Mutex::new(Decompress::new(false)))
    }
}

impl PerMessage for Keeping {
    fn decode(&self, payload: Bytes, max_size: Option<usize>) -> Result<Bytes, Error> {
        let mut d = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inflate(&mut d, &payload, max_size)
    }
}

/// `payload` and the tail through `d`, at most `max_size` bytes out.
fn inflate(d: &mut Decompress, payload: &[u8], max_size: Option<usize>) -> Result<Bytes, Error> {
    let limit = max_size.unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(payload.len() * 4 + 64);
    let input = [payload, &TAIL[..]].concat();
    let start = d.total_in();
    loop {
        let consumed = (d.total_in() - start) as usize;
        let status = d
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|e| Error::Protocol(ProtocolError::PerMessage(e.to_string())))?;
        if out.len() > limit {
            return Err(Error::Capacity(CapacityError::MessageTooLong {
                size: out.len(),
                max_size: limit,
            }));
        }
        let done = (d.total_in() - start) as usize == input.len() && out.len() < out.capacity();
        if done || status == Status::StreamEnd {
            break;
        }
        out.reserve(out.capacity());
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_shrinks() {
        let text = r#"{"type":"message","payload":"eyJrZXkiOiJYVmxCemdiYWlDIn0="}"#.repeat(20);
        let Message::Frame(frame) = compressed(&Message::Text(text.clone().into())) else {
            panic!("not a frame");
        };
        assert!(frame.header().rsv1);
        assert!(frame.payload().len() < text.len() / 4);
        for hook in [&Inflate as &dyn PerMessage, &Keeping::default()] {
            let back = hook
                .decode(Bytes::copy_from_slice(frame.payload()), None)
                .unwrap();
            assert_eq!(back, text.as_bytes());
        }
    }

    #[test]
    fn the_answer_is_read() {
        assert!(accepted(Some(
            "permessage-deflate; server_no_context_takeover"
        )));
        assert!(!accepted(Some("x-webkit-deflate-frame")));
        assert!(!accepted(None));
    }
}
