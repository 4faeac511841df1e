//! Per-core counters, each written by its core alone and summed by the
//! admin endpoint at scrape time: counting costs a load and a store, never a
//! locked instruction or a shared cache line. Every message the gateway does not
//! deliver is counted here under a [`Loss`] reason, and every refused
//! upgrade under a [`Reject`] reason.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use strum::{EnumCount, EnumIter, IntoStaticStr};

/// Why an upgrade request got an HTTP error instead of a WebSocket. The
/// label is the variant's name in snake case; the tables that count them are
/// sized by `Reject::COUNT`, so a new variant cannot be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumCount, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Reject {
    BadRequest,
    NotFound,
    HeaderTooLarge,
    Timeout,
    MissingToken,
    Unauthorized,
    UpstreamUnavailable,
    Overloaded,
    RateLimited,
    UserLimit,
    #[strum(serialize = "origin_forbidden")]
    Forbidden,
    #[strum(serialize = "tls_handshake")]
    Tls,
}

/// Why a message was not delivered (label: the variant in snake case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumCount, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Loss {
    /// Client → ws-api: the core's upstream buffer was full (ws-api down or slow).
    UpstreamBufferFull,
    /// Client → ws-api: written to a ws-api that does not acknowledge, and
    /// not confirmed (by an answered HTTP/2 PING) when the stream broke.
    UpstreamUnconfirmed,
    /// Client → ws-api: the frame could not be decoded.
    BadFrame,
    /// ws-api → client: the session's send queue was full (slow consumer).
    SendQueueFull,
    /// ws-api → client: no live session has that sid.
    UnknownSid,
    /// ws-api → client: the sid was issued by another gateway instance.
    ForeignSid,
    /// ws-api → client: the cross-core channel to the owning core was full.
    MeshFull,
    /// ws-api → client: the `Msg` could not be decoded or had no payload.
    BadDownstream,
}

/// How a session's resume ended (docs/delivery.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumCount, EnumIter, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Resume {
    Resumed,
    Failed,
    TimedOut,
}

/// A unary call to ws-api, for its latency histogram (label: its gRPC method name).
#[derive(Debug, Clone, Copy, EnumCount, EnumIter, IntoStaticStr)]
pub enum Rpc {
    Connect,
    Disconnect,
    KeepAlive,
}

/// Upper bounds (seconds) of the unary-call latency buckets; one more
/// bucket catches everything slower.
pub const RPC_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram written by one core only (see [`Counter`]).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [Counter; RPC_BUCKETS.len() + 1],
    sum_us: Counter,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = RPC_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(RPC_BUCKETS.len());
        self.buckets[i].inc();
        self.sum_us.add(d.as_micros() as u64);
    }

    /// Per-bucket counts (not cumulative), the last one for +Inf.
    pub fn counts(&self) -> [u64; RPC_BUCKETS.len() + 1] {
        std::array::from_fn(|i| self.buckets[i].get())
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us.get() as f64 / 1e6
    }
}

/// A counter written by one core only and read by the scraper.
///
/// The owning core does a relaxed load and store (plain `mov`s on x86, no
/// locked instruction); a single writer cannot lose an increment. The
/// scraper's relaxed load may lag by an increment, which a scrape tolerates.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down, written by one core only (see [`Counter`]).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn add(&self, n: i64) {
        self.0.store(self.0.load(Relaxed) + n, Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn dec(&self) {
        self.add(-1);
    }

    pub fn set(&self, v: i64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Relaxed)
    }
}

/// One core's counters. Aligned so two cores' counters never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    /// Sessions open now.
    pub online: Gauge,
    pub input_bytes: Counter,
    pub output_bytes: Counter,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub handshakes: Counter,
    pub upstream_reconnects: Counter,
    /// Upstream messages ws-api acknowledged.
    pub upstream_acked: Counter,
    /// Upstream messages written again after a break (not acknowledged before it).
    pub upstream_resent: Counter,
    /// HTTP/2 pings ws-api left unanswered (connection torn down).
    pub upstream_ping_timeouts: Counter,
    /// GOAWAY ENHANCE_YOUR_CALM from ws-api: pings too frequent for its policy.
    pub upstream_ping_slowdowns: Counter,
    /// ws-api nodes this core's `ExchangeMsg` stream is established to.
    pub upstream_up: Gauge,
    /// ws-api nodes this core knows.
    pub upstream_nodes: Gauge,
    /// Buffered client messages moved from a lost ws-api node to a live one.
    pub upstream_failovers: Counter,
    /// Bytes waiting in this core's upstream buffers.
    pub upstream_buffered: Gauge,
    pub disconnect_failures: Counter,
    /// Messages waiting in this core's session send queues.
    pub send_queued: Gauge,
    /// Latency of unary calls to ws-api, by [`Rpc`].
    pub rpc: [Histogram; Rpc::COUNT],
    /// Sessions closed because ws-api asked (Kick / Control.Close).
    pub kicks: Counter,
    /// Group or broadcast messages fanned out on this core.
    pub fan_outs: Counter,
    /// Sessions closed for not answering keepalive pings.
    pub keepalive_timeouts: Counter,
    /// Sessions closed for sending faster than --max-inbound-rate.
    pub inbound_rate_closes: Counter,
    /// Sessions closed for sending bad frames faster than error frames answer them.
    pub bad_frame_closes: Counter,
    /// `{"type":"ack","id"}` frames written to clients: ws-api received their message.
    pub client_acks: Counter,
    /// Client messages marked `resent` (sent again after a reconnect).
    pub client_resent: Counter,
    /// Acks marked `duplicate`: ws-api had that message already.
    pub client_duplicates: Counter,
    resumes: [Counter; Resume::COUNT],
    rejects: [Counter; Reject::COUNT],
    losses: [Counter; Loss::COUNT],
}

impl Counters {
    pub fn reject(&self, r: Reject) {
        self.rejects[r as usize].inc();
    }

    pub fn lose(&self, d: Loss, n: u64) {
        self.losses[d as usize].add(n);
    }

    pub fn resumed(&self, r: Resume) {
        self.resumes[r as usize].inc();
    }

    pub fn resumes(&self, r: Resume) -> u64 {
        self.resumes[r as usize].get()
    }

    pub fn rejects(&self, r: Reject) -> u64 {
        self.rejects[r as usize].get()
    }

    pub fn lost(&self, d: Loss) -> u64 {
        self.losses[d as usize].get()
    }
}
