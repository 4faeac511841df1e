//! Each user's stream of pushed messages (docs/delivery.md): positions
//! `<epoch>:<n>`, the last `--history-size` messages for `--history-ttl`,
//! and the acknowledged positions: the user's, and each of its devices'
//! (docs/delivery.md, "Devices"). In memory by default; in Redis
//! with `--redis`, so any node can replay any user's history.
//!
//! Both stores answer a resume with the same rule ([`plan_replay`]), so the
//! two cannot disagree on what a position means.
//!
//! # Layout
//!
//! - this file: positions, retention and the replay rule both stores share.
//! - [`memory`]: the store in this process (the default).
//! - [`redis_log`]: the store in Redis (`--redis`), shared by every node.
//! - [`devices`]: per-device acknowledged positions with their bound, and which device each session is.
//! - [`seen`]: client message ids within the dedup window, with a ceiling.
//! - [`push_keys`]: idempotency keys of pushes: their rule, and the in-memory map with its window and ceiling.

mod devices;
mod memory;
mod push_keys;
mod redis_log;
mod seen;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use devices::{DeviceAck, SessionDevices};
pub use memory::{Evicted, MemoryHistory};
pub use push_keys::{KeyLimits, KeyTooLong, MAX_KEY_LEN, check_key};
pub use redis_log::RedisHistory;
pub use seen::DedupLimits;

pub use ws_proto::Position;

use crate::presence::PresenceError;
use crate::proto::wsgateway::Protocol;

/// One message of a user's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub n: u64,
    /// Unix ms when it was pushed.
    pub at_ms: u64,
    pub msg: Protocol,
}

/// What an append assigned.
#[derive(Debug)]
pub struct Appended {
    pub position: Position,
    /// The user, or one of its devices, has acknowledged in this epoch:
    /// only then are unacknowledged messages sent again.
    pub acknowledged: bool,
}

/// What a Push with an idempotency key did.
#[derive(Debug)]
pub enum Keyed {
    /// The key was new (within the window, in this epoch): appended.
    New(Appended),
    /// The key had been appended at `position`; nothing was appended.
    /// `original` is that message, while the history still keeps it.
    Duplicate {
        position: Position,
        original: Option<Protocol>,
    },
}

/// [`History::append_once`]'s answer.
#[derive(Debug)]
pub struct KeyedAppend {
    pub outcome: Keyed,
    /// Keys the in-memory ceiling forgot before their window to make room
    /// (always 0 in Redis, whose keys only expire).
    pub keys_evicted: u64,
}

/// A user's stream as a resume sees it.
#[derive(Debug, Default, Clone)]
pub struct Log {
    pub epoch: String,
    pub head: u64,
    /// The user's acknowledged offset (acks from sessions without a
    /// device id); after [`Log::for_device`], the device's.
    pub acked: Option<u64>,
    /// Each device's acknowledged offset.
    pub devices: Vec<DeviceAck>,
    /// Kept entries, oldest first.
    pub entries: Vec<Entry>,
}

impl Log {
    /// The acknowledged offset a session with `device` resumes after: the
    /// device's own (none if it never acknowledged: another device's acks
    /// say nothing of what this one has), or the user's without a device.
    pub fn acked_by(&self, device: Option<&str>) -> Option<u64> {
        match device {
            None => self.acked,
            Some(d) => self.devices.iter().find(|a| a.device == d).map(|a| a.n),
        }
    }

    /// The log as `device`'s session sees it: [`Log::acked`] is its own.
    pub fn for_device(mut self, device: Option<&str>) -> Log {
        self.acked = self.acked_by(device);
        self
    }
}

/// The answer to a resume.
#[derive(Debug, PartialEq)]
pub enum Replay {
    /// Every message after the position (of `epoch`), then `through`: the
    /// position of the last one, or the position itself when none was
    /// missed (empty when the user has no history at all).
    Messages {
        epoch: String,
        entries: Vec<Entry>,
        through: String,
    },
    /// Another epoch, older than the kept history, or beyond its end.
    Failed,
}

/// Retention and epochs of both stores.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Messages kept per user (0: no history, no positions).
    pub size: usize,
    /// How long a message is kept; a user with no push for this long
    /// loses the history and gets a new epoch.
    pub ttl: Duration,
    /// Devices whose acknowledged position is kept per user
    /// (`--devices-per-user`): past it the least recently acknowledging
    /// one is forgotten, counted.
    pub devices: usize,
}

/// One of the two stores.
#[derive(Debug)]
pub enum History {
    /// Both boxed (made once): the memory store's maps and locks, and the
    /// Redis store's scripts, would make the variants' sizes far apart.
    Memory(Box<MemoryHistory>),
    Redis(Box<RedisHistory>),
}

impl History {
    /// Appends `msg` to `uid`'s stream and returns its position.
    pub async fn append(&self, uid: u64, msg: &Protocol) -> Result<Appended, PresenceError> {
        match self {
            History::Memory(m) => Ok(m.append(uid, msg)),
            History::Redis(r) => r.append(uid, msg).await,
        }
    }

    /// Appends `msg` unless `key` (non-empty, checked by [`check_key`]) was
    /// appended for `uid` within the idempotency window and in the user's
    /// current epoch: the check, the append and remembering the key are
    /// one step (one lock in memory, one Lua script in Redis), so a Push
    /// that ran late, after its caller gave up, is found by the retry.
    pub async fn append_once(
        &self,
        uid: u64,
        msg: &Protocol,
        key: &str,
    ) -> Result<KeyedAppend, PresenceError> {
        match self {
            History::Memory(m) => Ok(m.append_once(uid, msg, key)),
            History::Redis(r) => r.append_once(uid, msg, key).await,
        }
    }

    /// The user's stream (what the resume rule needs).
    pub async fn log(&self, uid: u64) -> Result<Option<Log>, PresenceError> {
        match self {
            History::Memory(m) => Ok(m.log(uid)),
            History::Redis(r) => r.log(uid).await,
        }
    }

    /// Records a cumulative acknowledgement, the user's or (with a device
    /// id) the device's (ignored for another epoch or beyond the head).
    /// Returns whether a device of the user was forgotten to make room
    /// (`--devices-per-user`).
    pub async fn ack(
        &self,
        uid: u64,
        device: Option<&str>,
        at: &Position,
    ) -> Result<bool, PresenceError> {
        match self {
            History::Memory(m) => Ok(m.ack(uid, device, at)),
            History::Redis(r) => r.ack(uid, device, at).await,
        }
    }

    /// Whether the user (with a device id: the device) has acknowledged
    /// before and is behind now: a reconnect then resumes even without a
    /// position.
    pub async fn behind(&self, uid: u64, device: Option<&str>) -> Result<bool, PresenceError> {
        match self {
            History::Memory(m) => Ok(m.behind(uid, device)),
            History::Redis(r) => r.behind(uid, device).await,
        }
    }

    /// Whether `(uid, id)` is new within the dedup window (and records it).
    pub async fn first_time(&self, uid: u64, id: &str) -> Result<bool, PresenceError> {
        match self {
            History::Memory(m) => Ok(m.first_time(uid, id)),
            History::Redis(r) => r.first_time(uid, id).await,
        }
    }

    pub fn retention(&self) -> Retention {
        match self {
            History::Memory(m) => m.retention(),
            History::Redis(r) => r.retention(),
        }
    }

    /// What to replay after `since` (`None`: after the acknowledged
    /// position of `device`, or of the user without one).
    pub async fn replay(
        &self,
        uid: u64,
        since: Option<&Position>,
        device: Option<&str>,
    ) -> Result<Replay, PresenceError> {
        let log = self.log(uid).await?.map(|l| l.for_device(device));
        Ok(plan_replay(log, since, now_ms(), self.retention().ttl))
    }
}

/// The resume rule, for both stores: the messages after `since` (or after
/// the acknowledged position), if every one of them is still kept.
pub fn plan_replay(
    log: Option<Log>,
    since: Option<&Position>,
    now_ms: u64,
    ttl: Duration,
) -> Replay {
    let Some(log) = log else {
        // No history at all: a position from before is from a lost epoch.
        return match since {
            Some(_) => Replay::Failed,
            None => Replay::Messages {
                epoch: String::new(),
                entries: Vec::new(),
                through: String::new(),
            },
        };
    };
    let from = match since {
        Some(p) if p.epoch != log.epoch => return Replay::Failed,
        Some(p) => p.n,
        None => log.acked.unwrap_or(log.head),
    };
    if from > log.head {
        return Replay::Failed;
    }
    let oldest_kept = now_ms.saturating_sub(ttl.as_millis() as u64);
    let entries: Vec<Entry> = log
        .entries
        .into_iter()
        .filter(|e| e.n > from && e.n <= log.head && e.at_ms >= oldest_kept)
        .collect();
    let complete =
        entries.len() as u64 == log.head - from && entries.first().is_none_or(|e| e.n == from + 1);
    if !complete {
        return Replay::Failed;
    }
    Replay::Messages {
        through: format!("{}:{}", log.epoch, log.head),
        epoch: log.epoch,
        entries,
    }
}

/// A new epoch: lowercase base-36 of the time in µs and a random number,
/// so two nodes (or two lives of one node) never pick the same.
pub fn new_epoch() -> String {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let random = std::collections::hash_map::RandomState::new();
    let salt = std::hash::BuildHasher::hash_one(&random, us) % 1296;
    format!("{}{}", base36(us), base36(salt))
}

fn base36(mut v: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The Redis key that remembers where push idempotency key `key` of `uid`
/// was appended (`<epoch>:<n>`).
pub fn push_key(uid: u64, key: &str) -> String {
    format!("ws:push:{{{uid}}}:{key}")
}

/// The Redis key that marks client message `id` of `uid` as received.
pub fn dedup_key(uid: u64, id: &str) -> String {
    format!("ws:dedup:{{{uid}}}:{id}")
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);
    const NOW: u64 = 1_000_000_000;

    fn log(head: u64, kept: std::ops::RangeInclusive<u64>, acked: Option<u64>) -> Option<Log> {
        Some(Log {
            epoch: "e1".into(),
            head,
            acked,
            devices: Vec::new(),
            entries: kept
                .map(|n| Entry {
                    n,
                    at_ms: NOW,
                    msg: Protocol::default(),
                })
                .collect(),
        })
    }

    fn at(epoch: &str, n: u64) -> Position {
        Position {
            epoch: epoch.into(),
            n,
        }
    }

    fn replayed(r: Replay) -> (Vec<u64>, String) {
        match r {
            Replay::Messages {
                entries, through, ..
            } => (entries.iter().map(|e| e.n).collect(), through),
            Replay::Failed => panic!("failed"),
        }
    }

    #[test]
    fn replays_exactly_what_follows_the_position() {
        let r = plan_replay(log(10, 1..=10, None), Some(&at("e1", 7)), NOW, TTL);
        assert_eq!(replayed(r), (vec![8, 9, 10], "e1:10".into()));
        let r = plan_replay(log(10, 1..=10, None), Some(&at("e1", 10)), NOW, TTL);
        assert_eq!(replayed(r), (vec![], "e1:10".into()));
    }

    #[test]
    fn without_a_position_replays_after_the_ack() {
        let r = plan_replay(log(10, 1..=10, Some(8)), None, NOW, TTL);
        assert_eq!(replayed(r), (vec![9, 10], "e1:10".into()));
        let r = plan_replay(log(10, 1..=10, None), None, NOW, TTL);
        assert_eq!(replayed(r), (vec![], "e1:10".into()));
        let r = plan_replay(None, None, NOW, TTL);
        assert_eq!(replayed(r), (vec![], String::new()));
    }

    #[test]
    fn a_device_resumes_after_its_own_ack() {
        let mut two = log(10, 1..=10, Some(9)).unwrap();
        two.devices = vec![
            DeviceAck {
                device: "a".into(),
                n: 10,
            },
            DeviceAck {
                device: "b".into(),
                n: 4,
            },
        ];
        let as_seen = |d| Some(two.clone().for_device(d));
        let r = plan_replay(as_seen(Some("b")), None, NOW, TTL);
        assert_eq!(replayed(r).0, (5..=10).collect::<Vec<_>>());
        let r = plan_replay(as_seen(Some("a")), None, NOW, TTL);
        assert_eq!(replayed(r).0, Vec::<u64>::new());
        let r = plan_replay(as_seen(None), None, NOW, TTL);
        assert_eq!(replayed(r).0, vec![10], "the user's, without a device");
        // A device that never acknowledged has no position of its own.
        assert_eq!(two.acked_by(Some("c")), None);
    }

    #[test]
    fn fails_for_a_lost_trimmed_or_future_position() {
        for (log, since) in [
            (log(10, 1..=10, None), at("e0", 3)),
            (log(150, 51..=150, None), at("e1", 40)),
            (log(10, 1..=10, None), at("e1", 11)),
            (None, at("e1", 3)),
        ] {
            assert_eq!(plan_replay(log, Some(&since), NOW, TTL), Replay::Failed);
        }
        // Kept, but older than the TTL.
        let mut old = log(3, 1..=3, None).unwrap();
        old.entries[0].at_ms = NOW - TTL.as_millis() as u64 - 1;
        assert_eq!(
            plan_replay(Some(old), Some(&at("e1", 0)), NOW, TTL),
            Replay::Failed
        );
    }

    #[test]
    fn epochs_are_new_and_valid() {
        let (a, b) = (new_epoch(), new_epoch());
        assert_ne!(a, b);
        assert!(Position::parse(&format!("{a}:1")).is_some());
    }
}
