//! Presence in Redis (`--redis`), shared by every ws-api node. The schema is
//! a contract (docs and tests read it):
//!
//! | key | type | content |
//! |---|---|---|
//! | `ws:user:<uid>` | HASH | field `<server> <sid>` → unix ms of last refresh; PEXPIRE `--presence-ttl`, refreshed on Connect and KeepAlive |
//! | `ws:server:<server>` | SET | `<uid> <sid>`: the sessions of one gateway core |
//! | `ws:alive:<server>` | STRING | set with PX `--server-ttl` while some node holds that core's stream |
//! | `ws:session:<server> <sid>` | STRING | the uid; same TTL as the user key |
//! | `ws:group:<group>` | SET | `<server> <sid>` members |
//! | `ws:groups:<server> <sid>` | SET | the groups of one session |
//! | `ws:marker` | STRING | a token no node expires: gone means Redis lost its data ([`crate::store_watch`]) |
//!
//! Writes of one operation go in one MULTI. The connection is a
//! [`ConnectionManager`], which reconnects after a Redis restart; commands
//! time out after [`RESPONSE_TIMEOUT`] so an RPC never hangs on Redis.
//! `online()` is O(gateway cores): SCAN `ws:server:*` plus one SCARD each.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Pipeline, RedisResult};

use super::SessionKey;
use super::keys;

/// How long one Redis command may take before the RPC gives up.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Entries in the (server, sid) → uid cache before it is cleared.
const UID_CACHE_MAX: usize = 100_000;

/// Redis presence.
pub struct RedisPresence {
    conn: ConnectionManager,
    presence_ttl_ms: u64,
    server_ttl: Duration,
    uids: Mutex<HashMap<SessionKey, u64>>,
    /// Sessions this node disconnected, kept for [`Self::author_of`]: the
    /// gateway's Disconnect (a unary call) can overtake the session's last
    /// messages (on the exchange stream), which must still name their uid.
    /// A (server, sid) is never reused, so the entry cannot turn stale.
    departed: Mutex<HashMap<SessionKey, u64>>,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("presence_ttl_ms", &self.presence_ttl_ms)
            .field("server_ttl", &self.server_ttl)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisPresence {
    /// Connects to `url` and checks it answers PING.
    pub async fn connect_to(
        url: &str,
        presence_ttl: Duration,
        server_ttl: Duration,
    ) -> RedisResult<RedisPresence> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // While Redis is down, fail RPCs fast (each failure starts a new
            // reconnect) instead of holding them through a long backoff.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut conn = ConnectionManager::new_with_config(client, config).await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(RedisPresence {
            conn,
            presence_ttl_ms: millis(presence_ttl),
            server_ttl,
            uids: Mutex::new(HashMap::new()),
            departed: Mutex::new(HashMap::new()),
        })
    }

    /// A handle on the connection (cheap: a multiplexed connection).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn server_ttl(&self) -> Duration {
        self.server_ttl
    }

    fn cache(&self, key: &SessionKey, uid: u64) {
        bounded_insert(&mut self.uids.lock(), key.clone(), uid);
    }

    /// The writes that (re)assert a live session.
    fn assert_session(&self, pipe: &mut Pipeline, uid: u64, key: &SessionKey) {
        let user = keys::user(uid);
        pipe.cmd("HSET")
            .arg(&user)
            .arg(key.field())
            .arg(now_ms())
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(&user)
            .arg(self.presence_ttl_ms)
            .ignore();
        pipe.cmd("SADD")
            .arg(keys::server(&key.server))
            .arg(format!("{uid} {}", key.sid))
            .ignore();
        pipe.cmd("SET")
            .arg(keys::session(key))
            .arg(uid)
            .arg("PX")
            .arg(self.presence_ttl_ms)
            .ignore();
    }

    pub async fn connect(&self, uid: u64, key: &SessionKey) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.assert_session(&mut pipe, uid, key);
        pipe.exec_async(&mut self.conn()).await?;
        self.cache(key, uid);
        Ok(())
    }

    /// KeepAlive re-asserts every key of the session, so a session whose keys
    /// expired, were swept, or were lost with Redis's data while it was in
    /// fact alive comes back; one Redis no longer knows is recorded as the
    /// gateway's `uid` (its user → session index included, which Push reads).
    /// A session this node disconnected stays gone: a KeepAlive that
    /// overtook its Disconnect must not bring it back.
    pub async fn keep_alive(&self, key: &SessionKey, quoted: u64) -> RedisResult<()> {
        if self.departed.lock().contains_key(key) {
            return Ok(());
        }
        let uid = match self.uid_of(key).await? {
            Some(uid) => uid,
            None => {
                self.cache(key, quoted);
                quoted
            }
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.assert_session(&mut pipe, uid, key);
        pipe.exec_async(&mut self.conn()).await
    }

    pub async fn disconnect(&self, key: &SessionKey, uid_hint: u64) -> RedisResult<()> {
        let mut conn = self.conn();
        let (stored, groups): (Option<u64>, Vec<String>) = redis::pipe()
            .cmd("GET")
            .arg(keys::session(key))
            .cmd("SMEMBERS")
            .arg(keys::groups(key))
            .query_async(&mut conn)
            .await?;
        let cached = self.uids.lock().remove(key);
        let uid = stored.or(cached).unwrap_or(uid_hint);
        bounded_insert(&mut self.departed.lock(), key.clone(), uid);
        let mut pipe = redis::pipe();
        pipe.atomic();
        remove_session(&mut pipe, uid, key, &groups);
        pipe.exec_async(&mut conn).await
    }

    pub async fn set_member(
        &self,
        group: &str,
        key: &SessionKey,
        member: bool,
    ) -> RedisResult<bool> {
        let op = if member { "SADD" } else { "SREM" };
        let (changed, _): (u64, u64) = redis::pipe()
            .atomic()
            .cmd(op)
            .arg(keys::group(group))
            .arg(key.field())
            .cmd(op)
            .arg(keys::groups(key))
            .arg(group)
            .query_async(&mut self.conn())
            .await?;
        Ok(changed > 0)
    }

    pub async fn group_size(&self, group: &str) -> RedisResult<usize> {
        redis::cmd("SCARD")
            .arg(keys::group(group))
            .query_async(&mut self.conn())
            .await
    }

    pub async fn online(&self) -> RedisResult<usize> {
        let servers = self.scan(keys::SERVER_PATTERN).await?;
        if servers.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for key in &servers {
            pipe.cmd("SCARD").arg(key);
        }
        let sizes: Vec<usize> = pipe.query_async(&mut self.conn()).await?;
        Ok(sizes.iter().sum())
    }

    pub async fn sessions(&self, uid: u64) -> RedisResult<Vec<SessionKey>> {
        let fields: Vec<String> = redis::cmd("HKEYS")
            .arg(keys::user(uid))
            .query_async(&mut self.conn())
            .await?;
        Ok(fields
            .iter()
            .filter_map(|f| SessionKey::parse_field(f))
            .collect())
    }

    /// The uid of a session: from the cache, else `ws:session:…`.
    pub async fn uid_of(&self, key: &SessionKey) -> RedisResult<Option<u64>> {
        if let Some(uid) = self.uids.lock().get(key) {
            return Ok(Some(*uid));
        }
        let uid: Option<u64> = redis::cmd("GET")
            .arg(keys::session(key))
            .query_async(&mut self.conn())
            .await?;
        if let Some(uid) = uid {
            self.cache(key, uid);
        }
        Ok(uid)
    }

    /// The uid of a session that sent a message: as [`Self::uid_of`], and
    /// also for a session this node has just disconnected.
    pub async fn author_of(&self, key: &SessionKey) -> RedisResult<Option<u64>> {
        if let Some(uid) = self.departed.lock().get(key) {
            return Ok(Some(*uid));
        }
        self.uid_of(key).await
    }

    /// Every key matching `pattern` (SCAN, so Redis is never blocked).
    pub async fn scan(&self, pattern: &str) -> RedisResult<Vec<String>> {
        let mut conn = self.conn();
        let mut found = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            found.extend(batch);
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }
}

/// Inserts into a cache that is cleared when it reaches [`UID_CACHE_MAX`].
fn bounded_insert(map: &mut HashMap<SessionKey, u64>, key: SessionKey, uid: u64) {
    if map.len() >= UID_CACHE_MAX {
        map.clear();
    }
    map.insert(key, uid);
}

/// The writes that remove one session and its group memberships.
pub(crate) fn remove_session(pipe: &mut Pipeline, uid: u64, key: &SessionKey, groups: &[String]) {
    let field = key.field();
    pipe.cmd("HDEL").arg(keys::user(uid)).arg(&field).ignore();
    pipe.cmd("SREM")
        .arg(keys::server(&key.server))
        .arg(format!("{uid} {}", key.sid))
        .ignore();
    for group in groups {
        pipe.cmd("SREM")
            .arg(keys::group(group))
            .arg(&field)
            .ignore();
    }
    pipe.cmd("DEL").arg(keys::groups(key)).ignore();
    pipe.cmd("DEL").arg(keys::session(key)).ignore();
}
