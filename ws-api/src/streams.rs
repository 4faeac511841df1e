//! The open `ExchangeMsg` streams, one per gateway core, keyed by the core's
//! identity (`x-gateway-ip`, equal to `Msg.server`), and [`Stats`], the
//! counters every part adds to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tokio::sync::mpsc;
use tonic::Status;

use crate::proto::wsapi::Msg;

/// Downstream messages a stream may hold before senders wait.
pub const STREAM_QUEUE: usize = 64 * 1024;

pub type Downstream = mpsc::Sender<Result<Msg, Status>>;

#[derive(Debug, Clone)]
struct Registered {
    id: u64,
    tx: Downstream,
}

/// Streams by gateway core identity.
#[derive(Debug, Default)]
pub struct Streams {
    by_server: RwLock<HashMap<String, Registered>>,
    next_id: AtomicU64,
}

impl Streams {
    /// Registers a stream (replacing an older one of the same identity);
    /// returns the id to unregister it with.
    pub fn register(&self, server: &str, tx: Downstream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.by_server
            .write()
            .insert(server.to_owned(), Registered { id, tx });
        id
    }

    /// Removes the stream if it is still the one registered under `server`.
    pub fn unregister(&self, server: &str, id: u64) {
        let mut map = self.by_server.write();
        if map.get(server).is_some_and(|r| r.id == id) {
            map.remove(server);
        }
    }

    /// Every registered stream, one per gateway core.
    pub fn all(&self) -> Vec<(String, Downstream)> {
        self.by_server
            .read()
            .iter()
            .map(|(k, r)| (k.clone(), r.tx.clone()))
            .collect()
    }

    pub fn get(&self, server: &str) -> Option<Downstream> {
        self.by_server.read().get(server).map(|r| r.tx.clone())
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
    /// Streams asked to re-register their sessions (the store lost its data).
    pub reasserts: AtomicU64,
}
