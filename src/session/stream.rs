//! A client connection, plain or TLS: one type for the upgrade, the session
//! and tungstenite to work on.

use std::time::Duration;

use futures_lite::AsyncReadExt;
use futures_rustls::server::TlsStream;

use glommio::net::TcpStream;

use crate::stream::MaybeTls;
use crate::timeout::within;

/// A client's connection: plain, or the server side of rustls.
pub type ClientStream = MaybeTls<TlsStream<TcpStream>>;

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
