//! Interoperability with a WebSocket implementation that shares no code with
//! the gateway: Python's `websockets` (installed by `make test`).

mod common;

use std::process::Command;

use common::*;

#[test]
fn python_websockets_client_gets_its_echo() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ws_client.py");
    let url = format!("ws://{}/gateway/ws", gw.addr);
    let until = std::time::Instant::now() + DEADLINE;
    let out = loop {
        let out = Command::new(peers::python())
            .arg(&script)
            .args([&url, "77"])
            .output()
            .expect("the venv's python runs (make deps installs websockets in target/venv)");
        // 503 until the gateway's streams to ws-api are up.
        if out.status.success()
            || std::time::Instant::now() > until
            || !String::from_utf8_lossy(&out.stderr).contains("503")
        {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""type":"message""#));
}
