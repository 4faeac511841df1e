//! The embedded presence store: every map in this process, behind one
//! parking_lot lock. The default, and what one ws-api node needs; nothing in
//! it outlives the process or is shared with other nodes.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use parking_lot::Mutex;

use super::SessionKey;

#[derive(Debug, Default)]
struct Inner {
    by_uid: HashMap<u64, HashSet<SessionKey>>,
    by_session: HashMap<SessionKey, (u64, Instant)>,
    groups: HashMap<String, HashSet<SessionKey>>,
}

impl Inner {
    fn remove(&mut self, key: &SessionKey) {
        let Some((uid, _)) = self.by_session.remove(key) else {
            return;
        };
        self.groups.retain(|_, members| {
            members.remove(key);
            !members.is_empty()
        });
        if let Some(set) = self.by_uid.get_mut(&uid) {
            set.remove(key);
            if set.is_empty() {
                self.by_uid.remove(&uid);
            }
        }
    }
}

/// In-memory presence.
#[derive(Debug, Default)]
pub struct Memory {
    inner: Mutex<Inner>,
}

impl Memory {
    pub fn connect(&self, uid: u64, key: SessionKey) {
        let mut inner = self.inner.lock();
        inner.by_uid.entry(uid).or_default().insert(key.clone());
        inner.by_session.insert(key, (uid, Instant::now()));
    }

    pub fn disconnect(&self, key: &SessionKey) {
        self.inner.lock().remove(key);
    }

    /// The gateway cores (`SessionKey::server`) that hold sessions.
    pub fn servers(&self) -> HashSet<String> {
        let inner = self.inner.lock();
        inner.by_session.keys().map(|k| k.server.clone()).collect()
    }

    /// Removes every session of gateway core `server`; returns how many.
    pub fn purge(&self, server: &str) -> usize {
        let mut inner = self.inner.lock();
        let keys: Vec<SessionKey> = inner
            .by_session
            .keys()
            .filter(|k| k.server == server)
            .cloned()
            .collect();
        for key in &keys {
            inner.remove(key);
        }
        keys.len()
    }

    /// Refreshes a session, or records it as `uid`'s if it is unknown
    /// (this ws-api restarted while the gateway kept the session).
    pub fn keep_alive(&self, key: &SessionKey, uid: u64) {
        if let Some(entry) = self.inner.lock().by_session.get_mut(key) {
            entry.1 = Instant::now();
            return;
        }
        self.connect(uid, key.clone());
    }

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

    pub fn group_size(&self, group: &str) -> usize {
        self.inner.lock().groups.get(group).map_or(0, HashSet::len)
    }

    pub fn online(&self) -> usize {
        self.inner.lock().by_session.len()
    }

    pub fn sessions(&self, uid: u64) -> Vec<SessionKey> {
        self.inner
            .lock()
            .by_uid
            .get(&uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn uid_of(&self, key: &SessionKey) -> Option<u64> {
        self.inner.lock().by_session.get(key).map(|(uid, _)| *uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_tracks_sessions() {
        let p = Memory::default();
        let k = |sid: &str| SessionKey {
            server: "gw#0".into(),
            sid: sid.into(),
        };
        p.connect(7, k("a"));
        p.connect(7, k("b"));
        assert_eq!(p.sessions(7).len(), 2);
        assert_eq!(p.uid_of(&k("a")), Some(7));
        p.disconnect(&k("a"));
        assert_eq!(p.sessions(7), vec![k("b")]);
        assert_eq!(p.uid_of(&k("a")), None);
        p.disconnect(&k("b"));
        assert!(p.sessions(7).is_empty());
    }

    /// After a restart the store knows nothing: KeepAlive brings a session
    /// back under the uid the gateway quotes, and only refreshes a known one.
    #[test]
    fn keep_alive_records_an_unknown_session_again() {
        let p = Memory::default();
        let k = SessionKey {
            server: "gw#0".into(),
            sid: "a".into(),
        };
        p.keep_alive(&k, 9);
        assert_eq!(p.sessions(9), vec![k.clone()]);
        assert_eq!(p.uid_of(&k), Some(9));
        p.keep_alive(&k, 10);
        assert_eq!(p.uid_of(&k), Some(9), "a known session keeps its uid");
        assert_eq!(p.online(), 1);
    }
}
