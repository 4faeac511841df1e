//! The admin listener (`--admin-listen`, default 127.0.0.1:9090), on its own
//! thread so that scrapes never take time from a core: `/metrics`,
//! `/healthz` (the process is up), `/readyz` (every core has its stream to
//! ws-api, and the gateway is not draining).
//!
//! It reads the cores' counters directly (each is written by its core alone,
//! see `metrics.rs`), so a scrape sends nothing to the cores.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::debug;

use crate::exposition;
use crate::metrics::Counters;

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
        let down: Vec<String> = self
            .cores
            .iter()
            .enumerate()
            .filter(|(_, c)| c.upstream_up.get() == 0)
            .map(|(i, _)| i.to_string())
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(format!("ws-api stream down on core(s) {}", down.join(",")))
        }
    }
}

/// Binds the admin listener and serves it on a thread of its own.
pub fn spawn(addr: SocketAddr, state: AdminState) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = serve(stream, &state) {
                    debug!(error = %e, "admin request failed");
                }
            }
        })?;
    Ok(bound)
}

fn serve(mut stream: TcpStream, state: &AdminState) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let path = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => break req.path.unwrap_or("/").to_owned(),
            Ok(httparse::Status::Partial) if buf.len() < 8192 => continue,
            _ => return respond(&mut stream, 400, "text/plain", "bad request\n"),
        }
    };
    match path.split('?').next().unwrap_or("/") {
        "/metrics" => respond(
            &mut stream,
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            &exposition::render(&state.cores),
        ),
        "/healthz" => respond(&mut stream, 200, "text/plain", "ok\n"),
        "/readyz" => match state.readiness() {
            Ok(()) => respond(&mut stream, 200, "text/plain", "ready\n"),
            Err(why) => respond(&mut stream, 503, "text/plain", &format!("{why}\n")),
        },
        _ => respond(&mut stream, 404, "text/plain", "not found\n"),
    }
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}
