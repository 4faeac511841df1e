//! The admin listener (`--admin-listen`, default 127.0.0.1:9090), on its own
//! thread so that scrapes never take time from a core: `/metrics`,
//! `/healthz` (the process is up), `/readyz` (every core has its stream to
//! a ws-api node that says it serves (`grpc.health.v1`: not while its
//! presence store is down), descriptors are left for new clients, and the
//! gateway is not draining). A current-thread tokio runtime serves each connection as a
//! task under one deadline, so no socket can hold the endpoint.
//!
//! It reads the cores' counters directly (each is written by its core alone,
//! see [`crate::metrics`]), so a scrape sends nothing to the cores.
//!
//! # Layout
//!
//! - this file: the listener and its three endpoints.
//! - [`exposition`]: the Prometheus text for `/metrics`.
//! - [`procstat`]: the process's own CPU, memory and descriptors from /proc.

pub mod exposition;
pub mod procstat;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::metrics::Counters;

/// Descriptors kept free before readiness turns 503: new clients need one
/// each, and a reconnect to ws-api needs a few.
const FD_HEADROOM: u64 = 8;

/// What the admin endpoint reports on.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub cores: Vec<Arc<Counters>>,
    pub draining: Arc<AtomicBool>,
}

impl AdminState {
    /// `Err(reason)` while some core cannot serve traffic.
    pub fn readiness(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining: shutting down".into());
        }
        let p = procstat::read();
        if p.max_fds > 0 && p.open_fds + FD_HEADROOM >= p.max_fds {
            return Err(format!(
                "out of file descriptors: {} of {} open, new clients cannot be accepted",
                p.open_fds, p.max_fds
            ));
        }
        let cores = |bad: fn(&Counters) -> bool| -> Vec<String> {
            let bad = self.cores.iter().enumerate().filter(|(_, c)| bad(c));
            bad.map(|(i, _)| i.to_string()).collect()
        };
        let down = cores(|c| c.upstream_up.get() == 0);
        if !down.is_empty() {
            return Err(format!("ws-api stream down on core(s) {}", down.join(",")));
        }
        // Every node the core reaches says NOT_SERVING: each Connect would fail.
        let store_down = cores(|c| c.upstream_store_down.get() >= c.upstream_up.get());
        if !store_down.is_empty() {
            return Err(format!(
                "ws-api presence store down (health NOT_SERVING) on core(s) {}",
                store_down.join(",")
            ));
        }
        Ok(())
    }
}

/// Connections served at once; more are closed at once (probes and scrapes
/// need a handful, and an idle socket costs a task, not a thread).
const MAX_CONNECTIONS: usize = 256;

/// Whole-request deadline: reading the request, answering, writing.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// The same for a request served with the reserve descriptor, which holds
/// up the accept loop meanwhile.
const EXHAUSTED_DEADLINE: Duration = Duration::from_millis(500);

/// Binds the admin listener and serves it on a thread of its own, one task
/// per connection: a slow or idle socket holds only its own task, never a
/// probe behind it.
pub fn spawn(addr: SocketAddr, state: AdminState) -> io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let state = Arc::new(state);
            runtime.spawn(trim_after_disconnects(Arc::clone(&state)));
            runtime.block_on(serve_all(listener, state))
        })?;
    Ok(bound)
}

/// How often the session count is checked for a mass disconnect.
const TRIM_CHECK: Duration = Duration::from_secs(2);

/// Sessions that must have gone since the peak before memory is trimmed.
const TRIM_AFTER_CLOSES: i64 = 1024;

/// Returns the memory of sessions that ended to the kernel. glibc's malloc
/// keeps freed memory in its per-thread arenas: after 10,000 sessions
/// closed at once the gateway stayed at its peak RSS for good
/// (docs/reliability.md). Once the session count has fallen by [`TRIM_AFTER_CLOSES`] and
/// by a quarter since its peak, `malloc_trim` hands the free pages back,
/// and once more a check later: a session leaves the count before its
/// `Disconnect` to ws-api completes, so the first trim can come while the
/// calls still hold memory. It runs here, off the cores, at most every
/// [`TRIM_CHECK`].
async fn trim_after_disconnects(state: Arc<AdminState>) {
    let mut peak = 0;
    let mut again = false;
    loop {
        tokio::time::sleep(TRIM_CHECK).await;
        let online: i64 = state.cores.iter().map(|c| c.online.get()).sum();
        peak = peak.max(online);
        let dropped = peak - online >= TRIM_AFTER_CLOSES.max(peak / 4);
        if dropped || again {
            // SAFETY: malloc_trim has no preconditions; glibc locks each arena itself.
            #[allow(unsafe_code)]
            unsafe {
                libc::malloc_trim(0)
            };
            debug!(peak, online, "memory trimmed after disconnects");
            peak = online;
        }
        again = dropped;
    }
}

async fn serve_all(listener: std::net::TcpListener, state: Arc<AdminState>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return warn!(error = %e, "admin listener unusable"),
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // A descriptor held back for the moment the process has none left: a
    // probe can still be accepted and told why (503), not left unanswered.
    let mut reserve = open_reserve();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // accept(2) says EMFILE whether or not a connection waits: the
            // reserve is spent only on one that does.
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) && !pending(&listener) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) && reserve.is_some() => {
                reserve = answer_with_reserve(reserve.take(), &listener, &state).await;
                continue;
            }
            Err(e) => {
                // Out of descriptors, say: do not spin.
                debug!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                reserve = reserve.or_else(open_reserve);
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!("admin connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let _slot = slot;
            let mut stream = stream;
            let served = serve(&mut stream, &state, false);
            match tokio::time::timeout(REQUEST_DEADLINE, served).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "admin request failed"),
                Err(_) => debug!("admin request timed out"),
            }
        });
    }
}

/// Spends the reserve descriptor on the connection that waits:
/// accepts it at once (not through the reactor: waiting for its next
/// wake-up would leave the freed descriptor to anyone), answers it, and
/// returns its descriptor as the new reserve.
async fn answer_with_reserve(
    reserve: Option<OwnedFd>,
    listener: &TcpListener,
    state: &AdminState,
) -> Option<OwnedFd> {
    drop(reserve);
    let accepted = socket2::SockRef::from(listener)
        .accept()
        .and_then(|(s, _)| {
            s.set_nonblocking(true)?;
            TcpStream::from_std(s.into())
        });
    match accepted {
        Ok(mut stream) => {
            let served = serve(&mut stream, state, true);
            if tokio::time::timeout(EXHAUSTED_DEADLINE, served)
                .await
                .is_err()
            {
                debug!("admin request timed out with the reserve descriptor");
            }
            keep_as_reserve(stream, listener)
        }
        Err(e) => {
            debug!(error = %e, "admin accept failed with the reserve descriptor");
            open_reserve()
        }
    }
}

/// Whether a connection waits on `listener` (poll(2) needs no descriptor).
fn pending(listener: &TcpListener) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&now)).is_ok_and(|n| n > 0)
}

fn open_reserve() -> Option<OwnedFd> {
    std::fs::File::open("/dev/null").ok().map(OwnedFd::from)
}

/// Turns the descriptor of a connection served with the reserve back into
/// the reserve, with no moment in which it is free: another thread (a
/// core's io_uring accept waits in the kernel for exactly that) would take
/// it, and the next probe would find none.
#[allow(unsafe_code)]
fn keep_as_reserve(stream: TcpStream, listener: &TcpListener) -> Option<OwnedFd> {
    let fd = stream.into_std().ok()?.into_raw_fd();
    // SAFETY: `fd` was just released by the socket above and is owned here
    // alone; dup2 closes the socket behind it and makes it a second
    // reference to the listener's open file in the same step.
    let duped = unsafe { libc::dup2(listener.as_raw_fd(), fd) };
    // SAFETY: `fd` is open (dup2 succeeded) or still the socket (it
    // failed): either way ours to own, and closed once dropped.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if duped == fd {
        Some(owned)
    } else {
        drop(owned);
        open_reserve()
    }
}

/// Answers one request; `exhausted`: it was accepted with the reserve
/// descriptor, so there is none left to read /proc with and readiness is
/// known already.
async fn serve(stream: &mut TcpStream, state: &AdminState, exhausted: bool) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let path = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => break req.path.unwrap_or("/").to_owned(),
            Ok(httparse::Status::Partial) if buf.len() < 8192 => continue,
            _ => return respond(stream, 400, "text/plain", "bad request\n").await,
        }
    };
    match path.split('?').next().unwrap_or("/") {
        "/metrics" => {
            let body = exposition::render(&state.cores);
            let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            respond(stream, 200, kind, &body).await
        }
        "/healthz" => respond(stream, 200, "text/plain", "ok\n").await,
        "/readyz" if exhausted => {
            let why = "out of file descriptors: none left, new clients cannot be accepted\n";
            respond(stream, 503, "text/plain", why).await
        }
        "/readyz" => match state.readiness() {
            Ok(()) => respond(stream, 200, "text/plain", "ready\n").await,
            Err(why) => respond(stream, 503, "text/plain", &format!("{why}\n")).await,
        },
        _ => respond(stream, 404, "text/plain", "not found\n").await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> io::Result<()> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
