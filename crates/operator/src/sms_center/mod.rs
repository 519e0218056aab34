//! The node's SMS center (F3): store-and-forward between ESMEs, terminals and other operators.
//!
//! An ESME's submit_sm is routed by the node's portability replica, numbered, and committed to
//! `sms_messages` before submit_sm_resp; the bank-SMS problem of F1 is decided at this first
//! hop. Then, from memory and without reading the database back:
//!
//! - a number this operator serves goes to its terminal's air session if attached
//!   ([`crate::air`]); otherwise the [`scheduler`] tries again with back-off until the
//!   validity period ends;
//! - a number another operator serves goes to that operator's SMS center over an SMPP
//!   [`interconnect`], whose delivery receipt settles it;
//! - a final outcome owes the submitter a delivery receipt if it asked for one, sent by
//!   [`receipts`]: to an ESME as deliver_sm, to a terminal as an SMS-STATUS-REPORT.
//!
//! Terminals submit too: an SMS-SUBMIT over the air ([`crate::air`]) becomes a [`Submission`]
//! like an ESME's submit_sm, and both go through [`accept`] (route by the replica, number,
//! commit). The message records its terminal in `system_id` as
//! [`terminal_submitter`](crate::store::sms::terminal_submitter)'s marker, so its receipt can
//! find the way back.
//!
//! **Status reports.** An attached terminal's session takes everything bound for that terminal
//! from one queue ([`ToTerminal`]): messages to deliver, and the receipts owed for messages it
//! submitted. The receipts task hands a receipt to the session with
//! [`SmsCenter::report_to_terminal`] and waits, as it waits for an ESME's deliver_sm_resp, for
//! the terminal's acknowledgement of the SMS-STATUS-REPORT before committing the receipt as
//! sent. A receipt for a terminal that is not attached stays owed in the database, and the
//! receipts task's rescan hands it over once the terminal attaches again.
//!
//! **What an ESME may ask about its messages.** query_sm reads a message's state and final
//! date from the store; cancel_sm (a queued message becomes `deleted`, owing no receipt) and
//! replace_sm (new body, validity, schedule, registered_delivery) go through the committer
//! and apply only to a message of that ESME still queued, neither delivered nor handed on.
//! A copy already handed to a terminal's session or a link's queue is checked against
//! [`SmsCenter::current`] just before it is sent. Another ESME's message id is answered as
//! unknown, like an id that never existed. A message scheduled for later
//! (schedule_delivery_time) is stored with its time and not handed over before it: not at its
//! commit, not at its terminal's attach, not by the interconnect.
//!
//! **Authentication.** Every SMS-DELIVER sent over the air carries a counter and a MAC under
//! the key the center shares with the SIM ([`authentication`]), so the handset tells the
//! network's SMS from a pseudo base station's.
//!
//! Every change of state goes through the [`committer`], which commits whatever has gathered
//! while the previous commit ran in one transaction (group commit): the database sees one
//! commit per batch, not per message. Delivery is at-least-once across a crash (a message
//! delivered but not yet recorded so is delivered again after restart, and the terminal drops
//! the repeat by its reference); nothing acknowledged is lost.

pub mod authentication;
pub mod committer;
pub mod interconnect;
pub mod long_message;
pub mod receipts;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use numport_core::{Millis, Msisdn};
use smsc::rusmpp::CommandStatus;
use smsc::rusmpp::pdus::{CancelSm, QuerySm, ReplaceSm, SubmitSm};
use smsc::rusmpp::values::MessageState;
use smsc::{DefaultAlphabet, MessageStatus, SubmitHandler};
use tokio::sync::{mpsc, oneshot};

use crate::Node;
use crate::store::sms::{NewSms, Replacement, SmsState, StoredSms};
pub use committer::{Change, Committed};

/// Messages an attached terminal's session has not yet taken, at most.
const TERMINAL_QUEUE: usize = 1024;
/// Messages waiting for an interconnect link, at most (more wait in the database).
const PEER_QUEUE: usize = 8192;
/// Messages one cancel_sm without a message_id cancels, at most (a second one takes the rest).
const CANCEL_AT_ONCE: i64 = 1000;
/// How long a cancel or replacement is remembered for copies of its message already in a
/// session's or link's queue (those are sent within seconds, or dropped and read again).
const AMENDMENT_MEMORY: Duration = Duration::from_secs(600);

/// The SMS center's shared state: where to hand a message once committed.
pub struct SmsCenter {
    commits: mpsc::Sender<committer::Pending>,
    next_id: AtomicI64,
    /// Attached terminals' sessions, by number.
    terminals: Mutex<HashMap<String, (u64, mpsc::Sender<ToTerminal>)>>,
    next_session: AtomicU64,
    /// Interconnect links' queues, by serving operator, with their overflow flags.
    peers: HashMap<String, (mpsc::Sender<StoredSms>, Arc<AtomicBool>)>,
    receipts: mpsc::Sender<StoredSms>,
    /// The ESMEs' receiving sessions, which receipts go to.
    pub receivers: smsc::Receivers,
    /// Receivers handed to the tasks when the node starts serving.
    pub(crate) tasks: Mutex<Option<Tasks>>,
    /// Messages cancelled (`None`) or replaced since, by id, with when.
    amendments: Mutex<HashMap<i64, (Instant, Option<Replacement>)>>,
}

pub(crate) struct Tasks {
    pub commits: mpsc::Receiver<committer::Pending>,
    pub peers: Vec<(String, LinkQueue)>,
    pub receipts: mpsc::Receiver<StoredSms>,
}

/// An interconnect link's queue of committed messages to forward. What does not fit waits in
/// the database; `overflowed` tells the link to look there as soon as it has room, rather
/// than at its next rescan (at 25,000 forwards a second the queue fills in a fraction of a
/// second, and a rescan a second took the rest at ~1,000 a second).
pub(crate) struct LinkQueue {
    pub messages: mpsc::Receiver<StoredSms>,
    pub overflowed: Arc<AtomicBool>,
}

/// What an attached terminal's session is handed to send.
#[derive(Debug)]
pub enum ToTerminal {
    /// A committed message for the terminal's number: an SMS-DELIVER.
    Message(StoredSms),
    /// A message the terminal submitted reached a final state and owes it a receipt: an
    /// SMS-STATUS-REPORT. The session answers on the sender whether the terminal acknowledged
    /// it (dropping it means no).
    StatusReport(StoredSms, oneshot::Sender<bool>),
}

/// An attached terminal's place in [`SmsCenter`]; leaving drops it.
pub struct Attachment<'a> {
    center: &'a SmsCenter,
    msisdn: String,
    session: u64,
}

impl Drop for Attachment<'_> {
    fn drop(&mut self) {
        let mut terminals = self.center.terminals.lock().unwrap_or_else(|e| e.into_inner());
        if terminals.get(&self.msisdn).is_some_and(|(s, _)| *s == self.session) {
            terminals.remove(&self.msisdn);
        }
    }
}

impl SmsCenter {
    /// `last_id` is the highest message id in the database; `peers` the operators with an
    /// interconnect.
    pub fn new(last_id: i64, peers: impl IntoIterator<Item = String>) -> SmsCenter {
        let (commits, commits_rx) = mpsc::channel(committer::QUEUE);
        let (receipts, receipts_rx) = mpsc::channel(PEER_QUEUE);
        let mut links = HashMap::new();
        let mut link_rx = Vec::new();
        for p in peers {
            let (tx, rx) = mpsc::channel(PEER_QUEUE);
            let overflowed = Arc::new(AtomicBool::new(false));
            links.insert(p.clone(), (tx, overflowed.clone()));
            link_rx.push((p, LinkQueue { messages: rx, overflowed }));
        }
        SmsCenter {
            commits,
            next_id: AtomicI64::new(last_id + 1),
            terminals: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            peers: links,
            receipts,
            receivers: smsc::Receivers::new(),
            tasks: Mutex::new(Some(Tasks { commits: commits_rx, peers: link_rx, receipts: receipts_rx })),
            amendments: Mutex::new(HashMap::new()),
        }
    }

    /// Commits `change` and waits until it is durable.
    pub async fn commit(&self, change: Change) -> Result<Committed, crate::OperatorError> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.commits
            .send(committer::Pending { change, done: Some(done) })
            .await
            .map_err(|_| crate::OperatorError::Config("the SMS center is stopping".into()))?;
        committed.await.map_err(|_| crate::OperatorError::Config("the SMS center is stopping".into()))?
    }

    /// Commits `change` with the next batch, without waiting. If the node stops before, the
    /// change is redone after restart (a delivery repeated, a receipt sent again).
    pub async fn commit_soon(&self, change: Change) {
        let _ = self.commits.send(committer::Pending { change, done: None }).await;
    }

    /// Registers an attached terminal's session: messages for `msisdn` committed from now on,
    /// and status reports for messages it submitted, arrive on the returned receiver. A later
    /// attach of the same number replaces it.
    pub fn attach(&self, msisdn: &str) -> (Attachment<'_>, mpsc::Receiver<ToTerminal>) {
        let (tx, rx) = mpsc::channel(TERMINAL_QUEUE);
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.terminals.lock().unwrap_or_else(|e| e.into_inner()).insert(msisdn.to_owned(), (session, tx));
        (Attachment { center: self, msisdn: msisdn.to_owned(), session }, rx)
    }

    pub fn is_attached(&self, msisdn: &str) -> bool {
        self.terminals.lock().unwrap_or_else(|e| e.into_inner()).contains_key(msisdn)
    }

    /// Hands a committed message to whoever delivers it. A full queue drops it here: it stays
    /// queued in the database, where the session or link finds it on its next scan.
    pub(crate) fn dispatch(&self, m: StoredSms) {
        if m.route == "local" {
            let terminals = self.terminals.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, tx)) = terminals.get(&m.destination) {
                let _ = tx.try_send(ToTerminal::Message(m));
            }
        } else if let Some((tx, overflowed)) = self.peers.get(&m.serving_operator)
            && tx.try_send(m).is_err()
        {
            overflowed.store(true, Ordering::Release);
        }
    }

    /// Records a committed cancel (`None`) or replacement of message `id`, for the copies of
    /// it already in a queue.
    pub(crate) fn amended(&self, id: i64, replacement: Option<Replacement>) {
        let mut amendments = self.amendments.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        amendments.retain(|_, (at, _)| now.duration_since(*at) < AMENDMENT_MEMORY);
        amendments.insert(id, (now, replacement));
    }

    /// `m` as it stands now, for a session or link about to send a copy it was handed: `None`
    /// if it was cancelled meanwhile, its new content if it was replaced.
    pub fn current(&self, m: StoredSms) -> Option<StoredSms> {
        let amendments = self.amendments.lock().unwrap_or_else(|e| e.into_inner());
        match amendments.get(&m.id) {
            None => Some(m),
            Some((_, None)) => None,
            Some((_, Some(r))) => Some(r.apply_to(m)),
        }
    }

    /// Hands a message that reached its final state to the receipt sender, if it owes one.
    pub(crate) fn settled(&self, m: StoredSms) {
        let _ = self.receipts.try_send(m);
    }

    /// Hands the receipt of `m`, a final message terminal `msisdn` submitted, to that
    /// terminal's session as an SMS-STATUS-REPORT; true once the terminal acknowledged it
    /// within `timeout`. False at once if the terminal is not attached or its queue is full:
    /// the receipt stays owed.
    pub(crate) async fn report_to_terminal(&self, msisdn: &str, m: StoredSms, timeout: Duration) -> bool {
        let session = self.terminals.lock().unwrap_or_else(|e| e.into_inner()).get(msisdn).map(|(_, tx)| tx.clone());
        let Some(session) = session else { return false };
        let (done, acknowledged) = oneshot::channel();
        if session.try_send(ToTerminal::StatusReport(m, done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, acknowledged).await, Ok(Ok(true)))
    }
}

/// The [`SubmitHandler`] of an operator node: route, number, commit, then answer.
pub struct SubmitToCenter {
    pub(crate) node: Node,
    /// Each ESME's meaning of data_coding 0, by system_id; GSM for those not listed.
    pub(crate) alphabets: HashMap<String, DefaultAlphabet>,
}

impl SubmitHandler for SubmitToCenter {
    async fn accept(&self, system_id: &str, submit: &SubmitSm) -> Result<String, CommandStatus> {
        let now = self.node.now();
        let validity = match qos_time_to_live(submit) {
            Some(secs) => Some(now + i64::from(secs) * 1000),
            None => smsc::time::parse_smpp_time(submit.validity_period.as_str(), now)
                .map_err(|_| CommandStatus::EsmeRinvexpiry)?,
        };
        let schedule = smsc::time::parse_smpp_time(submit.schedule_delivery_time.as_str(), now)
            .map_err(|_| CommandStatus::EsmeRinvsched)?;
        let alphabet = self.alphabets.get(system_id).copied().unwrap_or_default();
        let body = short_message_or_payload(submit.short_message().as_ref(), submit.tlvs());
        let (esm_class, body) = long_message::with_sar_header(submit, u8::from(submit.esm_class), body)?;
        let (data_coding, payload) =
            stored_coding(alphabet, esm_class, u8::from(submit.data_coding), body).map_err(|e| {
                tracing::debug!(system_id, error = %e, "submit_sm refused: data_coding 0 with octets above 0x7F");
                CommandStatus::EsmeRinvdcs
            })?;
        let submission = Submission {
            system_id: system_id.to_owned(),
            source_addr: submit.source_addr.as_str().to_owned(),
            source_ton: u8::from(submit.source_addr_ton),
            destination: submit.destination_addr.as_str().to_owned(),
            esm_class,
            protocol_id: submit.protocol_id,
            data_coding,
            registered_delivery: u8::from(submit.registered_delivery),
            payload,
            validity,
            schedule,
            origin_ref: origin_ref(submit),
        };
        match accept(&self.node, submission, now).await {
            Ok(id) => Ok(id.to_string()),
            Err(Refusal::Destination | Refusal::NotServedHere) => Err(CommandStatus::EsmeRinvdstadr),
            Err(Refusal::Expiry) => Err(CommandStatus::EsmeRinvexpiry),
            Err(Refusal::MessageLength) => Err(CommandStatus::EsmeRinvmsglen),
            Err(Refusal::Schedule) => Err(CommandStatus::EsmeRinvsched),
            Err(Refusal::NotRecorded) => Err(CommandStatus::EsmeRsyserr),
        }
    }

    async fn query(&self, system_id: &str, query: &QuerySm) -> Result<MessageStatus, CommandStatus> {
        let m = self.own_message(system_id, query.message_id.as_str(), query.source_addr.as_str()).await?;
        let final_date = if m.state.is_final() { m.done_at } else { None };
        Ok(MessageStatus { state: message_state(m.state), final_date, error_code: 0 })
    }

    async fn cancel(&self, system_id: &str, cancel: &CancelSm) -> Result<(), CommandStatus> {
        let (source, destination) = (cancel.source_addr.as_str(), cancel.destination_addr.as_str());
        let destination = destination.trim_start_matches('+');
        if cancel.message_id.as_str().is_empty() {
            return self.cancel_all(system_id, source, destination).await;
        }
        let m = self.own_message(system_id, cancel.message_id.as_str(), source).await?;
        if !destination.is_empty() && destination != m.destination {
            return Err(CommandStatus::EsmeRinvmsgid);
        }
        self.amend(Change::Cancel(m.id, system_id.to_owned()), CommandStatus::EsmeRcancelfail).await
    }

    async fn replace(&self, system_id: &str, replace: &ReplaceSm) -> Result<(), CommandStatus> {
        let now = self.node.now();
        let m = self.own_message(system_id, replace.message_id.as_str(), replace.source_addr.as_str()).await?;
        let refused = CommandStatus::EsmeRreplacefail;
        if m.state != SmsState::Queued {
            return Err(refused);
        }
        let expires_at = smsc::time::parse_smpp_time(replace.validity_period.as_str(), now)
            .map_err(|_| CommandStatus::EsmeRinvexpiry)?;
        let scheduled_at = smsc::time::parse_smpp_time(replace.schedule_delivery_time.as_str(), now)
            .map_err(|_| CommandStatus::EsmeRinvsched)?;
        let smpp = &self.node.config().smpp;
        let latest = now + smpp.max_validity_s as i64 * 1000;
        let expires_at = match expires_at {
            Some(t) if t <= now => return Err(CommandStatus::EsmeRinvexpiry),
            t => t.map(|t| t.min(latest)),
        };
        if scheduled_at.is_some_and(|s| s >= expires_at.unwrap_or(m.expires_at)) {
            return Err(CommandStatus::EsmeRinvsched);
        }
        let alphabet = self.alphabets.get(system_id).copied().unwrap_or_default();
        let body = short_message_or_payload(replace.short_message().as_ref(), replace.message_payload_tlv());
        // The message keeps the coding its ESME chose: GSM text is checked (or a Latin-1 ESME's
        // text turned into it) as at submit.
        let submitted_coding =
            if m.data_coding == 8 && alphabet == DefaultAlphabet::Latin1 { 0 } else { m.data_coding };
        let (data_coding, payload) =
            stored_coding(alphabet, m.esm_class, submitted_coding, body).map_err(|_| CommandStatus::EsmeRinvdcs)?;
        let r = Replacement {
            id: m.id,
            system_id: system_id.to_owned(),
            data_coding,
            payload,
            registered_delivery: u8::from(replace.registered_delivery),
            expires_at,
            scheduled_at: scheduled_at.map(|s| s.max(now)),
        };
        self.amend(Change::Replace(r), refused).await
    }
}

impl SubmitToCenter {
    /// The message of ESME `system_id` that `message_id` names (and, if given, whose
    /// source_addr is `source_addr`). Another ESME's message is answered like one that never
    /// existed: ESME_RINVMSGID; a store that cannot be read, ESME_RQUERYFAIL.
    async fn own_message(
        &self,
        system_id: &str,
        message_id: &str,
        source_addr: &str,
    ) -> Result<StoredSms, CommandStatus> {
        let id: i64 = message_id.parse().map_err(|_| CommandStatus::EsmeRinvmsgid)?;
        let m = self.node.store().sms_of(system_id, id).await.map_err(|e| {
            tracing::warn!(error = %e, "short message lookup");
            CommandStatus::EsmeRqueryfail
        })?;
        m.filter(|m| source_addr.is_empty() || m.source_addr == source_addr).ok_or(CommandStatus::EsmeRinvmsgid)
    }

    /// cancel_sm without a message_id (SMPP 3.4 §4.9): every queued message of the ESME from
    /// `source` to `destination` (both required), in one commit; ESME_RCANCELFAIL if there
    /// was none.
    async fn cancel_all(&self, system_id: &str, source: &str, destination: &str) -> Result<(), CommandStatus> {
        if source.is_empty() || destination.is_empty() {
            return Err(CommandStatus::EsmeRinvmsgid);
        }
        let queued = self.node.store().queued_from(system_id, source, destination, CANCEL_AT_ONCE).await;
        let queued = queued.map_err(|e| {
            tracing::warn!(error = %e, "short message lookup");
            CommandStatus::EsmeRcancelfail
        })?;
        let cancels = queued
            .iter()
            .map(|m| self.amend(Change::Cancel(m.id, system_id.to_owned()), CommandStatus::EsmeRcancelfail));
        let outcomes = futures::future::join_all(cancels).await;
        match outcomes.iter().any(Result::is_ok) {
            true => Ok(()),
            false => Err(CommandStatus::EsmeRcancelfail),
        }
    }

    /// Commits a cancel or replacement; `refused` if the message was no longer queued.
    async fn amend(&self, change: Change, refused: CommandStatus) -> Result<(), CommandStatus> {
        match self.node.sms().commit(change).await {
            Ok(Committed::Done) => Ok(()),
            Ok(_) => Err(refused),
            Err(e) => {
                tracing::error!(error = %e, "cancel or replacement not recorded");
                Err(CommandStatus::EsmeRsyserr)
            }
        }
    }
}

/// The message_state query_sm_resp reports for `state` (SMPP 5.0 §4.7.15): a message not
/// yet final is en route, here or at the serving operator.
fn message_state(state: SmsState) -> MessageState {
    match state {
        SmsState::Queued | SmsState::Forwarded => MessageState::Enroute,
        SmsState::Delivered => MessageState::Delivered,
        SmsState::Expired => MessageState::Expired,
        SmsState::Undeliverable => MessageState::Undeliverable,
        SmsState::Deleted => MessageState::Deleted,
    }
}

/// A short message as its submitter handed it in, before routing: an ESME's submit_sm
/// ([`SubmitToCenter`]) or a terminal's SMS-SUBMIT ([`crate::air`]), in SMPP's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The ESME, or a terminal's marker ([`crate::store::sms::terminal_submitter`]).
    pub system_id: String,
    pub source_addr: String,
    pub source_ton: u8,
    /// The number as submitted: E.164 digits, perhaps after a `+`.
    pub destination: String,
    /// SMPP esm_class: 0x40 when the payload opens with a user data header.
    pub esm_class: u8,
    /// SMPP protocol_id, the TP-PID the message is delivered with: 0x7F for SIM data download.
    pub protocol_id: u8,
    /// SMPP data_coding: 0 text in the GSM 7-bit alphabet (one septet an octet, the extension
    /// table after 0x1B), 8 UCS-2, 4 binary.
    pub data_coding: u8,
    /// SMPP registered_delivery: bits 0-1 ask for a receipt.
    pub registered_delivery: u8,
    pub payload: Vec<u8>,
    /// The end of the validity period asked for; `None`: the default.
    pub validity: Option<Millis>,
    /// Not to be delivered before this time (SMPP schedule_delivery_time); `None`: at once.
    pub schedule: Option<Millis>,
    /// The submitting SMS center's id for it (interconnect), which makes a repeat harmless.
    pub origin_ref: Option<String>,
}

/// Why a submission is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a number, or one the replica does not know.
    Destination,
    /// The validity period asked for has already ended.
    Expiry,
    /// The body cannot be carried ([`long_message`]).
    MessageLength,
    /// A message another SMS center forwarded here for a number this operator does not serve:
    /// it is not forwarded again, so no routing loop between SMS centers can form.
    NotServedHere,
    /// The delivery time asked for is beyond the validity period or the longest one allowed.
    Schedule,
    /// The commit failed.
    NotRecorded,
}

/// Routes `s` by the node's replica, numbers it and commits it; the message id once durable.
/// The one way in for ESMEs' and terminals' submits alike.
///
/// A local message of `n` SMS takes `n` ids, its own the last: the ones below it are the air
/// references of its parts ([`crate::air`]), and the highest id in the database stays above
/// every reference in use, also after a restart.
pub async fn accept(node: &Node, s: Submission, now: Millis) -> Result<i64, Refusal> {
    let m = route(node, s, now)?;
    let parts = long_message::check(&m, node.config().smpp.max_pdu)?;
    let ids = if m.route == "local" { parts as i64 } else { 1 };
    let center = node.sms();
    let id = center.next_id.fetch_add(ids, Ordering::Relaxed) + ids - 1;
    match center.commit(Change::Insert(StoredSms::new(id, m))).await {
        Ok(Committed::Done) => Ok(id),
        // A repeat of a message already here: that message's id, nothing new stored.
        Ok(Committed::RepeatOf(existing)) => Ok(existing),
        // Only a cancel or replacement is ever unchanged; an insert that claimed to be would
        // not be recorded.
        Ok(Committed::Unchanged) => Err(Refusal::NotRecorded),
        Err(e) => {
            tracing::error!(error = %e, "short message not recorded; submit refused");
            Err(Refusal::NotRecorded)
        }
    }
}

/// The record of a submission: its destination looked up in the replica, its validity period
/// resolved and bounded.
fn route(node: &Node, s: Submission, now: Millis) -> Result<NewSms, Refusal> {
    let msisdn: Msisdn = s.destination.trim_start_matches('+').parse().map_err(|_| Refusal::Destination)?;
    let serving = node.replica().lookup(&msisdn).ok_or(Refusal::Destination)?;
    let route = if serving.operator == node.name().as_str() {
        "local"
    } else if s.origin_ref.is_some() || node.config().smpp.interconnect_accounts.contains(&s.system_id) {
        tracing::info!(from = s.system_id, destination = %msisdn, serving = %serving.operator,
            "interconnect message for a number served elsewhere; refused, not forwarded again");
        return Err(Refusal::NotServedHere);
    } else {
        "interconnect"
    };
    let smpp = &node.config().smpp;
    let latest = now + smpp.max_validity_s as i64 * 1000;
    // A time already past means at once; the default validity counts from the delivery time.
    let scheduled_at = s.schedule.filter(|&t| t > now);
    let starts = scheduled_at.unwrap_or(now);
    let expires_at = match s.validity {
        Some(t) if t <= now => return Err(Refusal::Expiry),
        Some(t) => t.min(latest),
        None => (starts + smpp.default_validity_s as i64 * 1000).min(latest),
    };
    if starts >= expires_at {
        return Err(Refusal::Schedule);
    }
    Ok(NewSms {
        system_id: s.system_id,
        source_addr: s.source_addr,
        source_ton: s.source_ton,
        destination: msisdn.to_string(),
        serving_operator: serving.operator,
        route,
        esm_class: s.esm_class,
        protocol_id: s.protocol_id,
        data_coding: s.data_coding,
        registered_delivery: s.registered_delivery,
        payload: s.payload,
        submitted_at: now,
        expires_at,
        // Delivery starts at once (or at the scheduled time, when the scheduler hands it over);
        // the scheduler looks again only if it has not ended by then.
        next_attempt_at: scheduled_at.unwrap_or(now + smpp.retry_initial_ms as i64),
        origin_ref: s.origin_ref,
        scheduled_at: scheduled_at.unwrap_or(0),
    })
}

/// Vendor-specific TLV in which an SMS center passes its own message id on an interconnect.
pub const TLV_ORIGIN_REF: u16 = 0x1401;

/// The submitting SMS center's message id, if the submit carries one.
fn origin_ref(submit: &SubmitSm) -> Option<String> {
    use smsc::rusmpp::tlvs::{TlvTag, TlvValue};
    submit.tlvs().iter().find_map(|t| match t.value() {
        Some(TlvValue::Other { tag: TlvTag::Other(TLV_ORIGIN_REF), value }) => {
            std::str::from_utf8(value.as_ref()).ok().filter(|s| !s.is_empty() && s.len() <= 64).map(str::to_owned)
        }
        _ => None,
    })
}

/// The data_coding and payload stored for an ESME's submit: data_coding 0 is kept as GSM
/// septets, which the interconnect and the air carry as they are. A Latin-1 ESME's text
/// becomes septets where the alphabet has every character, else UCS-2 (data_coding 8). A user
/// data header (esm_class 0x40) stays in front unchanged.
fn stored_coding(
    alphabet: DefaultAlphabet,
    esm_class: u8,
    data_coding: u8,
    payload: Vec<u8>,
) -> Result<(u8, Vec<u8>), sms::gsm7::NotASeptet> {
    if data_coding != 0 {
        return Ok((data_coding, payload));
    }
    let header_len =
        if esm_class & 0x40 != 0 { payload.first().map_or(0, |&l| (1 + l as usize).min(payload.len())) } else { 0 };
    let (header, body) = payload.split_at(header_len);
    match alphabet {
        DefaultAlphabet::Gsm => {
            sms::gsm7::check_unpacked(body)
                .map_err(|e| sms::gsm7::NotASeptet { offset: e.offset + header_len, ..e })?;
            Ok((0, payload))
        }
        DefaultAlphabet::Latin1 => Ok(match sms::gsm7::from_latin1(body) {
            Ok(septets) => (0, [header, &septets].concat()),
            Err(_) => {
                let ucs2 = body.iter().flat_map(|&b| u16::from(b).to_be_bytes());
                (8, header.iter().copied().chain(ucs2).collect())
            }
        }),
    }
}

/// The message body: short_message, or the message_payload TLV when short_message is empty
/// (the server refuses a request that carries both).
fn short_message_or_payload<'a>(
    short_message: &[u8],
    tlvs: impl IntoIterator<Item = &'a smsc::rusmpp::tlvs::Tlv>,
) -> Vec<u8> {
    use smsc::rusmpp::tlvs::TlvValue;
    if !short_message.is_empty() {
        return short_message.to_vec();
    }
    tlvs.into_iter()
        .find_map(|t| match t.value() {
            Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref().to_vec()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The qos_time_to_live TLV (seconds; SMPP 5.0: it supersedes validity_period), data_sm's
/// only way to give a validity.
fn qos_time_to_live(submit: &SubmitSm) -> Option<u32> {
    use smsc::rusmpp::tlvs::TlvValue;
    submit.tlvs().iter().find_map(|t| match t.value() {
        Some(TlvValue::QosTimeToLive(secs)) => Some(*secs),
        _ => None,
    })
}

/// The final state an interconnect receipt reports, if final.
pub(crate) fn state_of_receipt(state: smsc::receipt::ReceiptState) -> Option<SmsState> {
    use smsc::receipt::ReceiptState as R;
    match state {
        R::Delivered => Some(SmsState::Delivered),
        R::Expired => Some(SmsState::Expired),
        R::Deleted | R::Undeliverable | R::Rejected | R::Unknown => Some(SmsState::Undeliverable),
        R::Accepted | R::Enroute => None,
    }
}
