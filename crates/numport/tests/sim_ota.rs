//! `numport terminal` with a SIM card file under OTA, on the real binary: personalised with
//! `numport terminal sim new`, the terminal attaches over the air interface, takes a secured
//! command packet in SMS-PP data download (concatenated over several SMS), writes its card
//! file, and sends the card's proof of receipt as an SMS-SUBMIT to the packet's originator;
//! restarted, it refuses the same packet as a replay. The network side here is this test,
//! speaking the air protocol (`sms::air` frames, the attach challenge over K_sim) on loopback
//! as the node does, since the node's SMS center delivers text with TP-PID 0 only.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sim::apdu::{self, fid};
use sim::packet::{CommandHeader, KeyIdentifier, OtaKeys, PorStatus, Spi, Tar, decode_response_packet};
use sim::sms_pp::{command_tpdus, por_from_submit};
use sim::{Algorithm, encode_command_packet};
use sms::air::{CAUSE_OK, Frame};
use sms::{Address, Reference, Timestamp, Tpdu};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const IMSI: &str = "242019000000001";
const K_SIM: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const KIC: &str = "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b";
const KID: &str = "1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d";
const OTA_SERVER: &str = "4790009999";

fn numport(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_numport")).args(args).output().unwrap()
}

fn show(card: &Path) -> serde_json::Value {
    let out = numport(&["terminal", "sim", "show", "--card", card.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn send(s: &mut TcpStream, f: Frame) {
    s.write_all(&f.encode()).await.unwrap();
}

async fn recv(s: &mut TcpStream) -> Frame {
    tokio::time::timeout(Duration::from_secs(20), operator::air::read_frame(s))
        .await
        .expect("the terminal answers")
        .unwrap()
        .expect("the terminal keeps the link")
}

/// The node's side of one terminal session: the attach challenge, the `tpdus` delivered (each
/// acknowledged), then the PoR the terminal submits, acknowledged. The PoR's TPDU.
async fn session(listener: &TcpListener, tpdus: &[Vec<u8>]) -> Vec<u8> {
    let (mut s, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept()).await.unwrap().unwrap();
    let Frame::Attach { imsi } = recv(&mut s).await else { panic!("no attach") };
    let nonce: [u8; 16] = rand::random();
    send(&mut s, Frame::Challenge { nonce }).await;
    let Frame::Response { mac } = recv(&mut s).await else { panic!("no response") };
    assert!(sms::air::verify_attach_proof(&hex::decode(K_SIM).unwrap(), &nonce, &imsi, &mac));
    send(&mut s, Frame::Attached { msisdn: "4790000001".into() }).await;
    for (i, tpdu) in tpdus.iter().enumerate() {
        send(&mut s, Frame::Deliver { reference: 100 + i as u32, tpdu: tpdu.clone() }).await;
    }
    let (mut acked, mut por) = (0, None);
    while acked < tpdus.len() || por.is_none() {
        match recv(&mut s).await {
            Frame::DeliverAck { cause, .. } => {
                assert_eq!(cause, CAUSE_OK);
                acked += 1;
            }
            Frame::Submit { reference, tpdu } => {
                send(&mut s, Frame::SubmitAck { reference, cause: CAUSE_OK }).await;
                por = Some(tpdu);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    por.unwrap()
}

fn terminal(node: SocketAddr, card: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_numport"))
        .args(["terminal", "--node", &node.to_string(), "--imsi", IMSI, "--k-sim", K_SIM])
        .args(["--card", card.to_str().unwrap(), "--count", "1", "--json"])
        .env("NUMPORT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn finish(child: tokio::process::Child) -> serde_json::Value {
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// The PoR in the terminal's SMS-SUBMIT, read as the OTA server reads it.
fn por(tpdu: &[u8], keys: &OtaKeys) -> sim::ResponsePacket {
    let Ok(Tpdu::Submit(submit)) = Tpdu::decode_mo(tpdu) else { panic!("the PoR is no SMS-SUBMIT") };
    assert_eq!(submit.destination.value, OTA_SERVER);
    assert_eq!((submit.pid, submit.dcs.0), (0x7F, 0xF6));
    decode_response_packet(keys, &Spi::SECURE, &por_from_submit(&submit).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_card_takes_an_ota_write_and_refuses_its_replay() {
    let dir = tempfile::tempdir().unwrap();
    let card = dir.path().join("card.json");
    let card_arg = card.to_str().unwrap();
    let out = numport(&[
        "terminal",
        "sim",
        "new",
        "--card",
        card_arg,
        "--imsi",
        IMSI,
        "--k-sim",
        K_SIM,
        "--kic",
        KIC,
        "--kid",
        KID,
        "--msisdn",
        "+4790000001",
        "--spn",
        "Operator A",
        "--smsc",
        "+4790000000",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = show(&card);
    assert_eq!((before["imsi"].as_str(), before["spn"].as_str()), (Some(IMSI), Some("Operator A")));
    let text = std::fs::read_to_string(&card).unwrap();
    assert!(!String::from_utf8_lossy(&numport(&["terminal", "sim", "show", "--card", card_arg]).stdout).contains(KIC));
    assert!(text.to_lowercase().contains(KIC), "the card itself holds its keys");

    // The operator's write after a port-in: new SPN, SMS center, number; long enough for
    // three SMS.
    let keys = OtaKeys::aes(&hex::decode(KIC).unwrap(), &hex::decode(KID).unwrap()).unwrap();
    let mut script = Vec::new();
    for record in 1..=2 {
        script.extend(apdu::select_path(&[fid::DF_GSM, fid::EF_SMSP]));
        script.extend(apdu::update_record(record, &sim::files::encode_smsp_record("+4791000000").unwrap()));
        script.extend(apdu::select_path(&[fid::DF_GSM, fid::EF_MSISDN]));
        script.extend(apdu::update_record(record, &sim::files::encode_msisdn_record("+4791000042").unwrap()));
    }
    script.extend(apdu::select_path(&[fid::DF_GSM, fid::EF_SPN]));
    script.extend(apdu::update_binary(0, &sim::files::encode_spn("Operator B", 1).unwrap()));
    let header = CommandHeader {
        spi: Spi::SECURE,
        kic: KeyIdentifier::new(1, Algorithm::Aes),
        kid: KeyIdentifier::new(1, Algorithm::Aes),
        tar: Tar::RFM_SIM,
        counter: 1,
    };
    let packet = encode_command_packet(&keys, &header, &script).unwrap();
    let scts = Timestamp { year: 26, month: 12, day: 7, hour: 14, minute: 0, second: 0, tz_quarters: 4 };
    let tpdus = command_tpdus(&Address::international(OTA_SERVER), &packet, Reference::Eight(3), scts).unwrap();
    assert!(tpdus.len() >= 2, "{} SMS", tpdus.len());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = listener.local_addr().unwrap();
    let child = terminal(node, &card);
    let por_tpdu = session(&listener, &tpdus).await;
    let shown = finish(child).await;
    assert_eq!(shown["sim_data_download"]["status"], 0, "{shown}");
    let r = por(&por_tpdu, &keys);
    assert_eq!((r.status, r.counter, r.authenticated), (PorStatus::Ok, 1, true));
    let after = show(&card);
    assert_eq!(
        (after["spn"].as_str(), after["smsc"].as_str(), after["msisdn"].as_str()),
        (Some("Operator B"), Some("+4791000000"), Some("+4791000042"))
    );
    assert_eq!(after["counters"]["B00010"], 1);

    // Restarted, the terminal gets the same packet again (captured and replayed): refused,
    // nothing written.
    let child = terminal(node, &card);
    let por_tpdu = session(&listener, &tpdus).await;
    let shown = finish(child).await;
    assert_eq!(shown["sim_data_download"]["status"], PorStatus::CounterLow.code(), "{shown}");
    assert_eq!(por(&por_tpdu, &keys).status, PorStatus::CounterLow);
    assert_eq!(show(&card), after);
}
