//! The HTTP/1.1 upgrade, done by hand so that ws-api can refuse a client
//! before it becomes a WebSocket: parse with `httparse`, check the request,
//! ask ws-api `Connect`, and only then answer `101 Switching Protocols`.
//!
//! A refusal is a plain HTTP response with a one-line reason, or, for
//! browsers (which show page code only close 1006 for any HTTP status), a
//! completed upgrade followed by a Close frame whose code says why (4401,
//! 4403, 4429, 4503) and whose reason is the same line.

use std::borrow::Cow;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::codec::deflate::Agreed;
use crate::config::normalize_origin;
use crate::proto::{DEVICE_RULE, Device};
use crate::session::resume::Position;
use crate::session::stream::ClientStream;
use crate::timeout::within;

/// A refusal's kind, named here too for callers outside the crate (fuzz).
pub use crate::metrics::Reject;

/// Largest upgrade request accepted (request line and headers).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// An upgrade request that passed the protocol checks.
#[derive(Debug)]
pub struct Upgrade {
    pub accept_key: String,
    pub token: Option<Bytes>,
    /// The subprotocol to answer with: an application one the gateway
    /// knows, else the `token` marker or `token.<base64url>` entry the
    /// client offered (a browser fails a connection whose offered
    /// subprotocols are all ignored).
    pub protocol: Option<String>,
    /// The `Origin` header: a browser.
    pub origin: Option<String>,
    /// `?format=protobuf`: answer in binary frames from the start.
    pub protobuf: bool,
    /// The position to resume from (`?since=`, `X-Resume-Since`, or a
    /// `since.<epoch>.<n>` subprotocol entry; docs/delivery.md).
    pub since: Option<Position>,
    /// The client's device id (`?device=`, `X-Device-Id`, or a
    /// `device.<id>` subprotocol entry; docs/delivery.md, "Devices").
    pub device: Option<Device>,
    /// The `Sec-WebSocket-Extensions` values the client sent.
    pub extensions: Vec<String>,
    /// What permessage-deflate the 101 agrees (set by the caller from
    /// `extensions` when `--compression deflate`).
    pub deflate: Option<Agreed>,
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

    /// The Close code an in-band refusal carries: the HTTP status in the
    /// 4000 range an application may use. `None` for refusals of requests
    /// that are not a valid upgrade (those stay HTTP).
    pub fn close_code(&self) -> Option<u16> {
        match self.kind {
            Reject::MissingToken | Reject::Unauthorized => Some(4401),
            Reject::Forbidden => Some(4403),
            Reject::UserLimit | Reject::RateLimited => Some(4429),
            Reject::UpstreamUnavailable | Reject::Overloaded => Some(4503),
            Reject::BadRequest
            | Reject::Tls
            | Reject::NotFound
            | Reject::Timeout
            | Reject::HeaderTooLarge => None,
        }
    }

    /// Seconds after which a retry may succeed, where there is such a time.
    fn retry_after(&self) -> Option<u32> {
        matches!(
            self.kind,
            Reject::RateLimited | Reject::UpstreamUnavailable | Reject::Overloaded
        )
        .then_some(1)
    }
}

/// Reads and checks an upgrade request. `Err(None)` when the client went away.
pub async fn read_request(
    stream: &mut ClientStream,
    paths: &[String],
    subprotocols: &[String],
    timeout: Duration,
) -> Result<Upgrade, Option<Refusal>> {
    let read = async {
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if let Some(upgrade) = parse(&buf, paths, subprotocols).map_err(Some)? {
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
    within(timeout, read).await.unwrap_or_else(|| {
        Err(Some(Refusal::new(
            Reject::Timeout,
            "upgrade request not received in time",
        )))
    })
}

/// Parses what has arrived so far: `Ok(None)` while the request is incomplete.
pub fn parse(
    buf: &[u8],
    paths: &[String],
    subprotocols: &[String],
) -> Result<Option<Upgrade>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::new(Reject::HeaderTooLarge, "too many headers"));
        }
        Err(e) => {
            let why = format!("malformed request: {e}");
            return Err(Refusal::new(Reject::BadRequest, why));
        }
    };
    let query = request_line(&req, paths)?;
    let headers = Headers(req.headers);
    let key = websocket_key(&headers)?;
    let origin = headers
        .get("origin")
        .map(|o| String::from_utf8_lossy(o).into_owned());
    let offer = Offer::read(&headers, query, subprotocols)?;
    Ok(Some(Upgrade {
        accept_key: derive_accept_key(key),
        token: offer.token,
        protocol: offer.protocol,
        origin,
        protobuf: offer.protobuf,
        since: offer.since,
        device: offer.device,
        extensions: headers.all("sec-websocket-extensions"),
        deflate: None,
        leftover: buf[len..].to_vec(),
    }))
}

/// RFC 6455 4.1: an HTTP/1.1 (or later) GET, here to one of `paths`;
/// returns the query.
fn request_line<'b>(req: &httparse::Request<'_, 'b>, paths: &[String]) -> Result<&'b str, Refusal> {
    if req.version != Some(1) {
        let why = "WebSocket upgrades need HTTP/1.1";
        return Err(Refusal::new(Reject::BadRequest, why));
    }
    if req.method != Some("GET") {
        return Err(Refusal::new(
            Reject::BadRequest,
            "WebSocket upgrades use GET",
        ));
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !paths.iter().any(|p| p == path) {
        let why = format!("no WebSocket endpoint at {path}");
        return Err(Refusal::new(Reject::NotFound, why));
    }
    Ok(query)
}

/// A request's headers, looked up by name in any case.
struct Headers<'h, 'b>(&'h [httparse::Header<'b>]);

impl<'b> Headers<'_, 'b> {
    fn get(&self, name: &str) -> Option<&'b [u8]> {
        let found = self.0.iter().find(|h| h.name.eq_ignore_ascii_case(name));
        found.map(|h| h.value)
    }

    /// Every value of `name`, as text (a value that is not is left out).
    fn all(&self, name: &str) -> Vec<String> {
        let named = self.0.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
        named
            .filter_map(|h| std::str::from_utf8(h.value).ok().map(str::to_owned))
            .collect()
    }

    fn count(&self, name: &str) -> usize {
        let named = self.0.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
        named.count()
    }

    /// Whether the comma-separated header `name` lists `want`.
    fn lists(&self, name: &str, want: &str) -> bool {
        self.get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
    }
}

/// The headers RFC 6455 4.2.1 requires of an upgrade (Host, Upgrade,
/// Connection, version 13, exactly one key); returns the key.
fn websocket_key<'b>(headers: &Headers<'_, 'b>) -> Result<&'b [u8], Refusal> {
    let bad = |why: &'static str| Err(Refusal::new(Reject::BadRequest, why));
    if !headers.lists("upgrade", "websocket") || !headers.lists("connection", "upgrade") {
        return bad("not a WebSocket upgrade request");
    }
    if headers
        .get("host")
        .is_none_or(|h| h.trim_ascii().is_empty())
    {
        return bad("missing Host");
    }
    if headers.count("sec-websocket-key") > 1 {
        return bad("more than one Sec-WebSocket-Key");
    }
    if headers.get("sec-websocket-version") != Some(b"13") {
        return bad("unsupported Sec-WebSocket-Version (want 13)");
    }
    let Some(key) = headers.get("sec-websocket-key") else {
        return bad("missing Sec-WebSocket-Key");
    };
    // The key is 16 random bytes, base64-encoded.
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim_ascii());
    if decoded.map_or(true, |k| k.len() != 16) {
        return bad("Sec-WebSocket-Key is not 16 bytes in base64");
    }
    Ok(key)
}

/// What the client offers beside the upgrade itself: its token, format,
/// resume position and device id (headers first, then the query, then
/// subprotocol entries, for browsers that cannot set headers), and the
/// subprotocol the 101 answers.
struct Offer {
    token: Option<Bytes>,
    protobuf: bool,
    since: Option<Position>,
    device: Option<Device>,
    protocol: Option<String>,
}

impl Offer {
    fn read(
        headers: &Headers<'_, '_>,
        query: &str,
        subprotocols: &[String],
    ) -> Result<Offer, Refusal> {
        let mut token = headers
            .get("token")
            .filter(|t| !t.is_empty())
            .map(Bytes::copy_from_slice);
        let mut protobuf = false;
        let bad_since = || Refusal::new(Reject::BadRequest, "since is not <epoch>:<n>");
        let mut since = match headers.get("x-resume-since") {
            Some(v) => {
                let parsed = std::str::from_utf8(v).ok().and_then(Position::parse);
                Some(parsed.ok_or_else(bad_since)?)
            }
            None => None,
        };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "token" if token.is_none() && !v.is_empty() => {
                    token = Some(Bytes::from(v.into_owned()))
                }
                "format" => protobuf = v == "protobuf",
                "since" if since.is_none() => {
                    since = Some(Position::parse(&v).ok_or_else(bad_since)?)
                }
                _ => {}
            }
        }
        let offered: Vec<&str> = headers
            .get("sec-websocket-protocol")
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|v| v.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let entries = TokenEntries::find(&offered);
        if token.is_none() {
            token = entries.token(&offered)?;
        }
        let since_entry = offered.iter().find(|p| p.starts_with("since.")).copied();
        if since.is_none()
            && let Some(entry) = since_entry
        {
            since = Some(Position::from_subprotocol(entry).ok_or_else(bad_since)?);
        }
        let device_entry = offered.iter().find(|p| p.starts_with("device.")).copied();
        let device = read_device(headers, query, device_entry)?;
        let app = offered
            .iter()
            .find(|p| subprotocols.iter().any(|s| s == *p));
        // A browser fails a connection none of whose offered subprotocols is
        // answered: a lone `since.` or `device.` entry (token in the query)
        // is answered too.
        let protocol = app
            .or(entries.marker.map(|i| &offered[i]))
            .copied()
            .or(entries.encoded.map(|(entry, _)| entry))
            .or(since_entry)
            .or(device_entry)
            .map(str::to_owned);
        Ok(Offer {
            token,
            protobuf,
            since,
            device,
            protocol,
        })
    }
}

/// The device id, from `X-Device-Id`, else `?device=`, else a
/// `device.<id>` subprotocol entry; one that is not valid is refused (not
/// ignored: the client would lose its per-device position unawares).
fn read_device(
    headers: &Headers<'_, '_>,
    query: &str,
    entry: Option<&str>,
) -> Result<Option<Device>, Refusal> {
    let from_query = || {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "device")
            .map(|(_, v)| Device::parse(&v))
    };
    let found = match headers.get("x-device-id") {
        Some(v) => Some(std::str::from_utf8(v).ok().and_then(Device::parse)),
        None => from_query().or_else(|| entry.map(Device::from_subprotocol)),
    };
    match found {
        Some(Some(device)) => Ok(Some(device)),
        Some(None) => Err(Refusal::new(Reject::BadRequest, DEVICE_RULE)),
        None => Ok(None),
    }
}

/// Browsers cannot set headers: `new WebSocket(url, ["token", "<token>"])`,
/// or `["token.<base64url>"]` for tokens with characters a subprotocol
/// cannot hold (`=`, `+`, `/`).
struct TokenEntries<'a> {
    /// Where `token` (or `access_token`) is offered: the token follows it.
    marker: Option<usize>,
    /// A `token.<base64url>` entry, and its base64url part.
    encoded: Option<(&'a str, &'a str)>,
}

impl<'a> TokenEntries<'a> {
    fn find(offered: &[&'a str]) -> Self {
        let marker = offered
            .iter()
            .position(|p| *p == "token" || *p == "access_token");
        let encoded = offered
            .iter()
            .find_map(|p| Some((*p, p.strip_prefix("token.")?)));
        TokenEntries { marker, encoded }
    }

    fn token(&self, offered: &[&str]) -> Result<Option<Bytes>, Refusal> {
        let token = match (self.marker, self.encoded) {
            (Some(i), _) => offered
                .get(i + 1)
                .map(|t| Bytes::copy_from_slice(t.as_bytes())),
            (None, Some((_, b64))) => {
                let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(b64.trim_end_matches('='));
                let why = "token.<base64url> subprotocol is not base64url";
                Some(Bytes::from(
                    decoded.map_err(|_| Refusal::new(Reject::BadRequest, why))?,
                ))
            }
            (None, None) => None,
        };
        Ok(token.filter(|t| !t.is_empty()))
    }
}

/// Refuses a browser whose `Origin` is not allowed (cross-site WebSocket
/// hijacking); requests without one (native apps) pass.
pub fn check_origin(origin: Option<&str>, allowed: &[String]) -> Result<(), Refusal> {
    let Some(origin) = origin else {
        return Ok(());
    };
    let normal = normalize_origin(origin);
    let ok = allowed
        .iter()
        .any(|o| o == "*" || (normal.is_some() && normalize_origin(o) == normal));
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            Reject::Forbidden,
            format!("origin {origin} not allowed"),
        ))
    }
}

/// Answers a refusal with its HTTP status, or in-band when `in_band`
/// (and the refusal has a Close code).
pub async fn refuse(
    stream: &mut ClientStream,
    upgrade: Option<&Upgrade>,
    refusal: &Refusal,
    in_band: bool,
) {
    match (upgrade, refusal.close_code()) {
        (Some(upgrade), Some(code)) if in_band => {
            refuse_in_band(stream, upgrade, refusal, code).await
        }
        _ => refuse_http(stream, refusal).await,
    }
}

/// Completes the upgrade, then closes at once with `code` and the reason
/// (`; retry after 1s` where a retry may succeed), and waits for the
/// client's Close before closing TCP.
async fn refuse_in_band(
    stream: &mut ClientStream,
    upgrade: &Upgrade,
    refusal: &Refusal,
    code: u16,
) {
    let mut reason = refusal.reason.to_string();
    if let Some(secs) = refusal.retry_after() {
        reason.push_str(&format!("; retry after {secs}s"));
    }
    // A Close frame's reason is at most 123 bytes.
    while reason.len() > 123 {
        reason.pop();
    }
    let mut frame = vec![0x88, (2 + reason.len()) as u8];
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason.as_bytes());
    let mut resp = response_101(upgrade, None).into_bytes();
    resp.extend_from_slice(&frame);
    if stream.write_all(&resp).await.is_ok() && stream.flush().await.is_ok() {
        stream.discard_until_quiet(CLOSE_WAIT).await;
    }
    let _ = stream.close().await;
}

/// How long an in-band refusal waits for the client's Close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Writes a refusal as a complete HTTP response.
async fn refuse_http(stream: &mut ClientStream, refusal: &Refusal) {
    let reason = http::StatusCode::from_u16(refusal.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let extra = match (refusal.kind, refusal.retry_after()) {
        (Reject::BadRequest, _) => "Sec-WebSocket-Version: 13\r\n".to_owned(),
        (_, Some(secs)) => format!("Retry-After: {secs}\r\n"),
        _ => String::new(),
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
    stream
        .write_all(response_101(upgrade, Some(sid)).as_bytes())
        .await
}

fn response_101(upgrade: &Upgrade, sid: Option<&str>) -> String {
    let protocol = upgrade
        .protocol
        .as_deref()
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    // Only a session that goes on compresses: an in-band refusal is one
    // Close frame.
    let deflate = sid
        .and(upgrade.deflate.as_ref())
        .map(|d| format!("Sec-WebSocket-Extensions: {}\r\n", d.response))
        .unwrap_or_default();
    let sid = sid
        .map(|s| format!("X-Session-Id: {s}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{sid}{protocol}{deflate}\r\n",
        upgrade.accept_key
    )
}
