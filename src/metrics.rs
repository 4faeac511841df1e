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
    /// ws-api → client: numbers ws-api skipped in its numbering of this
    /// core's messages (it did not keep them for a resend).
    DownstreamGap,
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

/// How a field of [`Counters`] is exposed: one series per entry of
/// [`SERIES`], read from every core at scrape time.
#[derive(Debug, Clone, Copy)]
pub enum Read {
    /// A counter, summed over the cores.
    Counter(fn(&Counters) -> &Counter),
    /// A counter of the Go gateway's, summed, typed `unknown` so that
    /// OpenMetrics keeps its name (a counter would gain `_total`).
    Legacy(fn(&Counters) -> &Counter),
    /// A gauge, summed over the cores.
    Gauge(fn(&Counters) -> &Gauge),
    /// A gauge, one series per core (label `core`).
    PerCore(fn(&Counters) -> &Gauge),
}

/// One exposed series: its name, its help, and the field it reads.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub help: &'static str,
    pub read: Read,
}

/// A counter family labelled by an enum's variants (losses, refusals,
/// resumes), or the RPC histogram by method.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub label: &'static str,
}

pub const REJECTS: Family = Family {
    name: "gateway_handshakes_rejected",
    help: "Upgrades refused, by reason.",
    label: "reason",
};
pub const RESUMES: Family = Family {
    name: "gateway_resumes",
    help: "Resumes of sessions that asked (or had unacknowledged messages), by outcome.",
    label: "outcome",
};
pub const LOSSES: Family = Family {
    name: "gateway_messages_lost",
    help: "Messages not delivered, by reason.",
    label: "reason",
};
pub const RPC_LATENCY: Family = Family {
    name: "gateway_upstream_rpc_duration_seconds",
    help: "Latency of unary calls to ws-api, by method.",
    label: "method",
};

/// Declares [`Counters`] and [`SERIES`] from one list: each field with its
/// type and the series it is exposed as (the first one's help is the
/// field's doc), so a counter cannot exist without its name and help, or be
/// named twice.
macro_rules! counters {
    ($($field:ident: $ty:ident => [$($read:ident($name:literal, $help:literal)),+ $(,)?]),+ $(,)?) => {
        /// One core's counters. Aligned so two cores' counters never share a cache line.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct Counters {
            $(
                #[doc = counters!(@first $($help),+)]
                pub $field: $ty,
            )+
            /// Latency of unary calls to ws-api, by [`Rpc`] ([`RPC_LATENCY`]).
            pub rpc: [Histogram; Rpc::COUNT],
            resumes: [Counter; Resume::COUNT],
            rejects: [Counter; Reject::COUNT],
            losses: [Counter; Loss::COUNT],
        }

        /// Every series read from one field of [`Counters`], in exposition order.
        pub const SERIES: &[Series] = &[
            $($(Series { name: $name, help: $help, read: Read::$read(|c| &c.$field) },)+)+
        ];
    };
    (@first $first:literal $(, $rest:literal)*) => { $first };
}

counters! {
    online: Gauge => [
        Gauge("gateway_websocket_online_totals", "Open WebSocket sessions."),
        PerCore("gateway_core_sessions", "Open sessions per core."),
    ],
    input_bytes: Counter => [Legacy("gateway_websocket_input_bytes", "Bytes of client messages received.")],
    output_bytes: Counter => [Legacy("gateway_websocket_output_bytes", "Bytes of messages sent to clients.")],
    upstream_acked: Counter => [Counter(
        "gateway_upstream_acked_messages",
        "Messages ws-api acknowledged having received: client messages and the core's own acknowledgements."
    )],
    upstream_resent: Counter => [Counter(
        "gateway_upstream_resent_messages",
        "Client messages written to ws-api again after a break, not acknowledged before it."
    )],
    downstream_acked: Counter => [Counter(
        "gateway_downstream_acked_messages",
        "Messages from ws-api this gateway acknowledged having received (ws-api numbers them)."
    )],
    downstream_duplicates: Counter => [Counter(
        "gateway_downstream_duplicate_messages",
        "Messages from ws-api dropped as received before: written again after a break, not acknowledged before it."
    )],
    upstream_ping_timeouts: Counter => [Counter(
        "gateway_upstream_ping_timeouts",
        "HTTP/2 pings ws-api left unanswered."
    )],
    upstream_ping_extensions: Counter => [Counter(
        "gateway_upstream_ping_extensions",
        "Waits for a ping's answer extended because the core itself had not run (its timer fired late) or ws-api was still sending."
    )],
    upstream_ping_slowdowns: Counter => [Counter(
        "gateway_upstream_ping_slowdowns",
        "Times ws-api refused our HTTP/2 pings as too frequent (GOAWAY ENHANCE_YOUR_CALM); each doubles that node's ping interval."
    )],
    messages_in: Counter => [Counter("gateway_messages_in", "Client messages received.")],
    messages_out: Counter => [Counter("gateway_messages_out", "Messages written to clients.")],
    handshakes: Counter => [Counter("gateway_handshakes_accepted", "Upgrades completed.")],
    upstream_reconnects: Counter => [Counter("gateway_upstream_reconnects", "Reconnect attempts to ws-api.")],
    upstream_failovers: Counter => [Counter(
        "gateway_upstream_failover_messages",
        "Buffered client messages moved from a lost ws-api node to a live one."
    )],
    disconnect_failures: Counter => [Counter(
        "gateway_disconnect_failures",
        "Disconnect calls ws-api did not get."
    )],
    kicks: Counter => [Counter("gateway_kicks", "Sessions closed at ws-api's request.")],
    fan_outs: Counter => [Counter(
        "gateway_fan_outs",
        "Group and broadcast messages fanned out (per core)."
    )],
    keepalive_timeouts: Counter => [Counter(
        "gateway_keepalive_timeouts",
        "Sessions closed for not answering pings."
    )],
    inbound_rate_closes: Counter => [Counter(
        "gateway_inbound_rate_closes",
        "Sessions closed for exceeding --max-inbound-rate."
    )],
    deflated_out: Counter => [Counter(
        "gateway_compressed_messages_out",
        "Messages written to clients compressed (permessage-deflate)."
    )],
    deflate_in_bytes: Counter => [Counter(
        "gateway_compression_out_before_bytes",
        "Bytes of the messages written compressed, before compression."
    )],
    deflate_out_bytes: Counter => [Counter(
        "gateway_compression_out_after_bytes",
        "Bytes of the messages written compressed, after compression."
    )],
    inflated_in: Counter => [Counter(
        "gateway_compressed_messages_in",
        "Client messages received compressed (permessage-deflate)."
    )],
    inflate_in_bytes: Counter => [Counter(
        "gateway_compression_in_before_bytes",
        "Bytes of the compressed client messages as received."
    )],
    inflate_out_bytes: Counter => [Counter(
        "gateway_compression_in_after_bytes",
        "Bytes of the compressed client messages once inflated."
    )],
    inflate_failures: Counter => [Counter(
        "gateway_inflate_failures",
        "Sessions closed with 1007 for compressed data that does not inflate."
    )],
    inflate_bombs: Counter => [Counter(
        "gateway_inflate_too_big",
        "Sessions closed with 1009 for a compressed message that inflates past --max-message-size."
    )],
    bad_frame_closes: Counter => [Counter(
        "gateway_bad_frame_closes",
        "Sessions closed with 1008 for more bad frames than error frames answer (10, then 1/s)."
    )],
    client_acks: Counter => [Counter(
        "gateway_client_acks",
        "Acks written to clients for their messages with an id (ws-api received them)."
    )],
    client_resent: Counter => [Counter(
        "gateway_client_resent",
        "Client messages marked resent (sent again after a reconnect)."
    )],
    client_duplicates: Counter => [Counter(
        "gateway_client_duplicates",
        "Acks marked duplicate: ws-api had received that message already."
    )],
    presence_reasserts: Counter => [Counter(
        "gateway_presence_reasserts",
        "Passes re-registering a core's sessions with a ws-api node (its stream came back, or it sent Control.Reassert: its store lost its data)."
    )],
    presence_reasserted: Counter => [Counter(
        "gateway_presence_reasserted_sessions",
        "Sessions re-registered with ws-api (KeepAlive) by those passes."
    )],
    presence_reassert_failures: Counter => [Counter(
        "gateway_presence_reassert_failures",
        "Sessions a pass could not re-register (the call failed, or the node's stream dropped mid-pass): unreachable by Push until the next pass (the next stream up) or their client's HEARTBEAT."
    )],
    upstream_store_down: Gauge => [PerCore(
        "gateway_upstream_store_down",
        "ws-api nodes up whose grpc.health.v1 status is NOT_SERVING (their presence store is down)."
    )],
    upstream_up: Gauge => [PerCore(
        "gateway_upstream_up",
        "ws-api nodes the core's ExchangeMsg stream is up to."
    )],
    upstream_unacked: Gauge => [PerCore(
        "gateway_upstream_unacked_messages",
        "Messages the core wrote to ws-api that ws-api has not acknowledged (written again after a break)."
    )],
    upstream_nodes: Gauge => [PerCore("gateway_upstream_nodes", "ws-api nodes the core knows.")],
    upstream_buffered: Gauge => [PerCore(
        "gateway_upstream_buffered_bytes",
        "Bytes waiting for the core's stream."
    )],
    send_queued: Gauge => [PerCore(
        "gateway_send_queue_messages",
        "Messages waiting in session send queues."
    )],
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
