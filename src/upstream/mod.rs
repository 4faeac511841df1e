//! This core's links to ws-api: per node, one HTTP/2 connection carrying
//! the core's `ExchangeMsg` stream and the unary calls of its sessions
//! ([`Upstream`]); [`pool`] picks the node for each user, [`targets`] says
//! which nodes exist.
//!
//! Sessions never await the stream: they append framed messages to
//! [`Upstream::enqueue`]'s buffer, bounded in bytes, and go on. The writer in
//! [`exchange`] sends the whole buffer as one DATA write, at most once per
//! `--upstream-flush-interval` while messages keep coming, so a busy core
//! sends few large frames rather than a flood of small ones (which h2 servers
//! answer with GOAWAY ENHANCE_YOUR_CALM, and each of which costs a wake-up of
//! ws-api). While ws-api is unreachable the buffer
//! holds what it can; past its bound, messages are refused and counted.
//!
//! # Layout
//!
//! - this file: [`Upstream`], one core's link to one node, and its unary calls.
//! - [`pool`]: the core's nodes, and the node for each user (rendezvous hashing).
//! - [`exchange`]: the `ExchangeMsg` stream: its writer, its reader, its reconnects.
//! - [`unacked`]: what was sent on the stream and not yet acknowledged.
//! - [`received`]: what came down the stream, for its acknowledgements.
//! - [`liveness`]: when an unanswered ping means the node is dead.
//! - [`reassert`]: re-registering the core's sessions with a node whose presence lost them.
//! - [`health`]: each node's `grpc.health.v1` status (its presence store up or down), for `/readyz`.
//! - [`targets`]: which nodes exist (`--upstream`, resolved again over time).
//! - [`grpc`]: gRPC over HTTP/2 on a glommio socket.

pub(crate) mod exchange;
pub mod grpc;
pub(crate) mod health;
pub(crate) mod liveness;
pub(crate) mod pool;
pub(crate) mod reassert;
pub(crate) mod received;
pub mod targets;
pub(crate) mod unacked;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::metrics::{Counters, Rpc};
use crate::proto::Device;
use crate::proto::wsapi::{
    ConnectReply, ConnectRequest, DisconnectReply, DisconnectRequest, KeepAliveReply,
    KeepAliveRequest, Msg,
};
use grpc::{Channel, ChannelConfig, Code, Status};
use health::NodeHealth;
use reassert::{Pace, Trigger};
use received::Received;
use unacked::Unacked;

const CONNECT: &str = "/wsapi.ExchangeService/Connect";
const DISCONNECT: &str = "/wsapi.ExchangeService/Disconnect";
const KEEP_ALIVE: &str = "/wsapi.ExchangeService/KeepAlive";

/// Where a core's streams hand what ws-api sends down (other than the
/// stream's own acknowledgements): the core's router. Defined here and
/// implemented above, so the upstream knows nothing of sessions or cores.
pub trait Downstream {
    fn deliver(&self, msg: Msg);
}

/// How one core reaches each ws-api node.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// This core's identity: `x-gateway-ip` and `Msg.server`.
    pub identity: String,
    /// Changes when the gateway restarts (`x-gateway-epoch`): sequence
    /// numbers start again at 1.
    pub epoch: String,
    pub channel: ChannelConfig,
    pub rpc_timeout: Duration,
    /// HTTP/2 ping interval (zero: no pings).
    pub keepalive: Duration,
    pub buffer_limit: usize,
    /// Least time between two writes while messages keep coming.
    pub flush_interval: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How fast sessions are re-registered with a node that lost them.
    pub reassert: Pace,
}

/// The client message was not buffered: ws-api is down or too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream buffer full")]
pub struct BufferFull;

/// One core's link to one ws-api node.
pub struct Upstream {
    addr: SocketAddr,
    /// The node's rendezvous-hashing seed (a hash of its address).
    seed: u64,
    cfg: Rc<UpstreamConfig>,
    counters: Arc<Counters>,
    channel: RefCell<Option<Channel>>,
    up: Cell<bool>,
    /// When the current stream came up (None while down).
    up_since: Cell<Option<Instant>>,
    /// HTTP/2 ping interval; doubles when the node says we ping too often.
    keepalive: Cell<Duration>,
    /// Set on shutdown: send what is buffered, end the stream, do not reconnect.
    closing: Cell<bool>,
    buffer: RefCell<BytesMut>,
    buffered_msgs: Cell<u64>,
    /// Sequence number of the next message written to this node.
    next_seq: Cell<u64>,
    /// Written, not yet acknowledged.
    unacked: RefCell<Unacked>,
    /// The node has acknowledged on some stream: keep what is written
    /// until it does, to write it again after a break.
    acks: Cell<bool>,
    /// Messages read from the node, any kind: it is alive.
    heard: Cell<u64>,
    /// Numbered messages received from the node, to acknowledge.
    received: RefCell<Received>,
    /// Something was buffered for the writer.
    wake: LocalSender<()>,
    /// Something received waits for an acknowledgement.
    ack_due: LocalSender<()>,
    /// Their receivers, taken by [`Upstream::run`].
    wakes: RefCell<Option<Wakes>>,
    /// A pass re-registering the core's sessions is wanted.
    reassert: Trigger,
    /// The node's health status, as last polled.
    health: NodeHealth,
}

/// What the stream's tasks wait on.
struct Wakes {
    write: LocalReceiver<()>,
    ack: LocalReceiver<()>,
}

impl Upstream {
    pub fn new(addr: SocketAddr, cfg: Rc<UpstreamConfig>, counters: Arc<Counters>) -> Rc<Upstream> {
        let (wake, write) = local_channel::new_bounded(1);
        let (ack_due, ack) = local_channel::new_bounded(1);
        let keepalive = cfg.keepalive;
        Rc::new(Upstream {
            addr,
            seed: crate::hash::fnv1a(addr.to_string().as_bytes()),
            cfg,
            counters,
            channel: RefCell::new(None),
            up: Cell::new(false),
            up_since: Cell::new(None),
            keepalive: Cell::new(keepalive),
            closing: Cell::new(false),
            buffer: RefCell::new(BytesMut::new()),
            buffered_msgs: Cell::new(0),
            next_seq: Cell::new(1),
            unacked: RefCell::new(Unacked::default()),
            acks: Cell::new(false),
            heard: Cell::new(0),
            received: RefCell::new(Received::default()),
            wake,
            ack_due,
            wakes: RefCell::new(Some(Wakes { write, ack })),
            reassert: Trigger::new(),
            health: NodeHealth::default(),
        })
    }

    /// Whether the `ExchangeMsg` stream is established.
    pub fn is_up(&self) -> bool {
        self.up.get()
    }

    /// Records the stream's state in the core's live-node gauge.
    fn set_up(&self, up: bool) {
        match (self.up.replace(up), up) {
            (false, true) => self.counters.upstream_up.inc(),
            (true, false) => self.counters.upstream_up.dec(),
            _ => {}
        }
    }

    /// Ends the stream once the buffer is sent; the core is shutting down.
    pub fn close(&self) {
        self.closing.set(true);
        let _ = self.wake.try_send(());
        self.reassert.request();
    }

    /// Appends one framed message (written by `frame`) for the stream.
    /// The bound covers what waits to be written and what waits for ws-api's
    /// acknowledgement: a node that stops acknowledging slows its clients.
    pub fn enqueue(&self, frame: impl FnOnce(&mut BytesMut)) -> Result<(), BufferFull> {
        let mut buf = self.buffer.borrow_mut();
        if buf.len() + self.unacked.borrow().bytes() >= self.cfg.buffer_limit {
            return Err(BufferFull);
        }
        let before = buf.len();
        frame(&mut buf);
        self.buffered(before, buf.len(), 1);
        Ok(())
    }

    /// Appends messages another node had buffered (failover), past the bound:
    /// they were admitted once already.
    fn append(&self, bytes: &[u8], msgs: u64) {
        let mut buf = self.buffer.borrow_mut();
        let before = buf.len();
        buf.extend_from_slice(bytes);
        self.buffered(before, buf.len(), msgs);
    }

    fn buffered(&self, before: usize, after: usize, msgs: u64) {
        self.counters.upstream_buffered.add((after - before) as i64);
        self.buffered_msgs.set(self.buffered_msgs.get() + msgs);
        if before == 0 {
            // A full wake channel already holds a pending wake-up.
            let _ = self.wake.try_send(());
        }
    }

    /// Takes everything buffered: the bytes and how many messages they hold.
    fn take_buffer(&self) -> (Bytes, u64) {
        let bytes = self.buffer.borrow_mut().split().freeze();
        self.counters.upstream_buffered.add(-(bytes.len() as i64));
        (bytes, self.buffered_msgs.replace(0))
    }

    /// Takes everything this node holds for ws-api, for another node: what
    /// it kept unacknowledged (oldest first), then what waits to be written.
    fn take_all(&self) -> (Bytes, u64) {
        let (kept, kept_msgs) = self.unacked(Unacked::take);
        let (buffered, msgs) = self.take_buffer();
        if kept.is_empty() {
            return (buffered, msgs);
        }
        let mut all = BytesMut::new();
        for b in kept.iter().chain([&buffered]) {
            all.extend_from_slice(b);
        }
        (all.freeze(), kept_msgs + msgs)
    }

    /// Records a write of `msgs` messages: numbers them, and keeps them
    /// until acknowledged (as bytes when the node acknowledges).
    fn written(&self, bytes: &Bytes, msgs: u64) {
        let first = self.next_seq.replace(self.next_seq.get() + msgs);
        let keep = self.acks.get().then(|| bytes.clone());
        self.unacked(|u| u.push(first, msgs, keep));
    }

    /// Appends a message of the core's own (an acknowledgement) past the
    /// bound: it is tiny, and ws-api waits for it to free what it keeps.
    fn append_own(&self, msg: &Msg) {
        let mut buf = self.buffer.borrow_mut();
        let before = buf.len();
        grpc::codec::encode(msg, &mut buf);
        let after = buf.len();
        drop(buf);
        self.buffered(before, after, 1);
    }

    /// Changes what is kept unacknowledged; the core's gauge follows.
    fn unacked<R>(&self, change: impl FnOnce(&mut Unacked) -> R) -> R {
        let mut unacked = self.unacked.borrow_mut();
        let before = unacked.msgs();
        let result = change(&mut unacked);
        let delta = unacked.msgs() as i64 - before as i64;
        self.counters.upstream_unacked.add(delta);
        result
    }

    /// ws-api has received every message up to `seq`.
    fn acked(&self, seq: u64) {
        self.acks.set(true);
        let n = self.unacked(|u| u.ack(seq));
        self.counters.upstream_acked.add(n);
    }

    fn channel(&self) -> Result<Channel, Status> {
        self.channel
            .borrow()
            .clone()
            .ok_or_else(|| Status::new(Code::Unavailable, "not connected to ws-api"))
    }

    /// A unary call, timed into the core's latency histogram.
    async fn call<Req, Resp>(&self, rpc: Rpc, path: &str, req: &Req) -> Result<Resp, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let started = Instant::now();
        let result = match self.channel() {
            Ok(channel) => channel.unary(path, req, self.cfg.rpc_timeout).await,
            Err(e) => Err(e),
        };
        self.counters.rpc[rpc as usize].observe(started.elapsed());
        result
    }

    /// `Connect`: asks ws-api to admit a client (`since`: the position it
    /// resumes from, or empty; `device`: its device id, if it gave one);
    /// the reply has its uid and whether to resume.
    pub async fn connect(
        &self,
        sid: &str,
        token: Bytes,
        since: String,
        device: Option<&Device>,
    ) -> Result<ConnectReply, Status> {
        let req = ConnectRequest {
            server: self.cfg.identity.clone(),
            sid: sid.to_owned(),
            token,
            since,
            device: device.map(|d| d.to_string()).unwrap_or_default(),
        };
        self.call(Rpc::Connect, CONNECT, &req).await
    }

    /// `Disconnect`: tells ws-api a session has ended.
    pub async fn disconnect(&self, sid: &str, uid: u64) -> Result<(), Status> {
        let req = DisconnectRequest {
            server: self.cfg.identity.clone(),
            sid: sid.to_owned(),
            uid,
        };
        let _: DisconnectReply = self.call(Rpc::Disconnect, DISCONNECT, &req).await?;
        Ok(())
    }

    /// `KeepAlive`: refreshes a session's presence on a client heartbeat.
    pub async fn keep_alive(&self, sid: &str, uid: u64) -> Result<(), Status> {
        let req = KeepAliveRequest {
            server: self.cfg.identity.clone(),
            sid: sid.to_owned(),
            uid,
        };
        let _: KeepAliveReply = self.call(Rpc::KeepAlive, KEEP_ALIVE, &req).await?;
        Ok(())
    }
}
