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

use std::rc::Rc;

use bytes::Bytes;
use tracing::debug;

use crate::proto::wsgateway::Protocol;
use crate::sessions::Outbound;
use crate::shard::Core;

/// Pings every session of the core, forever (unless the interval is zero).
pub async fn run(core: Rc<Core>) {
    let interval = core.config.ping_interval;
    if interval.is_zero() {
        return;
    }
    let reason = format!(
        "keepalive timeout: no answer to ping within {}",
        humantime::format_duration(interval)
    );
    loop {
        glommio::timer::sleep(interval).await;
        let tick = core.tick.get();
        for session in core.sessions.all() {
            let out = if session.heard.get() < tick {
                core.counters.keepalive_timeouts.inc();
                debug!(core = core.id, "keepalive timeout");
                Outbound::Close(1008, reason.clone())
            } else {
                if core.config.app_ping {
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
        core.tick.set(tick + 1);
    }
}
