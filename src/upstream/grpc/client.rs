//! A minimal gRPC client on h2: unary calls with `grpc-timeout`, and
//! bidirectional streams whose sender is handed to the caller so it can
//! coalesce many messages per DATA frame.
//!
//! One [`Channel`] is one HTTP/2 connection; the connection future is
//! returned to the caller, which polls it on its own core.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::{HeaderValue, Method, Request};

use super::codec::{self, Decoder};
use super::compat::{self, TokioTcp};
use super::status::{Code, Status};
use crate::timeout::within;

/// Connection settings. Windows are large on purpose: with h2's 64 KiB
/// defaults a busy stream stalls on WINDOW_UPDATE round trips.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub connect_timeout: Duration,
    pub stream_window: u32,
    pub connection_window: u32,
    pub max_message: usize,
    pub credentials: Credentials,
}

/// How this gateway proves itself to ws-api, loaded once at startup.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `--upstream https://…`: TLS to ws-api (with this gateway's
    /// certificate, for mTLS).
    pub tls: Option<super::tls::UpstreamTls>,
    /// `--upstream-secret-file`: sent as `authorization: Bearer <secret>`
    /// on every call (ws-api's `--gateway-secret-file`).
    pub secret: Option<HeaderValue>,
}

/// One HTTP/2 connection to a gRPC server.
#[derive(Clone)]
pub struct Channel {
    send: SendRequest<Bytes>,
    authority: String,
    scheme: &'static str,
    secret: Option<HeaderValue>,
    max_message: usize,
}

impl Channel {
    /// Dials `addr` and performs the HTTP/2 handshake. The returned
    /// connection future must be polled for the channel to make progress.
    pub async fn connect(
        addr: SocketAddr,
        cfg: &ChannelConfig,
    ) -> Result<(Channel, Connection<TokioTcp, Bytes>), Status> {
        let io = compat::connect(addr, cfg.connect_timeout, cfg.credentials.tls.as_ref())
            .await
            .map_err(|e| Status::new(Code::Unavailable, format!("connect {addr}: {e}")))?;
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(cfg.stream_window)
            .initial_connection_window_size(cfg.connection_window)
            .max_frame_size(1 << 20)
            .handshake(io)
            .await
            .map_err(|e| Status::from_h2(&e))?;
        let channel = Channel {
            send,
            authority: addr.to_string(),
            scheme: if cfg.credentials.tls.is_some() {
                "https"
            } else {
                "http"
            },
            secret: cfg.credentials.secret.clone(),
            max_message: cfg.max_message,
        };
        Ok((channel, conn))
    }

    fn request(
        &self,
        path: &str,
        metadata: &[(&'static str, &str)],
    ) -> Result<Request<()>, Status> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}://{}{}", self.scheme, self.authority, path))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header(
                "user-agent",
                concat!("ws-gateway/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(secret) = &self.secret {
            req = req.header(http::header::AUTHORIZATION, secret.clone());
        }
        for (k, v) in metadata {
            let v = HeaderValue::from_str(v)
                .map_err(|_| Status::new(Code::InvalidArgument, format!("bad metadata {k}")))?;
            req = req.header(*k, v);
        }
        req.body(())
            .map_err(|e| Status::new(Code::Internal, format!("request: {e}")))
    }

    async fn start(
        &self,
        req: Request<()>,
        end: bool,
    ) -> Result<(ResponseFuture, SendStream<Bytes>), Status> {
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| Status::from_h2(&e))?;
        send.send_request(req, end).map_err(|e| Status::from_h2(&e))
    }

    /// One request, one reply, bounded by `timeout` (sent as `grpc-timeout`).
    pub async fn unary<Req, Resp>(
        &self,
        path: &str,
        msg: &Req,
        timeout: Duration,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let deadline = format!("{}m", timeout.as_millis().clamp(1, 99_999_999));
        let req = self.request(path, &[("grpc-timeout", &deadline)])?;
        let call = async {
            let (resp, mut send) = self.start(req, false).await?;
            let mut body = BytesMut::new();
            codec::encode(msg, &mut body);
            send.send_data(body.freeze(), true)
                .map_err(|e| Status::from_h2(&e))?;
            let mut reply = Streaming::new(resp, self.max_message).await?;
            let bytes = reply
                .message()
                .await?
                .ok_or_else(|| Status::new(Code::Internal, "unary call returned no message"))?;
            let decoded = Resp::decode(bytes)
                .map_err(|e| Status::new(Code::Internal, format!("decode reply: {e}")))?;
            match reply.message().await? {
                None => Ok(decoded),
                Some(_) => Err(Status::new(
                    Code::Internal,
                    "unary call returned two messages",
                )),
            }
        };
        with_deadline(timeout, call).await
    }

    /// Opens a bidirectional stream. The caller frames messages with
    /// [`codec::encode`] (or equivalent) and writes them to the send half.
    pub async fn streaming(
        &self,
        path: &str,
        metadata: &[(&'static str, &str)],
    ) -> Result<(SendStream<Bytes>, ResponseFuture), Status> {
        let req = self.request(path, metadata)?;
        let (resp, send) = self.start(req, false).await?;
        Ok((send, resp))
    }

    pub fn max_message(&self) -> usize {
        self.max_message
    }
}

/// Runs `call`, failing with DEADLINE_EXCEEDED after `timeout`.
pub async fn with_deadline<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    within(timeout, call).await.unwrap_or_else(|| {
        Err(Status::new(
            Code::DeadlineExceeded,
            format!("no reply within {timeout:?}"),
        ))
    })
}

/// The receiving half of a call: messages, then the status in the trailers.
pub struct Streaming {
    headers: http::HeaderMap,
    body: RecvStream,
    decoder: Decoder,
    done: bool,
}

impl Streaming {
    /// Waits for the response headers and checks them.
    pub async fn new(resp: ResponseFuture, max_message: usize) -> Result<Streaming, Status> {
        let resp = resp.await.map_err(|e| Status::from_h2(&e))?;
        let (parts, body) = resp.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(status_from_http(parts.status));
        }
        // A "trailers-only" response carries its status in the headers.
        let done = match Status::from_headers(&parts.headers) {
            Some(s) if s.code != Code::Ok => return Err(s),
            Some(_) => true,
            None => false,
        };
        Ok(Streaming {
            headers: parts.headers,
            body,
            decoder: Decoder::new(max_message),
            done,
        })
    }

    /// A response header's value, if it is there and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next message, `None` once the server ended the call with OK.
    pub async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => return Err(Status::new(e.code(), e.to_string())),
            }
            if self.done {
                return Ok(None);
            }
            match self.body.data().await {
                Some(Ok(chunk)) => {
                    // Release at once: h2 counts unconsumed small frames against
                    // a budget and answers with GOAWAY ENHANCE_YOUR_CALM past it.
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.decoder.push(&chunk);
                }
                Some(Err(e)) => return Err(Status::from_h2(&e)),
                None => return self.finish().await,
            }
        }
    }

    async fn finish(&mut self) -> Result<Option<Bytes>, Status> {
        self.done = true;
        let trailers = self
            .body
            .trailers()
            .await
            .map_err(|e| Status::from_h2(&e))?;
        let status = trailers
            .as_ref()
            .and_then(Status::from_headers)
            .unwrap_or_else(|| Status::new(Code::Internal, "stream ended without grpc-status"));
        if status.code != Code::Ok {
            return Err(status);
        }
        if self.decoder.buffered() > 0 {
            return Err(Status::new(Code::Internal, "stream ended inside a message"));
        }
        Ok(None)
    }
}

/// Maps a non-200 HTTP status as the gRPC HTTP/2 spec says clients must.
fn status_from_http(s: http::StatusCode) -> Status {
    let code = match s.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("HTTP status {s}"))
}
