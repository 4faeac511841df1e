//! The edge: a core's accept loop and everything between a TCP connection
//! and a running [`crate::session::Session`] (TLS, the HTTP upgrade and its
//! refusals).
//!
//! # Layout
//!
//! - [`listener`]: a core's accept loop and the path to a running session.
//! - [`upgrade`]: from a client stream to a session, or a refusal: every check before the 101.
//! - [`handshake`]: the HTTP upgrade, parsed with httparse, refused with a status.
//! - [`tls`]: wss:// with rustls, its certificate reloadable.

pub mod handshake;
pub(crate) mod listener;
pub(crate) mod tls;
pub(crate) mod upgrade;

#[cfg(test)]
mod handshake_tests;
#[cfg(test)]
mod listener_tests;
