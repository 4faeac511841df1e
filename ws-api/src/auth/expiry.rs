//! [`Expiry`]: a session whose token expires is closed when it does, with
//! 4401 "token expired", through the same `Close` control a Kick sends.
//!
//! Why close rather than refresh in place: the wire contract has no frame
//! for a new token, and a client that reconnects with a fresh token and
//! `X-Resume-Since` loses nothing (docs/delivery.md). One tokio timer per
//! session with an expiring token, cancelled by its Disconnect.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::task::AbortHandle;
use tracing::debug;

use crate::outbox::Outbox;
use crate::presence::SessionKey;
use crate::proto::wsapi::Close;
use crate::proto::wsapi::control::Op;

/// The close code a session gets when its token expires (the gateway's
/// code for a refused token).
pub const EXPIRED_CODE: u32 = 4401;
/// Its reason.
pub const EXPIRED_REASON: &str = "token expired";

/// The armed timers, by session.
#[derive(Debug, Default)]
pub struct Expiry {
    timers: Mutex<HashMap<SessionKey, AbortHandle>>,
}

impl Expiry {
    /// Closes `key` at `at` unless [`Expiry::disarm`] comes first; replaces
    /// a timer armed before for the same session.
    pub fn arm(self: &Arc<Self>, key: SessionKey, at: SystemTime, outbox: &Arc<Outbox>) {
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        let (expiry, outbox, k) = (Arc::clone(self), Arc::clone(outbox), key.clone());
        let task = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            expiry.timers.lock().remove(&k);
            debug!(server = %k.server, sid = %k.sid, "token expired: closing");
            outbox.stats.sessions_expired.fetch_add(1, Relaxed);
            let close = Op::Close(Close {
                code: EXPIRED_CODE,
                reason: EXPIRED_REASON.into(),
            });
            outbox.to_session(&k, None, Some(close), false).await;
        });
        if let Some(old) = self.timers.lock().insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    /// The session ended first: its timer goes.
    pub fn disarm(&self, key: &SessionKey) {
        if let Some(timer) = self.timers.lock().remove(key) {
            timer.abort();
        }
    }

    /// Timers armed (for tests and logs).
    pub fn armed(&self) -> usize {
        self.timers.lock().len()
    }
}
