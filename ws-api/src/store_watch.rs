//! Watches the Redis presence store from this node, every [`CHECK_EVERY`]:
//! whether it answers (the `grpc.health.v1.Health` status this node
//! serves), and whether it still holds its data (else every gateway core
//! is asked to re-register its sessions).
//!
//! Health: while Redis does not answer within [`CHECK_TIMEOUT`] (down,
//! SIGSTOPped, partitioned) every Connect fails UNAVAILABLE, so this node
//! reports NOT_SERVING for the whole server (`""`) and for
//! `wsapi.ExchangeService`; the gateway's `/readyz` reads it. It turns
//! SERVING again at the first check that succeeds: no client traffic needed.
//!
//! Data loss: the store holds a marker key ([`keys::MARKER`]) that no node
//! expires or deletes. Each check sets it if missing (SET NX, with a token
//! never offered before, so every node converges on the one that won) and
//! reads it. A marker that is gone, or carries
//! another token than this node last read, means the data this node saw is
//! gone (Redis restarted without persistence, FLUSHALL, a failover to a
//! replica that did not have it): this node marks the cores whose streams it
//! holds alive again (so no sweep purges them before their sessions are
//! back), and sends `Control.Reassert` down each of those streams. The
//! gateway then re-registers each live session with KeepAlive, which records
//! a session the store no longer knows ([`crate::presence`]).
//!
//! A marker rather than Redis's `run_id` (INFO): a restart that reloads its
//! data (RDB/AOF) or a failover to an up-to-date replica changes `run_id`
//! with nothing lost, and would make every gateway re-register every
//! session for nothing; FLUSHALL loses everything and keeps `run_id`. The
//! marker changes exactly when the data is gone, and needs nothing but
//! GET/SET (it also works through proxies that refuse INFO). Group
//! memberships (`ws:group:*`) are not restored: KeepAlive carries no groups,
//! so group sizes (PushGroup's count) restart from the next JoinGroup;
//! group delivery does not read them (each gateway core keeps its own
//! members).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::RedisResult;
use tokio::time::MissedTickBehavior;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::outbox::Outbox;
use crate::presence::keys;
use crate::presence::{Presence, RedisPresence};
use crate::proto::wsapi::control::Op;
use crate::proto::wsapi::exchange_service_server;
use crate::proto::wsapi::{Control, Msg, Reassert};

/// How often the store is checked: the bound on noticing it down, back, or
/// emptied (plus the gateway's own poll of the health status).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A check not answered within this counts as the store being down (a
/// SIGSTOPped Redis holds the connection open and answers nothing).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The services whose status follows the store: the whole server and the
/// one that needs presence.
const SERVICES: [&str; 2] = ["", exchange_service_server::SERVICE_NAME];

impl RedisPresence {
    /// Sets the marker to `mine` if it is missing; returns the marker's token.
    pub async fn marker(&self, mine: &str) -> RedisResult<String> {
        let (_, token): (Option<String>, String) = redis::pipe()
            .cmd("SET")
            .arg(keys::MARKER)
            .arg(mine)
            .arg("NX")
            .cmd("GET")
            .arg(keys::MARKER)
            .query_async(&mut self.conn())
            .await?;
        Ok(token)
    }
}

/// What one node knows of the store between checks.
#[derive(Debug, Default)]
pub struct Watch {
    /// The marker's token at the last check that read it.
    seen: Option<String>,
    /// The status last reported.
    serving: Option<bool>,
}

impl Watch {
    /// Takes the marker read at a check; whether the store lost its data
    /// since the one before (never at the first: nothing was seen yet).
    pub fn lost_data(&mut self, token: String) -> bool {
        let lost = self.seen.as_ref().is_some_and(|seen| *seen != token);
        self.seen = Some(token);
        lost
    }

    /// Takes a check's outcome; `Some(status)` when it changed.
    pub fn serving(&mut self, up: bool) -> Option<bool> {
        (self.serving.replace(up) != Some(up)).then_some(up)
    }
}

/// Starts the watch of `outbox`'s presence store; nothing to watch in memory
/// (the health status then stays SERVING).
pub fn spawn(outbox: Arc<Outbox>, health: HealthReporter) {
    if !matches!(outbox.presence, Presence::Redis(_)) {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut watch = Watch::default();
        loop {
            tick.tick().await;
            let Presence::Redis(redis) = &outbox.presence else {
                return;
            };
            let checked = tokio::time::timeout(CHECK_TIMEOUT, redis.marker(&fresh_token())).await;
            let token = match checked {
                Ok(Ok(token)) => Some(token),
                Ok(Err(err)) => {
                    warn!(error = %err, "presence store check failed");
                    None
                }
                Err(_) => None,
            };
            if let Some(up) = watch.serving(token.is_some()) {
                outbox.stats.store_down.store(!up, Relaxed);
                report(&health, up).await;
            }
            if let Some(token) = token
                && watch.lost_data(token)
            {
                ask_reassert(&outbox, redis).await;
            }
        }
    });
}

/// A token no check has offered before: one this node offered earlier
/// would, set again after a loss, look like nothing changed.
fn fresh_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

async fn report(health: &HealthReporter, up: bool) {
    let status = if up {
        info!("presence store (redis) answers: health SERVING");
        ServingStatus::Serving
    } else {
        warn!("presence store (redis) unreachable: health NOT_SERVING");
        ServingStatus::NotServing
    };
    for service in SERVICES {
        health.set_service_status(service, status).await;
    }
}

/// Marks the cores of this node's streams alive and asks each to
/// re-register its sessions.
async fn ask_reassert(outbox: &Outbox, redis: &RedisPresence) {
    // Cores without a stream now re-register when it comes back.
    let servers = outbox.streams.attached();
    if let Err(err) = redis.mark_alive(&servers).await {
        warn!(error = %err, "cannot mark gateway cores alive after the store lost its data");
    }
    let mut asked = 0u64;
    for server in servers {
        let msg = Msg {
            server,
            control: Some(Control {
                op: Some(Op::Reassert(Reassert {})),
            }),
            ..Msg::default()
        };
        asked += u64::from(outbox.to_core(msg).await);
    }
    outbox.stats.reasserts.fetch_add(asked, Relaxed);
    warn!(
        cores = asked,
        "presence store lost its data (marker gone): gateway cores asked to re-register their sessions"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_or_new_marker_is_data_lost_but_the_first_is_not() {
        let mut w = Watch::default();
        assert!(!w.lost_data("a".into()), "first check: nothing seen before");
        assert!(!w.lost_data("a".into()));
        assert!(w.lost_data("b".into()), "another node set it again");
        assert!(!w.lost_data("b".into()));
    }

    #[test]
    fn health_is_reported_when_it_changes() {
        let mut w = Watch::default();
        assert_eq!(w.serving(true), Some(true), "the first check reports");
        assert_eq!(w.serving(true), None);
        assert_eq!(w.serving(false), Some(false));
        assert_eq!(w.serving(false), None);
        assert_eq!(w.serving(true), Some(true));
    }
}
