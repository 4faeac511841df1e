//! The hand-parsed HTTP upgrade: any bytes give a request, a refusal or
//! "incomplete", never a panic, and:
//! - parsing is deterministic (the same bytes twice, the same answer);
//! - a refusal of `parse` is one of the three it documents by its kinds:
//!   400 (BadRequest), 404 (NotFound, a path not served), 431
//!   (HeaderTooLarge: too many headers), with no Close code (not a valid
//!   upgrade, so always refused in HTTP); `check_origin` refuses with 403
//!   (Forbidden, Close code 4403) only;
//! - for an accepted upgrade, `Sec-WebSocket-Accept` is
//!   base64(sha1(key + GUID)) (RFC 6455 4.2.2), computed here with another
//!   SHA-1 (sha1_smol) over the key found by a scan of our own;
//! - the parser is incremental: every strict prefix of the request's head
//!   is "incomplete", the head alone gives the same upgrade with nothing
//!   left over, and what follows the head is `leftover`, verbatim;
//! - the subprotocol answered is one the client offered, an application
//!   one when the client offered one;
//! - an `Origin` is refused only if it is not on the list: requests
//!   without one and an allow-list of `*` always pass.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
// The library's paths, all here so that a module move is fixed in one place.
use ws_gateway::edge::handshake::{Refusal, Reject, Upgrade, check_origin, parse};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fuzz_target!(|data: &[u8]| {
    let paths = ["/gateway/ws".to_string()];
    let subprotocols = ["graphql-ws".to_string()];
    let origins = ["https://app.example".to_string()];
    let first = parse(data, &paths, &subprotocols);
    let second = parse(data, &paths, &subprotocols);
    assert_eq!(
        summary(&first),
        summary(&second),
        "parsing is deterministic"
    );

    let u = match first {
        Ok(None) => return,
        Err(r) => {
            let want = match r.kind {
                Reject::BadRequest => 400,
                Reject::NotFound => 404,
                Reject::HeaderTooLarge => 431,
                other => panic!("parse refused with {other:?} ({r})"),
            };
            assert_eq!(r.status, want, "{r}");
            assert_eq!(r.close_code(), None, "{r}");
            return;
        }
        Ok(Some(u)) => u,
    };

    let head = &data[..data.len() - u.leftover.len()];
    assert_eq!(&data[head.len()..], &u.leftover[..], "leftover is the rest");
    for end in 0..head.len() {
        assert!(
            matches!(parse(&head[..end], &paths, &subprotocols), Ok(None)),
            "a strict prefix ({end} of {} bytes) is incomplete",
            head.len()
        );
    }
    let mut alone = parse(head, &paths, &subprotocols)
        .expect("the head alone is accepted")
        .expect("the head alone is complete");
    assert!(alone.leftover.is_empty(), "nothing follows the head");
    alone.leftover.clone_from(&u.leftover);
    assert_eq!(
        format!("{alone:?}"),
        format!("{u:?}"),
        "the rest is only leftover"
    );

    let headers = scan_headers(head);
    let key = header(&headers, "sec-websocket-key").expect("an accepted upgrade has a key");
    let accept = STANDARD.encode(
        sha1_smol::Sha1::from([key, GUID.as_bytes()].concat())
            .digest()
            .bytes(),
    );
    assert_eq!(u.accept_key, accept, "Sec-WebSocket-Accept per RFC 6455");

    let offered: Vec<&str> = header(&headers, "sec-websocket-protocol")
        // Entries are trimmed as `parse` does (`str::trim`: Unicode white
        // space, wider than HTTP's OWS; harmless, browsers send tokens).
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    if let Some(p) = &u.protocol {
        assert!(
            offered.contains(&p.as_str()),
            "{p:?} was offered: {offered:?}"
        );
    }
    if offered.contains(&"graphql-ws") {
        assert_eq!(
            u.protocol.as_deref(),
            Some("graphql-ws"),
            "the app subprotocol first"
        );
    }

    assert!(check_origin(None, &origins).is_ok());
    assert!(check_origin(u.origin.as_deref(), &["*".to_string()]).is_ok());
    if let Err(r) = check_origin(u.origin.as_deref(), &origins) {
        assert_eq!(
            (r.status, r.kind, r.close_code()),
            (403, Reject::Forbidden, Some(4403))
        );
    }
});

/// What `parse` answered, comparable.
fn summary(r: &Result<Option<Upgrade>, Refusal>) -> String {
    format!("{r:?}")
}

/// The header fields of a complete head, scanned without httparse: lines
/// end in LF or CRLF, leading empty lines and the request line are
/// skipped, a value is what follows the colon without surrounding
/// spaces and tabs.
fn scan_headers(head: &[u8]) -> Vec<(&[u8], &[u8])> {
    let lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines
        .skip_while(|l| l.is_empty())
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let colon = l
                .iter()
                .position(|b| *b == b':')
                .expect("a header line has a colon");
            (&l[..colon], trim_ows(&l[colon + 1..]))
        })
        .collect()
}

/// The first header called `name` (any case).
fn header<'a>(headers: &[(&'a [u8], &'a [u8])], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| *v)
}

/// Without the spaces and tabs HTTP allows around a value (RFC 9110 5.5).
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}
