//! Downstream routing: a `Msg` from ws-api to the session its sid names.
//!
//! The sid says which core owns the session. A message for this core goes
//! straight into the session's send queue; one for another core crosses
//! over glommio's lock-free channel mesh (which happens only when ws-api
//! sends a session's message down another core's stream).
//!
//! Group and broadcast messages (`group` set, or sid `*`) arrive once on
//! every core's stream; each core fans out to its own sessions only.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::channel_mesh::Senders;
use tracing::debug;

use crate::metrics::{Counters, Loss};
use crate::proto::wsapi::Msg;
use crate::proto::wsapi::control::Op;
use crate::proto::wsgateway::Protocol;
use crate::sessions::{Outbound, QueueError, SessionHandle, Sessions, SharedFrame};
use crate::sid::{Instance, Sid, SidError};
use crate::upstream::Downstream;

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

    /// Routes one message; every message that cannot be delivered is counted.
    pub fn deliver(&self, msg: Msg) {
        if msg.sid.is_empty() && !msg.group.is_empty() {
            let members = self.sessions.group(&msg.group);
            return self.fan_out(members, msg.payload);
        }
        if msg.sid == "*" {
            return self.fan_out(self.sessions.all(), msg.payload);
        }
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

    /// Delivers a message whose session lives on this core: its control
    /// first (close, join, leave), then its payload.
    pub fn deliver_local(&self, slot: usize, msg: Msg) {
        let Some(session) = self.sessions.get(slot) else {
            self.counters.lose(Loss::UnknownSid, 1);
            debug!(sid = %msg.sid, "downstream message for an unknown sid");
            return;
        };
        let op = msg.control.and_then(|c| c.op);
        let had_op = op.is_some();
        match op {
            Some(Op::Close(c)) => {
                self.counters.kicks.inc();
                self.queue(&session, Outbound::Close(close_code(c.code), c.reason));
            }
            Some(Op::Join(j)) => {
                self.sessions.join(slot, &j.group);
            }
            Some(Op::Leave(l)) => self.sessions.leave(slot, &l.group),
            Some(Op::Resumed(r)) => self.queue(&session, Outbound::Resumed(Some(r))),
            // Acknowledgements are for the stream (no sid); exchange takes
            // them. Resume goes upstream only.
            Some(Op::Ack(_) | Op::Resume(_)) | None => {}
        }
        match msg.payload {
            Some(payload) if msg.replay => self.queue(&session, Outbound::Replay(payload)),
            Some(payload) => self.queue(&session, Outbound::Frame(payload)),
            None if !had_op => self.counters.lose(Loss::BadDownstream, 1),
            None => {}
        }
    }

    /// One message to many sessions of this core, encoded once.
    fn fan_out(&self, targets: Vec<Rc<SessionHandle>>, payload: Option<Protocol>) {
        let Some(payload) = payload else {
            self.counters.lose(Loss::BadDownstream, 1);
            return;
        };
        let frame = SharedFrame::new(&payload);
        self.counters.fan_outs.inc();
        for session in &targets {
            self.queue(session, Outbound::Shared(Rc::clone(&frame)));
        }
    }

    fn queue(&self, session: &SessionHandle, out: Outbound) {
        match session.push(out) {
            Ok(()) => {}
            Err(QueueError::Full) => self.counters.lose(Loss::SendQueueFull, 1),
            Err(QueueError::Closed) => self.counters.lose(Loss::UnknownSid, 1),
        }
    }

    /// Receives what other cores route to this one.
    pub async fn serve_mesh(
        self: Rc<Self>,
        receivers: glommio::channels::channel_mesh::Receivers<Msg>,
    ) {
        crate::mesh::receive(receivers, move |msg| {
            let me = Rc::clone(&self);
            async move { me.deliver(msg) }
        })
        .await;
    }
}

impl Downstream for Router {
    fn deliver(&self, msg: Msg) {
        Router::deliver(self, msg);
    }
}

/// A close code a backend asked for, if a server may send it (RFC 6455 §7.4);
/// otherwise 1000.
fn close_code(code: u32) -> u16 {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => code as u16,
        _ => 1000,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_codes_a_server_may_send() {
        use super::close_code;
        assert_eq!(close_code(4001), 4001);
        assert_eq!(close_code(1008), 1008);
        for reserved in [0, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            assert_eq!(close_code(reserved), 1000, "{reserved}");
        }
    }
}
