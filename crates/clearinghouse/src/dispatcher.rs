//! Delivery of the outbox to operators' callback URLs.
//!
//! One clearinghouse process at a time delivers: the holder of the delivery lease
//! (`outbox::hold_delivery`), renewed at half its length. Its fetch loop reads due messages,
//! leaving out those it has in flight (kept in memory: no row is rewritten to hide them from
//! the next pass), groups those for the same operator into callbacks of up to `batch_max`
//! messages, hands each callback to a delivery task, and a completion loop records results in
//! batches: delivered, or rescheduled with exponential back-off. Delivery is at least once (a
//! crash after sending but before recording, or a lease taken over from a process that
//! stopped, sends again); receivers drop duplicates by message id. Each callback is signed with the
//! operator's derived secret over the timestamp and the exact body bytes: one envelope as a
//! JSON object, several as a JSON array of envelopes, acknowledged (or not) as a whole.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::outbox::{self, Due};
use numport_core::Millis;
use numport_core::signing::{MESSAGE_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::Clearinghouse;
use crate::callback_address::{PublicOnly, check_literal};
use crate::numbers::envelope;

/// Most messages one pass leases.
const FETCH_LIMIT: i64 = 512;

/// A callback is closed once its messages' bodies reach this size, well within the 64 KiB an
/// operator node accepts.
const CALLBACK_BYTES: usize = 24 * 1024;

/// How long the completion loop gathers outcomes before recording them: one `mark_delivered`
/// per batch instead of one per handful of deliveries. Only the bookkeeping waits (the
/// operator has its message); a crash meanwhile means a redelivery, which at-least-once allows.
const OUTCOME_LINGER: Duration = Duration::from_millis(5);

/// How one callback went, for each of the messages it carried.
enum Outcome {
    Delivered(Vec<i64>),
    /// `(id, attempts)` of each message, with why the callback failed.
    Failed {
        messages: Vec<(i64, i64)>,
        error: String,
    },
}

/// The ids of the messages handed to delivery tasks whose outcomes are not recorded yet.
type InFlight = Arc<Mutex<HashSet<i64>>>;

/// Who a clearinghouse is to the delivery lease: its host and the address it serves on. A
/// process restarted there (after a crash) takes the lease back at once instead of waiting for
/// it to run out; two processes cannot serve one address on one host.
pub fn deliverer(serving: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid {}", std::process::id()));
    format!("{host} {serving}")
}

/// The client callbacks are sent with: `callback_tls`'s CA verifies `https://` callback URLs.
pub fn http_client(config: &crate::ClearinghouseConfig) -> Result<reqwest::Client, numport_tls::TlsError> {
    let cfg = config.dispatcher;
    let public_only = !config.allow_private_callback_addresses;
    numport_tls::http::client(config.callback_tls.as_ref(), |builder| {
        let builder = builder
            .timeout(Duration::from_millis(cfg.request_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(cfg.concurrency)
            .tcp_nodelay(true);
        if public_only { builder.dns_resolver(Arc::new(PublicOnly)) } else { builder }
    })
}

/// Deliver the outbox with `http` while this process, as `holder`, holds the delivery lease.
pub async fn run(ch: Clearinghouse, http: reqwest::Client, holder: String, shutdown: CancellationToken) {
    let cfg = ch.config.dispatcher;
    let mut held_until: Millis = 0;
    // Without the lease, when to ask for it again: not at every wake-up.
    let mut ask_at: Millis = 0;
    let in_flight = InFlight::default();
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let completion = tokio::spawn(record_outcomes(ch.clone(), done_rx, in_flight.clone()));
    let latency = ch.metrics.callback_duration.clone();

    loop {
        let now = ch.now();
        let ask = if now < held_until { now + cfg.lease_ms / 2 >= held_until } else { now >= ask_at };
        if ask {
            ask_at = now.saturating_add(cfg.poll_interval_ms as Millis);
            match hold_delivery(&ch, &holder, now).await {
                Ok(true) => held_until = now + cfg.lease_ms,
                Ok(false) => held_until = 0,
                // Kept until it runs out: another process may take it over only then.
                Err(e) => tracing::warn!(error = %e, "renewing the delivery lease failed"),
            }
        }
        let limit = (permits.available_permits().max(1) as i64).min(FETCH_LIMIT);
        let fetched = if now < held_until {
            match fetch(&ch, limit, &in_flight).await {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox fetch failed");
                    Vec::new()
                }
            }
        } else {
            // Another process delivers; ask again at the next wake-up or poll.
            Vec::new()
        };
        // A pass that took fewer than it could took everything due: wait for the next wake-up
        // (every enqueue wakes the dispatcher; one that came during this pass is remembered by
        // the `Notify`) or the poll, instead of a pass that would find nothing.
        let idle = (fetched.len() as i64) < limit;
        for callback in callbacks(fetched, cfg.batch_max) {
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            let (ch, http, done, latency) = (ch.clone(), http.clone(), done_tx.clone(), latency.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = deliver(&ch, &http, &callback).await;
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
    // Let deliveries in flight finish (bounded by the request timeout), then flush outcomes,
    // and let another process deliver at once.
    let _ = permits.acquire_many(cfg.concurrency.max(1) as u32).await;
    drop(done_tx);
    let _ = completion.await;
    if held_until > 0
        && let Ok(mut conn) = ch.db.acquire().await
        && let Err(e) = outbox::release_delivery(&mut conn, &holder).await
    {
        tracing::warn!(error = %e, "releasing the delivery lease failed");
    }
}

async fn hold_delivery(ch: &Clearinghouse, holder: &str, now: Millis) -> Result<bool, numport_db::StoreError> {
    let mut conn = ch.db.acquire().await?;
    outbox::hold_delivery(&mut conn, holder, now, now + ch.config.dispatcher.lease_ms).await
}

/// Due messages not in flight, which become in flight. What is committed only (a message is
/// sent once durable): the ids in flight are taken before the read, and an id leaves them
/// only once its outcome is committed, so a read never finds a message this process has just
/// sent and not yet recorded.
async fn fetch(ch: &Clearinghouse, limit: i64, in_flight: &InFlight) -> Result<Vec<Due>, numport_db::StoreError> {
    let skip: Vec<i64> = in_flight.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
    let due = outbox::due(&mut *ch.db.read().await?, ch.now(), limit, &skip).await?;
    in_flight.lock().unwrap_or_else(|p| p.into_inner()).extend(due.iter().map(|d| d.message.id));
    Ok(due)
}

/// Group a pass's messages into callbacks: per operator, in outbox order, at most `batch_max`
/// each. Messages keep their order within an operator's callbacks.
fn callbacks(fetched: Vec<Due>, batch_max: usize) -> Vec<Vec<Due>> {
    let batch_max = batch_max.max(1);
    // (messages, their bodies' bytes) per operator with a callback still open.
    let mut open: Vec<(Vec<Due>, usize)> = Vec::new();
    let mut closed = Vec::new();
    for due in fetched {
        let i = match open.iter().position(|(c, _)| c[0].message.operator_id == due.message.operator_id) {
            Some(i) => i,
            None => {
                open.push((Vec::new(), 0));
                open.len() - 1
            }
        };
        open[i].1 += due.message.body.len();
        open[i].0.push(due);
        if open[i].0.len() >= batch_max || open[i].1 >= CALLBACK_BYTES {
            closed.push(open.swap_remove(i).0);
        }
    }
    closed.extend(open.into_iter().map(|(c, _)| c));
    closed
}

/// The body of a callback: one envelope alone, several as an array.
fn callback_body(callback: &[Due]) -> crate::error::Result<Vec<u8>> {
    let encode = |e: serde_json::Error| crate::Error::bad_request("encode", e.to_string());
    if let [due] = callback {
        return serde_json::to_vec(&envelope(&due.message)?).map_err(encode);
    }
    let envelopes = callback.iter().map(|d| envelope(&d.message)).collect::<crate::error::Result<Vec<_>>>()?;
    serde_json::to_vec(&envelopes).map_err(encode)
}

async fn deliver(ch: &Clearinghouse, http: &reqwest::Client, callback: &[Due]) -> Outcome {
    let messages: Vec<(i64, i64)> = callback.iter().map(|d| (d.message.id, d.message.attempts + 1)).collect();
    let fail = |error: String| Outcome::Failed { messages: messages.clone(), error };
    let first = &callback[0];
    let Some(url) = &first.callback_url else {
        return fail("no callback URL registered; waiting in the inbox".into());
    };
    if !ch.config.allow_private_callback_addresses
        && let Err(e) = check_literal(url)
    {
        return fail(format!("callback refused: {e}"));
    }
    let body = match callback_body(callback) {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot encode message: {e}")),
    };
    let ts: Millis = ch.now();
    let secret = ch.callback_secret(&first.operator, first.callback_key_version);
    let ids = messages.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>().join(",");
    let result = http
        .post(url)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, sign(&secret, ts, &body))
        .header(MESSAGE_ID_HEADER, ids)
        .body(body)
        .send()
        .await;
    let error = match result {
        Ok(resp) if resp.status().is_success() => {
            return Outcome::Delivered(messages.into_iter().map(|(id, _)| id).collect());
        }
        Ok(resp) => format!("callback answered {}", resp.status()),
        // reqwest's message alone says "error sending request": the cause (refused, TLS) is
        // what the operator needs to see.
        Err(e) => format!("callback failed: {}", error_chain(&e)),
    };
    tracing::warn!(operator = %first.operator, url, error, "callback not delivered; retried with back-off");
    fail(error)
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn record_outcomes(ch: Clearinghouse, mut rx: mpsc::UnboundedReceiver<Outcome>, in_flight: InFlight) {
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
        let mut failed: Vec<(i64, i64, String)> = Vec::new();
        for o in batch.drain(..) {
            match o {
                Outcome::Delivered(ids) => delivered.extend(ids),
                Outcome::Failed { messages, error } => {
                    failed.extend(messages.into_iter().map(|(id, attempts)| (id, attempts, error.clone())))
                }
            }
        }
        let result: Result<(), numport_db::StoreError> = async {
            // Lost in a crash, a delivery is made again, and the receiver drops it by id.
            let mut tx = ch.db.begin_redoable().await?;
            outbox::mark_delivered(&mut tx, &delivered, now).await?;
            for (id, attempts, error) in &failed {
                let shift = (*attempts - 1).clamp(0, 20) as u32;
                let backoff = cfg.base_backoff_ms.saturating_mul(1 << shift).min(cfg.max_backoff_ms);
                outbox::reschedule(&mut tx, *id, *attempts, now + backoff, error).await?;
            }
            tx.commit().await
        }
        .await;
        // Recorded (or not: then they are due again and sent again, at least once).
        {
            let mut in_flight = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            for id in delivered.iter().chain(failed.iter().map(|(id, _, _)| id)) {
                in_flight.remove(id);
            }
        }
        match result {
            Ok(()) => {
                ch.metrics.callbacks_delivered.inc_by(delivered.len() as u64);
                ch.metrics.callbacks_failed.inc_by(failed.len() as u64);
                for (id, _, error) in &failed {
                    tracing::debug!(message = id, error, "callback failed; will retry");
                }
            }
            // The leases run out and the messages are sent again: at least once.
            Err(e) => tracing::warn!(error = %e, "recording callback outcomes failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::outbox::Message;

    fn due(id: i64, operator_id: i64, body_len: usize) -> Due {
        Due {
            message: Message {
                id,
                operator_id,
                kind: "credit_query".into(),
                order_id: Some(id),
                body: "x".repeat(body_len),
                created_at: 0,
                delivered_at: None,
                attempts: 0,
            },
            operator: format!("op{operator_id}"),
            callback_url: None,
            callback_key_version: 1,
        }
    }

    fn ids(callbacks: &[Vec<Due>]) -> Vec<Vec<i64>> {
        let mut v: Vec<Vec<i64>> = callbacks.iter().map(|c| c.iter().map(|d| d.message.id).collect()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_restart_on_the_same_address_is_the_same_deliverer() {
        let here: std::net::SocketAddr = "127.0.0.1:7400".parse().unwrap();
        let there: std::net::SocketAddr = "127.0.0.1:7401".parse().unwrap();
        assert_eq!(deliverer(here), deliverer(here));
        assert_ne!(deliverer(here), deliverer(there));
        assert!(deliverer(here).ends_with(" 127.0.0.1:7400"), "{}", deliverer(here));
    }

    #[test]
    fn callbacks_group_by_operator_in_order_up_to_the_limit() {
        let fetched = vec![due(1, 10, 100), due(2, 20, 100), due(3, 10, 100), due(4, 10, 100), due(5, 20, 100)];
        assert_eq!(ids(&callbacks(fetched.clone(), 2)), vec![vec![1, 3], vec![2, 5], vec![4]]);
        assert_eq!(ids(&callbacks(fetched.clone(), 64)), vec![vec![1, 3, 4], vec![2, 5]]);
        assert_eq!(ids(&callbacks(fetched, 1)), vec![vec![1], vec![2], vec![3], vec![4], vec![5]]);
    }

    #[test]
    fn a_callback_is_closed_at_its_size_limit() {
        let fetched = (1..=4).map(|id| due(id, 10, CALLBACK_BYTES / 2)).collect();
        assert_eq!(ids(&callbacks(fetched, 64)), vec![vec![1, 2], vec![3, 4]]);
        // One message larger than the limit still goes, alone.
        assert_eq!(ids(&callbacks(vec![due(7, 10, CALLBACK_BYTES * 2)], 64)), vec![vec![7]]);
    }
}
