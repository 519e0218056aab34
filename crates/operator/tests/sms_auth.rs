//! SMS authentication (F3) on real nodes over real sockets: the SMS center tags every
//! SMS-DELIVER it sends over the air with the SIM's key and a counter, and a handset holding
//! the key (`sms::auth::Verifier`) finds what the network sent authentic and what a pseudo
//! base station sends (no element, a made-up one, a recording played back) forged or replayed.
//! A message forwarded over the interconnect after a port is tagged by the operator serving
//! the number now; a key rotation keeps delivery working; counters go on growing across a
//! restart of the SMS center; keys are sealed at rest. On PostgreSQL too when
//! `NUMPORT_TEST_POSTGRES_URL` is set (under `CI=true` it must be).

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
