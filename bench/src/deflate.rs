//! permessage-deflate (RFC 7692) for the bench's client side, the way a
//! browser offers it with no context takeover: the offer, a check of the
//! answer, one message compressed (RSV1 set on its frame) and the hook
//! that inflates what arrives with RSV1. Its own code, not the gateway's:
//! the bench must not share the implementation it measures.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{PerMessage, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error, Message};

/// The `Sec-WebSocket-Extensions` offer.
pub const OFFER: &str =
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

/// What each message's deflate data ends with before the sender drops it (§7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// A client config that inflates RSV1 messages.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default().per_message(Some(&Inflate))
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

/// Inflates a message that arrived with RSV1.
#[derive(Debug)]
struct Inflate;

impl PerMessage for Inflate {
    fn decode(&self, payload: Bytes, max_size: Option<usize>) -> Result<Bytes, Error> {
        let limit = max_size.unwrap_or(usize::MAX);
        let mut d = Decompress::new(false);
        let mut out = Vec::with_capacity(payload.len() * 4 + 64);
        let input = [&payload[..], &TAIL[..]].concat();
        loop {
            let status = d
                .decompress_vec(
                    &input[d.total_in() as usize..],
                    &mut out,
                    FlushDecompress::Sync,
                )
                .map_err(|e| Error::Protocol(ProtocolError::PerMessage(e.to_string())))?;
            if out.len() > limit {
                return Err(Error::Capacity(CapacityError::MessageTooLong {
                    size: out.len(),
                    max_size: limit,
                }));
            }
            let done = d.total_in() as usize == input.len() && out.len() < out.capacity();
            if done || status == Status::StreamEnd {
                break;
            }
            out.reserve(out.capacity());
        }
        Ok(Bytes::from(out))
    }
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
        let back = Inflate
            .decode(Bytes::copy_from_slice(frame.payload()), None)
            .unwrap();
        assert_eq!(back, text.as_bytes());
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
