//! F1: the porting order from the terminal verification request to settlement.
//!
//! Every operation runs inside the caller's transaction (opened by the HTTP layer together
//! with the idempotency record), and every state change goes through [`Clearinghouse::apply`]:
//! the pure state machine decides, then the order row (compare-and-set on its state), the audit
//! entry, violations and outgoing messages are written in that same transaction.

use crate::store::ledger;
use crate::store::orders::{self, Deposit, NewOrder, NumberContext, OrderRecord};
use crate::store::{audit, outbox};
use clearinghouse_api::Message;
use clearinghouse_api::model::{
    CancelRequest, CreditInformationRequest, DecisionRequest, DeclineRequest, DepositAccepted, DepositRequest, Order,
    PortingRequest,
};
use numport_core::Millis;
use numport_core::porting::{self, Event, OrderKind, OrderState, Party, Reason, ViolationKind};
use numport_core::proof::{Nonce, Proof};
use numport_db::Connection;
use serde_json::json;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::{Clearinghouse, Counts};

/// Whether an order awaiting its deposit may have a `deposit_requested` reminder in the
/// outbox, to be withdrawn when the order moves on. An order opened with its deposit already
/// there never had one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reminder {
    MayBeQueued,
    NotQueued,
}

/// What one [`Clearinghouse::expire_once`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    pub deposits: u64,
    pub failures: u64,
}

/// The API view of a stored order.
pub fn to_api(o: &OrderRecord) -> Order {
    Order {
        id: o.id,
        msisdn: o.msisdn.clone(),
        kind: o.kind,
        recipient: o.recipient.clone(),
        donor: o.donor.clone(),
        state: o.state,
        reason: o.reason,
        expiry: o.expiry,
        deadline_at: o.deadline_at,
        credit: o.credit,
        compensation: o.compensation,
        created_at: o.created_at,
        updated_at: o.updated_at,
        completed_at: o.completed_at,
    }
}

pub(crate) async fn enqueue(conn: &mut Connection, operator_id: i64, msg: &Message, now: Millis) -> Result<()> {
    enqueue_at(conn, operator_id, msg, now, now).await
}

/// Queue `msg`, calling back no sooner than `send_at`.
async fn enqueue_at(
    conn: &mut Connection,
    operator_id: i64,
    msg: &Message,
    now: Millis,
    send_at: Millis,
) -> Result<()> {
    let body = serde_json::to_string(msg).map_err(|e| Error::Store(numport_db::StoreError::Corrupt(e.to_string())))?;
    outbox::enqueue(conn, operator_id, msg.kind(), msg.order_id(), &body, now, send_at).await?;
    Ok(())
}

/// A request's nonce and proof, checked and in canonical form (lowercase hex).
fn nonce_and_proof(nonce: &str, proof: &str) -> Result<(String, String)> {
    let nonce = Nonce::from_hex(nonce).map_err(|e| Error::invalid("invalid_nonce", e.to_string()))?;
    let proof = Proof::from_hex(proof).map_err(|e| Error::invalid("invalid_proof", e.to_string()))?;
    Ok((nonce.to_hex(), proof.to_hex()))
}

/// Inserts a new order. A concurrent order for the number makes this a duplicate: transient,
/// so the request runs again and then finds that order open. An order that goes on claims its
/// deposit's rendezvous row (`await_deposit`) in the same round trip as its insert. Returns the
/// order's id and the donor's deposit if it came first (`deposited`, as the number's context
/// showed, for an order that does not wait for one).
async fn open_order(
    conn: &mut Connection,
    new: &NewOrder<'_>,
    deposited: Option<Deposit>,
) -> Result<(i64, Option<Deposit>)> {
    let inserted = orders::insert_deferred(conn, new).await?;
    let deposit = match (new.reason, new.donor_id, deposited) {
        (None, Some(donor_id), None) => orders::await_deposit(conn, new.msisdn, new.nonce, donor_id, new.now)
            .await
            .map_err(numport_db::StoreError::from_insert)?,
        (_, _, deposited) => deposited,
    };
    let id = inserted.id(conn).await?;
    Ok((id, deposit))
}

/// A party missed its deadline (`party` of the transition out of `order`'s state): the
/// violation is recorded against it.
async fn record_violation(
    conn: &mut Connection,
    order: &OrderRecord,
    party: Party,
    now: Millis,
    counts: &mut Counts,
) -> Result<()> {
    let operator = match party {
        Party::Donor => order.donor_id,
        Party::Recipient => Some(order.recipient_id),
    };
    if let (Some(op), Some(deadline_at)) = (operator, order.deadline_at) {
        orders::insert_violation(conn, op, ViolationKind::DeadlineMissed, order.id, order.state, deadline_at, now)
            .await?;
        counts.violation();
    }
    Ok(())
}

/// The messages transition `t` of `order` (now `updated`) owes the parties: the credit query
/// to the donor (`donor_id`), the credit information to the recipient, or the order's closing
/// to both.
async fn tell_parties(
    conn: &mut Connection,
    order: &OrderRecord,
    updated: &OrderRecord,
    donor_id: i64,
    t: &porting::Transition,
    now: Millis,
    counts: &mut Counts,
) -> Result<()> {
    match t.to {
        OrderState::AwaitingCreditInfo => {
            let msg = Message::CreditQuery {
                order_id: order.id,
                msisdn: order.msisdn.clone(),
                recipient: order.recipient.clone(),
                deadline_at: updated.deadline_at.unwrap_or(now),
            };
            enqueue(conn, donor_id, &msg, now).await?;
        }
        OrderState::AwaitingDecision => {
            let credit = updated.credit.unwrap_or_default();
            let msg = Message::CreditInformation {
                order_id: order.id,
                msisdn: order.msisdn.clone(),
                donor: updated.donor.clone().ok_or(Error::NotFound("donor"))?,
                credit,
                compensation: credit.compensation(),
                donor_defaulted: t.violation.is_some(),
                deadline_at: updated.deadline_at.unwrap_or(now),
            };
            enqueue(conn, order.recipient_id, &msg, now).await?;
        }
        // The settler takes it from here, once this commits, with the others accepted
        // meanwhile.
        OrderState::Settling => counts.settlement_queued(),
        _ => {
            if let Some(reason) = t.reason {
                let msg =
                    Message::OrderClosed { order_id: order.id, msisdn: order.msisdn.clone(), state: t.to, reason };
                enqueue(conn, order.recipient_id, &msg, now).await?;
                enqueue(conn, donor_id, &msg, now).await?;
                counts.closed(reason);
            }
        }
    }
    Ok(())
}

/// Load an order the caller is party to; others get the same 404 as a missing order, so an
/// operator cannot even learn that someone else's order exists.
pub(crate) async fn order_for(conn: &mut Connection, caller: &Caller, id: i64) -> Result<OrderRecord> {
    orders::get(conn, id).await?.filter(|o| o.involves(caller.operator_id)).ok_or(Error::NotFound("porting order"))
}

impl Clearinghouse {
    /// F1 step 1: the recipient's terminal verification request opens an order. Checks that
    /// fail produce an order already `rejected` with its reason (recorded and audited); only
    /// malformed requests are refused outright.
    pub async fn request_port(
        &self,
        conn: &mut Connection,
        caller: &Caller,
        req: &PortingRequest,
        counts: &mut Counts,
    ) -> Result<Order> {
        let now = self.now();
        let (nonce_hex, proof_hex) = nonce_and_proof(&req.nonce, &req.proof)?;
        let msisdn = &req.msisdn;
        let policy = self.config.verification;
        let ctx = orders::number_context(conn, msisdn, &nonce_hex, caller.operator_id, now - policy.failure_window_ms)
            .await?;
        if ctx.nonce_used {
            return Err(Error::conflict("nonce_reused", "this nonce was already used for this number"));
        }
        let serving = ctx.serving();
        let rejection = self.screen(&ctx, caller, req.expiry, now);
        let kind = if ctx.range_holder == Some(caller.operator_id) { OrderKind::PortBack } else { OrderKind::Port };
        let state = if rejection.is_some() { OrderState::Rejected } else { OrderState::AwaitingDeposit };
        let new = NewOrder {
            msisdn,
            kind,
            recipient_id: caller.operator_id,
            donor_id: serving,
            range_holder_id: ctx.range_holder,
            state,
            reason: rejection,
            nonce: &nonce_hex,
            proof: &proof_hex,
            expiry: req.expiry,
            deadline_at: self.config.deadlines.deadline(state, now),
            now,
        };
        let (id, deposit) = open_order(conn, &new, ctx.deposit).await?;
        audit::append(
            conn,
            now,
            &caller.actor(),
            "order_requested",
            Some(id),
            None,
            Some(state.as_str()),
            &json!({ "msisdn": msisdn, "kind": kind.as_str(), "reason": rejection.map(|r| r.as_str()) }).to_string(),
        )
        .await?;
        counts.order_requested();
        let order = self.record_of(conn, id, &new, caller).await?;
        if rejection == Some(Reason::TooManyAttempts) {
            // Asking again after too many failures is the offence, recorded against the asker.
            orders::insert_violation(conn, caller.operator_id, ViolationKind::TooManyAttempts, id, state, now, now)
                .await?;
            counts.violation();
        }
        if let Some(reason) = rejection {
            counts.closed(reason);
            return Ok(to_api(&order));
        }
        let order = self.meet_deposit(conn, order, deposit, counts).await?;
        Ok(to_api(&order))
    }

    /// The reason to reject a request for the number `ctx` describes, from `caller`, with a
    /// proof valid until `expiry`; `None` if the order may go on. A requester over its failure
    /// limits is refused first, whatever else holds: only it is refused, never the number.
    fn screen(&self, ctx: &NumberContext, caller: &Caller, expiry: Millis, now: Millis) -> Option<Reason> {
        let policy = self.config.verification;
        if ctx.failures_here >= policy.max_failures_per_number || ctx.failures_total >= policy.max_failures_total {
            Some(Reason::TooManyAttempts)
        } else if ctx.range_holder.is_none() {
            Some(Reason::UnknownNumber)
        } else if ctx.serving() == Some(caller.operator_id) {
            Some(Reason::AlreadyServed)
        } else if expiry <= now || expiry > now + policy.max_proof_validity_ms {
            Some(Reason::ProofExpired)
        } else if ctx.open_order {
            Some(Reason::PortInProgress)
        } else if ctx.last_completed_at.is_some_and(|at| now - at < self.config.min_port_interval_ms) {
            Some(Reason::PortedTooRecently)
        } else {
            None
        }
    }

    /// The stored form of the order just inserted as `new` with `id`.
    async fn record_of(
        &self,
        conn: &mut Connection,
        id: i64,
        new: &NewOrder<'_>,
        caller: &Caller,
    ) -> Result<OrderRecord> {
        let donor = match new.donor_id {
            Some(d) => Some(self.operator(conn, d).await?.name.clone()),
            None => None,
        };
        Ok(OrderRecord {
            id,
            msisdn: new.msisdn.clone(),
            kind: new.kind,
            recipient_id: caller.operator_id,
            recipient: caller.name.clone(),
            donor_id: new.donor_id,
            donor,
            range_holder_id: new.range_holder_id,
            state: new.state,
            reason: new.reason,
            nonce: new.nonce.to_owned(),
            proof: new.proof.to_owned(),
            expiry: new.expiry,
            deadline_at: new.deadline_at,
            credit: None,
            compensation: None,
            created_at: new.now,
            updated_at: new.now,
            completed_at: None,
        })
    }

    /// A new order awaiting its deposit: verified at once if the donor's deposit came first,
    /// otherwise the donor gets a reminder, sent if the deposit has not come within the grace
    /// time (the terminal gives the nonce to the donor itself).
    async fn meet_deposit(
        &self,
        conn: &mut Connection,
        order: OrderRecord,
        deposit: Option<Deposit>,
        counts: &mut Counts,
    ) -> Result<OrderRecord> {
        let now = order.updated_at;
        let donor_id = order.donor_id.ok_or(Error::NotFound("donor"))?;
        if let Some(dep) = deposit.filter(|dep| dep.donor_id == donor_id) {
            // The deposit came first: no reminder was queued for it.
            return self
                .verify_against(conn, order, &dep.proof, "clearinghouse", now, Reminder::NotQueued, counts)
                .await;
        }
        let msg = Message::DepositRequested {
            order_id: order.id,
            msisdn: order.msisdn.clone(),
            nonce: order.nonce.clone(),
            recipient: order.recipient.clone(),
            expiry: order.expiry,
            deadline_at: order.deadline_at.unwrap_or(now),
        };
        enqueue_at(conn, donor_id, &msg, now, now + self.config.deposit_reminder_ms).await?;
        Ok(order)
    }

    /// Compare the recipient's proof with the donor's deposit (constant time) and move on.
    #[allow(clippy::too_many_arguments)]
    async fn verify_against(
        &self,
        conn: &mut Connection,
        order: OrderRecord,
        deposited: &str,
        actor: &str,
        now: Millis,
        reminder: Reminder,
        counts: &mut Counts,
    ) -> Result<OrderRecord> {
        let matches = match (Proof::from_hex(&order.proof), Proof::from_hex(deposited)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let event = if matches { Event::DepositMatched } else { Event::DepositMismatched };
        if !matches {
            self.charge_mismatch(conn, &order, now, counts).await?;
        }
        self.apply_with(conn, &order, event, actor, now, reminder, counts).await
    }

    /// A deposit disagreed with `order`'s proof: charge the failure to the party held
    /// responsible. That is the requester (the proof is the terminal's as it presents it: a
    /// wrong PIN or a forged proof comes in there), unless the donor's deposits for the number
    /// already disagreed with another requester within the window: then the donor is the
    /// common factor, is charged and recorded as a violator, and the requester is not.
    async fn charge_mismatch(
        &self,
        conn: &mut Connection,
        order: &OrderRecord,
        now: Millis,
        counts: &mut Counts,
    ) -> Result<()> {
        let donor = order.donor_id.ok_or(Error::NotFound("donor"))?;
        let since = now - self.config.verification.failure_window_ms;
        let donor_at_fault =
            orders::disagreed_with_another(conn, &order.msisdn, donor, order.recipient_id, since).await?;
        let charged = if donor_at_fault { donor } else { order.recipient_id };
        orders::record_failure(conn, &order.msisdn, order.recipient_id, donor, charged, now).await?;
        if donor_at_fault {
            orders::insert_violation(conn, donor, ViolationKind::DepositMismatch, order.id, order.state, now, now)
                .await?;
            counts.violation();
        }
        Ok(())
    }

    /// F1 step 2: the donor deposits the proof it computed for the terminal's nonce.
    pub async fn deposit(
        &self,
        conn: &mut Connection,
        caller: &Caller,
        req: &DepositRequest,
        counts: &mut Counts,
    ) -> Result<DepositAccepted> {
        let now = self.now();
        let (nonce_hex, proof_hex) = nonce_and_proof(&req.nonce, &req.proof)?;
        let msisdn = &req.msisdn;

        let ctx = orders::number_context(conn, msisdn, &nonce_hex, caller.operator_id, now).await?;
        if ctx.serving() != Some(caller.operator_id) {
            return Err(Error::Forbidden("only the operator serving the number may deposit its proof".into()));
        }
        let new_deposit = match &ctx.deposit {
            Some(existing) if existing.proof == proof_hex => None,
            Some(_) => {
                return Err(Error::conflict("deposit_exists", "a different proof is already deposited for this nonce"));
            }
            None => Some(orders::insert_deposit(conn, msisdn, &nonce_hex, caller.operator_id, &proof_hex, now).await?),
        };
        // Once the rendezvous row is written (or waited on), an order for this nonce has
        // committed, or will find this deposit itself. The write's answer comes with this read's.
        let waiting = orders::awaiting_deposit(conn, msisdn, &nonce_hex).await?;
        let new_deposit = match new_deposit {
            Some(write) => write.written(conn).await?,
            None => false,
        };
        if !new_deposit
            && let Some(existing) = orders::deposit(conn, msisdn, &nonce_hex).await?
            && existing.proof != proof_hex
        {
            // Another proof was deposited concurrently.
            return Err(Error::conflict("deposit_exists", "a different proof is already deposited for this nonce"));
        }
        if new_deposit {
            let detail = json!({ "msisdn": msisdn, "nonce": nonce_hex }).to_string();
            audit::append(
                conn,
                now,
                &caller.actor(),
                "proof_deposited",
                waiting.as_ref().map(|o| o.id),
                None,
                None,
                &detail,
            )
            .await?;
        }
        let order_id = match waiting {
            Some(order) => {
                let id = order.id;
                let verified = self
                    .verify_against(conn, order, &proof_hex, &caller.actor(), now, Reminder::MayBeQueued, counts)
                    .await;
                match verified {
                    // A repeat of this deposit matched it first. (On PostgreSQL a lost
                    // compare-and-set shows only at COMMIT: this request then answers 409.)
                    Ok(_) | Err(Error::Conflict { code: "invalid_state", .. }) => Some(id),
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        Ok(DepositAccepted { order_id })
    }

    /// The donor declines an order awaiting its deposit, with its reason: the order is rejected
    /// with that reason and nobody is charged. Only a donor that stays silent past the
    /// deadline is charged.
    pub async fn decline(
        &self,
        conn: &mut Connection,
        caller: &Caller,
        order_id: i64,
        req: &DeclineRequest,
        counts: &mut Counts,
    ) -> Result<Order> {
        let now = self.now();
        let order = order_for(conn, caller, order_id).await?;
        if order.donor_id != Some(caller.operator_id) {
            return Err(Error::Forbidden("only the donor declines an order awaiting its deposit".into()));
        }
        let event = Event::Declined(req.reason);
        Ok(to_api(&self.apply(conn, &order, event, &caller.actor(), now, counts).await?))
    }

    /// F1 step 4: the donor's credit information, forwarded to the recipient.
    pub async fn credit_information(
        &self,
        conn: &mut Connection,
        caller: &Caller,
        order_id: i64,
        req: &CreditInformationRequest,
        counts: &mut Counts,
    ) -> Result<Order> {
        let now = self.now();
        req.credit.validate().map_err(|e| Error::invalid("invalid_credit_information", e.to_string()))?;
        let order = order_for(conn, caller, order_id).await?;
        if order.donor_id != Some(caller.operator_id) {
            return Err(Error::Forbidden("only the donor answers the credit query".into()));
        }
        let order =
            self.apply(conn, &order, Event::CreditInformation(req.credit), &caller.actor(), now, counts).await?;
        Ok(to_api(&order))
    }

    /// F1 step 5: the recipient accepts (and pays) or refuses. An accepted order is `settling`:
    /// the settler (step 6) moves the money, routes the number and logs the change with the
    /// others waiting, in one transaction, and tells both parties.
    pub async fn decide(
        &self,
        conn: &mut Connection,
        caller: &Caller,
        order_id: i64,
        req: &DecisionRequest,
        counts: &mut Counts,
    ) -> Result<Order> {
        let now = self.now();
        // Whether the caller could pay is read with the order: one round trip for both.
        let account = ledger::operator_account_deferred(conn, caller.operator_id).await?;
        let order = order_for(conn, caller, order_id).await?;
        if order.recipient_id != caller.operator_id {
            return Err(Error::Forbidden("only the recipient decides".into()));
        }
        if order.state != OrderState::AwaitingDecision {
            return Err(Error::conflict("invalid_state", format!("order is {}, not awaiting_decision", order.state)));
        }
        if !req.accept {
            return Ok(to_api(&self.apply(conn, &order, Event::Refused, &caller.actor(), now, counts).await?));
        }
        let compensation = order.compensation.unwrap_or_default();
        if req.compensation != Some(compensation) {
            return Err(Error::invalid(
                "compensation_mismatch",
                format!(
                    "the credit information implies a compensation of {compensation} (minor units {})",
                    compensation.0
                ),
            ));
        }
        // Whether the recipient can pay was read with the order; the settler checks again when
        // the money moves, since the recipient's other settlements may go first.
        let funded = compensation.0 <= 0 || account.get(conn).await?.1.0 >= compensation.0;
        let event = if funded { Event::Accepted } else { Event::AcceptedWithoutFunds };
        Ok(to_api(&self.apply(conn, &order, event, &caller.actor(), now, counts).await?))
    }

    /// Withdrawal before settlement, by the recipient on its own or the subscriber's behalf.
    /// The donor cannot cancel: it is the party that might want to obstruct.
    pub async fn cancel(
        &self,
        conn: &mut Connection,
        caller: &Caller,
        order_id: i64,
        req: &CancelRequest,
        counts: &mut Counts,
    ) -> Result<Order> {
        let now = self.now();
        let order = order_for(conn, caller, order_id).await?;
        if order.recipient_id != caller.operator_id {
            return Err(Error::Forbidden("only the recipient (for itself or the subscriber) cancels an order".into()));
        }
        let event = Event::Cancelled { by_subscriber: req.by_subscriber };
        Ok(to_api(&self.apply(conn, &order, event, &caller.actor(), now, counts).await?))
    }

    /// Apply one event to an order and write everything that follows from it.
    pub(crate) async fn apply(
        &self,
        conn: &mut Connection,
        order: &OrderRecord,
        event: Event,
        actor: &str,
        now: Millis,
        counts: &mut Counts,
    ) -> Result<OrderRecord> {
        self.apply_with(conn, order, event, actor, now, Reminder::MayBeQueued, counts).await
    }

    /// [`Clearinghouse::apply`], told whether a deposit reminder may be waiting to be withdrawn.
    #[allow(clippy::too_many_arguments)]
    async fn apply_with(
        &self,
        conn: &mut Connection,
        order: &OrderRecord,
        event: Event,
        actor: &str,
        now: Millis,
        reminder: Reminder,
        counts: &mut Counts,
    ) -> Result<OrderRecord> {
        let t = porting::apply(order.state, event).map_err(|e| Error::conflict("invalid_state", e.to_string()))?;
        let deadline = self.config.deadlines.deadline(t.to, now);
        let detail = json!({
            "reason": t.reason.map(|r| r.as_str()),
            "violation": t.violation,
            "credit": t.credit,
        })
        .to_string();
        // Lost to another writer: `invalid_state` (on PostgreSQL from a later statement or the COMMIT).
        orders::transition(
            conn,
            order.id,
            order.state,
            t.to,
            t.reason,
            deadline,
            t.credit.as_ref(),
            now,
            actor,
            &detail,
        )
        .await?;
        if let Some(party) = t.violation {
            record_violation(conn, order, party, now, counts).await?;
        }
        let updated = OrderRecord {
            state: t.to,
            reason: t.reason,
            deadline_at: deadline,
            credit: t.credit.or(order.credit),
            compensation: t.credit.map(|c| c.compensation()).or(order.compensation),
            updated_at: now,
            completed_at: if t.to == OrderState::Completed { Some(now) } else { order.completed_at },
            ..order.clone()
        };
        let donor_id = updated.donor_id.ok_or(Error::NotFound("donor"))?;
        if order.state == OrderState::AwaitingDeposit && reminder == Reminder::MayBeQueued {
            outbox::withdraw(conn, order.id, "deposit_requested", now).await?;
        }
        tell_parties(conn, order, &updated, donor_id, &t, now, counts).await?;
        Ok(updated)
    }

    /// Delete what nobody will use: deposits past `deposit_retention_ms` that no order awaits,
    /// and failed verifications older than the failure window. Up to `limit` of each.
    pub async fn expire_once(&self, limit: i64) -> Result<Expired> {
        let now = self.now();
        let policy = self.config.verification;
        let mut tx = self.db.begin().await?;
        let deposits = orders::expire_deposits(&mut tx, now - policy.deposit_retention_ms, limit).await?;
        let failures = orders::expire_failures(&mut tx, now - policy.failure_window_ms, limit).await?;
        tx.commit().await?;
        Ok(Expired { deposits, failures })
    }

    /// One pass of the supervisor: apply the timeout rule to every order past its deadline.
    /// Each order is its own transaction, so one failure does not hold up the rest.
    pub async fn supervise_once(&self) -> Result<usize> {
        let now = self.now();
        let overdue = {
            let mut conn = self.db.read().await?;
            orders::overdue(&mut conn, now, 500).await?
        };
        let mut n = 0;
        for order in overdue {
            let mut tx = self.db.begin().await?;
            let mut counts = Counts::default();
            let applied = match self.apply(&mut tx, &order, Event::DeadlinePassed, "supervisor", now, &mut counts).await
            {
                Ok(_) => tx.commit().await.map_err(Error::from).map(|()| self.metrics.add(counts)),
                Err(e) => {
                    tx.rollback().await?;
                    Err(e)
                }
            };
            match applied {
                Ok(()) => n += 1,
                // Someone answered in the meantime: nothing to do.
                Err(Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if n > 0 {
            self.wake_dispatcher();
        }
        Ok(n)
    }
}
