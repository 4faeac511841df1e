//! ws-api's HTTP listener through curl, as an operator or a business
//! service would use it: probes, metrics (every counter ws-api declares),
//! and the publish API with and without its key, reaching a live session
//! through the real gateway.

mod common;

use std::process::Command;

use base64::Engine;
use common::*;
use serde_json::Value;

const KEY: &str = "an api key of some length";

/// `curl -s -w '\n%{http_code}' ARGS URL`: (status, body).
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs (make deps installs it)");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.parse().expect("status"), body.to_owned())
}

fn api_with_http(key: Option<&str>) -> Proc {
    let mut extra = vec!["--http-listen".to_owned(), "127.0.0.1:0".to_owned()];
    if let Some(key) = key {
        let path = profile_dir().join(format!("ws-api-key-{}", std::process::id()));
        std::fs::write(&path, format!("{key}\n")).expect("key file");
        extra.extend(["--http-api-key-file".to_owned(), path.display().to_string()]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    ws_api_with("127.0.0.1:0", "echo", &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_metrics_and_a_keyed_push_to_a_live_session() {
    let api = api_with_http(Some(KEY));
    let http = format!("http://{}", api.admin.expect("ws-api http address"));
    assert_eq!(curl(&format!("{http}/healthz"), &[]).0, 200);
    assert_eq!(curl(&format!("{http}/readyz"), &[]).0, 200);
    let (status, metrics) = curl(&format!("{http}/metrics"), &[]);
    assert_eq!(status, 200);
    for (name, _, _) in ws_api::http::METRICS {
        assert!(
            metrics.contains(&format!("\n{name} ")),
            "{name} missing:\n{metrics}"
        );
    }

    let gw = gateway(api.addr, 1, &[]);
    let mut ws = connect(gw.addr, "42").await;
    let push = format!("{http}/api/push");
    let body = r#"{"uid": 42, "type": "notice", "payload": "over http"}"#;
    let json = ["-H", "content-type: application/json", "-d", body];

    let (status, answer) = curl(&push, &json);
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("API key missing"), "{answer}");
    let (status, _) = curl(
        &push,
        &[&json[..], &["-H", "X-API-Key: not the key"]].concat(),
    );
    assert_eq!(status, 401);

    let bearer = format!("Authorization: Bearer {KEY}");
    let (status, answer) = curl(&push, &[&json[..], &["-H", &bearer]].concat());
    assert_eq!(status, 200, "{answer}");
    let answer: Value = serde_json::from_str(&answer).expect("JSON answer");
    assert_eq!(answer["sessions"], 1, "{answer}");
    assert!(
        answer["offset"].as_str().is_some_and(|o| o.contains(':')),
        "{answer}"
    );
    let frame = next_json(&mut ws).await.expect("the push");
    assert_eq!(frame["type"], "notice");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(frame["payload"].as_str().unwrap_or_default())
        .expect("base64");
    assert_eq!(payload, b"over http");

    let x_key = format!("X-API-Key: {KEY}");
    let typo = [
        "-H",
        &x_key,
        "-d",
        r#"{"uid": 42, "type": "t", "text": "hi"}"#,
    ];
    let (status, answer) = curl(&push, &typo);
    assert_eq!(status, 400);
    assert!(answer.contains("unknown field `text`"), "{answer}");
    let kick = [
        "-H",
        &x_key,
        "-d",
        r#"{"uid": 42, "code": 4000, "reason": "bye"}"#,
    ];
    let (status, answer) = curl(&format!("{http}/api/kick"), &kick);
    assert_eq!((status, answer.as_str()), (200, r#"{"sessions":1}"#));
    assert_eq!(expect_close(&mut ws).await, (4000, "bye".to_owned()));
}

#[test]
fn without_a_key_file_the_api_is_off() {
    let api = api_with_http(None);
    let http = format!("http://{}", api.admin.expect("ws-api http address"));
    let (status, answer) = curl(
        &format!("{http}/api/broadcast"),
        &["-H", &format!("X-API-Key: {KEY}"), "-d", r#"{"type": "t"}"#],
    );
    assert_eq!(status, 403);
    assert!(answer.contains("--http-api-key-file"), "{answer}");
    assert_eq!(curl(&format!("{http}/healthz"), &[]).0, 200);
}
