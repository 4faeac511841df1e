//! What a connection holds from the moment it takes a session slot: the
//! slot, then ws-api's admission (`Connect` gave a uid), then the per-user
//! count. One guard gives it all back, in reverse order, whichever way the
//! connection ends: a refusal half-way through the upgrade drops it (the
//! asynchronous steps then run on a task of their own), a session that
//! ends calls [`Claim::release`] and waits for them.

use std::rc::Rc;

use tracing::{Instrument, warn};

use crate::session::context::SessionContext;

/// A session slot and what was granted on top of it.
pub struct Claim {
    core: Rc<SessionContext>,
    slot: usize,
    sid: String,
    /// Set once ws-api admitted the client: it must hear `Disconnect`.
    uid: Option<u64>,
    /// The per-user count was taken (`--max-connections-per-user`).
    counted: bool,
}

impl Claim {
    pub fn new(core: Rc<SessionContext>, slot: usize, sid: String) -> Claim {
        Claim {
            core,
            slot,
            sid,
            uid: None,
            counted: false,
        }
    }

    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// ws-api admitted the client as `uid`.
    pub fn admitted(&mut self, uid: u64) {
        self.uid = Some(uid);
        self.core.sessions.admitted(self.slot, uid);
    }

    /// The per-user count was taken for the uid.
    pub fn counted(&mut self) {
        self.counted = true;
    }

    /// Gives everything back and waits until ws-api has heard `Disconnect`.
    pub async fn release(mut self) {
        let core = Rc::clone(&self.core);
        let (uid, counted) = (self.uid.take(), self.counted);
        let sid = std::mem::take(&mut self.sid);
        // Drop frees the slot (and, with the uid taken, spawns nothing).
        drop(self);
        if let Some(uid) = uid {
            undo(core, sid, uid, counted).await;
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.core.sessions.remove(self.slot);
        if let Some(uid) = self.uid.take() {
            let undo = undo(
                Rc::clone(&self.core),
                std::mem::take(&mut self.sid),
                uid,
                self.counted,
            );
            glommio::spawn_local(undo.in_current_span()).detach();
        }
    }
}

/// Releases the per-user count, then tells ws-api the session is gone.
async fn undo(core: Rc<SessionContext>, sid: String, uid: u64, counted: bool) {
    if counted {
        core.admission.release(uid).await;
    }
    if let Err(e) = core.upstream.disconnect(&sid, uid).await {
        core.counters.disconnect_failures.inc();
        warn!(error = %e, "Disconnect not delivered to ws-api");
    }
}
