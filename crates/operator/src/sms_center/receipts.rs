//! Delivery receipts to the ESMEs that asked for them: a deliver_sm in the customary text
//! format (`smsc::receipt`) with the receipted_message_id and message_state TLVs, sent to one
//! of the ESME's receiver or transceiver sessions. A receipt counts as sent only once the ESME
//! answered ESME_ROK; until then it stays owed in the database and is tried again, also
//! after a restart and whenever the ESME binds again.
//!
//! The receipt's `text:` field shows the first 20 characters of the message's text, decoded
//! from its data coding (a user data header skipped, UCS-2 read as UCS-2), and the whole
//! receipt is written in the ESME's alphabet for data_coding 0 ([`smsc::DefaultAlphabet`]:
//! GSM septets, or Latin-1), a character that alphabet lacks as `?`.
//!
//! A message a terminal submitted over the air ([`StoredSms::submitting_terminal`]) gets its
//! receipt as an SMS-STATUS-REPORT instead, handed to the terminal's air session
//! ([`super::SmsCenter::report_to_terminal`]); the same rules hold, with the terminal's
//! acknowledgement in place of the ESME's answer and its attach in place of a bind.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use smsc::DefaultAlphabet;
use smsc::receipt::{Receipt, ReceiptState, ReceiptTime};
use smsc::rusmpp::CommandStatus;
use smsc::rusmpp::pdus::DeliverSm;
use smsc::rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use smsc::rusmpp::types::{COctetString, OctetString};
use smsc::rusmpp::values::{EsmClass, MessageState, Npi, Ton};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Change;
use super::long_message::UDHI;
use crate::Node;
use crate::store::sms::{SmsState, StoredSms};

/// Receipts on their way at once, at most.
const IN_FLIGHT: usize = 512;
/// How often owed receipts are looked for in the database.
const RESCAN: Duration = Duration::from_secs(1);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run(node: Node, mut settled: mpsc::Receiver<StoredSms>, stop: CancellationToken) {
    let alphabets = Arc::new(alphabets(&node).await);
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut sending = FuturesUnordered::new();
    let mut rescan = tokio::time::interval(RESCAN);
    // The last look found more owed receipts than the window took: look again as soon as half
    // the window is free, not a second later. Under load the live queue overflows and the
    // database is where receipts wait; one look a second would drain at most IN_FLIGHT a second.
    let mut more_owed = false;
    loop {
        let look_now = more_owed && sending.len() < IN_FLIGHT / 2;
        let look = tokio::select! {
            _ = stop.cancelled() => return,
            Some(id) = sending.next(), if !sending.is_empty() => {
                in_flight.remove(&id);
                false
            }
            Some(m) = settled.recv(), if sending.len() < IN_FLIGHT => {
                if reachable(&node, &m) && in_flight.insert(m.id) {
                    sending.push(send(node.clone(), alphabets.clone(), m));
                }
                false
            }
            _ = rescan.tick(), if !look_now && sending.len() < IN_FLIGHT => true,
            _ = std::future::ready(()), if look_now => true,
        };
        if look {
            let room = IN_FLIGHT - sending.len();
            let Some(owed) = owed(&node, room, &in_flight).await else { continue };
            more_owed = owed.len() == room;
            for m in owed {
                in_flight.insert(m.id);
                sending.push(send(node.clone(), alphabets.clone(), m));
            }
        }
    }
}

/// Each ESME's meaning of data_coding 0, by system_id, as the SMPP server reads them at start;
/// GSM for those not listed.
async fn alphabets(node: &Node) -> HashMap<String, DefaultAlphabet> {
    match node.store().esmes().await {
        Ok(esmes) => esmes.into_iter().map(|a| (a.system_id, a.default_alphabet)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "ESME alphabets not read; receipts in GSM septets");
            HashMap::new()
        }
    }
}

/// Sends the receipt of `m` and records it sent once acknowledged; its id.
async fn send(node: Node, alphabets: Arc<HashMap<String, DefaultAlphabet>>, m: StoredSms) -> i64 {
    let id = m.id;
    let alphabet = alphabets.get(&m.system_id).copied().unwrap_or_default();
    if send_receipt(&node, &m, alphabet).await {
        node.sms().commit(Change::ReceiptSent(id)).await.ok();
    }
    id
}

/// Owed receipts from the database that can go now and are not on their way yet, at most
/// `room`; `None` if the database could not be read.
async fn owed(node: &Node, room: usize, in_flight: &HashSet<i64>) -> Option<Vec<StoredSms>> {
    match node.store().owed_receipts(room as i64 * 4).await {
        Ok(owed) => {
            Some(owed.into_iter().filter(|m| !in_flight.contains(&m.id) && reachable(node, m)).take(room).collect())
        }
        Err(e) => {
            tracing::warn!(error = %e, "owed receipts");
            None
        }
    }
}

/// Whether the submitter of `m` can take its receipt now: the ESME is bound, or the terminal
/// attached.
fn reachable(node: &Node, m: &StoredSms) -> bool {
    match m.submitting_terminal() {
        Some((msisdn, _)) => node.sms().is_attached(msisdn),
        None => node.sms().receivers.is_bound(&m.system_id),
    }
}

/// Sends the receipt of `m`, in `alphabet`; true once the ESME (or terminal) acknowledged it.
async fn send_receipt(node: &Node, m: &StoredSms, alphabet: DefaultAlphabet) -> bool {
    if let Some((msisdn, _)) = m.submitting_terminal() {
        return node.sms().report_to_terminal(msisdn, m.clone(), ANSWER_TIMEOUT).await;
    }
    let Some(pdu) = receipt_pdu(m, alphabet) else {
        tracing::warn!(id = m.id, "receipt cannot be encoded; not sent");
        return true;
    };
    match node.sms().receivers.deliver(&m.system_id, pdu, ANSWER_TIMEOUT).await {
        Ok(CommandStatus::EsmeRok) => true,
        Ok(status) => {
            tracing::debug!(id = m.id, ?status, "ESME refused a receipt; trying again later");
            false
        }
        Err(e) => {
            tracing::debug!(id = m.id, error = %e, "receipt not delivered; trying again later");
            false
        }
    }
}

pub(crate) fn receipt_state(state: SmsState) -> ReceiptState {
    match state {
        SmsState::Delivered => ReceiptState::Delivered,
        SmsState::Expired => ReceiptState::Expired,
        SmsState::Undeliverable => ReceiptState::Undeliverable,
        SmsState::Deleted => ReceiptState::Deleted,
        SmsState::Queued | SmsState::Forwarded => ReceiptState::Enroute,
    }
}

/// The first 20 characters of `m`'s text, for the receipt's `text:` field: after the user
/// data header if it has one, decoded by its data coding; none for binary data.
fn receipt_text(m: &StoredSms) -> String {
    let header = if m.esm_class & UDHI != 0 { m.payload.first().map_or(0, |&l| 1 + l as usize) } else { 0 };
    let body = m.payload.get(header..).unwrap_or_default();
    let text = match m.data_coding {
        0 => sms::gsm7::decode(body),
        1 | 3 => body.iter().map(|&b| char::from(b)).collect(),
        8 => {
            let units: Vec<u16> = body.chunks_exact(2).map(|u| u16::from_be_bytes([u[0], u[1]])).collect();
            String::from_utf16_lossy(&units)
        }
        _ => String::new(),
    };
    text.chars().take(20).collect()
}

/// `text` as an ESME reads data_coding 0: GSM septets (one an octet) or Latin-1; a character
/// the alphabet lacks becomes `?`.
fn in_alphabet(text: &str, alphabet: DefaultAlphabet) -> Vec<u8> {
    let mut buf = [0u8; 4];
    text.chars()
        .flat_map(|c| match alphabet {
            DefaultAlphabet::Gsm => sms::gsm7::encode(c.encode_utf8(&mut buf)).unwrap_or_else(|_| vec![b'?']),
            DefaultAlphabet::Latin1 => vec![u8::try_from(u32::from(c)).unwrap_or(b'?')],
        })
        .collect()
}

/// The deliver_sm carrying `m`'s receipt, in `alphabet`: from the number the message went
/// to, to its sender.
fn receipt_pdu(m: &StoredSms, alphabet: DefaultAlphabet) -> Option<DeliverSm> {
    let state = receipt_state(m.state);
    let text = receipt_text(m);
    let receipt = Receipt {
        message_id: m.id.to_string(),
        submitted: 1,
        delivered: u16::from(m.state == SmsState::Delivered),
        submit_date: ReceiptTime::from_unix_ms(m.submitted_at),
        done_date: ReceiptTime::from_unix_ms(m.done_at.unwrap_or(m.submitted_at)),
        state,
        error: 0,
        text,
    };
    let body = in_alphabet(&receipt.to_string(), alphabet);
    let body = OctetString::from_slice(&body[..body.len().min(254)]).ok()?;
    let source_ton = if m.source_ton == 5 { Ton::Alphanumeric } else { Ton::from(m.source_ton) };
    Some(
        DeliverSm::builder()
            .source_addr_ton(Ton::International)
            .source_addr_npi(Npi::Isdn)
            .source_addr(m.destination.parse::<COctetString<1, 21>>().ok()?)
            .dest_addr_ton(source_ton)
            .destination_addr(m.source_addr.parse::<COctetString<1, 21>>().ok()?)
            // 0x04: "SMSC delivery receipt". (rusmpp's EsmClass::default() is not 0: it sets an
            // ANSI-41 bit, so the value is built from its octet.)
            .esm_class(EsmClass::from(0x04))
            .short_message(body)
            .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(m.id.to_string().parse().ok()?))
            .push_tlv(MessageDeliveryRequestTlvValue::MessageState(MessageState::from(state.message_state())))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sms::NewSms;

    #[test]
    fn a_receipt_reads_back_as_one() {
        let m = StoredSms::new(
            42,
            NewSms {
                system_id: "bank".into(),
                source_addr: "MyBank".into(),
                source_ton: 5,
                destination: "4790000001".into(),
                serving_operator: "opb".into(),
                route: "interconnect",
                esm_class: 0,
                protocol_id: 0,
                data_coding: 0,
                registered_delivery: 1,
                payload: b"Your code is 123456, valid 5 minutes".to_vec(),
                submitted_at: 1_795_453_500_000,
                expires_at: 1_795_453_500_000 + 3_600_000,
                next_attempt_at: 0,
                origin_ref: None,
                scheduled_at: 0,
            },
        );
        let m = StoredSms { state: SmsState::Delivered, done_at: Some(1_795_453_560_000), ..m };
        let pdu = receipt_pdu(&m, DefaultAlphabet::Gsm).unwrap();
        assert_eq!(u8::from(pdu.esm_class), 0x04);
        let r = Receipt::parse(std::str::from_utf8(pdu.short_message().as_ref()).unwrap()).unwrap();
        assert_eq!((r.message_id.as_str(), r.state, r.delivered), ("42", ReceiptState::Delivered, 1));
        assert_eq!(r.text, "Your code is 123456,");
        assert_eq!((pdu.source_addr.as_str(), pdu.destination_addr.as_str()), ("4790000001", "MyBank"));
    }

    /// A delivered message of `data_coding` and `esm_class` with `payload`.
    fn delivered(esm_class: u8, data_coding: u8, payload: Vec<u8>) -> StoredSms {
        let m = StoredSms::new(
            7,
            NewSms {
                system_id: "bank".into(),
                source_addr: "MyBank".into(),
                source_ton: 5,
                destination: "4790000001".into(),
                serving_operator: "opa".into(),
                route: "local",
                esm_class,
                protocol_id: 0,
                data_coding,
                registered_delivery: 1,
                payload,
                submitted_at: 1_795_453_500_000,
                expires_at: 1_795_453_500_000 + 3_600_000,
                next_attempt_at: 0,
                scheduled_at: 0,
                origin_ref: None,
            },
        );
        StoredSms { state: SmsState::Delivered, done_at: Some(1_795_453_560_000), ..m }
    }

    /// The `text:` field of the receipt `m` gets, as an ESME of `alphabet` reads it.
    fn text_field(m: &StoredSms, alphabet: DefaultAlphabet) -> String {
        let pdu = receipt_pdu(m, alphabet).unwrap();
        let body = pdu.short_message().as_ref();
        let text = match alphabet {
            DefaultAlphabet::Gsm => sms::gsm7::decode(body),
            DefaultAlphabet::Latin1 => body.iter().map(|&b| char::from(b)).collect(),
        };
        Receipt::parse(&text).unwrap().text
    }

    #[test]
    fn the_text_field_skips_the_header_and_decodes_the_coding_in_the_esmes_alphabet() {
        // A part of a concatenated message: the header is no text.
        let septets = sms::gsm7::encode("Part one: @£$_{}[]~€ and more").unwrap();
        let part = delivered(UDHI, 0, [&[5, 0, 3, 9, 2, 1][..], &septets].concat());
        assert_eq!(text_field(&part, DefaultAlphabet::Gsm), "Part one: @£$_{}[]~€");
        // The same in Latin-1: what Latin-1 lacks (€) is a question mark.
        assert_eq!(text_field(&part, DefaultAlphabet::Latin1), "Part one: @£$_{}[]~?");
        let pdu = receipt_pdu(&part, DefaultAlphabet::Gsm).unwrap();
        assert!(pdu.short_message().as_ref().iter().all(|&b| b < 0x80), "GSM septets, one an octet");
        // UCS-2: decoded, then written in the ESME's alphabet.
        let ucs2 = "Hei Åse, 5 € – 日本".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let m = delivered(0, 8, ucs2);
        assert_eq!(text_field(&m, DefaultAlphabet::Gsm), "Hei Åse, 5 € ? ??");
        assert_eq!(text_field(&m, DefaultAlphabet::Latin1), "Hei Åse, 5 ? ? ??");
        // Binary data shows nothing; a header longer than the payload is no panic.
        assert_eq!(text_field(&delivered(0, 4, vec![0xFF; 30]), DefaultAlphabet::Gsm), "");
        assert_eq!(text_field(&delivered(UDHI, 0, vec![200, 1]), DefaultAlphabet::Gsm), "");
    }
}
