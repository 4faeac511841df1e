//! Token buckets: the per-core connection rate, the per-IP connection rate,
//! and the per-session inbound message rate. Owned by one core or one
//! session: no sharing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` tokens per second, at most `burst` saved up (starts full).
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes a token if one is there.
    pub fn allow(&mut self) -> bool {
        self.allow_at(Instant::now())
    }

    /// Whether the bucket would be full again at `now` (its owner is idle).
    fn refilled_by(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    fn allow_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets by client IP, pruned of idle entries as it grows.
#[derive(Debug)]
pub struct PerIp {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, TokenBucket>,
}

/// Entries kept before idle ones are pruned.
const PER_IP_PRUNE_AT: usize = 4096;

impl PerIp {
    pub fn new(rate: f64, burst: f64) -> Self {
        PerIp {
            rate,
            burst,
            buckets: HashMap::new(),
        }
    }

    pub fn allow(&mut self, ip: IpAddr) -> bool {
        if self.buckets.len() >= PER_IP_PRUNE_AT {
            let now = Instant::now();
            self.buckets.retain(|_, b| !b.refilled_by(now));
        }
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(rate, burst))
            .allow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0);
        b.last = t0;
        assert!((0..3).all(|_| b.allow_at(t0)));
        assert!(!b.allow_at(t0));
        assert!(b.allow_at(t0 + Duration::from_millis(100)));
        assert!(!b.allow_at(t0 + Duration::from_millis(100)));
        // Idle time refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.allow_at(later)).count(), 3);
    }
}
