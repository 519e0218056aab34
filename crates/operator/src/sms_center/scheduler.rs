//! What happens with time: messages whose validity period ended expire (with a failed receipt
//! where one is owed), and local messages whose terminal is absent are tried again with
//! back-off (`[smpp] retry_initial_ms`, doubling up to `retry_max_ms`). A terminal that
//! attaches gets its waiting messages at once, whatever their next attempt time.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Change;
use crate::Node;
use crate::store::sms::SmsState;

/// How often the schedule is looked at.
const TICK: Duration = Duration::from_millis(500);
/// Messages taken per look, per kind.
const SCAN: i64 = 1000;

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
