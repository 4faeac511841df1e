//! ws-bench answers the gateway's pings in every mode, also while its
//! other connections are still coming up: a connect phase longer than
//! `--ping-interval` used to lose the early connections to keepalive
//! timeouts, and the idle figures past 30 s with them.

mod common;

use std::process::Command;

use common::*;

#[test]
fn a_connect_phase_longer_than_the_ping_interval_loses_nothing() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &["--ping-interval", "500ms"]);
    let admin = gw.admin.expect("admin");
    // 200 connections 10 ms apart: the first wait 2 s for the last.
    let out = Command::new(workspace_bin("ws-bench"))
        .args(["conn", "--host", &gw.addr.to_string(), "--user", "200"])
        .args(["--connectInterval", "10ms", "--sleep", "2s"])
        .output()
        .expect("ws-bench runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("established 200 failed 0 {} closed early 0"),
        "{report}"
    );
    assert_eq!(metric(admin, "gateway_keepalive_timeouts_total"), Some(0.0));
}
