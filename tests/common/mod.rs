//! Shared helpers for the integration tests: start the real `ws-api` and
//! `ws-gateway` binaries on ephemeral loopback ports, and talk to them with
//! an independent WebSocket client (tokio-tungstenite) and gRPC client (tonic).
#![allow(dead_code)]

pub mod browser;
pub mod peers;
pub mod raw;
pub mod redis_server;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A child process that is killed when the test ends.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener, for the gateway.
    pub admin: Option<SocketAddr>,
}

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, up to `limit`; returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A binary of this workspace, built by `cargo build --workspace` (the
/// Makefile does so before running tests).
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (make test does)",
        path.display()
    );
    path
}

/// `target/<profile>`, where cargo puts this workspace's binaries.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.to_owned()
}

/// Spawns `cmd`, waits for its stdout line containing `marker`, and reads
/// the socket address that follows it.
pub fn spawn_and_wait(mut cmd: Command, marker: &str) -> Proc {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn binary");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let marker = marker.to_owned();
    std::thread::spawn(move || {
        let mut admin = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("admin listening on http://").nth(1) {
                admin = first_addr(rest).parse().ok();
            }
            if let Some(rest) = line.split(&marker).nth(1) {
                let rest = rest
                    .trim_start_matches("ws://")
                    .trim_start_matches("wss://");
                let _ = tx.send((first_addr(rest), admin));
            }
        }
    });
    let (addr, admin) = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
        panic!(
            "no '{}' line within {DEADLINE:?}",
            cmd.get_program().display()
        )
    });
    Proc {
        child,
        addr: addr.parse().expect("listen address"),
        admin,
    }
}

fn first_addr(text: &str) -> String {
    text.chars()
        .take_while(|c| !c.is_whitespace() && *c != '/')
        .collect()
}

/// A plain HTTP GET against the admin listener: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// Scrapes /metrics, parses it as Prometheus text, and returns the value of
/// `name` (summed over its series) or `None` if absent.
pub fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let (status, body) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("parses as Prometheus text");
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The value of a labelled series, e.g. `metric_with(admin, "x_total", "reason", "bad_frame")`.
pub fn metric_with(admin: SocketAddr, name: &str, label: &str, value: &str) -> f64 {
    let (_, body) = http_get(admin, "/metrics");
    let scrape =
        prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get(label) == Some(value))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Starts `ws-api` on `listen` (use port 0 for an ephemeral port).
pub fn ws_api(listen: &str, handler: &str) -> Proc {
    ws_api_with(listen, handler, &[])
}

/// Starts `ws-api` with `extra` flags (e.g. `--redis URL`); with
/// `--auth insecure-dev` unless `extra` names an `--auth`.
pub fn ws_api_with(listen: &str, handler: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(workspace_bin("ws-api"));
    cmd.args(["--listen", listen, "--handler", handler, "--threads", "1"])
        .args(extra);
    if !extra.contains(&"--auth") {
        cmd.args(["--auth", "insecure-dev"]);
    }
    spawn_and_wait(cmd, "ws-api listening on ")
}

/// Starts `ws-gateway` on an ephemeral port with `cores` cores.
pub fn gateway(upstream: SocketAddr, cores: usize, extra: &[&str]) -> Proc {
    gateway_to(&upstream.to_string(), cores, extra)
}

/// Starts `ws-gateway` with `--upstream upstreams` (several nodes, comma-separated).
pub fn gateway_to(upstreams: &str, cores: usize, extra: &[&str]) -> Proc {
    spawn_and_wait(
        gateway_command(upstreams, cores, "127.0.0.1:0", "127.0.0.1:0", extra),
        "ws-gateway listening on ",
    )
}

/// Starts `ws-gateway` on the given client and admin addresses.
pub fn gateway_on(upstream: SocketAddr, listen: SocketAddr, admin: SocketAddr) -> Proc {
    let (listen, admin) = (listen.to_string(), admin.to_string());
    spawn_and_wait(
        gateway_command(&upstream.to_string(), 2, &listen, &admin, &[]),
        "ws-gateway listening on ",
    )
}

/// The gateway's command line as the tests run it (logs at warn).
pub fn gateway_command(
    upstreams: &str,
    cores: usize,
    listen: &str,
    admin: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ws-gateway"));
    cmd.args(["--listen", listen, "--upstream", upstreams])
        .args(["--cores", &cores.min(online_cpus()).to_string()])
        .args(["--reconnect-max", "200ms", "--admin-listen", admin])
        .args(extra)
        .env("WS_GATEWAY_LOG", "warn");
    cmd
}

/// Something a test needs is missing on this machine: under `CI=true` the
/// test fails; elsewhere it says so loudly (and the caller returns).
pub fn cannot_run(what: &str, why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required in CI but cannot run: {why}");
    }
    eprintln!(
        "\n!!!!!!!!\n!!! SKIPPED: {what} cannot run on this machine: {why}\n\
         !!! `make deps` installs what it can; under CI=true this test fails.\n!!!!!!!!\n"
    );
}

/// Whether the machine has `n` CPUs for a test that needs them (see
/// [`cannot_run`] when it does not).
pub fn has_cpus(n: usize) -> bool {
    let have = online_cpus();
    if have < n {
        cannot_run(
            &format!("a test needing {n} CPUs"),
            &format!("{have} online"),
        );
    }
    have >= n
}

pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Opens a WebSocket with `token` in the header, as the Go clients do.
pub async fn try_connect(gw: SocketAddr, token: Option<&str>) -> Result<Client, WsError> {
    let mut req = format!("ws://{gw}/gateway/ws").into_client_request()?;
    if let Some(t) = token {
        req.headers_mut()
            .insert("token", t.parse().expect("token header"));
    }
    handshake(req).await.map(|(ws, _)| ws)
}

/// The WebSocket handshake, bounded: a gateway that accepts and never
/// answers fails the test here, by name, instead of at the runner's timeout.
pub async fn handshake(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<
    (
        Client,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    WsError,
> {
    tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(req))
        .await
        .expect("no answer to the WebSocket handshake before the deadline")
}

/// A loopback port free a moment ago, for a program that takes a fixed
/// address (tools/run.sh, Prometheus) rather than port 0.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The HTTP status and body of a refused upgrade.
pub fn refusal(err: WsError) -> (u16, String) {
    match err {
        WsError::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            (resp.status().as_u16(), body)
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// Connects, retrying while the gateway answers 503 (its stream to ws-api is not up yet).
pub async fn connect(gw: SocketAddr, token: &str) -> Client {
    let until = Instant::now() + DEADLINE;
    loop {
        match try_connect(gw, Some(token)).await {
            Ok(ws) => return ws,
            Err(WsError::Http(resp)) if resp.status() == 503 && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("connect to {gw} failed: {e}"),
        }
    }
}

/// The next data message, skipping control frames; panics after the deadline.
pub async fn recv(ws: &mut Client) -> Message {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return m,
                Some(Err(e)) => panic!("websocket error: {e}"),
                None => panic!("websocket closed"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, next)
        .await
        .expect("no message before the deadline")
}

pub async fn send_text(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// A JSON frame in the Go gateway's envelope.
pub fn frame(ty: &str, payload: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
    format!(r#"{{"type":"{ty}","payload":"{b64}"}}"#)
}

/// `n` texts of 305 bytes that deflate alone barely shrinks (nothing
/// repeats inside one) but that differ only in their first four: what
/// permessage-deflate's context takeover is for.
pub fn alike_texts(n: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x: u32 = 0x2545_f491;
    let body: String = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            ALPHABET[(x % 62) as usize] as char
        })
        .collect();
    (0..n).map(|i| format!("{i:04} {body}")).collect()
}

/// The gateway's compressed bytes out per byte before compression, from
/// its counters.
pub fn compression_out_ratio(admin: SocketAddr) -> f64 {
    let before = metric(admin, "gateway_compression_out_before_bytes_total").unwrap_or(0.0);
    let after = metric(admin, "gateway_compression_out_after_bytes_total").unwrap_or(0.0);
    before / after.max(1.0)
}

/// Polls `cond` until it holds or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects and returns the session id the gateway assigned (`X-Session-Id`).
pub async fn connect_with_sid(gw: SocketAddr, token: &str) -> (Client, String) {
    let until = Instant::now() + DEADLINE;
    loop {
        let mut req = format!("ws://{gw}/gateway/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("token", token.parse().expect("token header"));
        match handshake(req).await {
            Ok((ws, resp)) => {
                let sid = resp.headers()["x-session-id"]
                    .to_str()
                    .expect("sid")
                    .to_owned();
                return (ws, sid);
            }
            Err(WsError::Http(resp)) if resp.status() == 503 && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("connect to {gw} failed: {e}"),
        }
    }
}

/// A tonic client for ws-api's BizMsgService.
pub async fn biz(
    api: SocketAddr,
) -> ws_api::proto::wsapi::biz_msg_service_client::BizMsgServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{api}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("grpc connect");
    ws_api::proto::wsapi::biz_msg_service_client::BizMsgServiceClient::new(channel)
}

/// Reads until a close frame arrives; returns its code and reason.
pub async fn expect_close(ws: &mut Client) -> (u16, String) {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(c)))) => {
                    return (u16::from(c.code), c.reason.to_string());
                }
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    };
    tokio::time::timeout(DEADLINE, next)
        .await
        .expect("close before the deadline")
}

/// Sends a frame and expects its echo as the very next data message: proves
/// nothing else was queued for this session before it.
pub async fn nothing_pending(ws: &mut Client, tag: &str) {
    let text = frame("message", tag.as_bytes());
    send_text(ws, &text).await;
    assert_eq!(
        recv(ws).await.into_text().expect("text").as_str(),
        text,
        "something else arrived first"
    );
}

/// Waits (from a plain thread) until the metric `name` reads `value`.
pub fn wait_for_metric(admin: SocketAddr, name: &str, value: f64) {
    let until = Instant::now() + DEADLINE;
    while metric(admin, name) != Some(value) {
        assert!(Instant::now() < until, "{name} never reached {value}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until ws-api has acknowledged everything the gateway wrote to it
/// and nothing waits to be written: a node killed after that has nothing
/// to be written again. (A count of acknowledged messages would not do:
/// it includes the gateway's own acknowledgements of downstream messages.)
pub fn wait_all_acked(admin: SocketAddr) {
    let until = Instant::now() + DEADLINE;
    let settled = || {
        metric(admin, "gateway_upstream_acked_messages_total").unwrap_or(0.0) > 0.0
            && metric(admin, "gateway_upstream_unacked_messages") == Some(0.0)
            && metric(admin, "gateway_upstream_buffered_bytes") == Some(0.0)
    };
    while !settled() {
        assert!(
            Instant::now() < until,
            "ws-api never acknowledged everything"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends a protobuf `Protocol` in a binary frame and expects it back as
/// the next data message (binary, equal).
pub async fn protobuf_round_trip(ws: &mut Client) {
    use prost::Message as _;
    use ws_gateway::proto::wsgateway::Protocol;
    let p = Protocol {
        r#type: "bin".into(),
        payload: vec![0u8, 1, 2, 254, 255].into(),
        ..Protocol::default()
    };
    ws.send(Message::Binary(p.encode_to_vec().into()))
        .await
        .expect("send");
    match recv(ws).await {
        Message::Binary(b) => assert_eq!(Protocol::decode(b).expect("protobuf"), p),
        other => panic!("expected a binary reply, got {other:?}"),
    }
}

/// ws-api `Kick` of every session of `uid`; returns how many it closed.
pub async fn kick_uid(api: SocketAddr, uid: u64, code: u32, reason: &str) -> i64 {
    let kick = ws_api::proto::wsapi::KickRequest {
        uid,
        code,
        reason: reason.into(),
        ..Default::default()
    };
    biz(api)
        .await
        .kick(kick)
        .await
        .expect("kick")
        .into_inner()
        .closed
}

/// ws-api `Push` to `uid`; returns how many sessions ws-api reached.
pub async fn push(api: SocketAddr, uid: u64, code: &str, payload: &str) -> i64 {
    let msg = ws_api::proto::wsapi::BizMsg {
        biz_code: code.into(),
        biz_payload: payload.into(),
        uid,
        ..Default::default()
    };
    biz(api)
        .await
        .push(msg)
        .await
        .expect("push")
        .into_inner()
        .success_count
}

/// How many sessions ws-api's presence holds, live or not (a Broadcast
/// answers with it; a Push counts only sessions whose stream is up).
pub async fn online(api: SocketAddr) -> i64 {
    let msg = ws_api::proto::wsapi::BizMsg {
        biz_code: "probe".into(),
        ..Default::default()
    };
    let reply = biz(api).await.broadcast(msg).await.expect("broadcast");
    reply.into_inner().success_count
}

/// Messages the resume tests push while a client is away.
pub const PUSHED: u64 = 1000;

/// ws-api's `--history-size` for the resume tests: all `PUSHED`, so that
/// however slow a reconnect is, what the client missed is still kept (with
/// the default 100, a reconnect after the 101st missed push correctly gets
/// `resume-failed`).
pub fn keep_pushed() -> [&'static str; 2] {
    const _: () = assert!(PUSHED == 1000, "keep_pushed() keeps 1000");
    ["--history-size", "1000"]
}

/// Connects as `uid`, resuming from `since` (`X-Resume-Since`) if given.
pub async fn connect_since(gw: SocketAddr, uid: u64, since: Option<&str>) -> Client {
    let headers: Vec<_> = since.map(|s| ("x-resume-since", s)).into_iter().collect();
    connect_with_headers(gw, uid, &headers).await
}

/// Connects as `uid` with these extra headers, retrying while the stream
/// to ws-api is not up (503) or a restarted gateway is not listening yet.
pub async fn connect_with_headers(gw: SocketAddr, uid: u64, extra: &[(&str, &str)]) -> Client {
    let until = Instant::now() + DEADLINE;
    loop {
        let mut req = format!("ws://{gw}/gateway/ws")
            .into_client_request()
            .expect("request");
        let headers = req.headers_mut();
        headers.insert("token", uid.to_string().parse().expect("token"));
        for (name, value) in extra {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("header name");
            headers.insert(name, value.parse().expect("header value"));
        }
        match handshake(req).await {
            Ok((ws, _)) => return ws,
            Err(_) if Instant::now() < until => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("connect to {gw} failed: {e}"),
        }
    }
}

/// The next JSON frame; `None` once the connection is closed or broken.
pub async fn next_json(ws: &mut Client) -> Option<Value> {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("JSON frame"));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    };
    tokio::time::timeout(DEADLINE, next)
        .await
        .expect("a frame before the deadline")
}

pub fn offset(v: &Value) -> (String, u64) {
    let s = v["offset"]
        .as_str()
        .unwrap_or_else(|| panic!("no offset: {v}"));
    let (epoch, n) = s.split_once(':').expect("epoch:n");
    (epoch.to_owned(), n.parse().expect("n"))
}

/// Reads the resumed session until message `PUSHED`: what follows `last`
/// must be every offset after it exactly once, in order, with `resumed`
/// right after the replayed ones.
pub async fn expect_resumed_in_order(ws: &mut Client, epoch: &str, last: u64) {
    let mut want = last + 1;
    let mut resumed_at = None;
    while want <= PUSHED {
        let v = next_json(ws).await.expect("the resumed session stays open");
        match v["type"].as_str() {
            Some("resumed") => {
                let (e, through) = offset(&v);
                assert_eq!(e, epoch);
                assert_eq!(through, want - 1, "resumed after exactly the replay");
                resumed_at = Some(through);
            }
            Some("news") => {
                let (e, n) = offset(&v);
                assert_eq!((e.as_str(), n), (epoch, want), "gap, duplicate or reorder");
                want += 1;
            }
            other => panic!("unexpected frame {other:?}: {v}"),
        }
    }
    assert!(resumed_at.is_some(), "no resumed frame");
}

/// Reads `n` pushes; returns the epoch and the last offset.
pub async fn read_pushes(ws: &mut Client, n: u64) -> (String, u64) {
    let mut last = (String::new(), 0);
    for want in 1..=n {
        let v = next_json(ws).await.expect("open");
        assert_eq!(v["type"], "news", "{v}");
        last = offset(&v);
        assert_eq!(last.1, want);
    }
    last
}

/// Pushes `PUSHED` messages to `uid`, one after the other, from a task.
pub fn push_in_background(api: SocketAddr, uid: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client = biz(api).await;
        for i in 1..=PUSHED {
            let msg = ws_api::proto::wsapi::BizMsg {
                biz_code: "news".into(),
                biz_payload: i.to_string(),
                uid,
                ..Default::default()
            };
            client.push(msg).await.expect("push");
        }
    })
}

/// A pushed JSON frame with its position (`offset`) taken out, as the
/// tests that are about routing, not positions, compare it.
pub fn without_offset(text: &str) -> String {
    let v: Value = serde_json::from_str(text).expect("JSON frame");
    format!(r#"{{"type":{},"payload":{}}}"#, v["type"], v["payload"])
}

/// Waits until the gateway's `/readyz` says 200: every core's stream to
/// ws-api is up, so a client lands on a core that admits it whichever core
/// the kernel picks (one successful connect proves only one core).
pub fn until_ready(gw: &Proc) {
    let admin = gw.admin.expect("admin address");
    let until = Instant::now() + DEADLINE;
    while http_get(admin, "/readyz").0 != 200 {
        assert!(Instant::now() < until, "gateway never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ws-api ARGS --api API`: its stdout, or the test fails with its stderr.
pub async fn ws_api_cli(api: &Proc, args: &[&str]) -> String {
    let out = tokio::process::Command::new(workspace_bin("ws-api"))
        .args(args)
        .args(["--api", &api.addr.to_string()])
        .output()
        .await
        .expect("ws-api runs");
    assert!(
        out.status.success(),
        "ws-api {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The next frame of type `kind`, with its payload decoded.
pub async fn next_payload_of(ws: &mut Client, kind: &str) -> String {
    loop {
        let v: serde_json::Value = next_json(ws).await.expect("a frame before the close");
        if v["type"] == kind {
            let b64 = v["payload"].as_str().unwrap_or_default();
            let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
                .expect("base64 payload");
            return String::from_utf8(bytes).expect("utf-8 payload");
        }
    }
}
