//! The one place where glommio's sockets meet tokio's I/O traits.
//!
//! h2 is written against `tokio::io::{AsyncRead, AsyncWrite}`, glommio's
//! sockets implement the `futures-io` traits; `tokio_util::compat` bridges
//! them without a tokio runtime. Everything else in the gateway stays on
//! glommio's own types.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_rustls::client::TlsStream;
use glommio::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use super::tls::UpstreamTls;

/// A glommio TCP stream, plain or under TLS, usable where tokio I/O is
/// expected.
pub enum TokioTcp {
    Plain(Compat<TcpStream>),
    Tls(Box<Compat<TlsStream<TcpStream>>>),
}

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
        return Ok(TokioTcp::Plain(stream.compat()));
    };
    let (connector, name) = tls.connector();
    let handshake = connector.connect(name, stream);
    let tls_stream = glommio::timer::timeout(timeout, async { Ok(handshake.await) })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    Ok(TokioTcp::Tls(Box::new(tls_stream.compat())))
}

impl AsyncRead for TokioTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TokioTcp::Plain(s) => Pin::new(s).poll_read(cx, buf),
            TokioTcp::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TokioTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TokioTcp::Plain(s) => Pin::new(s).poll_write(cx, buf),
            TokioTcp::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TokioTcp::Plain(s) => Pin::new(s).poll_flush(cx),
            TokioTcp::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TokioTcp::Plain(s) => Pin::new(s).poll_shutdown(cx),
            TokioTcp::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TokioTcp::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            TokioTcp::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            TokioTcp::Plain(s) => s.is_write_vectored(),
            TokioTcp::Tls(s) => s.is_write_vectored(),
        }
    }
}
