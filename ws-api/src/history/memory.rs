//! History in this process: lost when it restarts (the next push starts a
//! new epoch, so clients learn it with `resume-failed`).

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use super::seen::{DedupLimits, SeenIds};
use super::{Appended, Entry, Log, Position, Retention, new_epoch, now_ms};
use crate::proto::wsgateway::Protocol;

#[derive(Debug)]
struct UserLog {
    epoch: String,
    head: u64,
    acked: Option<u64>,
    entries: VecDeque<Entry>,
    last_push_ms: u64,
}

/// In-memory history, acknowledged positions and client message ids.
#[derive(Debug)]
pub struct MemoryHistory {
    retention: Retention,
    users: Mutex<HashMap<u64, UserLog>>,
    seen: Mutex<SeenIds>,
}

impl MemoryHistory {
    pub fn new(retention: Retention, dedup: DedupLimits) -> MemoryHistory {
        MemoryHistory {
            retention,
            users: Mutex::default(),
            seen: Mutex::new(SeenIds::new(dedup)),
        }
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    fn expired(&self, log: &UserLog, now: u64) -> bool {
        log.last_push_ms + self.retention.ttl.as_millis() as u64 <= now
    }

    pub fn append(&self, uid: u64, msg: &Protocol) -> Appended {
        let now = now_ms();
        let mut users = self.users.lock();
        let log = users.entry(uid).or_insert_with(|| UserLog {
            epoch: new_epoch(),
            head: 0,
            acked: None,
            entries: VecDeque::new(),
            last_push_ms: now,
        });
        if self.expired(log, now) {
            *log = UserLog {
                epoch: new_epoch(),
                head: 0,
                acked: None,
                entries: VecDeque::new(),
                last_push_ms: now,
            };
        }
        log.head += 1;
        log.last_push_ms = now;
        log.entries.push_back(Entry {
            n: log.head,
            at_ms: now,
            msg: msg.clone(),
        });
        while log.entries.len() > self.retention.size {
            log.entries.pop_front();
        }
        Appended {
            position: Position {
                epoch: log.epoch.clone(),
                n: log.head,
            },
            acked: log.acked,
        }
    }

    pub fn log(&self, uid: u64) -> Option<Log> {
        let users = self.users.lock();
        let log = users.get(&uid).filter(|l| !self.expired(l, now_ms()))?;
        Some(Log {
            epoch: log.epoch.clone(),
            head: log.head,
            acked: log.acked,
            entries: log.entries.iter().cloned().collect(),
        })
    }

    /// Without copying the log: this runs on every Connect.
    pub fn behind(&self, uid: u64) -> bool {
        let users = self.users.lock();
        users
            .get(&uid)
            .filter(|l| !self.expired(l, now_ms()))
            .is_some_and(|l| l.acked.is_some_and(|a| a < l.head))
    }

    pub fn ack(&self, uid: u64, at: &Position) {
        let mut users = self.users.lock();
        if let Some(log) = users.get_mut(&uid)
            && log.epoch == at.epoch
            && at.n <= log.head
        {
            log.acked = Some(log.acked.map_or(at.n, |a| a.max(at.n)));
        }
    }

    pub fn first_time(&self, uid: u64, id: &str) -> bool {
        self.seen.lock().first_time(uid, id, now_ms())
    }

    /// Drops expired users and ids (called every few seconds); returns the
    /// ids evicted so far for want of room.
    pub fn sweep(&self) -> u64 {
        let now = now_ms();
        self.users.lock().retain(|_, log| !self.expired(log, now));
        let mut seen = self.seen.lock();
        seen.sweep(now);
        seen.evicted()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn store(size: usize) -> MemoryHistory {
        let retention = Retention {
            size,
            ttl: Duration::from_secs(300),
        };
        let dedup = DedupLimits {
            window: Duration::from_secs(60),
            per_user: 100,
            total: 1000,
        };
        MemoryHistory::new(retention, dedup)
    }

    #[test]
    fn positions_are_consecutive_per_user_and_trimmed() {
        let h = store(3);
        let p = Protocol::default();
        let first = h.append(7, &p).position;
        assert_eq!(first.n, 1);
        for _ in 0..4 {
            h.append(7, &p);
        }
        assert_eq!(h.append(8, &p).position.n, 1, "another user's stream");
        let log = h.log(7).expect("kept");
        assert_eq!((log.epoch, log.head), (first.epoch, 5));
        assert_eq!(
            log.entries.iter().map(|e| e.n).collect::<Vec<_>>(),
            [3, 4, 5]
        );
    }

    #[test]
    fn acks_only_move_forward_within_the_epoch() {
        let h = store(10);
        let p = Protocol::default();
        let epoch = h.append(7, &p).position.epoch;
        h.append(7, &p);
        let at = |epoch: &str, n| Position {
            epoch: epoch.into(),
            n,
        };
        h.ack(7, &at(&epoch, 2));
        h.ack(7, &at(&epoch, 1));
        h.ack(7, &at(&epoch, 9));
        h.ack(7, &at("other", 1));
        assert_eq!(h.log(7).and_then(|l| l.acked), Some(2));
        assert_eq!(h.append(7, &p).acked, Some(2));
    }

    #[test]
    fn ids_are_new_once_per_user() {
        let h = store(10);
        assert!(h.first_time(7, "m-1"));
        assert!(!h.first_time(7, "m-1"));
        assert!(h.first_time(8, "m-1"));
    }
}
