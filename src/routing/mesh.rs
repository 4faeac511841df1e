//! Receiving from a glommio channel mesh: one task per peer core, each
//! handing that peer's messages, in order, to the same handler.

use std::future::Future;

use glommio::channels::channel_mesh::Receivers;

/// Serves every peer's channel until all of them close.
pub async fn receive<T, F, Fut>(mut receivers: Receivers<T>, handle: F)
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let tasks: Vec<_> = receivers
        .streams()
        .into_iter()
        .map(|(_, rx)| {
            let handle = handle.clone();
            glommio::spawn_local(async move {
                while let Some(msg) = rx.recv().await {
                    handle(msg).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
}
