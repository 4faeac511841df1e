//! Token buckets: the per-core connection rate, the per-IP connection rate,
//! and the per-session inbound message rate. Owned by one core or one
//! session: no sharing.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::time::{Duration, Instant};

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

/// Token buckets by client IP, in two generations: an IP's bucket moves to
/// the current one when used, and the previous one is dropped whole when
/// the current one is a refill time old (its entries were idle that long,
/// so they were full again) or holds `PER_IP_PRUNE_AT` entries. Each
/// accept costs O(1), whatever the number of IPs.
#[derive(Debug)]
pub struct PerIp {
    rate: f64,
    burst: f64,
    /// Time for an empty bucket to fill up.
    refill: Duration,
    current: HashMap<IpAddr, TokenBucket>,
    previous: HashMap<IpAddr, TokenBucket>,
    since: Instant,
}

/// Entries a generation holds before it is retired early.
const PER_IP_PRUNE_AT: usize = 4096;

impl PerIp {
    pub fn new(rate: f64, burst: f64) -> Self {
        PerIp {
            rate,
            burst,
            refill: Duration::from_secs_f64((burst / rate).clamp(0.001, 3600.0)),
            current: HashMap::new(),
            previous: HashMap::new(),
            since: Instant::now(),
        }
    }

    pub fn allow(&mut self, ip: IpAddr) -> bool {
        self.allow_at(ip, Instant::now())
    }

    fn allow_at(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.current.len() >= PER_IP_PRUNE_AT
            || now.saturating_duration_since(self.since) >= self.refill
        {
            self.previous = std::mem::take(&mut self.current);
            self.since = now;
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = match self.current.entry(ip) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(
                self.previous
                    .remove(&ip)
                    .unwrap_or_else(|| TokenBucket::new(rate, burst)),
            ),
        };
        bucket.allow_at(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limits_each_ip_and_forgets_idle_ones() {
        let t0 = Instant::now();
        let mut p = PerIp::new(1.0, 2.0);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert!(p.allow_at(a, t0) && p.allow_at(a, t0));
        assert!(!p.allow_at(a, t0), "a's burst is spent");
        assert!(p.allow_at(b, t0), "b has its own bucket");
        // Within a refill time a's empty bucket survives a generation change.
        let t1 = t0 + Duration::from_millis(2100);
        assert!(p.allow_at(b, t1));
        assert!(p.previous.contains_key(&a) && p.current.contains_key(&b));
        // Idle for a whole generation: dropped (it would be full by now).
        let t2 = t1 + Duration::from_millis(2100);
        p.allow_at(b, t2);
        assert!(!p.previous.contains_key(&a) && !p.current.contains_key(&a));
    }

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
