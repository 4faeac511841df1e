//! A session's side of a resume (docs/delivery.md): the position a client
//! asks to resume from, and the messages a session holds back while ws-api
//! replays what the client missed.
//!
//! ws-api sends the replay on the core's exchange stream, in order, then
//! `Control.Resumed`. Messages pushed to the user meanwhile may come from
//! any ws-api node, on any stream, and overtake the replay: the session
//! holds every positioned live message until `Resumed`, then delivers those
//! newer than the replay's end and drops the ones the replay already had,
//! also when such a live copy arrives after `Resumed` (it was pushed before
//! the replay read the history, but its stream was slower). So the client
//! sees no gap, no duplicate and no reordering at the seam. Pure logic, no
//! I/O: the session feeds it and writes what it returns.

pub use ws_proto::Position;

use crate::proto::wsapi::Resumed;
use crate::proto::wsgateway::Protocol;

/// Why a session stopped holding messages back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Resumed,
    /// ws-api could not honour the position (or keeps no history).
    Failed,
    /// ws-api did not finish the replay within `--resume-timeout`.
    TimedOut,
}

/// A session's resume: live positioned messages held while the replay
/// runs, then the replay's end, below which live copies are dropped.
#[derive(Debug, Default)]
pub struct Resuming {
    held: Vec<Protocol>,
    done: bool,
    through: Option<Position>,
}

impl Resuming {
    /// A live message, handed back if it is to be delivered now: held
    /// while the replay runs if it has a position (the replay may still
    /// bring older ones); after it, dropped if the replay had it.
    pub fn live(&mut self, p: Protocol) -> Option<Protocol> {
        if p.offset.is_empty() {
            return Some(p);
        }
        if !self.done {
            self.held.push(p);
            return None;
        }
        let replayed = match (&self.through, Position::parse(&p.offset)) {
            (Some(end), Some(pos)) => pos.epoch == end.epoch && pos.n <= end.n,
            _ => false,
        };
        (!replayed).then_some(p)
    }

    /// Whether the replay is still running.
    pub fn replaying(&self) -> bool {
        !self.done
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The replay ended: the frame for the client, then the held messages
    /// to deliver (those newer than the replay, in position order; those
    /// the replay covered are dropped: the client had them).
    pub fn finish(&mut self, end: Result<Resumed, Outcome>) -> (Outcome, Protocol, Vec<Protocol>) {
        self.done = true;
        let (outcome, through) = match &end {
            Ok(r) if !r.failed => (Outcome::Resumed, Position::parse(&r.offset)),
            Ok(_) => (Outcome::Failed, None),
            Err(outcome) => (*outcome, None),
        };
        let frame = match outcome {
            Outcome::Resumed => Protocol {
                r#type: "resumed".into(),
                offset: end.map(|r| r.offset).unwrap_or_default(),
                ..Protocol::default()
            },
            Outcome::Failed | Outcome::TimedOut => Protocol {
                r#type: "resume-failed".into(),
                ..Protocol::default()
            },
        };
        let mut held: Vec<(Option<Position>, Protocol)> = std::mem::take(&mut self.held)
            .into_iter()
            .map(|p| (Position::parse(&p.offset), p))
            .collect();
        held.sort_by_key(|(pos, _)| pos.as_ref().map_or(0, |p| p.n));
        held.dedup_by(|a, b| a.0.is_some() && a.0 == b.0);
        let deliver = held
            .into_iter()
            .filter(|(pos, _)| match (pos, &through) {
                (Some(pos), Some(end)) => pos.epoch != end.epoch || pos.n > end.n,
                _ => true,
            })
            .map(|(_, p)| p)
            .collect();
        self.through = through;
        (outcome, frame, deliver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: &str) -> Protocol {
        Protocol {
            r#type: "news".into(),
            offset: offset.into(),
            ..Protocol::default()
        }
    }

    fn offsets(ps: &[Protocol]) -> Vec<&str> {
        ps.iter().map(|p| p.offset.as_str()).collect()
    }

    #[test]
    fn held_messages_newer_than_the_replay_follow_it_in_order() {
        let mut r = Resuming::default();
        assert!(r.live(at("")).is_some(), "unpositioned passes");
        for o in ["e:12", "e:10", "e:11", "e:12", "e:9"] {
            assert!(r.live(at(o)).is_none());
        }
        assert_eq!(r.held(), 5);
        let resumed = Resumed {
            offset: "e:10".into(),
            failed: false,
        };
        let (outcome, frame, deliver) = r.finish(Ok(resumed));
        assert_eq!(outcome, Outcome::Resumed);
        assert_eq!(
            (frame.r#type.as_str(), frame.offset.as_str()),
            ("resumed", "e:10")
        );
        assert_eq!(offsets(&deliver), ["e:11", "e:12"]);
        // A live copy slower than the replay is dropped; newer ones pass.
        assert!(r.live(at("e:10")).is_none());
        assert!(r.live(at("e:13")).is_some());
    }

    #[test]
    fn a_failed_or_late_replay_delivers_everything_held() {
        for end in [
            Ok(Resumed {
                offset: String::new(),
                failed: true,
            }),
            Err(Outcome::TimedOut),
        ] {
            let mut r = Resuming::default();
            r.live(at("e:3"));
            r.live(at("e:2"));
            let (outcome, frame, deliver) = r.finish(end);
            assert_ne!(outcome, Outcome::Resumed);
            assert_eq!(frame.r#type, "resume-failed");
            assert_eq!(offsets(&deliver), ["e:2", "e:3"]);
        }
    }

    #[test]
    fn a_new_epoch_is_delivered_whatever_its_numbers() {
        let mut r = Resuming::default();
        r.live(at("f:1"));
        let resumed = Resumed {
            offset: "e:10".into(),
            failed: false,
        };
        let (_, _, deliver) = r.finish(Ok(resumed));
        assert_eq!(offsets(&deliver), ["f:1"]);
    }
}
