//! submit_multi, data_sm, query_sm, cancel_sm, replace_sm, outbind and interface_version on
//! the wire: PDUs written byte by byte from SMPP 3.4/5.0 (not by the crate the server decodes
//! with), against a server whose handler keeps nothing ([`smsc::ChannelHandler`]). The bind
//! states, the responses each one gets, and the errors SMPP names.

mod common;

use std::time::Duration;

use common::{Server, pdu};
use smsc::{EsmeAccount, SmppConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const GENERIC_NACK: u32 = 0x8000_0000;
const QUERY_SM: u32 = 0x03;
const SUBMIT_SM: u32 = 0x04;
const REPLACE_SM: u32 = 0x07;
const CANCEL_SM: u32 = 0x08;
const OUTBIND: u32 = 0x0B;
const SUBMIT_MULTI: u32 = 0x21;
const DATA_SM: u32 = 0x103;
const RESP: u32 = 0x8000_0000;

const ESME_RINVCMDID: u32 = 0x03;
const ESME_RINVBNDSTS: u32 = 0x04;
const ESME_RINVDLNAME: u32 = 0x34;
const ESME_RINVSCHED: u32 = 0x61;
const ESME_RINVEXPIRY: u32 = 0x62;
const ESME_RQUERYFAIL: u32 = 0x67;
const ESME_RCANCELFAIL: u32 = 0x11;
const ESME_RREPLACEFAIL: u32 = 0x13;
const ESME_RINVTLVVAL: u32 = 0xC4;
const ESME_RINVNUMDESTS: u32 = 0x33;

/// The server, with a bank.
async fn start() -> Server {
    common::start(SmppConfig::default(), [EsmeAccount::new("bank", "s3cret", 1000).unwrap()]).await
}

/// A PDU read back: command_id, command_status, sequence_number and body.
#[derive(Debug)]
struct Pdu {
    id: u32,
    status: u32,
    seq: u32,
    body: Vec<u8>,
}

async fn read_pdu(c: &mut TcpStream) -> Pdu {
    let mut head = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut head)).await.expect("an answer").unwrap();
    let w = |i: usize| u32::from_be_bytes(head[i..i + 4].try_into().unwrap());
    let mut body = vec![0u8; (w(0) as usize).saturating_sub(16)];
    c.read_exact(&mut body).await.unwrap();
    Pdu { id: w(4), status: w(8), seq: w(12), body }
}

/// Sends `request` and reads its answer: (command_id, command_status, sequence_number).
async fn ask(c: &mut TcpStream, command_id: u32, seq: u32, body: &[u8]) -> Pdu {
    c.write_all(&pdu(command_id, seq, body)).await.unwrap();
    read_pdu(c).await
}

fn cstr(b: &mut Vec<u8>, s: &str) {
    b.extend(s.as_bytes());
    b.push(0);
}

/// A bind_transmitter (0x02) or bind_receiver (0x01) body of `bank` with `interface_version`.
fn bind_body(interface_version: u8) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, "bank");
    cstr(&mut b, "s3cret");
    cstr(&mut b, ""); // system_type
    b.extend([interface_version, 0, 0]);
    cstr(&mut b, ""); // address_range
    b
}

async fn bound(addr: std::net::SocketAddr, bind_id: u32) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let r = ask(&mut c, bind_id, 1, &bind_body(0x34)).await;
    assert_eq!((r.id, r.status), (bind_id | RESP, 0));
    c
}

/// The submit_sm fields from service_type to destination (to `destination`).
fn addresses(b: &mut Vec<u8>, destination: &str) {
    cstr(b, ""); // service_type
    b.extend([5, 0]);
    cstr(b, "MyBank");
    b.extend([1, 1]);
    cstr(b, destination);
}

/// The fields from schedule_delivery_time to short_message, with `schedule` and `validity`
/// written as given.
fn message_fields(b: &mut Vec<u8>, schedule: &str, validity: &str, text: &[u8]) {
    cstr(b, schedule);
    cstr(b, validity);
    b.extend([1, 0, 0, 0, text.len() as u8]);
    b.extend(text);
}

fn submit_sm(schedule: &str, validity: &str, text: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    addresses(&mut b, "4790000001");
    b.extend([0, 0, 0]); // esm_class, protocol_id, priority_flag
    message_fields(&mut b, schedule, validity, text);
    b
}

/// A message_payload TLV (0x0424).
fn payload_tlv(payload: &[u8]) -> Vec<u8> {
    let mut t = 0x0424u16.to_be_bytes().to_vec();
    t.extend((payload.len() as u16).to_be_bytes());
    t.extend(payload);
    t
}

/// A submit_multi from MyBank to SME `numbers` and distribution lists `lists`.
fn submit_multi(numbers: &[&str], lists: &[&str], validity: &str, text: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, "");
    b.extend([5, 0]);
    cstr(&mut b, "MyBank");
    b.push((numbers.len() + lists.len()) as u8);
    for n in numbers {
        b.extend([1, 1, 1]); // dest_flag SME, TON, NPI
        cstr(&mut b, n);
    }
    for l in lists {
        b.push(2); // dest_flag distribution list
        cstr(&mut b, l);
    }
    b.extend([0, 0, 0]);
    message_fields(&mut b, "", validity, text);
    b
}

fn data_sm(payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    addresses(&mut b, "4790000001");
    b.extend([0, 1, 0]); // esm_class, registered_delivery, data_coding
    b.extend(payload_tlv(payload));
    b
}

fn query_sm(id: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, id);
    b.extend([5, 0]);
    cstr(&mut b, "MyBank");
    b
}

fn cancel_sm(id: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(&mut b, id);
    b.extend([5, 0]);
    cstr(&mut b, "MyBank");
    b.extend([1, 1]);
    cstr(&mut b, "4790000001");
    b
}

fn replace_sm(id: &str, text: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, id);
    b.extend([5, 0]);
    cstr(&mut b, "MyBank");
    message_fields(&mut b, "", "", text);
    // message_fields wrote registered_delivery, replace_if_present, data_coding,
    // sm_default_msg_id; replace_sm has only registered_delivery and sm_default_msg_id.
    let cut = b.len() - text.len() - 5;
    b.drain(cut + 1..cut + 3);
    b
}

fn outbind() -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, "smsc");
    cstr(&mut b, "pw");
    b
}

/// Every message operation, each answered in its own response type with `status`.
async fn each_operation_answers(c: &mut TcpStream, status: u32) {
    let requests = [
        (SUBMIT_MULTI, submit_multi(&["4790000001"], &[], "", b"hi")),
        (DATA_SM, data_sm(b"hi")),
        (QUERY_SM, query_sm("1")),
        (CANCEL_SM, cancel_sm("1")),
        (REPLACE_SM, replace_sm("1", b"hi")),
        (SUBMIT_SM, submit_sm("", "", b"hi")),
    ];
    for (seq, (id, body)) in (10..).zip(requests) {
        let r = ask(c, id, seq, &body).await;
        assert_eq!((r.id, r.status, r.seq), (id | RESP, status, seq), "command {id:#x}");
    }
}

#[tokio::test]
async fn before_a_bind_and_on_a_receiver_each_operation_gets_rinvbndsts_in_its_own_response() {
    let s = start().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    each_operation_answers(&mut c, ESME_RINVBNDSTS).await;
    // outbind is an SMS center's request to an ESME: generic_nack, bound or not.
    let r = ask(&mut c, OUTBIND, 20, &outbind()).await;
    assert_eq!((r.id, r.status, r.seq), (GENERIC_NACK, ESME_RINVCMDID, 20));
    // A receiver may not send messages or ask about them.
    let mut rx = bound(s.addr, 0x01).await;
    each_operation_answers(&mut rx, ESME_RINVBNDSTS).await;
    let r = ask(&mut rx, OUTBIND, 21, &outbind()).await;
    assert_eq!((r.id, r.status), (GENERIC_NACK, ESME_RINVCMDID));
    // An unknown command stays generic_nack, and the session goes on.
    let r = ask(&mut rx, 0x0000_0999, 22, &[]).await;
    assert_eq!((r.id, r.status), (GENERIC_NACK, ESME_RINVCMDID));
    let r = ask(&mut rx, 0x15, 23, &[]).await;
    assert_eq!((r.id, r.status, r.seq), (0x8000_0015, 0, 23));
}

/// The sc_interface_version TLV (0x0210) in a bind_*_resp body, if present.
fn sc_interface_version(body: &[u8]) -> Option<u8> {
    let system_id_end = body.iter().position(|&b| b == 0)? + 1;
    match &body[system_id_end..] {
        [] => None,
        [0x02, 0x10, 0x00, 0x01, v] => Some(*v),
        other => panic!("unexpected TLVs {other:02x?}"),
    }
}

#[tokio::test]
async fn the_bind_answer_carries_the_interface_version_negotiated() {
    let s = start().await;
    for (asked, answered) in [(0x34, Some(0x34)), (0x50, Some(0x50)), (0x33, None), (0x00, None)] {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        let r = ask(&mut c, 0x09, 1, &bind_body(asked)).await;
        assert_eq!((r.id, r.status), (0x8000_0009, 0), "interface_version {asked:#x}");
        assert_eq!(sc_interface_version(&r.body), answered, "interface_version {asked:#x}: {:02x?}", r.body);
    }
    // A refused bind carries none.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let mut wrong = bind_body(0x34);
    wrong[5..11].copy_from_slice(b"wrong!");
    let r = ask(&mut c, 0x02, 1, &wrong).await;
    assert_eq!((r.id, r.status, sc_interface_version(&r.body)), (0x8000_0002, 0x0E, None));
}

#[tokio::test]
async fn malformed_times_and_a_body_given_twice_are_refused_in_the_submits_own_response() {
    let mut s = start().await;
    let mut c = bound(s.addr, 0x02).await;
    // Fields the decoder cannot take (a time must be 16 characters or empty): the submit's own
    // response with the status SMPP names, not generic_nack.
    let r = ask(&mut c, SUBMIT_SM, 2, &submit_sm("", "5", b"hi")).await;
    assert_eq!((r.id, r.status, r.seq), (SUBMIT_SM | RESP, ESME_RINVEXPIRY, 2));
    let r = ask(&mut c, SUBMIT_SM, 3, &submit_sm("7R", "", b"hi")).await;
    assert_eq!((r.id, r.status, r.seq), (SUBMIT_SM | RESP, ESME_RINVSCHED, 3));
    let r = ask(&mut c, SUBMIT_MULTI, 4, &submit_multi(&["4790000001"], &[], "0000", b"hi")).await;
    assert_eq!((r.id, r.status, r.seq), (SUBMIT_MULTI | RESP, ESME_RINVEXPIRY, 4));
    // short_message and message_payload both: refused.
    let mut twice = submit_sm("", "", b"hi");
    twice.extend(payload_tlv(b"hello"));
    let r = ask(&mut c, SUBMIT_SM, 5, &twice).await;
    assert_eq!((r.id, r.status, r.seq), (SUBMIT_SM | RESP, ESME_RINVTLVVAL, 5));
    let mut twice = submit_multi(&["4790000001"], &[], "", b"hi");
    twice.extend(payload_tlv(b"hello"));
    let r = ask(&mut c, SUBMIT_MULTI, 6, &twice).await;
    assert_eq!((r.id, r.status), (SUBMIT_MULTI | RESP, ESME_RINVTLVVAL));
    let mut twice = replace_sm("1", b"hi");
    twice.extend(payload_tlv(b"hello"));
    let r = ask(&mut c, REPLACE_SM, 7, &twice).await;
    assert_eq!((r.id, r.status), (REPLACE_SM | RESP, ESME_RINVTLVVAL));
    // No destination at all.
    let r = ask(&mut c, SUBMIT_MULTI, 8, &submit_multi(&[], &[], "", b"hi")).await;
    assert_eq!((r.id, r.status), (SUBMIT_MULTI | RESP, ESME_RINVNUMDESTS));
    assert!(s.submitted.try_recv().is_err(), "nothing reached the handler");
    // A well-formed submit on the same session still goes through.
    let r = ask(&mut c, SUBMIT_SM, 9, &submit_sm("", "000001000000000R", b"hi")).await;
    assert_eq!((r.id, r.status), (SUBMIT_SM | RESP, 0));
}

/// A submit_multi_resp body: message_id and the unsuccess_smes (address, status).
fn multi_resp(body: &[u8]) -> (String, Vec<(String, u32)>) {
    let cstring = |at: &mut usize| {
        let end = *at + body[*at..].iter().position(|&b| b == 0).unwrap();
        let s = String::from_utf8(body[*at..end].to_vec()).unwrap();
        *at = end + 1;
        s
    };
    let mut at = 0;
    let id = cstring(&mut at);
    let n = body[at];
    at += 1;
    let mut refused = Vec::new();
    for _ in 0..n {
        at += 2; // TON, NPI
        let address = cstring(&mut at);
        refused.push((address, u32::from_be_bytes(body[at..at + 4].try_into().unwrap())));
        at += 4;
    }
    assert_eq!(at, body.len(), "no TLVs");
    (id, refused)
}

#[tokio::test]
async fn submit_multi_and_data_sm_reach_the_handler_as_one_submit_each() {
    let mut s = start().await;
    let mut c = bound(s.addr, 0x09).await;
    let multi = submit_multi(&["4790000001", "4791000002"], &["staff"], "", b"Hello all");
    let r = ask(&mut c, SUBMIT_MULTI, 2, &multi).await;
    assert_eq!((r.id, r.status), (SUBMIT_MULTI | RESP, 0));
    let (id, refused) = multi_resp(&r.body);
    // This SMS center keeps no distribution lists.
    assert_eq!(refused, [("staff".to_owned(), ESME_RINVDLNAME)]);
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(tokio::time::timeout(Duration::from_secs(2), s.submitted.recv()).await.unwrap().unwrap());
    }
    got.sort_by(|a, b| a.submit.destination_addr.as_str().cmp(b.submit.destination_addr.as_str()));
    assert_eq!(got[0].submit.destination_addr.as_str(), "4790000001");
    assert_eq!(got[1].submit.destination_addr.as_str(), "4791000002");
    for m in &got {
        assert_eq!((m.system_id.as_str(), m.submit.source_addr.as_str()), ("bank", "MyBank"));
        assert_eq!(m.submit.short_message().as_ref(), b"Hello all");
    }
    assert!(got.iter().any(|m| m.message_id == id), "the answer names the first destination's message: {id}");

    // data_sm: its body is the message_payload TLV.
    let r = ask(&mut c, DATA_SM, 3, &data_sm(b"A data_sm body")).await;
    assert_eq!((r.id, r.status), (DATA_SM | RESP, 0));
    let m = tokio::time::timeout(Duration::from_secs(2), s.submitted.recv()).await.unwrap().unwrap();
    assert_eq!(r.body, [m.message_id.as_bytes(), &[0]].concat(), "data_sm_resp names the message");
    assert_eq!(m.submit.destination_addr.as_str(), "4790000001");
    assert!(m.submit.short_message().as_ref().is_empty());
    let payload = m.submit.tlvs().iter().find_map(|t| match t.value() {
        Some(smsc::rusmpp::tlvs::TlvValue::MessagePayload(p)) => Some(p.value.as_ref().to_vec()),
        _ => None,
    });
    assert_eq!(payload.as_deref(), Some(&b"A data_sm body"[..]));
}

#[tokio::test]
async fn a_handler_that_keeps_nothing_answers_queries_cancels_and_replaces_as_failed() {
    let s = start().await;
    let mut c = bound(s.addr, 0x02).await;
    let r = ask(&mut c, QUERY_SM, 2, &query_sm("1")).await;
    assert_eq!((r.id, r.status), (QUERY_SM | RESP, ESME_RQUERYFAIL));
    let r = ask(&mut c, CANCEL_SM, 3, &cancel_sm("1")).await;
    assert_eq!((r.id, r.status), (CANCEL_SM | RESP, ESME_RCANCELFAIL));
    let r = ask(&mut c, REPLACE_SM, 4, &replace_sm("1", b"new")).await;
    assert_eq!((r.id, r.status), (REPLACE_SM | RESP, ESME_RREPLACEFAIL));
    let r = ask(&mut c, OUTBIND, 5, &outbind()).await;
    assert_eq!((r.id, r.status), (GENERIC_NACK, ESME_RINVCMDID));
    drop(s);
}
