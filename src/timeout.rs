//! The one way a core bounds a wait: [`within`] runs a future against a
//! glommio timer on the same core and gives `None` when the time ran out
//! first (the future is then dropped, which cancels it).

use std::future::Future;
use std::time::Duration;

use futures_lite::future;

/// `Some(output)` if `fut` finished within `limit`.
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}
