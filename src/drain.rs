//! Graceful shutdown of one core: refuse new clients, close every session
//! with 1001 (going away) spread over `--drain-window` so clients do not all
//! reconnect elsewhere at the same instant, let each session flush what was
//! queued for it and send `Disconnect`, then end the `ExchangeMsg` streams
//! once the core's upstream buffers are sent.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;
use tracing::{info, warn};

use crate::sessions::Outbound;
use crate::shard::Core;

/// How often draining re-checks progress; also the batch interval.
const TICK: Duration = Duration::from_millis(10);

/// Closes this core's sessions and stream, giving up at `deadline`.
pub async fn drain(core: Rc<Core>, window: Duration, deadline: Instant) {
    core.draining.set(true);
    let sessions = core.sessions.all();
    let total = sessions.len();
    info!(core = core.id, sessions = total, "draining");
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
    while !core.sessions.is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(TICK).await;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let finished = future::or(
        async {
            core.upstream.close().await;
            true
        },
        async {
            glommio::timer::sleep(left).await;
            false
        },
    )
    .await;
    if core.sessions.is_empty() && finished {
        info!(core = core.id, "drained");
    } else {
        warn!(
            core = core.id,
            sessions_left = core.sessions.len(),
            "drain deadline passed"
        );
    }
}
