//! What each clearinghouse message makes the node do.
//!
//! Processing is idempotent, because a message may be processed more than once (a crash
//! before `processed_at` was written, a re-processor pass racing a slow first attempt):
//! clearinghouse calls carry the key `<node>-msg-<message id>`, so the clearinghouse answers a
//! repeat with its stored answer; changes to subscriber accounts are written in one
//! transaction with the message's event, which is unique per message.
//!
//! Outcomes: done; *declined* (asked to deposit for a number with no active subscriber here,
//! the node declines the order with the reason, so that it ends at once and no deadline
//! passes); *moved on* (the clearinghouse answered 409: the order is past this step, e.g. a
//! deadline rule closed it, so there is nothing left to do); *given up* (the request can never
//! succeed: a 400/403/404/422 answer). All four mark the message processed. Anything else (clearinghouse unreachable, 5xx, 401, database error) is retried
//! with back-off.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use clearinghouse_api::model::{ApiError, CreditInformationRequest, DecisionRequest, DeclineRequest, DepositRequest};
use clearinghouse_api::{ClientError, Envelope, Message};
use numport_core::porting::{CreditInfo, DeclineReason, Reason};
use numport_core::proof::Nonce;
use numport_core::{Millis, Msisdn, OperatorName};
use serde_json::json;
use tracing::Instrument;

use crate::store::{Effect, EventKind, NewPortEvent, SubscriberStatus};
use crate::{Node, OperatorError};

/// Longest pause between retries of a failing message.
const MAX_RETRY_DELAY_MS: Millis = 60_000;

/// How handling a message ended, when it is not to be retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Asked to deposit, the node declined the order with this reason code.
    Declined(String),
    /// The clearinghouse said the order is past this step (409).
    MovedOn(String),
    /// The message cannot be acted on; retrying would not help.
    GivenUp(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Declined(_) => "declined",
            Outcome::MovedOn(_) => "moved_on",
            Outcome::GivenUp(_) => "given_up",
        }
    }

    pub(crate) fn note(&self) -> Option<&str> {
        match self {
            Outcome::Done => None,
            Outcome::Declined(s) | Outcome::MovedOn(s) | Outcome::GivenUp(s) => Some(s),
        }
    }
}

/// How handling a message ended, and what to record with marking it processed.
pub(crate) struct Handled {
    pub outcome: Outcome,
    pub effect: Effect,
}

impl From<Outcome> for Handled {
    fn from(outcome: Outcome) -> Handled {
        Handled { outcome, effect: Effect::Nothing }
    }
}

/// A clearinghouse answer, sorted by what the node does next.
enum Answer<T> {
    Ok(T),
    Final(Outcome),
}

/// The fields of a `deposit_requested` message.
struct DepositRequested<'a> {
    order_id: i64,
    msisdn: &'a Msisdn,
    nonce: &'a str,
    recipient: &'a OperatorName,
    expiry: Millis,
}

/// A message id in the in-flight set, removed when processing ends, however it ends.
struct InflightGuard<'a> {
    set: &'a Mutex<HashSet<i64>>,
    id: i64,
}

impl<'a> InflightGuard<'a> {
    /// `None` when another task holds `id`. The guard is made only once the id is taken and
    /// the set's lock released: a guard dropped under that lock would lock it again (a
    /// deadlock of the worker) and take the other task's id out of the set.
    fn take(set: &'a Mutex<HashSet<i64>>, id: i64) -> Option<InflightGuard<'a>> {
        let taken = set.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        if taken { Some(InflightGuard { set, id }) } else { None }
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// The retry delay after `attempts` failed attempts: doubling from `base`, at most a minute.
pub(crate) fn retry_delay(base: Millis, attempts: i64) -> Millis {
    let shift = attempts.clamp(0, 16) as u32;
    base.max(1).saturating_mul(1 << shift).min(MAX_RETRY_DELAY_MS)
}

impl Node {
    /// Process a recorded message in the background (tracked, so shutdown can drain it).
    pub(crate) fn spawn_processing(&self, envelope: Envelope) {
        let node = self.clone();
        self.inner.tasks.spawn(async move {
            node.process_recorded(envelope).await;
        });
    }

    /// Process a message just recorded in `received_messages`, and write down how it went.
    /// Returns true when the message is now processed; false when it failed (and is scheduled
    /// for retry) or another task is processing it.
    pub(crate) async fn process_recorded(&self, envelope: Envelope) -> bool {
        let Some(_guard) = InflightGuard::take(&self.inner.inflight, envelope.id) else {
            return false;
        };
        self.process_and_record(&envelope, 0).await
    }

    /// Process a recorded message again (the re-processor), unless another task finished it
    /// since the re-processor read it.
    pub(crate) async fn process_again(&self, envelope: Envelope) -> Result<bool, OperatorError> {
        let Some(_guard) = InflightGuard::take(&self.inner.inflight, envelope.id) else {
            return Ok(false);
        };
        let row = self.inner.store.received_message(envelope.id).await?;
        let Some(row) = row.filter(|r| r.processed_at.is_none()) else {
            return Ok(false);
        };
        Ok(self.process_and_record(&envelope, row.attempts).await)
    }

    /// Handle the message and record the outcome; `attempts` is how many attempts failed
    /// before. Call with the message's in-flight guard held.
    async fn process_and_record(&self, envelope: &Envelope, attempts: i64) -> bool {
        let span = tracing::info_span!(
            "message",
            node = %self.name(),
            id = envelope.id,
            kind = envelope.message.kind(),
            order_id = envelope.message.order_id()
        );
        self.process_and_record_inner(envelope, attempts).instrument(span).await
    }

    async fn process_and_record_inner(&self, envelope: &Envelope, attempts: i64) -> bool {
        let kind = envelope.message.kind();
        let started = Instant::now();
        let store = &self.inner.store;
        match self.handle(envelope).await {
            Ok(Handled { outcome, effect }) => {
                let new = match store.finish_message(envelope.id, self.now(), outcome.note(), &effect).await {
                    Ok(new) => new,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not mark message processed; it will be processed again");
                        return false;
                    }
                };
                self.finished(kind, &Handled { outcome, effect }, new, started);
                true
            }
            Err(e) => {
                let delay = retry_delay(self.inner.config.reprocess_after_ms, attempts);
                tracing::warn!(error = %e, retry_in_ms = delay, "message processing failed; will retry");
                self.inner.metrics.processing_failed(kind);
                let next = self.now().saturating_add(delay);
                if let Err(e) = store.mark_failed(envelope.id, &e.to_string(), next).await {
                    tracing::warn!(error = %e, "could not record the failure");
                }
                false
            }
        }
    }

    /// Log and count a message whose handling was recorded; `new` when its event was (so a
    /// redelivered message is not logged as news twice).
    pub(crate) fn finished(&self, kind: &str, handled: &Handled, new: bool, started: Instant) {
        match &handled.effect {
            Effect::PortOut(e) if new => {
                tracing::info!(order_id = e.order_id, msisdn = %e.msisdn, recipient = ?e.counterpart, detail = %e.detail, "ported out");
            }
            Effect::PortIn(e) if new => {
                tracing::info!(order_id = e.order_id, msisdn = %e.msisdn, donor = ?e.counterpart, "ported in");
            }
            Effect::Event(e) if new && e.kind == EventKind::OrderClosed => {
                tracing::info!(order_id = e.order_id, msisdn = %e.msisdn, detail = %e.detail, "porting order closed without a port");
            }
            Effect::Event(e) if new && e.kind == EventKind::NumberReturned => {
                tracing::info!(msisdn = %e.msisdn, from = ?e.counterpart, "ported number returned to this range holder");
            }
            _ => {}
        }
        if let Effect::PortIn(e) | Effect::PortOut(e) = &handled.effect {
            self.provision_port(e.kind, &e.msisdn, e.message_id);
        }
        let label = handled.outcome.label();
        self.inner.metrics.processed(kind, label, started.elapsed().as_secs_f64());
        tracing::debug!(outcome = label, "message processed");
    }

    /// Handle one message. `Err` means "retry later".
    pub(crate) async fn handle(&self, envelope: &Envelope) -> Result<Handled, OperatorError> {
        let idem = format!("{}-msg-{}", self.name(), envelope.id);
        let message_id = Some(envelope.id);
        match &envelope.message {
            Message::DepositRequested { order_id, msisdn, nonce, recipient, expiry, .. } => {
                let request = DepositRequested { order_id: *order_id, msisdn, nonce, recipient, expiry: *expiry };
                self.deposit_requested(envelope.id, request, &idem).await
            }
            Message::CreditQuery { order_id, msisdn, recipient, .. } => {
                let credit = self.credit_of(msisdn).await?;
                let req = CreditInformationRequest { credit };
                let answer = self
                    .clearinghouse("credit_information", self.inner.client.credit_information(*order_id, &req, &idem))
                    .await?;
                if let Answer::Final(outcome) = answer {
                    return Ok(outcome.into());
                }
                Ok(self.event(
                    message_id,
                    EventKind::CreditAnswered,
                    Some(*order_id),
                    msisdn,
                    Some(recipient),
                    json!({ "credit": credit }),
                ))
            }
            Message::CreditInformation { order_id, msisdn, donor, credit, compensation, donor_defaulted, .. } => {
                let accept = self.inner.config.policy.accepts(*compensation);
                let req = DecisionRequest { accept, compensation: accept.then_some(*compensation) };
                let answer = self.clearinghouse("decision", self.inner.client.decide(*order_id, &req, &idem)).await?;
                if let Answer::Final(outcome) = answer {
                    return Ok(outcome.into());
                }
                tracing::info!(order_id, %msisdn, accept, %compensation, "decided as recipient");
                let detail = json!({
                    "compensation": compensation,
                    "max_compensation": self.inner.config.policy.max_compensation,
                    "credit": credit,
                    "donor_defaulted": donor_defaulted,
                });
                let kind = if accept { EventKind::Accepted } else { EventKind::Refused };
                Ok(self.event(message_id, kind, Some(*order_id), msisdn, Some(donor), detail))
            }
            // The rest need only the node's own database.
            _ => Ok(self
                .handle_locally(envelope)
                .unwrap_or_else(|| Outcome::GivenUp(format!("no handling for {}", envelope.message.kind())).into())),
        }
    }

    /// Handle a message that needs no call to the clearinghouse (the node is told of an end:
    /// settled, routed, closed, returned), so that it can be finished in the transaction that
    /// records it; `None` for the others.
    pub(crate) fn handle_locally(&self, envelope: &Envelope) -> Option<Handled> {
        let message_id = Some(envelope.id);
        let handled = match &envelope.message {
            Message::CompensationConfirmed { order_id, msisdn, recipient, compensation } => {
                let e = NewPortEvent {
                    message_id,
                    kind: EventKind::PortOut,
                    order_id: Some(*order_id),
                    msisdn: msisdn.clone(),
                    counterpart: Some(recipient.clone()),
                    detail: json!({ "compensation": compensation }),
                    at: self.now(),
                };
                Handled { outcome: Outcome::Done, effect: Effect::PortOut(e) }
            }
            Message::PortCompleted { order_id, msisdn, donor, routing_number, seq } => {
                let e = NewPortEvent {
                    message_id,
                    kind: EventKind::PortIn,
                    order_id: Some(*order_id),
                    msisdn: msisdn.clone(),
                    counterpart: Some(donor.clone()),
                    detail: json!({ "routing_number": routing_number, "seq": seq }),
                    at: self.now(),
                };
                Handled { outcome: Outcome::Done, effect: Effect::PortIn(e) }
            }
            Message::OrderClosed { order_id, msisdn, state, reason } => self.event(
                message_id,
                EventKind::OrderClosed,
                Some(*order_id),
                msisdn,
                None,
                json!({ "state": state, "reason": reason }),
            ),
            Message::NumberReturned { msisdn, from, seq } => {
                self.event(message_id, EventKind::NumberReturned, None, msisdn, Some(from), json!({ "seq": seq }))
            }
            Message::DepositRequested { .. } | Message::CreditQuery { .. } | Message::CreditInformation { .. } => {
                return None;
            }
        };
        Some(handled)
    }

    /// Donor, F1 step 2: deposit the proof the terminal's nonce implies.
    async fn deposit_requested(
        &self,
        message_id: i64,
        request: DepositRequested<'_>,
        idem: &str,
    ) -> Result<Handled, OperatorError> {
        let DepositRequested { order_id, msisdn, nonce, recipient, expiry } = request;
        let key = match self.inner.store.subscriber(msisdn).await? {
            Some(s) if s.status == SubscriberStatus::Active => s.port_key.ok_or(DeclineReason::NoPortKey),
            // Ported out as far as this node knows.
            Some(_) => Err(DeclineReason::NumberNotActive),
            None => Err(DeclineReason::UnknownSubscriber),
        };
        let key = match key {
            Ok(key) => key,
            Err(why) => return self.decline(order_id, msisdn, why, idem).await,
        };
        let nonce = match Nonce::from_hex(nonce) {
            Ok(n) => n,
            Err(e) => return Ok(Outcome::GivenUp(format!("nonce: {e}")).into()),
        };
        let proof = key.prove(&nonce, msisdn, recipient, expiry);
        let req = DepositRequest { msisdn: msisdn.clone(), nonce: nonce.to_hex(), proof: proof.to_hex() };
        let accepted = match self.clearinghouse("deposit", self.inner.client.deposit(&req, idem)).await? {
            Answer::Ok(a) => a,
            Answer::Final(outcome) => return Ok(outcome.into()),
        };
        tracing::info!(order_id, %msisdn, %recipient, "proof deposited");
        Ok(self.event(
            Some(message_id),
            EventKind::Deposit,
            Some(order_id),
            msisdn,
            Some(recipient),
            json!({ "matched_order": accepted.order_id, "expiry": expiry }),
        ))
    }

    /// Donor, F1 step 2: no proof can be deposited for this number, so decline the order with
    /// the reason: it ends at once, and the node is not charged as it would be for silence.
    async fn decline(
        &self,
        order_id: i64,
        msisdn: &Msisdn,
        why: DeclineReason,
        idem: &str,
    ) -> Result<Handled, OperatorError> {
        let req = DeclineRequest { reason: why };
        match self.clearinghouse("decline", self.inner.client.decline(order_id, &req, idem)).await? {
            Answer::Ok(_) => {
                let code = Reason::from(why).as_str();
                tracing::info!(order_id, %msisdn, reason = code, "declined: no proof can be deposited here");
                Ok(Outcome::Declined(code.to_owned()).into())
            }
            Answer::Final(outcome) => Ok(outcome.into()),
        }
    }

    /// Donor, F1 step 4: the subscriber's figures, or zeros for a number not served here.
    pub(crate) async fn credit_of(&self, msisdn: &Msisdn) -> Result<CreditInfo, OperatorError> {
        Ok(match self.inner.store.subscriber(msisdn).await? {
            Some(s) if s.status == SubscriberStatus::Active => s.credit_info(),
            _ => {
                tracing::warn!(%msisdn, "credit query for a number that is not an active subscriber; answering zeros");
                CreditInfo::default()
            }
        })
    }

    /// Call the clearinghouse and sort the answer: 409 means the order moved on, 400/403/404/422
    /// mean the request can never succeed (403: e.g. the number is no longer served here); anything else failing is an error to retry.
    async fn clearinghouse<T>(
        &self,
        call: &str,
        fut: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<Answer<T>, OperatorError> {
        match fut.await {
            Ok(v) => Ok(Answer::Ok(v)),
            Err(ClientError::Api { status, error }) if status.as_u16() == 409 => {
                if error.error == "invalid_state" {
                    tracing::debug!(call, message = %error.message, "order already moved on");
                } else {
                    // E.g. insufficient_funds: final for this message, but worth a look.
                    tracing::warn!(call, code = %error.error, message = %error.message, "clearinghouse answered conflict");
                }
                Ok(Answer::Final(Outcome::MovedOn(describe(&error))))
            }
            Err(ClientError::Api { status, error }) if matches!(status.as_u16(), 400 | 403 | 404 | 422) => {
                self.inner.metrics.clearinghouse_failure(call);
                if status.as_u16() == 403 {
                    // Usually a late message: the number has already moved to another operator.
                    tracing::info!(call, message = %error.message, "clearinghouse did not permit the request");
                } else {
                    tracing::warn!(call, %status, code = %error.error, message = %error.message, "clearinghouse refused the request");
                }
                Ok(Answer::Final(Outcome::GivenUp(describe(&error))))
            }
            Err(e) => {
                self.inner.metrics.clearinghouse_failure(call);
                Err(e.into())
            }
        }
    }

    /// Done, recording an event (with marking the message processed).
    fn event(
        &self,
        message_id: Option<i64>,
        kind: EventKind,
        order_id: Option<i64>,
        msisdn: &Msisdn,
        counterpart: Option<&OperatorName>,
        detail: serde_json::Value,
    ) -> Handled {
        Handled {
            outcome: Outcome::Done,
            effect: Effect::Event(NewPortEvent {
                message_id,
                kind,
                order_id,
                msisdn: msisdn.clone(),
                counterpart: counterpart.cloned(),
                detail,
                at: self.now(),
            }),
        }
    }
}

fn describe(e: &ApiError) -> String {
    format!("{}: {}", e.error, e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        assert_eq!(retry_delay(2000, 0), 2000);
        assert_eq!(retry_delay(2000, 1), 4000);
        assert_eq!(retry_delay(2000, 3), 16000);
        assert_eq!(retry_delay(2000, 10), MAX_RETRY_DELAY_MS);
        assert_eq!(retry_delay(2000, i64::MAX), MAX_RETRY_DELAY_MS);
        assert_eq!(retry_delay(0, 0), 1);
    }

    /// A message already in flight is refused to a second task, whose refusal leaves the first
    /// task's id in place, and the id is free again once the first is done. Run on a thread of
    /// its own, so that a deadlock fails the test instead of hanging it.
    #[test]
    fn a_message_in_flight_is_refused_without_deadlock_or_losing_its_id() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let set = Mutex::new(HashSet::new());
            let first = InflightGuard::take(&set, 7).expect("free");
            assert!(InflightGuard::take(&set, 7).is_none(), "taken twice");
            assert!(set.lock().unwrap().contains(&7), "the refusal took the holder's id out");
            assert!(InflightGuard::take(&set, 8).is_some());
            drop(first);
            assert!(InflightGuard::take(&set, 7).is_some(), "free again");
            done.send(()).unwrap();
        });
        finished.recv_timeout(std::time::Duration::from_secs(5)).expect("InflightGuard::take deadlocked or failed");
    }
}
