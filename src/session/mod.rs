//! One client's life after the upgrade: read frames and queue them for
//! ws-api, write what the core queued for the client, close with a reason.
//!
//! A session is one task that waits on either side at once, polling them
//! in turn. It never awaits ws-api: upstream messages go into the core's
//! bounded buffer, and a full buffer answers the client with an error
//! frame. Downstream, once the send queue passes three quarters of
//! `--send-queue` the session stops reading the client until it has written
//! the queue down; a client that does not read (a write to it waits) is a
//! slow consumer: a message that finds its queue full is counted, and the
//! session is closed with 1008, as it is once a write has taken longer than
//! `--write-timeout`.
//!
//! # Layout
//!
//! - this file: the [`Session`] loop.
//! - [`claim`]: what a connection holds (slot, admission, per-user count), given back by one guard.
//! - [`context`]: what a core's sessions share (config, counters, table, upstream, admission).
//! - [`replay`]: the session's steps in a resume: ask, hold, end.
//! - [`resume`]: positions, and what a session holds back while ws-api replays (docs/delivery.md).
//! - [`stream`]: a plain or TLS client stream.

pub mod claim;
pub mod context;
mod replay;
pub mod resume;
pub mod stream;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::ProtocolError;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::Frame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use bytes::Bytes;
use futures_lite::{StreamExt, future};
use futures_util::SinkExt;
use glommio::channels::local_channel::LocalReceiver;
use tracing::{Instrument, debug};

use crate::codec::deflate::{self, Deflater};
use crate::codec::{self, Format, MsgPrefix};
use crate::config::FrameFormat;
use crate::metrics::Loss;
use crate::proto::Device;
use crate::proto::wsgateway::Protocol;
use crate::ratelimit::TokenBucket;
use crate::routing::sessions::{Outbound, SessionHandle};
use crate::session::claim::Claim;
use crate::session::context::SessionContext;
use crate::session::resume::{Position, Resuming};
use crate::session::stream::ClientStream;
use crate::timeout::within;

/// How a session ended, for the log line written where its task ends.
#[derive(Debug, thiserror::Error)]
pub enum End {
    #[error("client closed")]
    ClientClosed,
    #[error("closed by the gateway: {0} {1}")]
    Closed(u16, String),
    #[error("client connection failed: {0}")]
    Io(WsError),
}

/// An upgraded client connection: counted in the `online` gauge from
/// [`Session::new`] until [`Session::run`] ends.
pub struct Session {
    core: Rc<SessionContext>,
    ws: WebSocketStream<ClientStream>,
    rx: LocalReceiver<Outbound>,
    handle: Rc<SessionHandle>,
    /// Its slot and admission, given back when the session ends.
    claim: Claim,
    uid: u64,
    prefix: MsgPrefix,
    format: Format,
    /// `--max-inbound-rate`, if set.
    inbound_limit: Option<TokenBucket>,
    /// Error frames this session may still be sent; made at its first bad frame.
    bad_frames: Option<Box<TokenBucket>>,
    /// What to do about a resume when the session starts (boxed: most
    /// sessions have none, and every byte here is in every session).
    resume: Option<Box<ResumePlan>>,
    /// Messages held back while ws-api replays (docs/delivery.md).
    resuming: Option<Box<Resuming>>,
    /// permessage-deflate, if the 101 agreed it (boxed: most sessions
    /// have none).
    deflate: Option<Box<Deflater>>,
}

/// What the upgrade admitted, for [`Session::new`]: the claim on a slot
/// (with its uid), the session's send queue, and how it starts.
pub struct Admitted {
    pub claim: Claim,
    pub handle: Rc<SessionHandle>,
    pub rx: LocalReceiver<Outbound>,
    pub uid: u64,
    pub format: Format,
    pub resume: Option<ResumePlan>,
    /// The client's device id (docs/delivery.md, "Devices"): on every
    /// message the session sends ws-api.
    pub device: Option<Device>,
    /// permessage-deflate, if the 101 agreed it.
    pub deflate: Option<Box<Deflater>>,
}

/// What a session does about a resume as it starts.
#[derive(Debug)]
pub enum ResumePlan {
    /// ws-api answered Connect with `resume`: ask it for the replay, from
    /// the client's position (or, without one, the acknowledged one of the
    /// client's device, or of the user without a device id).
    Ask(Option<Position>, Option<Device>),
    /// The client asked but ws-api keeps no history: `resume-failed` now.
    Refused,
}

/// Error frames answer bad client frames at most this often per second,
/// after a burst of [`BAD_FRAME_BURST`]; past it the session is closed:
/// a 6-byte frame must not buy a 100-byte answer without limit.
const BAD_FRAME_RATE: f64 = 1.0;
const BAD_FRAME_BURST: f64 = 10.0;

enum Event {
    Client(Option<Result<Message, WsError>>),
    Core(Option<Outbound>),
}

impl Session {
    pub fn new(
        core: Rc<SessionContext>,
        ws: WebSocketStream<ClientStream>,
        admitted: Admitted,
    ) -> Session {
        let Admitted {
            claim,
            handle,
            rx,
            uid,
            format,
            resume,
            device,
            deflate,
        } = admitted;
        let rate = core.config.max_inbound_rate;
        let inbound_limit = (rate > 0.0).then(|| TokenBucket::new(rate, rate.max(1.0)));
        let prefix = MsgPrefix::new(
            core.upstream.identity(),
            claim.sid(),
            device.as_ref().map(Device::as_str),
        );
        core.counters.online.inc();
        Session {
            core,
            ws,
            rx,
            handle,
            claim,
            uid,
            prefix,
            format,
            inbound_limit,
            bad_frames: None,
            resume: resume.map(Box::new),
            resuming: None,
            deflate,
        }
    }

    /// Runs the session to its end, then tells ws-api it is gone.
    ///
    /// Not an `async fn`: one keeps its by-value argument twice in the
    /// future (rust-lang/rust#62958), and the `Session` is most of every
    /// session's task (656 bytes of it twice, measured with
    /// `-Zprint-type-sizes`).
    #[allow(clippy::manual_async_fn)] // the point: see above
    pub fn run(mut self) -> impl Future<Output = End> {
        async move {
            let end = self.serve().await;
            self.core.counters.online.dec();
            self.handle.dequeued(self.handle.queued());
            // Boxed, like the other once-per-session steps: an idle session's
            // task should hold only its read/write loop.
            Box::pin(self.claim.release()).await;
            end
        }
    }

    async fn serve(&mut self) -> End {
        // Boxed, and only when there is a resume: its writes would
        // otherwise stay in every session's task (336 bytes, measured).
        if self.resume.is_some()
            && let Err(end) = Box::pin(self.start_resume()).await
        {
            return Box::pin(self.finish(end)).await;
        }
        // The per-message steps are boxed: an idle session's task then holds
        // only this loop's wait (about 0.6 KiB instead of about 2.5 KiB),
        // for one small allocation per message.
        // Which side is polled first alternates, so frames a client sent in
        // one burst cannot starve the writes of their own replies.
        let mut client_first = true;
        let high_water = self.core.config.send_queue * 3 / 4;
        loop {
            let event = {
                let (ws, rx) = (&mut self.ws, &self.rx);
                let client = async { Event::Client(ws.next().await) };
                let core = async { Event::Core(rx.recv().await) };
                if self.handle.queued() >= high_water {
                    // Back-pressure: stop reading a client whose replies pile
                    // up until they are written (TCP then slows the sender),
                    // rather than closing a client that reads.
                    core.await
                } else if client_first {
                    future::or(client, core).await
                } else {
                    future::or(core, client).await
                }
            };
            client_first = !client_first;
            if self.deflate.is_some() && matches!(event, Event::Client(Some(_))) {
                self.count_inflated(&event);
            }
            let step = match event {
                Event::Client(None) => return End::ClientClosed,
                Event::Client(Some(Ok(msg))) => Box::pin(self.on_client_message(msg)).await,
                Event::Client(Some(Err(e))) => Err(client_error(e)),
                Event::Core(Some(out)) => {
                    self.handle.dequeued(1);
                    Box::pin(self.write_queued(out)).await
                }
                Event::Core(None) => Err(close(CloseCode::Error, "session table closed")),
            };
            if let Err(end) = step {
                return Box::pin(self.finish(end)).await;
            }
        }
    }

    /// Moves what tungstenite's hook inflated for this read into the
    /// core's counters, and counts a refusal of compressed data.
    fn count_inflated(&self, event: &Event) {
        let counters = &self.core.counters;
        let seen = deflate::take_inflated();
        counters.inflated_in.add(seen.messages);
        counters.inflate_in_bytes.add(seen.before);
        counters.inflate_out_bytes.add(seen.after);
        counters.inflate_bombs.add(seen.too_big);
        if let Event::Client(Some(Err(WsError::Protocol(ProtocolError::PerMessage(_))))) = event {
            counters.inflate_failures.inc();
        }
    }

    async fn on_client_message(&mut self, msg: Message) -> Result<(), End> {
        self.handle.heard.set(self.core.tick.get());
        let counters = &self.core.counters;
        let raw = self.core.config.frame_format == FrameFormat::Raw;
        let decoded = match &msg {
            Message::Text(text) if raw => Ok(codec::raw(false, Bytes::from(text.clone()))),
            Message::Binary(bytes) if raw => Ok(codec::raw(true, bytes.clone())),
            Message::Text(text) => codec::decode_json(text),
            Message::Binary(bytes) => {
                self.format = Format::Protobuf;
                codec::decode_protobuf(bytes)
            }
            // Pongs are answered by tungstenite; a Close is followed by the end of the stream.
            _ => return Ok(()),
        };
        if let Message::Text(_) = msg {
            self.format = Format::Json;
        }
        if self.inbound_limit.as_mut().is_some_and(|l| !l.allow()) {
            counters.inbound_rate_closes.inc();
            return Err(close(
                CloseCode::Policy,
                "inbound message rate limit exceeded",
            ));
        }
        counters.input_bytes.add(msg.len() as u64);
        counters.messages_in.inc();
        let protocol = match decoded {
            Ok(p) => p,
            Err(e) => {
                counters.lose(Loss::BadFrame, 1);
                debug!(error = %e, "bad client frame");
                let budget = self.bad_frames.get_or_insert_with(|| {
                    Box::new(TokenBucket::new(BAD_FRAME_RATE, BAD_FRAME_BURST))
                });
                if !budget.allow() {
                    counters.bad_frame_closes.inc();
                    return Err(close(CloseCode::Policy, "too many bad frames"));
                }
                return Box::pin(self.send_error(&format!("bad frame: {e}"))).await;
            }
        };
        if protocol.r#type == "HEARTBEAT" {
            self.keep_alive();
        }
        if protocol.resent {
            counters.client_resent.inc();
        }
        let prefix = &self.prefix;
        if self
            .core
            .upstream
            .enqueue(self.uid, |buf| prefix.encode_grpc(&protocol, buf))
            .is_err()
        {
            counters.lose(Loss::UpstreamBufferFull, 1);
            let reason = "ws-api unavailable: message not delivered, try again later";
            return Box::pin(self.send_error(reason)).await;
        }
        Ok(())
    }

    /// Refreshes presence without holding up the client's next frame.
    fn keep_alive(&self) {
        let upstream = Rc::clone(&self.core.upstream);
        let (sid, uid) = (self.claim.sid().to_owned(), self.uid);
        let call = async move {
            if let Err(e) = upstream.keep_alive(&sid, uid).await {
                debug!(error = %e, "KeepAlive failed");
            }
        };
        glommio::spawn_local(call.in_current_span()).detach();
    }

    /// Writes `first` and everything else already queued, then flushes once.
    async fn write_queued(&mut self, first: Outbound) -> Result<(), End> {
        let timeout = self.core.config.write_timeout;
        let handle = Rc::clone(&self.handle);
        let write = async {
            let mut next = Some(first);
            while let Some(out) = next {
                match out {
                    Outbound::Frame(p) => self.live(p).await?,
                    Outbound::Replay(p) => self.feed(&p).await?,
                    Outbound::Resumed(r) => self.end_resume(r).await?,
                    Outbound::Shared(f) => {
                        let (msg, cached) = match self.format {
                            Format::Json => (Message::Text(f.json.clone()), &f.deflated[0]),
                            Format::Protobuf => {
                                (Message::Binary(f.protobuf.clone()), &f.deflated[1])
                            }
                        };
                        self.feed_shared(msg, cached).await?
                    }
                    Outbound::Ping => self
                        .ws
                        .feed(Message::Ping(Bytes::new()))
                        .await
                        .map_err(End::Io)?,
                    Outbound::Close(code, reason) => return Err(close(code.into(), &reason)),
                }
                next = future::poll_once(self.rx.recv()).await.flatten();
                if next.is_some() {
                    self.handle.dequeued(1);
                }
            }
            self.ws.flush().await.map_err(End::Io)
        };
        // Most writes finish at once; only a write that waits gets a timer.
        let result = {
            let mut write = pin!(write);
            match future::poll_once(&mut write).await {
                Some(result) => result,
                None => {
                    // Boxed: the timer is only needed when a write waits.
                    handle.set_stalled(true);
                    let result = Box::pin(within(timeout, write)).await;
                    handle.set_stalled(false);
                    result.unwrap_or_else(|| {
                        Err(close(
                            CloseCode::Policy,
                            "write timeout: client not reading",
                        ))
                    })
                }
            }
        };
        result?;
        if self.handle.overflowed() {
            return Err(close(
                CloseCode::Policy,
                "slow consumer: send queue overflow",
            ));
        }
        Ok(())
    }

    async fn feed(&mut self, p: &Protocol) -> Result<(), End> {
        let raw = self.core.config.frame_format == FrameFormat::Raw;
        let text = || Utf8Bytes::try_from(p.payload.clone()).ok();
        let msg = match (raw, p.r#type.as_str(), self.format) {
            (true, "binary", _) => Message::Binary(p.payload.clone()),
            (true, "text", _) if let Some(t) = text() => Message::Text(t),
            (_, _, Format::Json) => Message::text(codec::encode_json(p)),
            (_, _, Format::Protobuf) => Message::Binary(codec::encode_protobuf(p)),
        };
        self.feed_message(msg).await
    }

    async fn feed_message(&mut self, msg: Message) -> Result<(), End> {
        self.feed_shared(msg, &OnceCell::new()).await
    }

    /// Sends `msg`; `cached` holds (or is given) its compressed form when
    /// the message is one the core shares among sessions.
    async fn feed_shared(&mut self, msg: Message, cached: &OnceCell<Bytes>) -> Result<(), End> {
        let counters = &self.core.counters;
        counters.output_bytes.add(msg.len() as u64);
        counters.messages_out.inc();
        let msg = self.deflated(msg, cached);
        self.ws.feed(msg).await.map_err(End::Io)
    }

    /// `msg` as a compressed frame (RSV1), if the session compresses and
    /// it is data and long enough; `cached`: where the core keeps a shared
    /// frame's compressed form.
    fn deflated(&mut self, msg: Message, cached: &OnceCell<Bytes>) -> Message {
        let cfg = &self.core.config;
        let Some(deflater) = self.deflate.as_mut() else {
            return msg;
        };
        let (opcode, data) = match &msg {
            Message::Text(t) => (OpData::Text, t.as_bytes()),
            Message::Binary(b) => (OpData::Binary, &b[..]),
            _ => return msg,
        };
        if data.len() < cfg.compression_min_size {
            return msg;
        }
        let packed = deflater.compress(
            data,
            cfg.compression_level,
            cached,
            cfg.compression_window_bits,
        );
        let counters = &self.core.counters;
        counters.deflated_out.inc();
        counters.deflate_in_bytes.add(data.len() as u64);
        counters.deflate_out_bytes.add(packed.len() as u64);
        let mut frame = Frame::message(packed, OpCode::Data(opcode), true);
        frame.header_mut().rsv1 = true;
        Message::Frame(frame)
    }

    /// An error frame: `{"type":"error","payload":base64(reason)}` (or protobuf).
    async fn send_error(&mut self, reason: &str) -> Result<(), End> {
        let p = Protocol {
            r#type: "error".into(),
            payload: Bytes::copy_from_slice(reason.as_bytes()),
            ..Protocol::default()
        };
        self.feed(&p).await?;
        self.ws.flush().await.map_err(End::Io)
    }

    /// Sends the close frame for `end` (when there is one to send), then
    /// waits up to [`CLOSE_LINGER`] for the client's Close (RFC 6455
    /// §7.1.1) before the socket is closed: closing it with unread data
    /// sends RST, which can overtake our Close frame, and browsers then see
    /// 1006 and `wasClean === false` instead of our code.
    async fn finish(&mut self, end: End) -> End {
        if let End::Closed(code, reason) = &end {
            let frame = CloseFrame {
                code: CloseCode::from(*code),
                reason: reason.clone().into(),
            };
            let timeout = self.core.config.write_timeout;
            let sent = within(timeout, self.ws.close(Some(frame)))
                .await
                .is_some_and(|r| r.is_ok());
            // After a protocol error or an oversized frame the client's bytes
            // cannot be parsed as frames any more: discard them raw.
            let framing_lost = matches!(
                CloseCode::from(*code),
                CloseCode::Protocol | CloseCode::Size
            );
            if sent && framing_lost {
                self.ws.get_mut().discard_until_quiet(CLOSE_LINGER).await;
            } else if sent {
                // tungstenite ends the stream once the client's Close is in.
                let linger = async { while let Some(Ok(_)) = self.ws.next().await {} };
                within(CLOSE_LINGER, linger).await;
            }
        }
        end
    }
}

/// How long a session the gateway closes waits for the client's Close.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

fn close(code: CloseCode, reason: &str) -> End {
    End::Closed(code.into(), reason.to_owned())
}

/// Maps a read error to the close code RFC 6455 assigns to it.
fn client_error(e: WsError) -> End {
    match e {
        WsError::Capacity(c) => close(CloseCode::Size, &format!("message too big: {c}")),
        WsError::Protocol(ProtocolError::PerMessage(why)) => close(
            CloseCode::Invalid,
            &format!("invalid compressed data: {why}"),
        ),
        WsError::Protocol(p) => close(CloseCode::Protocol, &format!("protocol error: {p}")),
        WsError::Utf8(_) => close(CloseCode::Invalid, "invalid UTF-8 in text frame"),
        other => End::Io(other),
    }
}
