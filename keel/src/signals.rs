//! Shutdown on SIGINT or SIGTERM, the same for every long-running keel command.

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on SIGINT or SIGTERM; returns early if it is cancelled otherwise.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch for SIGTERM; stop with SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("stopping");
    shutdown.cancel();
}
