//! Two ws-api nodes sharing presence through a real `redis-server`: a push
//! through one node reaches a session connected through the other, Disconnect
//! removes it, the presence of a gateway core whose streams all closed is
//! swept, and `--handler redis-stream` appends to Redis Streams.
//!
//! Needs `redis-server` on PATH (the Makefile installs it); each test starts
//! its own on a free loopback port.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Streaming};
use ws_api::proto::wsapi::biz_msg_service_client::BizMsgServiceClient;
use ws_api::proto::wsapi::control::Op;
use ws_api::proto::wsapi::exchange_service_client::ExchangeServiceClient;
use ws_api::proto::wsapi::{
    BizMsg, ConnectRequest, DisconnectRequest, GroupMsg, GroupRequest, Msg,
};
use ws_api::proto::wsgateway::Protocol;

const DEADLINE: Duration = Duration::from_secs(10);

#[path = "../../tests/common/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;
use redis_server::RedisServer;

/// A redis-server on `port` (a free one if `None`) and an async connection to it.
async fn start_redis(port: Option<u16>) -> (RedisServer, MultiplexedConnection) {
    let server = match port {
        Some(port) => RedisServer::start_on(port),
        None => RedisServer::start(),
    };
    let conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    (server, conn)
}

/// A ws-api process, killed on drop (`kill_on_drop`).
struct Node {
    _child: tokio::process::Child,
    channel: Channel,
}

impl Node {
    async fn start(args: &[&str]) -> Node {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ws-api"))
            .args(["--listen", "127.0.0.1:0", "--auth", "insecure-dev"])
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot run ws-api");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr: SocketAddr = tokio::time::timeout(DEADLINE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("ws-api listening on ") {
                    return rest.split(' ').next().and_then(|a| a.parse().ok());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("ws-api did not report its address");
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to ws-api");
        Node {
            _child: child,
            channel,
        }
    }

    fn exchange(&self) -> ExchangeServiceClient<Channel> {
        ExchangeServiceClient::new(self.channel.clone())
    }

    fn biz(&self) -> BizMsgServiceClient<Channel> {
        BizMsgServiceClient::new(self.channel.clone())
    }

    /// Opens a fake gateway core's `ExchangeMsg` stream as `identity`.
    async fn gateway(&self, identity: &str) -> FakeCore {
        let (tx, rx) = mpsc::channel(16);
        let mut req = Request::new(ReceiverStream::new(rx));
        req.metadata_mut()
            .insert("x-gateway-ip", identity.parse().expect("metadata"));
        let down = self
            .exchange()
            .exchange_msg(req)
            .await
            .expect("exchange")
            .into_inner();
        FakeCore { up: tx, down }
    }

    async fn connect(&self, server: &str, sid: &str, token: &str) -> u64 {
        let req = ConnectRequest {
            server: server.into(),
            sid: sid.into(),
            token: token.as_bytes().to_vec().into(),
            ..ConnectRequest::default()
        };
        self.exchange()
            .connect(req)
            .await
            .expect("connect")
            .into_inner()
            .uid
    }

    async fn push(&self, uid: u64, code: &str) -> i64 {
        let msg = BizMsg {
            uid,
            biz_code: code.into(),
            biz_payload: "hello".into(),
            ..Default::default()
        };
        self.biz()
            .push(msg)
            .await
            .expect("push")
            .into_inner()
            .success_count
    }
}

struct FakeCore {
    up: mpsc::Sender<Msg>,
    down: Streaming<Msg>,
}

impl FakeCore {
    async fn next(&mut self) -> Msg {
        tokio::time::timeout(DEADLINE, self.down.message())
            .await
            .expect("no downstream message in time")
            .expect("stream failed")
            .expect("stream ended")
    }
}

/// Polls `cond` every 50 ms until it holds; panics after [`DEADLINE`].
async fn wait_until<F, Fut>(what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn hkeys(conn: &mut MultiplexedConnection, key: &str) -> Vec<String> {
    redis::cmd("HKEYS")
        .arg(key)
        .query_async(conn)
        .await
        .expect("HKEYS")
}

async fn smembers(conn: &mut MultiplexedConnection, key: &str) -> Vec<String> {
    redis::cmd("SMEMBERS")
        .arg(key)
        .query_async(conn)
        .await
        .expect("SMEMBERS")
}

#[tokio::test]
async fn push_through_another_node_reaches_the_session() {
    let (redis, mut conn) = start_redis(None).await;
    let args = ["--redis", &redis.url(), "--server-ttl", "1s"];
    let (a, b) = (Node::start(&args).await, Node::start(&args).await);
    let _core_a = a.gateway("gw#0").await;
    let mut core_b = b.gateway("gw#0").await;

    assert_eq!(a.connect("gw#0", "s1", "42").await, 42);
    assert_eq!(hkeys(&mut conn, "ws:user:42").await, ["gw#0 s1"]);
    assert_eq!(smembers(&mut conn, "ws:server:gw#0").await, ["42 s1"]);
    let ttl: i64 = redis::cmd("TTL")
        .arg("ws:user:42")
        .query_async(&mut conn)
        .await
        .expect("TTL");
    assert!(ttl > 3000, "user key TTL {ttl}s, want about 60m");

    assert_eq!(b.push(42, "greet").await, 1);
    let msg = core_b.next().await;
    assert_eq!((msg.server.as_str(), msg.sid.as_str()), ("gw#0", "s1"));
    let payload = msg.payload.expect("payload");
    assert_eq!(
        (payload.r#type.as_str(), &payload.payload[..]),
        ("greet", &b"hello"[..])
    );

    let join = GroupRequest {
        uid: 42,
        group: "room".into(),
    };
    assert_eq!(
        b.biz()
            .join_group(join)
            .await
            .expect("join")
            .into_inner()
            .sessions,
        1
    );
    let control = core_b.next().await.control.and_then(|c| c.op);
    assert!(matches!(control, Some(Op::Join(j)) if j.group == "room"));
    assert_eq!(smembers(&mut conn, "ws:group:room").await, ["gw#0 s1"]);
    assert_eq!(smembers(&mut conn, "ws:groups:gw#0 s1").await, ["room"]);
    // Counts come from the shared presence, whichever node is asked.
    let to_room = GroupMsg {
        group: "room".into(),
        biz_code: "news".into(),
        biz_payload: String::new(),
    };
    let members = a.biz().push_group(to_room).await.expect("push group");
    assert_eq!(members.into_inner().success_count, 1);
    let everyone = BizMsg {
        biz_code: "all".into(),
        ..Default::default()
    };
    let online = a.biz().broadcast(everyone).await.expect("broadcast");
    assert_eq!(online.into_inner().success_count, 1);

    let bye = DisconnectRequest {
        server: "gw#0".into(),
        sid: "s1".into(),
        uid: 42,
    };
    a.exchange().disconnect(bye).await.expect("disconnect");
    assert_eq!(b.push(42, "greet").await, 0);
    let left: i64 = redis::cmd("EXISTS")
        .arg(&[
            "ws:user:42",
            "ws:server:gw#0",
            "ws:group:room",
            "ws:groups:gw#0 s1",
            "ws:session:gw#0 s1",
        ])
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert_eq!(left, 0, "disconnect left keys behind");
}

#[tokio::test]
async fn presence_of_a_core_without_streams_is_swept() {
    let (redis, mut conn) = start_redis(None).await;
    let args = ["--redis", &redis.url(), "--server-ttl", "1s"];
    let (a, b) = (Node::start(&args).await, Node::start(&args).await);
    let dying = (a.gateway("gw#1").await, b.gateway("gw#1").await);
    let _living = (a.gateway("gw#2").await, b.gateway("gw#2").await);
    a.connect("gw#1", "s1", "7").await;
    b.connect("gw#2", "s2", "7").await;
    let group = GroupRequest {
        uid: 7,
        group: "g".into(),
    };
    assert_eq!(
        a.biz()
            .join_group(group)
            .await
            .expect("join")
            .into_inner()
            .sessions,
        2
    );
    assert_eq!(hkeys(&mut conn, "ws:user:7").await.len(), 2);

    drop(dying);
    let took = wait_until("the sweep of gw#1", || {
        let mut conn = conn.clone();
        async move {
            let gone: i64 = redis::cmd("EXISTS")
                .arg(&["ws:server:gw#1", "ws:groups:gw#1 s1", "ws:session:gw#1 s1"])
                .query_async(&mut conn)
                .await
                .expect("EXISTS");
            gone == 0 && hkeys(&mut conn, "ws:user:7").await == ["gw#2 s2"]
        }
    })
    .await;
    eprintln!("gw#1 swept {took:?} after its streams closed (server-ttl 1s)");
    assert_eq!(smembers(&mut conn, "ws:group:g").await, ["gw#2 s2"]);
    assert_eq!(smembers(&mut conn, "ws:server:gw#2").await, ["7 s2"]);
    assert_eq!(a.push(7, "still-here").await, 1);
}

#[tokio::test]
async fn redis_stream_handler_appends_by_type() {
    let (redis, mut conn) = start_redis(None).await;
    let node = Node::start(&["--redis", &redis.url(), "--handler", "redis-stream"]).await;
    let core = node.gateway("gw#0").await;
    node.connect("gw#0", "s1", "42").await;
    let up = |sid: &str, ty: &str, body: &[u8]| Msg {
        server: "gw#0".into(),
        sid: sid.into(),
        payload: Some(Protocol {
            r#type: ty.into(),
            payload: body.to_vec().into(),
            ..Protocol::default()
        }),
        ..Default::default()
    };
    for msg in [up("s1", "chat", b"hi\x00there"), up("unknown", "", b"x")] {
        core.up.send(msg).await.expect("upstream");
    }
    wait_until("both XADDs", || {
        let mut conn = conn.clone();
        async move {
            let n: (u64, u64) = redis::pipe()
                .cmd("XLEN")
                .arg("chat")
                .cmd("XLEN")
                .arg("default")
                .query_async(&mut conn)
                .await
                .expect("XLEN");
            n == (1, 1)
        }
    })
    .await;
    type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;
    for (stream, want) in [
        (
            "chat",
            [
                ("server", &b"gw#0"[..]),
                ("sid", b"s1"),
                ("uid", b"42"),
                ("payload", b"hi\x00there"),
            ],
        ),
        (
            "default",
            [
                ("server", &b"gw#0"[..]),
                ("sid", b"unknown"),
                ("uid", b"0"),
                ("payload", b"x"),
            ],
        ),
    ] {
        let entries: Entries = redis::cmd("XRANGE")
            .arg(stream)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await
            .expect("XRANGE");
        let fields: Vec<(&str, &[u8])> = entries[0]
            .1
            .iter()
            .map(|(k, v)| (k.as_str(), &v[..]))
            .collect();
        assert_eq!(fields, want, "stream {stream}");
    }
}

#[tokio::test]
async fn a_redis_restart_is_survived() {
    let (redis, _) = start_redis(None).await;
    let port = redis.port;
    let node = Node::start(&["--redis", &redis.url()]).await;
    drop(redis);
    let connect = |sid: &'static str| {
        let mut client = node.exchange();
        async move {
            let req = ConnectRequest {
                server: "gw#0".into(),
                sid: sid.into(),
                token: b"42".to_vec().into(),
                ..ConnectRequest::default()
            };
            client.connect(req).await
        }
    };
    // While Redis is down, RPCs fail fast with UNAVAILABLE (each starts a
    // reconnect) instead of hanging through a backoff.
    for _ in 0..3 {
        let start = Instant::now();
        let err = connect("s0").await.expect_err("connect without redis");
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(err.message().contains("redis"), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "took {:?}",
            start.elapsed()
        );
    }

    let (_redis, mut conn) = start_redis(Some(port)).await;
    let took = wait_until("a connect after the restart", || async {
        connect("s1").await.is_ok()
    })
    .await;
    eprintln!("presence back {took:?} after redis came back");
    assert_eq!(hkeys(&mut conn, "ws:user:42").await, ["gw#0 s1"]);
}

#[test]
fn redis_stream_handler_needs_redis() {
    let out = Command::new(env!("CARGO_BIN_EXE_ws-api"))
        .args(["--listen", "127.0.0.1:0", "--handler", "redis-stream"])
        .output()
        .expect("cannot run ws-api");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --redis"), "stderr: {err}");
}
