//! Re-registration of this core's live sessions with one ws-api node whose
//! presence may have lost them, so that `Push` finds them again without any
//! client action (a client that never sends `HEARTBEAT` would otherwise stay
//! unreachable until it reconnects).
//!
//! A pass is asked for when the node's stream comes up (after a break the
//! node may have restarted with its in-memory presence empty; on a first
//! connection there is nothing to do) and when the node sends
//! `Control.Reassert` (its Redis store lost its data). Requests coalesce: one
//! that comes during a pass makes one more pass after it.
//!
//! A pass calls the existing `KeepAlive` (server, sid, uid) on that node for
//! each session ws-api admitted, so any ws-api handles it (a Go ws-api
//! refreshes what it knows; ours records a session it no longer knows). It
//! is bounded: at most `--reassert-in-flight` calls at once, and at most
//! `--reassert-rate` sessions per second per core and node. A session that
//! ended since the pass began is skipped; a call that fails, or the rest of
//! a pass the node's stream dropped in the middle of, is counted
//! (`gateway_presence_reassert_failures_total`): the next up retries them.
//!
//! Groups are not re-sent: KeepAlive carries none, and group delivery does
//! not need ws-api's copy (each core fans out to its own members).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use tracing::{debug, info, warn};

use super::Upstream;
use crate::proto::wsapi::Msg;
use crate::proto::wsapi::control::Op;

/// How fast a pass goes.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Sessions per second, per core and node.
    pub rate: f64,
    /// Calls in flight at once, per core and node.
    pub in_flight: usize,
}

/// A session ws-api admitted, as a pass re-registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    pub slot: usize,
    pub sid: String,
    pub uid: u64,
}

/// The core's sessions, as passes see them (the router implements it, so
/// the upstream knows nothing of the session table).
pub trait LiveSessions {
    /// Every session ws-api admitted.
    fn live_sessions(&self) -> Vec<LiveSession>;
    /// Whether the session in `slot` is still the one listed (slots carry a generation).
    fn is_live(&self, slot: usize) -> bool;
}

/// A node's pending request for a pass.
pub(crate) struct Trigger {
    wake: LocalSender<()>,
    rx: RefCell<Option<LocalReceiver<()>>>,
}

impl Trigger {
    pub(crate) fn new() -> Trigger {
        // One slot: requests made while one waits are the same request.
        let (wake, rx) = local_channel::new_bounded(1);
        Trigger {
            wake,
            rx: RefCell::new(Some(rx)),
        }
    }

    /// Asks for a pass (also used to wake the task when the node closes).
    pub(crate) fn request(&self) {
        let _ = self.wake.try_send(());
    }
}

/// Whether `msg` is ws-api asking for a pass (`Control.Reassert`, no sid).
pub(crate) fn asked(msg: &Msg) -> bool {
    msg.sid.is_empty()
        && matches!(
            msg.control.as_ref().and_then(|c| c.op.as_ref()),
            Some(Op::Reassert(_))
        )
}

/// Runs the passes of `node` until it closes.
pub(crate) async fn run(node: Rc<Upstream>, sessions: Rc<impl LiveSessions>) {
    let Some(rx) = node.reassert.rx.borrow_mut().take() else {
        return;
    };
    while rx.recv().await.is_some() {
        if node.closing.get() {
            return;
        }
        pass(&node, &*sessions).await;
    }
}

/// One pass over the sessions ws-api admitted, paced.
async fn pass(node: &Upstream, live: &impl LiveSessions) {
    let sessions = live.live_sessions();
    if sessions.is_empty() {
        return;
    }
    let counters = &node.counters;
    let pace = node.cfg.reassert;
    counters.presence_reasserts.inc();
    let started = Instant::now();
    let (mut done, mut failed) = (0u64, 0u64);
    for (i, batch) in sessions.chunks(pace.in_flight.max(1)).enumerate() {
        if node.closing.get() || !node.is_up() {
            let left = (sessions.len() - i * pace.in_flight.max(1)) as u64;
            counters.presence_reassert_failures.add(left);
            failed += left;
            break;
        }
        let at = Instant::now();
        let calls = batch
            .iter()
            .filter(|s| live.is_live(s.slot))
            .map(|s| node.keep_alive(&s.sid, s.uid));
        let mut ok = 0;
        for result in futures_util::future::join_all(calls).await {
            match result {
                Ok(()) => ok += 1,
                Err(e) => {
                    failed += 1;
                    counters.presence_reassert_failures.inc();
                    debug!(upstream = %node.addr, error = %e, "re-registration failed");
                }
            }
        }
        done += ok;
        counters.presence_reasserted.add(ok);
        glommio::timer::sleep(pause(at, batch.len(), pace.rate)).await;
    }
    let took = started.elapsed();
    if failed == 0 {
        info!(upstream = %node.addr, sessions = done, ?took, "sessions re-registered with ws-api");
    } else {
        warn!(upstream = %node.addr, sessions = done, failed, ?took, "sessions re-registered with ws-api, some not");
    }
}

/// What is left to wait after a batch of `n` that started `at`, so the pass
/// keeps to `rate` sessions per second.
fn pause(at: Instant, n: usize, rate: f64) -> Duration {
    if !(rate > 0.0 && rate.is_finite()) {
        return Duration::ZERO;
    }
    let due = at + Duration::from_secs_f64(n as f64 / rate);
    due.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wsapi::{Ack, Control, Reassert};

    fn control(sid: &str, op: Op) -> Msg {
        Msg {
            sid: sid.into(),
            control: Some(Control { op: Some(op) }),
            ..Msg::default()
        }
    }

    #[test]
    fn only_a_reassert_without_sid_asks_for_a_pass() {
        assert!(asked(&control("", Op::Reassert(Reassert {}))));
        assert!(!asked(&control("s-0-1", Op::Reassert(Reassert {}))));
        assert!(!asked(&control(
            "",
            Op::Ack(Ack {
                seq: 1,
                ..Ack::default()
            })
        )));
        assert!(!asked(&Msg::default()));
    }

    #[test]
    fn batches_are_paced_to_the_rate() {
        let at = Instant::now();
        let p = pause(at, 100, 1000.0);
        assert!(
            p <= Duration::from_millis(100) && p > Duration::from_millis(50),
            "{p:?}"
        );
        assert_eq!(pause(at, 100, 0.0), Duration::ZERO, "0: unpaced");
        let long_ago = at - Duration::from_secs(1);
        assert_eq!(pause(long_ago, 100, 1000.0), Duration::ZERO);
    }
}
