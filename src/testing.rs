//! Helpers for the unit tests: a glommio executor on the test's thread.

use std::future::Future;
use std::time::Duration;

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
