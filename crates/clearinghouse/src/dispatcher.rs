//! Delivery of the outbox to operators' callback URLs.
//!
//! A fetch loop leases due messages (so no other pass takes them), hands each to a delivery
//! task, and a completion loop records results in batches: delivered, or rescheduled with
//! exponential back-off. Delivery is at least once (a crash after sending but before recording
//! sends again); receivers drop duplicates by message id. Each callback is signed with the
//! operator's derived secret over the timestamp and the exact body bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use numport_core::Millis;
use numport_core::signing::{MESSAGE_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use numport_store::outbox::{self, Due};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::Clearinghouse;
use crate::numbers::envelope;

/// Most messages one pass leases.
const FETCH_LIMIT: i64 = 512;

/// How long the completion loop gathers outcomes before recording them: one `mark_delivered`
/// per batch instead of one per handful of deliveries. Only the bookkeeping waits (the
/// operator has its message); a crash meanwhile means a redelivery, which at-least-once allows.
const OUTCOME_LINGER: Duration = Duration::from_millis(5);

enum Outcome {
    Delivered(i64),
    Failed { id: i64, attempts: i64, error: String },
}

pub async fn run(ch: Clearinghouse, shutdown: CancellationToken) {
    let cfg = ch.config.dispatcher;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.request_timeout_ms))
        .pool_max_idle_per_host(cfg.concurrency)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let completion = tokio::spawn(record_outcomes(ch.clone(), done_rx));
    let latency = ch.metrics.registry.histogram(
        "numport_callback_duration_seconds",
        "Time from sending a callback to the operator's answer.",
        &[],
    );

    loop {
        let limit = (permits.available_permits().max(1) as i64).min(FETCH_LIMIT);
        let fetched = match fetch_and_lease(&ch, limit).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "outbox fetch failed");
                Vec::new()
            }
        };
        // A pass that took fewer than it could took everything due: wait for the next wake-up
        // (every enqueue wakes the dispatcher; one that came during this pass is remembered by
        // the `Notify`) or the poll, instead of a pass that would find nothing.
        let idle = (fetched.len() as i64) < limit;
        for due in fetched {
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (ch, http, done, latency) = (ch.clone(), http.clone(), done_tx.clone(), latency.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = deliver(&ch, &http, &due).await;
                latency.observe(started.elapsed().as_secs_f64());
                let _ = done.send(outcome);
                drop(permit);
            });
        }
        if idle {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ch.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(cfg.poll_interval_ms)) => {}
            }
        } else if shutdown.is_cancelled() {
            break;
        }
    }
    // Let deliveries in flight finish (bounded by the request timeout), then flush outcomes.
    let _ = permits.acquire_many(cfg.concurrency.max(1) as u32).await;
    drop(done_tx);
    let _ = completion.await;
}

async fn fetch_and_lease(ch: &Clearinghouse, limit: i64) -> Result<Vec<Due>, numport_store::StoreError> {
    // Read what is committed (a message is sent only once durable), then lease it. Should the
    // lease be lost, the messages are simply picked up again.
    let now = ch.now();
    let due = outbox::due(&mut *ch.db.read().await?, now, limit).await?;
    if !due.is_empty() {
        let ids: Vec<i64> = due.iter().map(|d| d.message.id).collect();
        let mut tx = ch.db.begin().await?;
        outbox::lease(&mut tx, &ids, now + ch.config.dispatcher.lease_ms).await?;
        tx.commit().await?;
    }
    Ok(due)
}

async fn deliver(ch: &Clearinghouse, http: &reqwest::Client, due: &Due) -> Outcome {
    let id = due.message.id;
    let attempts = due.message.attempts + 1;
    let fail = |error: String| Outcome::Failed { id, attempts, error };
    let Some(url) = &due.callback_url else {
        return fail("no callback URL registered; waiting in the inbox".into());
    };
    let body = match envelope(&due.message)
        .and_then(|e| serde_json::to_vec(&e).map_err(|e| crate::Error::bad_request("encode", e.to_string())))
    {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot encode message: {e}")),
    };
    let ts: Millis = ch.now();
    let secret = ch.callback_secret(&due.operator, due.callback_key_version);
    let result = http
        .post(url)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, sign(&secret, ts, &body))
        .header(MESSAGE_ID_HEADER, id.to_string())
        .body(body)
        .send()
        .await;
    match result {
        Ok(resp) if resp.status().is_success() => Outcome::Delivered(id),
        Ok(resp) => fail(format!("callback answered {}", resp.status())),
        Err(e) => fail(format!("callback failed: {e}")),
    }
}

async fn record_outcomes(ch: Clearinghouse, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    let cfg = ch.config.dispatcher;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        if batch.len() < 1024 {
            tokio::time::sleep(OUTCOME_LINGER).await;
            while batch.len() < 1024
                && let Ok(o) = rx.try_recv()
            {
                batch.push(o);
            }
        }
        let now = ch.now();
        let mut delivered = Vec::new();
        let mut failed = Vec::new();
        for o in batch.drain(..) {
            match o {
                Outcome::Delivered(id) => delivered.push(id),
                Outcome::Failed { id, attempts, error } => failed.push((id, attempts, error)),
            }
        }
        let result: Result<(), numport_store::StoreError> = async {
            let mut tx = ch.db.begin().await?;
            outbox::mark_delivered(&mut tx, &delivered, now).await?;
            for (id, attempts, error) in &failed {
                let shift = (*attempts - 1).clamp(0, 20) as u32;
                let backoff = cfg.base_backoff_ms.saturating_mul(1 << shift).min(cfg.max_backoff_ms);
                outbox::reschedule(&mut tx, *id, now + backoff, error).await?;
            }
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => {
                ch.metrics.callbacks_delivered.add(delivered.len() as u64);
                ch.metrics.callbacks_failed.add(failed.len() as u64);
                for (id, _, error) in &failed {
                    tracing::debug!(message = id, error, "callback failed; will retry");
                }
            }
            // The leases run out and the messages are sent again: at least once.
            Err(e) => tracing::warn!(error = %e, "recording callback outcomes failed"),
        }
    }
}
