//! `ExchangeService` and `BizMsgService` over the presence store and the
//! stream registry.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info};

use crate::Handler;
use crate::presence::{Presence, SessionKey, uid_for_token};
use crate::proto::wsapi::exchange_service_server::ExchangeService;
use crate::proto::wsapi::{
    ConnectReply, ConnectRequest, DisconnectReply, DisconnectRequest, KeepAliveReply,
    KeepAliveRequest, Msg,
};
use crate::streams::{STREAM_QUEUE, Stats, Streams};

/// State shared by both services.
#[derive(Debug)]
pub struct Backend {
    pub presence: Presence,
    pub streams: Streams,
    pub stats: Stats,
    pub handler: Handler,
}

impl Backend {
    pub fn new(handler: Handler) -> Arc<Backend> {
        Arc::new(Backend {
            presence: Presence::default(),
            streams: Streams::default(),
            stats: Stats::default(),
            handler,
        })
    }

    /// Reads one gateway core's stream until it ends.
    async fn pump(
        self: Arc<Self>,
        identity: Option<String>,
        mut inbound: Streaming<Msg>,
        tx: mpsc::Sender<Result<Msg, Status>>,
    ) {
        let mut registered = identity.map(|s| {
            let id = self.streams.register(&s, tx.clone());
            (s, id)
        });
        loop {
            let msg = match inbound.message().await {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(status) => {
                    debug!(%status, "exchange stream failed");
                    break;
                }
            };
            if registered.is_none() && !msg.server.is_empty() {
                let id = self.streams.register(&msg.server, tx.clone());
                registered = Some((msg.server.clone(), id));
            }
            self.stats.upstream.fetch_add(1, Relaxed);
            match self.handler {
                Handler::Echo => {
                    if tx.send(Ok(msg)).await.is_err() {
                        break;
                    }
                    self.stats.downstream.fetch_add(1, Relaxed);
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
            }
        }
        if let Some((server, id)) = registered {
            self.streams.unregister(&server, id);
            info!(%server, "exchange stream closed");
        }
    }
}

/// `wsapi.ExchangeService`.
#[derive(Debug, Clone)]
pub struct Exchange(pub Arc<Backend>);

#[tonic::async_trait]
impl ExchangeService for Exchange {
    type ExchangeMsgStream = ReceiverStream<Result<Msg, Status>>;

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
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(Arc::clone(&self.0).pump(identity, req.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn connect(
        &self,
        req: Request<ConnectRequest>,
    ) -> Result<Response<ConnectReply>, Status> {
        let req = req.into_inner();
        if req.token.is_empty() {
            return Err(Status::unauthenticated("missing token"));
        }
        if req.token.starts_with(b"deny") {
            return Err(Status::permission_denied("token denied"));
        }
        let uid = uid_for_token(&req.token);
        debug!(server = %req.server, sid = %req.sid, uid, "connect");
        self.0.presence.connect(
            uid,
            SessionKey {
                server: req.server,
                sid: req.sid,
            },
        );
        Ok(Response::new(ConnectReply { uid }))
    }

    async fn disconnect(
        &self,
        req: Request<DisconnectRequest>,
    ) -> Result<Response<DisconnectReply>, Status> {
        let req = req.into_inner();
        debug!(server = %req.server, sid = %req.sid, uid = req.uid, "disconnect");
        self.0.presence.disconnect(&SessionKey {
            server: req.server,
            sid: req.sid,
        });
        Ok(Response::new(DisconnectReply {}))
    }

    async fn keep_alive(
        &self,
        req: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveReply>, Status> {
        let req = req.into_inner();
        self.0.presence.keep_alive(&SessionKey {
            server: req.server,
            sid: req.sid,
        });
        Ok(Response::new(KeepAliveReply {}))
    }
}
