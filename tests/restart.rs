//! A gateway restarts on its ports at once, although they hold TIME_WAIT
//! sockets of the connections it closed (a WebSocket server closes TCP
//! first), and a second gateway refuses to start beside a live one.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// TIME_WAIT sockets whose local address is `addr` (IPv4), from /proc.
fn time_wait_on(addr: SocketAddr) -> usize {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    // /proc/net/tcp writes the address as the u32 in host order, then the port.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .expect("/proc/net/tcp")
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(&local.as_str()) && cols.get(3) == Some(&"06")
        })
        .count()
}

#[tokio::test]
async fn restart_listens_at_once_despite_time_wait() {
    let api = ws_api("127.0.0.1:0", "echo");
    let mut first = gateway(api.addr, 2, &["--drain-window", "50ms"]);
    let (listen, admin) = (first.addr, first.admin.expect("admin address"));
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut ws = connect(listen, "5").await;
        nothing_pending(&mut ws, "before restart").await;
        clients.push(ws);
    }
    // The admin server closes each connection after its answer.
    for _ in 0..5 {
        assert_eq!(http_get(admin, "/healthz").0, 200);
    }
    first.signal(libc::SIGTERM);
    for ws in &mut clients {
        assert_eq!(expect_close(ws).await.0, 1001);
        // The gateway closes TCP once it has the client's Close: its side
        // of each connection then waits in TIME_WAIT.
        let end = tokio::time::timeout(DEADLINE, futures_util::StreamExt::next(ws)).await;
        assert!(matches!(end, Ok(None | Some(Err(_)))), "{end:?}");
    }
    drop(clients);
    let status = first.wait_exit(DEADLINE).expect("first gateway exits");
    assert!(status.success(), "{status:?}");
    assert!(time_wait_on(listen) > 0, "no TIME_WAIT on {listen}");
    assert!(time_wait_on(admin) > 0, "no TIME_WAIT on {admin}");

    let started = Instant::now();
    let second = gateway_on(api.addr, listen, admin);
    assert_eq!(second.addr, listen);
    assert_eq!(second.admin, Some(admin));
    let mut ws = connect(listen, "5").await;
    nothing_pending(&mut ws, "after restart").await;
    assert_eq!(http_get(admin, "/healthz").0, 200);
    let took = started.elapsed();
    println!("restarted and served within {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn a_second_gateway_on_a_live_port_refuses_to_start() {
    let api = ws_api("127.0.0.1:0", "echo");
    let first = gateway(api.addr, 1, &[]);
    let out = gateway_command(
        &api.addr.to_string(),
        1,
        &first.addr.to_string(),
        "127.0.0.1:0",
        &[],
    )
    .output()
    .expect("second gateway runs");
    assert!(
        !out.status.success(),
        "second gateway started beside the first"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot listen on") && stderr.contains("still running?"),
        "{stderr}"
    );
}

/// A gateway SIGKILLed (a crash, an OOM kill) leaves its io_uring's sockets
/// to be released after the process is gone; one started at once on the
/// same ports must wait for that, not mistake it for a live gateway.
#[tokio::test]
async fn restart_right_after_sigkill_listens_on_the_same_ports() {
    let api = ws_api("127.0.0.1:0", "echo");
    let mut node = gateway(api.addr, 2, &[]);
    let (listen, admin) = (node.addr, node.admin.expect("admin address"));
    for round in 0..3 {
        let mut clients = Vec::new();
        for _ in 0..20 {
            let mut ws = connect(listen, "5").await;
            nothing_pending(&mut ws, "before the kill").await;
            clients.push(ws);
        }
        // SIGKILL and reap, as a supervisor restarting it would.
        node.kill();
        let started = Instant::now();
        node = gateway_on(api.addr, listen, admin);
        println!(
            "round {round}: listening again after {:?}",
            started.elapsed()
        );
        let mut ws = connect(listen, "6").await;
        nothing_pending(&mut ws, "after the restart").await;
        drop(clients);
    }
}
