//! The supervisor: a background task that applies the timeout rule (see
//! `numport_core::porting`) to every order whose step deadline has passed. Deadlines live in the
//! orders table, so a restarted clearinghouse picks up where the last one stopped.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Clearinghouse;

pub async fn run(ch: Clearinghouse, shutdown: CancellationToken) {
    let period = Duration::from_millis(ch.config.supervisor_interval_ms.max(10) as u64);
    loop {
        match ch.supervise_once().await {
            Ok(n) if n > 0 => tracing::info!(orders = n, "deadline rule applied"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "supervisor pass failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}
