//! Memory comes back after a mass disconnect: the gateway trims its heap
//! once many sessions have gone, so a container limit sized on the steady
//! state is not outgrown by the peak of a reconnect storm.

mod common;

use common::*;
use ws_util::procfs::{self, Process};

fn rss_kib(pid: u32) -> u64 {
    let status = Process::Pid(pid).read("status").expect("status");
    procfs::rss_kib(&status).expect("VmRSS")
}

#[tokio::test]
async fn rss_returns_after_a_mass_disconnect() {
    const SESSIONS: usize = 4000;
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let baseline = rss_kib(gw.pid());
    let mut clients = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        clients.push(connect(gw.addr, &i.to_string()).await);
    }
    let admin = gw.admin.expect("admin");
    wait_for_metric(admin, "gateway_websocket_online_totals", SESSIONS as f64);
    let with_sessions = rss_kib(gw.pid());
    drop(clients);
    wait_for_metric(admin, "gateway_websocket_online_totals", 0.0);
    // The steady state with the sessions is what a container limit is
    // sized on; the peak while they all close is higher (each sends a
    // Disconnect), and must not stay.
    let target = with_sessions + with_sessions / 4;
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        let now = rss_kib(gw.pid());
        if now <= target {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "RSS {now} KiB after the disconnect, {with_sessions} KiB with {SESSIONS} sessions, \
             {baseline} KiB at start: not back within 1.25x"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!(
        "RSS: {baseline} KiB at start, {with_sessions} KiB with {SESSIONS} sessions, {} KiB after they left",
        rss_kib(gw.pid())
    );
}
