//! The node's SMS center: a bank binds with `smpplib` and submits; each message is routed by
//! the node's portability replica and recorded with its route before it is acknowledged.

mod common;

use std::sync::Arc;

use common::*;
use numport_core::ManualClock;
use operator::store::sms::SmsState;
use operator::{Listeners, Node, OperatorConfig};
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
    let config = OperatorConfig {
        database_url: format!("sqlite://{}/operator-{{name}}.db", dir.path().display()),
        npdb: replica::ReplicaConfig { data_dir: npdb.path().to_owned(), ..config("opa", "http://127.0.0.1:9").npdb },
        ..config("opa", "http://127.0.0.1:9")
    };
    let node = Node::open(config, Arc::new(ManualClock::new(T0))).await.unwrap();
    node.store().upsert_esme(&smsc::EsmeAccount::new("bank", "s3cret", 100).unwrap(), T0).await.unwrap();
    (node, [npdb, dir])
}

#[tokio::test]
async fn submits_are_routed_by_the_replica_and_recorded_before_the_answer() {
    if !std::process::Command::new("python3").args(["-c", "import smpplib"]).output().is_ok_and(|o| o.status.success())
    {
        eprintln!("python3 with smpplib not installed: skipping (pip install smpplib)");
        return;
    }
    // The replica's data, as a previous run left it: 4790000001 was ported from opa to opb.
    let (node, _dirs) = opa_node(&[("4790000001", "opb")]).await;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smpp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = smpp.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server =
        tokio::spawn(node.clone().serve(Listeners { http, enum_dns: None, smpp: Some(smpp), air: None }, stop.clone()));

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
    let (node, _dirs) = opa_node(&[]).await;
    node.store().upsert_sim("242010000000002", "4790000002", b"k-sim-2").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let smpp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let air = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (smpp_addr, air_addr) = (smpp.local_addr().unwrap(), air.local_addr().unwrap());
    let stop = CancellationToken::new();
    let listeners = Listeners { http, enum_dns: None, smpp: Some(smpp), air: Some(air) };
    let server = tokio::spawn(node.clone().serve(listeners, stop.clone()));

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
    stop.cancel();
    drop(t);
    server.await.unwrap().unwrap();
}
