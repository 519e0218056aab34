//! The SMPP interconnect to another operator's SMS center, one link per peer: this node binds
//! there as a transceiver with its interconnect account, submits the messages queued for that
//! operator (many outstanding at once), and takes the peer's delivery receipts for them, which
//! settle the messages here and so go back to the ESME that submitted.
//!
//! The link sends enquire_link when it has sent nothing for `enquire_link_ms`, so the peer's idle
//! timeout never unbinds it; an enquire_link the peer leaves unanswered as long loses the link,
//! which then reconnects.
//!
//! The link speaks SMPP over TLS when the peer's configuration says so (`tls = { ca = … }`): the
//! peer's certificate must chain to that CA and be valid for its name.
//!
//! A message turns `forwarded` once the peer acknowledged it; a crash in between sends it
//! again (at-least-once; the terminal drops the repeat). A receipt is acknowledged to the peer
//! only once the outcome is committed here, so the peer keeps it until then.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use smsc::BindMode;
use smsc::client::{Client, ClientError, ClientTls, Incoming};
use smsc::receipt::Receipt;
use smsc::rusmpp::CommandStatus;
use smsc::rusmpp::pdus::SubmitSm;
use smsc::rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvTag};
use smsc::rusmpp::types::{AnyOctetString, COctetString, OctetString};
use smsc::rusmpp::values::MessagePayload;
use smsc::rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, Ton};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Change, LinkQueue, state_of_receipt};
use crate::config::InterconnectPeer;
use crate::store::sms::{SmsState, StoredSms};
use crate::{Node, OperatorError};

/// Submits outstanding on the link at once.
const WINDOW: usize = 256;
/// How often the database is looked at for messages the in-memory queue did not carry.
const RESCAN: Duration = Duration::from_secs(1);
/// Forwarded messages remembered for their receipts, at most.
const FORWARDED_IN_MEMORY: usize = 100_000;
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The TLS the link to `peer` speaks, if its configuration asks for it.
pub(crate) fn client_tls(peer: &InterconnectPeer) -> Result<Option<ClientTls>, OperatorError> {
    let Some(tls) = &peer.tls else { return Ok(None) };
    let bad = |e: String| OperatorError::Config(format!("[[interconnect]] {}: tls: {e}", peer.operator));
    let config = numport_tls::client_config(&tls.ca, None).map_err(|e| bad(e.to_string()))?;
    let name = tls.server_name.clone().unwrap_or_else(|| peer.addr.ip().to_string());
    let server_name = name.try_into().map_err(|e| bad(format!("server_name: {e}")))?;
    Ok(Some(ClientTls { config, server_name }))
}

/// Runs the link to `peer` (over `tls` if given) until `stop`, reconnecting with back-off.
pub(crate) async fn run(
    node: Node,
    peer: InterconnectPeer,
    tls: Option<ClientTls>,
    mut queue: LinkQueue,
    stop: CancellationToken,
) {
    let mut wait = RECONNECT_MIN;
    // Messages handed over but not yet recorded as forwarded (or settled), by id.
    let mut in_hand: HashSet<i64> = HashSet::new();
    loop {
        let bound = tokio::select! {
            _ = stop.cancelled() => return,
            b = bind(&peer, tls.as_ref()) => b,
        };
        match bound {
            Ok((client, incoming)) => {
                tracing::info!(peer = %peer.operator, "interconnect bound");
                wait = RECONNECT_MIN;
                let e = link(&node, &peer, &client, incoming, &mut queue, &mut in_hand, &stop).await;
                if stop.is_cancelled() {
                    let _ = client.unbind().await;
                    return;
                }
                tracing::warn!(peer = %peer.operator, error = %e, "interconnect link lost; reconnecting");
            }
            Err(e) => tracing::warn!(peer = %peer.operator, error = %e, "interconnect bind failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RECONNECT_MAX);
    }
}

/// Binds to `peer` as a transceiver, the session kept alive with enquire_link.
async fn bind(
    peer: &InterconnectPeer,
    tls: Option<&ClientTls>,
) -> Result<(Client, mpsc::Receiver<Incoming>), ClientError> {
    let enquire_link = Duration::from_millis(peer.enquire_link_ms.max(1));
    let (system_id, password) = (&peer.system_id, &peer.password);
    Client::bind_kept_alive(peer.addr, tls, system_id, password, BindMode::Transceiver, Some(enquire_link)).await
}

/// Drives one bound link until it fails (returned) or `stop`.
async fn link(
    node: &Node,
    peer: &InterconnectPeer,
    client: &Client,
    mut incoming: mpsc::Receiver<Incoming>,
    queue: &mut LinkQueue,
    in_hand: &mut HashSet<i64>,
    stop: &CancellationToken,
) -> ClientError {
    let center = node.sms();
    let operator = peer.operator.as_str();
    // The peer's message ids of messages forwarded on this link, for its receipts.
    let mut forwarded: HashMap<String, StoredSms> = HashMap::new();
    let mut backlog: VecDeque<StoredSms> = VecDeque::new();
    let mut submits = FuturesUnordered::new();
    let mut settling = FuturesUnordered::new();
    let mut receipts = FuturesUnordered::new();
    let mut rescan = tokio::time::interval(RESCAN);
    // Messages may wait in the database: the queue overflowed, or the last look filled a page.
    let mut look_again = false;
    // What an earlier link had in hand and did not see through is sent again.
    in_hand.clear();
    loop {
        look_again |= queue.overflowed.swap(false, Ordering::AcqRel);
        while submits.len() < WINDOW
            && let Some(m) = backlog.pop_front()
        {
            // A message cancelled or replaced since it was queued here goes as it is now.
            let id = m.id;
            let Some(m) = center.current(m) else {
                in_hand.remove(&id);
                continue;
            };
            let Some(submit) = submit_of(&m) else {
                tracing::warn!(id = m.id, "message cannot be put in a submit_sm; undeliverable");
                center.commit_soon(Change::Final(m, SmsState::Undeliverable)).await;
                continue;
            };
            submits.push(async move { (client.submit_sm(submit).await, m) });
        }
        tokio::select! {
            // Submit outcomes first: a receipt is only ever read after its submit's answer.
            biased;
            _ = stop.cancelled() => return ClientError::Closed,
            Some((outcome, m)) = submits.next(), if !submits.is_empty() => match outcome {
                Ok(remote_id) => {
                    if forwarded.len() >= FORWARDED_IN_MEMORY {
                        forwarded.clear(); // their receipts find the messages in the database
                    }
                    forwarded.insert(remote_id.clone(), m.clone());
                    let id = m.id;
                    settling.push(async move { (center.commit(Change::Forwarded(id, remote_id)).await, id) });
                }
                Err(ClientError::Status(status)) if is_permanent(status) => {
                    tracing::info!(id = m.id, peer = %operator, ?status, "peer refused the message");
                    in_hand.remove(&m.id);
                    let state =
                        if status == CommandStatus::EsmeRinvexpiry { SmsState::Expired } else { SmsState::Undeliverable };
                    center.commit_soon(Change::Final(m, state)).await;
                }
                Err(ClientError::Status(status)) => {
                    tracing::debug!(id = m.id, ?status, "peer cannot take the message now; later");
                    in_hand.remove(&m.id);
                }
                Err(e) => {
                    in_hand.remove(&m.id);
                    return e;
                }
            },
            Some((_, id)) = settling.next(), if !settling.is_empty() => {
                in_hand.remove(&id);
            }
            Some(m) = queue.messages.recv(), if backlog.len() < WINDOW => {
                if in_hand.insert(m.id) {
                    backlog.push_back(m);
                }
            }
            Some(_) = receipts.next(), if !receipts.is_empty() => {}
            r = incoming.recv(), if receipts.len() < WINDOW => {
                let Some(deliver) = r else { return ClientError::Closed };
                if let Some(receipt) = read_receipt(operator, deliver) {
                    let known = forwarded.remove(&receipt.0.message_id);
                    // A task of its own: settling may hold the database connection, and this
                    // loop awaits the database in its rescan; a future only polled here
                    // would then wait for the loop while the loop waits for it.
                    receipts.push(tokio::spawn(settle(node.clone(), operator.to_owned(), known, receipt)));
                }
            }
            // The database, for what the queue did not carry: at once while some may be
            // waiting there, at every rescan in any case.
            _ = std::future::ready(()), if look_again && backlog.is_empty() && submits.len() < WINDOW / 2 => {
                look_again = take_queued(node, operator, in_hand, &mut backlog).await;
            }
            _ = rescan.tick(), if backlog.is_empty() && submits.len() < WINDOW / 2 => {
                look_again = take_queued(node, operator, in_hand, &mut backlog).await;
            }
        }
    }
}

/// Messages queued in the database for `operator` that the link does not have in hand, into
/// `backlog`; true if the page was full of new ones, so more may be waiting.
async fn take_queued(
    node: &Node,
    operator: &str,
    in_hand: &mut HashSet<i64>,
    backlog: &mut VecDeque<StoredSms>,
) -> bool {
    const PAGE: usize = WINDOW * 4;
    match node.store().queued_interconnect(operator, node.now(), PAGE as i64).await {
        Ok(queued) => {
            let full = queued.len() == PAGE;
            let before = backlog.len();
            for m in queued {
                if in_hand.insert(m.id) {
                    backlog.push_back(m);
                }
            }
            // A full page of what is already in hand says nothing new: wait for the rescan.
            full && backlog.len() > before
        }
        Err(e) => {
            tracing::warn!(error = %e, "interconnect queue");
            false
        }
    }
}

/// The receipt a peer's deliver_sm carries; anything else is refused.
fn read_receipt(operator: &str, incoming: Incoming) -> Option<(Receipt, Incoming)> {
    let text = String::from_utf8_lossy(incoming.deliver.short_message().as_ref()).into_owned();
    let is_receipt = u8::from(incoming.deliver.esm_class) & 0x3C == 0x04;
    match Receipt::parse(&text) {
        Ok(r) if is_receipt => Some((r, incoming)),
        _ => {
            tracing::warn!(peer = operator, "interconnect peer sent a deliver_sm that is no receipt; refused");
            incoming.answer(CommandStatus::EsmeRinvesmclass);
            None
        }
    }
}

/// Settles the message a peer's receipt is about (`known` if this link forwarded it), then
/// answers the peer: ESME_ROK once the outcome is committed; "try again later" if the receipt
/// names a message not yet known here.
async fn settle(node: Node, operator: String, known: Option<StoredSms>, (receipt, incoming): (Receipt, Incoming)) {
    let operator = operator.as_str();
    let Some(state) = state_of_receipt(receipt.state) else {
        incoming.answer(CommandStatus::EsmeRok); // an intermediate notification
        return;
    };
    let message = match known {
        Some(m) => Some(m),
        None => node.store().forwarded_as(operator, &receipt.message_id).await.ok().flatten(),
    };
    let Some(m) = message else {
        tracing::debug!(peer = operator, remote_id = receipt.message_id, "receipt for an unknown message");
        incoming.answer(CommandStatus::EsmeRxTAppn);
        return;
    };
    let status = match node.sms().commit(Change::Final(m, state)).await {
        Ok(_) => CommandStatus::EsmeRok,
        Err(_) => CommandStatus::EsmeRxTAppn,
    };
    incoming.answer(status);
}

/// Statuses after which sending the same message again is pointless.
fn is_permanent(status: CommandStatus) -> bool {
    !matches!(
        status,
        CommandStatus::EsmeRthrottled
            | CommandStatus::EsmeRmsgqful
            | CommandStatus::EsmeRsyserr
            | CommandStatus::EsmeRxTAppn
            | CommandStatus::EsmeRsubmitfail
    )
}

/// The submit_sm that hands `m` to the serving operator: same sender, coding, user data
/// header; a receipt always requested, since it settles the message here.
///
/// The validity period is the end this SMS center holds, as an absolute time, so that it does
/// not start again at the next hop: whatever the message waited here is gone from it there.
///
/// A body longer than a short_message field (254 octets) travels whole in the
/// message_payload TLV, as SMS centers hand long messages to one another: one submit, one
/// message id and one receipt for the whole, and the serving SMS center, which knows its
/// radio side, splits it for the handset. Split here into sar_* segments, the message would
/// become several at the peer, each with its own receipt and none of them this message's.
fn submit_of(m: &StoredSms) -> Option<SubmitSm> {
    let source_ton = if m.source_ton == 5 { Ton::Alphanumeric } else { Ton::from(m.source_ton) };
    let builder = SubmitSm::builder()
        .source_addr_ton(source_ton)
        .source_addr(m.source_addr.parse::<COctetString<1, 21>>().ok()?)
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(m.destination.parse().ok()?)
        .esm_class(EsmClass::from(m.esm_class & 0xC0))
        .protocol_id(m.protocol_id)
        .data_coding(DataCoding::from(m.data_coding))
        .validity_period(absolute_time(m.expires_at).parse().ok()?)
        .registered_delivery(RegisteredDelivery::request_all());
    let builder = if m.payload.len() <= MAX_SHORT_MESSAGE {
        builder.short_message(OctetString::from_slice(&m.payload).ok()?)
    } else {
        builder.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(
            AnyOctetString::from_vec(m.payload.clone()),
        )))
    };
    Some(
        builder
            // Our id: if we crash before recording the peer's answer, the peer takes the
            // message we send again as the repeat it is.
            .push_tlv(MessageSubmissionRequestTlvValue::Other {
                tag: TlvTag::Other(super::TLV_ORIGIN_REF),
                value: AnyOctetString::from_string(m.id.to_string()),
            })
            .build(),
    )
}

/// The longest short_message field (SMPP 3.4 §5.2.21: sm_length 0–254).
const MAX_SHORT_MESSAGE: usize = 254;

/// The absolute SMPP time `YYMMDDhhmmsst00+` (UTC) of Unix milliseconds `ms`.
fn absolute_time(ms: i64) -> String {
    let t = smsc::receipt::ReceiptTime::from_unix_ms(ms);
    let (second, tenth) = (ms.div_euclid(1000).rem_euclid(60), ms.rem_euclid(1000) / 100);
    format!("{t}{second:02}{tenth}00+")
}

#[cfg(test)]
mod tests {
    #[test]
    fn absolute_time_reads_back() {
        for ms in [1_795_453_500_000, 1_795_453_561_900, 951_868_799_000] {
            let field = super::absolute_time(ms);
            assert_eq!(smsc::time::parse_smpp_time(&field, 0), Ok(Some(ms)), "{field}");
        }
        assert_eq!(super::absolute_time(1_795_453_561_900), "261123170601900+");
    }
}
