//! Liveness of gateway cores, and the sweep that removes the presence of
//! dead ones.
//!
//! In memory (one node): a gateway core whose `ExchangeMsg` stream has been
//! gone for `--server-ttl` (the gateway crashed or was killed and sent no
//! Disconnects) loses its sessions; a stream that comes back within it
//! keeps them.
//!
//! In Redis:
//! Every node refreshes `ws:alive:<server>` (PX `--server-ttl`) every third
//! of server-ttl for each `ExchangeMsg` stream it holds, and once as soon as
//! a stream registers. Every node sweeps every server-ttl: a `ws:server:*`
//! set whose alive key is gone (no node has held that core's stream for a
//! server-ttl: the gateway crashed, or that core is gone) is purged, session
//! by session, with its group memberships. So presence of a crashed gateway
//! is gone within about 2×server-ttl; the user keys' TTL is the backstop.
//!
//! Purging removes the members it read (SREM, not DEL), so a session that a
//! revived core connects meanwhile is kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::RedisResult;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::outbox::Outbox;
use crate::presence::keys;
use crate::presence::redis_store::remove_session;
use crate::presence::{Presence, RedisPresence, SessionKey, parse_member};

/// Sessions purged per MULTI.
const PURGE_CHUNK: usize = 500;

impl RedisPresence {
    /// Sets the alive key of each of `servers`.
    pub async fn mark_alive(&self, servers: &[String]) -> RedisResult<()> {
        if servers.is_empty() {
            return Ok(());
        }
        let ttl = u64::try_from(self.server_ttl().as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        for server in servers {
            pipe.cmd("SET")
                .arg(keys::alive(server))
                .arg(1)
                .arg("PX")
                .arg(ttl.max(1))
                .ignore();
        }
        pipe.exec_async(&mut self.conn()).await
    }

    /// Purges every gateway core without an alive key, except those whose
    /// stream this node holds (`local`); returns the sessions purged.
    pub async fn sweep(&self, local: &HashSet<String>) -> RedisResult<usize> {
        let servers: Vec<String> = self
            .scan(keys::SERVER_PATTERN)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(keys::SERVER_PREFIX).map(str::to_owned))
            .filter(|s| !local.contains(s))
            .collect();
        if servers.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for server in &servers {
            pipe.cmd("EXISTS").arg(keys::alive(server));
        }
        let alive: Vec<bool> = pipe.query_async(&mut self.conn()).await?;
        let mut purged = 0;
        for (server, alive) in servers.iter().zip(alive) {
            if !alive {
                let n = self.purge(server).await?;
                info!(%server, sessions = n, "purged presence of a dead gateway core");
                purged += n;
            }
        }
        Ok(purged)
    }

    /// Removes every session of `server`; returns how many.
    async fn purge(&self, server: &str) -> RedisResult<usize> {
        let mut conn = self.conn();
        let server_key = keys::server(server);
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&server_key)
            .query_async(&mut conn)
            .await?;
        for chunk in members.chunks(PURGE_CHUNK) {
            let sessions: Vec<(u64, SessionKey)> = chunk
                .iter()
                .filter_map(|m| parse_member(m))
                .map(|(uid, sid)| {
                    let key = SessionKey {
                        server: server.to_owned(),
                        sid: sid.to_owned(),
                    };
                    (uid, key)
                })
                .collect();
            let mut reads = redis::pipe();
            for (_, key) in &sessions {
                reads.cmd("SMEMBERS").arg(keys::groups(key));
            }
            let groups: Vec<Vec<String>> = if sessions.is_empty() {
                Vec::new()
            } else {
                reads.query_async(&mut conn).await?
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            for ((uid, key), groups) in sessions.iter().zip(&groups) {
                remove_session(&mut pipe, *uid, key, groups);
            }
            // Members that do not parse are dropped as they are.
            pipe.cmd("SREM").arg(&server_key).arg(chunk).ignore();
            pipe.exec_async(&mut conn).await?;
        }
        Ok(members.len())
    }
}

/// Starts the sweeper of `outbox`'s presence (and in Redis the alive
/// refresher); the cores it refreshes and spares are those of its streams.
pub fn spawn(outbox: Arc<Outbox>, server_ttl: Duration) {
    let redis = match &outbox.presence {
        Presence::Memory(_) => return spawn_memory(outbox, server_ttl),
        Presence::Redis(redis) => redis,
    };
    let ttl = redis.server_ttl().max(Duration::from_millis(30));
    let refresher = Arc::clone(&outbox);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl / 3);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Presence::Redis(redis) = &refresher.presence else {
                return;
            };
            let servers = refresher.streams.attached();
            if let Err(err) = redis.mark_alive(&servers).await {
                warn!(error = %err, "cannot refresh gateway liveness in redis");
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ttl);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Presence::Redis(redis) = &outbox.presence else {
                return;
            };
            let local: HashSet<String> = outbox.streams.attached().into_iter().collect();
            if let Err(err) = redis.sweep(&local).await {
                warn!(error = %err, "presence sweep failed");
            }
        }
    });
}

/// Every half server-ttl: purges the in-memory sessions of each gateway
/// core that has had no stream for a whole server-ttl.
fn spawn_memory(outbox: Arc<Outbox>, ttl: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval((ttl / 2).max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut absent: HashMap<String, Instant> = HashMap::new();
        loop {
            tick.tick().await;
            let Presence::Memory(memory) = &outbox.presence else {
                return;
            };
            let live: HashSet<String> = outbox.streams.attached().into_iter().collect();
            let servers = memory.servers();
            absent.retain(|s, _| servers.contains(s) && !live.contains(s));
            let now = Instant::now();
            for server in servers.difference(&live) {
                let since = *absent.entry(server.clone()).or_insert(now);
                if now.duration_since(since) >= ttl {
                    let n = memory.purge(server);
                    absent.remove(server);
                    info!(%server, sessions = n, "purged presence of a gateway core gone for --server-ttl");
                }
            }
        }
    });
}
