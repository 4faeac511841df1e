//! Per-core counters: plain `Cell`s owned by one core, so counting costs a
//! load and a store, never an atomic. Every message the gateway does not
//! deliver is counted here under a [`Loss`] reason, and every refused
//! upgrade under a [`Reject`] reason.

use std::cell::Cell;

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
}

impl Reject {
    pub const ALL: [Reject; 8] = [
        Reject::BadRequest,
        Reject::NotFound,
        Reject::HeaderTooLarge,
        Reject::Timeout,
        Reject::MissingToken,
        Reject::Unauthorized,
        Reject::UpstreamUnavailable,
        Reject::Overloaded,
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
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Client → ws-api: the core's upstream buffer was full (ws-api down or slow).
    UpstreamBufferFull,
    /// Client → ws-api: handed to a stream that broke before it was sent.
    UpstreamBroken,
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
        Loss::UpstreamBroken,
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
            Loss::UpstreamBroken => "upstream_broken",
            Loss::BadFrame => "bad_frame",
            Loss::SendQueueFull => "send_queue_full",
            Loss::UnknownSid => "unknown_sid",
            Loss::ForeignSid => "foreign_sid",
            Loss::MeshFull => "mesh_full",
            Loss::BadDownstream => "bad_downstream",
        }
    }
}

/// One core's counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub online: Cell<u64>,
    pub input_bytes: Cell<u64>,
    pub output_bytes: Cell<u64>,
    pub messages_in: Cell<u64>,
    pub messages_out: Cell<u64>,
    pub handshakes: Cell<u64>,
    pub upstream_reconnects: Cell<u64>,
    rejects: [Cell<u64>; Reject::ALL.len()],
    drops: [Cell<u64>; Loss::ALL.len()],
}

impl Counters {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }

    pub fn reject(&self, r: Reject) {
        Self::add(&self.rejects[r as usize], 1);
    }

    pub fn lose(&self, d: Loss, n: u64) {
        Self::add(&self.drops[d as usize], n);
    }

    pub fn rejects(&self, r: Reject) -> u64 {
        self.rejects[r as usize].get()
    }

    pub fn lost(&self, d: Loss) -> u64 {
        self.drops[d as usize].get()
    }
}
