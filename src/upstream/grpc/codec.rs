//! gRPC message framing (the 5-byte length prefix), pure and synchronous.
//!
//! Kept apart from the h2 client, as tonic does, so that framing is tested
//! without sockets: a [`Decoder`] takes bytes as they come off HTTP/2 DATA
//! frames, in any split, and yields whole messages.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::status::Code;

/// The length-prefixed message header: 1 byte compressed flag, 4 bytes length.
pub const HEADER_LEN: usize = 5;

/// Why a gRPC message stream cannot be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("compressed message but no grpc-encoding was negotiated")]
    Compressed,
    #[error("invalid compressed flag {0}")]
    BadFlag(u8),
}

impl CodecError {
    /// The code a gRPC implementation gives the call: grpc-go and tonic
    /// answer a message over the limit with RESOURCE_EXHAUSTED, and an
    /// encoding nobody negotiated with UNIMPLEMENTED (the gRPC compression
    /// spec); a flag that is neither 0 nor 1 is a broken peer.
    pub fn code(&self) -> Code {
        match self {
            CodecError::TooLarge { .. } => Code::ResourceExhausted,
            CodecError::Compressed => Code::Unimplemented,
            CodecError::BadFlag(_) => Code::Internal,
        }
    }
}

/// Appends one framed message to `out`.
pub fn encode(msg: &impl prost::Message, out: &mut BytesMut) {
    put_header(msg.encoded_len(), out);
    // `put_header` reserved the room `encode` needs.
    let _ = msg.encode(out);
}

/// Appends the 5-byte header of an uncompressed message of `len` bytes,
/// and reserves room for the message after it.
pub fn put_header(len: usize, out: &mut BytesMut) {
    out.reserve(HEADER_LEN + len);
    out.put_u8(0);
    out.put_u32(len as u32);
}

#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Body(usize),
}

/// Incremental decoder of a stream of length-prefixed messages.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    state: State,
    max_len: usize,
}

impl Decoder {
    pub fn new(max_len: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            state: State::Header,
            max_len,
        }
    }

    /// Adds bytes received from the peer.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet part of a whole message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, CodecError> {
        loop {
            match self.state {
                State::Header => {
                    if self.buf.len() < HEADER_LEN {
                        return Ok(None);
                    }
                    let flag = self.buf[0];
                    let len =
                        u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                            as usize;
                    match flag {
                        0 => {}
                        1 => return Err(CodecError::Compressed),
                        other => return Err(CodecError::BadFlag(other)),
                    }
                    if len > self.max_len {
                        return Err(CodecError::TooLarge {
                            len,
                            max: self.max_len,
                        });
                    }
                    self.buf.advance(HEADER_LEN);
                    self.state = State::Body(len);
                }
                State::Body(len) => {
                    if self.buf.len() < len {
                        self.buf.reserve(len - self.buf.len());
                        return Ok(None);
                    }
                    self.state = State::Header;
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wsgateway::Protocol;
    use prost::Message;

    fn framed(n: usize) -> (Vec<Protocol>, BytesMut) {
        let mut out = BytesMut::new();
        let msgs: Vec<_> = (0..n)
            .map(|i| Protocol {
                r#type: format!("t{i}"),
                payload: Bytes::from(vec![i as u8; i * 7]),
                ..Protocol::default()
            })
            .collect();
        for m in &msgs {
            encode(m, &mut out);
        }
        (msgs, out)
    }

    #[test]
    fn decodes_any_split() {
        let (msgs, wire) = framed(20);
        for chunk in [1, 2, 5, 7, 64, wire.len()] {
            let mut d = Decoder::new(1 << 20);
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                d.push(piece);
                while let Some(m) = d.next_message().unwrap() {
                    got.push(Protocol::decode(m).unwrap());
                }
            }
            assert_eq!(got, msgs, "chunk size {chunk}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn empty_message_is_a_message() {
        let mut d = Decoder::new(16);
        d.push(&[0, 0, 0, 0, 0]);
        assert_eq!(d.next_message(), Ok(Some(Bytes::new())));
        assert_eq!(d.next_message(), Ok(None));
    }

    #[test]
    fn rejects_oversize_and_compression() {
        let mut d = Decoder::new(16);
        d.push(&[0, 0, 0, 0, 17]);
        assert_eq!(
            d.next_message(),
            Err(CodecError::TooLarge { len: 17, max: 16 })
        );
        let mut d = Decoder::new(16);
        d.push(&[1, 0, 0, 0, 1, 0]);
        assert_eq!(d.next_message(), Err(CodecError::Compressed));
        let mut d = Decoder::new(16);
        d.push(&[9, 0, 0, 0, 1, 0]);
        assert_eq!(d.next_message(), Err(CodecError::BadFlag(9)));
        let too_large = CodecError::TooLarge { len: 17, max: 16 };
        assert_eq!(too_large.code(), Code::ResourceExhausted);
        assert_eq!(CodecError::Compressed.code(), Code::Unimplemented);
    }
}
