//! Downstream routing: a `Msg` from ws-api to the session its sid names.
//!
//! The sid says which core owns the session. A message for this core goes
//! straight into the session's send queue; one for another core crosses
//! over glommio's lock-free channel mesh (which happens only when ws-api
//! sends a session's message down another core's stream).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::channel_mesh::Senders;
use tracing::debug;

use crate::metrics::{Counters, Loss};
use crate::proto::wsapi::Msg;
use crate::sessions::{Outbound, QueueError, Sessions};
use crate::sid::{Instance, Sid, SidError};

/// Where downstream messages go on one core.
pub struct Router {
    core: usize,
    instance: Instance,
    sessions: Rc<Sessions>,
    counters: Arc<Counters>,
    mesh: RefCell<Option<Senders<Msg>>>,
}

impl Router {
    pub fn new(
        core: usize,
        instance: Instance,
        sessions: Rc<Sessions>,
        counters: Arc<Counters>,
    ) -> Self {
        Router {
            core,
            instance,
            sessions,
            counters,
            mesh: RefCell::new(None),
        }
    }

    pub fn set_mesh(&self, senders: Senders<Msg>) {
        self.mesh.replace(Some(senders));
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Routes one message; every message that cannot be delivered is counted.
    pub fn deliver(&self, msg: Msg) {
        let sid = match Sid::parse(&msg.sid, self.instance) {
            Ok(sid) => sid,
            Err(e) => {
                let loss = match e {
                    SidError::ForeignInstance => Loss::ForeignSid,
                    SidError::Malformed => Loss::UnknownSid,
                };
                self.counters.lose(loss, 1);
                debug!(sid = %msg.sid, error = %e, "downstream message dropped");
                return;
            }
        };
        if sid.core == self.core {
            return self.deliver_local(sid.slot, msg);
        }
        let sent = match &*self.mesh.borrow() {
            Some(mesh) if sid.core < mesh.nr_consumers() => mesh.try_send_to(sid.core, msg).is_ok(),
            _ => {
                self.counters.lose(Loss::UnknownSid, 1);
                return;
            }
        };
        if !sent {
            self.counters.lose(Loss::MeshFull, 1);
        }
    }

    /// Delivers a message whose session lives on this core.
    pub fn deliver_local(&self, slot: usize, msg: Msg) {
        let Some(session) = self.sessions.get(slot) else {
            self.counters.lose(Loss::UnknownSid, 1);
            debug!(sid = %msg.sid, "downstream message for an unknown sid");
            return;
        };
        let Some(payload) = msg.payload else {
            self.counters.lose(Loss::BadDownstream, 1);
            return;
        };
        match session.push(Outbound::Frame(payload)) {
            Ok(()) => {}
            Err(QueueError::Full) => self.counters.lose(Loss::SendQueueFull, 1),
            Err(QueueError::Closed) => self.counters.lose(Loss::UnknownSid, 1),
        }
    }

    /// Receives what other cores route to this one.
    pub async fn serve_mesh(
        self: Rc<Self>,
        mut receivers: glommio::channels::channel_mesh::Receivers<Msg>,
    ) {
        let tasks: Vec<_> = receivers
            .streams()
            .into_iter()
            .map(|(_, rx)| {
                let me = Rc::clone(&self);
                glommio::spawn_local(async move {
                    while let Some(msg) = rx.recv().await {
                        me.deliver(msg);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    }
}
