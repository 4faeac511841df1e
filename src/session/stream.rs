//! A client connection, plain or TLS: one type for the upgrade, the session
//! and tungstenite to work on.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};
use futures_rustls::server::TlsStream;

use crate::timeout::within;
use glommio::net::TcpStream;

pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// Reads and drops what the client still sends, until it closes, has
    /// been quiet for 100 ms, or `limit` has passed: its Close, if any, is
    /// among what was dropped. Used when the gateway ends a connection whose
    /// bytes it no longer parses, so that closing the socket with unread
    /// data does not send RST (which can overtake the Close frame).
    pub async fn discard_until_quiet(&mut self, limit: Duration) {
        const QUIET: Duration = Duration::from_millis(100);
        let mut buf = [0u8; 2048];
        let drain = async {
            while let Some(Ok(n)) = within(QUIET, self.read(&mut buf)).await
                && n > 0
            {}
        };
        within(limit, drain).await;
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_close(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
