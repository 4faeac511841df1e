//! Client message ids seen within the dedup window, with a ceiling: at most
//! `per_user` ids per user and `total` in all; past either, the user's
//! oldest id (for the total: the user's who holds the oldest entry) is
//! evicted and counted. An id is kept as a 64-bit hash (keyed per process),
//! so its length costs nothing: a client that sends unique 60 KB ids as
//! fast as it can costs at most the ceiling (≈ 60 bytes an id) instead of
//! growing ws-api without limit, and what it loses is deduplication of its
//! own oldest ids. Two ids of one user that hash alike (odds ≈ n²/2⁶⁵ for
//! n ids) would drop the second as a duplicate.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How long ids are remembered, and how many.
#[derive(Debug, Clone, Copy)]
pub struct DedupLimits {
    pub window: Duration,
    pub per_user: usize,
    pub total: usize,
}

/// One user's ids, oldest first.
#[derive(Debug, Default)]
struct UserIds {
    /// (id hash, first seen ms), oldest first.
    order: VecDeque<(u64, u64)>,
    at: HashMap<u64, u64>,
}

impl UserIds {
    /// Drops the user's oldest id; whether there was one.
    fn evict_oldest(&mut self) -> bool {
        while let Some((id, at)) = self.order.pop_front() {
            // An id seen again after its window is queued again: only its
            // latest entry is live.
            if self.at.get(&id) == Some(&at) {
                self.at.remove(&id);
                return true;
            }
        }
        false
    }
}

/// The ids of every user.
#[derive(Debug)]
pub struct SeenIds {
    limits: DedupLimits,
    hasher: RandomState,
    users: HashMap<u64, UserIds>,
    /// Users in the order their ids were recorded, one entry per id: the
    /// front is the user holding the oldest id.
    order: VecDeque<u64>,
    live: usize,
    evicted: AtomicU64,
}

impl SeenIds {
    pub fn new(limits: DedupLimits) -> SeenIds {
        SeenIds {
            limits,
            hasher: RandomState::new(),
            users: HashMap::new(),
            order: VecDeque::new(),
            live: 0,
            evicted: AtomicU64::new(0),
        }
    }

    /// Whether `(uid, id)` is new within the window; records it.
    pub fn first_time(&mut self, uid: u64, id: &str, now_ms: u64) -> bool {
        let window = self.limits.window.as_millis() as u64;
        let id = self.hasher.hash_one(id);
        let user = self.users.entry(uid).or_default();
        let known = user.at.get(&id).copied();
        if known.is_some_and(|at| at + window > now_ms) {
            return false;
        }
        if known.is_none() {
            self.live += 1;
        }
        user.at.insert(id, now_ms);
        user.order.push_back((id, now_ms));
        self.order.push_back(uid);
        if user.at.len() > self.limits.per_user && user.evict_oldest() {
            self.live -= 1;
            self.evicted.fetch_add(1, Relaxed);
        }
        while self.live > self.limits.total {
            self.evict_globally_oldest();
        }
        // Entries of ids evicted per user stay in `order` until they reach
        // its front; past twice the ceiling they are dropped from it.
        while self.order.len() > 2 * self.limits.total.max(1) {
            self.evict_globally_oldest();
        }
        true
    }

    fn evict_globally_oldest(&mut self) {
        let Some(uid) = self.order.pop_front() else {
            return;
        };
        if let Some(user) = self.users.get_mut(&uid)
            && user.evict_oldest()
        {
            self.live -= 1;
            self.evicted.fetch_add(1, Relaxed);
            if user.at.is_empty() {
                self.users.remove(&uid);
            }
        }
    }

    /// Forgets ids older than the window.
    pub fn sweep(&mut self, now_ms: u64) {
        let window = self.limits.window.as_millis() as u64;
        self.users.retain(|_, user| {
            user.at.retain(|_, at| *at + window > now_ms);
            user.order.retain(|(id, at)| user.at.get(id) == Some(at));
            !user.at.is_empty()
        });
        self.live = self.users.values().map(|u| u.at.len()).sum();
        let users = &self.users;
        self.order.retain(|uid| users.contains_key(uid));
    }

    /// Ids dropped before their window ended, for want of room.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(per_user: usize, total: usize) -> SeenIds {
        SeenIds::new(DedupLimits {
            window: Duration::from_secs(60),
            per_user,
            total,
        })
    }

    #[test]
    fn duplicates_within_the_window_are_caught() {
        let mut s = ids(10, 100);
        assert!(s.first_time(1, "a", 0));
        assert!(!s.first_time(1, "a", 59_999));
        assert!(s.first_time(2, "a", 1), "another user's id");
        assert!(s.first_time(1, "a", 60_000), "after the window");
        assert_eq!((s.live, s.evicted()), (2, 0));
    }

    #[test]
    fn a_user_past_its_ceiling_loses_its_oldest_ids_counted() {
        let mut s = ids(3, 100);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(s.first_time(1, id, i as u64));
        }
        assert_eq!((s.live, s.evicted()), (3, 1));
        assert!(s.first_time(1, "a", 10), "a was evicted");
        assert!(!s.first_time(1, "d", 10));
    }

    #[test]
    fn the_total_ceiling_evicts_the_oldest_of_any_user() {
        let mut s = ids(100, 4);
        for uid in 0..10u64 {
            assert!(s.first_time(uid, "x", uid));
        }
        assert_eq!((s.live, s.evicted()), (4, 6));
        assert!(!s.first_time(9, "x", 20), "the newest kept");
        assert!(s.first_time(0, "x", 20), "the oldest evicted");
    }

    /// One attacker with unique ids: memory stays at the ceiling, the queue
    /// of evicted entries included.
    #[test]
    fn a_flood_of_unique_ids_stays_under_the_ceiling() {
        let mut s = ids(50, 200);
        for n in 0..100_000u64 {
            s.first_time(n % 7, &format!("id-{n}"), n / 100);
        }
        assert!(s.live <= 200);
        assert!(s.order.len() <= 400, "{}", s.order.len());
        assert!(s.users.values().all(|u| u.order.len() <= 51 + 400));
        s.sweep(10_000_000);
        assert_eq!((s.live, s.users.len(), s.order.len()), (0, 0, 0));
    }
}
