//! ws-gateway: a thread-per-core WebSocket gateway that exchanges client
//! messages with a business backend (ws-api) over gRPC streams.
//!
//! # Layout
//!
//! The modules follow a message's path, and each imports only modules
//! listed below it (`tests/layout.rs` checks it). Each task takes the
//! narrow context it uses, so it can run on a glommio executor in a unit
//! test: the accept path a [`listener::Accept`], a session and its claim a
//! [`context::SessionContext`], keepalive a [`keepalive::Keepalive`], drain
//! a [`drain::Drain`]. The upstream hands downstream messages to an
//! [`upstream::Downstream`], which [`router`] implements. Unit tests that
//! would take a module past ~500 lines live in `<module>_tests.rs`
//! (session, listener, handshake), declared `#[cfg(test)]` beside their
//! module below; they and `testing` may import anything.
//!
//! - [`server`]: the whole gateway in one call: shards, admin listener, resolver, drain.
//! - [`shard`]: one pinned glommio executor per core; builds its state and starts its tasks.
//! - [`listener`]: a core's accept loop and the path to a running session.
//! - [`drain`]: a core's graceful shutdown (1001 to every session, then the stream).
//! - [`keepalive`]: server pings, one timer per core.
//! - [`session`]: one client's read/write loop after the upgrade.
//! - [`claim`]: what a connection holds (slot, admission, per-user count), given back by one guard.
//! - [`context`]: what a core's sessions share (config, counters, table, upstream, admission).
//! - [`admission`]: per-user limit (owner core per uid).
//! - [`router`]: downstream `Msg` → owning core → session.
//! - [`mesh`]: receiving from the cross-core channel meshes.
//! - [`sessions`]: a core's sid → session table, groups, and the bounded send queues.
//! - [`config`]: the one `Config` struct (flags and env), validated once.
//! - [`handshake`]: the HTTP upgrade, parsed with httparse, refused with a status.
//! - [`resume`]: positions, and what a session holds back while ws-api replays (docs/delivery.md).
//! - [`tls`], [`stream`]: wss:// with rustls (reloadable), plain or TLS client streams.
//! - [`ratelimit`]: token buckets.
//! - [`codec`], [`sid`]: pure encodings (client frames, session ids).
//! - [`upstream`]: a core's HTTP/2 connection, `ExchangeMsg` stream and unary calls.
//! - [`compat`]: the glommio ↔ tokio-io glue h2 needs.
//! - [`timeout`]: the one helper that bounds a wait by a timer.
//! - [`hash`]: the two stable hashes (keys, rendezvous scores).
//! - [`admin`], [`exposition`], [`procstat`]: `/metrics`, `/healthz`, `/readyz` on their own thread.
//! - [`metrics`]: per-core counters, every loss under a reason.
//! - [`proto`]: the wire types, from the `ws-proto` crate (generated from `proto/` once, shared with ws-api and ws-bench).
//!
// Three justified exceptions, allowed where they stand: glommio takes
// sockets as raw descriptors, and glibc's malloc_trim has no safe wrapper.
#![deny(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod claim;
pub mod codec;
pub mod compat;
pub mod config;
pub mod context;
pub mod drain;
pub mod exposition;
pub mod handshake;
#[cfg(test)]
mod handshake_tests;
pub mod hash;
pub mod keepalive;
pub mod listener;
#[cfg(test)]
mod listener_tests;
pub mod mesh;
pub mod metrics;
pub mod procstat;
pub mod ratelimit;
pub mod resume;
pub mod router;
pub mod server;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod sessions;
pub mod shard;
pub mod sid;
pub mod stream;
#[cfg(test)]
mod testing;
pub mod timeout;
pub mod tls;
pub mod upstream;

/// The wire types, generated from `proto/` once, in the `ws-proto` crate
/// that ws-api and ws-bench share.
pub use ws_proto as proto;
