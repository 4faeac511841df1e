//! ws-api: the reference business backend for ws-gateway, on tonic.
//!
//! It proves the gateway's hand-built gRPC client against an independent
//! implementation, and gives `make run`, the tests and the benchmarks a
//! backend with known behaviour.
//!
//! # Layout
//!
//! - [`presence`]: who is online: uid → sessions, (server, sid) → uid;
//!   in memory, or in Redis shared by several ws-api nodes (`--redis`).
//! - [`streams`]: the open `ExchangeMsg` streams, by gateway core identity.
//! - [`service`]: `ExchangeService` on top of both.
//! - [`biz`]: `BizMsgService`: push, kick, groups, broadcast.
//! - [`history`]: each user's stream of pushed messages (positions,
//!   acknowledged position, client message ids), in memory or Redis.
//! - [`delivery`]: positions on pushes, resume replays, acknowledgements
//!   both ways and redelivery (docs/delivery.md).
//! - [`acks`]: numbering, de-duplication and acknowledgement of a
//!   gateway core's upstream messages.
//! - [`chat`]: the demo's chat rooms (`--handler chat`).
//! - [`Handler`]: what happens to each upstream message (echo, log,
//!   discard, or [`redis_stream`]: XADD to a Redis Stream per type).

pub mod acks;
pub mod biz;
pub mod chat;
pub mod delivery;
pub mod history;
pub mod presence;
pub mod redis_stream;
pub mod service;
pub mod streams;

/// Generated from `../proto` by `build.rs`.
pub mod proto {
    pub mod wsgateway {
        tonic::include_proto!("wsgateway");
    }
    pub mod wsapi {
        tonic::include_proto!("wsapi");
    }
}

/// What ws-api does with each message a gateway sends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Handler {
    /// Send it back down to the same sid.
    Echo,
    /// Log it at info.
    Log,
    /// Count it and drop it (for one-way benchmarks).
    Discard,
    /// Append it to the Redis Stream named by its type (needs `--redis`).
    RedisStream,
    /// The demo's chat rooms ([`chat`]).
    Chat,
}
