//! When a core may call a ws-api node dead: an HTTP/2 PING unanswered for
//! `--rpc-timeout` of time the core was actually running, with nothing
//! else heard from the node meanwhile.
//!
//! Two things look like a silent peer and are not. A core that did not run
//! (the gateway stopped, or starved of CPU) finds its timer overdue and the
//! answer unread in its socket; a ws-api starved of CPU answers the PING
//! behind the messages it is still writing. Declaring either dead tears
//! down a healthy connection (and, before downstream acknowledgements,
//! lost what was on it), so the wait is extended — a bounded number of
//! times — when the timer fired late or messages kept arriving.

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use crate::timeout::within;

/// Extensions of a PING's wait before the node is dead all the same.
pub const MAX_EXTENSIONS: u32 = 3;

/// A timer firing this much later than asked means the core did not run.
fn stalled(asked: Duration, waited: Duration) -> bool {
    waited > asked + asked / 2
}

/// Why the wait ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silent;

/// Waits for `pong` up to `timeout` at a time; `heard` counts what arrived
/// from the node. Extended while the core was stalled or the node was
/// heard from, at most [`MAX_EXTENSIONS`] times; returns the extensions
/// used with the answer.
pub async fn answered<T>(
    timeout: Duration,
    heard: impl Fn() -> u64,
    pong: impl Future<Output = T>,
) -> Result<(T, u32), Silent> {
    let mut pong = pin!(pong);
    let mut extensions = 0;
    loop {
        let before = heard();
        let started = Instant::now();
        if let Some(answer) = within(timeout, pong.as_mut()).await {
            return Ok((answer, extensions));
        }
        let alive = stalled(timeout, started.elapsed()) || heard() != before;
        if !alive || extensions == MAX_EXTENSIONS {
            return Err(Silent);
        }
        extensions += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::testing::run;

    const TIMEOUT: Duration = Duration::from_millis(50);

    #[test]
    fn a_silent_node_is_dead_after_the_timeout() {
        let got = run(answered(
            TIMEOUT,
            || 0,
            futures_lite::future::pending::<()>(),
        ));
        assert_eq!(got, Err(Silent));
    }

    #[test]
    fn a_core_that_did_not_run_waits_again() {
        // The core blocks past the timeout while the answer is on its way:
        // its timer fires late, and the answer is there right after.
        let got = run(async {
            let answered_at = Instant::now() + TIMEOUT * 4 + Duration::from_millis(20);
            let pong = async move {
                glommio::timer::sleep(answered_at.saturating_duration_since(Instant::now())).await;
            };
            let waiting = glommio::spawn_local(answered(TIMEOUT, || 0, pong));
            glommio::timer::sleep(Duration::from_millis(1)).await;
            std::thread::sleep(TIMEOUT * 4);
            waiting.await
        });
        assert_eq!(got.map(|(_, ext)| ext), Ok(1));
    }

    #[test]
    fn a_node_heard_from_waits_again_but_not_forever() {
        let heard = Rc::new(Cell::new(0));
        let got = run({
            let heard = heard.clone();
            async move {
                let h = heard.clone();
                let talker = glommio::spawn_local(async move {
                    loop {
                        glommio::timer::sleep(TIMEOUT / 5).await;
                        h.set(h.get() + 1);
                    }
                })
                .detach();
                let got = answered(
                    TIMEOUT,
                    || heard.get(),
                    futures_lite::future::pending::<()>(),
                );
                let got = got.await;
                talker.cancel();
                got
            }
        });
        assert_eq!(got, Err(Silent), "heard, but never answered");
        assert!(heard.get() >= u64::from(MAX_EXTENSIONS) * 5);
    }
}
