//! Per-node connection count per user (`--max-connections-per-user`),
//! without shared state: each uid is owned by one core (uid mod cores),
//! which keeps that user's count; other cores ask it over a channel mesh of
//! their own when a session of the user starts, and tell it when one ends.
//! Only upgrades and closes cross cores, never messages.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};

/// What cores tell the owner of a uid.
#[derive(Debug)]
pub enum AdmitMsg {
    Acquire { uid: u64, from: usize, id: u64 },
    Release { uid: u64 },
    Reply { id: u64, ok: bool },
}

/// One core's part of the per-user limit.
pub struct Admission {
    core: usize,
    cores: usize,
    limit: u32,
    counts: RefCell<HashMap<u64, u32>>,
    pending: RefCell<HashMap<u64, LocalSender<bool>>>,
    next_id: Cell<u64>,
    mesh: RefCell<Option<Rc<Senders<AdmitMsg>>>>,
}

impl Admission {
    /// `limit` 0 admits everyone and never crosses cores.
    pub fn new(core: usize, cores: usize, limit: u32) -> Admission {
        Admission {
            core,
            cores: cores.max(1),
            limit,
            counts: RefCell::default(),
            pending: RefCell::default(),
            next_id: Cell::new(0),
            mesh: RefCell::new(None),
        }
    }

    pub fn set_mesh(&self, senders: Senders<AdmitMsg>) {
        self.mesh.replace(Some(Rc::new(senders)));
    }

    fn owner(&self, uid: u64) -> usize {
        (uid % self.cores as u64) as usize
    }

    fn take(&self, uid: u64) -> bool {
        let mut counts = self.counts.borrow_mut();
        let n = counts.entry(uid).or_default();
        if *n >= self.limit {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, uid: u64) {
        let mut counts = self.counts.borrow_mut();
        if let Some(n) = counts.get_mut(&uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&uid);
            }
        }
    }

    /// Whether `uid` may open one more session on this node.
    pub async fn acquire(&self, uid: u64) -> bool {
        let owner = self.owner(uid);
        if self.limit == 0 {
            return true;
        }
        if owner == self.core {
            return self.take(uid);
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, tx);
        let sent = self
            .send(
                owner,
                AdmitMsg::Acquire {
                    uid,
                    from: self.core,
                    id,
                },
            )
            .await;
        let ok = sent && rx.recv().await.unwrap_or(false);
        self.pending.borrow_mut().remove(&id);
        ok
    }

    /// A session of `uid` admitted by [`Admission::acquire`] has ended.
    pub async fn release(&self, uid: u64) {
        let owner = self.owner(uid);
        if self.limit == 0 {
            return;
        }
        if owner == self.core {
            self.give_back(uid);
        } else {
            self.send(owner, AdmitMsg::Release { uid }).await;
        }
    }

    async fn send(&self, to: usize, msg: AdmitMsg) -> bool {
        let mesh = self.mesh.borrow().clone();
        match mesh {
            Some(mesh) => mesh.send_to(to, msg).await.is_ok(),
            None => false,
        }
    }

    /// Answers the other cores, for as long as the core runs.
    pub async fn serve(self: Rc<Self>, receivers: Receivers<AdmitMsg>) {
        crate::mesh::receive(receivers, move |msg| {
            let me = Rc::clone(&self);
            async move { me.handle(msg).await }
        })
        .await;
    }

    async fn handle(&self, msg: AdmitMsg) {
        match msg {
            AdmitMsg::Acquire { uid, from, id } => {
                let ok = self.take(uid);
                self.send(from, AdmitMsg::Reply { id, ok }).await;
            }
            AdmitMsg::Release { uid } => self.give_back(uid),
            AdmitMsg::Reply { id, ok } => {
                if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                    let _ = tx.try_send(ok);
                }
            }
        }
    }
}
