//! What one permessage-deflate connection keeps between the messages it
//! is sent: the window its handshake agreed and, with server context
//! takeover, the bytes its client has inflated lately. The zlib state
//! itself stays one per core ([`super::compress`]).

use std::cell::OnceCell;

use bytes::Bytes;

use super::{Agreed, compress};

/// With server context takeover, what a connection's client has inflated
/// lately: the last 2^window_bits bytes of the messages the gateway sent it
/// compressed (the client's inflate window holds them). Compressing the
/// next message with them as the dictionary lets it refer back into them,
/// as a compressor kept per connection would, while the zlib state stays
/// one per core: a connection holds this window (allocated whole with its
/// first compressed message, never more), not a deflate state.
#[derive(Debug)]
pub struct History {
    window: usize,
    bytes: Vec<u8>,
}

impl History {
    pub fn new(window_bits: u8) -> History {
        History {
            window: 1 << window_bits,
            bytes: Vec::new(),
        }
    }

    /// The dictionary for the next message.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Adds a message just sent compressed.
    pub fn remember(&mut self, data: &[u8]) {
        if self.bytes.capacity() == 0 {
            self.bytes.reserve_exact(self.window);
        }
        let keep = &data[data.len().saturating_sub(self.window)..];
        let over = (self.bytes.len() + keep.len()).saturating_sub(self.window);
        self.bytes.drain(..over);
        self.bytes.extend_from_slice(keep);
    }
}

/// How one connection compresses what it sends, from what its handshake
/// agreed.
#[derive(Debug)]
pub struct Deflater {
    window_bits: u8,
    /// With server context takeover.
    history: Option<History>,
}

impl Deflater {
    pub fn new(agreed: &Agreed) -> Deflater {
        Deflater {
            window_bits: agreed.window_bits,
            history: agreed
                .context_takeover
                .then(|| History::new(agreed.window_bits)),
        }
    }

    /// `data` compressed for this connection. `shared` holds (or is given)
    /// the compressed form of a frame the core sends to many sessions,
    /// made once for the core's usual window (`shared_bits`); a connection
    /// with its own history or window compresses its own.
    pub fn compress(
        &mut self,
        data: &[u8],
        level: u32,
        shared: &OnceCell<Bytes>,
        shared_bits: u8,
    ) -> Bytes {
        let bits = self.window_bits;
        match &mut self.history {
            Some(history) => {
                let packed = compress(data, level, bits, history.bytes());
                history.remember(data);
                packed
            }
            None if bits == shared_bits => shared
                .get_or_init(|| compress(data, level, bits, &[]))
                .clone(),
            None => compress(data, level, bits, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use flate2::{Decompress, FlushDecompress};

    use super::*;
    use crate::codec::deflate::TAIL;

    /// A client that keeps its inflater from message to message (context
    /// takeover, as browsers do) reads what is compressed against the
    /// history, and a repeated message costs a few bytes.
    #[test]
    fn messages_compressed_against_the_history_inflate_in_one_stream() {
        for bits in [9, 11, 15] {
            let mut client = Decompress::new_with_window_bits(false, bits);
            let mut history = History::new(bits);
            let mut sizes = Vec::new();
            for i in 0..40 {
                let msg = format!(r#"{{"type":"notice","seq":{i},"payload":"aGVsbG8gd29ybGQ="}}"#)
                    .repeat(1 + i % 3 * 40);
                let packed = compress(msg.as_bytes(), 1, bits, history.bytes());
                history.remember(msg.as_bytes());
                assert!(history.bytes().len() <= 1 << bits);
                assert_eq!(history.bytes.capacity(), 1 << bits);
                sizes.push(packed.len());
                let mut out = Vec::with_capacity(msg.len() + 16);
                for part in [&packed[..], &TAIL[..]] {
                    let before = client.total_in();
                    client
                        .decompress_vec(part, &mut out, FlushDecompress::Sync)
                        .unwrap();
                    assert_eq!(client.total_in() - before, part.len() as u64);
                }
                assert_eq!(out, msg.as_bytes(), "{bits}: message {i}");
            }
            // The small message after the first: mostly a reference back.
            assert!(sizes[3] < 25, "{bits}: {sizes:?}");
        }
    }
}
