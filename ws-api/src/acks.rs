//! ws-api's half of the gateway ↔ ws-api acknowledgements (see
//! `ExchangeMsg` in proto/wsapi.proto): number each upstream message from
//! the stream's `x-gateway-seq`, drop one already received from the same
//! gateway core and process (`x-gateway-epoch`), and acknowledge
//! cumulatively down the stream.
//!
//! What "received" means here: the message came off the stream and its
//! handler took it (echo queued, redis-stream appended), so a gateway that
//! loses its stream afterwards does not send it again.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tonic::metadata::MetadataMap;

use crate::proto::wsapi::control::Op;
use crate::proto::wsapi::{Ack, Control, Msg};

/// At most this long between a message and its acknowledgement.
pub const ACK_EVERY: Duration = Duration::from_millis(10);

/// Or after this many messages, whichever comes first.
pub const ACK_AFTER: u64 = 256;

/// The highest sequence number received per gateway core, for its current
/// process (a new epoch replaces the old one: one entry per core).
#[derive(Debug, Default)]
pub struct Received {
    by_server: Mutex<HashMap<String, (String, u64)>>,
}

impl Received {
    /// Whether `seq` from `server` in `epoch` is new (and records it).
    fn first_time(&self, server: &str, epoch: &str, seq: u64) -> bool {
        let mut map = self.by_server.lock();
        match map.get_mut(server) {
            Some((e, highest)) if e == epoch => {
                if seq <= *highest {
                    return false;
                }
                *highest = seq;
            }
            _ => {
                map.insert(server.to_owned(), (epoch.to_owned(), seq));
            }
        }
        true
    }
}

/// One stream's numbering: from the gateway's metadata, absent for a
/// gateway that does not number its messages (then nothing is acknowledged).
#[derive(Debug)]
pub struct Sequence {
    server: String,
    epoch: String,
    /// The number of the next message.
    next: u64,
    /// The last number acknowledged.
    acked: u64,
}

impl Sequence {
    pub fn from_metadata(server: Option<&str>, md: &MetadataMap) -> Option<Sequence> {
        let get = |k| md.get(k).and_then(|v| v.to_str().ok());
        let first: u64 = get("x-gateway-seq")?.parse().ok().filter(|s| *s > 0)?;
        Some(Sequence {
            server: server?.to_owned(),
            epoch: get("x-gateway-epoch")?.to_owned(),
            next: first,
            acked: first - 1,
        })
    }

    /// Numbers the next message: `false` if it was received before.
    pub fn receive(&mut self, received: &Received) -> bool {
        let seq = self.next;
        self.next += 1;
        received.first_time(&self.server, &self.epoch, seq)
    }

    /// The acknowledgement to send now, if one is due (`force`: the timer).
    pub fn ack(&mut self, force: bool) -> Option<Msg> {
        let last = self.next - 1;
        let due = last > self.acked && (force || last - self.acked >= ACK_AFTER);
        due.then(|| self.ack_now())
    }

    /// An acknowledgement of everything so far (also of nothing yet: the
    /// gateway learns at once that this ws-api acknowledges).
    pub fn ack_now(&mut self) -> Msg {
        self.acked = self.next - 1;
        Msg {
            server: self.server.clone(),
            control: Some(Control {
                op: Some(Op::Ack(Ack {
                    seq: self.acked,
                    ..Ack::default()
                })),
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(first: &str, epoch: &str) -> Sequence {
        let mut md = MetadataMap::new();
        md.insert("x-gateway-seq", first.parse().unwrap());
        md.insert("x-gateway-epoch", epoch.parse().unwrap());
        Sequence::from_metadata(Some("gw#0"), &md).unwrap()
    }

    fn acked(m: Option<Msg>) -> Option<u64> {
        match m?.control?.op? {
            Op::Ack(a) => Some(a.seq),
            _ => None,
        }
    }

    #[test]
    fn a_resend_after_a_reconnect_is_dropped_once() {
        let received = Received::default();
        let mut s = seq("1", "e1");
        assert!((0..5).all(|_| s.receive(&received)));
        // Reconnected, writing again from 4: 4 and 5 are duplicates.
        let mut again = seq("4", "e1");
        let fresh: Vec<bool> = (0..4).map(|_| again.receive(&received)).collect();
        assert_eq!(fresh, [false, false, true, true]);
        // A restarted gateway (new epoch) starts again at 1.
        assert!(seq("1", "e2").receive(&received));
    }

    #[test]
    fn acks_are_cumulative_and_batched() {
        let received = Received::default();
        let mut s = seq("10", "e");
        assert_eq!(acked(Some(s.ack_now())), Some(9));
        assert_eq!(s.ack(true), None, "nothing new");
        s.receive(&received);
        assert_eq!(s.ack(false), None, "not yet due");
        assert_eq!(acked(s.ack(true)), Some(10));
        for _ in 0..ACK_AFTER {
            s.receive(&received);
        }
        assert_eq!(acked(s.ack(false)), Some(10 + ACK_AFTER));
    }

    #[test]
    fn no_metadata_no_numbering() {
        assert!(Sequence::from_metadata(Some("gw#0"), &MetadataMap::new()).is_none());
    }
}
