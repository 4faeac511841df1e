//! The life of this core's `ExchangeMsg` stream to one ws-api node: dial,
//! open the stream with the core's identity, pump both directions, and on
//! any failure reconnect with exponential backoff and full jitter, until the
//! core closes it.
//!
//! The stream is up once the HTTP/2 connection is established (ws-api
//! answered a PING, which it can only do after its own preface) and the
//! request HEADERS are written. Response HEADERS are read whenever they
//! come: tonic sends them at once, grpc-go and gRPC C-core only with the
//! first message, and a ws-api that never pushes never sends them. Liveness
//! comes from HTTP/2 PINGs, not from waiting for those headers.
//!
//! Messages are numbered per node and kept until ws-api acknowledges them
//! ([`super::unacked`]). When the stream is lost, what a ws-api that does
//! not acknowledge had not confirmed is counted `upstream_unconfirmed`; the
//! caller's `lost` hook runs (the pool moves the node's unacknowledged and
//! buffered messages to a live node); what stays is written again, in
//! order, on the next stream.
//!
//! Downstream the same, the other way ([`super::received`]): the core asks
//! for numbered messages (`x-gateway-downstream-acks`), drops what it has
//! received before, and acknowledges within `ACK_EVERY` of a message.
//!
//! A node that stays down is logged at warn once per change of reason and
//! then every `REMIND_EVERY`, not once per attempt.
//!
//! A stream that comes up, and a `Control.Reassert` from the node, ask for a
//! re-registration of the core's sessions ([`super::reassert`]); a lost
//! stream takes the node out of the health gauge ([`super::health`]).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use glommio::channels::local_channel::LocalReceiver;
use h2::{Ping, PingPong, SendStream};
use prost::Message;
use tracing::{debug, info, warn};

use super::grpc::client::with_deadline;
use super::grpc::{Channel, Code, Status, Streaming};
use super::liveness::{self, Silent};
use super::received::{ACK_AFTER, ACK_EVERY, Arrival};
use super::unacked::Unacked;
use super::{Downstream, Upstream, Wakes};
use crate::metrics::Loss;
use crate::proto::wsapi::control::Op;
use crate::proto::wsapi::{Ack, Control, Msg};

const EXCHANGE: &str = "/wsapi.ExchangeService/ExchangeMsg";

impl Upstream {
    /// Keeps the stream up until [`Upstream::close`]; `lost` runs after each failed connection.
    pub async fn run(self: Rc<Self>, downstream: Rc<impl Downstream>, lost: impl Fn()) {
        let Some(wakes) = self.wakes.borrow_mut().take() else {
            return;
        };
        let mut delay = self.cfg.reconnect_min;
        let mut down: Option<Down> = None;
        loop {
            let err = self.connection(&wakes, &*downstream).await;
            let up_for = self.up_since.take().map(|at| at.elapsed());
            self.set_up(false);
            self.health.stream_lost(&self.counters);
            self.channel.replace(None);
            let unknown = self.unacked(Unacked::settle);
            self.counters.lose(Loss::UpstreamUnconfirmed, unknown);
            if self.closing.get() {
                info!(upstream = %self.addr, "ws-api stream closed");
                return;
            }
            if err.is_too_many_pings() {
                self.slow_down_pings();
            }
            // A stream refused right after it opened is an outage going on,
            // not a recovery: no reset of the backoff, no new log line.
            if up_for.is_some_and(|t| t >= STABLE_AFTER) {
                delay = self.cfg.reconnect_min;
                down = None;
            }
            self.log_down(&mut down, err, up_for.is_some());
            // Also when it never came up: what waited for it may have a live node now.
            lost();
            // Full jitter keeps every core of every gateway from reconnecting in step.
            let pause = Duration::from_micros(fastrand::u64(0..=delay.as_micros() as u64));
            glommio::timer::sleep(pause).await;
            delay = (delay * 2).min(self.cfg.reconnect_max);
            self.counters.upstream_reconnects.inc();
        }
    }

    /// Warns when the node goes down or its reason changes, then reminds
    /// every `REMIND_EVERY` while it stays down; other attempts go to debug.
    fn log_down(&self, down: &mut Option<Down>, err: Status, was_up: bool) {
        let now = Instant::now();
        let Some(d) = down else {
            if was_up {
                warn!(upstream = %self.addr, identity = %self.cfg.identity, error = %err, "ws-api stream lost; reconnecting");
            } else {
                warn!(upstream = %self.addr, identity = %self.cfg.identity, error = %err, "ws-api unreachable; retrying");
            }
            *down = Some(Down {
                since: now,
                reminded: now,
                attempts: 1,
                reason: err,
            });
            return;
        };
        d.attempts += 1;
        if d.reason != err {
            warn!(upstream = %self.addr, identity = %self.cfg.identity, error = %err, down_for = ?d.since.elapsed(), "ws-api still down, for another reason");
            d.reason = err;
            d.reminded = now;
        } else if now - d.reminded >= REMIND_EVERY {
            warn!(upstream = %self.addr, identity = %self.cfg.identity, error = %err, down_for = ?d.since.elapsed(), attempts = d.attempts, "ws-api still down");
            d.reminded = now;
        } else {
            debug!(upstream = %self.addr, error = %err, "ws-api still down");
        }
    }

    /// gRPC servers answer pings they find too frequent with GOAWAY
    /// ENHANCE_YOUR_CALM (grpc-go and C-core allow one per 5 minutes while
    /// they send nothing); as gRPC's keepalive design (A8) asks of clients,
    /// ping this node half as often from now on.
    fn slow_down_pings(&self) {
        let every = self.keepalive.get() * 2;
        self.keepalive.set(every);
        self.counters.upstream_ping_slowdowns.inc();
        warn!(
            upstream = %self.addr, keepalive = ?every,
            "ws-api refused our HTTP/2 pings as too frequent; pinging less often (let ws-api \
             permit --upstream-keepalive: grpc-go keepalive.EnforcementPolicy.MinTime, \
             C-core grpc.http2.min_ping_interval_without_data_ms)"
        );
    }

    /// One HTTP/2 connection, from dial to failure.
    async fn connection(&self, wakes: &Wakes, downstream: &impl Downstream) -> Status {
        let (channel, mut conn) = match Channel::connect(self.addr, &self.cfg.channel).await {
            Ok(c) => c,
            Err(e) => return e,
        };
        let Some(mut ping_pong) = conn.ping_pong() else {
            return Status::new(Code::Internal, "h2 connection without ping_pong");
        };
        self.channel.replace(Some(channel.clone()));
        let driver = async {
            match conn.await {
                Ok(()) => Status::new(Code::Unavailable, "ws-api closed the connection"),
                Err(e) => Status::from_h2(&e),
            }
        };
        let work = async {
            // h2's handshake only sends our preface. A server answers a PING
            // after its own, so the answer proves an HTTP/2 peer that is
            // alive: only then is the connection established.
            if let Err(e) = self.ping(&mut ping_pong).await {
                return e;
            }
            future::or(
                self.stream(&channel, wakes, downstream),
                self.keepalive(ping_pong),
            )
            .await
        };
        future::or(work, driver).await
    }

    /// Pings ws-api every keepalive interval; ends when a ping goes unanswered.
    async fn keepalive(&self, mut ping_pong: PingPong) -> Status {
        if self.keepalive.get().is_zero() {
            return future::pending().await;
        }
        loop {
            glommio::timer::sleep(self.keepalive.get()).await;
            let written = self.next_seq.get() - 1;
            if let Err(e) = self.ping(&mut ping_pong).await {
                return e;
            }
            if !self.acks.get() {
                // ws-api read every frame before the PING: confirmed, for a
                // ws-api that does not acknowledge.
                self.unacked(|u| u.ack(written));
            }
        }
    }

    /// One HTTP/2 ping, answered within `--rpc-timeout` ([`liveness`]).
    async fn ping(&self, ping_pong: &mut PingPong) -> Result<(), Status> {
        let pong = async {
            ping_pong
                .ping(Ping::opaque())
                .await
                .map_err(|e| Status::from_h2(&e))
        };
        match liveness::answered(self.cfg.rpc_timeout, || self.heard.get(), pong).await {
            Ok((answer, extensions)) => {
                if extensions > 0 {
                    self.counters
                        .upstream_ping_extensions
                        .add(u64::from(extensions));
                }
                answer.map(drop)
            }
            Err(Silent) => {
                self.counters.upstream_ping_timeouts.inc();
                Err(Status::new(
                    Code::Unavailable,
                    "ws-api did not answer an HTTP/2 ping",
                ))
            }
        }
    }

    async fn stream(
        &self,
        channel: &Channel,
        wakes: &Wakes,
        downstream: &impl Downstream,
    ) -> Status {
        let first = self.unacked.borrow().first().unwrap_or(self.next_seq.get());
        let first = first.to_string();
        let metadata = [
            ("x-gateway-ip", self.cfg.identity.as_str()),
            ("x-gateway-epoch", self.cfg.epoch.as_str()),
            ("x-gateway-seq", first.as_str()),
            ("x-gateway-downstream-acks", "1"),
        ];
        // Waits only for a stream slot on a fresh connection: bounded all the same.
        let opened = with_deadline(self.cfg.rpc_timeout, channel.streaming(EXCHANGE, &metadata));
        let (send, response) = match opened.await {
            Ok(s) => s,
            Err(e) => return e,
        };
        self.up_since.set(Some(Instant::now()));
        self.set_up(true);
        info!(upstream = %self.addr, identity = %self.cfg.identity, "ws-api stream up");
        // The node may have restarted with its presence empty.
        self.reassert.request();
        let inbound = async {
            match Streaming::new(response, channel.max_message()).await {
                Ok(mut inbound) => {
                    let epoch = inbound.header("x-api-epoch");
                    self.received.borrow_mut().numbering(epoch);
                    self.read(&mut inbound, downstream).await
                }
                Err(e) => e,
            }
        };
        let acks = self.acknowledge(&wakes.ack);
        future::or(self.write(send, &wakes.write), future::or(inbound, acks)).await
    }

    /// Writes again what ws-api did not acknowledge before the last break,
    /// then whatever sessions buffer, as large writes, respecting flow control.
    async fn write(&self, mut send: SendStream<Bytes>, wake: &LocalReceiver<()>) -> Status {
        let again = self.unacked.borrow().resend();
        for (bytes, msgs) in again {
            if let Err(e) = send_all(&mut send, bytes).await {
                return e;
            }
            self.counters.upstream_resent.add(msgs);
        }
        let mut last_write: Option<Instant> = None;
        loop {
            if self.buffer.borrow().is_empty() {
                if self.closing.get() {
                    // End our half; the read side finishes when ws-api ends its half.
                    let _ = send.send_data(Bytes::new(), true);
                    return future::pending().await;
                }
                if wake.recv().await.is_none() {
                    return Status::new(Code::Internal, "upstream wake channel closed");
                }
            }
            self.gather(last_write).await;
            last_write = Some(Instant::now());
            let (bytes, msgs) = self.take_buffer();
            if bytes.is_empty() {
                continue;
            }
            // Numbered and kept before the write: if it fails half-way, the
            // break settles it like the rest.
            self.written(&bytes, msgs);
            if let Err(e) = send_all(&mut send, bytes).await {
                return e;
            }
        }
    }

    /// Hands messages from ws-api downstream (to the router) until the stream fails;
    /// takes the stream's acknowledgements itself.
    async fn read(&self, inbound: &mut Streaming, downstream: &impl Downstream) -> Status {
        loop {
            let next = inbound.message().await;
            self.heard.set(self.heard.get() + 1);
            match next {
                Ok(Some(bytes)) => match Msg::decode(bytes) {
                    Ok(msg) => match ack_of(&msg) {
                        Some(seq) => self.acked(seq),
                        // Numbered like the rest: counted received first.
                        None if !self.fresh(&msg) => {}
                        None if super::reassert::asked(&msg) => self.reassert.request(),
                        None => downstream.deliver(msg),
                    },
                    Err(e) => {
                        self.counters.lose(Loss::BadDownstream, 1);
                        warn!(error = %e, "undecodable Msg from ws-api");
                    }
                },
                Ok(None) => return Status::new(Code::Unavailable, "ws-api ended the stream"),
                Err(e) => return e,
            }
        }
    }

    /// Whether `msg` is new (not written again after a break), and asks for
    /// its acknowledgement when ws-api numbers.
    fn fresh(&self, msg: &Msg) -> bool {
        let mut received = self.received.borrow_mut();
        let arrival = received.receive(msg.seq);
        let pending = received.pending();
        drop(received);
        match arrival {
            Arrival::Unnumbered => return true,
            Arrival::Fresh { missed: 0 } => {}
            Arrival::Fresh { missed } => {
                self.counters.lose(Loss::DownstreamGap, missed);
                warn!(upstream = %self.addr, missed, "ws-api skipped numbers of this core's messages");
            }
            Arrival::Duplicate => self.counters.downstream_duplicates.inc(),
        }
        if pending >= ACK_AFTER {
            self.send_ack();
        } else if pending > 0 {
            // The acknowledger sends within ACK_EVERY (a wake-up already
            // pending holds the channel's one slot).
            let _ = self.ack_due.try_send(());
        }
        arrival != Arrival::Duplicate
    }

    /// Acknowledges what was received, within `ACK_EVERY` of being asked to.
    async fn acknowledge(&self, due: &LocalReceiver<()>) -> Status {
        loop {
            if due.recv().await.is_none() {
                return Status::new(Code::Internal, "acknowledgement channel closed");
            }
            glommio::timer::sleep(ACK_EVERY).await;
            self.send_ack();
        }
    }

    /// Writes an acknowledgement of everything received, if anything waits.
    fn send_ack(&self) {
        let Some(due) = self.received.borrow_mut().ack() else {
            return;
        };
        let ack = Ack {
            seq: due.seq,
            epoch: due.epoch,
        };
        let msg = Msg {
            server: self.cfg.identity.clone(),
            control: Some(Control {
                op: Some(Op::Ack(ack)),
            }),
            ..Msg::default()
        };
        self.append_own(&msg);
        self.counters.downstream_acked.add(due.newly);
    }

    /// Lets messages gather until `--upstream-flush-interval` has passed since
    /// the last write. Each write to ws-api on loopback costs the core the
    /// receiver's TCP processing and a cross-CPU wake-up of ws-api; batching
    /// bounds that by time instead of by message count (docs/benchmarks.md),
    /// and adds no delay after a quiet spell.
    async fn gather(&self, last_write: Option<Instant>) {
        let Some(due) = last_write.map(|at| at + self.cfg.flush_interval) else {
            return;
        };
        let now = Instant::now();
        if due > now && self.buffer.borrow().len() < FLUSH_BYTES && !self.closing.get() {
            glommio::timer::sleep(due - now).await;
        }
    }
}

/// The sequence number a stream acknowledgement carries (no sid, `Control.Ack`).
fn ack_of(msg: &Msg) -> Option<u64> {
    match msg.control.as_ref().and_then(|c| c.op.as_ref()) {
        Some(Op::Ack(ack)) if msg.sid.is_empty() => Some(ack.seq),
        _ => None,
    }
}

/// Buffered bytes that are worth a write without waiting for the interval.
const FLUSH_BYTES: usize = 64 * 1024;

/// A stream that lived this long was a recovery: backoff and logging start afresh.
const STABLE_AFTER: Duration = Duration::from_secs(1);

/// How often a node that stays down is logged again at warn.
const REMIND_EVERY: Duration = Duration::from_secs(60);

/// What this core last logged about a node that is down.
struct Down {
    since: Instant,
    reminded: Instant,
    attempts: u64,
    reason: Status,
}

/// Writes `data` as flow control allows: h2 would otherwise buffer it all.
async fn send_all(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), Status> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let capacity = loop {
            let cap = send.capacity();
            if cap > 0 {
                break cap;
            }
            match future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Status::from_h2(&e)),
                None => return Err(Status::new(Code::Unavailable, "stream closed")),
            }
        };
        let part = data.split_to(capacity.min(data.len()));
        send.send_data(part, false)
            .map_err(|e| Status::from_h2(&e))?;
    }
    Ok(())
}
