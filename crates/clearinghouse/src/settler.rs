//! The settler: F1 step 6 for the accepted orders, many at a time.
//!
//! An accepted order waits in `settling` (its acceptance committed, the recipient answered).
//! The settler takes the orders waiting, in the order they were accepted, and settles them
//! together in one transaction: the compensations posted as one batch (`ledger::post_batch`,
//! which refuses any a recipient can no longer pay), the numbers routed and their changes
//! logged under one block of sequence numbers, the orders completed, their audit entries and
//! the messages to both parties written, one statement per table, in two round trips. Settled
//! one at a time, every order would take statements and a COMMIT of its own, each queued behind
//! the one before on `ledger_head`.
//!
//! Nothing is lost between acceptance and settlement: the queue is the orders table. The
//! settler runs when an acceptance commits, when it starts (orders a crash left waiting), and
//! once a second besides. Settlers, in this process ([`TASKS`]) or in others on the same
//! database, take the change log's head before they read the orders waiting, so each reads
//! what the one before it left.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::store::audit;
use crate::store::ledger::{self, HeldLedger, NewJournal};
use crate::store::orders::{self, OrderRecord};
use crate::store::outbox::{self, NewMessage};
use crate::store::routing::{self, NewChange};
use clearinghouse_api::Message;
use numport_core::porting::{self, ChangeKind, Event, OrderKind, OrderState, Reason};
use numport_core::{JournalEntry, Millis};
use numport_db::{Connection, StoreError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::{Clearinghouse, Counts, OperatorInfo};

/// Settler tasks per process. A batch's first round trip (the locks, the queue, the balances)
/// of the second one overlaps the first one's `COMMIT`.
pub const TASKS: usize = 2;

/// Most orders one batch settles.
pub const BATCH: i64 = 256;

/// How often the settler looks for waiting orders when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The journal kind of a compensation.
const COMPENSATION: &str = "compensation";

/// The audit trail's name for the settler.
const ACTOR: &str = "settler";

pub async fn run(ch: Clearinghouse, shutdown: CancellationToken) {
    let duration = &ch.metrics.settlement_batch_duration;
    let batches = &ch.metrics.settlement_batches;
    loop {
        let started = std::time::Instant::now();
        match ch.settle_once().await {
            Ok(n) if n > 0 => {
                duration.observe(started.elapsed().as_secs_f64());
                batches.inc();
                // More may be waiting.
                if n as i64 >= BATCH {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "settlement batch failed; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ch.settle.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

impl Clearinghouse {
    /// Settle the orders waiting in `settling`, at most [`BATCH`], in one transaction; how
    /// many it settled or refused.
    pub async fn settle_once(&self) -> Result<usize> {
        let ch = self.clone();
        self.db
            .run(async move {
                let mut tx = ch.db.begin().await?;
                let mut counts = Counts::default();
                match ch.settle_batch(&mut tx, &mut counts).await {
                    Ok(0) => {
                        tx.rollback().await?;
                        Ok(0)
                    }
                    Ok(n) => {
                        tx.commit().await?;
                        ch.metrics.add(counts);
                        ch.wake_dispatcher();
                        Ok(n)
                    }
                    Err(e) => {
                        tx.rollback().await?;
                        Err(e)
                    }
                }
            })
            .await
    }

    /// Settle the orders waiting in `settling`, at most [`BATCH`], in the caller's transaction.
    async fn settle_batch(&self, conn: &mut Connection, counts: &mut Counts) -> Result<usize> {
        // Settlers take the change log's head first, and read the orders waiting only then:
        // the one that waited for it sees what the one before settled. The head, the ledger
        // and its balances come with the orders, in one round trip.
        let head = routing::lock_head(conn).await?;
        let held = ledger::hold(conn).await?;
        let waiting = orders::settling(conn, BATCH).await?;
        if waiting.is_empty() {
            return Ok(0);
        }
        // Read only now, and never before an acceptance it settles: a clock read before the
        // wait for the writer (or for `feed_head`), or another process's clock a little
        // behind, would stamp orders completed a few ms before they were accepted in their
        // trail.
        let now = waiting.iter().map(|o| o.updated_at).fold(self.now(), Millis::max);
        let (parties, entries) = self.parties(conn, &waiting).await?;
        let head = head.last_seq(conn).await?;
        let unfunded = post_compensations(conn, held, &entries, now).await?;

        // What each order comes to: settled, or refused for want of funds.
        let (settled, refused): (Vec<_>, Vec<_>) = parties.into_iter().partition(|p| !unfunded.contains(&p.order.id));
        let changes: Vec<NewChange<'_>> = settled.iter().map(|p| p.change(now)).collect();
        routing::record_changes(conn, head, &changes).await?;
        let mut done = Conclusions::with_capacity(waiting.len());
        for (i, p) in settled.iter().enumerate() {
            done.settled(p, head + 1 + i as i64, counts)?;
        }
        for p in &refused {
            done.refused(p, counts)?;
        }
        orders::conclude_settling(conn, &done.outcomes, now).await?;
        outbox::enqueue_many(conn, &done.messages, now).await?;
        audit::append_many(conn, now, ACTOR, &done.trail).await?;
        // All of it was sent without waiting: the COMMIT reports any error in it.
        if !changes.is_empty() {
            let last_seq = head + changes.len() as i64;
            routing::announce(conn, last_seq).await?;
            self.note_feed_seq(last_seq);
        }
        Ok(waiting.len())
    }

    /// Each waiting order's parties, and the compensations to post, in the order the orders
    /// were accepted (each with its order's id).
    async fn parties<'a>(
        &self,
        conn: &mut Connection,
        waiting: &'a [OrderRecord],
    ) -> Result<(Vec<Party<'a>>, Vec<(i64, JournalEntry<i64>)>)> {
        let mut parties = Vec::with_capacity(waiting.len());
        let mut entries = Vec::new();
        for o in waiting {
            let donor_id = o.donor_id.ok_or(Error::NotFound("donor"))?;
            let (recipient, donor) = (self.operator(conn, o.recipient_id).await?, self.operator(conn, donor_id).await?);
            let compensation = o.compensation.unwrap_or_default();
            if compensation.0 > 0 {
                let entry = JournalEntry::transfer(recipient.account_id, donor.account_id, compensation)
                    .map_err(|e| StoreError::Corrupt(format!("order {}'s compensation: {e}", o.id)))?;
                entries.push((o.id, entry));
            }
            parties.push(Party { order: o, recipient, donor_id });
        }
        Ok((parties, entries))
    }
}

/// Posts the compensations `entries` as one batch on the `held` ledger; returns the orders
/// whose recipient can no longer pay.
async fn post_compensations(
    conn: &mut Connection,
    held: HeldLedger,
    entries: &[(i64, JournalEntry<i64>)],
    now: Millis,
) -> Result<HashSet<i64>> {
    let journals: Vec<NewJournal<'_>> = entries
        .iter()
        .map(|(order_id, entry)| NewJournal {
            idempotency_key: format!("order:{order_id}:compensation"),
            kind: COMPENSATION,
            order_id: Some(*order_id),
            entry,
        })
        .collect();
    let posted = ledger::post_batch(conn, held, &journals, now).await?;
    Ok(entries.iter().zip(&posted).filter(|(_, outcome)| outcome.is_err()).map(|((id, _), _)| *id).collect())
}

/// A settling order, its recipient and its donor.
struct Party<'a> {
    order: &'a OrderRecord,
    recipient: Arc<OperatorInfo>,
    donor_id: i64,
}

impl Party<'_> {
    /// The routing change settling the order makes: the number to its recipient.
    fn change(&self, now: Millis) -> NewChange<'_> {
        let o = self.order;
        NewChange {
            msisdn: &o.msisdn,
            operator_id: self.recipient.id,
            routing_number: &self.recipient.routing_number,
            kind: match o.kind {
                OrderKind::Port => ChangeKind::Port,
                OrderKind::PortBack => ChangeKind::PortBack,
            },
            order_id: Some(o.id),
            at: now,
        }
    }
}

/// What a batch writes for its orders besides the ledger and the change log: each order's
/// outcome, its messages to both parties, and its audit entry.
struct Conclusions {
    outcomes: Vec<(i64, OrderState, Option<Reason>)>,
    messages: Vec<NewMessage<'static>>,
    trail: Vec<audit::NewEntry<'static>>,
}

impl Conclusions {
    fn with_capacity(orders: usize) -> Conclusions {
        Conclusions {
            outcomes: Vec::with_capacity(orders),
            messages: Vec::with_capacity(2 * orders),
            trail: Vec::with_capacity(orders),
        }
    }

    /// The order settled with change `seq`: the donor is told its compensation is confirmed,
    /// the recipient that the port completed.
    fn settled(&mut self, p: &Party<'_>, seq: i64, counts: &mut Counts) -> Result<()> {
        let o = p.order;
        let t = transition(o, Event::Settled)?;
        let donor = o.donor.clone().ok_or(Error::NotFound("donor"))?;
        let compensation = o.compensation.unwrap_or_default();
        let confirmed = Message::CompensationConfirmed {
            order_id: o.id,
            msisdn: o.msisdn.clone(),
            recipient: p.recipient.name.clone(),
            compensation,
        };
        let completed = Message::PortCompleted {
            order_id: o.id,
            msisdn: o.msisdn.clone(),
            donor,
            routing_number: p.recipient.routing_number.to_string(),
            seq,
        };
        self.messages.push(message(p.donor_id, &confirmed)?);
        self.messages.push(message(o.recipient_id, &completed)?);
        self.outcomes.push((o.id, t.to, t.reason));
        self.trail.push(left_settling(o, t.to, json!({ "seq": seq, "compensation": compensation })));
        counts.port_completed(compensation);
        Ok(())
    }

    /// The order refused for want of funds: both parties are told it closed.
    fn refused(&mut self, p: &Party<'_>, counts: &mut Counts) -> Result<()> {
        let o = p.order;
        let t = transition(o, Event::SettlementUnfunded)?;
        let reason = t.reason.ok_or(Error::NotFound("reason"))?;
        let closed = Message::OrderClosed { order_id: o.id, msisdn: o.msisdn.clone(), state: t.to, reason };
        self.messages.push(message(o.recipient_id, &closed)?);
        self.messages.push(message(p.donor_id, &closed)?);
        self.outcomes.push((o.id, t.to, t.reason));
        self.trail.push(left_settling(o, t.to, json!({ "reason": reason.as_str(), "compensation": o.compensation })));
        counts.closed(reason);
        Ok(())
    }
}

/// The audit entry of an order leaving `settling` for `to`.
fn left_settling(o: &OrderRecord, to: OrderState, detail: serde_json::Value) -> audit::NewEntry<'static> {
    audit::NewEntry {
        action: "state_changed",
        order_id: o.id,
        from_state: OrderState::Settling.as_str(),
        to_state: to.as_str(),
        detail: detail.to_string(),
    }
}

/// What the state machine makes of a settling order's event.
fn transition(o: &OrderRecord, event: Event) -> Result<porting::Transition> {
    porting::apply(o.state, event).map_err(|e| Error::conflict("invalid_state", e.to_string()))
}

fn message(operator_id: i64, msg: &Message) -> Result<NewMessage<'static>> {
    let body = serde_json::to_string(msg).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(NewMessage { operator_id, kind: msg.kind(), order_id: msg.order_id(), body })
}
