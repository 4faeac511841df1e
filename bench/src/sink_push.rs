//! The sink's push and broadcast floor (`ws-bench sink --push-users N`):
//! once N connections are upgraded, the sink writes `rounds × N` server
//! frames to them at a steady rate, the way ws-api's pushes (one frame to one
//! connection at a time, round robin) or broadcasts (one frame to every
//! connection per round) reach the gateway's clients. `ws-bench push`
//! without `--api` is its client: it connects, counts what arrives and
//! reports the sink's CPU per delivery, the floor beside the gateway's push
//! and broadcast rows.
//!
//! This file is the schedule (how many frames are due when) and the frame;
//! the sink's loop does the writing.

use std::time::{Duration, Instant};

/// What the sink writes once enough connections are up.
#[derive(Debug, Clone, Copy)]
pub struct PushPlan {
    /// Start once this many connections are upgraded; a round is this many frames.
    pub users: usize,
    pub rounds: u64,
    /// Frames per second over every connection.
    pub rate: f64,
    /// Whole rounds at once (every connection the same frame), not one frame at a time.
    pub broadcast: bool,
}

/// The state of a push load: not started, writing, done.
#[derive(Debug)]
pub struct Pusher {
    plan: PushPlan,
    started: Option<Instant>,
    written: u64,
    /// Where the round robin goes on (an index into the sink's connections).
    pub cursor: usize,
}

/// How often the sink looks at the schedule while writing.
const TICK: Duration = Duration::from_millis(1);

/// The frame every push writes: a text frame of the gateway's push shape
/// and about its size. The payload is not a send time, so the client keeps
/// it out of its latency figures.
pub const FRAME_JSON: &[u8] = br#"{"type":"bench","payload":"Zmxvb3JwdXNo","offset":"k1:1"}"#;

impl Pusher {
    pub fn new(plan: PushPlan) -> Pusher {
        Pusher {
            plan,
            started: None,
            written: 0,
            cursor: 0,
        }
    }

    fn total(&self) -> u64 {
        self.plan.rounds * self.plan.users as u64
    }

    /// How long the sink may wait for socket events: a tick while writing
    /// (or about to start), forever otherwise.
    pub fn timeout(&self) -> Option<Duration> {
        (self.written < self.total()).then_some(TICK)
    }

    /// Frames to write now, given how many connections are upgraded; starts
    /// the schedule the first time `upgraded` reaches the plan's users.
    pub fn due(&mut self, upgraded: u64, now: Instant) -> u64 {
        let start = match self.started {
            Some(t) => t,
            None if upgraded >= self.plan.users as u64 && self.total() > 0 => {
                *self.started.insert(now)
            }
            None => return 0,
        };
        let by_now = due_by(&self.plan, now.duration_since(start).as_secs_f64()).min(self.total());
        let n = by_now.saturating_sub(self.written);
        self.written += n;
        n
    }
}

/// Frames due `elapsed` seconds after the start: the first at once, then
/// `rate` per second; a broadcast's in whole rounds.
fn due_by(plan: &PushPlan, elapsed: f64) -> u64 {
    let frames = (elapsed * plan.rate).floor() as u64 + 1;
    if !plan.broadcast {
        return frames;
    }
    let users = plan.users.max(1) as u64;
    frames.div_ceil(users) * users
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(broadcast: bool) -> PushPlan {
        PushPlan {
            users: 10,
            rounds: 3,
            rate: 100.0,
            broadcast,
        }
    }

    #[test]
    fn nothing_until_every_user_is_up_then_the_rate_until_the_total() {
        let mut p = Pusher::new(plan(false));
        let t0 = Instant::now();
        assert_eq!(p.due(9, t0), 0);
        assert!(p.timeout().is_some());
        assert_eq!(p.due(10, t0), 1);
        assert_eq!(p.due(10, t0 + Duration::from_millis(95)), 9);
        assert_eq!(p.due(10, t0 + Duration::from_millis(95)), 0);
        assert_eq!(p.due(10, t0 + Duration::from_secs(60)), 20);
        assert_eq!(p.timeout(), None);
    }

    #[test]
    fn a_broadcast_comes_in_whole_rounds() {
        let mut p = Pusher::new(plan(true));
        let t0 = Instant::now();
        assert_eq!(p.due(10, t0), 10);
        assert_eq!(p.due(10, t0 + Duration::from_millis(95)), 0);
        assert_eq!(p.due(10, t0 + Duration::from_millis(101)), 10);
        assert_eq!(p.due(10, t0 + Duration::from_secs(60)), 10);
        assert_eq!(p.due(10, t0 + Duration::from_secs(61)), 0);
    }
}
