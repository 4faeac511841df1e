//! One core's session table: slot → [`SessionHandle`], with no lock.
//!
//! The table is a `sharded_slab::Slab` used by its owning core only: its keys
//! carry a generation, so a sid whose session has ended never reaches the
//! session that later reuses the slot. A handle is what the rest of the core
//! needs to reach a session: its bounded send queue.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::proto::wsgateway::Protocol;

/// What the core asks a session to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send this message to the client.
    Frame(Protocol),
    /// Close the connection with this code and reason.
    Close(u16, String),
}

/// Why an outbound message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The client is not reading fast enough.
    Full,
    /// The session is ending.
    Closed,
}

/// The core's way to reach one session.
#[derive(Debug)]
pub struct SessionHandle {
    // Unbounded in glommio's terms, bounded here: glommio's bounded channel
    // allocates its whole capacity up front, which idle sessions would pay for.
    tx: LocalSender<Outbound>,
    bound: usize,
    /// Set when the send queue overflowed: the session closes as a slow consumer.
    overflowed: Cell<bool>,
}

impl SessionHandle {
    pub fn new(queue: usize) -> (Rc<SessionHandle>, LocalReceiver<Outbound>) {
        let (tx, rx) = local_channel::new_unbounded();
        let handle = Rc::new(SessionHandle {
            tx,
            bound: queue,
            overflowed: Cell::new(false),
        });
        (handle, rx)
    }

    /// Queues without waiting: the core never blocks on one client.
    pub fn push(&self, out: Outbound) -> Result<(), QueueError> {
        if self.tx.len() >= self.bound {
            self.overflowed.set(true);
            return Err(QueueError::Full);
        }
        self.tx.try_send(out).map_err(|_| QueueError::Closed)
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.get()
    }
}

/// All sessions of one core.
#[derive(Debug, Default)]
pub struct Sessions {
    // The RefCell is only for `all()`: sharded-slab iterates through `&mut`.
    slab: RefCell<sharded_slab::Slab<Rc<SessionHandle>>>,
    len: Cell<usize>,
}

impl Sessions {
    /// Registers a session; `None` when the slab is out of slots.
    pub fn insert(&self, handle: Rc<SessionHandle>) -> Option<usize> {
        let key = self.slab.borrow().insert(handle)?;
        self.len.set(self.len.get() + 1);
        Some(key)
    }

    pub fn get(&self, key: usize) -> Option<Rc<SessionHandle>> {
        self.slab.borrow().get(key).map(|entry| Rc::clone(&entry))
    }

    pub fn remove(&self, key: usize) {
        if self.slab.borrow().take(key).is_some() {
            self.len.set(self.len.get() - 1);
        }
    }

    /// Every session, for shutdown.
    pub fn all(&self) -> Vec<Rc<SessionHandle>> {
        self.slab
            .borrow_mut()
            .unique_iter()
            .map(Rc::clone)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.len.get()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
