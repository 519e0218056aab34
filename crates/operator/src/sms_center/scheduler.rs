//! What happens with time: messages whose validity period ended expire (with a failed receipt
//! where one is owed), and local messages whose terminal is absent are tried again with
//! back-off (`[smpp] retry_initial_ms`, doubling up to `retry_max_ms`). A terminal that
//! attaches gets its waiting messages at once, whatever their next attempt time.
//!
//! A message forwarded to another SMS center expires here too if no receipt settles it: the
//! peer holds the same end of validity (it is forwarded as an absolute time), so its own
//! verdict normally comes first; [`FORWARDED_GRACE`] after that end, a peer that never
//! answers can no longer keep the message, and its submitter's receipt, waiting.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Change;
use crate::Node;
use crate::store::sms::SmsState;

/// How often the schedule is looked at.
const TICK: Duration = Duration::from_millis(500);
/// Messages taken per look, per kind.
const SCAN: i64 = 1000;
/// How long past its validity a forwarded message waits for the peer's receipt: the peer
/// expires it at the same instant, and its receipt (or a delivery at the last moment) needs
/// time to come back.
pub const FORWARDED_GRACE: Duration = Duration::from_secs(10);

pub(crate) async fn run(node: Node, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        if let Err(e) = tick(&node).await {
            tracing::warn!(error = %e, "SMS schedule");
        }
    }
}

async fn tick(node: &Node) -> Result<(), crate::OperatorError> {
    let center = node.sms();
    let now = node.now();
    for m in node.store().expired_by(now, SCAN).await? {
        tracing::info!(id = m.id, destination = %m.destination, "short message expired");
        center.commit_soon(Change::Final(m, SmsState::Expired)).await;
    }
    let forwarded_by = now - FORWARDED_GRACE.as_millis() as i64;
    for m in node.store().forwarded_expired_by(forwarded_by, SCAN).await? {
        tracing::info!(id = m.id, peer = %m.serving_operator, "forwarded message expired without the peer's receipt");
        center.commit_soon(Change::Final(m, SmsState::Expired)).await;
    }
    for m in node.store().due_local(now, SCAN).await? {
        if center.is_attached(&m.destination) {
            // The session drops what it already has in hand.
            center.dispatch(m);
        } else {
            let next = now + node.config().smpp.retry_after(m.attempts) as i64;
            tracing::debug!(id = m.id, attempts = m.attempts + 1, next, "terminal absent; retrying later");
            center.commit_soon(Change::Retry(m.id, next)).await;
        }
    }
    Ok(())
}
