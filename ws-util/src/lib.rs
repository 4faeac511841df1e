//! ws-util: the few pieces that the gateway, ws-bench and the integration
//! tests all need, written once. It depends on std and rustix alone, so
//! ws-bench can use it and stay independent of the gateway it measures.
//!
//! # Layout
//!
//! Each module imports only modules listed below it (the workspace's
//! `tests/layout.rs` checks it); these two import nothing of each other.
//!
//! - [`frame`]: RFC 6455 frame headers, masked (client) or not (server).
//! - [`procfs`]: a process's CPU time and resident memory from /proc.

#![forbid(unsafe_code)]

pub mod frame;
pub mod procfs;
