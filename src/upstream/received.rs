//! What a core received on its streams from one ws-api node: the core's
//! half of the downstream acknowledgements (see `ExchangeMsg` in
//! proto/wsapi.proto), the mirror of [`super::unacked`].
//!
//! A ws-api that numbers its downstream messages names the numbering in
//! the response header `x-api-epoch` and puts `Msg.seq` on each message.
//! The core acknowledges cumulatively, batched, and drops a message it has
//! already received: after a break ws-api writes again, in order, what was
//! not acknowledged, so a stream the core gave up on (a ping timeout, a
//! stall) loses nothing in this direction either. A new epoch (ws-api
//! restarted, or its link to this core was dropped) starts again at 1.
//!
//! Pure bookkeeping, no I/O: unit-tested below.

/// Acknowledge at once when this many messages wait for an acknowledgement;
/// otherwise within [`ACK_EVERY`] of the first.
pub const ACK_AFTER: u64 = 256;

/// The longest a received message waits for its acknowledgement.
pub const ACK_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// What one downstream message is, by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Not numbered (a ws-api that does not number, or its own acks).
    Unnumbered,
    /// The next one, or after a gap of `missed` messages ws-api never sent.
    Fresh { missed: u64 },
    /// Received before: ws-api wrote it again after a break.
    Duplicate,
}

/// An acknowledgement to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Everything up to this number was received...
    pub seq: u64,
    /// ...in this numbering.
    pub epoch: String,
    /// Messages it acknowledges that no earlier one did.
    pub newly: u64,
}

/// The numbering of one node's downstream messages, across its streams.
#[derive(Debug, Default)]
pub struct Received {
    /// `x-api-epoch` of the numbering; `None`: the node does not number.
    epoch: Option<String>,
    /// The highest number received.
    last: u64,
    /// The highest number acknowledged.
    acked: u64,
    /// Messages received since the last acknowledgement.
    newly: u64,
    /// A new stream of the same numbering: acknowledge again what was
    /// (the last acknowledgement may have been lost with the old stream,
    /// and ws-api writes again what it did not get one for).
    again: bool,
}

impl Received {
    /// A stream opened with `epoch` (its `x-api-epoch`, if any): a new
    /// numbering starts from nothing received.
    pub fn numbering(&mut self, epoch: Option<&str>) {
        self.again = self.last > 0;
        if self.epoch.as_deref() != epoch {
            self.again = false;
            self.epoch = epoch.map(str::to_owned);
            self.last = 0;
            self.acked = 0;
            self.newly = 0;
        }
    }

    /// Records a message numbered `seq` (0: not numbered).
    pub fn receive(&mut self, seq: u64) -> Arrival {
        if seq == 0 || self.epoch.is_none() {
            return Arrival::Unnumbered;
        }
        if seq <= self.last {
            return Arrival::Duplicate;
        }
        let missed = seq - self.last - 1;
        self.last = seq;
        self.newly += 1;
        Arrival::Fresh { missed }
    }

    /// Received and not yet acknowledged (on this stream).
    pub fn pending(&self) -> u64 {
        self.last - self.acked + u64::from(self.again)
    }

    /// The acknowledgement to send, if anything waits for one.
    pub fn ack(&mut self) -> Option<Due> {
        let epoch = self.epoch.clone()?;
        if self.last == self.acked && !self.again {
            return None;
        }
        self.acked = self.last;
        self.again = false;
        Some(Due {
            seq: self.last,
            epoch,
            newly: std::mem::take(&mut self.newly),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(seq: u64, epoch: &str, newly: u64) -> Due {
        let epoch = epoch.to_owned();
        Due { seq, epoch, newly }
    }

    #[test]
    fn a_resend_is_dropped_and_acknowledged_again() {
        let mut r = Received::default();
        r.numbering(Some("e1"));
        for seq in 1..=3 {
            assert_eq!(r.receive(seq), Arrival::Fresh { missed: 0 });
        }
        assert_eq!(r.ack(), Some(due(3, "e1", 3)));
        assert_eq!(r.ack(), None, "nothing new");
        // The same numbering on the next stream: 2 and 3 again (the ack of
        // 3 was lost with the old stream), acknowledged again.
        r.numbering(Some("e1"));
        assert_eq!(r.receive(2), Arrival::Duplicate);
        assert_eq!(r.receive(3), Arrival::Duplicate);
        assert_eq!(r.pending(), 1);
        assert_eq!(r.ack(), Some(due(3, "e1", 0)));
        assert_eq!(r.receive(4), Arrival::Fresh { missed: 0 });
        assert_eq!(r.pending(), 1);
        assert_eq!(r.ack(), Some(due(4, "e1", 1)));
    }

    #[test]
    fn a_new_epoch_starts_again_and_a_gap_is_told() {
        let mut r = Received::default();
        r.numbering(Some("e1"));
        r.receive(1);
        r.receive(2);
        r.numbering(Some("e2"));
        assert_eq!(r.receive(1), Arrival::Fresh { missed: 0 });
        assert_eq!(r.receive(5), Arrival::Fresh { missed: 3 });
        assert_eq!(r.ack(), Some(due(5, "e2", 2)));
    }

    #[test]
    fn a_node_that_does_not_number_is_never_acknowledged() {
        let mut r = Received::default();
        r.numbering(None);
        assert_eq!(r.receive(0), Arrival::Unnumbered);
        assert_eq!(r.receive(7), Arrival::Unnumbered);
        assert_eq!(r.ack(), None);
        r.numbering(Some("e"));
        assert_eq!(r.receive(0), Arrival::Unnumbered, "its own acks");
    }
}
