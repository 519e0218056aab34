//! The air interface (simulated radio link, `sms::air` frames over TCP): terminals attach with
//! their IMSI by answering a challenge over their SIM key, then receive the short messages
//! queued for their number as SMS-DELIVER TPDUs, each acknowledged before it counts as
//! delivered. A message whose delivery is not acknowledged stays queued and is sent again at
//! the next attach (at-least-once; the terminal drops repeats by reference).
//!
//! An attached terminal also sends: an SMS-SUBMIT (`Submit` frame) is routed by the node's
//! replica and committed exactly as an ESME's submit_sm is ([`crate::sms_center::accept`]),
//! then answered with `SubmitAck` (cause 0, or an RP-cause of TS 24.011 when refused, with
//! nothing stored). The message records the terminal and its TP-MR as its submitter
//! ([`terminal_submitter`]); when it reaches a final state and the terminal asked for a status
//! report (TP-SRR), the receipts task hands the report to this session, which sends it as an
//! SMS-STATUS-REPORT in a `Deliver` frame and reports the terminal's `DeliverAck` back.
//!
//! An SMS-SUBMIT to the operator's service number is no message to deliver: it is the
//! subscriber's port-out authorisation ([`crate::portability::authorisation`]), taken for the
//! number the attach authenticated and answered with its own `SubmitAck` cause
//! ([`authorisation_cause`]); nothing is stored as a short message. Nor is one to the OTA
//! server's address (`[ota] address`): it is the card's proof of receipt of an OTA packet,
//! handed to [`crate::ota`] for the number the attach authenticated.
//!
//! A stored message is delivered with its TP-PID (SMPP protocol_id) and, for 8-bit data with
//! a message class, its own TP-DCS: the OTA server's SIM data download (PID 0x7F, DCS 0xF6,
//! the command packet identifier in the user data header) reaches the handset as sent.
//!
//! Every SMS-DELIVER is tagged as it is built for the air, with the attached SIM's key and a
//! counter of its own ([`crate::sms_center::authentication`]): the handset tells it from a
//! pseudo base station's. The parts the center splits a long message into leave room for the
//! element; a submitter's own header goes untagged only if the element does not fit beside it.
//!
//! References of `Deliver` frames: a message's id for an SMS-DELIVER; for an SMS-STATUS-REPORT
//! the id of the message it reports on with the top bit set ([`report_reference`]), so that a
//! message sent to oneself and its report do not share one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use numport_core::Millis;
use sms::address::{Address, TON_ALPHANUMERIC};
use sms::air::{CAUSE_AUTH_FAILED, CAUSE_OK, Frame, MAX_BODY, verify_attach_proof};
use sms::auth::ELEMENT_OCTETS;
use sms::concat::Reference;
use sms::tpdu::{
    Alphabet, DataCoding, Payload, SmsDeliver, SmsStatusReport, SmsSubmit, Timestamp, Tpdu, UserData, ValidityPeriod,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::portability::{AuthorisationRefusal, PortOutText};
use crate::sms_center::long_message::UDHI;
use crate::sms_center::{Change, Refusal, Submission, ToTerminal};
use crate::store::sms::{SmsState, StoredSms, terminal_submitter};
use crate::{Node, OperatorError};

/// `SubmitAck` causes (RP-Cause values, TS 24.011 §8.2.5.4): the destination is no number
/// any operator serves.
pub const CAUSE_UNASSIGNED_NUMBER: u8 = 1;
/// The validity period asked for has already ended.
pub const CAUSE_SM_REJECTED: u8 = 21;
/// The message could not be recorded; try again.
pub const CAUSE_TEMPORARY_FAILURE: u8 = 41;
/// The TPDU is no SMS-SUBMIT, or cannot be carried on.
pub const CAUSE_INVALID_MANDATORY_INFORMATION: u8 = 96;
/// An authorisation names a number other than the sender's own.
pub const CAUSE_FACILITY_REJECTED: u8 = 29;
/// The sender is no active subscriber of this operator.
pub const CAUSE_UNKNOWN_SUBSCRIBER: u8 = 30;
/// The subscriber has no port key: porting was never provisioned.
pub const CAUSE_FACILITY_NOT_SUBSCRIBED: u8 = 50;
/// The text to the service number is no authorisation.
pub const CAUSE_SEMANTICALLY_INCORRECT_MESSAGE: u8 = 95;

/// A `SubmitAck` cause in words, as a handset shows it.
pub fn cause_text(cause: u8) -> &'static str {
    match cause {
        CAUSE_OK => "accepted",
        CAUSE_UNASSIGNED_NUMBER => "unassigned number",
        CAUSE_SM_REJECTED => "refused",
        CAUSE_FACILITY_REJECTED => "a handset may authorise its own number only",
        CAUSE_UNKNOWN_SUBSCRIBER => "not an active subscriber of this operator",
        CAUSE_TEMPORARY_FAILURE => "temporary failure, try again",
        CAUSE_FACILITY_NOT_SUBSCRIBED => "no port key provisioned for this subscriber",
        CAUSE_SEMANTICALLY_INCORRECT_MESSAGE => "malformed authorisation text",
        CAUSE_INVALID_MANDATORY_INFORMATION => "invalid message",
        _ => "refused",
    }
}

/// The `SubmitAck` cause of a refused authorisation.
pub fn authorisation_cause(r: &AuthorisationRefusal) -> u8 {
    match r {
        AuthorisationRefusal::Text(_) => CAUSE_SEMANTICALLY_INCORRECT_MESSAGE,
        AuthorisationRefusal::OtherNumber => CAUSE_FACILITY_REJECTED,
        AuthorisationRefusal::NotSubscriber => CAUSE_UNKNOWN_SUBSCRIBER,
        AuthorisationRefusal::NoPortKey => CAUSE_FACILITY_NOT_SUBSCRIBED,
        AuthorisationRefusal::Refused(_) => CAUSE_SM_REJECTED,
        AuthorisationRefusal::NotRecorded(_) => CAUSE_TEMPORARY_FAILURE,
    }
}

/// How long a terminal has for each step of the attach, and to acknowledge a delivery; also
/// how long a port-out authorisation may take before the terminal is told to try again.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an attached terminal's session checks for silence and for messages its live
/// queue could not carry.
const POLL: Duration = Duration::from_millis(500);
/// Deliveries outstanding to one terminal at once.
const WINDOW: usize = 16;
/// Messages a session holds in memory, at most.
const BACKLOG: usize = 1024;

/// Serves terminals on `listener` until `stop` is cancelled.
pub async fn serve(node: Node, listener: TcpListener, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "air interface accept");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (node, stop) = (node.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = session(&node, stream, stop).await {
                tracing::debug!(%peer, error = %e, "terminal session ended");
            }
        });
    }
}

/// The handset's side of the attach: send the IMSI, answer the challenge with the SIM key.
/// `Ok(Ok(msisdn))` once attached, `Ok(Err(cause))` if the node refused. Used by `numport
/// terminal` and the SMS benchmark's handsets.
pub async fn attach_terminal<S: AsyncRead + AsyncWriteExt + Unpin>(
    s: &mut S,
    imsi: &str,
    k_sim: &[u8],
) -> Result<Result<String, u8>, OperatorError> {
    let unexpected =
        |what: &str, f: Option<Frame>| OperatorError::Config(format!("attach: expected {what}, got {f:?}"));
    s.write_all(&Frame::Attach { imsi: imsi.to_owned() }.encode()).await?;
    let nonce = match read_frame(s).await? {
        Some(Frame::Challenge { nonce }) => nonce,
        other => return Err(unexpected("a challenge", other)),
    };
    s.write_all(&Frame::Response { mac: sms::air::attach_proof(k_sim, &nonce, imsi) }.encode()).await?;
    match read_frame(s).await? {
        Some(Frame::Attached { msisdn }) => Ok(Ok(msisdn)),
        Some(Frame::Rejected { cause }) => Ok(Err(cause)),
        other => Err(unexpected("attached or rejected", other)),
    }
}

/// The handset's side of a port-out authorisation: `auth` as one SMS-SUBMIT (GSM 7-bit) to
/// `service_number` under frame `reference`, then the node's `SubmitAck` cause. Deliveries
/// arriving meanwhile are left unacknowledged: the node offers them again later. Used by
/// `numport terminal port` and the porting benchmark's handsets.
pub async fn send_authorisation<S: AsyncRead + AsyncWriteExt + Unpin>(
    s: &mut S,
    service_number: &str,
    auth: &PortOutText,
    reference: u32,
) -> Result<u8, OperatorError> {
    let user_data =
        UserData::gsm7(&auth.to_string()).map_err(|e| OperatorError::Config(format!("authorisation: {e}")))?;
    let submit = SmsSubmit {
        reject_duplicates: false,
        status_report_request: false,
        reply_path: false,
        message_reference: reference as u8,
        destination: Address::international(service_number),
        pid: 0,
        dcs: DataCoding::GSM7,
        validity: None,
        user_data,
    };
    let tpdu = Tpdu::Submit(submit).encode().map_err(|e| OperatorError::Config(format!("authorisation: {e}")))?;
    s.write_all(&Frame::Submit { reference, tpdu }.encode()).await?;
    loop {
        match read_frame(s).await? {
            Some(Frame::SubmitAck { reference: r, cause }) if r == reference => return Ok(cause),
            Some(_) => continue,
            None => return Err(OperatorError::Config("the node closed the air link".into())),
        }
    }
}

/// Reads one air frame; `None` when the peer closed the link. Frames longer than
/// [`MAX_BODY`] are refused before their body is read. Shared by the node and `numport
/// terminal`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, OperatorError> {
    let mut len = [0u8; 2];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u16::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_BODY + 1 {
        return Err(OperatorError::Config(format!("air frame of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Frame::decode(&body).map(Some).map_err(|e| OperatorError::Config(format!("air frame: {e}")))
}

async fn session(node: &Node, stream: TcpStream, stop: CancellationToken) -> Result<(), OperatorError> {
    let (mut read, mut write) = stream.into_split();
    let Ok(Ok(Some(Frame::Attach { imsi }))) = tokio::time::timeout(STEP_TIMEOUT, read_frame(&mut read)).await else {
        return Ok(());
    };
    let sim = node.store().sim(&imsi).await?;
    let nonce: [u8; 16] = rand::random();
    write.write_all(&Frame::Challenge { nonce }.encode()).await?;
    let answer = tokio::time::timeout(STEP_TIMEOUT, read_frame(&mut read)).await;
    let msisdn = match (sim, answer) {
        (Some((msisdn, key)), Ok(Ok(Some(Frame::Response { mac }))))
            if verify_attach_proof(&key, &nonce, &imsi, &mac) =>
        {
            msisdn
        }
        _ => {
            tracing::info!(imsi, "attach refused");
            write.write_all(&Frame::Rejected { cause: CAUSE_AUTH_FAILED }.encode()).await?;
            return Ok(());
        }
    };
    write.write_all(&Frame::Attached { msisdn: msisdn.clone() }.encode()).await?;
    tracing::info!(imsi, msisdn, "terminal attached");

    // The SIM's key may have changed since its last attach.
    node.sms_auth().reload(&imsi).await;
    deliver(node, &imsi, &msisdn, write, read, stop).await
}

/// Serves an attached terminal: delivers its messages, up to [`WINDOW`] unacknowledged at
/// once (first those waiting in the database, then each one as it is committed), sends the
/// status reports owed to it, and takes its submits. A message counts as delivered when the
/// terminal acknowledges it; one the terminal refuses (memory full) waits for the scheduler's
/// next attempt.
async fn deliver(
    node: &Node,
    imsi: &str,
    msisdn: &str,
    write: OwnedWriteHalf,
    mut read: OwnedReadHalf,
    stop: CancellationToken,
) -> Result<(), OperatorError> {
    let (_attachment, live) = node.sms().attach(msisdn);
    // Frames from the terminal arrive on their own task, so waiting for them never cuts a
    // frame in half.
    let (tx, frames) = mpsc::channel(WINDOW * 2);
    let reader = tokio::spawn(async move {
        while let Ok(Some(f)) = read_frame(&mut read).await {
            if tx.send(f).await.is_err() {
                break;
            }
        }
    });
    // An attach delivers at once: every queued message, whatever its next attempt (but not
    // before its scheduled time).
    let backlog: VecDeque<ToTerminal> = node
        .store()
        .queued_for(msisdn, Millis::MAX, node.now(), BACKLOG as i64)
        .await?
        .into_iter()
        .map(ToTerminal::Message)
        .collect();
    let mut session = Attached {
        node,
        imsi,
        msisdn,
        write,
        backlog,
        unacked: HashMap::new(),
        long: HashMap::new(),
        seen: RecentIds::default(),
        out: Vec::new(),
    };
    let result = session.run(frames, live, stop).await;
    reader.abort();
    result
}

/// An attached terminal's session: what waits to be sent to it, and what it has not yet
/// acknowledged.
struct Attached<'a> {
    node: &'a Node,
    /// The attached SIM, whose key tags the SMS-DELIVERs ([`crate::sms_center::authentication`]).
    imsi: &'a str,
    msisdn: &'a str,
    write: OwnedWriteHalf,
    /// Messages and status reports to send, in order.
    backlog: VecDeque<ToTerminal>,
    /// Sent and not yet acknowledged, by reference, with when they were sent.
    unacked: HashMap<u32, (Outstanding, Instant)>,
    /// Long messages some of whose parts are unacknowledged, by id.
    long: HashMap<i64, LongDelivery>,
    /// Ids handed over in this session, so a message dispatched twice is sent once.
    seen: RecentIds,
    /// Encoded frames not yet written.
    out: Vec<u8>,
}

/// What an unacknowledged `Deliver` frame carries.
enum Outstanding {
    /// A message in one SMS, or a status report.
    Whole(Box<ToTerminal>),
    /// A part of the long message with this id (in [`Attached::long`]).
    Part(i64),
}

/// A long message on its way in parts: delivered once the terminal acknowledged every part.
struct LongDelivery {
    message: StoredSms,
    /// Parts not yet acknowledged.
    left: usize,
    /// The cause of a part the terminal refused, if one was.
    refused: Option<u8>,
}

impl Attached<'_> {
    /// Serves the terminal until it detaches or stops acknowledging, or `stop` is cancelled.
    /// `frames` come from the terminal, `live` from the SMS center as messages are committed.
    async fn run(
        &mut self,
        mut frames: mpsc::Receiver<Frame>,
        mut live: mpsc::Receiver<ToTerminal>,
        stop: CancellationToken,
    ) -> Result<(), OperatorError> {
        let (node, msisdn) = (self.node, self.msisdn);
        // The terminal's submits being committed; each ends in its SubmitAck.
        let mut submits = FuturesUnordered::new();
        let mut rescan = tokio::time::interval(POLL);
        loop {
            self.fill_window().await;
            if !self.out.is_empty() {
                self.write.write_all(&self.out).await?;
                self.out.clear();
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                Some(ack) = submits.next(), if !submits.is_empty() => self.out.extend(Frame::encode(&ack)),
                f = frames.recv(), if submits.len() < WINDOW => match f {
                    None => return Ok(()),
                    Some(Frame::DeliverAck { reference, cause }) => self.acknowledged(reference, cause).await,
                    Some(Frame::Submit { reference, tpdu }) => submits.push(submit(node, msisdn, reference, tpdu)),
                    Some(other) => tracing::debug!(?other, "unexpected frame from an attached terminal"),
                },
                Some(next) = live.recv(), if self.backlog.len() < BACKLOG => self.backlog.push_back(next),
                _ = rescan.tick() => {
                    if self.unacked.values().any(|(_, sent)| sent.elapsed() > STEP_TIMEOUT) {
                        tracing::info!(msisdn, "terminal does not acknowledge; detaching");
                        return Ok(());
                    }
                    self.rescan().await?;
                }
            }
        }
    }

    /// Encodes deliveries from the backlog until [`WINDOW`] are unacknowledged. The parts of
    /// a long message go out together.
    async fn fill_window(&mut self) {
        while self.unacked.len() < WINDOW
            && let Some(next) = self.backlog.pop_front()
        {
            // A message cancelled or replaced since it was queued here is sent as it is now.
            let next = match next {
                ToTerminal::Message(m) => match self.node.sms().current(m) {
                    Some(m) => ToTerminal::Message(m),
                    None => continue,
                },
                report => report,
            };
            let frames = match &next {
                ToTerminal::Message(m) if !self.seen.insert(m.id) => continue,
                ToTerminal::Message(m) => match self.tagged_tpdus(m).await {
                    Ok(tpdus) => tpdus.map(|tpdus| part_references(m.id, tpdus)),
                    Err(e) => {
                        // Not sent untagged: it stays queued for the session's rescan.
                        tracing::warn!(id = m.id, error = %e, "SMS authentication failed; message not sent now");
                        self.seen.forget(m.id);
                        continue;
                    }
                },
                ToTerminal::StatusReport(m, _) => match self.tagged_report(m).await {
                    Ok(tpdu) => tpdu.map(|tpdu| vec![(report_reference(m.id), tpdu)]),
                    Err(e) => {
                        // Not sent untagged: dropped here, it is offered again.
                        tracing::warn!(id = m.id, error = %e, "SMS authentication failed; status report not sent now");
                        continue;
                    }
                },
            };
            let Some(frames) = frames else {
                self.unencodable(next).await;
                continue;
            };
            let (sent, parts) = (Instant::now(), frames.len());
            let references: Vec<u32> = frames.iter().map(|(r, _)| *r).collect();
            for (reference, tpdu) in frames {
                self.out.extend(Frame::Deliver { reference, tpdu }.encode());
            }
            match next {
                ToTerminal::Message(m) if parts > 1 => {
                    for reference in references {
                        self.unacked.insert(reference, (Outstanding::Part(m.id), sent));
                    }
                    self.long.insert(m.id, LongDelivery { message: m, left: parts, refused: None });
                }
                whole => {
                    self.unacked.insert(references[0], (Outstanding::Whole(Box::new(whole)), sent));
                }
            }
        }
    }

    /// The SMS-DELIVERs of `m`, each tagged with the SIM's key and its own counter
    /// ([`crate::sms_center::authentication`]); `Ok(None)` if `m` cannot be carried. A
    /// submitter's own header the element does not fit beside goes untagged.
    async fn tagged_tpdus(&self, m: &StoredSms) -> Result<Option<Vec<Vec<u8>>>, OperatorError> {
        let Some(mut delivers) = delivers(m) else { return Ok(None) };
        let node = self.node;
        if m.esm_class & UDHI != 0 && !delivers.iter().all(fits_with_element) {
            return Ok(encode_all(delivers));
        }
        // A node without a key-encryption key holds no SIM keys: nothing to tag with.
        let Ok(sealer) = node.sealer() else { return Ok(encode_all(delivers)) };
        node.sms_auth().tag(node.store(), sealer, self.imsi, self.msisdn, &mut delivers, node.now()).await?;
        Ok(encode_all(delivers))
    }

    /// The SMS-STATUS-REPORT on `m`, tagged like an SMS-DELIVER with the SIM's key and the
    /// next counter; `Ok(None)` if `m` owes none or it cannot be encoded.
    async fn tagged_report(&self, m: &StoredSms) -> Result<Option<Vec<u8>>, OperatorError> {
        let Some(report) = status_report(m) else { return Ok(None) };
        let node = self.node;
        let mut reports = [report];
        if let Ok(sealer) = node.sealer() {
            node.sms_auth().tag(node.store(), sealer, self.imsi, self.msisdn, &mut reports, node.now()).await?;
        }
        let [report] = reports;
        Ok(Tpdu::StatusReport(report).encode().ok())
    }

    /// A message that cannot be encoded is undeliverable; a status report, given up.
    async fn unencodable(&mut self, next: ToTerminal) {
        match next {
            ToTerminal::Message(m) => self.node.sms().commit_soon(Change::Final(m, SmsState::Undeliverable)).await,
            // Like an ESME receipt that cannot be encoded: given up, counted as sent.
            ToTerminal::StatusReport(m, done) => {
                tracing::warn!(id = m.id, "status report cannot be encoded; not sent");
                let _ = done.send(true);
            }
        }
    }

    /// The terminal's `DeliverAck` of `reference`: a message accepted (every part of it) is
    /// delivered, one refused (any part of it) waits for its next attempt; a status report's
    /// outcome goes to the receipts task.
    async fn acknowledged(&mut self, reference: u32, cause: u8) {
        match self.unacked.remove(&reference) {
            None => {}
            Some((Outstanding::Whole(whole), _)) => match *whole {
                ToTerminal::Message(m) => self.settle(m, cause).await,
                ToTerminal::StatusReport(_, done) => {
                    let _ = done.send(cause == CAUSE_OK);
                }
            },
            Some((Outstanding::Part(id), _)) => {
                let Some(d) = self.long.get_mut(&id) else { return };
                d.left -= 1;
                if cause != CAUSE_OK {
                    d.refused = Some(cause);
                }
                if d.left == 0
                    && let Some(d) = self.long.remove(&id)
                {
                    self.settle(d.message, d.refused.unwrap_or(CAUSE_OK)).await;
                }
            }
        }
    }

    /// Message `m` acknowledged with `cause`: delivered, or to be offered again.
    async fn settle(&mut self, m: StoredSms, cause: u8) {
        let center = self.node.sms();
        if cause == CAUSE_OK {
            center.commit_soon(Change::Final(m, SmsState::Delivered)).await;
            return;
        }
        tracing::info!(id = m.id, cause, "terminal refused a message; later");
        // Offered again when its next attempt falls due, by the scheduler or the rescan, to
        // this session or the next.
        self.seen.forget(m.id);
        let next = self.node.now() + self.node.config().smpp.retry_after(m.attempts) as i64;
        center.commit_soon(Change::Retry(m.id, next)).await;
    }

    /// Messages the live queue could not carry wait in the database; refused ones wait there
    /// for their next attempt. Both are taken once the session has nothing else to send.
    async fn rescan(&mut self) -> Result<(), OperatorError> {
        if self.backlog.is_empty() && self.unacked.is_empty() {
            let now = self.node.now();
            let due = self.node.store().queued_for(self.msisdn, now, now, BACKLOG as i64).await?;
            self.backlog.extend(due.into_iter().map(ToTerminal::Message));
        }
        Ok(())
    }
}

/// The `Deliver` references of the SMS carrying message `id`: its id for one; for the `n`
/// parts of a long message, the `n` ids up to its own, which
/// [`accept`](crate::sms_center::accept) kept for them, so that every part has a reference of
/// its own that is the same whenever it is sent again.
fn part_references(id: i64, tpdus: Vec<Vec<u8>>) -> Vec<(u32, Vec<u8>)> {
    let first = id - (tpdus.len() as i64 - 1);
    tpdus.into_iter().enumerate().map(|(i, tpdu)| ((first + i as i64) as u32, tpdu)).collect()
}

/// The `Deliver` reference of the status report on message `id`: the id with the top bit set,
/// apart from the references of messages (ids below 2³¹).
pub fn report_reference(id: i64) -> u32 {
    id as u32 | 0x8000_0000
}

/// Takes one SMS-SUBMIT of the terminal `msisdn`: an authorisation if it is addressed to the
/// service number, else routed, numbered and committed like an ESME's submit_sm. The
/// `SubmitAck` to answer with.
async fn submit(node: &Node, msisdn: &str, reference: u32, tpdu: Vec<u8>) -> Frame {
    let now = node.now();
    let tpdu = match Tpdu::decode_mo(&tpdu) {
        Ok(Tpdu::Submit(s)) if Some(s.destination.value.as_str()) == node.config().ota.address().ok() => {
            // The card's proof of receipt of an OTA packet: the OTA server's, never a message
            // to store. On a task of its own, as an authorisation is.
            let (node, msisdn) = (node.clone(), msisdn.to_owned());
            let task = tokio::spawn(async move { node.ota().receive_por(&node, &msisdn, &s).await });
            return Frame::SubmitAck { reference, cause: task.await.unwrap_or(CAUSE_TEMPORARY_FAILURE) };
        }
        Ok(Tpdu::Submit(s)) if Some(s.destination.value.as_str()) == node.config().service_number().ok() => {
            // On a task of its own: the session polls its submits only between its other
            // awaits, and an authorisation granted the database connection there but not
            // polled would hold up every other user of it, the session included.
            let (node, msisdn) = (node.clone(), msisdn.to_owned());
            let task = tokio::spawn(async move { authorisation(&node, &msisdn, &s).await });
            return Frame::SubmitAck { reference, cause: task.await.unwrap_or(CAUSE_TEMPORARY_FAILURE) };
        }
        other => other,
    };
    let cause = match tpdu.map_err(|e| e.to_string()).and_then(|t| submission(msisdn, t, now)) {
        Err(e) => {
            tracing::info!(msisdn, error = e, "SMS-SUBMIT refused");
            CAUSE_INVALID_MANDATORY_INFORMATION
        }
        Ok(s) => match crate::sms_center::accept(node, s, now).await {
            Ok(id) => {
                tracing::debug!(msisdn, id, "SMS-SUBMIT accepted");
                CAUSE_OK
            }
            Err(Refusal::Destination | Refusal::NotServedHere) => CAUSE_UNASSIGNED_NUMBER,
            Err(Refusal::Expiry | Refusal::Schedule) => CAUSE_SM_REJECTED,
            Err(Refusal::MessageLength) => CAUSE_INVALID_MANDATORY_INFORMATION,
            Err(Refusal::NotRecorded) => CAUSE_TEMPORARY_FAILURE,
        },
    };
    Frame::SubmitAck { reference, cause }
}

/// Takes the port-out authorisation `s` that the terminal `msisdn` sent to the service number;
/// its `SubmitAck` cause. The text is one message: a concatenated one is refused as malformed.
async fn authorisation(node: &Node, msisdn: &str, s: &SmsSubmit) -> u8 {
    let text = match &s.user_data.header {
        None => s.user_data.text(s.dcs),
        Some(_) => String::new(),
    };
    let result = match msisdn.parse() {
        Ok(sender) => tokio::time::timeout(STEP_TIMEOUT, node.authorise_port_out(&sender, &text)).await,
        Err(_) => Ok(Err(AuthorisationRefusal::NotSubscriber)),
    };
    match result {
        Ok(Ok(_)) => CAUSE_OK,
        Err(_) => {
            tracing::warn!(msisdn, "port-out authorisation timed out");
            CAUSE_TEMPORARY_FAILURE
        }
        Ok(Err(refusal)) => {
            tracing::info!(msisdn, %refusal, "port-out authorisation refused");
            authorisation_cause(&refusal)
        }
    }
}

/// The [`Submission`] of an SMS-SUBMIT from the terminal `msisdn`, in the SMPP terms the SMS
/// center stores: text in the 7-bit alphabet as one septet an octet (data_coding 0, as
/// ESMEs submit it), else UCS-2 octets (data_coding 8); 8-bit data as data_coding 4. A user data
/// header opens the payload, with esm_class 0x40. TP-SRR asks for a receipt (registered
/// delivery 1), which comes back as an SMS-STATUS-REPORT with the TP-MR.
pub(crate) fn submission(msisdn: &str, tpdu: Tpdu, now: Millis) -> Result<Submission, String> {
    let Tpdu::Submit(s) = tpdu else { return Err("not an SMS-SUBMIT".into()) };
    let SmsSubmit { status_report_request, message_reference, destination, pid, dcs, validity, user_data, .. } = s;
    let (data_coding, body) = match (&user_data.payload, dcs.alphabet()) {
        (Payload::Septets(_), _) => {
            let text = user_data.text(dcs);
            match sms::gsm7::encode(&text) {
                Ok(septets) => (0, septets),
                Err(_) => (8, text.encode_utf16().flat_map(u16::to_be_bytes).collect()),
            }
        }
        (Payload::Octets(o), Alphabet::Ucs2) => (8, o.clone()),
        (Payload::Octets(o), _) => (4, o.clone()),
    };
    let header = user_data.header.as_ref().map(sms::udh::UserDataHeader::encode).unwrap_or_default();
    // UCS-2 must fit one TPDU again on the way out.
    if data_coding != 0 && header.len() + body.len() > 140 {
        return Err(format!("{} octets of user data do not fit an SMS-DELIVER", header.len() + body.len()));
    }
    if !destination.value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("destination {:?} is no number", destination.value));
    }
    let validity = match validity {
        None | Some(ValidityPeriod::Enhanced(_)) => None,
        Some(ValidityPeriod::Relative(v)) => Some(now + ValidityPeriod::relative_seconds(v) as i64 * 1000),
        Some(ValidityPeriod::Absolute(t)) => {
            let sign = if t.tz_quarters < 0 { '-' } else { '+' };
            let field = format!(
                "{:02}{:02}{:02}{:02}{:02}{:02}0{:02}{sign}",
                t.year,
                t.month,
                t.day,
                t.hour,
                t.minute,
                t.second,
                t.tz_quarters.unsigned_abs()
            );
            smsc::time::parse_smpp_time(&field, now).map_err(|e| e.to_string())?
        }
    };
    Ok(Submission {
        system_id: terminal_submitter(msisdn, message_reference),
        source_addr: msisdn.to_owned(),
        source_ton: sms::address::TON_INTERNATIONAL,
        destination: destination.value,
        esm_class: if user_data.header.is_some() { 0x40 } else { 0 },
        protocol_id: pid,
        data_coding,
        registered_delivery: u8::from(status_report_request),
        payload: [header, body].concat(),
        validity,
        schedule: None,
        origin_ref: None,
    })
}

/// The ids of the last messages a session handed over, bounded.
#[derive(Default)]
struct RecentIds {
    set: HashSet<i64>,
    order: VecDeque<i64>,
}

impl RecentIds {
    const CAPACITY: usize = 65_536;

    /// False if `id` was handed over already.
    fn insert(&mut self, id: i64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    /// Lets `id` be handed over again (its `order` entry ages out on its own).
    fn forget(&mut self, id: i64) {
        self.set.remove(&id);
    }
}

/// The encoded SMS-DELIVERs of [`delivers`], untagged.
#[cfg(test)]
pub(crate) fn deliver_tpdus(m: &StoredSms) -> Option<Vec<Vec<u8>>> {
    encode_all(delivers(m)?)
}

/// The SMS-DELIVERs for a stored message, in order, not yet tagged: the SMPP data coding
/// mapped to the air's, text in the GSM 7-bit alphabet where it fits, else UCS-2. A message
/// longer than one SMS goes as concatenated parts (TS 23.040 §9.2.3.24.8), whose 16-bit
/// reference is the low half of the message id, so a repeat after a lost acknowledgement
/// carries the same one. `None` if it cannot be carried (checked at submit:
/// [`crate::sms_center::long_message`]).
pub(crate) fn delivers(m: &StoredSms) -> Option<Vec<SmsDeliver>> {
    let originator = if m.source_ton == TON_ALPHANUMERIC || !m.source_addr.bytes().all(|b| b.is_ascii_digit()) {
        Address::alphanumeric(&m.source_addr)
    } else {
        Address::international(&m.source_addr)
    };
    let (dcs, parts) = user_data_parts(m.esm_class, m.data_coding, &m.payload, m.id as u16)?;
    let delivers = parts
        .into_iter()
        .map(|user_data| SmsDeliver {
            more_messages: false,
            status_report_indication: false,
            reply_path: false,
            originator: originator.clone(),
            pid: m.protocol_id,
            dcs,
            scts: timestamp(m.submitted_at),
            user_data,
        })
        .collect();
    Some(delivers)
}

/// The TPDUs of `delivers`; `None` if one does not encode.
fn encode_all(delivers: Vec<SmsDeliver>) -> Option<Vec<Vec<u8>>> {
    delivers.into_iter().map(|d| Tpdu::Deliver(d).encode().ok()).collect()
}

/// Whether `d` still encodes with an authentication element added.
fn fits_with_element(d: &SmsDeliver) -> bool {
    let mut d = d.clone();
    let element = sms::auth::AuthElement { key_version: 1, counter: 0, mac: [0; sms::auth::MAC_LEN] };
    d.user_data.header.get_or_insert_with(Default::default).elements.push(sms::udh::InformationElement::Auth(element));
    Tpdu::Deliver(d).encode().is_ok()
}

/// How many SMS-DELIVERs a message of this esm_class, data_coding and payload takes; `None`
/// if it cannot be carried.
pub(crate) fn deliveries(esm_class: u8, data_coding: u8, payload: &[u8]) -> Option<usize> {
    // The common case, answered without splitting: what fits one SMS beside the
    // authentication element's header (124 octets: 141 septets, 62 Latin-1 characters that
    // may turn into UCS-2).
    let single = match data_coding {
        0 => 141,
        1 | 3 => 62,
        _ => 124,
    };
    if esm_class & UDHI == 0 && payload.len() <= single {
        return Some(1);
    }
    let (dcs, parts) = user_data_parts(esm_class, data_coding, payload, 0)?;
    let fits = |ud: &UserData| {
        let deliver = SmsDeliver {
            more_messages: false,
            status_report_indication: false,
            reply_path: false,
            originator: Address::international("0"),
            pid: 0,
            dcs,
            scts: timestamp(0),
            user_data: ud.clone(),
        };
        Tpdu::Deliver(deliver).encode().is_ok()
    };
    parts.iter().all(fits).then_some(parts.len())
}

/// The user data of each SMS carrying a message, and their data coding. With esm_class UDHI
/// the payload opens with a user data header (concatenation, ports), which travels on as the
/// TPDU's, in one SMS; otherwise a payload longer than one SMS is split in its own coding
/// with concatenation `reference`, leaving room for the authentication element in each part.
fn user_data_parts(
    esm_class: u8,
    data_coding: u8,
    payload: &[u8],
    reference: u16,
) -> Option<(DataCoding, Vec<UserData>)> {
    let (header, body) = if esm_class & UDHI != 0 {
        let (h, len) = sms::udh::UserDataHeader::decode(payload).ok()?;
        (Some(h), &payload[len..])
    } else {
        (None, payload)
    };
    let (dcs, payload) = match data_coding {
        // The SMSC default alphabet, as GSM septets, one an octet.
        0 => (DataCoding::GSM7, Payload::Septets(body.iter().map(|s| s & 0x7F).collect())),
        // IA5 or Latin-1: text.
        1 | 3 => {
            let text: String = body.iter().map(|&b| b as char).collect();
            match sms::gsm7::encode(&text) {
                Ok(septets) => (DataCoding::GSM7, Payload::Septets(septets)),
                Err(_) => (DataCoding::UCS2, UserData::ucs2(&text).payload),
            }
        }
        8 => (DataCoding::UCS2, Payload::Octets(body.to_vec())),
        // 8-bit data with a message class (TS 23.038 coding group 1111): kept as it is, so
        // that class 2 (0xF6, SIM data download) reaches the handset's SIM.
        d if d & 0xF4 == 0xF4 => (DataCoding(d), Payload::Octets(body.to_vec())),
        _ => (DataCoding::EIGHT_BIT, Payload::Octets(body.to_vec())),
    };
    let parts = match header {
        Some(header) => vec![UserData { header: Some(header), payload }],
        // Room is kept in every part for the authentication element.
        None => sms::concat::split_payload_leaving(payload, dcs, Reference::Sixteen(reference), ELEMENT_OCTETS).ok()?,
    };
    Some((dcs, parts))
}

/// The SMS-STATUS-REPORT on `m`, a final message a terminal submitted, not yet tagged: its
/// TP-MR, the recipient, when it was submitted and settled, and TP-ST: 0x00 delivered, 0x46
/// validity period expired, 0x43 not obtainable (permanent failure), 0x47 deleted by its
/// sender; 0x20 (still trying) if it is not final. `None` if no terminal submitted `m`.
pub(crate) fn status_report(m: &StoredSms) -> Option<SmsStatusReport> {
    let (_, message_reference) = m.submitting_terminal()?;
    let status = match m.state {
        SmsState::Delivered => 0x00,
        SmsState::Expired => 0x46,
        SmsState::Undeliverable => 0x43,
        SmsState::Deleted => 0x47,
        SmsState::Queued | SmsState::Forwarded => 0x20,
    };
    Some(SmsStatusReport {
        more_messages: false,
        qualifier_command: false,
        message_reference,
        recipient: Address::international(&m.destination),
        scts: timestamp(m.submitted_at),
        discharge: timestamp(m.done_at.unwrap_or(m.submitted_at)),
        status,
        pid: None,
        dcs: None,
        user_data: None,
    })
}

/// The SC time stamp (TP-SCTS) of `ms`, in UTC.
pub fn timestamp(ms: Millis) -> Timestamp {
    let t = smsc::receipt::ReceiptTime::from_unix_ms(ms);
    Timestamp {
        year: t.year,
        month: t.month,
        day: t.day,
        hour: t.hour,
        minute: t.minute,
        second: (ms.div_euclid(1000) % 60) as u8,
        tz_quarters: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sms::NewSms;
    use sms::concat::{Reassembler, Reference, segment};

    const NOW: Millis = 1_795_453_500_000;

    /// The message the SMS center would store for `s`, routed locally.
    fn stored(id: i64, s: Submission) -> StoredSms {
        StoredSms::new(
            id,
            NewSms {
                system_id: s.system_id,
                source_addr: s.source_addr,
                source_ton: s.source_ton,
                destination: s.destination,
                serving_operator: "opa".into(),
                route: "local",
                esm_class: s.esm_class,
                protocol_id: s.protocol_id,
                data_coding: s.data_coding,
                registered_delivery: s.registered_delivery,
                payload: s.payload,
                submitted_at: NOW,
                expires_at: s.validity.unwrap_or(NOW + 3_600_000),
                next_attempt_at: NOW,
                origin_ref: None,
                scheduled_at: 0,
            },
        )
    }

    /// The SMS-SUBMITs of `text`, as a terminal sends them.
    fn submits(text: &str) -> Vec<Tpdu> {
        let s = segment(text, Reference::Eight(42)).unwrap();
        s.parts
            .into_iter()
            .enumerate()
            .map(|(i, user_data)| {
                Tpdu::Submit(SmsSubmit {
                    reject_duplicates: false,
                    status_report_request: true,
                    reply_path: false,
                    message_reference: 200 + i as u8,
                    destination: Address::international("4790000001"),
                    pid: 0,
                    dcs: s.dcs,
                    validity: Some(ValidityPeriod::Relative(11)),
                    user_data,
                })
            })
            .collect()
    }

    /// Submitted at one terminal, stored, delivered to another: the text it reads.
    fn through_the_center(text: &str) -> (Vec<Submission>, String) {
        let subs: Vec<Submission> =
            submits(text).into_iter().map(|t| submission("4791000001", t, NOW).unwrap()).collect();
        let mut r = Reassembler::new(4);
        let mut whole = None;
        for (i, s) in subs.iter().enumerate() {
            let tpdu = deliver_tpdus(&stored(i as i64 + 1, s.clone())).unwrap().remove(0);
            let Ok(Tpdu::Deliver(d)) = Tpdu::decode_mt(&tpdu) else { panic!("no SMS-DELIVER") };
            assert_eq!(d.originator, Address::international("4791000001"));
            whole = r.receive_deliver(&d).or(whole);
        }
        (subs, whole.expect("the message completes"))
    }

    #[test]
    fn a_terminal_submit_is_stored_as_an_esme_submit_is() {
        let (subs, text) = through_the_center("Hei fra opb: blåbær og ÆØÅ");
        assert_eq!(text, "Hei fra opb: blåbær og ÆØÅ");
        let s = &subs[0];
        assert_eq!((s.data_coding, s.esm_class, s.registered_delivery), (0, 0, 1));
        assert_eq!(s.payload, sms::gsm7::encode("Hei fra opb: blåbær og ÆØÅ").unwrap());
        assert_eq!((s.source_addr.as_str(), s.source_ton, s.destination.as_str()), ("4791000001", 1, "4790000001"));
        assert_eq!(s.validity, Some(NOW + 12 * 5 * 60_000));
        let m = stored(1, s.clone());
        assert_eq!(m.submitting_terminal(), Some(("4791000001", 200)));
        assert_eq!(m.system_id, "msisdn:4791000001:200");
    }

    #[test]
    fn long_and_ucs2_submits_keep_their_headers_and_read_back_whole() {
        let long = "0123456789".repeat(30);
        let (subs, text) = through_the_center(&long);
        assert_eq!(text, long);
        assert_eq!(subs.len(), 2);
        assert!(subs.iter().all(|s| s.esm_class == 0x40 && s.data_coding == 0));
        assert_eq!(
            subs.iter().map(|s| s.system_id.as_str()).collect::<Vec<_>>(),
            ["msisdn:4791000001:200", "msisdn:4791000001:201"]
        );

        let ucs2 = "Hilsen fra Tromsø 🌌🦌 — nordlyset danser over fjorden i kveld, kom ut og se! ❄️".repeat(2);
        let (subs, text) = through_the_center(&ucs2);
        assert_eq!(text, ucs2);
        assert!(subs.len() > 1 && subs.iter().all(|s| s.esm_class == 0x40 && s.data_coding == 8));

        // 7-bit text outside Latin-1 stays septets, the extension table's two octets a character.
        let (subs, text) = through_the_center("Δ = 5 €");
        assert_eq!((text.as_str(), subs[0].data_coding), ("Δ = 5 €", 0));
        let t = submits(&"€".repeat(80)).remove(0);
        assert_eq!(submission("4791000001", t, NOW).unwrap().payload.len(), 160);
    }

    /// The texts a handset reads from the SMS-DELIVERs of `m`, and how many there were.
    fn read_on_the_handset(m: &StoredSms) -> (usize, String) {
        let tpdus = deliver_tpdus(m).unwrap();
        let mut r = Reassembler::new(4);
        let mut whole = None;
        for tpdu in &tpdus {
            let Ok(Tpdu::Deliver(d)) = Tpdu::decode_mt(tpdu) else { panic!("no SMS-DELIVER") };
            assert!(tpdus.len() == 1 || d.user_data.header.as_ref().and_then(|h| h.concat()).is_some_and(|c| c.wide));
            whole = r.receive_deliver(&d).or(whole);
        }
        assert_eq!(deliveries(m.esm_class, m.data_coding, &m.payload), Some(tpdus.len()));
        (tpdus.len(), whole.expect("the message completes"))
    }

    #[test]
    fn a_long_stored_message_goes_as_concatenated_parts_in_its_own_coding() {
        let esme = |data_coding, payload: Vec<u8>| Submission {
            system_id: "bank".into(),
            source_addr: "MyBank".into(),
            source_ton: 5,
            destination: "4790000001".into(),
            esm_class: 0,
            protocol_id: 0,
            data_coding,
            registered_delivery: 1,
            payload,
            validity: None,
            schedule: None,
            origin_ref: None,
        };
        let text = "Kontoutskrift: @£$_{}[]~€ ".repeat(20);
        let septets = sms::gsm7::encode(&text).unwrap();
        assert_eq!(read_on_the_handset(&stored(900, esme(0, septets))), (5, text.clone()), "640 septets");
        let ucs2 = "Nordlys 🌌 over Tromsø. ".repeat(8);
        let octets = ucs2.encode_utf16().flat_map(u16::to_be_bytes).collect();
        // Each part keeps room for the authentication element: 59 UCS-2 units, 134 septets.
        assert_eq!(read_on_the_handset(&stored(901, esme(8, octets))), (4, ucs2), "192 UCS-2 units");
        let latin1: Vec<u8> = "blåbærsyltetøy ".repeat(6).chars().map(|c| c as u8).collect();
        assert_eq!(read_on_the_handset(&stored(902, esme(3, latin1))).0, 1, "Latin-1 the alphabet has: septets");
        assert_eq!(deliveries(0, 0, &[b'a'; 255 * 134]), Some(255));
        assert_eq!(deliveries(0, 0, &[b'a'; 255 * 134 + 1]), None, "more than 255 parts");
        assert_eq!((deliveries(0, 0, &[b'a'; 141]), deliveries(0, 0, &[b'a'; 142])), (Some(1), Some(2)));
        assert_eq!((deliveries(8, 8, &[0; 124]), deliveries(8, 8, &[0; 126])), (Some(1), Some(2)));
        // A header of the submitter's own travels in one SMS, tagged if the element fits beside
        // it; longer, it cannot be carried.
        let with_header = [&[5u8, 0, 3, 7, 2, 1][..], &[b'a'; 150]].concat();
        assert_eq!(deliveries(UDHI, 0, &with_header), Some(1));
        let full = delivers(&stored(903, Submission { esm_class: UDHI, ..esme(0, with_header.clone()) })).unwrap();
        assert!(!fits_with_element(&full[0]));
        let short = [&[5u8, 0, 3, 7, 2, 1][..], &[b'a'; 130]].concat();
        let room = delivers(&stored(904, Submission { esm_class: UDHI, ..esme(0, short) })).unwrap();
        assert!(fits_with_element(&room[0]));
        assert_eq!(deliveries(UDHI, 0, &[&with_header[..], b"0123456789"].concat()), None);
        assert_eq!(deliveries(UDHI, 0, &[9, 0]), None, "a header longer than the payload");
        let refs: Vec<u32> = part_references(902, vec![vec![]; 3]).into_iter().map(|(r, _)| r).collect();
        assert_eq!(refs, [900, 901, 902]);
    }

    #[test]
    fn a_status_report_carries_the_mr_and_the_outcome() {
        let s = submission("4791000001", submits("Hei").remove(0), NOW).unwrap();
        for (state, status) in [(SmsState::Delivered, 0x00), (SmsState::Expired, 0x46), (SmsState::Undeliverable, 0x43)]
        {
            let m = StoredSms { state, done_at: Some(NOW + 61_000), ..stored(7, s.clone()) };
            let tpdu = Tpdu::StatusReport(status_report(&m).unwrap()).encode().unwrap();
            let Ok(Tpdu::StatusReport(r)) = Tpdu::decode_mt(&tpdu) else { panic!() };
            assert_eq!((r.message_reference, r.status, r.recipient.value.as_str()), (200, status, "4790000001"));
            assert_eq!((r.discharge.minute, r.discharge.second), (6, 1));
        }
        let esme = StoredSms { system_id: "bank".into(), ..stored(7, s) };
        assert_eq!(status_report(&esme), None);
        assert_eq!(report_reference(7), 0x8000_0007);
    }

    #[test]
    fn what_is_no_submit_is_refused() {
        let deliver = Tpdu::decode_mt(
            &deliver_tpdus(&stored(1, submission("4791000001", submits("x").remove(0), NOW).unwrap())).unwrap()[0],
        )
        .unwrap();
        assert!(submission("4791000001", deliver, NOW).is_err());
        let Tpdu::Submit(mut s) = submits("x").remove(0) else { panic!() };
        s.destination = Address::alphanumeric("MyBank");
        assert!(submission("4791000001", Tpdu::Submit(s), NOW).is_err());
    }
}
