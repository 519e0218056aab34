//! SMS authentication (F3) on real nodes over real sockets: the SMS center tags every
//! SMS-DELIVER it sends over the air with the SIM's key and a counter, and a handset holding
//! the key (`sms::auth::Verifier`) finds what the network sent authentic and what a pseudo
//! base station sends (no element, a made-up one, a recording played back) forged or replayed.
//! A message forwarded over the interconnect after a port is tagged by the operator serving
//! the number now; status reports are tagged too; a key rotation keeps delivery working;
//! counters go on growing across a restart of the SMS center; keys are sealed at rest. The key
//! is the one the OTA server writes into the card (issued for the job, activated by the card's
//! proof of receipt), at account opening and at a port-in; a job that fails activates nothing.
//! On PostgreSQL too when `NUMPORT_TEST_POSTGRES_URL` is set (under `CI=true` it must be).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use numport_core::ManualClock;
use operator::config::InterconnectPeer;
use operator::sms_center::authentication::IssuedKey;
use operator::{Node, OperatorConfig};
use sms::address::Address;
use sms::air::{CAUSE_OK, Frame};
use sms::auth::{AuthElement, Forgery, HeldKey, MAC_LEN, SmsAuthKey, Verdict, Verifier};
use sms::tpdu::{SmsDeliver, Tpdu};
use sms::udh::{InformationElement, UserDataHeader};
use smsc::client::Client;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const IMSI: &str = "242010000000002";
const NUMBER: &str = "4790000002";
const K_SIM: &[u8] = b"k-sim-sms-auth";
/// The handset: the SIM's keys and the counters it accepted.
fn handset(keys: &[&IssuedKey]) -> Verifier {
    Verifier {
        keys: keys
            .iter()
            .map(|k| HeldKey { key: SmsAuthKey::new(k.version, &k.key).unwrap(), accepted_until: None })
            .collect(),
        ..Verifier::default()
    }
}

/// Attaches the SIM at `air` and takes `n` SMS-DELIVERs, acknowledging each: their TPDUs.
async fn receive(air: SocketAddr, n: usize) -> Vec<Vec<u8>> {
    let mut s = TcpStream::connect(air).await.unwrap();
    let attached = operator::air::attach_terminal(&mut s, IMSI, K_SIM).await.unwrap();
    assert_eq!(attached, Ok(NUMBER.to_owned()));
    let mut tpdus = Vec::new();
    while tpdus.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(5), operator::air::read_frame(&mut s))
            .await
            .expect("an SMS-DELIVER within 5 s")
            .unwrap()
            .expect("the link stays up");
        if let Frame::Deliver { reference, tpdu } = frame {
            use tokio::io::AsyncWriteExt;
            s.write_all(&Frame::DeliverAck { reference, cause: CAUSE_OK }.encode()).await.unwrap();
            tpdus.push(tpdu);
        }
    }
    tpdus
}

fn decode(tpdu: &[u8]) -> SmsDeliver {
    match Tpdu::decode_mt(tpdu).unwrap() {
        Tpdu::Deliver(d) => d,
        other => panic!("not an SMS-DELIVER: {other:?}"),
    }
}

fn verdicts(v: &mut Verifier, tpdus: &[Vec<u8>]) -> Vec<Verdict> {
    tpdus.iter().map(|t| v.verify(&decode(t), NUMBER, T0)).collect()
}

fn counter(tpdu: &[u8]) -> u32 {
    sms::auth::element(&decode(tpdu)).unwrap().expect("tagged").counter
}

async fn bank(smpp: SocketAddr) -> Client {
    Client::bind_transmitter(smpp, "bank", "s3cret").await.unwrap()
}

/// One node opa serving [`NUMBER`], whose SIM it issued: the node, its SMPP and air addresses,
/// the SIM's key.
struct One {
    node: Node,
    smpp: SocketAddr,
    air: SocketAddr,
    key: IssuedKey,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl One {
    async fn start(tweak: impl FnOnce(&mut OperatorConfig)) -> One {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let node = sms_node("opa", dir.path(), &clock, &[], tweak).await;
        let key = node.issue_sim(IMSI, NUMBER, K_SIM).await.unwrap().expect("a first key");
        assert_eq!(node.issue_sim(IMSI, NUMBER, K_SIM).await.unwrap(), None, "issued once");
        let (listener, smpp) = smpp_listener().await;
        let stop = CancellationToken::new();
        let air = serve(&node, listener, &stop).await;
        One { node, smpp, air, key, stop, _dir: dir }
    }
}

#[tokio::test]
async fn what_the_network_sends_is_authentic_and_what_a_fake_base_station_sends_is_not() {
    let one = One::start(|_| {}).await;
    authenticity(&one).await;
    one.stop.cancel();
}

#[tokio::test]
async fn what_the_network_sends_is_authentic_on_postgresql() {
    let Some(db) = numport_db::testing::TempDatabase::create().await else { return };
    let one = One::start(|c| c.database_url = db.url().to_owned()).await;
    authenticity(&one).await;
    one.stop.cancel();
}

async fn authenticity(one: &One) {
    let bank = bank(one.smpp).await;
    bank.submit("MyBank", NUMBER, b"Your code is 123456").await.unwrap();
    // 238 characters: two parts, each with its own element.
    let long = "Kontoutskrift: saldo 1234,50 NOK. ".repeat(7);
    bank.submit("MyBank", NUMBER, long.as_bytes()).await.unwrap();
    bank.unbind().await.unwrap();
    let tpdus = receive(one.air, 3).await;

    let mut phone = handset(&[&one.key]);
    let genuine = verdicts(&mut phone, &tpdus);
    assert!(genuine.iter().all(Verdict::is_authentic), "{genuine:?}");
    let mut counters: Vec<u32> = tpdus.iter().map(|t| counter(t)).collect();
    counters.sort();
    counters.dedup();
    assert_eq!(counters.len(), 3, "a counter per SMS, each part its own");
    let mut reassembler = sms::concat::Reassembler::new(2);
    let texts: Vec<String> = tpdus.iter().filter_map(|t| reassembler.receive_deliver(&decode(t))).collect();
    assert_eq!(texts, ["Your code is 123456".to_owned(), long.clone()], "the element leaves the text whole");

    // A pseudo base station: the same SMS again, byte for byte.
    let replayed = verdicts(&mut phone, &tpdus);
    assert!(replayed.iter().all(|v| matches!(v, Verdict::Replayed { .. })), "{replayed:?}");
    // The bank's name and a phishing link, with no element, or with a made-up one.
    let mut spoof = decode(&tpdus[0]);
    spoof.user_data = sms::tpdu::UserData::gsm7("Account locked: https://mybank-secure.example").unwrap();
    assert_eq!(phone.verify(&spoof, NUMBER, T0), Verdict::Forged(Forgery::NoElement));
    let mut made_up = spoof.clone();
    let element = AuthElement { key_version: one.key.version, counter: counters[2] + 1, mac: [0x5A; MAC_LEN] };
    made_up.user_data.header = Some(UserDataHeader { elements: vec![InformationElement::Auth(element)] });
    assert_eq!(phone.verify(&made_up, NUMBER, T0), Verdict::Forged(Forgery::BadMac));
    // A genuine SMS with its text changed on the way.
    let mut edited = decode(&tpdus[0]);
    edited.originator = Address::alphanumeric("MyBank");
    edited.user_data.payload = sms::tpdu::UserData::gsm7("Your code is 654321").unwrap().payload;
    assert_eq!(phone.verify(&edited, NUMBER, T0), Verdict::Forged(Forgery::BadMac));
}

#[tokio::test]
async fn the_sms_center_restarted_goes_on_with_higher_counters() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let block = |c: &mut OperatorConfig| c.sms_auth.counter_block = 3;
    let first = sms_node("opa", dir.path(), &clock, &[], block).await;
    let key = first.issue_sim(IMSI, NUMBER, K_SIM).await.unwrap().unwrap();
    let (listener, smpp) = smpp_listener().await;
    let stop = CancellationToken::new();
    let air = serve(&first, listener, &stop).await;
    let b = bank(smpp).await;
    for i in 0..2 {
        b.submit("MyBank", NUMBER, format!("before {i}").as_bytes()).await.unwrap();
    }
    let before = receive(air, 2).await;
    b.unbind().await.unwrap();
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.store().close().await;
    drop(first);

    let second = sms_node("opa", dir.path(), &clock, &[], block).await;
    let (listener, smpp) = smpp_listener().await;
    let stop = CancellationToken::new();
    let air = serve(&second, listener, &stop).await;
    let b = bank(smpp).await;
    for i in 0..5 {
        b.submit("MyBank", NUMBER, format!("after {i}").as_bytes()).await.unwrap();
    }
    let after = receive(air, 5).await;
    b.unbind().await.unwrap();

    let (old, new): (Vec<u32>, Vec<u32>) =
        (before.iter().map(|t| counter(t)).collect(), after.iter().map(|t| counter(t)).collect());
    assert_eq!(old, [1, 2]);
    // The first node had reserved 1..=3; the second starts after that and reserves in blocks.
    assert_eq!(new, [4, 5, 6, 7, 8], "no counter used twice, none reserved before the restart");
    let mut phone = handset(&[&key]);
    let all: Vec<Vec<u8>> = before.into_iter().chain(after).collect();
    assert!(verdicts(&mut phone, &all).iter().all(Verdict::is_authentic));
    stop.cancel();
}

#[tokio::test]
async fn a_key_rotation_keeps_delivery_working() {
    let one = One::start(|_| {}).await;
    let b = bank(one.smpp).await;

    // The OTA server issues version 2 and writes it into the SIM; the center tags with 1 until
    // the SIM confirms.
    let v2 = one.node.issue_sms_auth_key(IMSI).await.unwrap();
    assert_eq!((v2.version, v2.previous_accepted_for_ms), (2, 7 * 86_400_000));
    let mut phone = Verifier {
        keys: vec![
            HeldKey {
                key: SmsAuthKey::new(1, &one.key.key).unwrap(),
                accepted_until: Some(T0 + v2.previous_accepted_for_ms),
            },
            HeldKey { key: SmsAuthKey::new(2, &v2.key).unwrap(), accepted_until: None },
        ],
        ..Verifier::default()
    };
    b.submit("MyBank", NUMBER, b"before the switch").await.unwrap();
    let before = receive(one.air, 1).await;
    assert_eq!(sms::auth::element(&decode(&before[0])).unwrap().unwrap().key_version, 1);

    assert!(one.node.activate_sms_auth_key(IMSI, 2).await.unwrap());
    assert!(!one.node.activate_sms_auth_key(IMSI, 9).await.unwrap(), "no such key");
    b.submit("MyBank", NUMBER, b"after the switch").await.unwrap();
    let after = receive(one.air, 1).await;
    assert_eq!(sms::auth::element(&decode(&after[0])).unwrap().unwrap().key_version, 2);
    let all = [before, after].concat();
    assert!(verdicts(&mut phone, &all).iter().all(Verdict::is_authentic));

    // A SIM that never got version 2 reads the new SMS as forged: the key is what counts.
    let mut old_sim = handset(&[&one.key]);
    assert_eq!(old_sim.verify(&decode(&all[1]), NUMBER, T0), Verdict::Forged(Forgery::UnknownKeyVersion(2)));
    b.unbind().await.unwrap();
    one.stop.cancel();
}

#[tokio::test]
async fn keys_are_sealed_at_rest_and_bound_to_their_sim() {
    let one = One::start(|_| {}).await;
    let stored = one.node.store().sms_auth_keys(IMSI, T0).await.unwrap();
    assert_eq!(stored.len(), 1);
    let sealed = &stored[0].sealed;
    assert!(!sealed.contains(&hex(&one.key.key[..8])), "no part of the key in the clear");
    // The same sealed bytes under another SIM's row do not open: the associated data differs.
    one.node.store().insert_sms_auth_key("242010000000099", 1, sealed, T0, Some(T0)).await.unwrap();
    one.node.store().upsert_sim("242010000000099", "4790000099", K_SIM).await.unwrap();
    let mut s = TcpStream::connect(one.air).await.unwrap();
    operator::air::attach_terminal(&mut s, "242010000000099", K_SIM).await.unwrap().unwrap();
    let b = bank(one.smpp).await;
    b.submit("MyBank", "4790000099", b"moved key").await.unwrap();
    // The session cannot tag with a key that does not open, so it sends nothing.
    let nothing = tokio::time::timeout(Duration::from_millis(800), operator::air::read_frame(&mut s)).await;
    assert!(nothing.is_err(), "an SMS-DELIVER went out untagged or with a moved key: {nothing:?}");
    b.unbind().await.unwrap();
    one.stop.cancel();
}

#[tokio::test]
async fn a_message_forwarded_after_a_port_is_tagged_by_the_serving_operator() {
    // 4790000002 was ported from opa to opb: opb serves it and issued its SIM's key.
    let ported = [(NUMBER, "opb")];
    let clock = ManualClock::new(T0);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ((a_listener, a_addr), (b_listener, b_addr)) = (smpp_listener().await, smpp_listener().await);
    let link = |operator: &str, addr, system_id: &str| InterconnectPeer {
        operator: op(operator),
        addr,
        system_id: system_id.into(),
        password: "icpw".into(),
        tls: None,
        enquire_link_ms: operator::config::DEFAULT_ENQUIRE_LINK_MS,
    };
    let opa =
        sms_node("opa", dirs[0].path(), &clock, &ported, |c| c.interconnect = vec![link("opb", b_addr, "ic-opa")])
            .await;
    let opb =
        sms_node("opb", dirs[1].path(), &clock, &ported, |c| c.interconnect = vec![link("opa", a_addr, "ic-opb")])
            .await;
    let opb_key = opb.issue_sim(IMSI, NUMBER, K_SIM).await.unwrap().unwrap();
    let stop = CancellationToken::new();
    let _ = serve(&opa, a_listener, &stop).await;
    let opb_air = serve(&opb, b_listener, &stop).await;

    // The bank still sends to opa, the old operator; opa forwards over the interconnect.
    let b = bank(a_addr).await;
    let id: i64 = b.submit("MyBank", NUMBER, b"Your code is 777111").await.unwrap().parse().unwrap();
    b.unbind().await.unwrap();
    let tpdus = receive(opb_air, 1).await;
    let d = decode(&tpdus[0]);
    assert_eq!((d.originator.value.as_str(), d.user_data.text(d.dcs).as_str()), ("MyBank", "Your code is 777111"));
    assert!(handset(&[&opb_key]).verify(&d, NUMBER, T0).is_authentic());
    let m = opa.store().sms(id).await.unwrap().unwrap();
    assert_eq!(m.route, "interconnect");
    stop.cancel();
}

// The key the OTA server writes into a card is the SMS center's: issued for the OTA job,
// activated by the card's proof of receipt, at account opening and at a port-in.

const OPENED: &str = "4790500000";

/// A handset with a card on the air interface: it acknowledges every SMS-DELIVER, hands a SIM
/// data download to the card and sends its proof of receipt; what it receives otherwise and
/// the answers to its proofs of receipt are reported.
#[derive(Debug)]
enum Heard {
    Sms(Vec<u8>),
    PorAck(u8),
}

fn card_handset(
    air: SocketAddr,
    card: std::sync::Arc<std::sync::Mutex<sim::Card>>,
    stop: CancellationToken,
) -> tokio::sync::mpsc::UnboundedReceiver<Heard> {
    use tokio::io::AsyncWriteExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (imsi, k_sim) = {
            let c = card.lock().unwrap();
            (c.imsi().unwrap(), c.k_sim().to_vec())
        };
        let mut s = TcpStream::connect(air).await.unwrap();
        operator::air::attach_terminal(&mut s, &imsi, &k_sim).await.unwrap().unwrap();
        let mut download = sim::sms_pp::DataDownload::default();
        let mut reference = 0u32;
        loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => return,
                f = operator::air::read_frame(&mut s) => f.unwrap(),
            };
            match frame {
                None => return,
                Some(Frame::Deliver { reference: r, tpdu }) => {
                    s.write_all(&Frame::DeliverAck { reference: r, cause: CAUSE_OK }.encode()).await.unwrap();
                    let d = decode(&tpdu);
                    if !sim::sms_pp::is_data_download(&d) {
                        let _ = tx.send(Heard::Sms(tpdu));
                        continue;
                    }
                    reference += 1;
                    let por = download.deliver(&mut card.lock().unwrap(), &d, reference as u8).and_then(|r| r.por);
                    if let Some(por) = por {
                        let tpdu = Tpdu::Submit(por).encode().unwrap();
                        s.write_all(&Frame::Submit { reference, tpdu }.encode()).await.unwrap();
                    }
                }
                Some(Frame::SubmitAck { cause, .. }) => {
                    let _ = tx.send(Heard::PorAck(cause));
                }
                Some(_) => {}
            }
        }
    });
    rx
}

async fn heard(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Heard>) -> Heard {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("the handset hears something").unwrap()
}

/// The SMS-authentication key the card holds.
fn card_key(card: &std::sync::Mutex<sim::Card>) -> (u8, Vec<u8>) {
    let c = card.lock().unwrap();
    let (version, key) = c.sms_auth_key().expect("a key in the card");
    (version, key.to_vec())
}

/// The SMS center's active key of `imsi`: its version and bytes.
async fn active_key(node: &Node, imsi: &str) -> (u8, Vec<u8>) {
    let keys = node.store().sms_auth_keys(imsi, node.now()).await.unwrap();
    let active = keys.iter().find(|k| k.activated_at.is_some() && k.retired_at.is_none()).expect("an active key");
    let config = &node.config().sms_auth;
    let key = operator::sms_center::authentication::issued_key(
        node.store(),
        node.sealer().unwrap(),
        config,
        imsi,
        active.version,
        node.now(),
    )
    .await
    .unwrap()
    .unwrap();
    (key.version, key.key.to_vec())
}

fn held(version: u8, key: &[u8], accepted_until: Option<i64>) -> HeldKey {
    HeldKey { key: SmsAuthKey::new(version, key).unwrap(), accepted_until }
}

/// Card `n` loaded into the stock with fixed OTA keys (serving `msisdn` if given), and the card
/// the manufacturer personalised from it, with `sms_auth` in its SMS-authentication EF.
async fn stock_card(
    node: &Node,
    n: u32,
    imsi: Option<&str>,
    msisdn: Option<&str>,
    sms_auth: Option<(u8, Vec<u8>)>,
) -> std::sync::Arc<std::sync::Mutex<sim::Card>> {
    let card = operator::ota::stock::NewCard {
        iccid: operator::account_opening::identity::with_luhn_digit(&format!("894700000000{n:06}")),
        imsi: imsi.map(str::to_owned),
        k_sim: Some(vec![n as u8; 32]),
        algorithm: sim::Algorithm::Aes,
        key_len: 16,
        kic: Some(vec![0x11; 16]),
        kid: Some(vec![0x22; 16]),
        key_index: 1,
        msisdn: msisdn.map(|m| m.parse().unwrap()),
    };
    let loaded = operator::ota::stock::load(node.store(), node.config(), card, node.now()).await.unwrap();
    let p = sim::Personalisation {
        imsi: loaded.imsi,
        k_sim: vec![n as u8; 32],
        ota_keys: vec![(1, sim::OtaKeys::aes(&[0x11; 16], &[0x22; 16]).unwrap())],
        msisdn: msisdn.map(|m| format!("+{m}")),
        spn: None,
        smsc: None,
        sms_auth,
    };
    std::sync::Arc::new(std::sync::Mutex::new(sim::Card::personalise(&p).unwrap()))
}

/// A node with an account pool and an OTA server, on `database_url` (SQLite in `dir` if `None`).
async fn ota_node(dir: &std::path::Path, clock: &ManualClock, database_url: Option<&str>) -> Node {
    sms_node("opa", dir, clock, &[], |c| {
        if let Some(url) = database_url {
            c.database_url = url.to_owned();
        }
        c.accounts.msisdn_pool = vec!["4790500000-4790500009".into()];
        c.accounts.imsi_pool = vec!["242010000000100-242010000000199".into()];
        c.ota.sms_center_address = "+4790000000".into();
    })
    .await
}

/// An account opened on a blank card: the OTA job writes the SMS center's key into the card
/// (issued for the job, activated by its proof of receipt), and the SMS the center then sends
/// the new subscriber verifies with the card's key.
async fn account_opening_writes_the_centers_key(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let node = ota_node(dir.path(), &clock, database_url).await;
    let card = stock_card(&node, 1, None, None, None).await;
    let imsi = card.lock().unwrap().imsi().unwrap();
    let request = serde_json::from_value(serde_json::json!({
        "given_name": "Kari", "family_name": "Nordmann", "date_of_birth": "1990-04-17",
        "id_document": "P1234567", "iccid": operator::account_opening::identity::with_luhn_digit("894700000000000001"),
    }))
    .unwrap();
    let opened = operator::account_opening::open(&node, &request, Some("k".into())).await.unwrap();
    assert!(node.store().sms_auth_keys(&imsi, T0).await.unwrap().is_empty(), "no key before the job's attempt");
    let (listener, smpp) = smpp_listener().await;
    let stop = CancellationToken::new();
    let air = serve(&node, listener, &stop).await;
    let mut handset = card_handset(air, card.clone(), stop.clone());
    assert!(matches!(heard(&mut handset).await, Heard::PorAck(CAUSE_OK)));
    let view = operator::account_opening::progress(&node, &opened.id).await.unwrap().unwrap();
    assert!(view.sim_written, "{view:?}");
    assert_eq!(card.lock().unwrap().msisdn().as_deref(), Some("+4790500000"));

    // One key: the card's is the SMS center's active one.
    let (version, key) = card_key(&card);
    assert_eq!((version, key.clone()), active_key(&node, &imsi).await);
    assert_eq!(version, 1);
    let b = bank(smpp).await;
    b.submit("MyBank", OPENED, b"Welcome to Operator A").await.unwrap();
    b.unbind().await.unwrap();
    let Heard::Sms(tpdu) = heard(&mut handset).await else { panic!("an SMS") };
    let mut phone = Verifier { keys: vec![held(version, &key, None)], ..Verifier::default() };
    assert_eq!(phone.verify(&decode(&tpdu), OPENED, T0), Verdict::Authentic { key_version: 1, counter: 1 });
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_opening_writes_the_centers_key_sqlite() {
    account_opening_writes_the_centers_key(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_opening_writes_the_centers_key_postgres() {
    let Some(db) = numport_db::testing::TempDatabase::create().await else { return };
    account_opening_writes_the_centers_key(Some(db.url())).await;
}

/// The port-in of a number whose SIM the node issued with key 1: its card re-written over the
/// air gets key 2, the SMS center's. SMS tagged with 1 before the proof of receipt stay
/// authentic for the grace; after it the center tags with 2, which the card holds.
async fn a_port_in_rotates_the_key_by_ota(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let node = ota_node(dir.path(), &clock, database_url).await;
    let first = node.issue_sim(IMSI, NUMBER, &[2; 32]).await.unwrap().unwrap();
    let card = stock_card(&node, 2, Some(IMSI), Some(NUMBER), Some((first.version, first.key.to_vec()))).await;
    // The port-in as the node records it; the OTA server queues the card's re-write at start.
    let event = operator::store::NewPortEvent {
        message_id: Some(41),
        kind: operator::EventKind::PortIn,
        order_id: Some(7),
        msisdn: NUMBER.parse().unwrap(),
        counterpart: Some(op("opb")),
        detail: serde_json::Value::Null,
        at: T0,
    };
    assert!(node.store().apply_port_in(&event).await.unwrap());
    let (listener, smpp) = smpp_listener().await;
    let stop = CancellationToken::new();
    let air = serve(&node, listener, &stop).await;
    let b = bank(smpp).await;
    let job = async || node.store().ota_job_by_source("port_in:message:41").await.unwrap();
    eventually("the port-in's job issued its key", async || job().await.is_some_and(|j| j.sms_auth_version.is_some()))
        .await;
    assert_eq!(job().await.unwrap().sms_auth_version, Some(2), "the SIM's next version, after issue_sim's");
    // Committed before the handset attaches: tagged at the attach, before any proof of receipt.
    b.submit("MyBank", NUMBER, b"before the re-write").await.unwrap();

    let mut handset = card_handset(air, card.clone(), stop.clone());
    let (mut before, mut acked) = (None, false);
    while before.is_none() || !acked {
        match heard(&mut handset).await {
            Heard::Sms(t) => before = Some(t),
            Heard::PorAck(cause) => acked = cause == CAUSE_OK,
        }
    }
    assert_eq!(job().await.unwrap().state, "done");
    let (version, key) = card_key(&card);
    assert_eq!((version, key.clone()), active_key(&node, IMSI).await, "the card's key is the center's active one");
    assert_eq!(version, 2);
    b.submit("MyBank", NUMBER, b"after the re-write").await.unwrap();
    let Heard::Sms(after) = heard(&mut handset).await else { panic!("an SMS") };
    b.unbind().await.unwrap();

    // The handset holds what the card held: key 1, then key 2 with 1 accepted for the grace.
    let grace = node.config().sms_auth.grace_ms();
    let mut phone = Verifier {
        keys: vec![held(1, &first.key, Some(T0 + grace)), held(version, &key, None)],
        ..Verifier::default()
    };
    let before = decode(&before.unwrap());
    assert_eq!(sms::auth::element(&before).unwrap().unwrap().key_version, 1);
    assert!(phone.verify(&before, NUMBER, T0).is_authentic());
    let after = decode(&after);
    assert_eq!(sms::auth::element(&after).unwrap().unwrap().key_version, 2);
    assert!(phone.verify(&after, NUMBER, T0).is_authentic());
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_rotates_the_key_by_ota_sqlite() {
    a_port_in_rotates_the_key_by_ota(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_rotates_the_key_by_ota_postgres() {
    let Some(db) = numport_db::testing::TempDatabase::create().await else { return };
    a_port_in_rotates_the_key_by_ota(Some(db.url())).await;
}

/// A job whose card never confirms activates nothing: the SIM's key stays, and the key issued
/// for the job goes once a later job's key is activated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ota_job_leaves_the_old_key_active() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let node = sms_node("opa", dir.path(), &clock, &[], |c| {
        c.ota.sms_center_address = "+4790000000".into();
        c.ota.max_attempts = 1;
        c.ota.retry_initial_ms = 1_000;
    })
    .await;
    let first = node.issue_sim(IMSI, NUMBER, &[3; 32]).await.unwrap().unwrap();
    stock_card(&node, 3, Some(IMSI), Some(NUMBER), Some((first.version, first.key.to_vec()))).await;
    let event = operator::store::NewPortEvent {
        message_id: Some(42),
        kind: operator::EventKind::PortIn,
        order_id: Some(8),
        msisdn: NUMBER.parse().unwrap(),
        counterpart: Some(op("opb")),
        detail: serde_json::Value::Null,
        at: T0,
    };
    node.store().apply_port_in(&event).await.unwrap();
    let (listener, _) = smpp_listener().await;
    let stop = CancellationToken::new();
    serve(&node, listener, &stop).await;
    let job = async || node.store().ota_job_by_source("port_in:message:42").await.unwrap();
    eventually("the first attempt", async || job().await.is_some_and(|j| j.attempts == 1)).await;
    clock.advance_ms(1_001);
    node.ota().wake();
    eventually("the job failed", async || job().await.is_some_and(|j| j.state == "failed")).await;
    let keys = node.store().sms_auth_keys(IMSI, node.now()).await.unwrap();
    let states: Vec<(u8, bool)> = keys.iter().map(|k| (k.version, k.activated_at.is_some())).collect();
    assert_eq!(states, [(2, false), (1, true)], "issued for the job, never activated; the first still active");
    assert_eq!(active_key(&node, IMSI).await, (1, first.key.to_vec()));
    // A later key activated: the one no SIM confirmed is gone, the first retired with its grace.
    let third = node.issue_sms_auth_key(IMSI).await.unwrap();
    assert!(node.activate_sms_auth_key(IMSI, third.version).await.unwrap());
    let keys = node.store().sms_auth_keys(IMSI, node.now()).await.unwrap();
    let versions: Vec<(u8, bool)> = keys.iter().map(|k| (k.version, k.retired_at.is_some())).collect();
    assert_eq!(versions, [(3, false), (1, true)]);
    stop.cancel();
}

/// A terminal's own SMS, with a status report asked for: the SMS-DELIVER and the
/// SMS-STATUS-REPORT the center sends back both carry the element, each its own counter, and a
/// status report with its outcome changed, or made up, is forged.
async fn status_reports_are_tagged(one: &One) {
    use tokio::io::AsyncWriteExt;
    let mut s = TcpStream::connect(one.air).await.unwrap();
    operator::air::attach_terminal(&mut s, IMSI, K_SIM).await.unwrap().unwrap();
    let submit = sms::tpdu::SmsSubmit {
        reject_duplicates: false,
        status_report_request: true,
        reply_path: false,
        message_reference: 77,
        destination: Address::international(NUMBER),
        pid: 0,
        dcs: sms::tpdu::DataCoding::GSM7,
        validity: None,
        user_data: sms::tpdu::UserData::gsm7("Note to self").unwrap(),
    };
    let tpdu = Tpdu::Submit(submit).encode().unwrap();
    s.write_all(&Frame::Submit { reference: 1, tpdu }.encode()).await.unwrap();
    let (mut deliver, mut report) = (None, None);
    while deliver.is_none() || report.is_none() {
        let frame = tokio::time::timeout(Duration::from_secs(5), operator::air::read_frame(&mut s))
            .await
            .expect("a frame within 5 s")
            .unwrap()
            .expect("the link stays up");
        let Frame::Deliver { reference, tpdu } = frame else { continue };
        s.write_all(&Frame::DeliverAck { reference, cause: CAUSE_OK }.encode()).await.unwrap();
        match Tpdu::decode_mt(&tpdu).unwrap() {
            Tpdu::Deliver(d) => deliver = Some(d),
            Tpdu::StatusReport(r) => report = Some(r),
            other => panic!("{other:?}"),
        }
    }
    let (deliver, report) = (deliver.unwrap(), report.unwrap());
    assert_eq!((report.message_reference, report.status), (77, 0x00), "delivered");
    let mut phone = handset(&[&one.key]);
    assert!(phone.verify(&deliver, NUMBER, T0).is_authentic());
    let verdict = phone.verify(&report, NUMBER, T0);
    assert!(verdict.is_authentic(), "{verdict}");
    assert_ne!(
        sms::auth::element(&deliver).unwrap().unwrap().counter,
        sms::auth::element(&report).unwrap().unwrap().counter,
        "one sequence, a counter each"
    );
    // A pseudo base station's reports: the genuine one turned into a failure, and one without
    // an element.
    let mut failed = report.clone();
    failed.status = 0x43;
    assert_eq!(phone.verify(&failed, NUMBER, T0), Verdict::Forged(Forgery::BadMac));
    let bare = sms::tpdu::SmsStatusReport { user_data: None, ..report };
    assert_eq!(phone.verify(&bare, NUMBER, T0), Verdict::Forged(Forgery::NoElement));
}

#[tokio::test]
async fn status_reports_are_tagged_sqlite() {
    let one = One::start(|_| {}).await;
    status_reports_are_tagged(&one).await;
    one.stop.cancel();
}

#[tokio::test]
async fn status_reports_are_tagged_postgres() {
    let Some(db) = numport_db::testing::TempDatabase::create().await else { return };
    let one = One::start(|c| c.database_url = db.url().to_owned()).await;
    status_reports_are_tagged(&one).await;
    one.stop.cancel();
}
