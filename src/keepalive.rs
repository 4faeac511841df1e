//! Server-driven keepalive: browsers cannot send pings, and proxies close
//! idle WebSockets (nginx after 60 s), so each core pings its sessions every
//! `--ping-interval` and closes those it has not heard from since the
//! previous ping.
//!
//! One timer per core, not per session: the core counts ticks, each session
//! notes the tick at which its client last sent anything (a pong counts), and
//! a session silent for a whole interval after a ping is closed with 1008
//! and counted. A client is thus closed between one and two intervals after
//! it went silent.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::debug;

use crate::metrics::Counters;
use crate::proto::wsgateway::Protocol;
use crate::sessions::{Outbound, Sessions};

/// What a core's keepalive task uses.
pub struct Keepalive {
    /// The core's id, for the log.
    pub core: usize,
    /// `--ping-interval` (zero: no keepalive).
    pub interval: Duration,
    /// `--app-ping`: a `PING` frame too, for clients that cannot see pings.
    pub app_ping: bool,
    pub sessions: Rc<Sessions>,
    /// The round counter the core's sessions note when they hear their client.
    pub tick: Rc<Cell<u64>>,
    pub counters: Arc<Counters>,
}

impl Keepalive {
    /// Pings every session of the core, forever (unless the interval is zero).
    pub async fn run(self) {
        let interval = self.interval;
        if interval.is_zero() {
            return;
        }
        let reason = format!(
            "keepalive timeout: no answer to ping within {}",
            humantime::format_duration(interval)
        );
        loop {
            glommio::timer::sleep(interval).await;
            let tick = self.tick.get();
            for session in self.sessions.all() {
                let out = if session.heard.get() < tick {
                    self.counters.keepalive_timeouts.inc();
                    debug!(core = self.core, "keepalive timeout");
                    Outbound::Close(1008, reason.clone())
                } else {
                    if self.app_ping {
                        let _ = session.push(Outbound::Frame(Protocol {
                            r#type: "PING".into(),
                            payload: Bytes::new(),
                            ..Protocol::default()
                        }));
                    }
                    Outbound::Ping
                };
                // A full queue is a slow consumer already being closed.
                let _ = session.push(out);
            }
            self.tick.set(tick + 1);
        }
    }
}
