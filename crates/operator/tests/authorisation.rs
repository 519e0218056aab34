//! The port-out authorisation by SMS to the service number, over a real air interface socket:
//! the donor deposits the proof computed from the subscriber's port key for the number the
//! SIM attached as, and refuses, each with its own `SubmitAck` cause, a text naming another
//! number, a malformed text, a sender that is no subscriber or has no port key, and a deposit
//! the clearinghouse refuses. Nothing sent to the service number is stored as a short message.

mod common;

use axum::http::StatusCode;
use common::*;
use numport_core::proof::Nonce;
use operator::air::{
    CAUSE_FACILITY_NOT_SUBSCRIBED, CAUSE_FACILITY_REJECTED, CAUSE_SEMANTICALLY_INCORRECT_MESSAGE, CAUSE_SM_REJECTED,
    CAUSE_UNKNOWN_SUBSCRIBER, send_authorisation,
};
use operator::config::DEFAULT_SERVICE_NUMBER;
use operator::{EventKind, Listeners, PortOutText};
use serde_json::json;
use sms::address::Address;
use sms::air::{CAUSE_OK, Frame};
use sms::tpdu::{DataCoding, SmsSubmit, Tpdu, UserData};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// SIMs: (IMSI, number, K_sim). The first is a subscriber with a port key, the second one
/// without, the third's number is no subscriber here.
const SIMS: [(&str, &str, &[u8]); 3] = [
    ("242010000000001", "4790000001", b"k-sim-1"),
    ("242010000000005", "4790000005", b"k-sim-5"),
    ("242010000000009", "4790000009", b"k-sim-9"),
];

struct Donor {
    n: TestNode,
    ch: FakeClearinghouse,
    air: std::net::SocketAddr,
    stop: CancellationToken,
}

async fn donor() -> Donor {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    n.add_subscriber("4790000001", Some(&port_key("424242")), [0; 4]).await;
    n.add_subscriber("4790000005", None, [0; 4]).await;
    for (imsi, number, k_sim) in SIMS {
        n.store().upsert_sim(imsi, number, k_sim).await.unwrap();
    }
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let air = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = air.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(
        n.node.clone().serve(
            Listeners { http, enum_dns: None, smpp: None, smpp_tls: None, air: Some(air), gy: None },
            stop.clone(),
        ),
    );
    Donor { n, ch, air: addr, stop }
}

impl Donor {
    /// Attaches SIM `i` of [`SIMS`].
    async fn attach(&self, i: usize) -> TcpStream {
        let (imsi, number, k_sim) = SIMS[i];
        let mut s = TcpStream::connect(self.air).await.unwrap();
        let attached = operator::air::attach_terminal(&mut s, imsi, k_sim).await.unwrap();
        assert_eq!(attached, Ok(number.to_owned()));
        s
    }

    /// `text` from SIM `i` to the service number; the `SubmitAck` cause.
    async fn send_text(&self, i: usize, text: &str) -> u8 {
        let mut s = self.attach(i).await;
        let submit = SmsSubmit {
            reject_duplicates: false,
            status_report_request: false,
            reply_path: false,
            message_reference: 9,
            destination: Address::international(DEFAULT_SERVICE_NUMBER),
            pid: 0,
            dcs: DataCoding::GSM7,
            validity: None,
            user_data: UserData::gsm7(text).unwrap(),
        };
        let tpdu = Tpdu::Submit(submit).encode().unwrap();
        s.write_all(&Frame::Submit { reference: 3, tpdu }.encode()).await.unwrap();
        match operator::air::read_frame(&mut s).await.unwrap() {
            Some(Frame::SubmitAck { reference: 3, cause }) => cause,
            other => panic!("expected the SubmitAck, got {other:?}"),
        }
    }
}

fn text(number: Option<&str>) -> PortOutText {
    PortOutText { recipient: op("opb"), nonce: Nonce([0x11; 16]), expiry: T0 + 120_000, msisdn: number.map(msisdn) }
}

#[tokio::test]
async fn the_attached_subscriber_authorises_its_own_number_and_the_donor_deposits() {
    let d = donor().await;
    let mut s = d.attach(0).await;
    let cause = send_authorisation(&mut s, DEFAULT_SERVICE_NUMBER, &text(None), 1).await.unwrap();
    assert_eq!(cause, CAUSE_OK);
    let auth = text(None);
    let proof = port_key("424242").prove(&auth.nonce, &msisdn("4790000001"), &op("opb"), auth.expiry);
    let calls = d.ch.calls("/v1/deposits");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body, json!({"msisdn": "4790000001", "nonce": auth.nonce.to_hex(), "proof": proof.to_hex()}));
    let key = format!("opa-auth-4790000001-{}", auth.nonce.to_hex());
    assert_eq!(calls[0].idempotency_key.as_deref(), Some(key.as_str()));
    let events = d.n.store().port_events(&msisdn("4790000001")).await.unwrap();
    assert_eq!((events[0].kind, events[0].order_id), (EventKind::Deposit, Some(7)));
    assert_eq!(events[0].detail["channel"], "service_number");

    // Naming its own number is the same authorisation.
    let cause = send_authorisation(&mut s, DEFAULT_SERVICE_NUMBER, &text(Some("4790000001")), 2).await.unwrap();
    assert_eq!(cause, CAUSE_OK);
    assert_eq!(d.ch.calls("/v1/deposits").len(), 2);
    assert_eq!(d.n.store().max_sms_id().await.unwrap(), 0, "nothing stored as a short message");
    d.stop.cancel();
}

#[tokio::test]
async fn a_terminal_cannot_authorise_another_number() {
    let d = donor().await;
    // The subscriber 4790000005 has no port key; 4790000001's SIM names it, and the reverse.
    let mut s = d.attach(0).await;
    let cause = send_authorisation(&mut s, DEFAULT_SERVICE_NUMBER, &text(Some("4790000005")), 1).await.unwrap();
    assert_eq!(cause, CAUSE_FACILITY_REJECTED);
    let mut s = d.attach(1).await;
    let cause = send_authorisation(&mut s, DEFAULT_SERVICE_NUMBER, &text(Some("4790000001")), 1).await.unwrap();
    assert_eq!(cause, CAUSE_FACILITY_REJECTED);
    assert!(d.ch.calls("/v1/deposits").is_empty());
    d.stop.cancel();
}

#[tokio::test]
async fn refusals_carry_their_causes() {
    let d = donor().await;
    let nonce = Nonce([0x22; 16]).to_hex();
    for bad in ["", "Please port me", "PORT opb", &format!("PORT opb {nonce} tomorrow"), "PORT Opb 00 1"] {
        assert_eq!(d.send_text(0, bad).await, CAUSE_SEMANTICALLY_INCORRECT_MESSAGE, "{bad:?}");
    }
    let good = text(None).to_string();
    assert_eq!(d.send_text(1, &good).await, CAUSE_FACILITY_NOT_SUBSCRIBED, "no port key");
    assert_eq!(d.send_text(2, &good).await, CAUSE_UNKNOWN_SUBSCRIBER, "no subscriber");
    assert!(d.ch.calls("/v1/deposits").is_empty());

    let refusal = json!({"error": "nonce_reused", "message": "this nonce was used"});
    d.ch.answer_with("/v1/deposits", StatusCode::CONFLICT, refusal);
    assert_eq!(d.send_text(0, &good).await, CAUSE_SM_REJECTED, "the clearinghouse refused the deposit");
    assert!(d.n.store().port_events(&msisdn("4790000001")).await.unwrap().is_empty());
    assert_eq!(d.n.store().max_sms_id().await.unwrap(), 0);
    d.stop.cancel();
}

/// Terminals that stay attached and authorise one after another while the others do: every
/// authorisation is answered, however the session's own database reads (its rescans) and
/// the authorisations' statements interleave on the node's one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_attached_terminals_authorising_at_once_are_all_answered() {
    let d = donor().await;
    let mut terminals = Vec::new();
    for t in 0..8u8 {
        let mut s = d.attach(0).await;
        terminals.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut sent = 0u32;
            // Past several of the session's 500 ms rescans.
            while started.elapsed() < std::time::Duration::from_millis(1500) {
                sent += 1;
                let auth = PortOutText { nonce: Nonce([t; 16]), expiry: T0 + sent as i64, ..text(None) };
                let answer = send_authorisation(&mut s, DEFAULT_SERVICE_NUMBER, &auth, sent);
                let cause = tokio::time::timeout(std::time::Duration::from_secs(5), answer).await;
                assert_eq!(cause.expect("answered within 5 s").unwrap(), CAUSE_OK);
            }
            sent
        }));
    }
    let mut total = 0;
    for t in terminals {
        total += t.await.unwrap();
    }
    assert_eq!(d.ch.calls("/v1/deposits").len(), total as usize);
    d.stop.cancel();
}
