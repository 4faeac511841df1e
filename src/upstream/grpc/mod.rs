//! gRPC over HTTP/2, split as tonic splits it: [`codec`] frames messages
//! with no I/O, [`status`] maps trailers and transport errors to a
//! [`Status`], and [`client`] drives h2 over a glommio socket.

pub mod client;
pub mod codec;
pub mod status;

pub use client::{Channel, ChannelConfig, Streaming};
pub use status::{Code, Status};
