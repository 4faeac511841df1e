//! permessage-deflate (RFC 7692), with no I/O: what the opening handshake
//! agrees ([`negotiate`]), and the codec ([`compress`], and [`INFLATE`],
//! tungstenite's hook for messages that arrive with RSV1).
//!
//! The gateway always answers `server_no_context_takeover;
//! client_no_context_takeover` (RFC 7692 §7.1.1: a server may ask the
//! client not to take over its context even when the client did not
//! offer it): every message is compressed and inflated from a fresh
//! state, so one compressor per window size and one decompressor serve
//! every connection of a core (they live in thread-locals, and a core is
//! one thread), and an idle compressed connection holds no zlib state.
//! The cost is the ratio context takeover would add for small, similar
//! messages. A message is inflated in steps and refused
//! (`Error::Capacity`, close 1009) as soon as it passes
//! `--max-message-size`, before it is produced whole.

//!
//! # Layout
//!
//! - this file: the negotiation, the core's compressor and decompressor,
//!   and tungstenite's inflate hook.
//! - [`connection`]: what one connection keeps: its window and, with
//!   context takeover, its history ([`Deflater`]).

mod connection;

pub use connection::{Deflater, History};

use std::cell::RefCell;

use async_tungstenite::tungstenite::Error as WsError;
use async_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use async_tungstenite::tungstenite::protocol::PerMessage;
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";
/// What ends a sync-flushed deflate block: removed by the sender, put back
/// by the receiver (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// The smallest window zlib compresses raw deflate with: it turns 8 into
/// 9, which a client that asked for 8 could not inflate. Such an offer is
/// declined.
const MIN_SERVER_WINDOW: u8 = 9;
/// Inflated output grows by this much per step, so that a bomb is stopped
/// within a step of the limit.
const INFLATE_STEP: usize = 16 * 1024;

/// What the gateway's flags let a handshake agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Compress each message against the connection's previous ones
    /// (server context takeover, `--compression-context-takeover`), unless
    /// the client asks for `server_no_context_takeover`.
    pub context_takeover: bool,
    /// The largest window the gateway compresses with
    /// (`--compression-window-bits`, 9..=15).
    pub window_bits: u8,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            context_takeover: false,
            window_bits: 15,
        }
    }
}

/// What the handshake agreed for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    /// The window the gateway compresses with (`server_max_window_bits`).
    pub window_bits: u8,
    /// Whether the gateway keeps its context from message to message.
    pub context_takeover: bool,
    /// The `Sec-WebSocket-Extensions` value of the 101.
    pub response: String,
}

/// The first permessage-deflate offer in the request's
/// `Sec-WebSocket-Extensions` values that the gateway can honour; `None`
/// when there is none (the connection is then uncompressed). An offer with
/// an unknown, repeated or malformed parameter is declined, as RFC 7692
/// §7.1 wants, and the next one is tried.
///
/// The client is always asked for `client_no_context_takeover` (RFC 7692
/// §7.1.1.2 lets the server ask it unasked): its messages then inflate
/// from a fresh state, with no inflate history kept per connection.
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>, policy: Policy) -> Option<Agreed> {
    headers
        .into_iter()
        .flat_map(|h| h.split(','))
        .filter_map(|offer| {
            let mut parts = offer.split(';').map(str::trim);
            (parts.next()? == NAME).then(|| accept(parts, policy))?
        })
        .next()
}

/// The answer to one offer's parameters, if it can be honoured.
fn accept<'a>(params: impl Iterator<Item = &'a str>, policy: Policy) -> Option<Agreed> {
    let mut seen: Vec<&str> = Vec::new();
    let mut window_bits = None;
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        let bits = || {
            value
                .and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b))
        };
        match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            // The client's window: whatever it uses, a 15-bit inflater reads.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(_)) => {
                bits()?;
            }
            ("server_max_window_bits", Some(_)) => window_bits = Some(bits()?),
            _ => return None,
        }
    }
    if window_bits.is_some_and(|b| b < MIN_SERVER_WINDOW) {
        return None;
    }
    let context_takeover = policy.context_takeover && !seen.contains(&"server_no_context_takeover");
    // A smaller window than offered (or than 15, unasked) needs no word:
    // any window up to the client's inflates it.
    let bits = window_bits.unwrap_or(15).min(policy.window_bits);
    let mut response = NAME.to_owned();
    if !context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    response.push_str("; client_no_context_takeover");
    if window_bits.is_some() {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some(Agreed {
        window_bits: bits,
        context_takeover,
        response,
    })
}

/// What this core inflated since [`take_inflated`] was last called.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    pub messages: u64,
    /// Bytes as received.
    pub before: u64,
    /// Bytes once inflated.
    pub after: u64,
    /// Messages refused for inflating past the limit.
    pub too_big: u64,
}

/// Takes what was inflated on this thread (this core) since the last call:
/// tungstenite's hook has no way to the core's counters, so the session
/// that read the message moves the figures there.
pub fn take_inflated() -> Inflated {
    INFLATED.replace(Inflated::default())
}

thread_local! {
    static INFLATED: std::cell::Cell<Inflated> = const { std::cell::Cell::new(Inflated { messages: 0, before: 0, after: 0, too_big: 0 }) };
    /// This core's compressors, by window bits (9..=15), made on first use.
    static DEFLATERS: RefCell<[Option<Compress>; 7]> = const { RefCell::new([const { None }; 7]) };
    /// This core's decompressor.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// `data` compressed as one message's payload (RSV1 set on its frame),
/// with `level` and a `window_bits` window, from a fresh state primed
/// with `dictionary` (a [`History`], or nothing).
pub fn compress(data: &[u8], level: u32, window_bits: u8, dictionary: &[u8]) -> Bytes {
    let slot = usize::from(window_bits.clamp(MIN_SERVER_WINDOW, 15) - MIN_SERVER_WINDOW);
    DEFLATERS.with_borrow_mut(|deflaters| {
        let deflater = deflaters[slot].get_or_insert_with(|| {
            Compress::new_with_window_bits(
                Compression::new(level),
                false,
                window_bits.max(MIN_SERVER_WINDOW),
            )
        });
        deflater.reset();
        if !dictionary.is_empty() {
            // After a reset the stream is where a dictionary may be set:
            // the call cannot fail here.
            let _ = deflater.set_dictionary(dictionary);
        }
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            let before = deflater.total_in();
            // Compressing into memory: the only failure is a full buffer.
            let _ = deflater.compress_vec(input, &mut out, FlushCompress::Sync);
            input = &input[(deflater.total_in() - before) as usize..];
            if input.is_empty() && out.ends_with(&TAIL) && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        out.truncate(out.len() - TAIL.len());
        Bytes::from(out)
    })
}

/// Why a compressed message could not be inflated.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// It inflates past the limit (a "zip bomb", or just too big).
    #[error("inflates past {0} bytes")]
    TooBig(usize),
    /// The bytes are not deflate data.
    #[error("invalid deflate data: {0}")]
    Invalid(String),
}

/// `data` (a message's payload as it arrived, RSV1 set) inflated, at most
/// `limit` bytes.
pub fn inflate(data: &[u8], limit: usize) -> Result<Bytes, InflateError> {
    INFLATER.with_borrow_mut(|inflater| {
        let inflater = inflater.get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
        inflater.reset(false);
        let mut out = Vec::with_capacity(INFLATE_STEP.min(limit + 1));
        for chunk in [data, &TAIL[..]] {
            let mut input = chunk;
            loop {
                let before = (inflater.total_in(), inflater.total_out());
                let status = inflater
                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                    .map_err(|e| InflateError::Invalid(e.to_string()))?;
                input = &input[(inflater.total_in() - before.0) as usize..];
                if out.len() > limit {
                    return Err(InflateError::TooBig(limit));
                }
                let progress = (inflater.total_in(), inflater.total_out()) != before;
                match status {
                    Status::StreamEnd if !input.is_empty() => {
                        return Err(InflateError::Invalid("data after the final block".into()));
                    }
                    Status::StreamEnd => break,
                    _ if input.is_empty() && out.len() < out.capacity() => break,
                    _ if !progress && out.len() < out.capacity() => {
                        return Err(InflateError::Invalid("truncated".into()));
                    }
                    _ => {}
                }
                if out.len() == out.capacity() {
                    out.reserve(INFLATE_STEP.min(limit + 1 - out.len()).max(1));
                }
            }
        }
        Ok(Bytes::from(out))
    })
}

/// tungstenite's hook: inflates RSV1 messages for the connections that
/// negotiated permessage-deflate.
#[derive(Debug)]
pub struct Inflate;

/// The one [`Inflate`], for `WebSocketConfig::per_message`.
pub static INFLATE: Inflate = Inflate;

impl PerMessage for Inflate {
    fn decode(&self, payload: Bytes, max_size: Option<usize>) -> Result<Bytes, WsError> {
        let limit = max_size.unwrap_or(usize::MAX - 1);
        let inflated = inflate(&payload, limit);
        let mut seen = INFLATED.get();
        match &inflated {
            Ok(out) => {
                seen.messages += 1;
                seen.before += payload.len() as u64;
                seen.after += out.len() as u64;
            }
            Err(InflateError::TooBig(_)) => seen.too_big += 1,
            Err(InflateError::Invalid(_)) => {}
        }
        INFLATED.set(seen);
        inflated.map_err(|e| match e {
            InflateError::TooBig(max_size) => WsError::Capacity(CapacityError::MessageTooLong {
                size: max_size + 1,
                max_size,
            }),
            InflateError::Invalid(why) => WsError::Protocol(ProtocolError::PerMessage(why)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreed(offer: &str) -> Option<String> {
        negotiate([offer], Policy::default()).map(|a| a.response)
    }

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn offers_are_answered_or_declined() {
        // Chromium's and Python websockets' offers.
        assert_eq!(
            agreed("permessage-deflate; client_max_window_bits").as_deref(),
            Some(BOTH)
        );
        assert_eq!(agreed("permessage-deflate").as_deref(), Some(BOTH));
        let windowed = negotiate(
            ["permessage-deflate; server_max_window_bits=10"],
            Policy::default(),
        )
        .unwrap();
        assert_eq!(windowed.window_bits, 10);
        assert_eq!(
            windowed.response,
            format!("{BOTH}; server_max_window_bits=10")
        );
        assert_eq!(
            agreed(r#"permessage-deflate; server_max_window_bits="12""#),
            Some(format!("{BOTH}; server_max_window_bits=12"))
        );
        for declined in [
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(agreed(declined), None, "{declined}");
        }
        // A declined offer falls through to the next one, in the same
        // header or the next.
        assert_eq!(
            agreed("permessage-deflate; server_max_window_bits=8, permessage-deflate").as_deref(),
            Some(BOTH)
        );
        assert_eq!(
            negotiate(
                ["foo", "permessage-deflate; client_no_context_takeover"],
                Policy::default()
            )
            .map(|a| a.window_bits),
            Some(15)
        );
    }

    #[test]
    fn compressed_messages_inflate_back() {
        let json = br#"{"type":"notice","payload":"aGVsbG8gd29ybGQ="}"#.repeat(40);
        for bits in [9, 12, 15] {
            let packed = compress(&json, 1, bits, b"");
            assert!(packed.len() < json.len() / 4, "{bits}: {}", packed.len());
            assert!(!packed.ends_with(&TAIL));
            assert_eq!(&inflate(&packed, json.len()).unwrap()[..], &json[..]);
        }
        // The state is fresh each time: the same input, the same output.
        assert_eq!(
            compress(b"abcabc", 6, 15, b""),
            compress(b"abcabc", 6, 15, b"")
        );
        assert_eq!(&inflate(&compress(b"", 1, 15, b""), 0).unwrap()[..], b"");
    }

    #[test]
    fn bombs_and_garbage_are_refused() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = compress(&zeros, 9, 15, b"");
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        assert_eq!(
            inflate(&bomb, 64 * 1024),
            Err(InflateError::TooBig(64 * 1024))
        );
        assert!(matches!(
            inflate(b"\xff\xff\xff\xff garbage", 1024),
            Err(InflateError::Invalid(_))
        ));
        // A block of the reserved type 3 (BFINAL=1, BTYPE=11).
        assert!(matches!(
            inflate(&[0x07, 0x00], 1024),
            Err(InflateError::Invalid(_))
        ));
        // A message cut short: whatever comes of it, no panic.
        let json = br#"{"type":"t","payload":"cGF5bG9hZA=="}"#.repeat(20);
        let packed = compress(&json, 1, 15, b"");
        let _ = inflate(&packed[..packed.len() / 2], 1 << 20);
        // The inflater is usable again after each refusal.
        assert_eq!(&inflate(&packed, 1 << 20).unwrap()[..], &json[..]);
    }

    #[test]
    fn takeover_is_offered_and_declined_as_the_client_asks() {
        let takeover = Policy {
            context_takeover: true,
            window_bits: 11,
        };
        let a = negotiate(["permessage-deflate; client_max_window_bits"], takeover).unwrap();
        assert!(a.context_takeover);
        assert_eq!(a.window_bits, 11);
        assert_eq!(a.response, "permessage-deflate; client_no_context_takeover");
        let a = negotiate(["permessage-deflate; server_max_window_bits=13"], takeover).unwrap();
        assert_eq!(
            a.response,
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"
        );
        let a = negotiate(["permessage-deflate; server_no_context_takeover"], takeover).unwrap();
        assert!(!a.context_takeover);
        assert_eq!(a.response, BOTH);
    }
}
