//! From a client stream to a [`Session`], or to a refusal the client is
//! told: the upgrade request, then every check in the order its cost rises
//! (origin, token, draining, connect rates, capacity, a slot, ws-api's
//! `Connect`, the per-user limit), then the 101.
//!
//! [`admit`] runs the checks and returns `Result<Admitted, Refusal>`; the
//! one caller that answers and counts a refusal is [`upgrade`]. Anything
//! taken before a refusal (a slot, an admission) is held by the
//! [`Claim`] and given back when it drops.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::{PerMessage, Role, WebSocketConfig};
use tracing::debug;

use crate::codec::Format;
use crate::codec::deflate::{self, Deflater};
use crate::codec::sid::{Instance, Sid};
use crate::config::{CompressionMode, RefuseInBand};
use crate::edge::handshake::{self, Refusal, Upgrade};
use crate::edge::tls::Tls;
use crate::metrics::Reject;
use crate::ratelimit::{PerIp, TokenBucket};
use crate::routing::sessions::SessionHandle;
use crate::session::claim::Claim;
use crate::session::context::SessionContext;
use crate::session::stream::ClientStream;
use crate::session::{Admitted, ResumePlan, Session};
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

/// Turns a client stream into a session, or answers and counts why not.
pub async fn upgrade(
    core: &Accept,
    mut stream: ClientStream,
    peer: Option<SocketAddr>,
) -> Option<Session> {
    let cfg = &core.session.config;
    let read = handshake::read_request(
        &mut stream,
        &cfg.paths,
        &cfg.subprotocols,
        cfg.handshake_timeout,
    );
    let mut req = match read.await {
        Ok(req) => req,
        Err(refusal) => {
            if let Some(refusal) = refusal {
                refuse(core, &mut stream, None, refusal).await;
            }
            return None;
        }
    };
    if cfg.compression == CompressionMode::Deflate {
        let policy = deflate::Policy {
            context_takeover: cfg.compression_context_takeover,
            window_bits: cfg.compression_window_bits,
        };
        req.deflate = deflate::negotiate(req.extensions.iter().map(String::as_str), policy);
    }
    let mut admitted = match admit(core, &req, peer).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            refuse(core, &mut stream, Some(&req), refusal).await;
            return None;
        }
    };
    if let Err(e) = handshake::switch(&mut stream, &req, admitted.claim.sid()).await {
        debug!(error = %e, "client left during the upgrade");
        return None;
    }
    let inflate: &'static dyn PerMessage = &deflate::INFLATE;
    let ws_config = core
        .ws_config
        .per_message(req.deflate.is_some().then_some(inflate));
    admitted.deflate = req.deflate.as_ref().map(|d| Box::new(Deflater::new(d)));
    let ws =
        WebSocketStream::from_partially_read(stream, req.leftover, Role::Server, Some(ws_config))
            .await;
    core.session.counters.handshakes.inc();
    debug!(uid = admitted.uid, "session started");
    Some(Session::new(Rc::clone(&core.session), ws, admitted))
}

/// Every check between a valid upgrade request and the 101.
async fn admit(
    core: &Accept,
    req: &Upgrade,
    peer: Option<SocketAddr>,
) -> Result<Admitted, Refusal> {
    let ctx = &core.session;
    let cfg = &ctx.config;
    // Before any Connect: a foreign page must not make ws-api see its users.
    handshake::check_origin(req.origin.as_deref(), &cfg.allowed_origins)?;
    let Some(token) = req.token.clone() else {
        return Err(Refusal::new(Reject::MissingToken, "missing token"));
    };
    limits(core, peer)?;
    let (handle, rx) =
        SessionHandle::new(cfg.send_queue, ctx.tick.get(), Arc::clone(&ctx.counters));
    let Some(slot) = ctx.sessions.insert(Rc::clone(&handle)) else {
        return Err(Refusal::new(Reject::Overloaded, "session table full"));
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
    let reply = ctx
        .upstream
        .connect(claim.sid(), token, since, req.device.as_ref())
        .await
        .map_err(|status| match status.code {
            Code::Unauthenticated | Code::PermissionDenied => Refusal::new(
                Reject::Unauthorized,
                format!("connect refused: {}", status.message),
            ),
            _ => Refusal::new(
                Reject::UpstreamUnavailable,
                format!("ws-api unavailable: {}", status.message),
            ),
        })?;
    let resume = match (reply.resume, &req.since) {
        (true, since) => Some(ResumePlan::Ask(since.clone(), req.device.clone())),
        (false, Some(_)) => Some(ResumePlan::Refused),
        (false, None) => None,
    };
    claim.admitted(reply.uid);
    if !ctx.admission.acquire(reply.uid).await {
        let why = format!(
            "too many connections for this user (limit {})",
            cfg.max_connections_per_user
        );
        return Err(Refusal::new(Reject::UserLimit, why));
    }
    claim.counted();
    // Before the session can be reached: a group message sent the moment
    // Connect returned must find it.
    for group in &reply.groups {
        ctx.sessions.join(slot, group);
    }
    Ok(Admitted {
        claim,
        handle,
        rx,
        uid: reply.uid,
        format: if req.protobuf {
            Format::Protobuf
        } else {
            Format::Json
        },
        resume,
        device: req.device.clone(),
        deflate: None,
    })
}

/// What refuses before anything is taken: shutdown, the connect rates
/// (per IP, then the core's), and the core's capacity.
fn limits(core: &Accept, peer: Option<SocketAddr>) -> Result<(), Refusal> {
    if core.draining.get() {
        return Err(Refusal::new(Reject::Overloaded, "gateway shutting down"));
    }
    let ip_limited = match (&core.per_ip_limit, peer) {
        (Some(limit), Some(peer)) => !limit.borrow_mut().allow(peer.ip()),
        _ => false,
    };
    // The core's bucket is asked only when the IP's allowed the connection:
    // one IP over its rate must not spend everyone's tokens.
    let core_limited = || {
        core.connect_limit
            .as_ref()
            .is_some_and(|l| !l.borrow_mut().allow())
    };
    if ip_limited || core_limited() {
        let why = "connection rate limit: retry later";
        return Err(Refusal::new(Reject::RateLimited, why));
    }
    if core.session.sessions.len() >= core.session.config.max_connections_per_core {
        return Err(Refusal::new(Reject::Overloaded, "too many connections"));
    }
    Ok(())
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
