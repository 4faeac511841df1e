//! The accept loop of one core, and each connection's task: TLS, then the
//! upgrade ([`crate::edge::upgrade`]), then the session until it ends.
//!
//! A connection's error is logged where its task ends; nothing a client does
//! stops the accept loop, and accept failures (such as running out of file
//! descriptors) back off instead of spinning.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use tracing::{Instrument, debug, field, info_span, warn};

use crate::edge::upgrade::{Accept, upgrade};
use crate::metrics::Reject;
use crate::session::stream::ClientStream;
use crate::timeout::within;

/// Binds this core's listening socket. SO_REUSEPORT lets every core bind
/// the same address (the kernel spreads connections over them);
/// SO_REUSEADDR lets a restarted gateway bind at once although its port
/// still holds TIME_WAIT sockets of the connections it closed (a WebSocket
/// server closes TCP first). Neither lets a second gateway share a port a
/// live one listens on: the server probes for that before the cores bind.
#[allow(unsafe_code)]
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::os::fd::IntoRawFd;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: the descriptor is a bound, listening TCP socket that we own
    // and hand over whole; nothing else closes it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(socket.into_raw_fd()) })
}

/// The accept queue of each core's listener (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default). 1024 overflowed in the resume
/// storm (`make bench`, 10,000 clients reconnecting at once to one core:
/// 4,497 SYNs dropped and retried a second later; bench/results/2026-11-25-vm-resume.md).
const LISTEN_BACKLOG: i32 = 4096;

/// Accepts connections forever, each on a task of its own.
pub async fn serve(core: Rc<Accept>, listener: TcpListener) {
    let id = core.id;
    accept_loop(
        id,
        || listener.accept(),
        |stream| {
            glommio::spawn_local(connection(Rc::clone(&core), stream)).detach();
        },
    )
    .await
}

/// The first wait after a failed accept; it doubles up to [`MAX_BACKOFF`]
/// while accepts keep failing, and a success starts it over.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// [`serve`]'s loop over any source of connections, so that a unit test
/// can make accepts fail (running out of descriptors cannot be staged on a
/// real listener without starving the test process).
pub(crate) async fn accept_loop<S, E, F>(
    core: usize,
    mut accept: impl FnMut() -> F,
    mut start: impl FnMut(S),
) where
    F: Future<Output = Result<S, E>>,
    E: std::fmt::Display,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        match accept().await {
            Ok(stream) => {
                backoff = FIRST_BACKOFF;
                start(stream);
            }
            Err(e) => {
                warn!(core, error = %e, ?backoff, "accept failed; backing off");
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Not an `async fn`: one would keep `core` and `tcp` a second time in
/// every connection's task (rust-lang/rust#62958).
pub(crate) fn connection(core: Rc<Accept>, tcp: TcpStream) -> impl Future<Output = ()> {
    let peer = tcp.peer_addr().ok();
    let span = info_span!("conn", core = core.id, peer = ?peer, sid = field::Empty);
    async move {
        let stream = match &core.tls {
            None => ClientStream::Plain(tcp),
            Some(tls) => {
                // Boxed: the handshake's state (a whole rustls connection)
                // would otherwise stay in every connection's task, TLS or not
                // (3 KiB per connection, measured).
                let accept = async {
                    let accept =
                        async { tls.acceptor().accept(tcp).await.map_err(|e| e.to_string()) };
                    let accepted = within(core.session.config.handshake_timeout, accept).await;
                    let tls =
                        accepted.unwrap_or_else(|| Err("TLS handshake timed out".to_owned()))?;
                    Ok::<_, String>(ClientStream::Tls(Box::new(tls)))
                };
                match Box::pin(accept).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        core.session.counters.reject(Reject::Tls);
                        debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                }
            }
        };
        // Boxed: the upgrade's state (read buffer, Connect call, TLS accept)
        // would otherwise stay in every session's task for its whole life.
        let Some(session) = Box::pin(upgrade(&core, stream, peer)).await else {
            return;
        };
        let end = session.run().await;
        debug!(%end, "session ended");
    }
    .instrument(span)
}
