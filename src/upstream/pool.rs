//! This core's ws-api nodes: one [`Upstream`] (HTTP/2 connection and
//! `ExchangeMsg` stream) per node, all carrying the core's one identity, so
//! any node can push to any of the core's sessions.
//!
//! A session's messages and unary calls go to the node its uid picks by
//! rendezvous hashing over the nodes whose stream is up: the choice is
//! stable while the set of live nodes is (per-user ordering), moves only the
//! users of a node that goes down, and comes back when it returns. When a
//! node's stream is lost, what it had buffered moves to a live node and is
//! counted (`gateway_upstream_failover_messages_total`), with what it had
//! written and the node had not acknowledged (`unacked`): a node that never
//! acknowledges has that counted `upstream_unconfirmed` instead.
//!
//! The node set follows [`Targets`], checked on this core's own timer, so a
//! DNS name can grow or shrink the set without touching the message path.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use glommio::task::JoinHandle;
use glommio::{Task, spawn_local};
use tracing::{info, warn};

use super::grpc::{Code, Status};
use super::reassert::LiveSessions;
use super::targets::Targets;
use super::{BufferFull, Downstream, Upstream, UpstreamConfig, health, reassert};
use crate::hash::{fnv1a, mix};
use crate::metrics::Counters;
use crate::proto::Device;
use crate::proto::wsapi::ConnectReply;

/// Every ws-api node, as this core reaches it.
pub struct Upstreams {
    cfg: Rc<UpstreamConfig>,
    counters: Arc<Counters>,
    targets: Arc<Targets>,
    /// Sorted by address.
    nodes: RefCell<Vec<Rc<Upstream>>>,
    /// The stream task of each node in `nodes`, awaited on close.
    tasks: RefCell<Vec<(SocketAddr, JoinHandle<()>)>>,
    watcher: RefCell<Option<Task<()>>>,
    closing: Cell<bool>,
}

impl Upstreams {
    pub fn new(cfg: UpstreamConfig, targets: Arc<Targets>, counters: Arc<Counters>) -> Rc<Self> {
        Rc::new(Upstreams {
            cfg: Rc::new(cfg),
            counters,
            targets,
            nodes: RefCell::new(Vec::new()),
            tasks: RefCell::new(Vec::new()),
            watcher: RefCell::new(None),
            closing: Cell::new(false),
        })
    }

    /// This core's identity: `x-gateway-ip` and `Msg.server` on every node.
    pub fn identity(&self) -> &str {
        &self.cfg.identity
    }

    /// Connects to every node, and follows the node set every `resolve`
    /// interval; what the nodes send down goes to `downstream`.
    pub fn start<D: Downstream + LiveSessions + 'static>(
        self: &Rc<Self>,
        downstream: &Rc<D>,
        resolve: Duration,
    ) {
        self.apply(&self.targets.get(), downstream);
        if resolve.is_zero() || !self.targets.has_names() {
            return;
        }
        let (pool, downstream) = (Rc::clone(self), Rc::clone(downstream));
        let watch = spawn_local(async move {
            loop {
                glommio::timer::sleep(resolve).await;
                pool.apply(&pool.targets.get(), &downstream);
            }
        });
        self.watcher.replace(Some(watch));
    }

    /// Adds the nodes that appeared, retires those that went away.
    fn apply<D: Downstream + LiveSessions + 'static>(
        self: &Rc<Self>,
        want: &[SocketAddr],
        downstream: &Rc<D>,
    ) {
        if self.closing.get() {
            return;
        }
        let gone: Vec<Rc<Upstream>> = {
            let mut nodes = self.nodes.borrow_mut();
            let (keep, gone) = nodes.drain(..).partition(|n| want.contains(&n.addr));
            *nodes = keep;
            gone
        };
        // A retired node's task ends by itself once closed; nothing awaits it.
        self.tasks
            .borrow_mut()
            .retain(|(addr, _)| want.contains(addr));
        for node in gone {
            info!(upstream = %node.addr, "ws-api node removed");
            self.take_over(&node);
            node.close();
        }
        for &addr in want {
            if self.nodes.borrow().iter().any(|n| n.addr == addr) {
                continue;
            }
            let node = Upstream::new(addr, Rc::clone(&self.cfg), Arc::clone(&self.counters));
            let (pool, lost) = (Rc::clone(self), Rc::clone(&node));
            let task = spawn_local(
                Rc::clone(&node).run(Rc::clone(downstream), move || pool.take_over(&lost)),
            );
            self.tasks.borrow_mut().push((addr, task.detach()));
            // Both end by themselves once the node is closed.
            spawn_local(reassert::run(Rc::clone(&node), Rc::clone(downstream))).detach();
            spawn_local(health::watch(Rc::clone(&node))).detach();
            let mut nodes = self.nodes.borrow_mut();
            let at = nodes.partition_point(|n| n.addr < addr);
            nodes.insert(at, node);
        }
        self.counters
            .upstream_nodes
            .set(self.nodes.borrow().len() as i64);
    }

    /// Moves what `from` buffered to a live node, if there is one.
    fn take_over(&self, from: &Upstream) {
        let Some(to) = pick(&self.nodes.borrow(), from.seed, true) else {
            return;
        };
        let (bytes, msgs): (Bytes, u64) = from.take_all();
        if msgs == 0 {
            return;
        }
        to.append(&bytes, msgs);
        self.counters.upstream_failovers.add(msgs);
        warn!(from = %from.addr, to = %to.addr, msgs, "buffered messages moved to another ws-api node");
    }

    /// Appends one framed message for the node `uid` picks.
    pub fn enqueue(&self, uid: u64, frame: impl FnOnce(&mut BytesMut)) -> Result<(), BufferFull> {
        match pick(&self.nodes.borrow(), uid, false) {
            Some(node) => node.enqueue(frame),
            None => Err(BufferFull),
        }
    }

    /// A node whose stream is up, picked by `key`.
    fn live(&self, key: u64) -> Result<Rc<Upstream>, Status> {
        pick(&self.nodes.borrow(), key, true)
            .ok_or_else(|| Status::new(Code::Unavailable, "no ws-api node is up"))
    }

    /// `Connect` on a live node (spread by sid: the uid is not known yet).
    pub async fn connect(
        &self,
        sid: &str,
        token: Bytes,
        since: String,
        device: Option<&Device>,
    ) -> Result<ConnectReply, Status> {
        self.live(fnv1a(sid.as_bytes()))?
            .connect(sid, token, since, device)
            .await
    }

    /// `Disconnect` on the uid's node.
    pub async fn disconnect(&self, sid: &str, uid: u64) -> Result<(), Status> {
        self.live(uid)?.disconnect(sid, uid).await
    }

    /// `KeepAlive` on the uid's node.
    pub async fn keep_alive(&self, sid: &str, uid: u64) -> Result<(), Status> {
        self.live(uid)?.keep_alive(sid, uid).await
    }

    /// Sends what is buffered, ends every stream, and waits for them to close.
    pub async fn close(&self) {
        self.closing.set(true);
        self.watcher.replace(None);
        let nodes = self.nodes.borrow().clone();
        for node in nodes.iter().filter(|n| !n.is_up()) {
            self.take_over(node);
        }
        for node in &nodes {
            node.close();
        }
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        for (_, task) in tasks {
            task.await;
        }
    }
}

/// Rendezvous hashing: the node with the highest score for `key`, among
/// those whose stream is up (or, unless `live_only`, among all when none is).
fn pick(nodes: &[Rc<Upstream>], key: u64, live_only: bool) -> Option<Rc<Upstream>> {
    if let [only] = nodes {
        return (!live_only || only.is_up()).then(|| Rc::clone(only));
    }
    let best = |live: bool| {
        nodes
            .iter()
            .filter(|n| !live || n.is_up())
            .max_by_key(|n| mix(key ^ n.seed))
            .cloned()
    };
    best(true).or_else(|| if live_only { None } else { best(false) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of `seeds` the rendezvous picks for `key` among `live` ones.
    fn winner(seeds: &[u64], live: &[bool], key: u64) -> Option<usize> {
        (0..seeds.len())
            .filter(|i| live[*i])
            .max_by_key(|i| mix(key ^ seeds[*i]))
    }

    #[test]
    fn rendezvous_moves_only_the_users_of_a_lost_node() {
        let seeds: Vec<u64> = ["127.0.0.2:1", "127.0.0.3:1", "127.0.0.4:1"]
            .iter()
            .map(|a| fnv1a(a.as_bytes()))
            .collect();
        let mut per_node = [0usize; 3];
        for uid in 0..3000u64 {
            let before = winner(&seeds, &[true; 3], uid).unwrap();
            per_node[before] += 1;
            let after = winner(&seeds, &[true, false, true], uid).unwrap();
            if before != 1 {
                assert_eq!(before, after, "uid {uid} moved though its node stayed up");
            } else {
                assert_ne!(after, 1);
            }
        }
        assert!(per_node.iter().all(|n| *n > 800), "{per_node:?}");
        assert_eq!(winner(&seeds, &[false; 3], 7), None);
    }
}
