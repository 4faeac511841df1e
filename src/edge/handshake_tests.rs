//! The upgrade request's parsing and checks, and the refusals' statuses
//! and Close codes: the unit tests of `handshake`, in a file of their own to
//! keep that one short.

use crate::config::normalize_origin;
use crate::edge::handshake::{Refusal, check_origin, parse};
use crate::metrics::Reject;
use crate::session::resume::Position;

fn paths() -> Vec<String> {
    vec!["/gateway/ws".into(), "/gateway/connect".into()]
}

fn none() -> Vec<String> {
    Vec::new()
}

#[test]
fn origin_allow_list_is_normalised() {
    let only = vec!["https://App.example/".to_string()];
    assert!(check_origin(Some("https://app.example"), &only).is_ok());
    assert!(check_origin(Some("https://app.example/"), &only).is_ok());
    assert_eq!(
        check_origin(Some("https://evil.example"), &only)
            .unwrap_err()
            .close_code(),
        Some(4403)
    );
    assert!(
        check_origin(None, &only).is_ok(),
        "no Origin: not a browser"
    );
    assert!(check_origin(Some("https://evil.example"), &["*".into()]).is_ok());
    assert_eq!(
        normalize_origin("http://h:8080"),
        Some("http://h:8080".into())
    );
    for bad in [
        "app.example",
        "https://",
        "https://h/path",
        "https://h?q",
        "",
    ] {
        assert_eq!(normalize_origin(bad), None, "{bad}");
    }
}

#[test]
fn subprotocols_are_selected_among_those_offered() {
    let apps = vec!["graphql-ws".to_string()];
    let offer = |p: &str, target: &str| {
        parse(
            &req(target, &format!("Sec-WebSocket-Protocol: {p}\r\n")),
            &paths(),
            &apps,
        )
        .unwrap()
        .unwrap()
    };
    // (offered, target, answered subprotocol, token)
    let cases: [(&str, &str, &str, &[u8]); 4] = [
        // An app subprotocol beside a token from the query.
        ("graphql-ws", "/gateway/ws?token=7", "graphql-ws", b"7"),
        // The marker with a token, plus ?token=: the query wins, the marker is answered.
        ("token, 42", "/gateway/ws?token=7", "token", b"7"),
        // App subprotocol and marker together: the app one is answered.
        ("token, 42, graphql-ws", "/gateway/ws", "graphql-ws", b"42"),
        // A token with '=', '+', '/' as token.<base64url>.
        ("token.YSs9Lw", "/gateway/ws", "token.YSs9Lw", b"a+=/"),
    ];
    for (offered, target, protocol, token) in cases {
        let u = offer(offered, target);
        assert_eq!(
            (u.protocol.as_deref(), u.token.as_deref()),
            (Some(protocol), Some(token)),
            "{offered} at {target}"
        );
    }
    // Unknown app subprotocols are not answered.
    let u = offer("chat.v9", "/gateway/ws?token=7");
    assert_eq!(u.protocol, None);
}

#[test]
fn in_band_codes() {
    let code = |k| Refusal::new(k, "x").close_code();
    assert_eq!(code(Reject::MissingToken), Some(4401));
    assert_eq!(code(Reject::Unauthorized), Some(4401));
    assert_eq!(code(Reject::UserLimit), Some(4429));
    assert_eq!(code(Reject::UpstreamUnavailable), Some(4503));
    assert_eq!(code(Reject::NotFound), None);
}

const BASE: &str = "Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn req(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\n{BASE}{extra}\r\n").into_bytes()
}

#[test]
fn accepts_rfc_example_with_header_token() {
    let mut r = req("/gateway/ws", "token: abc\r\n");
    r.extend_from_slice(b"\x81\x80");
    let u = parse(&r, &paths(), &none()).unwrap().unwrap();
    assert_eq!(u.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(u.token.as_deref(), Some(&b"abc"[..]));
    assert_eq!(u.leftover, b"\x81\x80");
    assert!(!u.protobuf);
}

#[test]
fn token_from_query_and_subprotocol() {
    let u = parse(
        &req("/gateway/connect?token=a%2Bb&format=protobuf", ""),
        &paths(),
        &none(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(u.token.as_deref(), Some(&b"a+b"[..]));
    assert!(u.protobuf);
    let u = parse(
        &req("/gateway/ws", "Sec-WebSocket-Protocol: token, s3cr3t\r\n"),
        &paths(),
        &none(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(u.token.as_deref(), Some(&b"s3cr3t"[..]));
    assert_eq!(u.protocol.as_deref(), Some("token"));
    assert!(
        parse(&req("/gateway/ws", ""), &paths(), &none())
            .unwrap()
            .unwrap()
            .token
            .is_none()
    );
}

#[test]
fn since_from_query_header_or_subprotocol() {
    let since = |target: &str, headers: &str| {
        parse(&req(target, headers), &paths(), &none()).map(|u| u.unwrap().since)
    };
    let want = Some(Position {
        epoch: "k3".into(),
        n: 42,
    });
    assert_eq!(since("/gateway/ws?since=k3%3A42", "").unwrap(), want);
    assert_eq!(
        since("/gateway/ws", "X-Resume-Since: k3:42\r\n").unwrap(),
        want
    );
    let offered = "Sec-WebSocket-Protocol: token.YQ, since.k3.42\r\n";
    assert_eq!(since("/gateway/ws", offered).unwrap(), want);
    // Alone, the since entry is the one answered (browsers need one).
    let alone = req(
        "/gateway/ws?token=1",
        "Sec-WebSocket-Protocol: since.k3.42\r\n",
    );
    let u = parse(&alone, &paths(), &none()).unwrap().unwrap();
    assert_eq!(u.protocol.as_deref(), Some("since.k3.42"));
    assert_eq!(since("/gateway/ws", "").unwrap(), None);
    assert_eq!(since("/gateway/ws?since=42", "").unwrap_err().status, 400);
}

#[test]
fn device_from_header_query_or_subprotocol() {
    let device = |target: &str, headers: &str| {
        parse(&req(target, headers), &paths(), &none())
            .map(|u| u.unwrap().device.map(|d| d.to_string()))
    };
    let want = Some("phone-1".to_string());
    assert_eq!(device("/gateway/ws?device=phone-1", "").unwrap(), want);
    assert_eq!(
        device("/gateway/ws", "X-Device-Id: phone-1\r\n").unwrap(),
        want
    );
    let offered = "Sec-WebSocket-Protocol: token.YQ, device.phone-1\r\n";
    assert_eq!(device("/gateway/ws", offered).unwrap(), want);
    // The header first, then the query, then the entry.
    let all = "X-Device-Id: phone-1\r\nSec-WebSocket-Protocol: device.tab\r\n";
    assert_eq!(device("/gateway/ws?device=tab", all).unwrap(), want);
    assert_eq!(device("/gateway/ws", "").unwrap(), None);
    // Alone, the device entry is the one answered (browsers need one).
    let alone = req(
        "/gateway/ws?token=1",
        "Sec-WebSocket-Protocol: device.tab\r\n",
    );
    let u = parse(&alone, &paths(), &none()).unwrap().unwrap();
    assert_eq!(u.protocol.as_deref(), Some("device.tab"));
    // An invalid id is refused with the rule, wherever it came from.
    let long = format!("/gateway/ws?device={}", "a".repeat(65));
    for (target, headers) in [
        ("/gateway/ws?device=", ""),
        ("/gateway/ws?device=a%20b", ""),
        (long.as_str(), ""),
        ("/gateway/ws", "X-Device-Id: a:b\r\n"),
        ("/gateway/ws?device=ok", "X-Device-Id: \r\n"),
        ("/gateway/ws", "Sec-WebSocket-Protocol: device.\r\n"),
    ] {
        let refused = device(target, headers).unwrap_err();
        assert_eq!(refused.status, 400, "{target} {headers}");
        assert_eq!(refused.kind, Reject::BadRequest);
        assert!(refused.reason.contains("device id"), "{}", refused.reason);
    }
}

#[test]
fn incomplete_is_not_an_error() {
    let r = req("/gateway/ws", "");
    assert!(
        parse(&r[..r.len() - 2], &paths(), &none())
            .unwrap()
            .is_none()
    );
}

#[test]
fn refusals_have_their_status() {
    let status = |r: &[u8]| parse(r, &paths(), &none()).unwrap_err().status;
    assert_eq!(status(&req("/other", "")), 404);
    assert_eq!(status(b"POST /gateway/ws HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET /gateway/ws HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status(b"\x00\x01garbage\r\n\r\n"), 400);
    let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(status(&req("/gateway/ws", &many)), 431);
    let v12 = format!(
        "GET /gateway/ws HTTP/1.1\r\n{}\r\n",
        BASE.replace("Version: 13", "Version: 12")
    );
    assert_eq!(status(v12.as_bytes()), 400);
    let http10 = format!("GET /gateway/ws HTTP/1.0\r\n{BASE}\r\n");
    assert_eq!(status(http10.as_bytes()), 400);
    let short_key = format!(
        "GET /gateway/ws HTTP/1.1\r\n{}\r\n",
        BASE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")
    );
    assert_eq!(status(short_key.as_bytes()), 400);
}

/// RFC 6455 4.2.1: a Host header, and one key (two could be answered for
/// either: a proxy and the server could disagree on which).
#[test]
fn host_is_required_and_the_key_is_one() {
    let refusal = |r: &[u8]| parse(r, &paths(), &none()).unwrap_err();
    let no_host = format!(
        "GET /gateway/ws HTTP/1.1\r\n{}\r\n",
        BASE.replace("Host: x\r\n", "")
    );
    let r = refusal(no_host.as_bytes());
    assert_eq!((r.status, r.reason.as_ref()), (400, "missing Host"));
    let empty_host = format!(
        "GET /gateway/ws HTTP/1.1\r\n{}\r\n",
        BASE.replace("Host: x", "Host: ")
    );
    assert_eq!(refusal(empty_host.as_bytes()).status, 400);
    let two_keys = req(
        "/gateway/ws",
        "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n",
    );
    let r = refusal(&two_keys);
    assert_eq!(
        (r.status, r.reason.as_ref()),
        (400, "more than one Sec-WebSocket-Key")
    );
}
