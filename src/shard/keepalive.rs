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
use crate::routing::sessions::{Outbound, Sessions};

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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::Duration;

    use glommio::channels::local_channel::LocalReceiver;

    use super::Keepalive;
    use crate::metrics::Counters;
    use crate::routing::sessions::{Outbound, SessionHandle, Sessions};
    use crate::testing::{run, soon};

    async fn next(rx: &LocalReceiver<Outbound>) -> Outbound {
        soon("keepalive queues", rx.recv())
            .await
            .expect("queue open")
    }

    fn keepalive(app_ping: bool) -> (Keepalive, Rc<Sessions>, Rc<Cell<u64>>, Arc<Counters>) {
        let sessions = Rc::new(Sessions::default());
        let tick = Rc::new(Cell::new(0));
        let counters = Arc::new(Counters::default());
        let k = Keepalive {
            core: 0,
            interval: Duration::from_millis(20),
            app_ping,
            sessions: Rc::clone(&sessions),
            tick: Rc::clone(&tick),
            counters: Arc::clone(&counters),
        };
        (k, sessions, tick, counters)
    }

    /// A session that says nothing after a ping is closed with 1008 at the
    /// next round; one that answers (its session notes the round) is pinged again.
    #[test]
    fn silent_session_is_closed_one_interval_after_a_ping() {
        run(async {
            let (k, sessions, tick, counters) = keepalive(false);
            let (silent, silent_rx) = SessionHandle::new(16, tick.get(), Arc::clone(&counters));
            let (answers, answers_rx) = SessionHandle::new(16, tick.get(), Arc::clone(&counters));
            sessions.insert(Rc::clone(&silent)).unwrap();
            sessions.insert(Rc::clone(&answers)).unwrap();
            let task = glommio::spawn_local(k.run());

            // Round 0: both were heard at tick 0, both are pinged.
            assert!(matches!(next(&silent_rx).await, Outbound::Ping));
            assert!(matches!(next(&answers_rx).await, Outbound::Ping));
            assert_eq!(tick.get(), 1);
            // One client answers: its session notes the round (`crate::session`).
            answers.heard.set(tick.get());

            // Round 1: the silent one is closed, the other pinged again.
            match next(&silent_rx).await {
                Outbound::Close(1008, reason) => {
                    assert!(reason.starts_with("keepalive timeout"), "{reason}")
                }
                other => panic!("expected Close(1008), got {other:?}"),
            }
            assert!(matches!(next(&answers_rx).await, Outbound::Ping));
            assert_eq!(counters.keepalive_timeouts.get(), 1);
            assert_eq!(silent.queued(), 0);
            drop(task);
        });
    }

    #[test]
    fn app_ping_adds_a_ping_frame() {
        run(async {
            let (k, sessions, tick, counters) = keepalive(true);
            let (handle, rx) = SessionHandle::new(16, tick.get(), Arc::clone(&counters));
            sessions.insert(Rc::clone(&handle)).unwrap();
            let _task = glommio::spawn_local(k.run());
            match next(&rx).await {
                Outbound::Frame(p) => assert_eq!(p.r#type, "PING"),
                other => panic!("expected a PING frame, got {other:?}"),
            }
            assert!(matches!(next(&rx).await, Outbound::Ping));
        });
    }

    #[test]
    fn zero_interval_means_no_keepalive() {
        run(async {
            let (mut k, _, tick, _) = keepalive(false);
            k.interval = Duration::ZERO;
            k.run().await;
            assert_eq!(tick.get(), 0);
        });
    }
}
