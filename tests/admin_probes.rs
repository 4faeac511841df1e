//! Probes keep answering whatever else holds the admin endpoint, and
//! readiness turns 503 while the gateway cannot accept clients for lack of
//! file descriptors.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// GET `path`, failing if the whole answer takes longer than `limit`.
fn get_within(addr: SocketAddr, path: &str, limit: Duration) -> (u16, String) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(limit)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .unwrap_or_else(|e| panic!("{path} not answered within {limit:?}: {e}"));
    assert!(
        started.elapsed() < limit,
        "{path} took {:?}",
        started.elapsed()
    );
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn probes_are_answered_while_idle_and_dripping_sockets_hold_the_endpoint() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let admin = gw.admin.expect("admin address");
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(admin).expect("idle"))
        .collect();
    // One byte of a request line every 500 ms, for as long as the test runs.
    let mut drip = TcpStream::connect(admin).expect("drip");
    let dripping = std::thread::spawn(move || {
        for b in b"GET /metrics HTTP/1.1\r\n".iter().take(6) {
            if drip.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    for _ in 0..4 {
        assert_eq!(get_within(admin, "/healthz", Duration::from_secs(1)).0, 200);
        let (status, _) = get_within(admin, "/metrics", Duration::from_secs(1));
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(200));
    }
    dripping.join().expect("drip thread");
    drop(idle);
}

#[test]
fn readiness_is_503_while_descriptors_run_out() {
    let api = ws_api("127.0.0.1:0", "echo");
    // A hard limit the gateway cannot raise: its soft limit goes up to it.
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_ws-gateway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--cores",
            "1",
        ])
        .args(["--upstream", &api.addr.to_string()])
        .env("WS_GATEWAY_LOG", "error");
    let gw = spawn_and_wait(cmd, "ws-gateway listening on ");
    let admin = gw.admin.expect("admin address");
    let ready = || get_within(admin, "/readyz", Duration::from_secs(2));
    let until = Instant::now() + DEADLINE;
    while ready().0 != 200 {
        assert!(Instant::now() < until, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Plain TCP connections the gateway accepts and holds (handshake pending).
    let mut held = Vec::new();
    let body = loop {
        let (status, body) = ready();
        if status == 503 {
            break body;
        }
        assert!(
            held.len() < 64,
            "still ready with {} connections held",
            held.len()
        );
        held.push(TcpStream::connect(gw.addr).expect("connect"));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(body.contains("out of file descriptors"), "{body}");
    drop(held);
    let until = Instant::now() + DEADLINE;
    while ready().0 != 200 {
        assert!(
            Instant::now() < until,
            "not ready again after the clients left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With every descriptor taken (more clients than `ulimit -n` allows, so
/// the core's accepts fail), `/readyz` still answers 503 and says why: the
/// admin listener keeps one descriptor in reserve for it. (The issue: 12
/// probes, no response.)
#[test]
fn readiness_answers_when_no_descriptor_is_left() {
    let api = ws_api("127.0.0.1:0", "echo");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_ws-gateway"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--cores", "1", "--upstream", &api.addr.to_string()])
        .env("WS_GATEWAY_LOG", "error");
    let gw = spawn_and_wait(cmd, "ws-gateway listening on ");
    let admin = gw.admin.expect("admin address");
    let until = Instant::now() + DEADLINE;
    while get_within(admin, "/readyz", Duration::from_secs(2)).0 != 200 {
        assert!(Instant::now() < until, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past the limit: the last ones wait in the listener's backlog.
    let held: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(gw.addr).expect("connect"))
        .collect();
    let until = Instant::now() + DEADLINE;
    let body = loop {
        let (status, body) = get_within(admin, "/readyz", Duration::from_secs(2));
        if status == 503 && body.contains("none left") {
            break body;
        }
        assert!(Instant::now() < until, "last answer: {status} {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("{body}");
    for _ in 0..5 {
        let (status, body) = get_within(admin, "/readyz", Duration::from_secs(2));
        assert_eq!(status, 503, "{body}");
    }
    drop(held);
}
