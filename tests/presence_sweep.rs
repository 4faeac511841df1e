//! ws-api's in-memory presence forgets a gateway that died without sending
//! Disconnects (SIGKILL, a crash) once its stream has been gone for
//! `--server-ttl`, as the Redis sweeper does; the sessions of a live gateway
//! stay. (The issue: 500 of 500 dead sessions still present 65 s later.)

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn a_killed_gateways_sessions_leave_in_memory_presence() {
    let api = ws_api_with("127.0.0.1:0", "echo", &["--server-ttl", "1s"]);
    let mut doomed = gateway(api.addr, 1, &[]);
    let live = gateway(api.addr, 1, &[]);
    let _kept = connect(live.addr, "1").await;
    let mut gone = Vec::new();
    for uid in 2..=21 {
        gone.push(connect(doomed.addr, &uid.to_string()).await);
    }
    assert_eq!(online(api.addr).await, 21);
    doomed.kill();
    let killed = Instant::now();
    while online(api.addr).await > 1 {
        assert!(killed.elapsed() < DEADLINE, "dead sessions still present");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = killed.elapsed();
    println!("purged {took:?} after the kill (--server-ttl 1s)");
    assert!(
        took >= Duration::from_millis(900),
        "purged before --server-ttl: {took:?}"
    );
    assert_eq!(
        online(api.addr).await,
        1,
        "the live gateway's session stays"
    );
}
