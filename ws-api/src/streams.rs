//! [`Streams`]: each gateway core's [`Link`], keyed by the core's identity
//! (`x-gateway-ip`, equal to `Msg.server`), with the stream now attached to
//! it; and [`Stats`], the counters every part adds to.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use tracing::warn;

use crate::link::{Attached, Downstream, Link};

/// Links by gateway core identity.
#[derive(Debug)]
pub struct Streams {
    by_server: RwLock<HashMap<String, Arc<Link>>>,
    next_id: AtomicU64,
    /// How long a link outlives its core's last stream.
    hold: Duration,
}

impl Streams {
    /// Links are dropped once their core has been away for `hold`.
    pub fn new(hold: Duration) -> Streams {
        Streams {
            by_server: RwLock::default(),
            next_id: AtomicU64::new(0),
            hold,
        }
    }

    /// Attaches a stream to `server`'s link (replacing an older stream);
    /// returns the id to detach it with and what the link did.
    pub fn attach(
        &self,
        server: &str,
        tx: Downstream,
        gateway_epoch: &str,
        acks: bool,
    ) -> (u64, Attached) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let link = self.link(server);
        (id, link.attach(id, tx, gateway_epoch, acks))
    }

    fn link(&self, server: &str) -> Arc<Link> {
        if let Some(link) = self.by_server.read().get(server) {
            return Arc::clone(link);
        }
        let mut map = self.by_server.write();
        Arc::clone(map.entry(server.to_owned()).or_default())
    }

    /// The stream `id` of `server` ended.
    pub fn detach(&self, server: &str, id: u64) {
        if let Some(link) = self.by_server.read().get(server) {
            link.detach(id);
        }
    }

    /// Every gateway core's link, those away for less than the hold
    /// included; drops the others (what they kept is counted in `lost`).
    pub fn all(&self, lost: &AtomicU64) -> Vec<(String, Arc<Link>)> {
        let mut gone = Vec::new();
        let links: Vec<_> = self
            .by_server
            .read()
            .iter()
            .filter(|(server, link)| {
                let away = link.gone(self.hold);
                if away {
                    gone.push((*server).clone());
                }
                !away
            })
            .map(|(server, link)| (server.clone(), Arc::clone(link)))
            .collect();
        if !gone.is_empty() {
            let mut map = self.by_server.write();
            for server in gone {
                if let Some(link) = map.remove(&server) {
                    let kept = link.unacked();
                    if kept > 0 {
                        lost.fetch_add(kept as u64, Ordering::Relaxed);
                        warn!(%server, kept, "gateway core away past --server-ttl: dropped what ws-api kept for it");
                    }
                }
            }
        }
        links
    }

    /// The cores that have a stream now.
    pub fn attached(&self) -> Vec<String> {
        self.by_server
            .read()
            .iter()
            .filter(|(_, link)| link.attached())
            .map(|(server, _)| server.clone())
            .collect()
    }

    /// `server`'s link, unless it was never there or is gone.
    pub fn get(&self, server: &str) -> Option<Arc<Link>> {
        let link = self.by_server.read().get(server).map(Arc::clone)?;
        (!link.gone(self.hold)).then_some(link)
    }
}

/// Counts what the handlers did, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub upstream: AtomicU64,
    /// Upstream messages dropped as already received (a gateway's resend).
    pub duplicates: AtomicU64,
    pub downstream: AtomicU64,
    /// Messages the `redis-stream` handler appended.
    pub xadd: AtomicU64,
    /// Messages the `redis-stream` handler failed to append.
    pub xadd_errors: AtomicU64,
    /// Messages appended with uid 0 because presence did not know the session.
    pub unknown_uid: AtomicU64,
    /// Pushes given a position in their user's stream.
    pub positioned: AtomicU64,
    /// Messages sent again by resumes.
    pub replayed: AtomicU64,
    pub resume_failed: AtomicU64,
    /// Messages sent again for want of an acknowledgement.
    pub redelivered: AtomicU64,
    /// Users whose unacknowledged messages ran out of retries.
    pub redelivery_gave_up: AtomicU64,
    /// Cumulative acknowledgements from clients.
    pub client_acks: AtomicU64,
    /// Client messages with an id already received (not handled again).
    pub client_duplicates: AtomicU64,
    /// Downstream messages kept while their core had no stream.
    pub downstream_kept: AtomicU64,
    /// Downstream messages whose copy for a resend was forgotten: their
    /// core had 65,536 unacknowledged.
    pub downstream_unkept: AtomicU64,
    /// Downstream messages refused: no stream, nothing kept.
    pub downstream_refused: AtomicU64,
    /// Downstream messages written again on a core's next stream.
    pub downstream_resent: AtomicU64,
    /// Kept downstream messages dropped: their gateway restarted, or its
    /// core stayed away past `--server-ttl`.
    pub downstream_lost: AtomicU64,
    /// Downstream acknowledgements from gateway cores.
    pub downstream_acks: AtomicU64,
    /// Pushes whose idempotency key had been appended (answered with the
    /// original offset, not appended again).
    pub push_duplicates: AtomicU64,
    /// Push idempotency keys forgotten before their window, for want of
    /// room (`--idempotency-keys`, in-memory history): a retry with one is
    /// appended again.
    pub push_keys_evicted: AtomicU64,
    /// Streams asked to re-register their sessions (the store lost its data).
    pub reasserts: AtomicU64,
    /// Devices' acknowledged positions forgotten for room
    /// (`--devices-per-user`): that device's next reconnect without a
    /// position does not resume.
    pub devices_evicted: AtomicU64,
    /// Connects refused for their token (`--auth`), every reason.
    pub auth_refused: AtomicU64,
    /// Sessions closed because their token expired.
    pub sessions_expired: AtomicU64,
    /// ExchangeService calls refused for want of the gateway secret
    /// (`--gateway-secret-file`).
    pub gateways_refused: AtomicU64,
    /// The Redis presence store does not answer (`store_watch`).
    pub store_down: AtomicBool,
}
