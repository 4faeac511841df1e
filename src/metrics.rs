//! Per-core counters, each written by its core alone and summed by the
//! admin endpoint at scrape time: counting costs a load and a store, never a
//! locked instruction or a shared cache line. Every message the gateway does not
//! deliver is counted here under a [`Loss`] reason, and every refused
//! upgrade under a [`Reject`] reason.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Why an upgrade request got an HTTP error instead of a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    Forbidden,
    Tls,
}

impl Reject {
    pub const ALL: [Reject; 12] = [
        Reject::BadRequest,
        Reject::NotFound,
        Reject::HeaderTooLarge,
        Reject::Timeout,
        Reject::MissingToken,
        Reject::Unauthorized,
        Reject::UpstreamUnavailable,
        Reject::Overloaded,
        Reject::RateLimited,
        Reject::UserLimit,
        Reject::Forbidden,
        Reject::Tls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reject::BadRequest => "bad_request",
            Reject::NotFound => "not_found",
            Reject::HeaderTooLarge => "header_too_large",
            Reject::Timeout => "timeout",
            Reject::MissingToken => "missing_token",
            Reject::Unauthorized => "unauthorized",
            Reject::UpstreamUnavailable => "upstream_unavailable",
            Reject::Overloaded => "overloaded",
            Reject::RateLimited => "rate_limited",
            Reject::UserLimit => "user_limit",
            Reject::Forbidden => "origin_forbidden",
            Reject::Tls => "tls_handshake",
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl Loss {
    pub const ALL: [Loss; 8] = [
        Loss::UpstreamBufferFull,
        Loss::UpstreamUnconfirmed,
        Loss::BadFrame,
        Loss::SendQueueFull,
        Loss::UnknownSid,
        Loss::ForeignSid,
        Loss::MeshFull,
        Loss::BadDownstream,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Loss::UpstreamBufferFull => "upstream_buffer_full",
            Loss::UpstreamUnconfirmed => "upstream_unconfirmed",
            Loss::BadFrame => "bad_frame",
            Loss::SendQueueFull => "send_queue_full",
            Loss::UnknownSid => "unknown_sid",
            Loss::ForeignSid => "foreign_sid",
            Loss::MeshFull => "mesh_full",
            Loss::BadDownstream => "bad_downstream",
        }
    }
}

/// A unary call to ws-api, for its latency histogram.
#[derive(Debug, Clone, Copy)]
pub enum Rpc {
    Connect,
    Disconnect,
    KeepAlive,
}

impl Rpc {
    pub const ALL: [Rpc; 3] = [Rpc::Connect, Rpc::Disconnect, Rpc::KeepAlive];

    pub fn name(self) -> &'static str {
        match self {
            Rpc::Connect => "Connect",
            Rpc::Disconnect => "Disconnect",
            Rpc::KeepAlive => "KeepAlive",
        }
    }
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

    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
}

/// One core's counters. Aligned so two cores' counters never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    /// Sessions open now (a gauge).
    pub online: Counter,
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
    /// ws-api nodes this core's `ExchangeMsg` stream is established to (a gauge).
    pub upstream_up: Counter,
    /// ws-api nodes this core knows (a gauge).
    pub upstream_nodes: Counter,
    /// Buffered client messages moved from a lost ws-api node to a live one.
    pub upstream_failovers: Counter,
    /// Bytes waiting in this core's upstream buffers (a gauge).
    pub upstream_buffered: Counter,
    pub disconnect_failures: Counter,
    /// Messages waiting in this core's session send queues (a gauge).
    pub send_queued: Counter,
    /// Latency of unary calls to ws-api, by [`Rpc`].
    pub rpc: [Histogram; Rpc::ALL.len()],
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
    rejects: [Counter; Reject::ALL.len()],
    losses: [Counter; Loss::ALL.len()],
}

impl Counters {
    pub fn reject(&self, r: Reject) {
        self.rejects[r as usize].inc();
    }

    pub fn lose(&self, d: Loss, n: u64) {
        self.losses[d as usize].add(n);
    }

    pub fn rejects(&self, r: Reject) -> u64 {
        self.rejects[r as usize].get()
    }

    pub fn lost(&self, d: Loss) -> u64 {
        self.losses[d as usize].get()
    }
}
