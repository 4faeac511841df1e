//! In-memory presence: which sessions each user has, and which user each
//! session belongs to. One lock per map is plenty for a reference backend.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use parking_lot::Mutex;

/// A session as ws-api knows it: the gateway core's identity and the sid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub server: String,
    pub sid: String,
}

#[derive(Debug, Default)]
struct Inner {
    by_uid: HashMap<u64, HashSet<SessionKey>>,
    by_session: HashMap<SessionKey, (u64, Instant)>,
    groups: HashMap<String, HashSet<SessionKey>>,
}

/// The presence store.
#[derive(Debug, Default)]
pub struct Presence {
    inner: Mutex<Inner>,
}

impl Presence {
    pub fn connect(&self, uid: u64, key: SessionKey) {
        let mut inner = self.inner.lock();
        inner.by_uid.entry(uid).or_default().insert(key.clone());
        inner.by_session.insert(key, (uid, Instant::now()));
    }

    pub fn disconnect(&self, key: &SessionKey) {
        let mut inner = self.inner.lock();
        let Some((uid, _)) = inner.by_session.remove(key) else {
            return;
        };
        inner.groups.retain(|_, members| {
            members.remove(key);
            !members.is_empty()
        });
        if let Some(set) = inner.by_uid.get_mut(&uid) {
            set.remove(key);
            if set.is_empty() {
                inner.by_uid.remove(&uid);
            }
        }
    }

    pub fn keep_alive(&self, key: &SessionKey) {
        if let Some(entry) = self.inner.lock().by_session.get_mut(key) {
            entry.1 = Instant::now();
        }
    }

    /// Records `key` as a member of `group` (or not); returns whether it changed.
    pub fn set_member(&self, group: &str, key: &SessionKey, member: bool) -> bool {
        let mut inner = self.inner.lock();
        if member {
            inner
                .groups
                .entry(group.to_owned())
                .or_default()
                .insert(key.clone())
        } else {
            let changed = inner.groups.get_mut(group).is_some_and(|m| m.remove(key));
            inner.groups.retain(|_, m| !m.is_empty());
            changed
        }
    }

    /// How many sessions are in `group`, as far as this node knows.
    pub fn group_size(&self, group: &str) -> usize {
        self.inner.lock().groups.get(group).map_or(0, HashSet::len)
    }

    /// How many sessions are online.
    pub fn online(&self) -> usize {
        self.inner.lock().by_session.len()
    }

    /// Every live session of `uid`.
    pub fn sessions(&self, uid: u64) -> Vec<SessionKey> {
        self.inner
            .lock()
            .by_uid
            .get(&uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The uid a token stands for: a decimal token is the uid itself, any other
/// token hashes (FNV-1a 64, top bit clear) to a stable uid.
pub fn uid_for_token(token: &[u8]) -> u64 {
    if let Some(uid) = std::str::from_utf8(token)
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
    {
        return uid;
    }
    let h = token.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h & (u64::MAX >> 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_uids() {
        assert_eq!(uid_for_token(b"42"), 42);
        assert_eq!(uid_for_token(b"abc"), uid_for_token(b"abc"));
        assert_ne!(uid_for_token(b"abc"), uid_for_token(b"abd"));
        assert!(uid_for_token(b"abc") < 1 << 63);
    }

    #[test]
    fn presence_tracks_sessions() {
        let p = Presence::default();
        let k = |sid: &str| SessionKey {
            server: "gw#0".into(),
            sid: sid.into(),
        };
        p.connect(7, k("a"));
        p.connect(7, k("b"));
        assert_eq!(p.sessions(7).len(), 2);
        p.disconnect(&k("a"));
        assert_eq!(p.sessions(7), vec![k("b")]);
        p.disconnect(&k("b"));
        assert!(p.sessions(7).is_empty());
    }
}
