//! A downstream message that arrives on a core that does not own its sid is
//! handed to the owning core over the channel mesh. The backend here is a
//! tonic server of the test's own that sends every echo down the *other*
//! core's stream, so every reply has to cross cores.

mod common;

use std::sync::Arc;

use common::*;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use ws_api::proto::wsapi::exchange_service_server::{ExchangeService, ExchangeServiceServer};
use ws_api::proto::wsapi::*;

type Tx = mpsc::Sender<Result<Msg, Status>>;

#[derive(Clone, Default)]
struct Crossing {
    streams: Arc<Mutex<Vec<(String, Tx)>>>,
}

#[tonic::async_trait]
impl ExchangeService for Crossing {
    type ExchangeMsgStream = ReceiverStream<Result<Msg, Status>>;

    async fn exchange_msg(
        &self,
        req: Request<Streaming<Msg>>,
    ) -> Result<Response<Self::ExchangeMsgStream>, Status> {
        let identity = req
            .metadata()
            .get("x-gateway-ip")
            .expect("x-gateway-ip")
            .to_str()
            .unwrap()
            .to_owned();
        let (tx, rx) = mpsc::channel(1024);
        self.streams.lock().await.push((identity, tx));
        let streams = Arc::clone(&self.streams);
        let mut inbound = req.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                let other = streams
                    .lock()
                    .await
                    .iter()
                    .find(|(id, _)| *id != msg.server)
                    .map(|(_, tx)| tx.clone());
                let tx = other.expect("a second core's stream");
                tx.send(Ok(msg)).await.expect("send down the other stream");
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn connect(&self, _: Request<ConnectRequest>) -> Result<Response<ConnectReply>, Status> {
        Ok(Response::new(ConnectReply {
            uid: 1,
            ..ConnectReply::default()
        }))
    }

    async fn disconnect(
        &self,
        _: Request<DisconnectRequest>,
    ) -> Result<Response<DisconnectReply>, Status> {
        Ok(Response::new(DisconnectReply {}))
    }

    async fn keep_alive(
        &self,
        _: Request<KeepAliveRequest>,
    ) -> Result<Response<KeepAliveReply>, Status> {
        Ok(Response::new(KeepAliveReply {}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_sent_down_the_wrong_core_still_arrive() {
    if !has_cpus(2) {
        return;
    }
    let backend = Crossing::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(ExchangeServiceServer::new(backend.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);

    let gw = gateway(addr, 2, &[]);
    eventually("both cores opened their stream", || async {
        backend.streams.lock().await.len() == 2
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..16 {
        clients.push((i, connect(gw.addr, "1").await));
    }
    for (i, ws) in &mut clients {
        let text = frame("message", format!("cross {i}").as_bytes());
        send_text(ws, &text).await;
        assert_eq!(recv(ws).await.into_text().unwrap().as_str(), text);
    }
    let admin = gw.admin.expect("admin");
    assert_eq!(
        metric_with(admin, "gateway_messages_lost_total", "reason", "mesh_full"),
        0.0
    );
    assert_eq!(
        metric_with(
            admin,
            "gateway_messages_lost_total",
            "reason",
            "unknown_sid"
        ),
        0.0
    );
}
