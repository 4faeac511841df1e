//! The one place where glommio's sockets meet tokio's I/O traits.
//!
//! h2 is written against `tokio::io::{AsyncRead, AsyncWrite}`, glommio's
//! sockets implement the `futures-io` traits; `tokio_util::compat` bridges
//! them without a tokio runtime. Everything else in the gateway stays on
//! glommio's own types.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_rustls::client::TlsStream;
use glommio::net::TcpStream;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use super::tls::UpstreamTls;
use crate::stream::MaybeTls;

/// A glommio TCP stream, plain or under TLS, usable where tokio I/O is
/// expected.
pub type TokioTcp = Compat<MaybeTls<TlsStream<TcpStream>>>;

/// Connects to `addr` with Nagle off: gRPC frames are coalesced by the
/// caller, so delaying them in the kernel only adds latency (measured:
/// ~22k msg/s with Nagle on versus millions with it off); then the TLS
/// handshake, with `tls`.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
) -> io::Result<TokioTcp> {
    let stream = TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    let Some(tls) = tls else {
        return Ok(MaybeTls::Plain(stream).compat());
    };
    let (connector, name) = tls.connector();
    let handshake = connector.connect(name, stream);
    let tls_stream = glommio::timer::timeout(timeout, async { Ok(handshake.await) })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(MaybeTls::Tls(Box::new(tls_stream)).compat())
}
