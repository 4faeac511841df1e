//! History in this process: lost when it restarts (the next push starts a
//! new epoch, so clients learn it with `resume-failed`).
//!
//! All users' logs together stay under a byte budget (`--history-bytes`):
//! `Push` creates history for any uid, so without one a caller pushing to
//! many users (connected or not) grows ws-api without limit. Past it, the
//! user pushed to least recently loses its whole log, counted; its next
//! push starts a new epoch, so a resume from the old one gets the honest
//! `resume-failed`.

use std::collections::{BTreeSet, HashMap, VecDeque};

use prost::Message;

use parking_lot::Mutex;

use super::devices::DeviceAcks;
use super::push_keys::{KeyLimits, PushKeys};
use super::seen::{DedupLimits, SeenIds};
use super::{Appended, Entry, Keyed, KeyedAppend, Log, Position, Retention, new_epoch, now_ms};
use crate::proto::wsgateway::Protocol;

#[derive(Debug)]
struct UserLog {
    epoch: String,
    head: u64,
    acked: Option<u64>,
    /// Its devices' acknowledged offsets, bounded by `--devices-per-user`.
    devices: DeviceAcks,
    entries: VecDeque<Entry>,
    last_push_ms: u64,
    /// Its place in [`Users::by_age`].
    age: u64,
    /// What its entries and devices cost, as [`cost`] and
    /// [`super::devices::device_cost`] count.
    bytes: usize,
}

impl UserLog {
    fn new(now: u64) -> UserLog {
        UserLog {
            epoch: new_epoch(),
            head: 0,
            acked: None,
            devices: DeviceAcks::default(),
            entries: VecDeque::new(),
            last_push_ms: now,
            age: 0,
            bytes: 0,
        }
    }
}

/// Every user's log, and what they cost together.
#[derive(Debug, Default)]
struct Users {
    logs: HashMap<u64, UserLog>,
    /// (age, uid): the user pushed to least recently first.
    by_age: BTreeSet<(u64, u64)>,
    next_age: u64,
    bytes: usize,
    evicted: u64,
}

impl Users {
    fn remove(&mut self, uid: u64) -> Option<UserLog> {
        let log = self.logs.remove(&uid)?;
        self.by_age.remove(&(log.age, uid));
        self.bytes -= log.bytes;
        Some(log)
    }
}

/// What an entry costs in memory: its message's encoded size and the
/// entry's own fields, near enough to size a budget.
fn cost(msg: &Protocol) -> usize {
    msg.encoded_len() + std::mem::size_of::<Entry>()
}

/// In-memory history, acknowledged positions, client message ids and
/// push idempotency keys.
#[derive(Debug)]
pub struct MemoryHistory {
    retention: Retention,
    /// The budget of all users' logs together, in bytes.
    budget: usize,
    users: Mutex<Users>,
    seen: Mutex<SeenIds>,
    /// Locked before `users` when both are (in [`Self::append_once`]).
    keys: Mutex<PushKeys>,
}

impl MemoryHistory {
    pub fn new(
        retention: Retention,
        dedup: DedupLimits,
        keys: KeyLimits,
        budget: usize,
    ) -> MemoryHistory {
        MemoryHistory {
            retention,
            budget,
            users: Mutex::default(),
            seen: Mutex::new(SeenIds::new(dedup)),
            keys: Mutex::new(PushKeys::new(keys)),
        }
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    fn expired(&self, log: &UserLog, now: u64) -> bool {
        log.last_push_ms + self.retention.ttl.as_millis() as u64 <= now
    }

    pub fn append(&self, uid: u64, msg: &Protocol) -> Appended {
        self.append_locked(&mut self.users.lock(), uid, msg, now_ms())
    }

    /// [`super::History::append_once`]: under the keys' lock and the
    /// users', so two pushes with one key cannot both append.
    pub fn append_once(&self, uid: u64, msg: &Protocol, key: &str) -> KeyedAppend {
        let now = now_ms();
        let mut keys = self.keys.lock();
        let mut users = self.users.lock();
        if let Some(position) = keys.get(uid, key, now) {
            let log = users
                .logs
                .get(&uid)
                .filter(|l| !self.expired(l, now) && l.epoch == position.epoch);
            // A key of a lost epoch is forgotten with it: appended again
            // below, it is remembered at its new position.
            if let Some(log) = log {
                let original = log
                    .entries
                    .front()
                    .and_then(|first| position.n.checked_sub(first.n))
                    .and_then(|i| log.entries.get(usize::try_from(i).ok()?))
                    .map(|e| e.msg.clone());
                return KeyedAppend {
                    outcome: Keyed::Duplicate {
                        position: position.clone(),
                        original,
                    },
                    keys_evicted: 0,
                };
            }
        }
        let appended = self.append_locked(&mut users, uid, msg, now);
        let keys_evicted = keys.remember(uid, key, appended.position.clone(), now);
        KeyedAppend {
            outcome: Keyed::New(appended),
            keys_evicted,
        }
    }

    fn append_locked(&self, users: &mut Users, uid: u64, msg: &Protocol, now: u64) -> Appended {
        let mut log = match users.remove(uid) {
            Some(log) if !self.expired(&log, now) => log,
            _ => UserLog::new(now),
        };
        log.head += 1;
        log.last_push_ms = now;
        log.bytes += cost(msg);
        log.entries.push_back(Entry {
            n: log.head,
            at_ms: now,
            msg: msg.clone(),
        });
        while log.entries.len() > self.retention.size
            || (log.bytes > self.budget && log.entries.len() > 1)
        {
            if let Some(old) = log.entries.pop_front() {
                log.bytes -= cost(&old.msg);
            }
        }
        // The least recently pushed users go first, never this one.
        while users.bytes + log.bytes > self.budget
            && let Some(&(_, oldest)) = users.by_age.first()
        {
            users.remove(oldest);
            users.evicted += 1;
        }
        let appended = Appended {
            position: Position {
                epoch: log.epoch.clone(),
                n: log.head,
            },
            acknowledged: log.acked.is_some() || !log.devices.is_empty(),
        };
        log.age = users.next_age;
        users.next_age += 1;
        users.by_age.insert((log.age, uid));
        users.bytes += log.bytes;
        users.logs.insert(uid, log);
        appended
    }

    pub fn log(&self, uid: u64) -> Option<Log> {
        let users = self.users.lock();
        let log = users
            .logs
            .get(&uid)
            .filter(|l| !self.expired(l, now_ms()))?;
        Some(Log {
            epoch: log.epoch.clone(),
            head: log.head,
            acked: log.acked,
            devices: log.devices.to_vec(),
            entries: log.entries.iter().cloned().collect(),
        })
    }

    /// Without copying the log: this runs on every Connect.
    pub fn behind(&self, uid: u64, device: Option<&str>) -> bool {
        let users = self.users.lock();
        let Some(log) = users.logs.get(&uid).filter(|l| !self.expired(l, now_ms())) else {
            return false;
        };
        let acked = match device {
            None => log.acked,
            Some(d) => log.devices.get(d),
        };
        acked.is_some_and(|a| a < log.head)
    }

    /// Returns whether a device was forgotten to make room for this one.
    pub fn ack(&self, uid: u64, device: Option<&str>, at: &Position) -> bool {
        let mut users = self.users.lock();
        let Some(log) = users.logs.get_mut(&uid) else {
            return false;
        };
        if log.epoch != at.epoch || at.n > log.head {
            return false;
        }
        let Some(device) = device else {
            log.acked = Some(log.acked.map_or(at.n, |a| a.max(at.n)));
            return false;
        };
        let done = log.devices.ack(device, at.n, self.retention.devices);
        let freed = done.evicted.as_ref().map_or(0, |(_, cost)| *cost);
        // Devices count against the byte budget with the entries; the next
        // append enforces it.
        log.bytes = log.bytes + done.grew - freed;
        users.bytes = users.bytes + done.grew - freed;
        done.evicted.is_some()
    }

    pub fn first_time(&self, uid: u64, id: &str) -> bool {
        self.seen.lock().first_time(uid, id, now_ms())
    }

    /// Drops expired users, ids and keys (called every few seconds);
    /// returns how many users' logs, ids and keys were evicted so far for
    /// want of room.
    pub fn sweep(&self) -> Evicted {
        let now = now_ms();
        let mut users = self.users.lock();
        let expired: Vec<u64> = users
            .logs
            .iter()
            .filter(|(_, log)| self.expired(log, now))
            .map(|(uid, _)| *uid)
            .collect();
        for uid in expired {
            users.remove(uid);
        }
        let logs = users.evicted;
        // Not both at once: `keys` is the one locked first (append_once).
        drop(users);
        let mut keys = self.keys.lock();
        keys.expire(now);
        let mut seen = self.seen.lock();
        seen.sweep(now);
        Evicted {
            logs,
            ids: seen.evicted(),
            keys: keys.evicted(),
        }
    }
}

/// What the ceilings took before its time, since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Users' logs dropped to keep history under its byte budget.
    pub logs: u64,
    /// Client message ids forgotten before the dedup window ended.
    pub ids: u64,
    /// Push idempotency keys forgotten before their window ended.
    pub keys: u64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn store(size: usize) -> MemoryHistory {
        budgeted(size, usize::MAX)
    }

    /// `size` messages per user, `budget` bytes in all.
    fn budgeted(size: usize, budget: usize) -> MemoryHistory {
        let retention = Retention {
            size,
            ttl: Duration::from_secs(300),
            devices: 2,
        };
        let dedup = DedupLimits {
            window: Duration::from_secs(60),
            per_user: 100,
            total: 1000,
        };
        let keys = KeyLimits {
            window: Duration::from_secs(60),
            max: 1000,
        };
        MemoryHistory::new(retention, dedup, keys, budget)
    }

    fn pushed(payload: &str) -> Protocol {
        Protocol {
            r#type: "news".into(),
            payload: payload.as_bytes().to_vec().into(),
            ..Protocol::default()
        }
    }

    fn new_at(k: KeyedAppend) -> Position {
        match k.outcome {
            Keyed::New(a) => a.position,
            other => panic!("expected an append, got {other:?}"),
        }
    }

    /// A key appends once; its duplicate answers the original position and
    /// message; another key or user appends.
    #[test]
    fn a_key_appends_once_and_its_duplicate_has_the_original() {
        let h = store(10);
        let first = new_at(h.append_once(7, &pushed("one"), "k1"));
        match h.append_once(7, &pushed("retry"), "k1").outcome {
            Keyed::Duplicate { position, original } => {
                assert_eq!(position, first);
                assert_eq!(original, Some(pushed("one")), "the original message");
            }
            other => panic!("expected a duplicate, got {other:?}"),
        }
        assert_eq!(new_at(h.append_once(7, &pushed("two"), "k2")).n, 2);
        assert_eq!(new_at(h.append_once(8, &pushed("one"), "k1")).n, 1);
        assert_eq!(h.log(7).map(|l| l.head), Some(2), "nothing appended twice");
    }

    /// The user's history lost (evicted under the budget): its keys go
    /// with it, and a retry appends in the new epoch.
    #[test]
    fn a_key_of_a_lost_epoch_is_forgotten() {
        let msg = pushed("x");
        let h = budgeted(10, 2 * cost(&msg));
        let first = new_at(h.append_once(1, &msg, "k"));
        h.append(2, &msg);
        h.append(2, &msg);
        assert!(h.log(1).is_none(), "user 1 evicted");
        let fresh = h.append(1, &msg).position;
        assert_ne!(fresh.epoch, first.epoch, "a new epoch");
        let again = new_at(h.append_once(1, &msg, "k"));
        assert_eq!((&again.epoch, again.n), (&fresh.epoch, 2));
        assert!(matches!(
            h.append_once(1, &msg, "k").outcome,
            Keyed::Duplicate { position, .. } if position == again
        ));
    }

    /// A duplicate of a message trimmed from the history still answers its
    /// position, without the message.
    #[test]
    fn a_trimmed_original_is_still_a_duplicate() {
        let h = store(2);
        let first = new_at(h.append_once(1, &pushed("one"), "k"));
        for _ in 0..3 {
            h.append(1, &pushed("more"));
        }
        assert!(matches!(
            h.append_once(1, &pushed("one"), "k").outcome,
            Keyed::Duplicate { position, original: None } if position == first
        ));
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
        h.ack(7, None, &at(&epoch, 2));
        h.ack(7, None, &at(&epoch, 1));
        h.ack(7, None, &at(&epoch, 9));
        h.ack(7, None, &at("other", 1));
        assert_eq!(h.log(7).and_then(|l| l.acked), Some(2));
        assert!(h.append(7, &p).acknowledged);
    }

    /// Each device's acks move its own position, not the user's or
    /// another device's; past the bound the least recent device goes.
    #[test]
    fn acks_are_kept_per_device_and_bounded() {
        let h = store(20);
        let p = Protocol::default();
        let epoch = h.append(7, &p).position.epoch;
        assert!(!h.append(8, &p).acknowledged);
        for _ in 0..9 {
            h.append(7, &p);
        }
        let at = |n| Position {
            epoch: epoch.clone(),
            n,
        };
        assert!(!h.ack(7, Some("a"), &at(10)));
        assert!(!h.ack(7, Some("b"), &at(4)));
        let log = h.log(7).unwrap();
        assert_eq!(log.acked, None, "the user's own is untouched");
        assert_eq!(
            (log.acked_by(Some("a")), log.acked_by(Some("b"))),
            (Some(10), Some(4))
        );
        assert!(!h.behind(7, Some("a")) && h.behind(7, Some("b")));
        assert!(!h.behind(7, None) && !h.behind(7, Some("c")));
        assert!(h.append(7, &p).acknowledged, "a device acknowledged");
        let before = h.users.lock().bytes;
        assert!(
            h.ack(7, Some("c"), &at(1)),
            "a third device: the bound is 2"
        );
        assert_eq!(h.users.lock().bytes, before, "one device for another");
        let log = h.log(7).unwrap();
        assert_eq!(
            log.acked_by(Some("a")),
            None,
            "a acknowledged least recently"
        );
        assert_eq!(log.acked_by(Some("b")), Some(4));
    }

    #[test]
    fn ids_are_new_once_per_user() {
        let h = store(10);
        assert!(h.first_time(7, "m-1"));
        assert!(!h.first_time(7, "m-1"));
        assert!(h.first_time(8, "m-1"));
    }

    /// Many users' logs past the budget: the least recently pushed go, the
    /// total stays under it, and an evicted user starts a new epoch.
    #[test]
    fn the_byte_budget_evicts_the_least_recently_pushed_users() {
        let msg = Protocol {
            payload: vec![7; 1000].into(),
            ..Protocol::default()
        };
        let budget = 50 * cost(&msg);
        let h = budgeted(100, budget);
        let first = h.append(0, &msg).position;
        for uid in 1..1000 {
            for _ in 0..10 {
                h.append(uid, &msg);
            }
            assert!(h.users.lock().bytes <= budget, "uid {uid}");
        }
        let users = h.users.lock();
        assert_eq!(users.logs.len(), 5, "the five most recent users");
        assert!(users.logs.contains_key(&999) && !users.logs.contains_key(&0));
        drop(users);
        assert_eq!(h.sweep().logs, 995);
        let again = h.append(0, &msg).position;
        assert_ne!(again.epoch, first.epoch, "a new epoch after eviction");
        assert_eq!(again.n, 1);
    }

    /// One user alone past the budget keeps its newest entries within it.
    #[test]
    fn one_user_past_the_budget_keeps_its_newest_entries() {
        let msg = Protocol::default();
        let h = budgeted(100, 3 * cost(&msg));
        for _ in 0..10 {
            h.append(1, &msg);
        }
        let log = h.log(1).unwrap();
        assert_eq!((log.head, log.entries.len()), (10, 3));
    }
}
