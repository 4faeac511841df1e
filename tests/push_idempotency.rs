//! A Push that can be retried (docs/delivery.md): a Push with an
//! idempotency key is appended to its user's history at most once within
//! the window, and its retry reports the original offset with `duplicate`.
//! Against the real binaries, with two gRPC clients that share no code
//! (tonic, and Python grpcio in `target/venv`), in-memory and in Redis,
//! where a Push that Redis ran late (SIGSTOPped past ws-api's timeout) is
//! found by its retry, and a key is forgotten with its epoch.

mod common;

use std::process::Command;
use std::time::Instant;

use base64::Engine;
use common::redis_server::RedisServer;
use common::*;
use serde_json::Value;
use tonic::Code;
use ws_api::proto::wsapi::{BizMsg, PushBizMsgReply};

async fn keyed_push(
    api: std::net::SocketAddr,
    uid: u64,
    key: &str,
    payload: &str,
) -> Result<PushBizMsgReply, tonic::Status> {
    let msg = BizMsg {
        biz_code: "news".into(),
        biz_payload: payload.into(),
        uid,
        idempotency_key: key.into(),
        ..Default::default()
    };
    biz(api).await.push(msg).await.map(|r| r.into_inner())
}

/// The same Push from Python grpcio (`tests/peers/grpcio/push.py`): its
/// JSON reply, or `None` (after a loud message) where the venv has no grpcio.
fn python_push(api: std::net::SocketAddr, uid: u64, key: &str, payload: &str) -> Option<Value> {
    let python = peers::python();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/grpcio/push.py");
    let out = Command::new(&python)
        .arg(script)
        .args([&api.to_string(), &uid.to_string(), key, payload])
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            cannot_run("a grpcio Push", &why);
            return None;
        }
        Err(e) => {
            cannot_run("a grpcio Push", &format!("{}: {e}", python.display()));
            return None;
        }
    };
    Some(serde_json::from_slice(&out.stdout).expect("push.py prints JSON"))
}

fn payload_of(v: &Value) -> String {
    let b64 = v["payload"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 payload");
    String::from_utf8(bytes).expect("utf-8 payload")
}

/// Resumes `uid` from `<epoch>:0`: every message of its history, then
/// `resumed`; returns (offset n, payload) of each, in order.
async fn whole_history(gw: std::net::SocketAddr, uid: u64, epoch: &str) -> Vec<(u64, String)> {
    let mut ws = connect_since(gw, uid, Some(&format!("{epoch}:0"))).await;
    let mut seen = Vec::new();
    loop {
        let v = next_json(&mut ws)
            .await
            .expect("the resumed session stays open");
        match v["type"].as_str() {
            Some("news") => {
                let (e, n) = offset(&v);
                assert_eq!(e, epoch, "{v}");
                seen.push((n, payload_of(&v)));
            }
            Some("resumed") => return seen,
            other => panic!("unexpected frame {other:?}: {v}"),
        }
    }
}

#[tokio::test]
async fn a_retried_push_is_appended_once_in_memory() {
    let api = ws_api_with("127.0.0.1:0", "discard", &[]);
    let gw = gateway(api.addr, 1, &[]);
    let uid = 9101;
    let mut live = connect_since(gw.addr, uid, None).await;
    let first = keyed_push(api.addr, uid, "order-1", "one")
        .await
        .expect("push");
    assert!(!first.duplicate, "{first:?}");
    let (epoch, n) = first.offset.split_once(':').expect("epoch:n");
    assert_eq!(n, "1");
    let v = next_json(&mut live).await.expect("open");
    assert_eq!((offset(&v).1, payload_of(&v).as_str()), (1, "one"));

    // The retry, from grpcio: the original offset, nothing appended, and
    // the original message again to the connected session (the client
    // drops it by offset).
    if let Some(retry) = python_push(api.addr, uid, "order-1", "one, sent again") {
        assert_eq!(retry["offset"], first.offset.as_str(), "{retry}");
        assert_eq!(retry["duplicate"], true, "{retry}");
        let again = next_json(&mut live).await.expect("open");
        assert_eq!((offset(&again).1, payload_of(&again).as_str()), (1, "one"));
    }
    let retry = keyed_push(api.addr, uid, "order-1", "one, sent again")
        .await
        .expect("push");
    assert_eq!(
        (retry.offset.as_str(), retry.duplicate),
        (first.offset.as_str(), true)
    );
    assert_eq!(
        retry.success_count, 1,
        "delivered again to the live session"
    );
    let again = next_json(&mut live).await.expect("open");
    assert_eq!((offset(&again).1, payload_of(&again).as_str()), (1, "one"));

    // Another key, and no key: new offsets.
    let second = keyed_push(api.addr, uid, "order-2", "two")
        .await
        .expect("push");
    assert_eq!(
        (second.offset, second.duplicate),
        (format!("{epoch}:2"), false)
    );
    let third = keyed_push(api.addr, uid, "", "three").await.expect("push");
    assert_eq!(
        (third.offset, third.duplicate),
        (format!("{epoch}:3"), false)
    );

    let history = whole_history(gw.addr, uid, epoch).await;
    let want: Vec<(u64, String)> = vec![(1, "one".into()), (2, "two".into()), (3, "three".into())];
    assert_eq!(history, want, "each message once");

    let long = "k".repeat(129);
    let refused = keyed_push(api.addr, uid, &long, "x")
        .await
        .expect_err("too long");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("at most 128"), "{refused:?}");
    assert!(
        keyed_push(api.addr, uid, &"k".repeat(128), "four")
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_redis_ran_late_is_found_by_its_retry() {
    let redis = RedisServer::start();
    let api = ws_api_with(
        "127.0.0.1:0",
        "discard",
        &["--redis", &redis.url(), "--idempotency-window", "1m"],
    );
    let gw = gateway(api.addr, 1, &[]);
    let uid = 9102;
    // Loads the script, so the stalled Push is an EVALSHA Redis runs on waking.
    let first = keyed_push(api.addr, uid, "k-0", "zero")
        .await
        .expect("push");
    let (epoch, _) = first.offset.split_once(':').expect("epoch:n");
    let head = || {
        let head: Option<u64> = redis.query(
            redis::cmd("HGET")
                .arg(format!("ws:hist:{{{uid}}}"))
                .arg("head"),
        );
        head
    };
    assert_eq!(head(), Some(1));

    signal(&redis, libc::SIGSTOP);
    let stalled = Instant::now();
    let failed = keyed_push(api.addr, uid, "k-1", "one")
        .await
        .expect_err("Redis is stopped");
    println!(
        "the stalled Push failed after {:?}: {failed:?}",
        stalled.elapsed()
    );
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    signal(&redis, libc::SIGCONT);
    // The Push the caller gave up on ran when Redis woke.
    eventually("Redis runs the late append", || async { head() == Some(2) }).await;

    // A caller retrying on the error, as long as ws-api is reconnecting.
    let until = Instant::now() + DEADLINE;
    let retry = loop {
        match keyed_push(api.addr, uid, "k-1", "one").await {
            Ok(reply) => break reply,
            Err(e) => {
                assert!(Instant::now() < until, "no retry succeeded: {e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(
        (retry.offset.clone(), retry.duplicate),
        (format!("{epoch}:2"), true),
        "the retry finds the late append"
    );
    assert_eq!(head(), Some(2), "not appended again");
    let ttl: i64 = redis.query(redis::cmd("PTTL").arg(format!("ws:push:{{{uid}}}:k-1")));
    assert!(
        ttl > 0 && ttl <= 60_000,
        "the key expires with the window: {ttl}"
    );

    let history = whole_history(gw.addr, uid, epoch).await;
    let want: Vec<(u64, String)> = vec![(1, "zero".into()), (2, "one".into())];
    assert_eq!(history, want, "each message once");

    // The history lost (its keys deleted, as when it expires): the key is
    // forgotten with its epoch, and the same Push is appended anew.
    let hist = format!("ws:hist:{{{uid}}}");
    let _: i64 = redis.query(redis::cmd("DEL").arg(&hist).arg(format!("{hist}:log")));
    let fresh = keyed_push(api.addr, uid, "", "fresh").await.expect("push");
    let (new_epoch, _) = fresh.offset.split_once(':').expect("epoch:n");
    assert_ne!(new_epoch, epoch, "a new epoch");
    let anew = keyed_push(api.addr, uid, "k-1", "one").await.expect("push");
    assert_eq!(
        (anew.offset, anew.duplicate),
        (format!("{new_epoch}:2"), false)
    );
}

fn signal(redis: &RedisServer, signal: i32) {
    // SAFETY: kill(2) on the redis-server child this test started.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(redis.pid() as i32, signal) };
    assert_eq!(rc, 0, "kill failed");
}
