//! What a core wrote on its stream to one ws-api node and the node has not
//! acknowledged: the core's half of the gateway ↔ ws-api acknowledgements.
//!
//! Each message a core writes to a node has a sequence number, implicit in
//! its position: a stream's metadata `x-gateway-seq` gives the number of its
//! first message, and ws-api counts from there. A ws-api that acknowledges
//! sends `Control.Ack{seq}` down the stream (cumulative); what it has not
//! acknowledged when the stream breaks is written again, in order, on the
//! next stream (ws-api drops what it had already received, by
//! `x-gateway-epoch` and sequence) or moved to another node.
//!
//! A ws-api that never acknowledges (an older build) gets the same numbers
//! and ignores them. Its messages are kept as counts only, confirmed by the
//! next answered HTTP/2 PING (the server has read every frame before it);
//! those not confirmed when the stream breaks are counted
//! `upstream_unconfirmed`: their fate is unknown.
//!
//! Pure bookkeeping, no I/O: unit-tested below.

use std::collections::VecDeque;

use bytes::Bytes;

/// Messages written in one DATA write.
#[derive(Debug)]
struct Chunk {
    /// Sequence number of its first message.
    first: u64,
    msgs: u64,
    /// Kept for a resend when the node acknowledges; `None` otherwise.
    bytes: Option<Bytes>,
}

impl Chunk {
    fn last(&self) -> u64 {
        self.first + self.msgs - 1
    }
}

/// Written, not yet acknowledged (or confirmed), in sequence order.
#[derive(Debug, Default)]
pub struct Unacked {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    msgs: u64,
}

impl Unacked {
    /// Records `msgs` messages written from sequence number `first`.
    pub fn push(&mut self, first: u64, msgs: u64, bytes: Option<Bytes>) {
        if msgs == 0 {
            return;
        }
        self.bytes += bytes.as_ref().map_or(0, Bytes::len);
        self.msgs += msgs;
        self.chunks.push_back(Chunk { first, msgs, bytes });
    }

    /// The node has everything up to `seq`: forgets the chunks it covers
    /// whole; returns how many messages they held.
    pub fn ack(&mut self, seq: u64) -> u64 {
        let mut done = 0;
        while let Some(c) = self.chunks.front() {
            if c.last() > seq {
                break;
            }
            done += c.msgs;
            self.bytes -= c.bytes.as_ref().map_or(0, Bytes::len);
            self.chunks.pop_front();
        }
        self.msgs -= done;
        done
    }

    /// Bytes kept for a resend.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages written and not acknowledged, kept as bytes or as counts.
    pub fn msgs(&self) -> u64 {
        self.msgs
    }

    /// Sequence number of the first message not acknowledged.
    pub fn first(&self) -> Option<u64> {
        self.chunks.front().map(|c| c.first)
    }

    /// The stream broke: forgets what was kept as counts only and returns
    /// how many messages that was (their fate is unknown). What was kept as
    /// bytes stays, to be written again.
    pub fn settle(&mut self) -> u64 {
        let mut unknown = 0;
        self.chunks.retain(|c| {
            let keep = c.bytes.is_some();
            if !keep {
                unknown += c.msgs;
            }
            keep
        });
        self.msgs -= unknown;
        unknown
    }

    /// The kept chunks' bytes, in order, to write again on a new stream.
    pub fn resend(&self) -> Vec<(Bytes, u64)> {
        self.chunks
            .iter()
            .filter_map(|c| Some((c.bytes.clone()?, c.msgs)))
            .collect()
    }

    /// Takes everything kept, for another node: (bytes, messages).
    pub fn take(&mut self) -> (Vec<Bytes>, u64) {
        self.bytes = 0;
        self.msgs = 0;
        let chunks = std::mem::take(&mut self.chunks);
        let msgs = chunks
            .iter()
            .filter(|c| c.bytes.is_some())
            .map(|c| c.msgs)
            .sum();
        (chunks.into_iter().filter_map(|c| c.bytes).collect(), msgs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(n: usize) -> Option<Bytes> {
        Some(Bytes::from(vec![0u8; n]))
    }

    #[test]
    fn cumulative_acks_release_whole_chunks() {
        let mut u = Unacked::default();
        u.push(1, 3, kept(30));
        u.push(4, 2, kept(20));
        assert_eq!((u.first(), u.bytes(), u.msgs()), (Some(1), 50, 5));
        assert_eq!(
            u.ack(2),
            0,
            "a chunk is released only once all of it is acknowledged"
        );
        assert_eq!(u.ack(3), 3);
        assert_eq!((u.first(), u.bytes(), u.msgs()), (Some(4), 20, 2));
        assert_eq!(u.ack(10), 2);
        assert_eq!((u.first(), u.bytes(), u.msgs()), (None, 0, 0));
    }

    #[test]
    fn a_break_counts_the_unkept_and_resends_the_kept_in_order() {
        let mut u = Unacked::default();
        u.push(1, 2, None);
        u.push(3, 4, kept(8));
        u.push(7, 1, kept(2));
        assert_eq!(u.settle(), 2);
        assert_eq!((u.first(), u.msgs()), (Some(3), 5));
        let again: Vec<u64> = u.resend().iter().map(|(_, n)| *n).collect();
        assert_eq!(again, [4, 1]);
        assert_eq!(u.bytes(), 10, "resending keeps them until acknowledged");
        let (bytes, msgs) = u.take();
        assert_eq!((bytes.len(), msgs, u.bytes(), u.first()), (2, 5, 0, None));
        assert_eq!(u.msgs(), 0);
    }

    #[test]
    fn empty_writes_are_not_recorded() {
        let mut u = Unacked::default();
        u.push(1, 0, kept(0));
        assert_eq!(u.first(), None);
    }
}
