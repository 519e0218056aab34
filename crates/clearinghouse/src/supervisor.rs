//! The supervisor: a background task that applies the timeout rule (see
//! `numport_core::porting`) to every order whose step deadline has passed. Deadlines live in the
//! orders table, so a restarted clearinghouse picks up where the last one stopped. About once a
//! minute it also deletes deposits nobody used and failed verifications past their window
//! ([`Clearinghouse::expire_once`]), so that neither table grows without bound.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::Clearinghouse;

/// How often the expiry pass runs, and the most rows of each kind it deletes in one pass.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);
const EXPIRY_BATCH: i64 = 10_000;

pub async fn run(ch: Clearinghouse, shutdown: CancellationToken) {
    let period = Duration::from_millis(ch.config.supervisor_interval_ms.max(10) as u64);
    let mut expire_at = Instant::now();
    loop {
        if Instant::now() >= expire_at {
            expire_at = Instant::now() + EXPIRY_INTERVAL;
            match ch.expire_once(EXPIRY_BATCH).await {
                Ok(e) if e.deposits + e.failures > 0 => {
                    tracing::info!(deposits = e.deposits, failures = e.failures, "expired rows deleted")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "expiry pass failed"),
            }
        }
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
