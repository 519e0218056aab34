//! Group commit: one task owns every write to `sms_messages`. While one transaction commits,
//! new changes gather; the next transaction takes all of them. A submit waits for the commit
//! that holds its message, so its submit_sm_resp still means "durable", and thousands of
//! submits a second cost a few hundred commits.

use std::collections::{HashMap, HashSet};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::sms::{Replacement, SmsBatch, SmsState, StoredSms};
use crate::{Node, OperatorError};

/// Changes waiting for the committer, at most; a full queue makes submitters wait.
pub(crate) const QUEUE: usize = 16_384;
/// Changes in one transaction, at most.
const BATCH: usize = 2048;

/// A change to the SMS center's records.
#[derive(Debug)]
pub enum Change {
    /// A newly accepted message; once committed it is dispatched for delivery.
    Insert(StoredSms),
    /// The message reached a final state; once committed its receipt, if owed, is sent.
    Final(StoredSms, SmsState),
    /// The next SMS center accepted the message under this id.
    Forwarded(i64, String),
    ReceiptSent(i64),
    /// The terminal was absent; try again at this time.
    Retry(i64, numport_core::Millis),
    /// ESME `system_id` cancels message `id` (cancel_sm), if still queued.
    Cancel(i64, String),
    /// An ESME replaces a message of its own (replace_sm), if still queued.
    Replace(Replacement),
}

pub(crate) struct Pending {
    pub change: Change,
    pub done: Option<oneshot::Sender<Result<Committed, OperatorError>>>,
}

/// How a change was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Done,
    /// The insert repeats the message with this id (a forwarded message sent again), which
    /// stands in its place; nothing new was stored.
    RepeatOf(i64),
    /// A cancel or replacement found no queued message of that ESME: nothing changed.
    Unchanged,
}

/// Commits changes until `stop`; then commits what is already queued and returns.
pub(crate) async fn run(node: Node, mut queue: mpsc::Receiver<Pending>, stop: CancellationToken) {
    let mut pending = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            biased;
            n = queue.recv_many(&mut pending, BATCH) => if n == 0 { return },
            _ = stop.cancelled() => {
                queue.close();
                while queue.recv_many(&mut pending, BATCH).await > 0 {
                    commit(&node, &mut pending).await;
                }
                return;
            }
        }
        commit(&node, &mut pending).await;
    }
}

async fn commit(node: &Node, pending: &mut Vec<Pending>) {
    let mut batch = SmsBatch::default();
    for p in pending.iter() {
        match &p.change {
            Change::Insert(m) => batch.inserts.push(m.clone()),
            Change::Final(m, state) => batch.finals.push((m.id, *state)),
            Change::Forwarded(id, remote) => batch.forwarded.push((*id, remote.clone())),
            Change::ReceiptSent(id) => batch.receipts_sent.push(*id),
            Change::Retry(id, at) => batch.retries.push((*id, *at)),
            Change::Cancel(id, system_id) => batch.cancels.push((*id, system_id.clone())),
            Change::Replace(r) => batch.replacements.push(r.clone()),
        }
    }
    let now = node.now();
    let started = std::time::Instant::now();
    let result = node.store().apply_sms_batch(batch, now).await;
    node.inner.metrics.sms_commit(pending.len(), started.elapsed());
    if let Err(e) = &result {
        tracing::error!(error = %e, changes = pending.len(), "SMS center commit failed");
    }
    let center = node.sms();
    let (repeats, amended, stale): (HashMap<i64, i64>, HashSet<i64>, HashSet<i64>) = match &result {
        Ok(applied) => (
            applied.repeats.iter().copied().collect(),
            applied.amended.iter().copied().collect(),
            // A final outcome for a message final already (a peer's late receipt for one that
            // expired here) changed nothing and owes no second receipt.
            applied.stale_finals.iter().copied().collect(),
        ),
        Err(_) => Default::default(),
    };
    for p in pending.drain(..) {
        let (repeat_of, unchanged) = match &p.change {
            Change::Insert(m) => (repeats.get(&m.id).copied(), false),
            Change::Cancel(id, _) => (None, !amended.contains(id)),
            Change::Replace(r) => (None, !amended.contains(&r.id)),
            _ => (None, false),
        };
        if let Some(done) = p.done {
            let outcome = match (&result, repeat_of) {
                (Ok(_), Some(id)) => Ok(Committed::RepeatOf(id)),
                (Ok(_), None) if unchanged => Ok(Committed::Unchanged),
                (Ok(_), None) => Ok(Committed::Done),
                (Err(e), _) => Err(OperatorError::Config(e.to_string())),
            };
            let _ = done.send(outcome);
        }
        let stale_final = matches!(&p.change, Change::Final(m, _) if stale.contains(&m.id));
        if result.is_err() || repeat_of.is_some() || unchanged || stale_final {
            continue;
        }
        if let Change::Final(m, state) = &p.change {
            node.inner.metrics.sms_final(&m.route, state.as_str());
        }
        match p.change {
            // A message scheduled for later waits for the scheduler or the interconnect's rescan.
            Change::Insert(m) if m.scheduled_at > now => {}
            Change::Insert(m) => center.dispatch(m),
            Change::Cancel(id, _) => center.amended(id, None),
            Change::Replace(r) => center.amended(r.id, Some(r)),
            Change::Final(m, state) if m.receipt_wanted(state) => {
                center.settled(StoredSms { state, done_at: Some(now), receipt: "owed".into(), ..m })
            }
            _ => {}
        }
    }
}
