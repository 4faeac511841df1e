//! Idempotency keys of pushes (`BizMsg.idempotencyKey`, docs/delivery.md
//! "Push that can be retried"): the rule both stores share for a key, and
//! the in-memory store's map of `(uid, key)` → the position it was
//! appended at.
//!
//! The map keeps a key for `--idempotency-window` from its append, and at
//! most `--idempotency-keys` keys in all: past the ceiling the oldest key is
//! forgotten before its window ends, and counted (a retry with it would be
//! appended again). Keys are at most [`MAX_KEY_LEN`] bytes, so the ceiling
//! bounds memory: about 330 bytes a key with 128-byte keys, ≈ 33 MB at the
//! default 100,000 (a map entry, the key, the epoch and a queue entry).
//! Redis keeps its keys itself, one string each with PX the window
//! (`history::redis_log`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::Position;

/// The longest idempotency key accepted, in bytes (UTF-8).
pub const MAX_KEY_LEN: usize = 128;

/// A key longer than [`MAX_KEY_LEN`]: the Push is refused as
/// `INVALID_ARGUMENT` with this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTooLong {
    pub len: usize,
}

impl std::fmt::Display for KeyTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "idempotencyKey is {} bytes, at most {MAX_KEY_LEN} are accepted",
            self.len
        )
    }
}

impl std::error::Error for KeyTooLong {}

/// Whether `key` may be used as an idempotency key (empty: no key, valid).
pub fn check_key(key: &str) -> Result<(), KeyTooLong> {
    if key.len() > MAX_KEY_LEN {
        return Err(KeyTooLong { len: key.len() });
    }
    Ok(())
}

/// How long keys are kept, and how many in memory.
#[derive(Debug, Clone, Copy)]
pub struct KeyLimits {
    pub window: Duration,
    pub max: usize,
}

#[derive(Debug)]
struct Remembered {
    position: Position,
    /// Which entry of [`PushKeys::order`] is this one's: an entry replaced
    /// (its epoch was lost, the key appended again) leaves a stale one.
    seq: u64,
}

/// In-memory keys, oldest first in `order`.
#[derive(Debug)]
pub struct PushKeys {
    limits: KeyLimits,
    map: HashMap<(u64, Arc<str>), Remembered>,
    /// (appended at ms, seq, uid, key), in the order they were remembered:
    /// the front expires or is evicted first.
    order: VecDeque<(u64, u64, u64, Arc<str>)>,
    next_seq: u64,
    evicted: u64,
}

impl PushKeys {
    pub fn new(limits: KeyLimits) -> PushKeys {
        PushKeys {
            limits,
            map: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            evicted: 0,
        }
    }

    /// Where `(uid, key)` was appended, if within the window.
    pub fn get(&mut self, uid: u64, key: &str, now_ms: u64) -> Option<&Position> {
        self.expire(now_ms);
        self.map.get(&(uid, Arc::from(key))).map(|r| &r.position)
    }

    /// Records `(uid, key)` at `position` (replacing what it had); returns
    /// how many keys the ceiling evicted for it.
    pub fn remember(&mut self, uid: u64, key: &str, position: Position, now_ms: u64) -> u64 {
        self.expire(now_ms);
        let key: Arc<str> = Arc::from(key);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map
            .insert((uid, Arc::clone(&key)), Remembered { position, seq });
        self.order.push_back((now_ms, seq, uid, key));
        let before = self.evicted;
        // Stale entries count against the queue's bound too (twice the
        // ceiling), so the queue cannot grow past it either.
        while self.map.len() > self.limits.max.max(1)
            || self.order.len() > 2 * self.limits.max.max(1)
        {
            if self.pop_front() {
                self.evicted += 1;
            }
        }
        self.evicted - before
    }

    /// Drops the front entry; whether it was a live key.
    fn pop_front(&mut self) -> bool {
        let Some((_, seq, uid, key)) = self.order.pop_front() else {
            return false;
        };
        let slot = (uid, key);
        if self.map.get(&slot).is_some_and(|r| r.seq == seq) {
            self.map.remove(&slot);
            return true;
        }
        false
    }

    /// Forgets keys past their window.
    pub fn expire(&mut self, now_ms: u64) {
        let window = self.limits.window.as_millis() as u64;
        while self
            .order
            .front()
            .is_some_and(|(at, ..)| at.saturating_add(window) <= now_ms)
        {
            self.pop_front();
        }
    }

    /// Keys forgotten before their window ended, for want of room.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(window_ms: u64, max: usize) -> PushKeys {
        PushKeys::new(KeyLimits {
            window: Duration::from_millis(window_ms),
            max,
        })
    }

    fn at(n: u64) -> Position {
        Position {
            epoch: "e1".into(),
            n,
        }
    }

    #[test]
    fn keys_up_to_the_limit_are_accepted() {
        assert_eq!(check_key(""), Ok(()));
        assert_eq!(check_key(&"k".repeat(MAX_KEY_LEN)), Ok(()));
        let long = "é".repeat(65); // 130 bytes, 65 characters
        let err = check_key(&long).expect_err("too long");
        assert_eq!(err, KeyTooLong { len: 130 });
        assert_eq!(
            err.to_string(),
            "idempotencyKey is 130 bytes, at most 128 are accepted"
        );
    }

    #[test]
    fn a_key_is_known_within_its_window_per_user() {
        let mut k = keys(1000, 10);
        assert_eq!(k.get(1, "a", 0), None);
        assert_eq!(k.remember(1, "a", at(5), 0), 0);
        assert_eq!(k.get(1, "a", 999), Some(&at(5)));
        assert_eq!(k.get(2, "a", 999), None, "another user's key");
        assert_eq!(k.get(1, "b", 999), None, "another key");
        assert_eq!(k.get(1, "a", 1000), None, "past the window");
        assert!(k.map.is_empty());
        assert_eq!(k.evicted(), 0, "expiry is not eviction");
    }

    #[test]
    fn past_the_ceiling_the_oldest_key_goes_counted() {
        let mut k = keys(60_000, 3);
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            assert_eq!(k.remember(1, key, at(i as u64 + 1), i as u64), 0);
        }
        assert_eq!(k.remember(2, "d", at(1), 10), 1);
        assert_eq!((k.map.len(), k.evicted()), (3, 1));
        assert_eq!(k.get(1, "a", 11), None, "the oldest was evicted");
        assert_eq!(k.get(1, "b", 11), Some(&at(2)));
        assert_eq!(k.get(2, "d", 11), Some(&at(1)));
    }

    /// A key remembered again (its epoch was lost) leaves a stale queue
    /// entry: it neither evicts the new one nor counts, and the queue stays
    /// within twice the ceiling.
    #[test]
    fn a_replaced_key_keeps_its_new_position() {
        let mut k = keys(60_000, 4);
        k.remember(1, "a", at(1), 0);
        for n in 2..100 {
            let evicted = k.remember(1, "a", at(n), n);
            assert_eq!(evicted, 0, "n {n}");
            assert!(k.order.len() <= 8);
        }
        assert_eq!(k.get(1, "a", 100), Some(&at(99)));
        assert_eq!((k.map.len(), k.evicted()), (1, 0));
    }

    #[test]
    fn a_flood_of_unique_keys_stays_under_the_ceiling() {
        let mut k = keys(60_000, 100);
        let mut evicted = 0;
        for n in 0..10_000u64 {
            evicted += k.remember(n % 13, &format!("key-{n}"), at(n), n / 10);
        }
        assert_eq!(k.map.len(), 100);
        assert_eq!((evicted, k.evicted()), (9_900, 9_900));
        assert!(k.order.len() <= 200);
        assert_eq!(k.get(0, "key-0", 2_000), None);
        k.expire(10_000_000);
        assert_eq!((k.map.len(), k.order.len()), (0, 0));
    }
}
