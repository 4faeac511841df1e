//! `ws-bench sink`: the floor the gateway is measured against. One thread,
//! level-triggered epoll, non-blocking sockets: it answers the WebSocket
//! upgrade on any path (ignoring `token` and every other header but the
//! key), then reads and discards every frame. The only per-frame work is
//! RFC 6455 framing: the header is parsed to skip the payload, pings are
//! answered, a close is echoed. With `--echo` it also writes every data
//! frame back (unmasked), the floor for a round trip. With `--push-users`
//! it also writes frames of its own to its connections, the floor for push
//! and broadcast (`sink_push`).
//!
//! Memory: one shared 64 KiB read buffer; per connection a ~100-byte state
//! (the partial frame header and how much payload is left), plus a buffer
//! only while an upgrade request is incomplete, a control frame is being
//! read, or output waits for the socket. SIGTERM/SIGINT print what it saw.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context, bail};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use ws_util::frame;

use crate::sink_push::{self, PushPlan, Pusher};

/// Shared read buffer size: one `read` per readiness, level-triggered.
const READ_BUF: usize = 64 * 1024;
/// Longest upgrade request accepted.
const MAX_REQUEST: usize = 16 * 1024;
/// Pending output past which a connection stops being read (echo mode).
const MAX_PENDING: usize = 1 << 20;
/// epoll data of the listener and the signal socket (connections use their fd).
const LISTENER: u64 = u64::MAX;
const SIGNALS: u64 = u64::MAX - 1;

/// Where a connection is.
enum Phase {
    /// Collecting the upgrade request.
    Upgrade(Vec<u8>),
    /// Reading frame headers and skipping payloads.
    Open,
}

struct Conn {
    phase: Phase,
    /// The frame header read so far and how long it will be.
    hdr: [u8; 14],
    hdr_len: u8,
    hdr_need: u8,
    /// Inside a payload: bytes left and bytes done (for the mask offset).
    in_payload: bool,
    remaining: u64,
    done: u64,
    mask: [u8; 4],
    opcode: u8,
    /// A control frame's payload (at most 125 bytes), only while reading one.
    ctrl: Vec<u8>,
    /// Output the socket has not taken yet.
    out: Vec<u8>,
    /// Close once `out` is written.
    closing: bool,
    /// Registered for EPOLLOUT (and not EPOLLIN while over MAX_PENDING).
    want_out: bool,
    reading: bool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            phase: Phase::Upgrade(Vec::new()),
            hdr: [0; 14],
            hdr_len: 0,
            hdr_need: 2,
            in_payload: false,
            remaining: 0,
            done: 0,
            mask: [0; 4],
            opcode: 0,
            ctrl: Vec::new(),
            out: Vec::new(),
            closing: false,
            want_out: false,
            reading: true,
        }
    }
}

/// A connection and its socket; dropping it closes the socket.
struct Slot {
    sock: OwnedFd,
    conn: Conn,
}

#[derive(Default)]
struct Totals {
    accepted: u64,
    upgraded: u64,
    frames: u64,
    /// Data frames with FIN: whole messages.
    messages: u64,
    bytes: u64,
    closed: u64,
    /// Frames the push floor wrote, and those it found no connection for.
    pushed: u64,
    push_skipped: u64,
}

/// Runs the sink until SIGTERM or SIGINT.
pub fn run(
    listen: SocketAddr,
    cpu: Option<usize>,
    echo: bool,
    push: Option<PushPlan>,
) -> anyhow::Result<()> {
    if let Some(cpu) = cpu {
        pin(cpu)?;
    }
    crate::load::raise_nofile();
    let lst = listener(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let bound = lst.local_addr()?;
    let signals = signal_socket()?;
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(&ep, &lst, EventData::new_u64(LISTENER), EventFlags::IN)?;
    epoll::add(&ep, &signals, EventData::new_u64(SIGNALS), EventFlags::IN)?;
    println!(
        "ws-bench sink listening on {bound}{}",
        if echo { " (echo)" } else { "" }
    );
    io::stdout().flush()?;

    let mut conns: Vec<Option<Slot>> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let none = epoll::Event {
        flags: EventFlags::empty(),
        data: EventData::new_u64(0),
    };
    let mut events = vec![none; 1024];
    let mut totals = Totals::default();
    let mut pusher = push.map(Pusher::new);
    let mut frame = Vec::new();
    push_header(&mut frame, 0x81, sink_push::FRAME_JSON.len() as u64);
    frame.extend_from_slice(sink_push::FRAME_JSON);
    loop {
        let timeout = pusher
            .as_ref()
            .and_then(Pusher::timeout)
            .map(|d| rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: d.as_nanos() as _,
            });
        let n = match epoll::wait(&ep, &mut events[..], timeout.as_ref()) {
            Ok(n) => n,
            // A signal handler ran (signal-hook's write); its byte wakes the next wait.
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e).context("epoll_wait"),
        };
        for ev in &events[..n] {
            let (token, flags) = (ev.data.u64(), ev.flags);
            match token {
                LISTENER => accept_all(&ep, &lst, &mut conns, &mut totals),
                SIGNALS => {
                    println!(
                        "ws-bench sink: accepted {} upgraded {} closed {} frames {} messages {} bytes {} \
                         pushed {} push_skipped {}",
                        totals.accepted,
                        totals.upgraded,
                        totals.closed,
                        totals.frames,
                        totals.messages,
                        totals.bytes,
                        totals.pushed,
                        totals.push_skipped
                    );
                    io::stdout().flush()?;
                    return Ok(());
                }
                fd => {
                    let i = fd as usize;
                    let Some(Slot { sock, conn }) = conns.get_mut(i).and_then(Option::as_mut)
                    else {
                        continue;
                    };
                    let sock = sock.as_fd();
                    let mut alive = true;
                    if flags.intersects(EventFlags::IN | EventFlags::HUP | EventFlags::ERR)
                        && conn.reading
                    {
                        alive = on_readable(sock, conn, &mut buf, echo, &mut totals);
                    }
                    if alive && !conn.out.is_empty() {
                        alive = flush(sock, conn);
                    }
                    if alive && conn.closing && conn.out.is_empty() {
                        alive = false;
                    }
                    if alive {
                        alive = rearm(&ep, sock, conn);
                    }
                    if !alive {
                        // Dropping the socket closes it, which also removes it from the epoll set.
                        conns[i] = None;
                        totals.closed += 1;
                    }
                }
            }
        }
        if let Some(p) = pusher.as_mut() {
            let due = p.due(totals.upgraded, std::time::Instant::now());
            write_pushes(&ep, &mut conns, p, due, &frame, &mut totals);
        }
    }
}

/// Writes `due` copies of `frame`, one per upgraded connection in round
/// robin from the pusher's cursor, each connection's in one write.
fn write_pushes(
    ep: &OwnedFd,
    conns: &mut [Option<Slot>],
    p: &mut Pusher,
    due: u64,
    frame: &[u8],
    totals: &mut Totals,
) {
    let (mut left, mut idle) = (due, 0);
    // `idle` counts slots looked at without a write: a full lap of them
    // means no connection is left to write to.
    while left > 0 && idle <= conns.len() {
        let i = p.cursor % conns.len().max(1);
        p.cursor = i + 1;
        let Some(Slot { sock, conn }) = conns.get_mut(i).and_then(Option::as_mut) else {
            idle += 1;
            continue;
        };
        if !matches!(conn.phase, Phase::Open) || conn.closing || conn.out.len() >= MAX_PENDING {
            idle += 1;
            continue;
        }
        idle = 0;
        left -= 1;
        totals.pushed += 1;
        conn.out.extend_from_slice(frame);
        let sock = sock.as_fd();
        if !(flush(sock, conn) && rearm(ep, sock, conn)) {
            conns[i] = None;
            totals.closed += 1;
        }
    }
    totals.push_skipped += left;
}

/// Accepts until the backlog is drained. On an error (EAGAIN: drained;
/// EMFILE and the like) the rest stay in the backlog.
fn accept_all(ep: &OwnedFd, lst: &TcpListener, conns: &mut Vec<Option<Slot>>, totals: &mut Totals) {
    while let Ok(sock) = rustix::net::accept_with(lst, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
    {
        totals.accepted += 1;
        // Best effort, as before: without it only echo latency suffers.
        let _ = rustix::net::sockopt::set_tcp_nodelay(&sock, true);
        let i = sock.as_raw_fd() as usize;
        if epoll::add(ep, &sock, EventData::new_u64(i as u64), EventFlags::IN).is_err() {
            continue; // dropping `sock` closes it
        }
        if conns.len() <= i {
            conns.resize_with(i + 1, || None);
        }
        conns[i] = Some(Slot {
            sock,
            conn: Conn::new(),
        });
    }
}

/// One `read` into the shared buffer, then the bytes through the state
/// machine. `false`: close the connection now.
fn on_readable(
    sock: BorrowedFd<'_>,
    c: &mut Conn,
    buf: &mut [u8],
    echo: bool,
    t: &mut Totals,
) -> bool {
    let n = match rustix::io::read(sock, &mut *buf) {
        Ok(0) => return false,
        Ok(n) => n,
        Err(e) => return retry_later(e),
    };
    let mut data = &buf[..n];
    if let Phase::Upgrade(req) = &mut c.phase {
        req.extend_from_slice(data);
        let Some(end) = find(req, b"\r\n\r\n") else {
            return req.len() <= MAX_REQUEST;
        };
        let req = std::mem::take(req);
        match upgrade_response(&req[..end]) {
            Some(resp) => {
                c.out.extend_from_slice(resp.as_bytes());
                c.phase = Phase::Open;
                t.upgraded += 1;
            }
            None => {
                c.out
                    .extend_from_slice(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                c.closing = true;
                return true;
            }
        }
        // Bytes after the request (a client that did not wait for the 101).
        let rest = req.len() - (end + 4);
        data = &buf[n - rest..n];
    }
    frames(c, data, echo, t);
    true
}

/// Feeds bytes through the frame state machine.
fn frames(c: &mut Conn, mut data: &[u8], echo: bool, t: &mut Totals) {
    t.bytes += data.len() as u64;
    while !data.is_empty() && !c.closing {
        if !c.in_payload {
            let take = (c.hdr_need - c.hdr_len) as usize;
            let take = take.min(data.len());
            c.hdr[c.hdr_len as usize..c.hdr_len as usize + take].copy_from_slice(&data[..take]);
            c.hdr_len += take as u8;
            data = &data[take..];
            if c.hdr_len == 2 {
                let ext = match c.hdr[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                c.hdr_need = 2 + ext + if c.hdr[1] & 0x80 != 0 { 4 } else { 0 };
            }
            if c.hdr_len < c.hdr_need {
                continue;
            }
            start_payload(c, echo);
            if c.remaining == 0 {
                end_frame(c, t);
            }
            continue;
        }
        let take = (c.remaining.min(data.len() as u64)) as usize;
        let keep = c.opcode >= 8 || echo;
        if keep {
            let dst = if c.opcode >= 8 {
                &mut c.ctrl
            } else {
                &mut c.out
            };
            let off = c.done as usize;
            dst.extend(
                data[..take]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ c.mask[(off + i) % 4]),
            );
        }
        c.remaining -= take as u64;
        c.done += take as u64;
        data = &data[take..];
        if c.remaining == 0 {
            end_frame(c, t);
        }
    }
}

/// The header is complete: check it and set up the payload.
fn start_payload(c: &mut Conn, echo: bool) {
    let h = &c.hdr;
    let (fin, opcode, masked) = (h[0] & 0x80 != 0, h[0] & 0x0f, h[1] & 0x80 != 0);
    let (len, at) = match h[1] & 0x7f {
        126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
        127 => (
            u64::from_be_bytes(h[2..10].try_into().unwrap_or_default()),
            10,
        ),
        l => (l as u64, 2),
    };
    // RFC 6455: client frames are masked; control frames are short and whole.
    if !masked || (opcode >= 8 && (len > 125 || !fin)) {
        protocol_error(c);
        return;
    }
    c.mask.copy_from_slice(&h[at..at + 4]);
    c.opcode = opcode;
    c.in_payload = true;
    c.remaining = len;
    c.done = 0;
    if opcode >= 8 {
        c.ctrl = Vec::with_capacity(len as usize);
    } else if echo {
        push_header(&mut c.out, h[0], len);
    }
}

fn end_frame(c: &mut Conn, t: &mut Totals) {
    t.frames += 1;
    match c.opcode {
        0x9 => {
            let ctrl = std::mem::take(&mut c.ctrl);
            push_header(&mut c.out, 0x8A, ctrl.len() as u64);
            c.out.extend_from_slice(&ctrl);
        }
        0x8 => {
            // Echo the status code (not the reason), then close.
            let code = if c.ctrl.len() >= 2 {
                &c.ctrl[..2]
            } else {
                &[][..]
            };
            push_header(&mut c.out, 0x88, code.len() as u64);
            let code = code.to_vec();
            c.out.extend_from_slice(&code);
            c.closing = true;
        }
        0xA => {}
        _ if c.hdr[0] & 0x80 != 0 => t.messages += 1,
        _ => {}
    }
    c.ctrl = Vec::new();
    c.in_payload = false;
    c.hdr_len = 0;
    c.hdr_need = 2;
}

fn protocol_error(c: &mut Conn) {
    push_header(&mut c.out, 0x88, 2);
    c.out.extend_from_slice(&1002u16.to_be_bytes());
    c.closing = true;
}

/// A server (unmasked) frame header.
fn push_header(out: &mut Vec<u8>, b0: u8, len: u64) {
    frame::header(out, b0, None, len);
}

/// The 101 for a request carrying `Sec-WebSocket-Key`, or `None`.
fn upgrade_response(head: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    if !lines.next()?.starts_with("GET ") {
        return None;
    }
    let key = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim())
    })?;
    Some(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    ))
}

/// Writes what the socket takes. `false`: the connection is gone.
fn flush(sock: BorrowedFd<'_>, c: &mut Conn) -> bool {
    while !c.out.is_empty() {
        match rustix::io::write(sock, &c.out) {
            Ok(n) => drop(c.out.drain(..n)),
            Err(e) => return retry_later(e),
        }
    }
    if c.out.capacity() > 4096 {
        c.out = Vec::new();
    }
    true
}

/// Keeps the epoll interest in step with pending output.
fn rearm(ep: &OwnedFd, sock: BorrowedFd<'_>, c: &mut Conn) -> bool {
    let want_out = !c.out.is_empty();
    let reading = c.out.len() < MAX_PENDING && !c.closing;
    if want_out == c.want_out && reading == c.reading {
        return true;
    }
    c.want_out = want_out;
    c.reading = reading;
    let mut flags = EventFlags::empty();
    if want_out {
        flags |= EventFlags::OUT;
    }
    if reading {
        flags |= EventFlags::IN;
    }
    let data = EventData::new_u64(sock.as_raw_fd() as u64);
    epoll::modify(ep, sock, data, flags).is_ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A failed read or write to try again on the next readiness.
fn retry_later(e: Errno) -> bool {
    e == Errno::WOULDBLOCK || e == Errno::INTR
}

fn pin(cpu: usize) -> anyhow::Result<()> {
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        bail!("--cpu {cpu} is out of range");
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .with_context(|| format!("cannot pin to CPU {cpu}"))
}

/// A non-blocking listener with SO_REUSEADDR (the sink closes first, so its
/// port collects TIME_WAIT sockets) and a 4096 backlog: std's `bind` listens
/// with 128, which a connect storm overflows.
fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let fd = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 4096)?;
    Ok(TcpListener::from(fd))
}

/// SIGTERM and SIGINT as a readable socket in the epoll set: signal-hook's
/// handler writes a byte to the other end (rustix has no signalfd, and
/// blocking the signals for one would take `unsafe` sigprocmask).
fn signal_socket() -> io::Result<UnixStream> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let (read, write) = UnixStream::pair()?;
    signal_hook::low_level::pipe::register(SIGTERM, write.try_clone()?)?;
    signal_hook::low_level::pipe::register(SIGINT, write)?;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        frame::masked(b0, [1, 2, 3, 4], payload)
    }

    fn open() -> Conn {
        let mut c = Conn::new();
        c.phase = Phase::Open;
        c
    }

    #[test]
    fn counts_frames_fed_one_byte_at_a_time() {
        let mut bytes = masked(0x81, b"hello");
        bytes.extend(masked(0x82, &[7u8; 1000]));
        let (mut c, mut t) = (open(), Totals::default());
        for b in &bytes {
            frames(&mut c, std::slice::from_ref(b), false, &mut t);
        }
        assert_eq!(t.frames, 2);
        assert!(c.out.is_empty() && !c.closing);
    }

    #[test]
    fn echo_unmasks_and_ping_gets_pong() {
        let mut bytes = masked(0x81, b"hello");
        bytes.extend(masked(0x89, b"p"));
        let (mut c, mut t) = (open(), Totals::default());
        frames(&mut c, &bytes[..3], true, &mut t);
        frames(&mut c, &bytes[3..], true, &mut t);
        assert_eq!(c.out, b"\x81\x05hello\x8a\x01p");
    }

    #[test]
    fn close_is_echoed_and_unmasked_frames_rejected() {
        let (mut c, mut t) = (open(), Totals::default());
        frames(&mut c, &masked(0x88, &1000u16.to_be_bytes()), false, &mut t);
        assert!(c.closing);
        assert_eq!(c.out, b"\x88\x02\x03\xe8");
        let mut c = open();
        frames(&mut c, b"\x81\x01x", false, &mut t);
        assert!(c.closing);
        assert_eq!(c.out, b"\x88\x02\x03\xea");
    }

    #[test]
    fn upgrade_answers_the_key_on_any_path() {
        let resp = upgrade_response(
            b"GET /anything HTTP/1.1\r\nHost: x\r\ntoken: 7\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        )
        .unwrap();
        assert!(resp.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert!(upgrade_response(b"GET / HTTP/1.1\r\nHost: x").is_none());
    }
}
