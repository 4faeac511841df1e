//! [`Backend`], the parts composed (an [`Outbox`], [`Delivery`], the
//! upstream numbering, the chat rooms and the handler), and `ExchangeService`
//! on top of it: the `ExchangeMsg` stream pump, Connect, Disconnect and
//! KeepAlive. At the top of the layout: no other module imports it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use std::pin::Pin;
use tokio::sync::mpsc;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::Handler;
use crate::acks::{ACK_EVERY, Received, Sequence};
use crate::auth::expiry::Expiry;
use crate::auth::proxy::Who;
use crate::auth::{Auth, Refused};
use crate::chat::Rooms;
use crate::delivery::{Delivery, Upstream};
use crate::link::{Attached, Downstream, STREAM_QUEUE};
use crate::outbox::Outbox;
use crate::presence::{Presence, SessionKey, unavailable};
use crate::proto::wsapi::control::Op;
use crate::proto::wsapi::exchange_service_server::ExchangeService;
use crate::proto::wsapi::{
    ConnectReply, ConnectRequest, DisconnectReply, DisconnectRequest, KeepAliveReply,
    KeepAliveRequest, Msg,
};
use crate::proto::{DEVICE_RULE, Device};
use crate::redis_stream::Appender;

/// The parts, composed: what both services and the background tasks share.
#[derive(Debug)]
pub struct Backend {
    /// Presence, streams and counters.
    pub outbox: Arc<Outbox>,
    /// Upstream sequence numbers received, per gateway core.
    pub received: Received,
    pub handler: Handler,
    /// `MAXLEN ~` of the `redis-stream` handler's streams.
    pub stream_maxlen: usize,
    /// Positions, resume, acknowledgements (docs/delivery.md).
    pub delivery: Arc<Delivery>,
    /// `--handler chat`'s rooms.
    pub rooms: Rooms,
    /// How Connect checks tokens (`--auth`).
    pub auth: Auth,
    /// Sessions to close when their token expires.
    pub expiry: Arc<Expiry>,
}

impl Backend {
    pub fn new(
        handler: Handler,
        presence: Presence,
        stream_maxlen: usize,
        delivery: Delivery,
        hold: Duration,
        auth: Auth,
    ) -> Arc<Backend> {
        Arc::new(Backend {
            outbox: Arc::new(Outbox::new(presence, hold)),
            received: Received::default(),
            handler,
            stream_maxlen,
            delivery: Arc::new(delivery),
            rooms: Rooms::default(),
            auth,
            expiry: Arc::default(),
        })
    }

    /// Attaches a stream to `server`'s link and, with Redis presence, marks
    /// that gateway core alive at once (the sweeper must not purge sessions
    /// it connects before the next refresh). `peer`: how the gateway
    /// numbers (its epoch, and whether it acknowledges downstream).
    async fn register(&self, server: &str, tx: &Downstream, peer: &Peer) -> (u64, Attached) {
        let (id, attached) =
            self.outbox
                .streams
                .attach(server, tx.clone(), &peer.epoch, peer.downstream_acks);
        let stats = &self.outbox.stats;
        stats
            .downstream_resent
            .fetch_add(attached.resent as u64, Relaxed);
        stats
            .downstream_lost
            .fetch_add(attached.dropped as u64, Relaxed);
        if attached.resent > 0 || attached.dropped > 0 {
            info!(%server, resent = attached.resent, dropped_for_a_restarted_gateway = attached.dropped, "exchange stream attached");
        }
        if let Presence::Redis(redis) = &self.outbox.presence
            && let Err(err) = redis.mark_alive(&[server.to_owned()]).await
        {
            warn!(%server, error = %err, "cannot mark gateway core alive in redis");
        }
        (id, attached)
    }

    /// A gateway core's acknowledgement of what it received downstream.
    fn downstream_ack(&self, server: &str, msg: &Msg) -> bool {
        let Some(Op::Ack(ack)) = msg.control.as_ref().and_then(|c| c.op.as_ref()) else {
            return false;
        };
        if !msg.sid.is_empty() {
            return false;
        }
        if let Some(link) = self.outbox.streams.get(server) {
            link.ack(&ack.epoch, ack.seq);
            self.outbox.stats.downstream_acks.fetch_add(1, Relaxed);
        }
        true
    }

    /// Reads one gateway core's stream until it ends. `registered` is the
    /// identity it was registered under from its metadata, if any; `seq`
    /// the stream's numbering, when the gateway numbers its messages.
    async fn pump(
        self: Arc<Self>,
        mut registered: Option<(String, u64)>,
        mut seq: Option<Sequence>,
        mut inbound: Streaming<Msg>,
        tx: Downstream,
    ) {
        let appender = match self.handler {
            Handler::RedisStream => Appender::spawn(
                &self.outbox,
                self.delivery.history.as_ref(),
                self.stream_maxlen,
            ),
            _ => None,
        };
        if let Some(s) = &mut seq
            && tx.send(Ok(s.ack_now())).await.is_err()
        {
            return;
        }
        let mut tick = tokio::time::interval(ACK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                next = inbound.message() => next,
                _ = tick.tick(), if seq.is_some() => {
                    if let Some(ack) = seq.as_mut().and_then(|s| s.ack(true))
                        && tx.send(Ok(ack)).await.is_err()
                    {
                        break;
                    }
                    continue;
                }
            };
            let msg = match next {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(status) => {
                    debug!(%status, "exchange stream failed");
                    break;
                }
            };
            if seq.as_mut().is_some_and(|s| !s.receive(&self.received)) {
                self.outbox.stats.duplicates.fetch_add(1, Relaxed);
                continue;
            }
            if registered.is_none() && !msg.server.is_empty() {
                let (id, _) = self.register(&msg.server, &tx, &Peer::default()).await;
                registered = Some((msg.server.clone(), id));
            }
            let server = registered.as_ref().map_or("", |(s, _)| s.as_str());
            if self.downstream_ack(server, &msg) {
                continue;
            }
            self.outbox.stats.upstream.fetch_add(1, Relaxed);
            let ack = match self
                .delivery
                .intercept(&self.outbox, self.handler, &msg)
                .await
            {
                Upstream::Consumed => None,
                Upstream::Handle { ack } => {
                    let key = ack.map(|id| {
                        let key = SessionKey {
                            server: msg.server.clone(),
                            sid: msg.sid.clone(),
                        };
                        (key, id)
                    });
                    if !self.handle(msg, appender.as_ref()).await {
                        break;
                    }
                    key
                }
            };
            if let Some((key, id)) = ack {
                self.outbox.answer_id(&key, &id, false).await;
            }
            if let Some(ack) = seq.as_mut().and_then(|s| s.ack(false))
                && tx.send(Ok(ack)).await.is_err()
            {
                break;
            }
        }
        if let Some((server, id)) = registered {
            self.outbox.streams.detach(&server, id);
            info!(%server, "exchange stream closed");
        }
    }

    /// Runs the handler on one upstream message; `false` ends the stream.
    async fn handle(&self, msg: Msg, appender: Option<&Appender>) -> bool {
        match self.handler {
            Handler::Chat if self.rooms.chat(&self.outbox, &self.delivery, &msg).await => {}
            Handler::Echo | Handler::Chat => {
                if self.outbox.to_core(msg).await {
                    self.outbox.stats.downstream.fetch_add(1, Relaxed);
                }
            }
            Handler::Log => {
                let (ty, len) = msg
                    .payload
                    .as_ref()
                    .map(|p| (p.r#type.as_str(), p.payload.len()))
                    .unwrap_or(("", 0));
                info!(server = %msg.server, sid = %msg.sid, r#type = ty, len, "upstream message");
            }
            Handler::Discard => {}
            Handler::RedisStream => {
                let Some(appender) = appender else {
                    return false;
                };
                return appender.append(msg).await;
            }
        }
        true
    }
}

/// Response header naming the numbering of the stream's downstream messages.
const API_EPOCH: &str = "x-api-epoch";

/// What a gateway says of itself when it opens a stream.
#[derive(Debug, Default)]
struct Peer {
    /// `x-gateway-epoch`: its process.
    epoch: String,
    /// `x-gateway-downstream-acks: 1`: it acknowledges what it receives.
    downstream_acks: bool,
}

impl Peer {
    fn from_metadata(md: &tonic::metadata::MetadataMap) -> Peer {
        let get = |k| md.get(k).and_then(|v| v.to_str().ok());
        let epoch = get("x-gateway-epoch").unwrap_or_default().to_owned();
        Peer {
            downstream_acks: !epoch.is_empty() && get("x-gateway-downstream-acks") == Some("1"),
            epoch,
        }
    }
}

/// `wsapi.ExchangeService`.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub backend: Arc<Backend>,
    /// Send `ExchangeMsg`'s response headers only with the first downstream
    /// message, as grpc-go and gRPC C-core servers do (tonic sends them at
    /// once); the gateway must not wait for them.
    pub lazy_headers: bool,
}

#[tonic::async_trait]
impl ExchangeService for Exchange {
    type ExchangeMsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

    async fn exchange_msg(
        &self,
        req: Request<Streaming<Msg>>,
    ) -> Result<Response<Self::ExchangeMsgStream>, Status> {
        let identity = req
            .metadata()
            .get("x-gateway-ip")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        info!(
            identity = identity.as_deref().unwrap_or("?"),
            "exchange stream opened"
        );
        let peer = Peer::from_metadata(req.metadata());
        let (tx, mut rx) = mpsc::channel(STREAM_QUEUE);
        // Attached before the response headers go out: once the gateway
        // sees them, pushes through this node reach it.
        let mut registered = None;
        let mut numbering = None;
        if let Some(server) = identity {
            let (id, attached) = self.backend.register(&server, &tx, &peer).await;
            numbering = attached.epoch;
            registered = Some((server, id));
        }
        let seq =
            Sequence::from_metadata(registered.as_ref().map(|(s, _)| s.as_str()), req.metadata());
        tokio::spawn(Arc::clone(&self.backend).pump(registered, seq, req.into_inner(), tx));
        let body: Self::ExchangeMsgStream = if self.lazy_headers {
            // tonic writes the headers when this returns: hold it until
            // there is a message to send (or the stream ended without one).
            let first = rx.recv().await;
            Box::pin(tokio_stream::iter(first).chain(ReceiverStream::new(rx)))
        } else {
            Box::pin(ReceiverStream::new(rx))
        };
        let mut response = Response::new(body);
        if let Some(epoch) = numbering.and_then(|e| e.parse().ok()) {
            response.metadata_mut().insert(API_EPOCH, epoch);
        }
        Ok(response)
    }

    async fn connect(
        &self,
        req: Request<ConnectRequest>,
    ) -> Result<Response<ConnectReply>, Status> {
        let req = req.into_inner();
        let who = Who {
            server: &req.server,
            sid: &req.sid,
            device: &req.device,
        };
        let identity = self
            .backend
            .auth
            .verify(&req.token, &who)
            .await
            .map_err(|refused| {
                if !matches!(refused, Refused::Unavailable(_)) {
                    self.backend.outbox.stats.auth_refused.fetch_add(1, Relaxed);
                }
                debug!(server = %req.server, sid = %req.sid, %refused, "connect refused");
                Status::from(refused)
            })?;
        let uid = identity.uid;
        debug!(server = %req.server, sid = %req.sid, uid, since = %req.since, device = %req.device, "connect");
        let device = match req.device.as_str() {
            "" => None,
            d => Some(Device::parse(d).ok_or_else(|| Status::invalid_argument(DEVICE_RULE))?),
        };
        let key = SessionKey {
            server: req.server,
            sid: req.sid,
        };
        let delivery = &self.backend.delivery;
        delivery.connected(&key, device.as_ref());
        if let Some(at) = identity.expires {
            self.backend
                .expiry
                .arm(key.clone(), at, &self.backend.outbox);
        }
        let presence = &self.backend.outbox.presence;
        for group in &identity.groups {
            presence
                .set_member(group, &key, true)
                .await
                .map_err(|e| unavailable("Connect", &e))?;
        }
        presence
            .connect(uid, key)
            .await
            .map_err(|e| unavailable("Connect", &e))?;
        let resume = delivery
            .should_resume(uid, &req.since, device.as_ref())
            .await;
        Ok(Response::new(ConnectReply {
            uid,
            resume,
            groups: identity.groups,
        }))
    }

    async fn disconnect(
        &self,
        req: Request<DisconnectRequest>,
    ) -> Result<Response<DisconnectReply>, Status> {
        let req = req.into_inner();
        debug!(server = %req.server, sid = %req.sid, uid = req.uid, "disconnect");
        let key = SessionKey {
            server: req.server,
            sid: req.sid,
        };
        self.backend.delivery.disconnected(&key);
        self.backend.expiry.disarm(&key);
        self.backend
            .outbox
            .presence
            .disconnect(&key, req.uid)
            .await
            .map_err(|e| unavailable("Disconnect", &e))?;
        if self.backend.handler == Handler::Chat
            && let Ok(sessions) = self.backend.outbox.presence.sessions(req.uid).await
            && sessions.is_empty()
        {
            self.backend.rooms.leave_all(req.uid);
        }
        Ok(Response::new(DisconnectReply {}))
    }

    async fn keep_alive(
        &self,
        req: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveReply>, Status> {
        let req = req.into_inner();
        let key = SessionKey {
            server: req.server,
            sid: req.sid,
        };
        self.backend
            .outbox
            .presence
            .keep_alive(&key, req.uid)
            .await
            .map_err(|e| unavailable("KeepAlive", &e))?;
        Ok(Response::new(KeepAliveReply {}))
    }
}
