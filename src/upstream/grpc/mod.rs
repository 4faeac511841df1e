//! gRPC over HTTP/2, split as tonic splits it: [`codec`] frames messages
//! with no I/O, [`status`] maps trailers and transport errors to a
//! [`Status`], and [`client`] drives h2 over a glommio socket.
//!
//! # Layout
//!
//! - [`client`]: a [`Channel`] (one HTTP/2 connection): unary calls and bidirectional streams.
//! - [`codec`]: gRPC message framing, no I/O.
//! - [`status`]: `grpc-status`/`grpc-message` and transport errors as a [`Status`].
//! - [`compat`]: the glommio ↔ tokio-io glue h2 needs (plain TCP, or TLS).
//! - [`tls`]: `--upstream https://…`: the rustls client settings (CA, mTLS certificate).

pub(crate) mod client;
pub mod codec;
pub(crate) mod compat;
pub(crate) mod status;
pub mod tls;

pub use client::{Channel, ChannelConfig, Credentials, Streaming};
pub use status::{Code, Status};
