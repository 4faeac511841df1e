//! Helpers for the unit tests: a glommio executor on the test's thread, a
//! bounded wait, and a core's session context with no ws-api node.

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Config};
use crate::metrics::Counters;
use crate::routing::admission::Admission;
use crate::routing::sessions::Sessions;
use crate::session::context::SessionContext;
use crate::shard::upstream_config;
use crate::upstream::grpc::Credentials;
use crate::upstream::pool::Upstreams;
use crate::upstream::targets::Targets;

/// Runs `fut` to its end on a fresh glommio executor on this thread, with
/// as little registered memory as a core gets by default (`--io-memory`).
pub fn run<T>(fut: impl Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .make()
        .expect("a glommio executor (io_uring, RLIMIT_MEMLOCK)")
        .run(fut)
}

/// Awaits `fut`, failing the test after five seconds.
pub async fn soon<T>(what: &str, fut: impl Future<Output = T>) -> T {
    crate::timeout::within(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|| panic!("{what}: not within 5 s"))
}

/// Waits until `done()` holds (checked every millisecond, other tasks run
/// in between), failing the test after five seconds.
pub async fn until(what: &str, done: impl Fn() -> bool) {
    soon(what, async {
        while !done() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}

/// A core's session context without ws-api nodes: `Connect` and messages
/// for ws-api are refused, as they are while every node is down.
pub fn context(config: Config) -> Rc<SessionContext> {
    let counters = Arc::new(Counters::default());
    Rc::new(SessionContext {
        upstream: Upstreams::new(
            upstream_config(&config, "test#0".into(), 1, Credentials::default()),
            Targets::new(&[]),
            Arc::clone(&counters),
        ),
        admission: Rc::new(Admission::new(0, 1, config.max_connections_per_user)),
        config,
        counters,
        sessions: Rc::new(Sessions::default()),
        tick: Rc::default(),
    })
}

/// The defaults, with an upstream address nothing is asked of.
pub fn test_config() -> Config {
    config::load(["ws-gateway", "--upstream", "127.0.0.1:9"]).unwrap()
}
