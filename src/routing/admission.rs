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
        crate::routing::mesh::receive(receivers, move |msg| {
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

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use glommio::LocalExecutorBuilder;
    use glommio::channels::channel_mesh::MeshBuilder;

    use super::{Admission, AdmitMsg};
    use crate::testing::{run, soon};

    #[test]
    fn zero_limit_admits_everyone() {
        run(async {
            let a = Admission::new(0, 4, 0);
            for _ in 0..100 {
                // Owned by core 1, but a zero limit never asks it (no mesh here).
                assert!(a.acquire(1).await);
            }
        });
    }

    #[test]
    fn limit_on_the_owning_core() {
        run(async {
            let a = Admission::new(0, 1, 2);
            assert!(a.acquire(7).await);
            assert!(a.acquire(7).await);
            assert!(!a.acquire(7).await, "a third session of uid 7");
            assert!(a.acquire(8).await, "another user is counted apart");
            a.release(7).await;
            assert!(a.acquire(7).await, "a slot given back is taken again");
            // Releasing more than was taken does not go below zero.
            for _ in 0..5 {
                a.release(9).await;
            }
            assert!(a.acquire(9).await);
            assert!(a.counts.borrow().get(&9) == Some(&1));
        });
    }

    #[test]
    fn without_the_mesh_another_cores_user_is_refused() {
        run(async {
            let a = Admission::new(0, 2, 5);
            assert!(!a.acquire(1).await, "uid 1 is owned by core 1, unreachable");
            assert!(a.pending.borrow().is_empty());
        });
    }

    /// Two cores on a real channel mesh: core 1 asks core 0, which owns uid 0.
    #[test]
    fn per_user_cap_across_cores() {
        let mesh = MeshBuilder::<AdmitMsg, _>::full(2, 16);
        let done = Arc::new(AtomicBool::new(false));
        let core = |id: usize| {
            let (mesh, done) = (mesh.clone(), Arc::clone(&done));
            LocalExecutorBuilder::default()
                .io_memory(1 << 20)
                .name(&format!("admission-{id}"))
                .spawn(move || async move {
                    let (tx, rx) = mesh.join().await.unwrap();
                    assert_eq!(tx.peer_id(), id);
                    let a = Rc::new(Admission::new(id, 2, 1));
                    a.set_mesh(tx);
                    glommio::spawn_local(Rc::clone(&a).serve(rx)).detach();
                    if id == 0 {
                        // Serve core 1 until it is done.
                        while !done.load(Ordering::Acquire) {
                            glommio::timer::sleep(Duration::from_millis(5)).await;
                        }
                        // Core 1's session of uid 0 is counted here.
                        assert!(!a.acquire(0).await, "uid 0 is at its limit");
                        return;
                    }
                    let cross = async {
                        assert!(a.acquire(0).await, "core 0 admits the first");
                        assert!(!a.acquire(0).await, "core 0 refuses the second");
                        a.release(0).await;
                        assert!(a.acquire(0).await, "the released slot is free again");
                        assert!(a.acquire(1).await, "uid 1 is core 1's own");
                        assert!(!a.acquire(1).await);
                    };
                    soon("cross-core admission", cross).await;
                    done.store(true, Ordering::Release);
                })
                .unwrap()
        };
        let (c0, c1) = (core(0), core(1));
        c1.join().unwrap();
        c0.join().unwrap();
    }
}
