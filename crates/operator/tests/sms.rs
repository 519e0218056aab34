//! The node's SMS center: a bank binds with `smpplib` and submits; each message is routed by
//! the node's portability replica and recorded with its route before it is acknowledged. Then
//! store-and-forward end to end over real sockets: delivery to a terminal on the air interface
//! and the bank's delivery receipt (smpplib and the Rust client), validity expiry, retries with
//! back-off, a terminal refusing (memory full), group commit under concurrent submits, and the
//! same on PostgreSQL when `NUMPORT_TEST_POSTGRES_URL` is set (under `CI=true` it must be).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use numport_core::{Clock, ManualClock};
use numport_db::testing::TempDatabase;
use operator::store::sms::{SmsState, StoredSms};
use operator::{Listeners, Node, OperatorConfig};
use smsc::BindMode;
use smsc::client::{Client, ClientError, Incoming};
use smsc::receipt::{Receipt, ReceiptState};
use smsc::rusmpp::CommandStatus;
use smsc::rusmpp::pdus::SubmitSm;
use smsc::rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use smsc::rusmpp::values::{Npi, RegisteredDelivery, Ton};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BANK_SCRIPT: &str = r#"
import sys, smpplib.client, smpplib.consts
c = smpplib.client.Client(sys.argv[1], int(sys.argv[2]), timeout=5)
c.connect()
c.bind_transmitter(system_id="bank", password="s3cret")
for number in sys.argv[3:]:
    pdu = c.send_message(source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="MyBank",
                         dest_addr_ton=smpplib.consts.SMPP_TON_INTL, destination_addr=number,
                         short_message=b"Your code is 123456", registered_delivery=True)
    try:
        r = c.read_pdu()
        print(number, r.status, (r.message_id or b"").decode())
    except smpplib.exceptions.PDUError as e:
        print(number, e.args[1], "-")
c.unbind()
"#;

/// Node `opa` with no reachable clearinghouse, its replica loaded from disk (ranges 4790 opa,
/// 4791 opb, plus `ported` numbers), and the ESME `bank` / `s3cret`. Keep the directories.
async fn opa_node(ported: &[(&str, &str)]) -> (Node, [tempfile::TempDir; 2]) {
    opa_node_with(ported, Arc::new(ManualClock::new(T0)), |_| {}).await
}

/// [`opa_node`] on `clock`, its configuration changed by `tweak` last (a PostgreSQL
/// `database_url`, retry times).
async fn opa_node_with(
    ported: &[(&str, &str)],
    clock: Arc<dyn Clock>,
    tweak: impl FnOnce(&mut OperatorConfig),
) -> (Node, [tempfile::TempDir; 2]) {
    let npdb = tempfile::tempdir().unwrap();
    let ops = [("opa", "D001"), ("opb", "D002")]
        .map(|(n, r)| npdb::Operator { name: n.parse().unwrap(), routing_number: r.parse().unwrap() });
    let ranges = [("4790", "opa"), ("4791", "opb")].map(|(p, o)| (p.parse().unwrap(), o.parse().unwrap()));
    let mut index = npdb::Index::new(ops, ranges).unwrap();
    for (number, serving) in ported {
        index.apply(&number.parse().unwrap(), &serving.parse().unwrap()).unwrap();
    }
    replica::disk::install_index(npdb.path(), &index, ported.len() as i64, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = OperatorConfig {
        database_url: format!("sqlite://{}/operator-{{name}}.db", dir.path().display()),
        npdb: replica::ReplicaConfig {
            data_dir: Some(npdb.path().to_owned()),
            ..config("opa", "http://127.0.0.1:9").npdb
        },
        ..config("opa", "http://127.0.0.1:9")
    };
    tweak(&mut config);
    let node = Node::open(config, clock).await.unwrap();
    node.store().upsert_esme(&smsc::EsmeAccount::new("bank", "s3cret", 100).unwrap(), T0).await.unwrap();
    (node, [npdb, dir])
}

#[tokio::test]
async fn submits_are_routed_by_the_replica_and_recorded_before_the_answer() {
    if !python_has_smpplib() {
        return;
    }
    // The replica's data, as a previous run left it: 4790000001 was ported from opa to opb.
    let (node, _dirs) = opa_node(&[("4790000001", "opb")]).await;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smpp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = smpp.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(node.clone().serve(
        Listeners { http, enum_dns: None, smpp: Some(smpp), smpp_tls: None, air: None, gy: None },
        stop.clone(),
    ));

    let out = tokio::process::Command::new("python3")
        .args(["-c", BANK_SCRIPT, &addr.ip().to_string(), &addr.port().to_string()])
        .args(["4790000001", "4790000002", "4791000005", "4799000000x"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<Vec<&str>> = stdout.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(answers.len(), 4, "{stdout}");
    // Bad destination: ESME_RINVDSTADR (0x0B), nothing recorded.
    assert_eq!(answers[3][1], "11", "{stdout}");
    let expected =
        [("4790000001", "opb", "interconnect"), ("4790000002", "opa", "local"), ("4791000005", "opb", "interconnect")];
    for (answer, (number, serving, route)) in answers.iter().zip(expected) {
        assert_eq!((answer[0], answer[1]), (number, "0"), "{stdout}");
        let id: i64 = answer[2].parse().unwrap();
        let sms = node.store().sms(id).await.unwrap().expect("recorded before the answer");
        assert_eq!(
            (sms.destination.as_str(), sms.serving_operator.as_str(), sms.route.as_str()),
            (number, serving, route)
        );
        assert_eq!((sms.system_id.as_str(), sms.state.as_str()), ("bank", "queued"));
        assert_eq!(sms.payload, b"Your code is 123456");
    }
    stop.cancel();
    server.await.unwrap().unwrap();
}

/// A terminal on the air interface: attach, then read frames.
struct Terminal {
    stream: tokio::net::TcpStream,
}

impl Terminal {
    async fn send(&mut self, f: sms::air::Frame) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(&f.encode()).await.unwrap();
    }

    async fn recv(&mut self) -> Option<sms::air::Frame> {
        let read = operator::air::read_frame(&mut self.stream);
        tokio::time::timeout(std::time::Duration::from_secs(5), read).await.ok()?.unwrap()
    }

    async fn attach(addr: std::net::SocketAddr, imsi: &str, k_sim: &[u8]) -> (Terminal, sms::air::Frame) {
        let mut t = Terminal { stream: tokio::net::TcpStream::connect(addr).await.unwrap() };
        t.send(sms::air::Frame::Attach { imsi: imsi.into() }).await;
        let Some(sms::air::Frame::Challenge { nonce }) = t.recv().await else { panic!("no challenge") };
        t.send(sms::air::Frame::Response { mac: sms::air::attach_proof(k_sim, &nonce, imsi) }).await;
        let answer = t.recv().await.unwrap();
        (t, answer)
    }
}

#[tokio::test]
async fn a_local_message_reaches_the_attached_terminal_over_the_air() {
    let r = Running::start(opa_node(&[]).await).await;
    let (node, smpp_addr, air_addr) = (r.node.clone(), r.smpp, r.air);

    // A wrong key is refused.
    let (_, refused) = Terminal::attach(air_addr, "242010000000002", b"wrong key").await;
    assert_eq!(refused, sms::air::Frame::Rejected { cause: sms::air::CAUSE_AUTH_FAILED });

    // The bank submits while the terminal is away; the message waits, then arrives on attach.
    let bank = smsc::client::Client::bind_transmitter(smpp_addr, "bank", "s3cret").await.unwrap();
    let id: i64 = bank.submit("MyBank", "4790000002", b"Your code is 123456").await.unwrap().parse().unwrap();
    bank.unbind().await.unwrap();
    assert_eq!(node.store().sms(id).await.unwrap().unwrap().state, SmsState::Queued);
    let (mut t, attached) = Terminal::attach(air_addr, "242010000000002", b"k-sim-2").await;
    assert_eq!(attached, sms::air::Frame::Attached { msisdn: "4790000002".into() });
    let Some(sms::air::Frame::Deliver { reference, tpdu }) = t.recv().await else { panic!("no delivery") };
    let sms::Tpdu::Deliver(d) = sms::Tpdu::decode_mt(&tpdu).unwrap() else { panic!("not an SMS-DELIVER") };
    assert_eq!(d.originator.value, "MyBank");
    assert_eq!(d.user_data.text(d.dcs), "Your code is 123456");
    assert_eq!(node.store().sms(id).await.unwrap().unwrap().state, SmsState::Queued, "not delivered before the ack");
    t.send(sms::air::Frame::DeliverAck { reference, cause: sms::air::CAUSE_OK }).await;

    // A second message, submitted while attached, arrives at once.
    let bank = smsc::client::Client::bind_transmitter(smpp_addr, "bank", "s3cret").await.unwrap();
    bank.submit("MyBank", "4790000002", b"Second").await.unwrap();
    let Some(sms::air::Frame::Deliver { reference: r2, tpdu }) = t.recv().await else { panic!("no second delivery") };
    let sms::Tpdu::Deliver(d) = sms::Tpdu::decode_mt(&tpdu).unwrap() else { panic!() };
    assert_eq!(d.user_data.text(d.dcs), "Second");
    t.send(sms::air::Frame::DeliverAck { reference: r2, cause: sms::air::CAUSE_OK }).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(node.store().sms(id).await.unwrap().unwrap().state, SmsState::Delivered);
    assert_eq!(node.store().sms(r2 as i64).await.unwrap().unwrap().state, SmsState::Delivered);
    drop(t);
    r.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Store-and-forward end to end: receipts, expiry, retries, refusals, group commit, PostgreSQL.
// ---------------------------------------------------------------------------------------------

/// The SIM of 4790000002, a number opa serves.
const IMSI: &str = "242010000000002";
const NUMBER: &str = "4790000002";
const K_SIM: &[u8] = b"k-sim-2";

/// A node serving SMPP and the air interface on ports of its own.
struct Running {
    node: Node,
    smpp: SocketAddr,
    air: SocketAddr,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), operator::OperatorError>>,
    _dirs: [tempfile::TempDir; 2],
}

impl Running {
    /// Serves `node`, with the SIM of [`NUMBER`] registered.
    async fn start((node, dirs): (Node, [tempfile::TempDir; 2])) -> Running {
        node.store().upsert_sim(IMSI, NUMBER, K_SIM).await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let smpp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let air = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (smpp_addr, air_addr) = (smpp.local_addr().unwrap(), air.local_addr().unwrap());
        let stop = CancellationToken::new();
        let listeners = Listeners { http, enum_dns: None, smpp: Some(smpp), smpp_tls: None, air: Some(air), gy: None };
        let server = tokio::spawn(node.clone().serve(listeners, stop.clone()));
        Running { node, smpp: smpp_addr, air: air_addr, stop, server, _dirs: dirs }
    }

    /// The bank bound as a transceiver: it submits, and its receipts arrive on the receiver.
    async fn bank(&self) -> (Client, mpsc::Receiver<Incoming>) {
        Client::bind(self.smpp, "bank", "s3cret", BindMode::Transceiver).await.unwrap()
    }

    async fn attach(&self) -> Terminal {
        let (t, attached) = Terminal::attach(self.air, IMSI, K_SIM).await;
        assert_eq!(attached, sms::air::Frame::Attached { msisdn: NUMBER.into() });
        t
    }

    async fn sms(&self, id: i64) -> StoredSms {
        self.node.store().sms(id).await.unwrap().unwrap_or_else(|| panic!("message {id} not recorded"))
    }

    /// Polls message `id` until `f` holds, for at most `within`.
    async fn wait_sms(&self, id: i64, within: Duration, what: &str, f: impl Fn(&StoredSms) -> bool) -> StoredSms {
        let deadline = Instant::now() + within;
        loop {
            let m = self.sms(id).await;
            if f(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "message {id}: no {what} within {within:?}; last {m:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn commits(&self) -> u64 {
        let metrics = self.node.metrics().render();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("operator_sms_commits_total "))
            .map_or(0, |n| n.trim().parse::<f64>().unwrap() as u64)
    }

    async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("the node stops within 5 s")
            .unwrap()
            .unwrap();
    }
}

/// A submit_sm from MyBank to `destination`, every receipt asked for, with `validity`
/// (`""`: the default).
fn submit_sm(destination: &str, text: &[u8], validity: &str) -> SubmitSm {
    SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr("MyBank".parse::<COctetString<1, 21>>().unwrap())
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(destination.parse::<COctetString<1, 21>>().unwrap())
        .validity_period(validity.parse::<EmptyOrFullCOctetString<17>>().unwrap())
        .registered_delivery(RegisteredDelivery::request_all())
        .short_message(OctetString::from_slice(text).unwrap())
        .build()
}

async fn submit(bank: &Client, destination: &str, text: &[u8], validity: &str) -> i64 {
    bank.submit_sm(submit_sm(destination, text, validity)).await.unwrap().parse().unwrap()
}

/// The next deliver_sm to the bank, which must be a delivery receipt: the receipt, and the
/// deliver_sm to answer.
async fn next_receipt(incoming: &mut mpsc::Receiver<Incoming>, within: Duration) -> (Receipt, Incoming) {
    let d = tokio::time::timeout(within, incoming.recv())
        .await
        .unwrap_or_else(|_| panic!("no receipt within {within:?}"))
        .expect("bank connection open");
    assert_eq!(u8::from(d.deliver.esm_class), 0x04, "an SMSC delivery receipt");
    let text = String::from_utf8(d.deliver.short_message().as_ref().to_vec()).unwrap();
    (Receipt::parse(&text).unwrap_or_else(|e| panic!("receipt {text:?}: {e}")), d)
}

impl Terminal {
    /// The next frame, which must be an SMS-DELIVER: its reference and text.
    async fn expect_deliver(&mut self) -> (u32, String) {
        let Some(sms::air::Frame::Deliver { reference, tpdu }) = self.recv().await else { panic!("no delivery") };
        let sms::Tpdu::Deliver(d) = sms::Tpdu::decode_mt(&tpdu).unwrap() else { panic!("not an SMS-DELIVER") };
        (reference, d.user_data.text(d.dcs))
    }

    /// Whether a frame arrives within `d`.
    async fn quiet_for(&mut self, d: Duration) -> Option<sms::air::Frame> {
        let read = operator::air::read_frame(&mut self.stream);
        tokio::time::timeout(d, read).await.ok().and_then(|r| r.unwrap())
    }

    async fn ack(&mut self, reference: u32, cause: u8) {
        self.send(sms::air::Frame::DeliverAck { reference, cause }).await;
    }
}

const SMPPLIB_RECEIPT_SCRIPT: &str = r#"
import sys, time, smpplib.client, smpplib.consts
c = smpplib.client.Client(sys.argv[1], int(sys.argv[2]), timeout=1)
c.connect()
c.bind_transceiver(system_id="bank", password="s3cret")
receipts = []
def sent(pdu):
    print("ID", pdu.message_id.decode(), flush=True)
def received(pdu):
    receipts.append(pdu)
    rid = pdu.receipted_message_id
    rid = rid.decode() if isinstance(rid, bytes) else str(rid)
    print("RECEIPT", pdu.esm_class, rid, pdu.message_state, "|", pdu.short_message.decode(), flush=True)
c.set_message_sent_handler(sent)
c.set_message_received_handler(received)
c.send_message(source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="MyBank",
               dest_addr_ton=smpplib.consts.SMPP_TON_INTL, destination_addr=sys.argv[3],
               short_message=b"Your code is 123456", registered_delivery=True)
c.read_once()
deadline = time.time() + 8
# read_once answers the deliver_sm with deliver_sm_resp (ESME_ROK) after the handler.
while not receipts and time.time() < deadline:
    c.read_once()
c.unbind()
c.disconnect()
print("DONE", flush=True)
"#;

/// Whether Python's smpplib is there to play the bank's gateway (see [`testkit`] for what its
/// absence does).
#[track_caller]
fn python_has_smpplib() -> bool {
    testkit::python_module("smpplib", "pip install smpplib")
}

#[tokio::test]
async fn smpplib_gets_a_delivery_receipt_once_the_terminal_acknowledges() {
    if !python_has_smpplib() {
        return;
    }
    let r = Running::start(opa_node(&[]).await).await;
    smpplib_receipt_flow(&r).await;
    r.shutdown().await;
}

/// smpplib binds as a transceiver and submits to [`NUMBER`] asking for a receipt; the terminal
/// attaches and acknowledges; smpplib gets the receipt and answers it; the receipt is sent.
async fn smpplib_receipt_flow(r: &Running) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut bank = tokio::process::Command::new("python3")
        .args(["-c", SMPPLIB_RECEIPT_SCRIPT, &r.smpp.ip().to_string(), &r.smpp.port().to_string(), NUMBER])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(bank.stdout.take().unwrap()).lines();
    let mut stderr = bank.stderr.take().unwrap();
    let mut printed = Vec::new();
    let mut next_line = async || match tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await {
        Ok(Ok(Some(line))) => {
            printed.push(line.clone());
            line
        }
        outcome => {
            let _ = bank.start_kill();
            let mut err = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut err)).await;
            panic!("smpplib: {outcome:?} after printing {printed:?}; stderr: {err}");
        }
    };
    let line = next_line().await;
    let id: i64 = line.strip_prefix("ID ").unwrap_or_else(|| panic!("{line}")).parse().unwrap();
    assert_eq!(r.sms(id).await.state, SmsState::Queued);

    let mut t = r.attach().await;
    let (reference, text) = t.expect_deliver().await;
    assert_eq!((reference as i64, text.as_str()), (id, "Your code is 123456"));
    t.ack(reference, sms::air::CAUSE_OK).await;

    let line = next_line().await;
    let (head, body) = line.split_once(" | ").unwrap_or_else(|| panic!("{line}"));
    // esm_class 0x04, receipted_message_id, message_state 2 (DELIVERED).
    assert_eq!(head, format!("RECEIPT 4 {id} 2"), "{line}");
    assert!(body.starts_with(&format!("id:{id} ")), "{body}");
    assert!(body.contains("stat:DELIVRD"), "{body}");
    let receipt = Receipt::parse(body).unwrap();
    assert_eq!(
        (receipt.state, receipt.delivered, receipt.text.as_str()),
        (ReceiptState::Delivered, 1, "Your code is 123456")
    );
    assert_eq!(next_line().await, "DONE");
    let status = tokio::time::timeout(Duration::from_secs(5), bank.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{printed:?}");
    println!("smpplib printed: {printed:?}");

    let m = r.wait_sms(id, Duration::from_secs(3), "receipt sent", |m| m.receipt == "sent").await;
    assert_eq!(m.state, SmsState::Delivered);
}

#[tokio::test]
async fn a_message_whose_validity_ends_expires_with_an_expired_receipt() {
    let r = Running::start(opa_node_with(&[], Arc::new(numport_core::SystemClock), |_| {}).await).await;
    let (bank, mut incoming) = r.bank().await;
    // 2 s relative; the terminal never attaches.
    let id = submit(&bank, NUMBER, b"Your code is 654321", "000000000002000R").await;
    let m = r.sms(id).await;
    assert_eq!(m.state, SmsState::Queued);
    assert!((1_900..=2_100).contains(&(m.expires_at - m.submitted_at)), "{m:?}");

    let (receipt, d) = next_receipt(&mut incoming, Duration::from_secs(5)).await;
    assert_eq!((receipt.message_id, receipt.state, receipt.delivered), (id.to_string(), ReceiptState::Expired, 0));
    assert!(
        String::from_utf8_lossy(d.deliver.short_message().as_ref()).contains("stat:EXPIRED"),
        "{:?}",
        d.deliver.short_message()
    );
    d.answer(CommandStatus::EsmeRok);
    let m = r.wait_sms(id, Duration::from_secs(3), "receipt sent", |m| m.receipt == "sent").await;
    assert_eq!(m.state, SmsState::Expired);
    assert!(m.done_at.is_some_and(|t| t >= m.expires_at), "{m:?}");
    bank.unbind().await.unwrap();
    r.shutdown().await;
}

#[tokio::test]
async fn a_validity_period_already_over_is_refused_with_rinvexpiry() {
    let r = Running::start(opa_node_with(&[], Arc::new(numport_core::SystemClock), |_| {}).await).await;
    let (bank, _incoming) = r.bank().await;
    let before = r.node.store().max_sms_id().await.unwrap();
    // 2001-01-01 00:00:00 UTC.
    let refused = bank.submit_sm(submit_sm(NUMBER, b"Too late", "010101000000000+")).await;
    assert!(matches!(refused, Err(ClientError::Status(CommandStatus::EsmeRinvexpiry))), "{refused:?}");
    assert_eq!(r.node.store().max_sms_id().await.unwrap(), before, "nothing recorded");
    // A malformed one (month 13) too; a valid one still goes through on the same bind.
    let refused = bank.submit_sm(submit_sm(NUMBER, b"Bad", "011301000000000+")).await;
    assert!(matches!(refused, Err(ClientError::Status(CommandStatus::EsmeRinvexpiry))), "{refused:?}");
    let id = submit(&bank, NUMBER, b"In time", "000000000100000R").await;
    assert_eq!(r.sms(id).await.state, SmsState::Queued);
    bank.unbind().await.unwrap();
    r.shutdown().await;
}

#[tokio::test]
async fn an_absent_terminal_is_retried_with_doubling_back_off_then_served_at_once_on_attach() {
    let clock = ManualClock::new(T0);
    let r = Running::start(opa_node_with(&[], Arc::new(clock.clone()), retry_fast).await).await;
    let bank = Client::bind_transmitter(r.smpp, "bank", "s3cret").await.unwrap();
    let id = submit(&bank, NUMBER, b"Retry me", "").await;
    let m = r.sms(id).await;
    assert_eq!((m.attempts, m.next_attempt_at), (0, T0 + 200));

    // Each time the next attempt falls due, the scheduler (every 500 ms) finds the terminal
    // absent and puts the next one off, twice as long each time up to retry_max_ms: attempts
    // at T0 + 200, 400, 800, 1600, 2400.
    let started = Instant::now();
    let mut m = m;
    let mut waits = Vec::new();
    for attempt in 1..=4 {
        let due = m.next_attempt_at;
        clock.set_ms(due);
        m = r.wait_sms(id, Duration::from_secs(2), "retry", |m| m.attempts == attempt).await;
        assert_eq!(m.state, SmsState::Queued);
        waits.push(m.next_attempt_at - due);
    }
    assert_eq!(waits, [200, 400, 800, 800], "waits after each failed attempt");
    println!("4 retries in {:?}", started.elapsed());

    // The terminal attaches: the message comes at once, long before its next attempt time.
    let mut t = r.attach().await;
    let (reference, text) = t.expect_deliver().await;
    assert_eq!((reference as i64, text.as_str()), (id, "Retry me"));
    t.ack(reference, sms::air::CAUSE_OK).await;
    let m = r.wait_sms(id, Duration::from_secs(2), "delivery", |m| m.state == SmsState::Delivered).await;
    assert_eq!(m.attempts, 4);
    bank.unbind().await.unwrap();
    drop(t);
    r.shutdown().await;
}

/// The bank submits while the terminal is attached, and the terminal answers the delivery with
/// "memory full": the message stays queued with one attempt counted, its next attempt put off
/// by `retry_initial_ms` from `now`. The terminal, still attached, and the message id.
async fn memory_full_flow(r: &Running, now: numport_core::Millis) -> (Terminal, i64) {
    let mut t = r.attach().await;
    let bank = Client::bind_transmitter(r.smpp, "bank", "s3cret").await.unwrap();
    let id = submit(&bank, NUMBER, b"Memory full", "").await;
    bank.unbind().await.unwrap();
    let (reference, text) = t.expect_deliver().await;
    assert_eq!((reference as i64, text.as_str()), (id, "Memory full"));
    t.ack(reference, sms::air::CAUSE_MEMORY_FULL).await;
    let m = r.wait_sms(id, Duration::from_secs(2), "attempt counted", |m| m.attempts == 1).await;
    assert_eq!(m.state, SmsState::Queued, "{m:?}");
    assert_eq!(m.next_attempt_at, now + r.node.config().smpp.retry_after(0) as i64, "{m:?}");
    // Not delivered, and not offered again before the next attempt falls due.
    assert_eq!(t.quiet_for(Duration::from_millis(600)).await, None);
    let m = r.sms(id).await;
    assert_eq!((m.state, m.attempts, m.done_at, m.receipt.as_str()), (SmsState::Queued, 1, None, "none"));
    (t, id)
}

/// `[smpp]` retries after 200 ms, doubling up to 800 ms.
fn retry_fast(c: &mut OperatorConfig) {
    c.smpp.retry_initial_ms = 200;
    c.smpp.retry_max_ms = 800;
}

#[tokio::test]
async fn a_terminal_with_full_memory_leaves_the_message_queued() {
    let clock = ManualClock::new(T0);
    let r = Running::start(opa_node_with(&[], Arc::new(clock.clone()), retry_fast).await).await;
    let (t, _) = memory_full_flow(&r, T0).await;
    drop(t);
    r.shutdown().await;
}

#[tokio::test]
async fn a_message_refused_for_full_memory_is_offered_again_to_the_attached_terminal() {
    let clock = ManualClock::new(T0);
    let r = Running::start(opa_node_with(&[], Arc::new(clock.clone()), retry_fast).await).await;
    let (mut t, id) = memory_full_flow(&r, T0).await;
    // The next attempt falls due while the terminal is still attached: the scheduler hands the
    // message to the session again ("waits for the scheduler's next attempt", air.rs).
    clock.set_ms(r.sms(id).await.next_attempt_at);
    let again = t.quiet_for(Duration::from_secs(2)).await;
    let Some(sms::air::Frame::Deliver { reference, .. }) = again else {
        panic!("the refused message was not offered again within 2 s of its next attempt; got {again:?}")
    };
    assert_eq!(reference as i64, id);
    t.ack(reference, sms::air::CAUSE_OK).await;
    r.wait_sms(id, Duration::from_secs(2), "delivery", |m| m.state == SmsState::Delivered).await;
    drop(t);
    r.shutdown().await;
}

/// 50 submits at once from 5 binds: distinct ids, every one recorded, fewer commits than
/// submits. The ids.
async fn concurrent_submits(r: &Running) -> Vec<i64> {
    let mut banks = Vec::new();
    for _ in 0..5 {
        banks.push(Client::bind_transmitter(r.smpp, "bank", "s3cret").await.unwrap());
    }
    let destination = |i: usize| format!("47900001{i:02}");
    let commits_before = r.commits();
    let submits = (0..50).map(|i| {
        let bank = &banks[i % banks.len()];
        let destination = destination(i);
        async move { bank.submit("MyBank", &destination, format!("Message {i}").as_bytes()).await }
    });
    let ids: Vec<i64> =
        futures::future::join_all(submits).await.into_iter().map(|id| id.unwrap().parse().unwrap()).collect();
    let commits = r.commits() - commits_before;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 50, "{ids:?}");
    for (i, id) in ids.iter().enumerate() {
        let m = r.sms(*id).await;
        assert_eq!(
            (m.destination, m.payload, m.state),
            (destination(i), format!("Message {i}").into_bytes(), SmsState::Queued)
        );
    }
    println!("50 submits from 5 binds in {commits} commits");
    assert!((1..50).contains(&commits), "{commits} commits for 50 concurrent submits");
    for bank in banks {
        bank.unbind().await.unwrap();
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_get_distinct_ids_and_are_all_recorded() {
    let r = Running::start(opa_node(&[]).await).await;
    concurrent_submits(&r).await;
    r.shutdown().await;
}

/// The Rust client as the bank: submit, the terminal acknowledges, the receipt comes and is
/// answered, and is recorded as sent.
async fn receipt_flow(r: &Running) {
    let (bank, mut incoming) = r.bank().await;
    let id = submit(&bank, NUMBER, b"Your code is 777777", "").await;
    let mut t = r.attach().await;
    let (reference, text) = t.expect_deliver().await;
    assert_eq!((reference as i64, text.as_str()), (id, "Your code is 777777"));
    t.ack(reference, sms::air::CAUSE_OK).await;
    let (receipt, d) = next_receipt(&mut incoming, Duration::from_secs(5)).await;
    assert_eq!((receipt.message_id, receipt.state), (id.to_string(), ReceiptState::Delivered));
    d.answer(CommandStatus::EsmeRok);
    let m = r.wait_sms(id, Duration::from_secs(3), "receipt sent", |m| m.receipt == "sent").await;
    assert_eq!(m.state, SmsState::Delivered);
    bank.unbind().await.unwrap();
}

/// GSM 03.38 text, one septet an octet with the extension table after 0x1B, as SMPP's
/// data_coding 0 carries it: `@£$_{}[]~€ éüÑÅ`.
const GSM_TEXT: &[u8] = b"\x00\x01\x02\x11\x1b\x28\x1b\x29\x1b\x3c\x1b\x3e\x1b\x3d\x1b\x65 \x05\x7e\x5d\x0e";

/// data_coding 0 from the bank (GSM) and from `shop` (a Latin-1 ESME) reaches the handset as
/// the same text; octets above 0x7F from a GSM ESME are refused with ESME_RINVDCS.
async fn default_alphabet_flow(r: &Running) {
    let (bank, _incoming) = r.bank().await;
    let (shop, _shop_incoming) = Client::bind(r.smpp, "shop", "shoppw", BindMode::Transceiver).await.unwrap();
    let mut t = r.attach().await;
    let id = submit(&bank, NUMBER, GSM_TEXT, "").await;
    let (reference, text) = t.expect_deliver().await;
    assert_eq!((reference as i64, text.as_str()), (id, "@£$_{}[]~€ éüÑÅ"));
    t.ack(reference, sms::air::CAUSE_OK).await;
    let latin1: Vec<u8> = "@£$_{}[]~ éüÑÅ".chars().map(|c| c as u8).collect();
    let id = submit(&shop, NUMBER, &latin1, "").await;
    assert_eq!(r.sms(id).await.data_coding, 0, "stored as GSM septets");
    let (reference, text) = t.expect_deliver().await;
    assert_eq!((reference as i64, text.as_str()), (id, "@£$_{}[]~ éüÑÅ"));
    t.ack(reference, sms::air::CAUSE_OK).await;
    // á is Latin-1 but not GSM: carried as UCS-2.
    let id = submit(&shop, NUMBER, b"Ol\xe1 \xa9", "").await;
    assert_eq!(r.sms(id).await.data_coding, 8);
    let (reference, text) = t.expect_deliver().await;
    assert_eq!((reference as i64, text.as_str()), (id, "Olá ©"));
    t.ack(reference, sms::air::CAUSE_OK).await;
    let before = r.node.store().max_sms_id().await.unwrap();
    let refused = bank.submit_sm(submit_sm(NUMBER, b"caf\xe9", "")).await;
    assert!(matches!(refused, Err(ClientError::Status(CommandStatus::EsmeRinvdcs))), "{refused:?}");
    assert_eq!(r.node.store().max_sms_id().await.unwrap(), before, "nothing recorded");
    bank.unbind().await.unwrap();
    shop.unbind().await.unwrap();
}

/// Adds the Latin-1 ESME `shop` / `shoppw` to a node not yet serving.
async fn with_latin1_shop((node, dirs): (Node, [tempfile::TempDir; 2])) -> (Node, [tempfile::TempDir; 2]) {
    let shop =
        smsc::EsmeAccount::new("shop", "shoppw", 100).unwrap().with_default_alphabet(smsc::DefaultAlphabet::Latin1);
    node.store().upsert_esme(&shop, T0).await.unwrap();
    (node, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gsm_and_latin1_text_reaches_the_handset_intact() {
    let r = Running::start(with_latin1_shop(opa_node(&[]).await).await).await;
    default_alphabet_flow(&r).await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sms_center_on_postgres() {
    let Some(db) = TempDatabase::create().await else { return };
    let clock = ManualClock::new(T0);
    let node = opa_node_with(&[], Arc::new(clock.clone()), |c| {
        retry_fast(c);
        c.database_url = db.url().to_owned();
    })
    .await;
    let r = Running::start(with_latin1_shop(node).await).await;
    receipt_flow(&r).await;
    default_alphabet_flow(&r).await;
    if python_has_smpplib() {
        smpplib_receipt_flow(&r).await;
    }
    concurrent_submits(&r).await;
    if python_has_smpplib() {
        operations_flow(&r).await;
    }
    let (t, _) = memory_full_flow(&r, T0).await;
    drop(t);
    r.shutdown().await;
    db.remove().await.unwrap();
}

/// Runs `script` (Python, with smpplib) with `args` to its end, at most 30 s: its stdout
/// lines, each split into its first word and the rest. It must succeed.
async fn run_smpplib(script: &str, args: &[&str]) -> HashMap<String, String> {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("python3").args(["-c", script]).args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("smpplib finished")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    println!("smpplib printed:\n{stdout}");
    stdout.lines().map(|l| l.split_once(' ').unwrap_or((l, ""))).map(|(k, v)| (k.into(), v.into())).collect()
}

const SMPPLIB_OPERATIONS: &str = include_str!("smpplib_operations.py");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smpplib_uses_every_message_operation_and_the_handset_gets_what_stands() {
    if !python_has_smpplib() {
        return;
    }
    let r = Running::start(with_latin1_shop(opa_node(&[]).await).await).await;
    operations_flow(&r).await;
    r.shutdown().await;
}

/// smpplib as the bank: submit_multi, data_sm, query_sm, cancel_sm and replace_sm, each
/// answered as SMPP says and recorded; then the handset gets what stands, and nothing
/// cancelled. `r` has the Latin-1 ESME `shop` and nothing queued for [`NUMBER`].
async fn operations_flow(r: &Running) {
    // A message of another ESME: the bank can neither see nor cancel it.
    let (shop, _shop_incoming) = Client::bind(r.smpp, "shop", "shoppw", BindMode::Transceiver).await.unwrap();
    let others = submit(&shop, NUMBER, b"From the shop", "").await;
    shop.unbind().await.unwrap();

    let host = r.smpp.ip().to_string();
    let port = r.smpp.port().to_string();
    let out =
        run_smpplib(SMPPLIB_OPERATIONS, &[&host, &port, "bank", "s3cret", NUMBER, "4791000005", &others.to_string()])
            .await;
    let line = |k: &str| out.get(k).unwrap_or_else(|| panic!("no {k} in {out:?}")).as_str();
    // smpplib binds as SMPP 3.4: the answer says 3.4 (0x34).
    assert_eq!(line("BIND"), "52");
    // submit_multi: the bad number and the distribution list refused (ESME_RINVDSTADR,
    // ESME_RINVDLNAME), the others accepted; the answer names the first one's message.
    let multi: Vec<&str> = line("MULTI").split(' ').collect();
    assert_eq!((multi[0], &multi[2..]), ("0", &["4799000000x=11", "staff=52"][..]), "{multi:?}");
    let multi_id: i64 = multi[1].parse().unwrap();
    let local = r.sms(multi_id).await;
    assert_eq!((local.destination.as_str(), local.route.as_str(), local.data_coding), (NUMBER, "local", 0));
    let last = r.node.store().max_sms_id().await.unwrap();
    let mut remote = Vec::new();
    for id in multi_id + 1..=last {
        let m = r.sms(id).await;
        if m.destination == "4791000005" {
            remote.push(m);
        }
    }
    assert_eq!(remote.len(), 1, "one message for the other operator's number");
    assert_eq!((remote[0].route.as_str(), remote[0].payload.as_slice()), ("interconnect", local.payload.as_slice()));

    let (status, data_id) = line("DATA").split_once(' ').unwrap();
    assert_eq!(status, "0");
    let data_id: i64 = data_id.parse().unwrap();
    // Queued: ENROUTE (1), no final date yet.
    assert_eq!(line("QUERY"), "0 1 ''");
    // Another ESME's message and an id that is none: ESME_RINVMSGID (0x0C) alike.
    assert_eq!((line("QUERY_OTHER"), line("QUERY_BAD"), line("CANCEL_OTHER")), ("12", "12", "12"));
    assert_eq!(r.sms(others).await.state, SmsState::Queued, "the shop's message untouched");
    assert_eq!(line("REPLACE"), "0");
    let (status, cancel_id) = line("CANCEL").split_once(' ').unwrap();
    assert_eq!(status, "0");
    let cancelled = r.sms(cancel_id.parse().unwrap()).await;
    assert_eq!((cancelled.state, cancelled.receipt.as_str()), (SmsState::Deleted, "none"));
    // DELETED (4), with its final date as SMPP writes an absolute time (16 characters).
    assert_eq!(line("QUERY_CANCELLED"), "0 4 16");
    // Once deleted, neither cancelled again (ESME_RCANCELFAIL) nor replaced (ESME_RREPLACEFAIL).
    assert_eq!((line("CANCEL_AGAIN"), line("REPLACE_CANCELLED")), ("17", "19"));
    // cancel_sm without a message_id: both queued messages from MyBank to the number are
    // DELETED; a second finds none (ESME_RCANCELFAIL).
    assert_eq!((line("CANCEL_ALL"), line("CANCEL_NONE")), ("0 4 4", "17"));
    assert_eq!(line("DONE"), "");

    // The handset attaches: the shop's message, the submit_multi's GSM text intact, and the
    // data_sm's body as replaced; the cancelled message never comes.
    let mut t = r.attach().await;
    let mut got = HashMap::new();
    for _ in 0..3 {
        let (reference, text) = t.expect_deliver().await;
        got.insert(reference as i64, text);
        t.ack(reference, sms::air::CAUSE_OK).await;
    }
    assert_eq!(got[&others], "From the shop");
    assert_eq!(got[&multi_id], "@£$_{}[]~€ éüÑÅ");
    assert_eq!(got[&data_id], "Replaced: @£$_{}[]~€ éüÑÅ");
    assert_eq!(t.quiet_for(Duration::from_secs(1)).await, None, "the cancelled message is not delivered");
    r.wait_sms(data_id, Duration::from_secs(2), "delivery", |m| m.state == SmsState::Delivered).await;
    assert_eq!(r.sms(cancelled.id).await.state, SmsState::Deleted);
}

/// A submit_sm to `destination` with schedule_delivery_time `schedule`.
fn scheduled(destination: &str, text: &[u8], schedule: &str) -> SubmitSm {
    let mut s = submit_sm(destination, text, "");
    s.schedule_delivery_time = schedule.parse::<EmptyOrFullCOctetString<17>>().unwrap();
    s
}

#[tokio::test]
async fn a_scheduled_message_is_stored_and_not_delivered_before_its_time() {
    let r = Running::start(opa_node_with(&[], Arc::new(numport_core::SystemClock), |_| {}).await).await;
    let (bank, _incoming) = r.bank().await;
    // 2 s from now (relative); the terminal is not attached yet.
    let submitted = Instant::now();
    let id: i64 = bank.submit_sm(scheduled(NUMBER, b"Later", "000000000002000R")).await.unwrap().parse().unwrap();
    let m = r.sms(id).await;
    assert!((1_900..=2_100).contains(&(m.scheduled_at - m.submitted_at)), "{m:?}");
    assert_eq!((m.state, m.next_attempt_at), (SmsState::Queued, m.scheduled_at));
    // One for the other operator's number waits too: not in the interconnect's queue yet.
    let ic: i64 = bank.submit_sm(scheduled("4791000005", b"Later", "000000000002000R")).await.unwrap().parse().unwrap();
    let now = r.node.now();
    let queued = r.node.store().queued_interconnect("opb", now, 10).await.unwrap();
    assert!(queued.iter().all(|m| m.id != ic), "forwarded before its time");
    // An attach reads what waits in the store (as after a restart): not this one yet.
    let mut t = r.attach().await;
    assert_eq!(t.quiet_for(Duration::from_millis(1_200)).await, None, "delivered before its time");
    let (reference, text) = t.expect_deliver().await;
    let after = submitted.elapsed();
    assert_eq!((reference as i64, text.as_str()), (id, "Later"));
    assert!(after >= Duration::from_millis(1_900), "delivered after {after:?}");
    t.ack(reference, sms::air::CAUSE_OK).await;
    r.wait_sms(id, Duration::from_secs(2), "delivery", |m| m.state == SmsState::Delivered).await;
    let queued = r.node.store().queued_interconnect("opb", r.node.now(), 10).await.unwrap();
    assert!(queued.iter().any(|m| m.id == ic), "due for forwarding once its time came");
    // A time that cannot be one is refused ESME_RINVSCHED.
    let refused = bank.submit_sm(scheduled(NUMBER, b"Bad", "261332000000000+")).await;
    assert!(matches!(refused, Err(ClientError::Status(CommandStatus::EsmeRinvsched))), "{refused:?}");
    bank.unbind().await.unwrap();
    drop(t);
    r.shutdown().await;
}
