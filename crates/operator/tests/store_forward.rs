//! Store and forward without holes, on real nodes over real sockets: two operator nodes (opa,
//! opb) with SMPP interconnects to each other, a bank bound at opa, and terminals on the air
//! interface. Both nodes run on one manual clock, which the tests move instead of sleeping.
//!
//! What must hold: a long message (message_payload, or `sar_*` segments) reaches the handset
//! as concatenated SMS it puts back together, also across the interconnect, and one longer
//! than 255 SMS is refused at submit; a forwarded message whose peer never answers expires
//! with an EXPIRED receipt; the validity period is the same instant at both nodes however
//! long the message waited at the first; a message an interconnect brought for a number the
//! node does not serve is refused and never forwarded again, and its submitter gets a failed
//! receipt.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use numport_core::ManualClock;
use operator::config::InterconnectPeer;
use operator::store::sms::{SmsState, StoredSms};
use operator::{Node, OperatorConfig};
use sms::air::{CAUSE_OK, Frame};
use smsc::BindMode;
use smsc::client::{Client, ClientError, Incoming};
use smsc::receipt::{Receipt, ReceiptState};
use smsc::rusmpp::CommandStatus;
use smsc::rusmpp::pdus::SubmitSm;
use smsc::rusmpp::tlvs::MessageSubmissionRequestTlvValue;
use smsc::rusmpp::types::{AnyOctetString, COctetString, EmptyOrFullCOctetString, OctetString};
use smsc::rusmpp::values::{DataCoding, EsmClass, MessagePayload, Npi, RegisteredDelivery, Ton};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The SIM of 4791000005, a number opb serves (range 4791), and of 4790000002 at opa.
const OPB_IMSI: &str = "242020000000005";
const OPB_NUMBER: &str = "4791000005";
const OPA_IMSI: &str = "242010000000002";
const OPA_NUMBER: &str = "4790000002";
const K_SIM: &[u8] = b"k-sim-store-forward";

/// `name` as [`sms_node`] makes it, with the SIMs of both test numbers.
async fn node(
    name: &str,
    dir: &Path,
    clock: &ManualClock,
    ported: &[(&str, &str)],
    tweak: impl FnOnce(&mut OperatorConfig),
) -> Node {
    let node = sms_node(name, dir, clock, ported, tweak).await;
    node.store().upsert_sim(OPB_IMSI, OPB_NUMBER, K_SIM).await.unwrap();
    node.store().upsert_sim(OPA_IMSI, OPA_NUMBER, K_SIM).await.unwrap();
    node
}

/// The interconnect to `operator`'s SMS center at `addr`, as `system_id`.
fn link(operator: &str, addr: SocketAddr, system_id: &str) -> InterconnectPeer {
    InterconnectPeer {
        operator: op(operator),
        addr,
        system_id: system_id.into(),
        password: "icpw".into(),
        tls: None,
        enquire_link_ms: operator::config::DEFAULT_ENQUIRE_LINK_MS,
    }
}

/// opa and opb, each linked to the other, served; opb's replica changed by `opb_ported`.
struct Pair {
    clock: ManualClock,
    opa: Node,
    opb: Node,
    opa_smpp: SocketAddr,
    opa_air: SocketAddr,
    opb_air: SocketAddr,
    stop_opa: CancellationToken,
    stop_opb: CancellationToken,
    _dirs: [tempfile::TempDir; 2],
}

impl Pair {
    async fn start(opb_ported: &[(&str, &str)], tweak: impl Fn(&mut OperatorConfig)) -> Pair {
        let clock = ManualClock::new(T0);
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let ((a_listener, a_addr), (b_listener, b_addr)) = (smpp_listener().await, smpp_listener().await);
        let opa = node("opa", dirs[0].path(), &clock, &[], |c| {
            c.interconnect = vec![link("opb", b_addr, "ic-opa")];
            tweak(c);
        })
        .await;
        let opb = node("opb", dirs[1].path(), &clock, opb_ported, |c| {
            c.interconnect = vec![link("opa", a_addr, "ic-opb")];
            tweak(c);
        })
        .await;
        let (stop_opa, stop_opb) = (CancellationToken::new(), CancellationToken::new());
        let opa_air = serve(&opa, a_listener, &stop_opa).await;
        let opb_air = serve(&opb, b_listener, &stop_opb).await;
        Pair { clock, opa, opb, opa_smpp: a_addr, opa_air, opb_air, stop_opa, stop_opb, _dirs: dirs }
    }

    /// The bank bound at opa as a transceiver: it submits, and its receipts arrive.
    async fn bank(&self) -> (Client, mpsc::Receiver<Incoming>) {
        Client::bind(self.opa_smpp, "bank", "s3cret", BindMode::Transceiver).await.unwrap()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.stop_opa.cancel();
        self.stop_opb.cancel();
    }
}

/// A submit_sm from MyBank to `destination`, every receipt asked for, with `validity`
/// (`""`: the default), GSM text in `septets`: in short_message if it fits, else in
/// message_payload.
fn submit_sm(destination: &str, septets: &[u8], validity: &str) -> smsc::rusmpp::pdus::builders::SubmitSmBuilder {
    let b = SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr("MyBank".parse::<COctetString<1, 21>>().unwrap())
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(destination.parse::<COctetString<1, 21>>().unwrap())
        .esm_class(EsmClass::from(0))
        .data_coding(DataCoding::from(0))
        .validity_period(validity.parse::<EmptyOrFullCOctetString<17>>().unwrap())
        .registered_delivery(RegisteredDelivery::request_all());
    if septets.len() <= 254 {
        b.short_message(OctetString::from_slice(septets).unwrap())
    } else {
        b.push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(MessagePayload::new(AnyOctetString::from_vec(
            septets.to_vec(),
        ))))
    }
}

async fn submit(bank: &Client, submit: SubmitSm) -> i64 {
    bank.submit_sm(submit).await.unwrap().parse().unwrap()
}

async fn stored(node: &Node, id: i64) -> StoredSms {
    node.store().sms(id).await.unwrap().unwrap_or_else(|| panic!("message {id} not recorded"))
}

/// Polls message `id` at `node` until `f` holds, for at most 10 s.
async fn wait_sms(node: &Node, id: i64, what: &str, f: impl Fn(&StoredSms) -> bool) -> StoredSms {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = stored(node, id).await;
        if f(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "message {id}: no {what} within 10 s; last {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next deliver_sm to the bank, a delivery receipt; answered ESME_ROK.
async fn next_receipt(incoming: &mut mpsc::Receiver<Incoming>) -> Receipt {
    let d = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
        .await
        .expect("no receipt within 10 s")
        .expect("bank connection open");
    assert_eq!(u8::from(d.deliver.esm_class), 0x04, "an SMSC delivery receipt");
    let text = sms::gsm7::decode(d.deliver.short_message().as_ref());
    let receipt = Receipt::parse(&text).unwrap_or_else(|e| panic!("receipt {text:?}: {e}"));
    d.answer(CommandStatus::EsmeRok);
    receipt
}

/// A terminal attached on the air interface at `air` with `imsi`.
struct Terminal {
    stream: tokio::net::TcpStream,
}

impl Terminal {
    async fn attach(air: SocketAddr, imsi: &str) -> Terminal {
        let mut stream = tokio::net::TcpStream::connect(air).await.unwrap();
        let k = operator::air::attach_terminal(&mut stream, imsi, K_SIM).await.unwrap();
        assert!(k.is_ok(), "attach refused: {k:?}");
        Terminal { stream }
    }

    /// Receives SMS-DELIVERs, acknowledging each, until `reassembler` completes a message:
    /// its text, and the SMS it took.
    async fn receive_message(&mut self) -> (String, Vec<sms::SmsDeliver>) {
        use tokio::io::AsyncWriteExt;
        let mut r = sms::Reassembler::new(4);
        let mut parts = Vec::new();
        loop {
            let read = operator::air::read_frame(&mut self.stream);
            let frame = tokio::time::timeout(Duration::from_secs(10), read).await.expect("no SMS within 10 s");
            let Some(Frame::Deliver { reference, tpdu }) = frame.unwrap() else { panic!("no delivery") };
            let sms::Tpdu::Deliver(d) = sms::Tpdu::decode_mt(&tpdu).unwrap() else { panic!("not an SMS-DELIVER") };
            self.stream.write_all(&Frame::DeliverAck { reference, cause: CAUSE_OK }.encode()).await.unwrap();
            let whole = r.receive_deliver(&d);
            parts.push(d);
            if let Some(text) = whole {
                return (text, parts);
            }
        }
    }
}

/// The concatenation element of an SMS, which must have one with a 16-bit reference.
fn concat(d: &sms::SmsDeliver) -> sms::Concat {
    let c = d.user_data.header.as_ref().and_then(sms::UserDataHeader::concat).expect("a concatenation element");
    assert!(c.wide, "16-bit reference (IEI 0x08)");
    c
}

#[tokio::test]
async fn a_long_message_reaches_the_handset_in_parts_also_across_the_interconnect() {
    let pair = Pair::start(&[], |_| {}).await;
    let (bank, mut receipts) = pair.bank().await;
    let text = "Kontoutskrift for november: @£$_{}[]~€ og ÆØÅ æøå. ".repeat(9);
    let septets = sms::gsm7::encode(&text).unwrap();
    assert!(septets.len() > 3 * 153);

    // Local: a message_payload of four SMS and more, to opa's own subscriber.
    let id = submit(&bank, submit_sm(OPA_NUMBER, &septets, "").build()).await;
    assert_eq!(stored(&pair.opa, id).await.payload, septets, "stored whole, as submitted");
    let mut handset = Terminal::attach(pair.opa_air, OPA_IMSI).await;
    let (read, parts) = handset.receive_message().await;
    assert_eq!((read.as_str(), parts.len()), (text.as_str(), septets.len().div_ceil(152)));
    wait_sms(&pair.opa, id, "delivery", |m| m.state == SmsState::Delivered).await;
    let receipt = next_receipt(&mut receipts).await;
    assert_eq!((receipt.message_id, receipt.state), (id.to_string(), ReceiptState::Delivered));

    // Across: the same text to opb's subscriber goes in one submit_sm's message_payload.
    let across = submit(&bank, submit_sm(OPB_NUMBER, &septets, "").build()).await;
    let forwarded = wait_sms(&pair.opa, across, "forward", |m| m.state == SmsState::Forwarded).await;
    let at_opb: i64 = forwarded.remote_id.unwrap().parse().unwrap();
    assert_eq!(stored(&pair.opb, at_opb).await.payload, septets, "one message at the peer, whole");
    let mut handset = Terminal::attach(pair.opb_air, OPB_IMSI).await;
    let (read, parts) = handset.receive_message().await;
    assert_eq!(read, text);
    assert_eq!(parts.len(), septets.len().div_ceil(152));
    let references: Vec<u16> = parts.iter().map(|d| concat(d).reference).collect();
    assert!(references.iter().all(|&r| r == references[0]), "one reference for all parts");
    assert_eq!(parts.iter().map(|d| concat(d).seq).collect::<Vec<_>>(), (1..=parts.len() as u8).collect::<Vec<_>>());
    wait_sms(&pair.opb, at_opb, "delivery", |m| m.state == SmsState::Delivered).await;
    let receipt = next_receipt(&mut receipts).await;
    assert_eq!((receipt.message_id, receipt.state), (across.to_string(), ReceiptState::Delivered));
    assert_eq!(receipt.text, text.chars().take(20).collect::<String>());
    bank.unbind().await.unwrap();
}

#[tokio::test]
async fn sar_segments_reach_the_handset_as_one_message_and_too_long_is_refused_at_submit() {
    let pair = Pair::start(&[], |c| c.smpp.max_pdu = 64 * 1024).await;
    let (bank, _receipts) = pair.bank().await;
    // The ESME splits it itself and says so in sar_* TLVs; parts sent in reverse order.
    let segments = ["Part one of two, ", "and part two."];
    for (i, part) in segments.iter().enumerate().rev() {
        let pdu = submit_sm(OPB_NUMBER, &sms::gsm7::encode(part).unwrap(), "")
            .push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(0x4242))
            .push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(2))
            .push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(i as u8 + 1))
            .build();
        let id = submit(&bank, pdu).await;
        let m = stored(&pair.opa, id).await;
        assert_eq!(m.esm_class & 0x40, 0x40, "stored with a user data header");
    }
    let mut handset = Terminal::attach(pair.opb_air, OPB_IMSI).await;
    let (read, parts) = handset.receive_message().await;
    assert_eq!(read, segments.concat());
    assert!(parts.iter().all(|d| concat(d).reference == 0x4242 && concat(d).total == 2));

    // Incomplete or inconsistent sar_* TLVs are refused.
    let partial = submit_sm(OPB_NUMBER, b"x", "").push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(1)).build();
    assert!(matches!(bank.submit_sm(partial).await, Err(ClientError::Status(CommandStatus::EsmeRmissingtlv))));
    let beyond = submit_sm(OPB_NUMBER, b"x", "")
        .push_tlv(MessageSubmissionRequestTlvValue::SarMsgRefNum(1))
        .push_tlv(MessageSubmissionRequestTlvValue::SarTotalSegments(2))
        .push_tlv(MessageSubmissionRequestTlvValue::SarSegmentSeqnum(3))
        .build();
    assert!(matches!(bank.submit_sm(beyond).await, Err(ClientError::Status(CommandStatus::EsmeRinvtlvval))));

    // 255 SMS is the most (134 septets each, beside the concatenation and authentication
    // elements); one septet more is refused with ESME_RINVMSGLEN, nothing stored.
    let before = pair.opa.store().max_sms_id().await.unwrap();
    let longest = submit(&bank, submit_sm(OPA_NUMBER, &[b'a'; 255 * 134], "").build()).await;
    assert_eq!(longest, before + 255, "its 255 parts' references are kept");
    let too_long = submit_sm(OPA_NUMBER, &[b'a'; 255 * 134 + 1], "").build();
    assert!(matches!(bank.submit_sm(too_long).await, Err(ClientError::Status(CommandStatus::EsmeRinvmsglen))));
    assert_eq!(pair.opa.store().max_sms_id().await.unwrap(), longest);
    bank.unbind().await.unwrap();
}

#[tokio::test]
async fn a_forwarded_message_the_peer_never_settles_expires_with_an_expired_receipt() {
    let pair = Pair::start(&[], |_| {}).await;
    let (bank, mut receipts) = pair.bank().await;
    // Two seconds of validity; opb takes it, then stops before any receipt.
    let id = submit(&bank, submit_sm(OPB_NUMBER, b"Never confirmed", "000000000002000R").build()).await;
    wait_sms(&pair.opa, id, "forward", |m| m.state == SmsState::Forwarded).await;
    pair.stop_opb.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Until its validity and the grace for the peer's receipt have passed, it waits.
    pair.clock.advance_ms(2_000 + operator::sms_center::scheduler::FORWARDED_GRACE.as_millis() as i64 - 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(stored(&pair.opa, id).await.state, SmsState::Forwarded);
    pair.clock.advance_ms(1);
    let m = wait_sms(&pair.opa, id, "expiry", |m| m.state == SmsState::Expired).await;
    assert_eq!(m.done_at, Some(T0 + 2_000 + operator::sms_center::scheduler::FORWARDED_GRACE.as_millis() as i64));
    let receipt = next_receipt(&mut receipts).await;
    assert_eq!((receipt.message_id, receipt.state, receipt.delivered), (id.to_string(), ReceiptState::Expired, 0));
    bank.unbind().await.unwrap();
}

#[tokio::test]
async fn the_validity_period_is_absolute_across_the_interconnect() {
    let clock = ManualClock::new(T0);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    // opb's SMPP port, free until opb starts: opa's link fails until then.
    let (b_listener, b_addr) = smpp_listener().await;
    drop(b_listener);
    let (a_listener, a_addr) = smpp_listener().await;
    let opa = node("opa", dirs[0].path(), &clock, &[], |c| c.interconnect = vec![link("opb", b_addr, "ic-opa")]).await;
    let stop = CancellationToken::new();
    serve(&opa, a_listener, &stop).await;
    let bank = Client::bind_transmitter(a_addr, "bank", "s3cret").await.unwrap();
    let id = submit(&bank, submit_sm(OPB_NUMBER, b"One hour", "000000010000000R").build()).await;
    assert_eq!(stored(&opa, id).await.expires_at, T0 + 3_600_000);

    // Twenty minutes later opb is reachable; the message arrives there with 40 minutes left.
    clock.advance_ms(20 * 60_000);
    let opb = node("opb", dirs[1].path(), &clock, &[], |_| {}).await;
    serve(&opb, TcpListener::bind(b_addr).await.unwrap(), &stop).await;
    let forwarded = wait_sms(&opa, id, "forward", |m| m.state == SmsState::Forwarded).await;
    let at_opb = stored(&opb, forwarded.remote_id.unwrap().parse().unwrap()).await;
    assert_eq!(at_opb.submitted_at, T0 + 20 * 60_000);
    assert_eq!(at_opb.expires_at, T0 + 3_600_000, "the same end, not an hour from its arrival");
    bank.unbind().await.unwrap();
    stop.cancel();
}

#[tokio::test]
async fn a_message_caught_between_two_centers_is_refused_not_forwarded_again() {
    // opb's replica is stale: it still has 4791000005 ported to opa, while opa routes it to
    // opb. Forwarded on, the message would go round between them.
    // Both nodes list opb's account at opa as an interconnect one; opb's own links send TLV
    // 0x1401, which is what opb goes by here.
    let pair = Pair::start(&[(OPB_NUMBER, "opa")], |c| c.smpp.interconnect_accounts = vec!["ic-opb".into()]).await;
    let (bank, mut receipts) = pair.bank().await;
    let id = submit(&bank, submit_sm(OPB_NUMBER, b"Round and round", "").build()).await;
    let m = wait_sms(&pair.opa, id, "a final state", |m| m.state.is_final()).await;
    assert_eq!(m.state, SmsState::Undeliverable);
    let receipt = next_receipt(&mut receipts).await;
    assert_eq!((receipt.message_id, receipt.state), (id.to_string(), ReceiptState::Undeliverable));
    assert_eq!(pair.opb.store().max_sms_id().await.unwrap(), 0, "opb stored nothing");
    bank.unbind().await.unwrap();

    // A peer's SMS center that sends no TLV 0x1401 is known by its account: what it hands
    // over for a number served elsewhere is refused too, what is for opa's own is taken.
    let peer = Client::bind_transmitter(pair.opa_smpp, "ic-opb", "icpw").await.unwrap();
    let elsewhere = peer.submit("4791000009", OPB_NUMBER, b"Back to you").await;
    assert!(matches!(elsewhere, Err(ClientError::Status(CommandStatus::EsmeRinvdstadr))), "{elsewhere:?}");
    assert!(peer.submit("4791000009", OPA_NUMBER, b"For opa").await.is_ok());
    peer.unbind().await.unwrap();
}

/// The bank's gateway as Python's smpplib: a UCS-2 message in message_payload, then a GSM
/// text in two sar_* segments (second first), each receipt asked for; prints each message id,
/// then the receipts' short messages in hex as they come.
const SMPPLIB_LONG_SCRIPT: &str = r#"
import sys, time, smpplib.client, smpplib.consts
c = smpplib.client.Client(sys.argv[1], int(sys.argv[2]), timeout=1)
c.connect()
c.bind_transceiver(system_id="bank", password="s3cret")
receipts = []
def sent(pdu):
    print("ID", pdu.message_id.decode(), flush=True)
def received(pdu):
    receipts.append(pdu)
    print("RECEIPT", pdu.short_message.hex(), flush=True)
c.set_message_sent_handler(sent)
c.set_message_received_handler(received)
common = dict(source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="MyBank",
              dest_addr_ton=smpplib.consts.SMPP_TON_INTL, destination_addr=sys.argv[3],
              registered_delivery=True)
c.send_message(data_coding=8, message_payload=sys.argv[4].encode("utf-16-be"), **common)
c.read_once()
for seq, part in [(2, sys.argv[6]), (1, sys.argv[5])]:
    c.send_message(short_message=part.encode("ascii"), sar_msg_ref_num=0x0707, sar_total_segments=2,
                   sar_segment_seqnum=seq, **common)
    c.read_once()
deadline = time.time() + 10
while len(receipts) < 3 and time.time() < deadline:
    try:
        c.read_once()
    except smpplib.exceptions.ConnectionError:
        break
    except Exception:
        pass
c.unbind()
c.disconnect()
print("DONE", flush=True)
"#;

#[tokio::test]
async fn smpplib_sends_long_messages_that_the_handset_reads_whole_and_gets_their_receipts() {
    if !testkit::python_module("smpplib", "pip install smpplib") {
        return;
    }
    let pair = Pair::start(&[], |_| {}).await;
    let mut handset = Terminal::attach(pair.opa_air, OPA_IMSI).await;
    let ucs2 = "Привет из Тромсё! Северное сияние танцует над фьордом сегодня вечером. Приезжай!".to_owned();
    assert!(ucs2.encode_utf16().count() > 70 && ucs2.encode_utf16().count() * 2 <= 260);
    let parts = ["Your statement is ready: balance 1000 NOK, ", "due 2026-12-31."];
    let mut script = tokio::process::Command::new("python3")
        .args(["-c", SMPPLIB_LONG_SCRIPT, &pair.opa_smpp.ip().to_string(), &pair.opa_smpp.port().to_string()])
        .args([OPA_NUMBER, &ucs2, parts[0], parts[1]])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let (read, sms) = handset.receive_message().await;
    assert_eq!((read.as_str(), sms.len()), (ucs2.as_str(), 2), "UCS-2 in parts of 66 units");
    assert!(sms.iter().all(|d| d.dcs == sms::DataCoding::UCS2));
    let (read, sms) = handset.receive_message().await;
    assert_eq!(read, parts.concat());
    assert!(sms.iter().all(|d| concat(d).reference == 0x0707));

    let out = tokio::time::timeout(Duration::from_secs(20), async {
        let mut stdout = String::new();
        use tokio::io::AsyncReadExt;
        script.stdout.take().unwrap().read_to_string(&mut stdout).await.unwrap();
        let status = script.wait().await.unwrap();
        (status, stdout)
    })
    .await
    .expect("smpplib finishes");
    let (status, stdout) = out;
    assert!(status.success(), "{stdout}");
    let ids: Vec<&str> = stdout.lines().filter_map(|l| l.strip_prefix("ID ")).collect();
    assert_eq!(ids.len(), 3, "{stdout}");
    let receipts: Vec<Receipt> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("RECEIPT "))
        .map(|h| Receipt::parse(&sms::gsm7::decode(&hex::decode(h).unwrap())).unwrap())
        .collect();
    assert_eq!(receipts.len(), 3, "{stdout}");
    let text_of = |id: &str| receipts.iter().find(|r| r.message_id == id).map(|r| r.text.clone()).unwrap();
    // The UCS-2 message's text, decoded and written in GSM septets: Cyrillic is not in the GSM
    // alphabet, so as question marks, but one a character; the sar_* segments' text without
    // the header they were given.
    assert_eq!(
        text_of(ids[0]),
        ucs2.chars().take(20).map(|c| if c == ' ' || c == '!' { c } else { '?' }).collect::<String>()
    );
    assert_eq!(text_of(ids[1]), parts[1]);
    assert_eq!(text_of(ids[2]), parts[0].chars().take(20).collect::<String>());
    assert!(receipts.iter().all(|r| r.state == ReceiptState::Delivered));
}
