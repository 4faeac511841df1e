//! `ws-bench sink`: the floor the gateway is measured against. One thread,
//! level-triggered epoll, non-blocking sockets: it answers the WebSocket
//! upgrade on any path (ignoring `token` and every other header but the
//! key), then reads and discards every frame. The only per-frame work is
//! RFC 6455 framing: the header is parsed to skip the payload, pings are
//! answered, a close is echoed. With `--echo` it also writes every data
//! frame back (unmasked), the floor for a round trip.
//!
//! Memory: one shared 64 KiB read buffer; per connection a ~100-byte state
//! (the partial frame header and how much payload is left), plus a buffer
//! only while an upgrade request is incomplete, a control frame is being
//! read, or output waits for the socket. SIGTERM/SIGINT print what it saw.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use anyhow::{Context, bail};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Shared read buffer size: one `read` per readiness, level-triggered.
const READ_BUF: usize = 64 * 1024;
/// Longest upgrade request accepted.
const MAX_REQUEST: usize = 16 * 1024;
/// Pending output past which a connection stops being read (echo mode).
const MAX_PENDING: usize = 1 << 20;
/// epoll data of the listener and the signalfd (connections use their fd).
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

#[derive(Default)]
struct Totals {
    accepted: u64,
    upgraded: u64,
    frames: u64,
    /// Data frames with FIN: whole messages.
    messages: u64,
    bytes: u64,
    closed: u64,
}

/// Runs the sink until SIGTERM or SIGINT.
pub fn run(listen: SocketAddr, cpu: Option<usize>, echo: bool) -> anyhow::Result<()> {
    if let Some(cpu) = cpu {
        pin(cpu)?;
    }
    crate::load::raise_nofile();
    let lfd = listener(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let bound = local_addr(lfd)?;
    let sfd = signal_fd()?;
    // SAFETY: plain syscall; the result is checked.
    let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    ctl(ep, libc::EPOLL_CTL_ADD, lfd, libc::EPOLLIN as u32, LISTENER)?;
    ctl(ep, libc::EPOLL_CTL_ADD, sfd, libc::EPOLLIN as u32, SIGNALS)?;
    println!(
        "ws-bench sink listening on {bound}{}",
        if echo { " (echo)" } else { "" }
    );
    io::stdout().flush()?;

    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut totals = Totals::default();
    loop {
        // SAFETY: `events` outlives the call and its length is passed.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("epoll_wait");
        }
        for ev in &events[..n as usize] {
            let (token, flags) = (ev.u64, ev.events);
            match token {
                LISTENER => accept_all(ep, lfd, &mut conns, &mut totals),
                SIGNALS => {
                    println!(
                        "ws-bench sink: accepted {} upgraded {} closed {} frames {} messages {} bytes {}",
                        totals.accepted,
                        totals.upgraded,
                        totals.closed,
                        totals.frames,
                        totals.messages,
                        totals.bytes
                    );
                    io::stdout().flush()?;
                    return Ok(());
                }
                fd => {
                    let fd = fd as RawFd;
                    let Some(conn) = conns.get_mut(fd as usize).and_then(Option::as_mut) else {
                        continue;
                    };
                    let mut alive = true;
                    if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
                        && conn.reading
                    {
                        alive = on_readable(fd, conn, &mut buf, echo, &mut totals);
                    }
                    if alive && !conn.out.is_empty() {
                        alive = flush(fd, conn);
                    }
                    if alive && conn.closing && conn.out.is_empty() {
                        alive = false;
                    }
                    if alive {
                        alive = rearm(ep, fd, conn);
                    }
                    if !alive {
                        conns[fd as usize] = None;
                        totals.closed += 1;
                        // SAFETY: the fd is ours; closing also removes it from the epoll set.
                        unsafe { libc::close(fd) };
                    }
                }
            }
        }
    }
}

fn accept_all(ep: RawFd, lfd: RawFd, conns: &mut Vec<Option<Conn>>, totals: &mut Totals) {
    loop {
        // SAFETY: null address pointers are allowed; flags are valid.
        let fd = unsafe {
            libc::accept4(
                lfd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            // EAGAIN: drained. EMFILE and the like: leave the rest in the backlog.
            return;
        }
        totals.accepted += 1;
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and option buffer.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        if ctl(ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, fd as u64).is_err() {
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
            continue;
        }
        let i = fd as usize;
        if conns.len() <= i {
            conns.resize_with(i + 1, || None);
        }
        conns[i] = Some(Conn::new());
    }
}

/// One `read` into the shared buffer, then the bytes through the state
/// machine. `false`: close the connection now.
fn on_readable(fd: RawFd, c: &mut Conn, buf: &mut [u8], echo: bool, t: &mut Totals) -> bool {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        );
    }
    if n == 0 {
        return false;
    }
    let mut data = &buf[..n as usize];
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
        data = &buf[n as usize - rest..n as usize];
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
    out.push(b0);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as u64 {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&len.to_be_bytes());
    }
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
fn flush(fd: RawFd, c: &mut Conn) -> bool {
    while !c.out.is_empty() {
        // SAFETY: `out` is valid for reads of its length.
        let n = unsafe { libc::write(fd, c.out.as_ptr().cast(), c.out.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            );
        }
        c.out.drain(..n as usize);
    }
    if c.out.capacity() > 4096 {
        c.out = Vec::new();
    }
    true
}

/// Keeps the epoll interest in step with pending output.
fn rearm(ep: RawFd, fd: RawFd, c: &mut Conn) -> bool {
    let want_out = !c.out.is_empty();
    let reading = c.out.len() < MAX_PENDING && !c.closing;
    if want_out == c.want_out && reading == c.reading {
        return true;
    }
    c.want_out = want_out;
    c.reading = reading;
    let mut flags = 0u32;
    if want_out {
        flags |= libc::EPOLLOUT as u32;
    }
    if reading {
        flags |= libc::EPOLLIN as u32;
    }
    ctl(ep, libc::EPOLL_CTL_MOD, fd, flags, fd as u64).is_ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn ctl(ep: RawFd, op: libc::c_int, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: a valid epoll fd and event struct.
    cvt(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }).map(drop)
}

fn pin(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it (checked).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * size_of::<libc::cpu_set_t>() {
            bail!("--cpu {cpu} is out of range");
        }
        libc::CPU_SET(cpu, &mut set);
        cvt(libc::sched_setaffinity(
            0,
            size_of::<libc::cpu_set_t>(),
            &set,
        ))
        .with_context(|| format!("cannot pin to CPU {cpu}"))?;
    }
    Ok(())
}

/// A non-blocking listener with SO_REUSEADDR (the sink closes first, so its
/// port collects TIME_WAIT sockets).
fn listener(addr: SocketAddr) -> io::Result<RawFd> {
    let SocketAddr::V4(v4) = addr else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the sink listens on IPv4 only",
        ));
    };
    // SAFETY: plain syscalls on an fd we own; structs are fully initialised.
    unsafe {
        let fd = cvt(libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        ))?;
        let one: libc::c_int = 1;
        cvt(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        cvt(libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ))?;
        cvt(libc::listen(fd, 4096))?;
        Ok(fd)
    }
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: getsockname fills at most `len` bytes of the zeroed struct.
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        cvt(libc::getsockname(
            fd,
            (&mut sa as *mut libc::sockaddr_in).cast(),
            &mut len,
        ))?;
        let ip = std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
        Ok(SocketAddr::from((ip, u16::from_be(sa.sin_port))))
    }
}

/// SIGTERM and SIGINT, blocked and read from an fd in the epoll set.
fn signal_fd() -> io::Result<RawFd> {
    // SAFETY: a zeroed sigset is then initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        cvt(libc::pthread_sigmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        cvt(libc::signalfd(
            -1,
            &set,
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![b0];
        match payload.len() {
            l if l < 126 => f.push(0x80 | l as u8),
            l => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(l as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
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
