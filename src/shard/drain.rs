//! Graceful shutdown of one core: refuse new clients, close every session
//! with 1001 (going away) spread over `--drain-window` so clients do not all
//! reconnect elsewhere at the same instant, let each session flush what was
//! queued for it and send `Disconnect`, then end the `ExchangeMsg` streams
//! once the core's upstream buffers are sent.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::routing::sessions::{Outbound, Sessions};
use crate::timeout::within;

/// How often draining re-checks progress; also the batch interval.
const TICK: Duration = Duration::from_millis(10);

/// Set by a second shutdown signal (read once per batch, only while
/// draining): the sessions still waiting for their 1001 get it at once,
/// and each still sends its `Disconnect` before the deadline.
static HURRY: AtomicBool = AtomicBool::new(false);

/// Stops spreading the 1001s over `--drain-window` on every core.
pub fn hurry() {
    HURRY.store(true, Relaxed);
}

/// What draining one core uses.
pub struct Drain<'a> {
    /// The core's id, for the log.
    pub core: usize,
    pub sessions: &'a Sessions,
    /// Set here: the core's listener refuses upgrades still in flight.
    pub draining: &'a Cell<bool>,
    /// `--drain-window`: the 1001s are spread over it.
    pub window: Duration,
    /// When to give up waiting (`--shutdown-timeout` after the signal).
    pub deadline: Instant,
}

impl Drain<'_> {
    /// Closes the core's sessions, then runs `close_upstream` (which ends
    /// the core's streams once their buffers are sent), giving up at the
    /// deadline. True when everything finished in time.
    pub async fn run(self, close_upstream: impl Future<Output = ()>) -> bool {
        let Drain {
            core,
            sessions: table,
            draining,
            window,
            deadline,
        } = self;
        draining.set(true);
        let sessions = table.all();
        let total = sessions.len();
        info!(core, sessions = total, "draining");
        let batches = (window.as_millis() / TICK.as_millis()).max(1) as usize;
        let per_batch = total.div_ceil(batches).max(1);
        for (i, batch) in sessions.chunks(per_batch).enumerate() {
            if i > 0 && !HURRY.load(Relaxed) {
                glommio::timer::sleep(TICK).await;
            }
            for session in batch {
                // A full queue means a slow consumer that is being closed already.
                let _ = session.push(Outbound::Close(
                    1001,
                    "going away: gateway shutting down".into(),
                ));
            }
        }
        drop(sessions);
        while !table.is_empty() && Instant::now() < deadline {
            glommio::timer::sleep(TICK).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let finished = within(left, close_upstream).await.is_some();
        if table.is_empty() && finished {
            info!(core, "drained");
            true
        } else {
            warn!(core, sessions_left = table.len(), "drain deadline passed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::Drain;
    use crate::metrics::Counters;
    use crate::routing::sessions::{Outbound, SessionHandle, Sessions};
    use crate::testing::{run, soon};

    /// Sessions that end (give back their slot) once told to close.
    fn sessions(n: usize, table: &Rc<Sessions>, closes: &Rc<Cell<usize>>) {
        let counters = Arc::new(Counters::default());
        for _ in 0..n {
            let (handle, rx) = SessionHandle::new(16, 0, Arc::clone(&counters));
            let slot = table.insert(handle).unwrap();
            let (table, closes) = (Rc::clone(table), Rc::clone(closes));
            glommio::spawn_local(async move {
                match rx.recv().await {
                    Some(Outbound::Close(1001, reason)) => {
                        assert_eq!(reason, "going away: gateway shutting down");
                        closes.set(closes.get() + 1);
                    }
                    other => panic!("expected Close(1001), got {other:?}"),
                }
                table.remove(slot);
            })
            .detach();
        }
    }

    #[test]
    fn every_session_gets_1001_within_the_window() {
        run(async {
            let table = Rc::new(Sessions::default());
            let closes = Rc::new(Cell::new(0));
            sessions(25, &table, &closes);
            let draining = Cell::new(false);
            let window = Duration::from_millis(100);
            let start = Instant::now();
            let upstream_closed = Cell::new(false);
            let drain = Drain {
                core: 0,
                sessions: &table,
                draining: &draining,
                window,
                deadline: start + Duration::from_secs(5),
            };
            let drained = soon("drain", drain.run(async { upstream_closed.set(true) })).await;
            assert!(drained);
            assert!(draining.get(), "the listener is told to refuse upgrades");
            assert_eq!(closes.get(), 25);
            assert!(table.is_empty());
            assert!(
                upstream_closed.get(),
                "the streams are closed after the sessions"
            );
            // Spread over the window (ten batches, one per 10 ms), not all at once,
            // and not much past it.
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(80), "{took:?}");
            assert!(took < window + Duration::from_secs(1), "{took:?}");
        });
    }

    #[test]
    fn gives_up_at_the_deadline() {
        run(async {
            let table = Rc::new(Sessions::default());
            // A session that never ends: nobody takes its queue.
            let (stuck, _rx) = SessionHandle::new(16, 0, Arc::new(Counters::default()));
            table.insert(stuck).unwrap();
            let draining = Cell::new(false);
            let start = Instant::now();
            let drain = Drain {
                core: 0,
                sessions: &table,
                draining: &draining,
                window: Duration::ZERO,
                deadline: start + Duration::from_millis(100),
            };
            let never = futures_lite::future::pending::<()>();
            assert!(!soon("drain", drain.run(never)).await);
            assert_eq!(table.len(), 1);
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(100), "{took:?}");
        });
    }

    #[test]
    fn no_sessions_drains_at_once() {
        run(async {
            let table = Sessions::default();
            let draining = Cell::new(false);
            let drain = Drain {
                core: 0,
                sessions: &table,
                draining: &draining,
                window: Duration::from_secs(10),
                deadline: Instant::now() + Duration::from_secs(5),
            };
            assert!(soon("drain", drain.run(async {})).await);
        });
    }
}
