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
//! - a final outcome owes the submitting ESME a delivery receipt if it asked for one, sent as
//!   deliver_sm by [`receipts`].
//!
//! Every change of state goes through the [`committer`], which commits whatever has gathered
//! while the previous commit ran in one transaction (group commit): the database sees one
//! commit per batch, not per message. Delivery is at-least-once across a crash (a message
//! delivered but not yet recorded so is delivered again after restart, and the terminal drops
//! the repeat by its reference); nothing acknowledged is lost.

pub mod committer;
pub mod interconnect;
pub mod receipts;
pub mod scheduler;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use numport_core::{Millis, Msisdn};
use smsc::SubmitHandler;
use smsc::rusmpp::CommandStatus;
use smsc::rusmpp::pdus::SubmitSm;
use tokio::sync::mpsc;

use crate::Node;
use crate::store::sms::{NewSms, SmsState, StoredSms};
pub use committer::Change;

/// Messages an attached terminal's session has not yet taken, at most.
const TERMINAL_QUEUE: usize = 1024;
/// Messages waiting for an interconnect link, at most (more wait in the database).
const PEER_QUEUE: usize = 8192;

/// The SMS center's shared state: where to hand a message once committed.
pub struct SmsCenter {
    commits: mpsc::Sender<committer::Pending>,
    next_id: AtomicI64,
    /// Attached terminals' sessions, by number.
    terminals: Mutex<HashMap<String, (u64, mpsc::Sender<StoredSms>)>>,
    next_session: AtomicU64,
    /// Interconnect links' queues, by serving operator.
    peers: HashMap<String, mpsc::Sender<StoredSms>>,
    receipts: mpsc::Sender<StoredSms>,
    /// The ESMEs' receiving sessions, which receipts go to.
    pub receivers: smsc::Receivers,
    /// Receivers handed to the tasks when the node starts serving.
    pub(crate) tasks: Mutex<Option<Tasks>>,
}

pub(crate) struct Tasks {
    pub commits: mpsc::Receiver<committer::Pending>,
    pub peers: Vec<(String, mpsc::Receiver<StoredSms>)>,
    pub receipts: mpsc::Receiver<StoredSms>,
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
            links.insert(p.clone(), tx);
            link_rx.push((p, rx));
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
        }
    }

    /// Commits `change` and waits until it is durable.
    pub async fn commit(&self, change: Change) -> Result<(), crate::OperatorError> {
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

    /// Registers an attached terminal's session: messages for `msisdn` committed from now on
    /// arrive on the returned receiver. A later attach of the same number replaces it.
    pub fn attach(&self, msisdn: &str) -> (Attachment<'_>, mpsc::Receiver<StoredSms>) {
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
                let _ = tx.try_send(m);
            }
        } else if let Some(tx) = self.peers.get(&m.serving_operator) {
            let _ = tx.try_send(m);
        }
    }

    /// Hands a message that reached its final state to the receipt sender, if it owes one.
    pub(crate) fn settled(&self, m: StoredSms) {
        let _ = self.receipts.try_send(m);
    }
}

/// The [`SubmitHandler`] of an operator node: route, number, commit, then answer.
pub struct SubmitToCenter {
    pub(crate) node: Node,
}

impl SubmitHandler for SubmitToCenter {
    async fn accept(&self, system_id: &str, submit: &SubmitSm) -> Result<String, CommandStatus> {
        let node = &self.node;
        let now = node.now();
        let m = route_submit(node, system_id, submit, now)?;
        let center = node.sms();
        let id = center.next_id.fetch_add(1, Ordering::Relaxed);
        match center.commit(Change::Insert(StoredSms::new(id, m))).await {
            Ok(()) => Ok(id.to_string()),
            Err(e) => {
                tracing::error!(error = %e, "short message not recorded; submit refused");
                Err(CommandStatus::EsmeRsyserr)
            }
        }
    }
}

/// The record of a submit: its destination looked up in the replica, its validity period
/// resolved and bounded.
fn route_submit(node: &Node, system_id: &str, submit: &SubmitSm, now: Millis) -> Result<NewSms, CommandStatus> {
    let destination = submit.destination_addr.as_str().trim_start_matches('+');
    let msisdn: Msisdn = destination.parse().map_err(|_| CommandStatus::EsmeRinvdstadr)?;
    let serving = node.replica().lookup(&msisdn).ok_or(CommandStatus::EsmeRinvdstadr)?;
    let route = if serving.operator == node.name().as_str() { "local" } else { "interconnect" };
    let smpp = &node.config().smpp;
    let latest = now + smpp.max_validity_s as i64 * 1000;
    let expires_at = match smsc::time::parse_smpp_time(submit.validity_period.as_str(), now) {
        Ok(Some(t)) if t <= now => return Err(CommandStatus::EsmeRinvexpiry),
        Ok(Some(t)) => t.min(latest),
        Ok(None) => now + smpp.default_validity_s as i64 * 1000,
        Err(_) => return Err(CommandStatus::EsmeRinvexpiry),
    };
    let payload = short_message_or_payload(submit);
    Ok(NewSms {
        system_id: system_id.to_owned(),
        source_addr: submit.source_addr.as_str().to_owned(),
        source_ton: u8::from(submit.source_addr_ton),
        destination: msisdn.to_string(),
        serving_operator: serving.operator,
        route,
        esm_class: u8::from(submit.esm_class),
        data_coding: u8::from(submit.data_coding),
        registered_delivery: u8::from(submit.registered_delivery),
        payload,
        submitted_at: now,
        expires_at,
        // Delivery starts at once; the scheduler looks again only if it has not ended by then.
        next_attempt_at: now + smpp.retry_initial_ms as i64,
    })
}

/// The message body: short_message, or the message_payload TLV when short_message is empty.
fn short_message_or_payload(submit: &SubmitSm) -> Vec<u8> {
    use smsc::rusmpp::tlvs::TlvValue;
    if !submit.short_message().as_ref().is_empty() {
        return submit.short_message().as_ref().to_vec();
    }
    submit
        .tlvs()
        .iter()
        .find_map(|t| match t.value() {
            Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref().to_vec()),
            _ => None,
        })
        .unwrap_or_default()
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
