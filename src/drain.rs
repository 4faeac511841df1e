//! Graceful shutdown of one core: refuse new clients, close every session
//! with 1001 (going away) spread over `--drain-window` so clients do not all
//! reconnect elsewhere at the same instant, let each session flush what was
//! queued for it and send `Disconnect`, then end the `ExchangeMsg` streams
//! once the core's upstream buffers are sent.

use std::cell::Cell;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_lite::future;
use tracing::{info, warn};

use crate::sessions::{Outbound, Sessions};

/// How often draining re-checks progress; also the batch interval.
const TICK: Duration = Duration::from_millis(10);

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
            if i > 0 {
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
        let finished = future::or(
            async {
                close_upstream.await;
                true
            },
            async {
                glommio::timer::sleep(left).await;
                false
            },
        )
        .await;
        if table.is_empty() && finished {
            info!(core, "drained");
            true
        } else {
            warn!(core, sessions_left = table.len(), "drain deadline passed");
            false
        }
    }
}
