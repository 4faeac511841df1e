//! The JavaScript client (`clients/js/wsgw.js`) against the real gateway
//! and ws-api, in headless Chromium (`tests/common/browser.rs`, page
//! `tests/browser/client.html`): token and echo, refusals and retry hints,
//! resume across a gateway restart without gaps or duplicates
//! (docs/delivery.md), and `send(..., {ack: true})` resolved by ws-api's ack.
//! Its logic without a browser: `node --test clients/js/test/`, run here too.
//!
//! Where Chromium or node is missing the tests say so loudly, and under
//! `CI=true` they fail instead of skipping.

mod common;

use std::path::Path;
use std::process::Command;

use common::browser::Browser;
use common::*;
use serde_json::{Value, json};
use ws_api::proto::wsapi::BizMsg;

/// What a page call may wait for, in ms (the driver answers within its own
/// deadline, see tests/common/browser.rs).
const WAIT_MS: u64 = 15_000;

/// Client options for the tests: short backoff, so that a reconnect does
/// not wait the production default.
fn options(token: Option<&str>) -> Value {
    let mut o = json!({"backoffBase": 50, "backoffMax": 500});
    if let Some(t) = token {
        o["token"] = json!(t);
    }
    o
}

/// The calls of `tests/browser/client.js`.
impl Browser {
    fn start_client(&mut self, name: &str, gw: &Proc, opts: Value) {
        let url = format!("ws://{}/gateway/ws", gw.addr);
        let ev = self.call("app", "gwStart", json!([name, url, opts]));
        assert_eq!(ev["event"], "started", "{ev}");
    }

    /// Waits until `state` was reported `count` times; its detail.
    fn wait_state(&mut self, name: &str, state: &str, count: usize) -> Value {
        let ev = self.call("app", "gwWaitState", json!([name, state, count, WAIT_MS]));
        assert_eq!(ev["event"], "state", "no '{state}' (x{count}): {ev}");
        ev["detail"].clone()
    }

    /// Waits until the client's current state is `state`.
    fn wait_current(&mut self, name: &str, state: &str) {
        let ev = self.call("app", "gwWaitCurrent", json!([name, state, WAIT_MS]));
        assert_eq!(ev["event"], "state", "never '{state}': {ev}");
    }

    fn wait_messages(&mut self, name: &str, count: usize) {
        let ev = self.call("app", "gwWaitMessages", json!([name, count, WAIT_MS]));
        if ev["event"] != "messages" {
            // The states with their reasons (why a resume failed, say).
            let states = &self.seen(name)["states"];
            panic!("not {count} messages: {ev}; states: {states}");
        }
    }

    fn seen(&mut self, name: &str) -> Value {
        self.call("app", "gwSeen", json!([name]))
    }

    fn client_send(&mut self, name: &str, ty: &str, text: &str, ack: bool) -> Value {
        self.call("app", "gwSend", json!([name, ty, text, ack, WAIT_MS]))
    }
}

fn states(seen: &Value) -> Vec<&str> {
    seen["states"]
        .as_array()
        .expect("states")
        .iter()
        .map(|s| s["state"].as_str().expect("state"))
        .collect()
}

fn messages(seen: &Value) -> &Vec<Value> {
    seen["messages"].as_array().expect("messages")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

#[test]
fn client_logic_without_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = match Command::new("node")
        .args(["--test", "--test-timeout=10000", "clients/js/test/"])
        .current_dir(root)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            cannot_run("the JS client's unit tests (node)", &e.to_string());
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node --test clients/js/test/ failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Vec<&str> = text.lines().filter(|l| l.starts_with("# ")).collect();
    eprintln!("{}", summary.join("\n"));
}

#[test]
fn connects_with_a_token_echoes_and_answers_app_pings() {
    let Some(mut b) = Browser::start("client.html") else {
        return;
    };
    let api = ws_api("127.0.0.1:0", "echo");
    // ws-api echoes everything, so the client's HEARTBEAT answers to the
    // gateway's PINGs come back as messages.
    let gw = gateway(api.addr, 2, &["--ping-interval", "300ms", "--app-ping"]);
    until_ready(&gw);

    b.start_client("c", &gw, options(Some("42")));
    let open = b.wait_state("c", "open", 1);
    // The token travelled as the `token.<base64url>` entry, "42" → "NDI".
    assert_eq!(open["protocol"], "token.NDI", "{open}");
    b.wait_state("c", "live", 1);
    let sent = b.client_send("c", "message", "hello", false);
    assert_eq!(sent["event"], "sent", "{sent}");
    b.wait_messages("c", 1);
    // The echo of a message without a position has no offset.
    let echo = json!({"type": "message", "text": "hello", "offset": null});
    let heartbeat = json!({"type": "HEARTBEAT", "text": "", "offset": null});
    let mut seen = b.seen("c");
    while !messages(&seen).contains(&heartbeat) {
        // Fails after WAIT_MS without another message.
        b.wait_messages("c", messages(&seen).len() + 1);
        seen = b.seen("c");
    }
    assert!(messages(&seen).contains(&echo), "{seen}");
    assert!(
        messages(&seen)
            .iter()
            .all(|m| m == &echo || m == &heartbeat),
        "{seen}"
    );
    assert_eq!(states(&seen), ["connecting", "open", "live"]);
}

#[test]
fn stops_on_a_refusal_and_retries_after_the_hint_while_ws_api_is_down() {
    let Some(mut b) = Browser::start("client.html") else {
        return;
    };
    let mut api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    let admin = gw.admin.expect("admin address");
    until_ready(&gw);

    // No token: 4401, final; the client does not come back.
    b.start_client("anonymous", &gw, options(None));
    let closed = b.wait_state("anonymous", "closed", 1);
    assert_eq!(closed["code"], 4401, "{closed}");
    assert_eq!(closed["refused"], true, "{closed}");
    assert_eq!(closed["reason"], "missing token", "{closed}");
    let seen = b.seen("anonymous");
    // An in-band refusal opens first; without a position to resume from
    // nothing tells the client it was not admitted until the Close.
    assert_eq!(states(&seen), ["connecting", "open", "live", "closed"]);

    // ws-api down: 4503 "...; retry after 1s"; the client waits at least
    // that long, and comes up by itself once ws-api is back.
    let api_addr = api.addr;
    // No session open, for the count below.
    wait_for_metric(admin, "gateway_websocket_online_totals", 0.0);
    api.kill();
    b.start_client("patient", &gw, options(Some("9")));
    let retry = b.wait_state("patient", "reconnecting", 1);
    assert_eq!(retry["code"], 4503, "{retry}");
    assert!(retry["delay"].as_u64().expect("delay") >= 1000, "{retry}");
    let _api = ws_api(&api_addr.to_string(), "echo");
    // A refused attempt also reads 'live' for a moment (see above): the
    // gateway's count of sessions tells when one was admitted.
    wait_for_metric(admin, "gateway_websocket_online_totals", 1.0);
    b.wait_current("patient", "live");
    let sent = b.client_send("patient", "message", "back", false);
    assert_eq!(sent["event"], "sent", "{sent}");
    b.wait_messages("patient", 1);
}

/// ws-api Push by uid, `range` in order, payload `m<i>`, on one channel.
fn push_range(api: std::net::SocketAddr, uid: u64, range: std::ops::RangeInclusive<u32>) {
    runtime().block_on(async {
        let mut biz = biz(api).await;
        for i in range {
            let msg = BizMsg {
                biz_code: "note".into(),
                biz_payload: format!("m{i}"),
                uid,
                ..Default::default()
            };
            biz.push(msg).await.expect("push");
        }
    });
}

#[test]
fn resumes_across_a_gateway_restart_without_gaps_or_duplicates() {
    let Some(mut b) = Browser::start("client.html") else {
        return;
    };
    // The client may miss up to 150 of the 200: more than ws-api keeps by
    // default (see `keep_pushed`).
    let api = ws_api_with("127.0.0.1:0", "echo", &keep_pushed());
    let mut gw = gateway(api.addr, 2, &[]);
    let (listen, admin) = (gw.addr, gw.admin.expect("admin address"));
    until_ready(&gw);
    b.start_client("c", &gw, options(Some("7")));
    b.wait_state("c", "live", 1);

    push_range(api.addr, 7, 1..=100);
    // Part of it delivered, perhaps not all, when the gateway goes away.
    b.wait_messages("c", 50);
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(DEADLINE).expect("the gateway exits");
    assert!(status.success(), "{status}");
    // Pushed while the user has no session: only the history has them.
    push_range(api.addr, 7, 101..=150);
    let _gw = gateway_on(api.addr, listen, admin);
    // Pushed while the client reconnects and its replay runs.
    push_range(api.addr, 7, 151..=200);

    b.wait_messages("c", 200);
    let seen = b.seen("c");
    let got = messages(&seen);
    assert_eq!(got.len(), 200, "duplicates delivered: {seen}");
    let epoch = got[0]["offset"]
        .as_str()
        .and_then(|o| o.split_once(':'))
        .map(|(e, _)| e.to_owned())
        .unwrap_or_else(|| panic!("the first message has no position: {}", got[0]));
    for (i, m) in (1..=200).zip(got) {
        let want =
            json!({"type": "note", "text": format!("m{i}"), "offset": format!("{epoch}:{i}")});
        assert_eq!(m, &want, "message {i} of {seen}");
    }
    let states = states(&seen);
    assert!(states.contains(&"resumed"), "no resume: {states:?}");
    assert!(!states.contains(&"resume-failed"), "{states:?}");
    assert!(!states.contains(&"closed"), "{states:?}");
    assert_eq!(seen["position"], format!("{epoch}:200"), "{seen}");
    eprintln!("duplicates dropped by the client: {}", seen["dropped"]);
}

#[test]
fn send_with_ack_resolves_once_ws_api_has_it() {
    let Some(mut b) = Browser::start("client.html") else {
        return;
    };
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    let admin = gw.admin.expect("admin address");
    until_ready(&gw);
    b.start_client("c", &gw, options(Some("11")));
    b.wait_state("c", "live", 1);

    let acked = b.client_send("c", "chat", "hello", true);
    assert_eq!(acked["event"], "acked", "{acked}");
    assert_eq!(acked["duplicate"], false, "{acked}");
    assert!(
        acked["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{acked}"
    );
    wait_for_metric(admin, "gateway_client_acks_total", 1.0);
    // The ack frame is the client's business: the app sees only the echo.
    b.wait_messages("c", 1);
    let seen = b.seen("c");
    assert_eq!(
        messages(&seen),
        &vec![json!({"type": "chat", "text": "hello", "offset": null})],
        "{seen}"
    );
}
