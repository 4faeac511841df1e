//! The HTTP/1.1 upgrade, done by hand so that ws-api can refuse a client
//! before it becomes a WebSocket: parse with `httparse`, check the request,
//! ask ws-api `Connect`, and only then answer `101 Switching Protocols`.
//! Every refusal is a plain HTTP response with a one-line reason.

use std::borrow::Cow;
use std::time::Duration;

use crate::stream::ClientStream;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};

use crate::metrics::Reject;

/// Largest upgrade request accepted (request line and headers).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// An upgrade request that passed the protocol checks.
#[derive(Debug)]
pub struct Upgrade {
    pub accept_key: String,
    pub token: Option<Bytes>,
    /// The subprotocol to echo back when the token came in `Sec-WebSocket-Protocol`.
    pub protocol: Option<String>,
    /// `?format=protobuf`: answer in binary frames from the start.
    pub protobuf: bool,
    /// Bytes the client sent after the request (early WebSocket frames).
    pub leftover: Vec<u8>,
}

/// Why an upgrade was refused, with the HTTP status and reason given to the client.
#[derive(Debug, thiserror::Error)]
#[error("{status} {reason}")]
pub struct Refusal {
    pub status: u16,
    pub reason: Cow<'static, str>,
    pub kind: Reject,
}

impl Refusal {
    pub fn new(kind: Reject, reason: impl Into<Cow<'static, str>>) -> Self {
        let status = match kind {
            Reject::BadRequest | Reject::Tls => 400,
            Reject::MissingToken | Reject::Unauthorized => 401,
            Reject::NotFound => 404,
            Reject::Timeout => 408,
            Reject::HeaderTooLarge => 431,
            Reject::UserLimit => 429,
            Reject::Forbidden => 403,
            Reject::UpstreamUnavailable | Reject::Overloaded | Reject::RateLimited => 503,
        };
        Refusal {
            status,
            reason: reason.into(),
            kind,
        }
    }
}

/// Reads and checks an upgrade request. `Err(None)` when the client went away.
pub async fn read_request(
    stream: &mut ClientStream,
    paths: &[String],
    origins: &[String],
    timeout: Duration,
) -> Result<Upgrade, Option<Refusal>> {
    let read = async {
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if let Some(upgrade) = parse(&buf, paths, origins).map_err(Some)? {
                return Ok(upgrade);
            }
            if buf.len() >= MAX_HEADER_BYTES {
                return Err(Some(Refusal::new(
                    Reject::HeaderTooLarge,
                    "request headers too large",
                )));
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.map_err(|_| None)?;
            if n == 0 {
                return Err(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    future::or(read, async {
        glommio::timer::sleep(timeout).await;
        Err(Some(Refusal::new(
            Reject::Timeout,
            "upgrade request not received in time",
        )))
    })
    .await
}

/// Parses what has arrived so far: `Ok(None)` while the request is incomplete.
pub fn parse(buf: &[u8], paths: &[String], origins: &[String]) -> Result<Option<Upgrade>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(Reject::HeaderTooLarge, "too many headers"));
        }
        Err(e) => {
            return Err(Refusal::new(
                Reject::BadRequest,
                format!("malformed request: {e}"),
            ));
        }
    };
    if req.method != Some("GET") {
        return Err(Refusal::new(
            Reject::BadRequest,
            "WebSocket upgrades use GET",
        ));
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !paths.iter().any(|p| p == path) {
        return Err(Refusal::new(
            Reject::NotFound,
            format!("no WebSocket endpoint at {path}"),
        ));
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let has_token = |name: &str, want: &str| {
        header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(Refusal::new(
            Reject::BadRequest,
            "not a WebSocket upgrade request",
        ));
    }
    if header("sec-websocket-version") != Some(b"13") {
        return Err(Refusal::new(
            Reject::BadRequest,
            "unsupported Sec-WebSocket-Version (want 13)",
        ));
    }
    if let Some(origin) = header("origin") {
        let origin = String::from_utf8_lossy(origin);
        if !origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(&origin))
        {
            return Err(Refusal::new(
                Reject::Forbidden,
                format!("origin {origin} not allowed"),
            ));
        }
    }
    let key = header("sec-websocket-key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Refusal::new(Reject::BadRequest, "missing Sec-WebSocket-Key"))?;

    let mut token = header("token")
        .filter(|t| !t.is_empty())
        .map(Bytes::copy_from_slice);
    let mut protobuf = false;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "token" if token.is_none() && !v.is_empty() => {
                token = Some(Bytes::from(v.into_owned()))
            }
            "format" => protobuf = v == "protobuf",
            _ => {}
        }
    }
    let mut protocol = None;
    if token.is_none() {
        // Browsers cannot set headers: `new WebSocket(url, ["token", "<token>"])`.
        let offered: Vec<&str> = header("sec-websocket-protocol")
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|v| v.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let marker = offered
            .iter()
            .position(|p| *p == "token" || *p == "access_token");
        if let Some((i, t)) = marker.and_then(|i| Some((i, *offered.get(i + 1)?))) {
            token = Some(Bytes::copy_from_slice(t.as_bytes())).filter(|t| !t.is_empty());
            protocol = token.as_ref().map(|_| offered[i].to_owned());
        }
    }
    Ok(Some(Upgrade {
        accept_key: derive_accept_key(key),
        token,
        protocol,
        protobuf,
        leftover: buf[len..].to_vec(),
    }))
}

/// Writes a refusal as a complete HTTP response.
pub async fn refuse(stream: &mut ClientStream, refusal: &Refusal) {
    let reason = match refusal.status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let extra = match refusal.kind {
        Reject::BadRequest => "Sec-WebSocket-Version: 13\r\n",
        Reject::RateLimited => "Retry-After: 1\r\n",
        _ => "",
    };
    let body = format!("{}\n", refusal.reason);
    let resp = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        refusal.status,
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.close().await;
}

/// Completes the upgrade. The sid goes back in `X-Session-Id`, so a client
/// can quote it (support requests, logs); it grants nothing.
pub async fn switch(
    stream: &mut ClientStream,
    upgrade: &Upgrade,
    sid: &str,
) -> std::io::Result<()> {
    let protocol = upgrade
        .protocol
        .as_deref()
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nX-Session-Id: {sid}\r\n{protocol}\r\n",
        upgrade.accept_key
    );
    stream.write_all(resp.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Vec<String> {
        vec!["/gateway/ws".into(), "/gateway/connect".into()]
    }

    fn any() -> Vec<String> {
        vec!["*".into()]
    }

    #[test]
    fn origin_allow_list() {
        let only = vec!["https://app.example".to_string()];
        let with = |o: &str| req("/gateway/ws", &format!("Origin: {o}\r\n"));
        assert!(parse(&with("https://app.example"), &paths(), &only).is_ok());
        assert_eq!(
            parse(&with("https://evil.example"), &paths(), &only)
                .unwrap_err()
                .status,
            403
        );
        assert!(
            parse(&req("/gateway/ws", ""), &paths(), &only).is_ok(),
            "no Origin: not a browser"
        );
        assert!(parse(&with("https://evil.example"), &paths(), &any()).is_ok());
    }

    const BASE: &str = "Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    fn req(target: &str, extra: &str) -> Vec<u8> {
        format!("GET {target} HTTP/1.1\r\n{BASE}{extra}\r\n").into_bytes()
    }

    #[test]
    fn accepts_rfc_example_with_header_token() {
        let mut r = req("/gateway/ws", "token: abc\r\n");
        r.extend_from_slice(b"\x81\x80");
        let u = parse(&r, &paths(), &any()).unwrap().unwrap();
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
            &any(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.token.as_deref(), Some(&b"a+b"[..]));
        assert!(u.protobuf);
        let u = parse(
            &req("/gateway/ws", "Sec-WebSocket-Protocol: token, s3cr3t\r\n"),
            &paths(),
            &any(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.token.as_deref(), Some(&b"s3cr3t"[..]));
        assert_eq!(u.protocol.as_deref(), Some("token"));
        assert!(
            parse(&req("/gateway/ws", ""), &paths(), &any())
                .unwrap()
                .unwrap()
                .token
                .is_none()
        );
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let r = req("/gateway/ws", "");
        assert!(
            parse(&r[..r.len() - 2], &paths(), &any())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn refusals_have_their_status() {
        let status = |r: &[u8]| parse(r, &paths(), &any()).unwrap_err().status;
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
    }
}
