//! Presence: which sessions each user has, which user each session belongs
//! to, and group membership. Two backends behind one async API:
//!
//! - [`Memory`]: the embedded store (default): one node, nothing shared.
//! - [`RedisPresence`] (`--redis`): shared by every ws-api node, so any node
//!   can push to any session; [`crate::sweeper`] keeps it free of dead
//!   gateway cores.
//!
//! Only the Redis backend can fail; its errors reach RPCs as
//! `Status::unavailable` through [`unavailable`].
//!
//! # Layout
//!
//! - this file: the API both stores answer, and the session key they share.
//! - [`memory`]: the embedded store.
//! - [`redis_store`]: the Redis store.
//! - [`keys`]: the Redis key names (the schema).

pub mod keys;
pub mod memory;
pub mod redis_store;

use tonic::Status;
use tracing::warn;

pub use memory::Memory;
pub use redis_store::RedisPresence;

/// What a presence operation can fail with (only the Redis backend fails).
pub type PresenceError = redis::RedisError;

/// A session as ws-api knows it: the gateway core's identity and the sid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub server: String,
    pub sid: String,
}

impl SessionKey {
    /// `<server> <sid>`: the field / member naming a session in Redis.
    pub fn field(&self) -> String {
        format!("{} {}", self.server, self.sid)
    }

    /// Parses [`SessionKey::field`] back. The sid is what follows the last
    /// space (sids never contain one; a server identity might).
    pub fn parse_field(field: &str) -> Option<SessionKey> {
        let (server, sid) = field.rsplit_once(' ')?;
        (!server.is_empty() && !sid.is_empty()).then(|| SessionKey {
            server: server.to_owned(),
            sid: sid.to_owned(),
        })
    }
}

/// Parses a `ws:server:<server>` member, `<uid> <sid>`.
pub fn parse_member(member: &str) -> Option<(u64, &str)> {
    let (uid, sid) = member.split_once(' ')?;
    let uid = uid.parse().ok()?;
    (!sid.is_empty() && !sid.contains(' ')).then_some((uid, sid))
}

/// The presence store, one of two backends.
#[derive(Debug)]
pub enum Presence {
    Memory(Memory),
    Redis(RedisPresence),
}

impl Default for Presence {
    fn default() -> Self {
        Presence::Memory(Memory::default())
    }
}

impl Presence {
    pub async fn connect(&self, uid: u64, key: SessionKey) -> Result<(), PresenceError> {
        match self {
            Presence::Memory(m) => {
                m.connect(uid, key);
                Ok(())
            }
            Presence::Redis(r) => r.connect(uid, &key).await,
        }
    }

    /// Forgets a session; `uid_hint` is the uid the gateway quotes, used when
    /// the store no longer knows the session's uid.
    pub async fn disconnect(&self, key: &SessionKey, uid_hint: u64) -> Result<(), PresenceError> {
        match self {
            Presence::Memory(m) => {
                m.disconnect(key);
                Ok(())
            }
            Presence::Redis(r) => r.disconnect(key, uid_hint).await,
        }
    }

    /// Refreshes a live session; one the store does not know (it lost its
    /// data: Redis restarted empty, or this ws-api restarted) is recorded
    /// again as `uid`'s, the uid the gateway quotes, so Push finds it.
    pub async fn keep_alive(&self, key: &SessionKey, uid: u64) -> Result<(), PresenceError> {
        match self {
            Presence::Memory(m) => {
                m.keep_alive(key, uid);
                Ok(())
            }
            Presence::Redis(r) => r.keep_alive(key, uid).await,
        }
    }

    /// Records `key` as a member of `group` (or not); returns whether it changed.
    pub async fn set_member(
        &self,
        group: &str,
        key: &SessionKey,
        member: bool,
    ) -> Result<bool, PresenceError> {
        match self {
            Presence::Memory(m) => Ok(m.set_member(group, key, member)),
            Presence::Redis(r) => r.set_member(group, key, member).await,
        }
    }

    /// How many sessions are in `group`.
    pub async fn group_size(&self, group: &str) -> Result<usize, PresenceError> {
        match self {
            Presence::Memory(m) => Ok(m.group_size(group)),
            Presence::Redis(r) => r.group_size(group).await,
        }
    }

    /// How many sessions are online.
    pub async fn online(&self) -> Result<usize, PresenceError> {
        match self {
            Presence::Memory(m) => Ok(m.online()),
            Presence::Redis(r) => r.online().await,
        }
    }

    /// Every live session of `uid`.
    pub async fn sessions(&self, uid: u64) -> Result<Vec<SessionKey>, PresenceError> {
        match self {
            Presence::Memory(m) => Ok(m.sessions(uid)),
            Presence::Redis(r) => r.sessions(uid).await,
        }
    }

    /// The uid of a session that sent a message: also for one this node has
    /// just disconnected (its Disconnect can overtake its last messages).
    pub async fn author_of(&self, key: &SessionKey) -> Result<Option<u64>, PresenceError> {
        match self {
            Presence::Memory(m) => Ok(m.uid_of(key)),
            Presence::Redis(r) => r.author_of(key).await,
        }
    }

    /// The uid of a live session, if the store knows it.
    pub async fn uid_of(&self, key: &SessionKey) -> Result<Option<u64>, PresenceError> {
        match self {
            Presence::Memory(m) => Ok(m.uid_of(key)),
            Presence::Redis(r) => r.uid_of(key).await,
        }
    }
}

/// Maps a presence failure in RPC `op` to UNAVAILABLE, logging it at warn.
pub fn unavailable(op: &str, err: &PresenceError) -> Status {
    warn!(op, error = %err, "presence store failed");
    Status::unavailable(format!(
        "presence store (redis) unavailable during {op}: {err}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_fields_round_trip() {
        let k = SessionKey {
            server: "127.0.0.1:8080#1".into(),
            sid: "9f3a-1-42".into(),
        };
        assert_eq!(k.field(), "127.0.0.1:8080#1 9f3a-1-42");
        assert_eq!(SessionKey::parse_field(&k.field()), Some(k));
        let odd = SessionKey::parse_field("gw with space s1");
        assert_eq!(
            odd.map(|k| (k.server, k.sid)),
            Some(("gw with space".into(), "s1".into()))
        );
        for bad in ["", "nospace", " sid", "server ", " "] {
            assert_eq!(SessionKey::parse_field(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn server_members_parse() {
        assert_eq!(parse_member("42 abc-0-1"), Some((42, "abc-0-1")));
        assert_eq!(
            parse_member("18446744073709551615 s"),
            Some((u64::MAX, "s"))
        );
        for bad in ["", "42", "x s", "42 ", "-1 s", "42 a b"] {
            assert_eq!(parse_member(bad), None, "{bad:?}");
        }
    }
}
