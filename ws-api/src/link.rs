//! [`Link`]: the way down to one gateway core, which outlives its streams.
//! Everything ws-api sends a core (pushes, echoes, controls, group and
//! broadcast messages) goes through the core's link.
//!
//! A gateway that acknowledges what it receives (metadata
//! `x-gateway-downstream-acks: 1`) gets each message numbered (`Msg.seq`,
//! counted in the link's `x-api-epoch`); the link keeps what the core has
//! not acknowledged, bounded, and writes it again, in order, when the
//! core's next stream opens: a stream torn down by either side, or a
//! connection the gateway gave up on while ws-api was still writing to it,
//! loses nothing. The gateway drops what it had already received by
//! number. A link whose core stays away longer than its hold (the
//! presence `--server-ttl`) is dropped, and what it kept counted lost.
//!
//! A gateway that does not acknowledge (an older build, the Go one) gets
//! unnumbered messages as before, nothing kept: what is written when its
//! stream breaks is lost as it always was.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tonic::Status;

use crate::proto::wsapi::Msg;

/// What a link keeps unacknowledged (while the core has no stream, more is
/// refused). The stream's channel holds as many and more, so writing them
/// all again never waits.
pub const UNACKED_LIMIT: usize = 64 * 1024;

/// One stream's channel to tonic's response body.
pub const STREAM_QUEUE: usize = 2 * UNACKED_LIMIT;

pub type Downstream = mpsc::Sender<Result<Msg, Status>>;

/// How the link took a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written to the current stream (and kept until acknowledged, when
    /// the gateway acknowledges).
    Written,
    /// Written, and the oldest message kept was forgotten to keep the
    /// bound: if the stream breaks now, that one is not written again.
    Unkept,
    /// No stream now: kept, written when the core's stream comes back.
    Kept,
    /// Neither: no stream and nothing kept (a gateway that does not
    /// acknowledge, or the link is full).
    Refused,
}

impl Sent {
    /// Whether the message will reach the core if it is there at all.
    pub fn taken(self) -> bool {
        self != Sent::Refused
    }
}

/// A stream, as the link writes to it.
#[derive(Debug)]
struct Current {
    id: u64,
    tx: Downstream,
}

#[derive(Debug)]
struct State {
    /// The gateway process (`x-gateway-epoch`) this numbering is for.
    gateway_epoch: String,
    /// Names this numbering (`x-api-epoch`); new whenever it starts at 1.
    epoch: String,
    /// The gateway acknowledges: number and keep.
    acks: bool,
    next_seq: u64,
    /// Numbered and not acknowledged, in order.
    unacked: VecDeque<Msg>,
    current: Option<Current>,
    /// When the last stream went away (while there is none).
    absent_since: Option<Instant>,
}

/// One gateway core's downstream.
#[derive(Debug)]
pub struct Link {
    state: Mutex<State>,
}

/// The numbering a stream was attached with: its response header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// `x-api-epoch`, when the gateway acknowledges.
    pub epoch: Option<String>,
    /// Messages written again from before this stream.
    pub resent: usize,
    /// Messages dropped because the gateway process changed.
    pub dropped: usize,
}

impl Link {
    pub fn new() -> Link {
        Link {
            state: Mutex::new(State {
                gateway_epoch: String::new(),
                epoch: new_epoch(),
                acks: false,
                next_seq: 1,
                unacked: VecDeque::new(),
                current: None,
                absent_since: Some(Instant::now()),
            }),
        }
    }

    /// Makes `tx` (stream `id`) the core's stream. With acknowledgements
    /// from the same gateway process, what was kept is written to it
    /// first, in order; otherwise the numbering starts again (and what was
    /// kept for a process that is gone is dropped).
    pub fn attach(&self, id: u64, tx: Downstream, gateway_epoch: &str, acks: bool) -> Attached {
        let mut st = self.state.lock();
        let same = acks && st.acks && st.gateway_epoch == gateway_epoch;
        let mut attached = Attached {
            epoch: None,
            resent: 0,
            dropped: 0,
        };
        if same {
            for msg in &st.unacked {
                // The channel is new and larger than the limit: this fits.
                if tx.try_send(Ok(msg.clone())).is_err() {
                    break;
                }
                attached.resent += 1;
            }
        } else {
            attached.dropped = st.unacked.len();
            st.unacked.clear();
            st.epoch = new_epoch();
            st.next_seq = 1;
            st.gateway_epoch = gateway_epoch.to_owned();
            st.acks = acks;
        }
        if acks {
            attached.epoch = Some(st.epoch.clone());
        }
        st.current = Some(Current { id, tx });
        st.absent_since = None;
        attached
    }

    /// The stream `id` ended; a newer one may have replaced it already.
    pub fn detach(&self, id: u64) {
        let mut st = self.state.lock();
        if st.current.as_ref().is_some_and(|c| c.id == id) {
            st.current = None;
            st.absent_since = Some(Instant::now());
        }
    }

    /// The core has received every message up to `seq` of numbering `epoch`.
    pub fn ack(&self, epoch: &str, seq: u64) -> usize {
        let mut st = self.state.lock();
        if st.epoch != epoch {
            return 0;
        }
        let before = st.unacked.len();
        while st.unacked.front().is_some_and(|m| m.seq <= seq) {
            st.unacked.pop_front();
        }
        before - st.unacked.len()
    }

    /// Whether the core has been without a stream for longer than `hold`.
    pub fn gone(&self, hold: Duration) -> bool {
        let st = self.state.lock();
        st.absent_since.is_some_and(|t| t.elapsed() > hold)
    }

    /// Whether a stream is attached now.
    pub fn attached(&self) -> bool {
        self.state.lock().current.is_some()
    }

    /// What the link keeps unacknowledged.
    pub fn unacked(&self) -> usize {
        self.state.lock().unacked.len()
    }

    /// Sends `msg` to the core: numbered and kept when it acknowledges.
    /// Waits only for room in the stream's channel, which the connection
    /// empties, never for an acknowledgement: the stream's reader, which
    /// takes the acknowledgements, sends too (echoes, replays).
    pub async fn send(&self, mut msg: Msg) -> Sent {
        loop {
            let current = {
                let mut st = self.state.lock();
                match st.current.as_ref().map(|c| (c.tx.clone(), c.id)) {
                    None if st.acks && st.unacked.len() < UNACKED_LIMIT => {
                        keep(&mut st, &mut msg);
                        return Sent::Kept;
                    }
                    None => return Sent::Refused,
                    Some(current) => current,
                }
            };
            let (tx, id) = current;
            // A slot first, outside the lock; then number and write under
            // it, so the channel holds messages in their numbers' order.
            let Ok(permit) = tx.reserve().await else {
                self.detach(id);
                continue;
            };
            let mut st = self.state.lock();
            if st.current.as_ref().is_none_or(|c| c.id != id) {
                continue;
            }
            let mut sent = Sent::Written;
            if st.acks {
                keep(&mut st, &mut msg);
                if st.unacked.len() > UNACKED_LIMIT {
                    // A core that reads but does not acknowledge: the
                    // oldest loses its resend, and is counted.
                    st.unacked.pop_front();
                    sent = Sent::Unkept;
                }
            }
            permit.send(Ok(msg));
            return sent;
        }
    }
}

impl Default for Link {
    fn default() -> Self {
        Link::new()
    }
}

/// Numbers `msg` and keeps a copy.
fn keep(st: &mut State, msg: &mut Msg) {
    msg.seq = st.next_seq;
    st.next_seq += 1;
    st.unacked.push_back(msg.clone());
}

/// A name for a numbering no earlier one of this process or another has.
fn new_epoch() -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", NEXT.fetch_add(1, Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(sid: &str) -> Msg {
        Msg {
            sid: sid.into(),
            ..Msg::default()
        }
    }

    fn stream() -> (Downstream, mpsc::Receiver<Result<Msg, Status>>) {
        mpsc::channel(STREAM_QUEUE)
    }

    fn seqs(rx: &mut mpsc::Receiver<Result<Msg, Status>>) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        while let Ok(Ok(m)) = rx.try_recv() {
            out.push((m.seq, m.sid));
        }
        out
    }

    #[tokio::test]
    async fn what_was_not_acknowledged_is_written_again_in_order() {
        let link = Link::new();
        let (tx, mut rx) = stream();
        let epoch = link.attach(1, tx, "g1", true).epoch.unwrap();
        for sid in ["a", "b", "c"] {
            assert_eq!(link.send(msg(sid)).await, Sent::Written);
        }
        assert_eq!(seqs(&mut rx).len(), 3);
        assert_eq!(link.ack(&epoch, 1), 1);
        assert_eq!(link.ack("another", 3), 0, "another numbering's ack");
        link.detach(1);
        assert_eq!(link.send(msg("d")).await, Sent::Kept);
        let (tx, mut rx) = stream();
        let again = link.attach(2, tx, "g1", true);
        assert_eq!(again.epoch.as_deref(), Some(epoch.as_str()));
        assert_eq!(again.resent, 3);
        let got = seqs(&mut rx);
        let want = [(2, "b"), (3, "c"), (4, "d")].map(|(s, id)| (s, id.to_owned()));
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_new_gateway_process_starts_the_numbering_again() {
        let link = Link::new();
        let (tx, _rx) = stream();
        let first = link.attach(1, tx, "g1", true).epoch.unwrap();
        link.send(msg("a")).await;
        let (tx, mut rx) = stream();
        let attached = link.attach(2, tx, "g2", true);
        assert_eq!(attached.dropped, 1);
        assert_ne!(attached.epoch.as_deref(), Some(first.as_str()));
        link.send(msg("b")).await;
        assert_eq!(seqs(&mut rx), [(1, "b".to_owned())]);
    }

    #[tokio::test]
    async fn without_acknowledgements_nothing_is_numbered_or_kept() {
        let link = Link::new();
        let (tx, mut rx) = stream();
        assert_eq!(link.attach(1, tx, "", false).epoch, None);
        assert_eq!(link.send(msg("a")).await, Sent::Written);
        assert_eq!(seqs(&mut rx), [(0, "a".to_owned())]);
        assert_eq!(link.unacked(), 0);
        link.detach(1);
        assert_eq!(link.send(msg("b")).await, Sent::Refused);
    }

    #[tokio::test]
    async fn a_full_link_without_a_stream_refuses() {
        let link = Link::new();
        let (tx, rx) = stream();
        link.attach(1, tx, "g", true);
        drop(rx);
        link.detach(1);
        for _ in 0..UNACKED_LIMIT {
            assert_eq!(link.send(msg("x")).await, Sent::Kept);
        }
        assert_eq!(link.send(msg("y")).await, Sent::Refused);
    }

    #[tokio::test]
    async fn a_full_link_with_a_stream_forgets_the_oldest() {
        let link = Link::new();
        let (tx, mut rx) = stream();
        let epoch = link.attach(1, tx, "g", true).epoch.unwrap();
        for _ in 0..UNACKED_LIMIT {
            assert_eq!(link.send(msg("x")).await, Sent::Written);
        }
        assert_eq!(link.send(msg("over")).await, Sent::Unkept);
        assert_eq!(link.unacked(), UNACKED_LIMIT);
        let last = seqs(&mut rx).pop().unwrap();
        assert_eq!(last, (UNACKED_LIMIT as u64 + 1, "over".to_owned()));
        assert_eq!(link.ack(&epoch, 10), 9, "2 to 10: 1 was forgotten");
    }
}
