//! Keeping the node in step with the clearinghouse when callbacks alone would not.
//!
//! - Registration: at start the node tells the clearinghouse its callback URL, retrying with
//!   back-off while the clearinghouse is not reachable (startup never waits for it).
//! - Catch-up: then it reads its inbox from the stored cursor, so messages sent while it was
//!   down are processed now, not when their callback retries happen to fire.
//! - Re-processing: a recorded message whose processing did not finish (failure, crash) is
//!   taken up again once due, and at startup all of them are.

use std::net::SocketAddr;
use std::time::Duration;

use clearinghouse_api::Envelope;
use numport_core::Millis;
use tokio_util::sync::CancellationToken;

use crate::{Node, OperatorError};

/// Inbox messages read per request during catch-up.
const INBOX_PAGE: i64 = 100;
/// Recorded messages taken up per re-processor pass.
const REPROCESS_BATCH: i64 = 256;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Node {
    /// Tell the clearinghouse where to deliver this node's messages.
    pub async fn register_callback(&self, url: &str) -> Result<(), OperatorError> {
        self.inner.client.set_callback(Some(url)).await.inspect_err(|_| {
            self.inner.metrics.clearinghouse_failure("set_callback");
        })?;
        self.inner.callback_registered.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(node = %self.name(), url, "callback URL registered at the clearinghouse");
        Ok(())
    }

    /// Read the inbox from the stored cursor, record and process (in order, before returning)
    /// every message not recorded yet, then move the cursor and acknowledge. Messages recorded
    /// already (by a callback) are left to their own processing. Returns how many messages
    /// this call processed.
    pub async fn catch_up(&self) -> Result<usize, OperatorError> {
        let store = &self.inner.store;
        let mut after = store.inbox_cursor().await?;
        let mut processed = 0;
        loop {
            let page = self.inner.client.inbox(after, INBOX_PAGE).await.inspect_err(|_| {
                self.inner.metrics.clearinghouse_failure("inbox");
            })?;
            let count = page.messages.len();
            let Some(last) = page.messages.iter().map(|e| e.id).max() else {
                break;
            };
            for envelope in page.messages {
                if envelope.id <= after {
                    continue;
                }
                let body = serde_json::to_string(&envelope)
                    .map_err(|e| OperatorError::Corrupt(format!("inbox message {}: {e}", envelope.id)))?;
                let now = self.now();
                let retry_at = now.saturating_add(self.inner.config.reprocess_after_ms);
                if store.record_message(envelope.id, envelope.message.kind(), &body, now, retry_at).await? {
                    self.process_recorded(envelope).await;
                    processed += 1;
                }
            }
            if last <= after {
                break;
            }
            store.advance_inbox_cursor(last, self.now()).await?;
            if let Err(e) = self.inner.client.ack(last).await {
                self.inner.metrics.clearinghouse_failure("ack");
                tracing::warn!(node = %self.name(), error = %e, up_to = last, "inbox acknowledgement failed");
            }
            after = last;
            if (count as i64) < INBOX_PAGE {
                break;
            }
        }
        if processed > 0 {
            tracing::info!(node = %self.name(), processed, cursor = after, "inbox caught up");
        }
        Ok(processed)
    }

    /// One re-processor pass: process recorded messages that are due. Returns how many
    /// became processed.
    pub async fn reprocess(&self) -> Result<usize, OperatorError> {
        self.reprocess_due(self.now()).await
    }

    pub(crate) async fn reprocess_due(&self, due_by: Millis) -> Result<usize, OperatorError> {
        let store = &self.inner.store;
        let due = store.due_messages(due_by, REPROCESS_BATCH).await?;
        let mut processed = 0;
        for row in due {
            let envelope: Envelope = match serde_json::from_str(&row.body) {
                Ok(e) => e,
                Err(e) => {
                    // Only verified, parsed bodies are recorded, so this is a damaged row.
                    tracing::error!(id = row.id, error = %e, "recorded message unreadable; giving up on it");
                    store.mark_processed(row.id, self.now(), Some("unreadable body")).await?;
                    continue;
                }
            };
            if self.process_again(envelope).await? {
                processed += 1;
            }
        }
        self.inner.metrics.unprocessed.set(store.unprocessed_count().await?);
        Ok(processed)
    }

    /// Register the callback URL, then catch up with the inbox, each retried with back-off;
    /// abandoned (the next start does it again) when `stop` is cancelled.
    pub(crate) async fn startup_sync(self, bound: SocketAddr, stop: CancellationToken) {
        let url = self.callback_url(bound);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.register_callback(&url) => r,
            };
            let Err(e) = attempt else { break };
            tracing::warn!(node = %self.name(), error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot register callback URL yet");
            if !pause(&stop, &mut backoff).await {
                return;
            }
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            let attempt = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.catch_up() => r,
            };
            let Err(e) = attempt else { break };
            tracing::warn!(node = %self.name(), error = %e, retry_in_ms = backoff.as_millis() as u64, "inbox catch-up failed");
            if !pause(&stop, &mut backoff).await {
                return;
            }
        }
    }

    /// Take up every unprocessed message now (left by the previous run), then the due ones
    /// every `reprocess_interval_ms`.
    pub(crate) async fn reprocessor(self, stop: CancellationToken) {
        let interval = Duration::from_millis(self.inner.config.reprocess_interval_ms.max(10));
        let mut due_by = Millis::MAX;
        loop {
            let pass = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.reprocess_due(due_by) => r,
            };
            if let Err(e) = pass {
                tracing::warn!(node = %self.name(), error = %e, "re-processor pass failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            due_by = self.now();
        }
    }
}

/// Sleep for `backoff` (doubling it for next time); false if stopped meanwhile.
async fn pause(stop: &CancellationToken, backoff: &mut Duration) -> bool {
    let d = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
