//! Only gateways open ExchangeMsg (ws-api `--gateway-secret-file`, the
//! gateway's `--upstream-secret-file`): a gateway with the secret carries
//! a client's echo; one without it never gets a stream, and its clients
//! hear "ws-api unavailable" (503), not "connect refused" (their tokens
//! are not at fault); an independent gRPC client (grpcio, gRPC C-core)
//! is refused Connect without the secret and admitted with it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "the gateways' shared secret";

fn secret_file(name: &str, secret: &str) -> PathBuf {
    let path = profile_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::write(&path, format!("{secret}\n")).expect("secret file");
    path
}

/// ws-api wanting [`SECRET`], with its HTTP listener for the counters.
fn ws_api_with_secret() -> Proc {
    let path = secret_file("gateway-secret", SECRET);
    let path = path.display().to_string();
    ws_api_with(
        "127.0.0.1:0",
        "echo",
        &[
            "--gateway-secret-file",
            &path,
            "--http-listen",
            "127.0.0.1:0",
        ],
    )
}

#[tokio::test]
async fn a_gateway_with_the_secret_carries_messages() {
    let api = ws_api_with_secret();
    let path = secret_file("upstream-secret", SECRET).display().to_string();
    let gw = gateway(api.addr, 1, &["--upstream-secret-file", &path]);
    until_ready(&gw);
    let mut ws = connect(gw.addr, "9").await;
    send_text(&mut ws, &frame("message", b"with the secret")).await;
    assert_eq!(
        recv(&mut ws).await.into_text().expect("text").as_str(),
        frame("message", b"with the secret")
    );
    let http = api.admin.expect("ws-api http");
    assert_eq!(metric(http, "ws_api_gateways_refused_total"), Some(0.0));
}

#[tokio::test]
async fn a_gateway_without_it_gets_no_stream_and_its_clients_hear_unavailable() {
    let api = ws_api_with_secret();
    let wrong = secret_file("wrong-secret", "not the gateways' secret")
        .display()
        .to_string();
    for extra in [vec![], vec!["--upstream-secret-file", wrong.as_str()]] {
        let gw = gateway(api.addr, 1, &extra);
        let admin = gw.admin.expect("admin");
        let until = Instant::now() + DEADLINE;
        while metric(admin, "gateway_upstream_reconnects_total").unwrap_or(0.0) < 2.0 {
            assert!(Instant::now() < until, "the gateway stopped trying");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(metric_with(admin, "gateway_upstream_up", "core", "0"), 0.0);
        assert_eq!(http_get(admin, "/readyz").0, 503);
        let refused = refusal(try_connect(gw.addr, Some("9")).await.expect_err("refused"));
        assert_eq!(refused.0, 503, "{extra:?}: {refused:?}");
    }
    let http = api.admin.expect("ws-api http");
    assert!(metric(http, "ws_api_gateways_refused_total").unwrap_or(0.0) >= 4.0);
}

/// `call.py` (grpcio) making one Connect, with `flags`.
fn connect_with(api: &Proc, flags: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/reflection/call.py");
    Command::new(peers::python())
        .arg(&script)
        .arg(api.addr.to_string())
        .arg("wsapi.ExchangeService/Connect")
        .arg(r#"{"server": "grpcio#0", "sid": "s1", "token": "Nw=="}"#)
        .args(flags)
        .output()
        .expect("the venv's python runs")
}

#[test]
fn grpc_c_core_needs_the_secret_for_connect() {
    let api = ws_api_with_secret();
    let out = connect_with(&api, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("UNAUTHENTICATED: gateway not authorized"),
        "{err}"
    );
    let out = connect_with(&api, &["--bearer", SECRET]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The token "7" is uid 7 under --auth insecure-dev.
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""uid": "7""#));
}
