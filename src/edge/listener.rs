//! The accept loop of one core, and the path from a TCP connection to a
//! running session: upgrade request → admission → `Connect` → 101 → session.
//!
//! A connection's error is logged where its task ends; nothing a client does
//! stops the accept loop, and accept failures (such as running out of file
//! descriptors) back off instead of spinning.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use glommio::net::{TcpListener, TcpStream};
use tracing::{Instrument, debug, field, info_span, warn};

use crate::codec::sid::{Instance, Sid};
use crate::codec::{Format, MsgPrefix};
use crate::config::RefuseInBand;
use crate::edge::handshake::{self, Refusal, Upgrade};
use crate::edge::tls::Tls;
use crate::metrics::Reject;
use crate::ratelimit::{PerIp, TokenBucket};
use crate::routing::sessions::SessionHandle;
use crate::session::claim::Claim;
use crate::session::context::SessionContext;
use crate::session::stream::ClientStream;
use crate::session::{ResumePlan, Session};
use crate::timeout::within;
use crate::upstream::grpc::Code;

/// What a core's accept path uses: the sessions' context, and what only
/// the upgrade needs (limits, TLS, the shutdown flag, tungstenite's settings).
pub struct Accept {
    /// The core's id: its sessions' sids carry it.
    pub id: usize,
    pub instance: Instance,
    /// What the sessions started here share.
    pub session: Rc<SessionContext>,
    pub ws_config: WebSocketConfig,
    /// Set once shutdown began: upgrades in flight are refused.
    pub draining: Rc<Cell<bool>>,
    /// This core's share of `--connect-rate`.
    pub connect_limit: Option<RefCell<TokenBucket>>,
    /// This core's share of `--per-ip-connect-rate`.
    pub per_ip_limit: Option<RefCell<PerIp>>,
    /// wss:// settings, shared by all cores (reloaded on SIGHUP).
    pub tls: Option<Arc<Tls>>,
}

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
        let Some(session) = Box::pin(upgrade(core, stream, peer)).await else {
            return;
        };
        let end = session.run().await;
        debug!(%end, "session ended");
    }
    .instrument(span)
}

/// Turns a TCP connection into a session, or refuses it with an HTTP status.
async fn upgrade(
    core: Rc<Accept>,
    mut stream: ClientStream,
    peer: Option<SocketAddr>,
) -> Option<Session> {
    let ctx = &core.session;
    let cfg = &ctx.config;
    let req = match handshake::read_request(
        &mut stream,
        &cfg.paths,
        &cfg.subprotocols,
        cfg.handshake_timeout,
    )
    .await
    {
        Ok(req) => req,
        Err(refusal) => {
            if let Some(r) = refusal {
                refuse(&core, &mut stream, None, r).await;
            }
            return None;
        }
    };
    // Before any Connect: a foreign page must not make ws-api see its users.
    if let Err(refusal) = handshake::check_origin(req.origin.as_deref(), &cfg.allowed_origins) {
        refuse(&core, &mut stream, Some(&req), refusal).await;
        return None;
    }
    let Some(token) = req.token.clone() else {
        let refusal = Refusal::new(Reject::MissingToken, "missing token");
        refuse(&core, &mut stream, Some(&req), refusal).await;
        return None;
    };
    if core.draining.get() {
        let refusal = Refusal::new(Reject::Overloaded, "gateway shutting down");
        refuse(&core, &mut stream, Some(&req), refusal).await;
        return None;
    }
    let ip_limited = match (&core.per_ip_limit, peer) {
        (Some(limit), Some(peer)) => !limit.borrow_mut().allow(peer.ip()),
        _ => false,
    };
    if ip_limited
        || core
            .connect_limit
            .as_ref()
            .is_some_and(|l| !l.borrow_mut().allow())
    {
        let refusal = Refusal::new(Reject::RateLimited, "connection rate limit: retry later");
        refuse(&core, &mut stream, Some(&req), refusal).await;
        return None;
    }
    if ctx.sessions.len() >= cfg.max_connections_per_core {
        let refusal = Refusal::new(Reject::Overloaded, "too many connections");
        refuse(&core, &mut stream, Some(&req), refusal).await;
        return None;
    }
    let (handle, rx) =
        SessionHandle::new(cfg.send_queue, ctx.tick.get(), Arc::clone(&ctx.counters));
    let Some(slot) = ctx.sessions.insert(Rc::clone(&handle)) else {
        let refusal = Refusal::new(Reject::Overloaded, "session table full");
        refuse(&core, &mut stream, Some(&req), refusal).await;
        return None;
    };
    let sid = Sid {
        instance: core.instance,
        core: core.id,
        slot,
    }
    .to_string();
    tracing::Span::current().record("sid", sid.as_str());
    // From here every refusal drops the claim, which gives back what it holds.
    let mut claim = Claim::new(Rc::clone(ctx), slot, sid);

    let since = req
        .since
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let (uid, resume) = match ctx.upstream.connect(claim.sid(), token, since).await {
        Ok(reply) if reply.resume => (reply.uid, Some(ResumePlan::Ask(req.since.clone()))),
        Ok(reply) if req.since.is_some() => (reply.uid, Some(ResumePlan::Refused)),
        Ok(reply) => (reply.uid, None),
        Err(status) => {
            let refusal = match status.code {
                Code::Unauthenticated | Code::PermissionDenied => Refusal::new(
                    Reject::Unauthorized,
                    format!("connect refused: {}", status.message),
                ),
                _ => Refusal::new(
                    Reject::UpstreamUnavailable,
                    format!("ws-api unavailable: {}", status.message),
                ),
            };
            refuse(&core, &mut stream, Some(&req), refusal).await;
            return None;
        }
    };
    claim.admitted(uid);
    if !ctx.admission.acquire(uid).await {
        let why = format!(
            "too many connections for this user (limit {})",
            cfg.max_connections_per_user
        );
        let refusal = Refusal::new(Reject::UserLimit, why);
        refuse(&core, &mut stream, Some(&req), refusal).await;
        return None;
    }
    claim.counted();
    if let Err(e) = handshake::switch(&mut stream, &req, claim.sid()).await {
        debug!(error = %e, "client left during the upgrade");
        return None;
    }
    let ws = WebSocketStream::from_partially_read(
        stream,
        req.leftover,
        Role::Server,
        Some(core.ws_config),
    )
    .await;
    ctx.counters.handshakes.inc();
    ctx.counters.online.inc();
    debug!(uid, "session started");
    let prefix = MsgPrefix::new(ctx.upstream.identity(), claim.sid());
    let inbound_limit = (cfg.max_inbound_rate > 0.0)
        .then(|| TokenBucket::new(cfg.max_inbound_rate, cfg.max_inbound_rate.max(1.0)));
    Some(Session {
        format: if req.protobuf {
            Format::Protobuf
        } else {
            Format::Json
        },
        core: Rc::clone(ctx),
        ws,
        rx,
        handle,
        claim,
        uid,
        prefix,
        inbound_limit,
        bad_frames: None,
        resume: resume.map(Box::new),
        resuming: None,
    })
}

/// Counts and answers a refusal: in-band for browsers (`--refuse-in-band`)
/// once the request is a valid upgrade, else with its HTTP status.
async fn refuse(core: &Accept, stream: &mut ClientStream, req: Option<&Upgrade>, refusal: Refusal) {
    core.session.counters.reject(refusal.kind);
    debug!(status = refusal.status, reason = %refusal.reason, "upgrade refused");
    let in_band = match core.session.config.refuse_in_band {
        RefuseInBand::Always => true,
        RefuseInBand::Never => false,
        RefuseInBand::Auto => req.is_some_and(|r| r.origin.is_some()),
    };
    handshake::refuse(stream, req, &refusal, in_band).await;
}
