//! Presence that survives the store (issue 21): sessions whose clients never
//! send HEARTBEAT are pushable again, with no client action, after Redis
//! comes back empty (ws-api sends Control.Reassert) and after an in-memory
//! ws-api restarts (its stream comes back); `/readyz` is 503 while the
//! presence store is down and 200 again once it is back, and a ws-api
//! without the health service keeps it 200.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::*;
use ws_api::proto::wsapi::BizMsg;

/// Clients in the re-registration tests, one uid each.
const CLIENTS: u64 = 200;

/// The bound these tests hold the recoveries to (docs/reliability.md).
const BOUND: Duration = Duration::from_secs(5);

/// `CLIENTS` sessions, uid 1..=CLIENTS, that never send anything.
async fn silent_clients(gw: SocketAddr) -> Vec<(u64, Client)> {
    let mut clients = Vec::new();
    for uid in 1..=CLIENTS {
        clients.push((uid, connect(gw, &uid.to_string()).await));
    }
    clients
}

/// Pushes to every client's uid until each Push reached its session and the
/// client read it; returns how long that took from `since`.
async fn until_all_pushable(
    api: SocketAddr,
    clients: &mut [(u64, Client)],
    since: Instant,
) -> Duration {
    let mut biz = biz(api).await;
    let mut pending: Vec<usize> = (0..clients.len()).collect();
    while !pending.is_empty() {
        assert!(
            since.elapsed() < DEADLINE,
            "{} of {} sessions still unreachable by Push",
            pending.len(),
            clients.len()
        );
        let mut still = Vec::new();
        for i in pending {
            let uid = clients[i].0;
            let msg = BizMsg {
                biz_code: "back".into(),
                biz_payload: uid.to_string(),
                uid,
                ..Default::default()
            };
            match biz.push(msg).await.map(|r| r.into_inner().success_count) {
                Ok(n) if n >= 1 => {
                    let got = next_json(&mut clients[i].1).await.expect("the push");
                    assert_eq!(got["type"], "back", "{got}");
                }
                _ => still.push(i),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_under_silent_clients_every_push_is_delivered() {
    let redis = RedisServer::start();
    let port = redis.port;
    let url = redis.url();
    let api = ws_api_with("127.0.0.1:0", "echo", &["--redis", &url]);
    let gw = gateway(api.addr, 2, &[]);
    until_ready(&gw);
    let admin = gw.admin.expect("admin");
    let mut clients = silent_clients(gw.addr).await;
    until_all_pushable(api.addr, &mut clients, Instant::now()).await;

    drop(redis); // SIGKILL: no save, no goodbye
    let redis = RedisServer::start_on(port);
    let back = Instant::now();
    assert!(redis.keys("ws:user:*").is_empty(), "restarted empty");
    let took = until_all_pushable(api.addr, &mut clients, back).await;
    println!("{CLIENTS} silent sessions pushable {took:?} after Redis came back empty");
    assert!(took < BOUND, "took {took:?}");
    assert!(metric(admin, "gateway_presence_reasserts_total").unwrap_or(0.0) >= 1.0);
    assert!(
        metric(admin, "gateway_presence_reasserted_sessions_total").unwrap_or(0.0)
            >= CLIENTS as f64
    );
    // The user → session index Push reads is back for every user.
    assert_eq!(redis.keys("ws:user:*").len(), CLIENTS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_memory_ws_api_restarted_gets_the_gateways_sessions_back() {
    let mut api = ws_api("127.0.0.1:0", "echo");
    let addr = api.addr;
    let gw = gateway(addr, 2, &[]);
    until_ready(&gw);
    let mut clients = silent_clients(gw.addr).await;
    until_all_pushable(addr, &mut clients, Instant::now()).await;

    api.kill();
    let _api = ws_api(&addr.to_string(), "echo");
    let back = Instant::now();
    let took = until_all_pushable(addr, &mut clients, back).await;
    println!("{CLIENTS} silent sessions pushable {took:?} after ws-api (memory) restarted");
    assert!(took < BOUND, "took {took:?}");
    assert_eq!(online(addr).await, CLIENTS as i64, "no session twice");
}

/// `/readyz`'s status and body, polled until `want` or the deadline; how long it took.
fn readyz_until(admin: SocketAddr, want: u16) -> (Duration, String) {
    let started = Instant::now();
    loop {
        let (status, body) = http_get(admin, "/readyz");
        if status == want {
            return (started.elapsed(), body);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "/readyz stayed {status} ({body:?}), expected {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill failed");
}

#[test]
fn readyz_is_503_while_the_presence_store_is_down_and_200_once_it_is_back() {
    let redis = RedisServer::start();
    let port = redis.port;
    let url = redis.url();
    let api = ws_api_with("127.0.0.1:0", "echo", &["--redis", &url]);
    let gw = gateway(api.addr, 2, &[]);
    until_ready(&gw);
    let admin = gw.admin.expect("admin");

    signal(redis.pid(), libc::SIGSTOP);
    let (down, why) = readyz_until(admin, 503);
    assert!(why.contains("presence store down"), "{why}");
    signal(redis.pid(), libc::SIGCONT);
    let (up, _) = readyz_until(admin, 200);
    println!("SIGSTOP: 503 after {down:?}; SIGCONT: 200 after {up:?}");
    assert!(down < BOUND && up < BOUND);

    drop(redis);
    let (down, why) = readyz_until(admin, 503);
    assert!(why.contains("presence store down"), "{why}");
    let _redis = RedisServer::start_on(port);
    let (up, _) = readyz_until(admin, 200);
    println!("killed: 503 after {down:?}; restarted: 200 after {up:?}");
    assert!(down < BOUND && up < BOUND);
}

/// A ws-api without `grpc.health.v1` (the Go one, the grpcio peer, an older
/// ours): the gateway's polls get UNIMPLEMENTED, which counts as serving.
/// The server here is ws-api's own service in this process, without the
/// health service added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ws_api_without_the_health_service_keeps_readyz_200() {
    use ws_api::proto::wsapi::exchange_service_server::ExchangeServiceServer;
    use ws_api::service::{Backend, Exchange};

    let backend = Backend::new(
        ws_api::Handler::Echo,
        ws_api::presence::Presence::default(),
        0,
        ws_api::delivery::Delivery::new(
            None,
            ws_api::delivery::Redelivery {
                ack_timeout: Duration::from_secs(10),
                retries: 3,
            },
        ),
        Duration::from_secs(30),
        ws_api::auth::Auth::InsecureDev,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let exchange = Exchange {
        backend,
        lazy_headers: false,
    };
    let server = tonic::transport::Server::builder()
        .add_service(ExchangeServiceServer::new(exchange))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);

    let gw = gateway(addr, 1, &[]);
    let admin = gw.admin.expect("admin");
    let polled = tokio::task::spawn_blocking(move || {
        readyz_until(admin, 200);
        // Several polls (one a second) answered UNIMPLEMENTED: still ready.
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            let (status, body) = http_get(admin, "/readyz");
            assert_eq!(status, 200, "{body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    polled.await.unwrap();
    let mut ws = connect(gw.addr, "7").await;
    let text = frame("message", b"still served");
    send_text(&mut ws, &text).await;
    assert_eq!(recv(&mut ws).await.into_text().unwrap().as_str(), text);
}
