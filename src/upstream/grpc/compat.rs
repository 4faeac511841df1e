//! The one place where glommio's sockets meet tokio's I/O traits.
//!
//! h2 is written against `tokio::io::{AsyncRead, AsyncWrite}`, glommio's
//! sockets implement the `futures-io` traits; `tokio_util::compat` bridges
//! them without a tokio runtime. Everything else in the gateway stays on
//! glommio's own types.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use glommio::net::TcpStream;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

/// A glommio TCP stream usable where tokio I/O is expected.
pub type TokioTcp = Compat<TcpStream>;

/// Connects to `addr` with Nagle off: gRPC frames are coalesced by the
/// caller, so delaying them in the kernel only adds latency (measured:
/// ~22k msg/s with Nagle on versus millions with it off).
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TokioTcp> {
    let stream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream.compat())
}
