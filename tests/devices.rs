//! Per-device acknowledgements (docs/delivery.md, "Devices"): one user's
//! two devices acknowledge apart, and each reconnect without a position
//! resumes after its own device's acknowledged position, with history in
//! memory and in Redis; redelivery per device; a device id given by
//! query to a second client implementation (Python `websockets`); a bad
//! device id is refused.

mod common;

use std::process::Command;

use common::redis_server::RedisServer;
use common::*;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const UID: u64 = 7;

/// Connects as `uid` with `X-Device-Id: device`.
async fn connect_device(gw: std::net::SocketAddr, uid: u64, device: &str) -> Client {
    connect_with_headers(gw, uid, &[("x-device-id", device)]).await
}

/// Acknowledges up to `n`, and waits until ws-api has recorded it: ws-api
/// handles a stream's messages in order, so once the id sent after the
/// ack is acknowledged, so is the offset.
async fn ack(ws: &mut Client, epoch: &str, n: u64, tag: &str) {
    send_text(ws, &format!(r#"{{"type":"ack","offset":"{epoch}:{n}"}}"#)).await;
    send_text(
        ws,
        &format!(r#"{{"type":"sync","payload":"","id":"{tag}"}}"#),
    )
    .await;
    let got = next_json(ws).await.expect("open");
    assert_eq!(
        (got["type"].as_str(), got["id"].as_str()),
        (Some("ack"), Some(tag)),
        "{got}"
    );
}

/// Reads a resume: the replayed offsets, then `resumed`'s.
async fn replayed(ws: &mut Client) -> (Vec<u64>, u64) {
    let mut seen = Vec::new();
    loop {
        let v = next_json(ws).await.expect("the resumed session stays open");
        match v["type"].as_str() {
            Some("resumed") => return (seen, offset(&v).1),
            Some("news") => seen.push(offset(&v).1),
            other => panic!("unexpected frame {other:?}: {v}"),
        }
    }
}

async fn push_n(api: std::net::SocketAddr, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        push(api, UID, "news", &i.to_string()).await;
    }
}

/// The scenario of the issue: A acknowledges 10, B 4; away, 5 more pushes;
/// each reconnects without a position and gets what it has not
/// acknowledged, then `resumed`. Returns the epoch.
async fn two_devices_resume_apart(api: &Proc, gw: &Proc) -> String {
    let mut a = connect_device(gw.addr, UID, "A").await;
    let mut b = connect_device(gw.addr, UID, "B").await;
    push_n(api.addr, 1..=10).await;
    let (epoch, _) = read_pushes(&mut a, 10).await;
    read_pushes(&mut b, 10).await;
    ack(&mut a, &epoch, 10, "a-1").await;
    ack(&mut b, &epoch, 4, "b-1").await;
    drop((a, b));
    push_n(api.addr, 11..=15).await;

    let mut a = connect_device(gw.addr, UID, "A").await;
    assert_eq!(
        replayed(&mut a).await,
        ((11..=15).collect(), 15),
        "device A"
    );
    let mut b = connect_device(gw.addr, UID, "B").await;
    assert_eq!(replayed(&mut b).await, ((5..=15).collect(), 15), "device B");

    // The devices' acks are theirs: the user's own position (sessions
    // without a device id) is untouched, so that one does not resume.
    let mut plain = connect_since(gw.addr, UID, None).await;
    push(api.addr, UID, "news", "16").await;
    let first = next_json(&mut plain).await.expect("open");
    assert_eq!(
        (first["type"].as_str(), offset(&first).1),
        (Some("news"), 16),
        "{first}"
    );
    epoch
}

/// Redelivery needs no part here: its timeout is far beyond the test.
const NO_REDELIVERY: [&str; 2] = ["--ack-timeout", "10m"];

#[tokio::test]
async fn each_device_resumes_after_its_own_ack_in_memory() {
    let api = ws_api_with("127.0.0.1:0", "discard", &NO_REDELIVERY);
    let gw = gateway(api.addr, 1, &[]);
    two_devices_resume_apart(&api, &gw).await;
}

#[tokio::test]
async fn each_device_resumes_after_its_own_ack_in_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str(), "--devices-per-user", "2"];
    args.extend(NO_REDELIVERY);
    let api = ws_api_with("127.0.0.1:0", "discard", &args);
    let gw = gateway(api.addr, 1, &[]);
    let epoch = two_devices_resume_apart(&api, &gw).await;
    let key = format!("ws:hist:{{{UID}}}:devices");
    let mut fields: Vec<String> = redis.query(redis::cmd("HKEYS").arg(&key));
    fields.sort();
    assert_eq!(fields, ["A", "B"]);
    // A third device, with the bound at 2: A (the least recently
    // acknowledging) is forgotten, and resumes no more.
    let mut c = connect_device(gw.addr, UID, "C").await;
    ack(&mut c, &epoch, 16, "c-1").await;
    let mut fields: Vec<String> = redis.query(redis::cmd("HKEYS").arg(&key));
    fields.sort();
    assert_eq!(fields, ["B", "C"]);
    let mut a = connect_device(gw.addr, UID, "A").await;
    push(api.addr, UID, "news", "17").await;
    let first = next_json(&mut a).await.expect("open");
    assert_eq!(
        (first["type"].as_str(), offset(&first).1),
        (Some("news"), 17),
        "{first}"
    );
}

/// Redelivery is per device: B, behind, gets what it did not acknowledge
/// again although A acknowledged everything; A gets nothing again.
#[tokio::test]
async fn redelivery_follows_each_devices_own_ack() {
    let args = ["--ack-timeout", "300ms", "--ack-retries", "2"];
    let api = ws_api_with("127.0.0.1:0", "discard", &args);
    let gw = gateway(api.addr, 1, &[]);
    let mut a = connect_device(gw.addr, UID, "A").await;
    let mut b = connect_device(gw.addr, UID, "B").await;
    push_n(api.addr, 1..=1).await;
    let (epoch, _) = read_pushes(&mut a, 1).await;
    read_pushes(&mut b, 1).await;
    ack(&mut a, &epoch, 1, "a-1").await;
    ack(&mut b, &epoch, 1, "b-1").await;
    // Pushed once the user acknowledges: these are waited for.
    push_n(api.addr, 2..=3).await;
    for ws in [&mut a, &mut b] {
        for want in 2..=3 {
            assert_eq!(offset(&next_json(ws).await.expect("open")).1, want);
        }
    }
    ack(&mut a, &epoch, 3, "a-2").await;
    // Two rounds of resends to B, each of 2 and 3.
    for round in 1..=2 {
        for want in 2..=3 {
            let v = next_json(&mut b).await.expect("open");
            assert_eq!(
                (v["type"].as_str(), offset(&v).1),
                (Some("news"), want),
                "round {round}"
            );
        }
    }
    // One ws-api task sends each round to every session in turn, down the
    // one core's stream: a resend of round 1 to A would be ahead of this.
    send_text(&mut a, r#"{"type":"sync","payload":"","id":"a-3"}"#).await;
    let next = next_json(&mut a).await.expect("open");
    assert_eq!(
        next["id"], "a-3",
        "A was sent again what it acknowledged: {next}"
    );
}

/// Python's `websockets`, giving the device by query: it acknowledges 3
/// of 6 and, reconnecting without a position, gets 4–6 then `resumed`.
#[test]
fn a_python_client_gives_its_device_by_query() {
    let api = ws_api_with("127.0.0.1:0", "discard", &NO_REDELIVERY);
    let gw = gateway(api.addr, 1, &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ws_device_client.py");
    let url = format!("ws://{}/gateway/ws?token={UID}&device=py-1", gw.addr);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pushes = |range| rt.block_on(push_n(api.addr, range));
    let run = |step: &str| {
        let until = std::time::Instant::now() + DEADLINE;
        loop {
            let out = Command::new(peers::python())
                .arg(&script)
                .args([&url, step])
                .output()
                .expect("the venv's python runs (make deps installs websockets in target/venv)");
            // 503 until the gateway's stream to ws-api is up.
            if out.status.success()
                || std::time::Instant::now() > until
                || !String::from_utf8_lossy(&out.stderr).contains("503")
            {
                let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                assert!(
                    out.status.success(),
                    "python client ({step}) failed: {stderr}"
                );
                return String::from_utf8_lossy(&out.stdout).trim().to_owned();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // First run: connected, it reads 6 pushes and acknowledges 3.
    let first = std::thread::scope(|s| {
        let client = s.spawn(|| run("ack3of6"));
        // Pushed once the client's session is there (it counts a session).
        let until = std::time::Instant::now() + DEADLINE;
        while rt.block_on(online(api.addr)) < 1 {
            assert!(
                std::time::Instant::now() < until,
                "the python client never connected"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        pushes(1..=6);
        client.join().expect("client thread")
    });
    assert_eq!(first, "acked 3");
    let second = run("resume");
    assert_eq!(second, "replayed 4,5,6 resumed 6");
}

#[tokio::test]
async fn a_bad_device_id_is_refused_with_its_reason() {
    let api = ws_api("127.0.0.1:0", "discard");
    let gw = gateway(api.addr, 1, &[]);
    connect_device(gw.addr, UID, "ok").await;
    for target in [
        "?device=a%20b",
        "?device=",
        &format!("?device={}", "x".repeat(65)),
    ] {
        let req = format!("ws://{}/gateway/ws{target}", gw.addr)
            .into_client_request()
            .map(|mut r| {
                r.headers_mut().insert("token", "7".parse().expect("token"));
                r
            })
            .expect("request");
        match handshake(req).await {
            Err(WsError::Http(resp)) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                assert_eq!(resp.status(), 400, "{target}: {body}");
                assert!(
                    body.contains("device id must be 1-64 characters"),
                    "{target}: {body}"
                );
            }
            other => panic!("{target}: expected a 400, got {:?}", other.map(|_| ())),
        }
    }
    let rejected = metric_with(
        gw.admin.expect("admin"),
        "gateway_handshakes_rejected_total",
        "reason",
        "bad_request",
    );
    assert_eq!(rejected, 3.0);
}
