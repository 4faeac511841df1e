//! Which ws-api nodes exist: the `--upstream` entries (addresses and/or DNS
//! names), resolved to a set of socket addresses.
//!
//! Resolution is blocking (`getaddrinfo`), so it never runs on a core: the server
//! resolves once before the cores start, and, when some entry is a name, a
//! thread of its own re-resolves every `--upstream-resolve-interval` and
//! publishes the set through an `ArcSwap`. Each core compares its nodes with
//! that set on its own timer (see `pool.rs`); nothing in the message path
//! reads it. A name that fails to resolve keeps its previous addresses, so a
//! DNS hiccup does not tear down healthy streams.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tracing::{info, warn};

/// The resolved ws-api nodes, shared by every core.
#[derive(Debug)]
pub struct Targets {
    entries: Vec<String>,
    current: ArcSwap<Vec<SocketAddr>>,
    /// Per entry, its last successful resolution.
    last: Vec<ArcSwap<Vec<SocketAddr>>>,
}

/// `host:port` without a scheme or trailing slash (`http://` is accepted, as
/// the Go gateway's endpoint flag had it).
pub fn strip_scheme(entry: &str) -> &str {
    entry
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_start_matches("grpc://")
        .trim_end_matches('/')
}

/// Whether `entry` asks for TLS (`https://host:port`).
pub fn is_tls(entry: &str) -> bool {
    entry.trim().starts_with("https://")
}

/// The host of `entry` (for TLS: the name ws-api's certificate must have).
pub fn host(entry: &str) -> &str {
    let hostport = strip_scheme(entry);
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `entry` looks like `host:port` (checked at config validation,
/// without resolving: a name may appear in DNS later).
pub fn well_formed(entry: &str) -> bool {
    let host = strip_scheme(entry);
    if host.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match host.rsplit_once(':') {
        Some((name, port)) => {
            !name.is_empty() && !name.contains(':') && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

/// The addresses `entry` resolves to now.
pub fn resolve(entry: &str) -> std::io::Result<Vec<SocketAddr>> {
    strip_scheme(entry).to_socket_addrs().map(Iterator::collect)
}

impl Targets {
    /// Resolves every entry once; entries that fail are logged and retried later.
    pub fn new(entries: &[String]) -> Arc<Targets> {
        let targets = Targets {
            entries: entries.to_vec(),
            current: ArcSwap::from_pointee(Vec::new()),
            last: entries
                .iter()
                .map(|_| ArcSwap::from_pointee(Vec::new()))
                .collect(),
        };
        targets.refresh();
        Arc::new(targets)
    }

    /// The nodes as last resolved, sorted and without duplicates.
    pub fn get(&self) -> Arc<Vec<SocketAddr>> {
        self.current.load_full()
    }

    /// Whether some entry is a name (and so worth re-resolving).
    pub fn has_names(&self) -> bool {
        self.entries
            .iter()
            .any(|e| strip_scheme(e).parse::<SocketAddr>().is_err())
    }

    /// Re-resolves every entry; returns whether the set changed.
    pub fn refresh(&self) -> bool {
        let mut all = Vec::new();
        for (entry, last) in self.entries.iter().zip(&self.last) {
            match resolve(entry) {
                Ok(addrs) if !addrs.is_empty() => {
                    all.extend_from_slice(&addrs);
                    last.store(Arc::new(addrs));
                }
                Ok(_) => {
                    warn!(upstream = %entry, "resolved to no address; keeping the last ones");
                    all.extend_from_slice(&last.load());
                }
                Err(e) => {
                    warn!(upstream = %entry, error = %e, "cannot resolve; keeping the last addresses");
                    all.extend_from_slice(&last.load());
                }
            }
        }
        all.sort_unstable();
        all.dedup();
        if **self.current.load() == all {
            return false;
        }
        info!(nodes = ?all, "ws-api nodes");
        self.current.store(Arc::new(all));
        true
    }

    /// Re-resolves every `interval` on a thread of its own, if there is a name.
    pub fn spawn_refresh(self: &Arc<Self>, interval: Duration) -> std::io::Result<()> {
        if interval.is_zero() || !self.has_names() {
            return Ok(());
        }
        let targets = Arc::clone(self);
        std::thread::Builder::new()
            .name("resolver".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    targets.refresh();
                }
            })
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked_without_resolving() {
        assert!(well_formed("127.0.0.1:8081"));
        assert!(well_formed("http://ws-api.internal:8081/"));
        assert!(well_formed("[::1]:8081"));
        assert!(!well_formed("nowhere"));
        assert!(!well_formed("host:port"));
        assert!(!well_formed(":8081"));
    }

    #[test]
    fn addresses_and_names_resolve_to_one_sorted_set() {
        let t = Targets::new(&[
            "127.0.0.3:1".into(),
            "localhost:1".into(),
            "127.0.0.2:1".into(),
            "127.0.0.2:1".into(),
        ]);
        let nodes = t.get();
        assert!(t.has_names());
        assert!(nodes.contains(&"127.0.0.1:1".parse().unwrap()), "{nodes:?}");
        assert!(nodes.windows(2).all(|w| w[0] < w[1]), "{nodes:?}");
        assert!(!t.refresh(), "same names, same set");
    }

    #[test]
    fn a_failing_name_keeps_nothing_it_never_had() {
        let t = Targets::new(&["127.0.0.2:1".into(), "no-such-host.invalid:1".into()]);
        assert_eq!(*t.get(), vec!["127.0.0.2:1".parse().unwrap()]);
    }
}
