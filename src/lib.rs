//! ws-gateway: a thread-per-core WebSocket gateway that exchanges client
//! messages with a business backend (ws-api) over gRPC streams.
//!
//! # Layout
//!
//! The folders follow a message's path, from the accept loop down to the
//! wire types, and each module imports only what is listed below it, here
//! or in its folder's own `# Layout` (`tests/layout.rs` checks it); a
//! folder's `mod.rs` also holds what its children share. Each task takes the
//! narrow context it uses, so it can run on a glommio executor in a unit
//! test: the accept path a [`edge::listener::Accept`], a session and its
//! claim a [`session::context::SessionContext`], keepalive a
//! [`shard::keepalive::Keepalive`], drain a [`shard::drain::Drain`]. The
//! upstream hands downstream messages to an [`upstream::Downstream`], which
//! [`routing::router`] implements. Unit tests that would take a module past
//! ~500 lines live in a `tests.rs` or `<module>_tests.rs` beside it,
//! declared `#[cfg(test)]`; they and `testing` may import anything.
//!
//! - [`server`]: the whole gateway in one call: shards, admin listener, resolver, drain.
//! - [`shard`]: one pinned glommio executor per core; builds its state and starts its tasks.
//! - [`edge`]: the accept loop, TLS and the HTTP upgrade: a TCP connection to a session.
//! - [`session`]: one client's read/write loop after the upgrade, and what it holds.
//! - [`routing`]: a core's session table, the router, per-user admission, the core mesh.
//! - [`codec`]: pure encodings (client frames, session ids).
//! - [`config`]: the one `Config` struct (flags, env, file), validated once.
//! - [`upstream`]: a core's HTTP/2 connection per ws-api node, its stream and unary calls.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz` on their own thread.
//! - [`metrics`]: per-core counters, every loss under a reason.
//! - [`ratelimit`]: token buckets.
//! - [`stream`]: a glommio TCP stream, plain or under TLS (clients' `wss://`, `--upstream https://`).
//! - [`timeout`]: the one helper that bounds a wait by a timer.
//! - [`hash`]: the two stable hashes (keys, rendezvous scores).
//! - [`proto`]: the wire types, from the `ws-proto` crate (generated from `proto/` once, shared with ws-api and ws-bench).
//!
//! `unsafe` is denied (`[workspace.lints]`) and allowed only where it
//! stands, with a SAFETY comment: glommio takes sockets as raw descriptors,
//! and glibc's malloc_trim has no safe wrapper.

pub(crate) mod admin;
pub mod codec;
pub mod config;
pub mod edge;
pub(crate) mod hash;
pub(crate) mod metrics;
pub(crate) mod ratelimit;
pub(crate) mod routing;
pub mod server;
pub(crate) mod session;
pub(crate) mod shard;
pub(crate) mod stream;
#[cfg(test)]
mod testing;
pub(crate) mod timeout;
pub mod upstream;

/// The wire types, generated from `proto/` once, in the `ws-proto` crate
/// that ws-api and ws-bench share.
pub use ws_proto as proto;
