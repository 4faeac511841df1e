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

use crate::codec::sid::{Instance, Sid, SidError};
use crate::metrics::{Counters, Loss};
use crate::proto::wsapi::Msg;
use crate::proto::wsapi::control::Op;
use crate::proto::wsgateway::Protocol;
use crate::routing::sessions::{Outbound, QueueError, SessionHandle, Sessions, SharedFrame};
use crate::upstream::Downstream;
use crate::upstream::reassert::{LiveSession, LiveSessions};

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
            // Reassert is for the stream too (no sid).
            Some(Op::Ack(_) | Op::Resume(_) | Op::Reassert(_)) | None => {}
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
        crate::routing::mesh::receive(receivers, move |msg| {
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

impl LiveSessions for Router {
    fn live_sessions(&self) -> Vec<LiveSession> {
        let (instance, core) = (self.instance, self.core);
        self.sessions
            .admitted_sessions()
            .into_iter()
            .map(|(slot, uid)| LiveSession {
                slot,
                sid: Sid {
                    instance,
                    core,
                    slot,
                }
                .to_string(),
                uid,
            })
            .collect()
    }

    fn is_live(&self, slot: usize) -> bool {
        self.sessions.get(slot).is_some()
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
    //! Routing on one core: sessions are handles in the core's table, and
    //! what the router queues for them is read off their queues.

    use std::rc::Rc;
    use std::sync::Arc;

    use bytes::Bytes;
    use glommio::channels::local_channel::LocalReceiver;

    use super::{Router, close_code};
    use crate::codec;
    use crate::codec::sid::{Instance, Sid};
    use crate::metrics::{Counters, Loss};
    use crate::proto::wsapi::control::Op;
    use crate::proto::wsapi::{Close, Control, Join, Leave, Msg};
    use crate::proto::wsgateway::Protocol;
    use crate::routing::sessions::{Outbound, SessionHandle, Sessions};
    use crate::testing::{run, soon};

    fn instance() -> Instance {
        Instance::new("test:0", 1)
    }

    /// The router of core 0 (of one), its table and its counters.
    fn router() -> Router {
        let counters = Arc::new(Counters::default());
        Router::new(0, instance(), Rc::new(Sessions::default()), counters)
    }

    struct Client {
        sid: String,
        slot: usize,
        handle: Rc<SessionHandle>,
        rx: LocalReceiver<Outbound>,
    }

    /// A session in the router's table with a queue of `queue`.
    fn session(router: &Router, queue: usize) -> Client {
        let (handle, rx) = SessionHandle::new(queue, 0, Arc::clone(&router.counters));
        let slot = router.sessions.insert(Rc::clone(&handle)).unwrap();
        let sid = Sid {
            instance: instance(),
            core: 0,
            slot,
        }
        .to_string();
        Client {
            sid,
            slot,
            handle,
            rx,
        }
    }

    fn payload(kind: &str) -> Protocol {
        Protocol {
            r#type: kind.into(),
            payload: Bytes::from_static(b"{}"),
            ..Protocol::default()
        }
    }

    fn to_sid(sid: &str, kind: &str) -> Msg {
        Msg {
            sid: sid.into(),
            payload: Some(payload(kind)),
            ..Msg::default()
        }
    }

    fn control(sid: &str, op: Op) -> Msg {
        Msg {
            sid: sid.into(),
            control: Some(Control { op: Some(op) }),
            ..Msg::default()
        }
    }

    async fn next(client: &Client) -> Outbound {
        soon("a queued message", client.rx.recv())
            .await
            .expect("the queue is open")
    }

    /// A queued frame's type, and how it was queued.
    fn kind(out: &Outbound) -> String {
        match out {
            Outbound::Frame(p) => p.r#type.clone(),
            Outbound::Replay(p) => format!("replay {}", p.r#type),
            Outbound::Shared(f) => {
                format!("shared {}", codec::decode_json(&f.json).unwrap().r#type)
            }
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn a_sid_of_this_core_reaches_its_session_only() {
        run(async {
            let router = router();
            let (a, b) = (session(&router, 16), session(&router, 16));
            router.deliver(to_sid(&a.sid, "hello"));
            router.deliver(Msg {
                replay: true,
                ..to_sid(&a.sid, "missed")
            });
            assert_eq!(kind(&next(&a).await), "hello");
            assert_eq!(kind(&next(&a).await), "replay missed");
            assert_eq!(b.handle.queued(), 0);
            for loss in [Loss::UnknownSid, Loss::ForeignSid, Loss::BadDownstream] {
                assert_eq!(router.counters.lost(loss), 0, "{loss:?}");
            }
        });
    }

    /// What cannot be delivered is counted under why, and reaches no one.
    #[test]
    fn undeliverable_messages_are_counted_by_reason() {
        run(async {
            let router = router();
            let live = session(&router, 1);
            let gone = session(&router, 16);
            router.sessions.remove(gone.slot);
            let foreign = Sid {
                instance: Instance::new("other:0", 1),
                core: 0,
                slot: live.slot,
            };
            let other_core = Sid {
                instance: instance(),
                core: 1,
                slot: live.slot,
            };

            router.deliver(to_sid("not-a-sid", "x"));
            router.deliver(to_sid(&gone.sid, "x"));
            // Another core's session, and no mesh to reach it by.
            router.deliver(to_sid(&other_core.to_string(), "x"));
            assert_eq!(router.counters.lost(Loss::UnknownSid), 3);
            router.deliver(to_sid(&foreign.to_string(), "x"));
            assert_eq!(router.counters.lost(Loss::ForeignSid), 1);
            router.deliver(Msg {
                sid: live.sid.clone(),
                ..Msg::default()
            });
            assert_eq!(router.counters.lost(Loss::BadDownstream), 1);
            assert_eq!(live.handle.queued(), 0);

            // A queue of one, not being written (stalled): the second is lost.
            live.handle.set_stalled(true);
            router.deliver(to_sid(&live.sid, "first"));
            router.deliver(to_sid(&live.sid, "second"));
            assert_eq!(router.counters.lost(Loss::SendQueueFull), 1);
            assert_eq!(kind(&next(&live).await), "first");
        });
    }

    /// Joins and leaves come down as control messages; a group message
    /// reaches the members on this core, encoded once; `*` reaches everyone.
    #[test]
    fn groups_and_broadcasts_fan_out_to_their_sessions() {
        run(async {
            let router = router();
            let (a, b, c) = (
                session(&router, 16),
                session(&router, 16),
                session(&router, 16),
            );
            for s in [&a, &b] {
                router.deliver(control(
                    &s.sid,
                    Op::Join(Join {
                        group: "room".into(),
                    }),
                ));
            }
            let to_room = |kind: &str| Msg {
                group: "room".into(),
                payload: Some(payload(kind)),
                ..Msg::default()
            };
            router.deliver(to_room("one"));
            let (to_a, to_b) = (next(&a).await, next(&b).await);
            assert_eq!(kind(&to_a), "shared one");
            let (Outbound::Shared(to_a), Outbound::Shared(to_b)) = (to_a, to_b) else {
                panic!("expected shared frames");
            };
            assert!(Rc::ptr_eq(&to_a, &to_b), "encoded once for the core");
            assert_eq!(c.handle.queued(), 0);

            router.deliver(control(
                &b.sid,
                Op::Leave(Leave {
                    group: "room".into(),
                }),
            ));
            router.deliver(to_room("two"));
            assert_eq!(kind(&next(&a).await), "shared two");
            assert_eq!(b.handle.queued(), 0);

            router.deliver(to_sid("*", "all"));
            for s in [&a, &b, &c] {
                assert_eq!(kind(&next(s).await), "shared all");
            }
            assert_eq!(router.counters.fan_outs.get(), 3);
            assert_eq!(router.counters.lost(Loss::BadDownstream), 0);
            router.deliver(Msg {
                payload: None,
                ..to_room("none")
            });
            assert_eq!(router.counters.lost(Loss::BadDownstream), 1);
        });
    }

    #[test]
    fn a_close_control_kicks_with_a_code_a_server_may_send() {
        run(async {
            let router = router();
            let s = session(&router, 16);
            for (asked, sent) in [(4001, 4001), (1005, 1000)] {
                let close = Close {
                    code: asked,
                    reason: "kicked".into(),
                };
                router.deliver(control(&s.sid, Op::Close(close)));
                match soon("the close", s.rx.recv()).await {
                    Some(Outbound::Close(code, reason)) => {
                        assert_eq!((code, reason.as_str()), (sent, "kicked"))
                    }
                    other => panic!("expected a close, got {other:?}"),
                }
            }
            assert_eq!(router.counters.kicks.get(), 2);
        });
    }

    #[test]
    fn close_codes_a_server_may_send() {
        assert_eq!(close_code(4001), 4001);
        assert_eq!(close_code(1008), 1008);
        for reserved in [0, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            assert_eq!(close_code(reserved), 1000, "{reserved}");
        }
    }
}
