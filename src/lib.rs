//! ws-gateway: a thread-per-core WebSocket gateway that exchanges client
//! messages with a business backend (ws-api) over gRPC streams.
//!
//! # Layout
//!
//! The modules follow a message's path. One circle remains (issue 13):
//! [`shard`] defines the per-core `Core` and spawns [`listener`],
//! [`keepalive`] and [`drain`], which take the whole `Core` back; and
//! [`upstream`] hands downstream messages to [`router`]. Everything else
//! imports only what is listed below it.
//!
//! - [`config`]: the one `Config` struct (flags and env), validated once.
//! - [`shard`]: one pinned glommio executor per core; owns everything below.
//! - [`listener`]: a core's accept loop and the path to a running session.
//! - [`drain`]: a core's graceful shutdown (1001 to every session, then the stream).
//! - [`handshake`]: the HTTP upgrade, parsed with httparse, refused with a status.
//! - [`claim`]: what a connection holds (slot, admission, per-user count), given back by one guard.
//! - [`session`]: one client's read/write loop after the upgrade.
//! - [`resume`]: positions, and what a session holds back while ws-api replays (docs/delivery.md).
//! - [`sessions`]: a core's sid → session table, groups, and the bounded send queues.
//! - [`keepalive`]: server pings, one timer per core.
//! - [`admission`], [`ratelimit`]: per-user limit (owner core per uid), token buckets.
//! - [`router`]: downstream `Msg` → owning core → session.
//! - [`mesh`]: receiving from the cross-core channel meshes.
//! - [`upstream`]: a core's HTTP/2 connection, `ExchangeMsg` stream and unary calls.
//! - [`codec`], [`sid`], [`hash`]: pure encodings (client frames, session ids) and the one hash.
//! - [`metrics`]: per-core counters, every loss under a reason.
//! - [`admin`], [`exposition`], [`procstat`]: `/metrics`, `/healthz`, `/readyz` on their own thread.
//! - [`compat`]: the glommio ↔ tokio-io glue h2 needs.
//! - [`timeout`]: the one helper that bounds a wait by a timer.
//! - [`tls`], [`stream`]: wss:// with rustls (reloadable), plain or TLS client streams.
//! - [`proto`]: types generated from `proto/` at build time.
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
pub mod drain;
pub mod exposition;
pub mod handshake;
pub mod hash;
pub mod keepalive;
pub mod listener;
pub mod mesh;
pub mod metrics;
pub mod procstat;
pub mod ratelimit;
pub mod resume;
pub mod router;
pub mod session;
pub mod sessions;
pub mod shard;
pub mod sid;
pub mod stream;
pub mod timeout;
pub mod tls;
pub mod upstream;

/// Generated from `proto/` by `build.rs` (protox + prost, no system protoc).
pub mod proto {
    pub mod wsgateway {
        include!(concat!(env!("OUT_DIR"), "/wsgateway.rs"));
    }
    pub mod wsapi {
        include!(concat!(env!("OUT_DIR"), "/wsapi.rs"));
    }
}
