//! One core's session table: slot → [`SessionHandle`], with no lock.
//!
//! The table is a `sharded_slab::Slab` used by its owning core only: its keys
//! carry a generation, so a sid whose session has ended never reaches the
//! session that later reuses the slot. A handle is what the rest of the core
//! needs to reach a session: its bounded send queue.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use async_tungstenite::tungstenite::Utf8Bytes;
use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::codec;
use crate::metrics::Counters;
use crate::proto::wsapi::Resumed;
use crate::proto::wsgateway::Protocol;

/// What the core asks a session to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send this message to the client.
    Frame(Protocol),
    /// Send a message that many sessions get, encoded once for all of them.
    Shared(Rc<SharedFrame>),
    /// A message of a resume's replay: delivered even while newer ones are held.
    Replay(Protocol),
    /// The replay is complete: ws-api's answer, or `None` when
    /// `--resume-timeout` passed first.
    Resumed(Option<Resumed>),
    /// Send a WebSocket ping (server-driven keepalive).
    Ping,
    /// Close the connection with this code and reason.
    Close(u16, String),
}

/// A fan-out message in both client formats; sessions clone the bytes.
#[derive(Debug)]
pub struct SharedFrame {
    pub json: Utf8Bytes,
    pub protobuf: Bytes,
    /// The JSON and protobuf forms compressed (permessage-deflate), made by
    /// the first session that sends them so.
    pub deflated: [OnceCell<Bytes>; 2],
}

impl SharedFrame {
    pub fn new(p: &Protocol) -> Rc<SharedFrame> {
        Rc::new(SharedFrame {
            json: Utf8Bytes::from(codec::encode_json(p)),
            protobuf: codec::encode_protobuf(p),
            deflated: Default::default(),
        })
    }
}

/// Why an outbound message was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The client is not reading fast enough.
    Full,
    /// The session is ending.
    Closed,
}

/// How far past `--send-queue` a session that is not stalled may be queued.
const BURST_SLACK: usize = 16;

/// The core's way to reach one session.
#[derive(Debug)]
pub struct SessionHandle {
    // Unbounded in glommio's terms, bounded here: glommio's bounded channel
    // allocates its whole capacity up front, which idle sessions would pay for.
    tx: LocalSender<Outbound>,
    bound: usize,
    counters: Arc<Counters>,
    /// Set when the send queue overflowed: the session closes as a slow consumer.
    overflowed: Cell<bool>,
    /// Set while a write to the client waits (its socket is full).
    stalled: Cell<bool>,
    /// The keepalive tick at which the client was last heard from.
    pub heard: Cell<u64>,
    /// Groups this session is in, to leave them when it ends.
    groups: RefCell<Vec<String>>,
    /// Its slot and uid once ws-api admitted it, for re-registering it
    /// with a ws-api whose presence lost it.
    admitted: Cell<Option<(usize, u64)>>,
}

impl SessionHandle {
    pub fn new(
        queue: usize,
        tick: u64,
        counters: Arc<Counters>,
    ) -> (Rc<SessionHandle>, LocalReceiver<Outbound>) {
        let (tx, rx) = local_channel::new_unbounded();
        let handle = Rc::new(SessionHandle {
            tx,
            bound: queue,
            counters,
            overflowed: Cell::new(false),
            stalled: Cell::new(false),
            heard: Cell::new(tick),
            groups: RefCell::new(Vec::new()),
            admitted: Cell::new(None),
        });
        (handle, rx)
    }

    /// Queues without waiting: the core never blocks on one client.
    ///
    /// The bound holds against a client that does not read (a write to it
    /// is waiting). A session that writes freely may find more queued when
    /// its turn comes (ws-api answered a burst of its frames in one batch)
    /// and is not closed for it, up to `BURST_SLACK` times the bound.
    pub fn push(&self, out: Outbound) -> Result<(), QueueError> {
        let queued = self.tx.len();
        if queued >= self.bound && (self.stalled.get() || queued >= self.bound * BURST_SLACK) {
            self.overflowed.set(true);
            return Err(QueueError::Full);
        }
        self.tx.try_send(out).map_err(|_| QueueError::Closed)?;
        self.counters.send_queued.inc();
        Ok(())
    }

    /// The session took `n` messages off its queue (or dropped them at its end).
    pub fn dequeued(&self, n: usize) {
        self.counters.send_queued.add(-(n as i64));
    }

    /// Messages still queued.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.get()
    }

    /// The session's write to its client is waiting (or no longer is).
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.set(stalled);
    }
}

/// All sessions of one core.
#[derive(Debug, Default)]
pub struct Sessions {
    // The RefCell is only for `all()`: sharded-slab iterates through `&mut`.
    slab: RefCell<sharded_slab::Slab<Rc<SessionHandle>>>,
    len: Cell<usize>,
    /// Group → slots of its members on this core.
    groups: RefCell<HashMap<String, HashSet<usize>>>,
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
        let Some(handle) = self.slab.borrow().take(key) else {
            return;
        };
        self.len.set(self.len.get() - 1);
        for group in handle.groups.take() {
            self.leave(key, &group);
        }
    }

    /// ws-api admitted the session in `slot` as `uid`.
    pub fn admitted(&self, slot: usize, uid: u64) {
        if let Some(handle) = self.get(slot) {
            handle.admitted.set(Some((slot, uid)));
        }
    }

    /// The slot and uid of every session ws-api admitted.
    pub fn admitted_sessions(&self) -> Vec<(usize, u64)> {
        self.slab
            .borrow_mut()
            .unique_iter()
            .filter_map(|h| h.admitted.get())
            .collect()
    }

    /// Adds the session in `slot` to `group`; false if there is no such session.
    pub fn join(&self, slot: usize, group: &str) -> bool {
        let Some(handle) = self.get(slot) else {
            return false;
        };
        if self
            .groups
            .borrow_mut()
            .entry(group.to_owned())
            .or_default()
            .insert(slot)
        {
            handle.groups.borrow_mut().push(group.to_owned());
        }
        true
    }

    /// Removes the session in `slot` from `group`.
    pub fn leave(&self, slot: usize, group: &str) {
        let mut groups = self.groups.borrow_mut();
        if let Some(members) = groups.get_mut(group) {
            members.remove(&slot);
            if members.is_empty() {
                groups.remove(group);
            }
        }
        if let Some(handle) = self.get(slot) {
            handle.groups.borrow_mut().retain(|g| g != group);
        }
    }

    /// The sessions of `group` on this core.
    pub fn group(&self, group: &str) -> Vec<Rc<SessionHandle>> {
        let slots: Vec<usize> = self
            .groups
            .borrow()
            .get(group)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default();
        slots
            .into_iter()
            .filter_map(|slot| self.get(slot))
            .collect()
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
