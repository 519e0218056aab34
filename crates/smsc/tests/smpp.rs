//! The SMPP server against a real third-party client (Python's `smpplib`, as a bank's gateway
//! would use it) and against hand-made hostile byte streams.

mod common;

use std::time::Duration;

use common::Server;
use smsc::{EsmeAccount, SmppConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The server, with a bank and a bulk sender without a practical rate limit.
async fn start(config: SmppConfig) -> Server {
    let accounts =
        [EsmeAccount::new("bank", "s3cret", 50).unwrap(), EsmeAccount::new("bulk", "bulkpw", 1_000_000).unwrap()];
    common::start(config, accounts).await
}

/// Whether Python's smpplib is there to play the bank's gateway (see [`testkit`] for what its
/// absence does).
#[track_caller]
fn python_has_smpplib() -> bool {
    testkit::python_module("smpplib", "pip install smpplib")
}

const BANK_SCRIPT: &str = r#"
import sys, smpplib.client, smpplib.consts, smpplib.gsm
host, port = sys.argv[1], int(sys.argv[2])
c = smpplib.client.Client(host, port, timeout=5)
c.connect()
# A wrong password is refused.
try:
    c.bind_transceiver(system_id="bank", password="wrong")
    print("BIND_WRONG ok")
except smpplib.exceptions.PDUError as e:
    print("BIND_WRONG", e.args[1])
c.bind_transceiver(system_id="bank", password="s3cret")
print("BOUND")
parts, coding, esm = smpplib.gsm.make_parts("Your code is 123456")
ids = []
def sent(pdu):
    ids.append(pdu.message_id.decode())
c.set_message_sent_handler(sent)
for part in parts:
    c.send_message(source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="MyBank",
                   dest_addr_ton=smpplib.consts.SMPP_TON_INTL, destination_addr="4790000001",
                   short_message=part, data_coding=coding, esm_class=esm, registered_delivery=True)
    c.read_once()
print("IDS", ",".join(ids))
c.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=c))
r = c.read_pdu()
print("ENQUIRE", r.command, r.status)
c.unbind()
print("UNBOUND")
c.disconnect()
"#;

#[tokio::test]
async fn a_bank_binds_submits_and_unbinds_with_smpplib() {
    if !python_has_smpplib() {
        return;
    }
    let mut s = start(SmppConfig::default()).await;
    let out = tokio::process::Command::new("python3")
        .args(["-c", BANK_SCRIPT, &s.addr.ip().to_string(), &s.addr.port().to_string()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("BIND_WRONG 14"), "ESME_RINVPASWD (0x0E): {stdout}");
    assert!(stdout.contains("BOUND"));
    assert!(stdout.contains("ENQUIRE enquire_link_resp 0"), "{stdout}");
    assert!(stdout.contains("UNBOUND"));
    let ids: Vec<&str> = stdout.lines().find_map(|l| l.strip_prefix("IDS ")).unwrap().split(',').collect();
    let got = tokio::time::timeout(Duration::from_secs(2), s.submitted.recv()).await.unwrap().unwrap();
    assert_eq!(got.system_id, "bank");
    assert_eq!(got.message_id, ids[0]);
    assert_eq!(got.submit.destination_addr.as_str(), "4790000001");
    assert_eq!(got.submit.short_message().as_ref(), b"Your code is 123456");
}

/// Reads one PDU: (command_id, status, sequence).
async fn read_pdu(c: &mut TcpStream) -> Option<(u32, u32, u32)> {
    let mut head = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(2), c.read_exact(&mut head)).await.ok()?.ok()?;
    let w = |i: usize| u32::from_be_bytes(head[i..i + 4].try_into().unwrap());
    let mut body = vec![0u8; (w(0) as usize).saturating_sub(16)];
    c.read_exact(&mut body).await.ok()?;
    Some((w(4), w(8), w(12)))
}

fn pdu(command_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut v = ((16 + body.len()) as u32).to_be_bytes().to_vec();
    v.extend(command_id.to_be_bytes());
    v.extend(0u32.to_be_bytes());
    v.extend(seq.to_be_bytes());
    v.extend_from_slice(body);
    v
}

const GENERIC_NACK: u32 = 0x8000_0000;
const ENQUIRE_LINK: u32 = 0x15;
const SUBMIT_SM: u32 = 0x04;

/// A minimal submit_sm body to 4790000001 with the text "hi".
fn submit_body() -> Vec<u8> {
    let mut b = vec![0]; // service_type
    b.extend([5, 0]); // source TON alphanumeric, NPI
    b.extend(b"MyBank\0");
    b.extend([1, 1]); // destination TON international, NPI ISDN
    b.extend(b"4790000001\0");
    b.extend([0, 0, 0]); // esm_class, protocol_id, priority_flag
    b.extend([0, 0]); // schedule_delivery_time, validity_period (empty)
    b.extend([1, 0, 0, 0]); // registered_delivery, replace_if_present, data_coding, sm_default_msg_id
    b.extend([2]);
    b.extend(b"hi");
    b
}

fn bind_transmitter(seq: u32, password: &str) -> Vec<u8> {
    bind_transmitter_as("bank", seq, password)
}

fn bind_transmitter_as(system_id: &str, seq: u32, password: &str) -> Vec<u8> {
    let mut body = system_id.as_bytes().to_vec();
    body.push(0);
    body.extend(password.as_bytes());
    body.extend([0, 0, 0x34, 0, 0, 0]); // password NUL, system_type "", interface 3.4, ton, npi, range ""
    pdu(0x0000_0002, seq, &body)
}

#[tokio::test]
async fn malformed_pdus_are_answered_and_other_clients_unaffected() {
    let s = start(SmppConfig::default()).await;
    let mut bad = TcpStream::connect(s.addr).await.unwrap();
    // Unknown command id: generic_nack ESME_RINVCMDID (3), connection goes on.
    bad.write_all(&pdu(0x0000_0999, 7, &[])).await.unwrap();
    assert_eq!(read_pdu(&mut bad).await, Some((GENERIC_NACK, 3, 7)));
    // A bind whose body is cut short: generic_nack, connection goes on.
    bad.write_all(&pdu(0x0000_0009, 8, b"bank\0s3c")).await.unwrap();
    assert_eq!(read_pdu(&mut bad).await.map(|p| (p.0, p.2)), Some((GENERIC_NACK, 8)));
    // submit_sm before binding: submit_sm_resp ESME_RINVBNDSTS (4); enquire_link is fine.
    bad.write_all(&pdu(SUBMIT_SM, 9, &submit_body())).await.unwrap();
    assert_eq!(read_pdu(&mut bad).await, Some((0x8000_0004, 4, 9)));
    bad.write_all(&pdu(ENQUIRE_LINK, 10, &[])).await.unwrap();
    assert_eq!(read_pdu(&mut bad).await, Some((0x8000_0015, 0, 10)));
    // A command_length over the limit: generic_nack ESME_RINVCMDLEN (2), then closed.
    let mut huge = pdu(ENQUIRE_LINK, 11, &[]);
    huge[..4].copy_from_slice(&1_000_000u32.to_be_bytes());
    bad.write_all(&huge).await.unwrap();
    assert_eq!(read_pdu(&mut bad).await, Some((GENERIC_NACK, 2, 11)));
    assert_eq!(read_pdu(&mut bad).await, None, "closed after an untrustworthy length");

    // A length under the header size: generic_nack, closed.
    let mut short = TcpStream::connect(s.addr).await.unwrap();
    short.write_all(&[0, 0, 0, 8, 0, 0, 0, 0x15]).await.unwrap();
    assert_eq!(read_pdu(&mut short).await.map(|p| p.0), Some(GENERIC_NACK));

    // Meanwhile a well-behaved client is served.
    let mut good = TcpStream::connect(s.addr).await.unwrap();
    good.write_all(&pdu(ENQUIRE_LINK, 1, &[])).await.unwrap();
    assert_eq!(read_pdu(&mut good).await, Some((0x8000_0015, 0, 1)));
}

#[tokio::test]
async fn silent_clients_and_failed_binds_are_dropped() {
    let s = start(SmppConfig { bind_timeout: Duration::from_millis(200), ..SmppConfig::default() }).await;
    // Silent: the server unbinds (0x06) and closes.
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(read_pdu(&mut silent).await.map(|p| p.0), Some(0x0000_0006));
    // Three wrong passwords and the connection is closed.
    let mut guesser = TcpStream::connect(s.addr).await.unwrap();
    for seq in 1..=3 {
        guesser.write_all(&bind_transmitter(seq, "guess")).await.unwrap();
        assert_eq!(read_pdu(&mut guesser).await, Some((0x8000_0002, 0x0E, seq)));
    }
    assert_eq!(read_pdu(&mut guesser).await, None);
}

#[tokio::test]
async fn enquire_link_before_bind_does_not_extend_the_bind_timeout() {
    let s = start(SmppConfig { bind_timeout: Duration::from_millis(600), ..SmppConfig::default() }).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let connected = std::time::Instant::now();
    // enquire_link at 0, 150, 300 and 450 ms, each answered: were each to restart the bind
    // timer, the unbind would come at 1050 ms.
    for seq in 1..=4 {
        c.write_all(&pdu(ENQUIRE_LINK, seq, &[])).await.unwrap();
        assert_eq!(read_pdu(&mut c).await, Some((0x8000_0015, 0, seq)));
        tokio::time::sleep_until((connected + Duration::from_millis(150 * u64::from(seq))).into()).await;
    }
    // The server unbinds (0x06) at the bind timeout counted from the connection, and closes.
    assert_eq!(read_pdu(&mut c).await.map(|p| p.0), Some(0x0000_0006));
    let unbound_at = connected.elapsed();
    assert!(unbound_at < Duration::from_millis(900), "unbound only at {unbound_at:?}");
    assert_eq!(read_pdu(&mut c).await, None);
}

#[tokio::test]
async fn a_client_whose_enquire_link_goes_unanswered_takes_the_link_as_lost() {
    // An SMSC that accepts the bind, then answers nothing and reports the command ids it reads.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        let (_, _, seq) = read_pdu(&mut c).await.unwrap();
        c.write_all(&pdu(0x8000_0009, seq, b"mute\0")).await.unwrap();
        while let Some((id, _, _)) = read_pdu(&mut c).await {
            let _ = heard_tx.send(id);
        }
        // Held open: only the client's own timer may end the session.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let every = Duration::from_millis(100);
    let bound =
        smsc::client::Client::bind_kept_alive(addr, None, "bank", "s3cret", smsc::BindMode::Transceiver, Some(every));
    let (client, mut incoming) = bound.await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(2), heard.recv()).await.unwrap(), Some(ENQUIRE_LINK));
    // Unanswered for another 100 ms: the connection ends, and with it the client's session.
    assert!(tokio::time::timeout(Duration::from_secs(2), incoming.recv()).await.unwrap().is_none());
    assert!(matches!(client.submit("MyBank", "4790000001", b"hi").await, Err(smsc::client::ClientError::Closed)));
}

/// The bind_transmitter_resp status for `system_id` and `password` on a fresh connection, and
/// how long the answer took.
async fn bind_outcome(addr: std::net::SocketAddr, system_id: &str, password: &str) -> (u32, Duration) {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let sent = std::time::Instant::now();
    c.write_all(&bind_transmitter_as(system_id, 1, password)).await.unwrap();
    let (id, status, _) = read_pdu(&mut c).await.expect("bind answered");
    assert_eq!(id, 0x8000_0002);
    (status, sent.elapsed())
}

#[tokio::test]
async fn an_unknown_system_id_is_answered_as_a_wrong_password_after_the_same_work() {
    let s = start(SmppConfig::default()).await;
    bind_outcome(s.addr, "nobody", "x").await; // the stand-in hash is made at first use
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        unknown.push(bind_outcome(s.addr, "nobody", "guess").await);
        wrong.push(bind_outcome(s.addr, "bank", "guess").await);
    }
    assert!(unknown.iter().chain(&wrong).all(|&(status, _)| status == 0x0E), "{unknown:?} {wrong:?}");
    // Both ran Argon2: answering an unknown id without it takes a fraction of a millisecond.
    let total = |v: &[(u32, Duration)]| v.iter().map(|p| p.1).sum::<Duration>();
    assert!(total(&unknown) * 3 > total(&wrong), "unknown ids answered faster: {unknown:?} {wrong:?}");
}

#[tokio::test]
async fn submits_beyond_the_rate_are_throttled() {
    let mut s = start(SmppConfig::default()).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(&bind_transmitter(1, "s3cret")).await.unwrap();
    assert_eq!(read_pdu(&mut c).await, Some((0x8000_0002, 0, 1)));
    // A second bind on a bound session: ESME_RALYBND (5).
    c.write_all(&bind_transmitter(2, "s3cret")).await.unwrap();
    assert_eq!(read_pdu(&mut c).await, Some((0x8000_0002, 5, 2)));
    // 80 submits at once against a limit of 50/s: about 50 accepted, the rest ESME_RTHROTTLED.
    let burst: Vec<u8> = (100..180).flat_map(|seq| pdu(SUBMIT_SM, seq, &submit_body())).collect();
    c.write_all(&burst).await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..80 {
        let (id, status, _) = read_pdu(&mut c).await.unwrap();
        assert_eq!(id, 0x8000_0004);
        statuses.push(status);
    }
    let accepted = statuses.iter().filter(|&&s| s == 0).count();
    let throttled = statuses.iter().filter(|&&s| s == 0x58).count();
    assert_eq!(accepted + throttled, 80, "{statuses:?}");
    assert!((50..=55).contains(&accepted), "{accepted} accepted");
    let mut ids = std::collections::HashSet::new();
    while let Ok(m) = s.submitted.try_recv() {
        assert!(ids.insert(m.message_id), "message ids are unique");
    }
    assert_eq!(ids.len(), accepted);
}

#[tokio::test]
async fn the_rust_client_binds_submits_and_unbinds() {
    let mut s = start(SmppConfig::default()).await;
    assert!(matches!(
        smsc::client::Client::bind_transmitter(s.addr, "bank", "nope").await,
        Err(smsc::client::ClientError::Status(_))
    ));
    let c = smsc::client::Client::bind_transmitter(s.addr, "bank", "s3cret").await.unwrap();
    let id = c.submit("MyBank", "4790000001", b"Your code is 123456").await.unwrap();
    c.unbind().await.unwrap();
    let got = s.submitted.recv().await.unwrap();
    assert_eq!(got.message_id, id);
    assert_eq!(got.submit.source_addr.as_str(), "MyBank");
    assert_eq!(got.submit.short_message().as_ref(), b"Your code is 123456");
}

#[tokio::test]
async fn many_submits_are_outstanding_at_once_on_one_connection() {
    let mut s = start(SmppConfig { window: 16, ..SmppConfig::default() }).await;
    let c = smsc::client::Client::bind_transmitter(s.addr, "bulk", "bulkpw").await.unwrap();
    let submits = (0..500).map(|i| c.submit("MyBank", "4790000001", format!("message {i}").into_bytes().leak()));
    let ids = futures::future::try_join_all(submits).await.unwrap();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 500, "every submit got its own message id");
    let mut texts = std::collections::HashSet::new();
    for _ in 0..500 {
        let m = s.submitted.recv().await.unwrap();
        texts.insert(String::from_utf8(m.submit.short_message().as_ref().to_vec()).unwrap());
    }
    assert_eq!(texts.len(), 500);
}

#[tokio::test]
async fn deliver_sm_reaches_a_receiving_session_and_its_answer_comes_back() {
    use smsc::rusmpp::pdus::DeliverSm;
    use smsc::rusmpp::{CommandStatus, types::OctetString};
    let s = start(SmppConfig::default()).await;
    let deliver = || {
        DeliverSm::builder()
            .source_addr("4790000001".parse().unwrap())
            .destination_addr("MyBank".parse().unwrap())
            .short_message(OctetString::from_slice(b"id:1 stat:DELIVRD").unwrap())
            .build()
    };
    let timeout = Duration::from_secs(2);
    assert_eq!(s.receivers.deliver("bank", deliver(), timeout).await, Err(smsc::DeliverError::NotBound));

    // A transmitter session takes no deliver_sm.
    let tx = smsc::client::Client::bind_transmitter(s.addr, "bank", "s3cret").await.unwrap();
    assert!(!s.receivers.is_bound("bank"));

    let (trx, mut incoming) =
        smsc::client::Client::bind(s.addr, "bank", "s3cret", smsc::BindMode::Transceiver).await.unwrap();
    assert!(s.receivers.is_bound("bank"));
    let answering = tokio::spawn(async move {
        let first = incoming.recv().await.unwrap();
        assert_eq!(first.deliver.short_message().as_ref(), b"id:1 stat:DELIVRD");
        first.answer(CommandStatus::EsmeRok);
        let second = incoming.recv().await.unwrap();
        second.answer(CommandStatus::EsmeRxTAppn);
        incoming
    });
    assert_eq!(s.receivers.deliver("bank", deliver(), timeout).await, Ok(CommandStatus::EsmeRok));
    assert_eq!(s.receivers.deliver("bank", deliver(), timeout).await, Ok(CommandStatus::EsmeRxTAppn));
    let incoming = answering.await.unwrap();
    // Unanswered: the deliver times out, and the session goes on.
    assert_eq!(
        s.receivers.deliver("bank", deliver(), Duration::from_millis(200)).await,
        Err(smsc::DeliverError::Timeout)
    );
    drop(incoming);
    trx.unbind().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!s.receivers.is_bound("bank"), "an unbound session is no longer a receiver");
    tx.unbind().await.unwrap();
}
