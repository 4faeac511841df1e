//! Nothing lost across reconnects (docs/delivery.md), with tokio-tungstenite
//! as the client: a cut connection and a restarted gateway each resume with
//! exactly the messages pushed meanwhile, in order, none twice; a position
//! the history no longer holds gets `resume-failed`; client message ids are
//! acknowledged once received and duplicates flagged; a user that
//! acknowledges gets unacknowledged messages again and resumes from its
//! acknowledged position without passing one.

mod common;

use common::*;

#[tokio::test]
async fn a_cut_connection_resumes_with_exactly_what_it_missed() {
    let api = ws_api_with("127.0.0.1:0", "discard", &keep_pushed());
    let gw = gateway(api.addr, 2, &[]);
    let uid = 9001;
    let mut ws = connect_since(gw.addr, uid, None).await;
    let pushing = push_in_background(api.addr, uid);
    let (epoch, last) = read_pushes(&mut ws, 300).await;
    // Cut: no close handshake, the socket just goes away.
    drop(ws);
    let since = format!("{epoch}:{last}");
    let mut ws = connect_since(gw.addr, uid, Some(&since)).await;
    expect_resumed_in_order(&mut ws, &epoch, last).await;
    pushing.await.expect("pushes");
    let admin = gw.admin.expect("admin");
    assert_eq!(
        metric_with(admin, "gateway_resumes_total", "outcome", "resumed"),
        1.0
    );
}

#[tokio::test]
async fn a_restarted_gateway_resumes_with_exactly_what_was_missed() {
    let api = ws_api_with("127.0.0.1:0", "discard", &keep_pushed());
    let mut first = gateway(api.addr, 2, &["--drain-window", "10ms"]);
    let (listen, admin) = (first.addr, first.admin.expect("admin"));
    let uid = 9002;
    let mut ws = connect_since(listen, uid, None).await;
    let pushing = push_in_background(api.addr, uid);
    let (epoch, mut last) = read_pushes(&mut ws, 200).await;
    first.signal(libc::SIGTERM);
    // Whatever arrives before the 1001 close still counts as received.
    while let Some(v) = next_json(&mut ws).await {
        let (_, n) = offset(&v);
        assert_eq!(n, last + 1);
        last = n;
    }
    first.wait_exit(DEADLINE).expect("first gateway exits");
    let _second = gateway_on(api.addr, listen, admin);
    let since = format!("{epoch}:{last}");
    let mut ws = connect_since(listen, uid, Some(&since)).await;
    expect_resumed_in_order(&mut ws, &epoch, last).await;
    pushing.await.expect("pushes");
}

#[tokio::test]
async fn a_position_the_history_lost_gets_resume_failed() {
    let api = ws_api_with("127.0.0.1:0", "discard", &["--history-size", "10"]);
    let gw = gateway(api.addr, 1, &[]);
    let uid = 9003;
    let mut ws = connect_since(gw.addr, uid, None).await;
    push(api.addr, uid, "news", "1").await;
    let (epoch, _) = read_pushes(&mut ws, 1).await;
    drop(ws);
    for i in 2..=30 {
        push(api.addr, uid, "news", &i.to_string()).await;
    }
    for since in [
        format!("{epoch}:1"),
        "otherepoch:5".into(),
        format!("{epoch}:99"),
    ] {
        let mut ws = connect_since(gw.addr, uid, Some(&since)).await;
        let v = next_json(&mut ws).await.expect("open");
        assert_eq!(v["type"], "resume-failed", "{since}: {v}");
    }
    // Still within the kept history: resumes.
    let mut ws = connect_since(gw.addr, uid, Some(&format!("{epoch}:25"))).await;
    for want in 26..=30 {
        let v = next_json(&mut ws).await.expect("open");
        assert_eq!(offset(&v).1, want, "{v}");
    }
    assert_eq!(next_json(&mut ws).await.expect("open")["type"], "resumed");
    let admin = gw.admin.expect("admin");
    assert_eq!(
        metric_with(admin, "gateway_resumes_total", "outcome", "failed"),
        3.0
    );
}

#[tokio::test]
async fn client_ids_are_acked_once_received_and_duplicates_flagged() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 1, &[]);
    let mut ws = connect_since(gw.addr, 9004, None).await;
    let chat = r#"{"type":"chat","payload":"aGk=","id":"m-1"}"#;
    send_text(&mut ws, chat).await;
    let echo = next_json(&mut ws).await.expect("open");
    assert_eq!(
        (echo["type"].as_str(), echo["id"].as_str()),
        (Some("chat"), Some("m-1"))
    );
    let ack = next_json(&mut ws).await.expect("open");
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("ack"), Some("m-1"))
    );
    assert!(ack.get("duplicate").is_none(), "{ack}");
    // Sent again after a "reconnect": acknowledged as a duplicate, not echoed.
    drop(ws);
    let mut ws = connect_since(gw.addr, 9004, None).await;
    send_text(
        &mut ws,
        r#"{"type":"chat","payload":"aGk=","id":"m-1","resent":true}"#,
    )
    .await;
    let ack = next_json(&mut ws).await.expect("open");
    assert_eq!(
        (ack["type"].as_str(), ack["duplicate"].as_bool()),
        (Some("ack"), Some(true))
    );
    nothing_pending(&mut ws, "no echo of the duplicate").await;
    let admin = gw.admin.expect("admin");
    assert_eq!(metric(admin, "gateway_client_acks_total"), Some(2.0));
    assert_eq!(metric(admin, "gateway_client_duplicates_total"), Some(1.0));
    assert_eq!(metric(admin, "gateway_client_resent_total"), Some(1.0));
}

#[tokio::test]
async fn unacknowledged_messages_come_again_and_a_reconnect_resumes_from_the_ack() {
    let api = ws_api_with("127.0.0.1:0", "discard", &["--ack-timeout", "300ms"]);
    let gw = gateway(api.addr, 1, &[]);
    let uid = 9005;
    let mut ws = connect_since(gw.addr, uid, None).await;
    push(api.addr, uid, "news", "1").await;
    let (epoch, _) = read_pushes(&mut ws, 1).await;
    send_text(
        &mut ws,
        &format!(r#"{{"type":"ack","offset":"{epoch}:1"}}"#),
    )
    .await;
    // ws-api handles a stream's messages in order: once this id is
    // acknowledged, so is offset 1, and the user counts as acknowledging.
    send_text(&mut ws, r#"{"type":"sync","payload":"","id":"s-1"}"#).await;
    let ack = next_json(&mut ws).await.expect("open");
    assert_eq!(ack["id"], "s-1", "{ack}");
    push(api.addr, uid, "news", "2").await;
    let first = next_json(&mut ws).await.expect("open");
    assert_eq!(offset(&first).1, 2);
    // Not acknowledged: it comes again after --ack-timeout.
    let again = next_json(&mut ws).await.expect("open");
    assert_eq!(
        (again["type"].as_str(), offset(&again).1),
        (Some("news"), 2)
    );
    drop(ws);
    push(api.addr, uid, "news", "3").await;
    // No position passed: resumes after the acknowledged one (1).
    let mut ws = connect_since(gw.addr, uid, None).await;
    let mut seen = Vec::new();
    loop {
        let v = next_json(&mut ws).await.expect("open");
        if v["type"] == "resumed" {
            assert_eq!(offset(&v), (epoch.clone(), 3));
            break;
        }
        seen.push(offset(&v).1);
    }
    assert_eq!(seen, [2, 3], "everything after the ack, once");
}
