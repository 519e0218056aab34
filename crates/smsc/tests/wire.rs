//! The SMPP bytes on the wire, as Wireshark's dissector reads them: a session of binds (the
//! answer with its sc_interface_version), submits, submit_multi (its answer with an
//! unsuccess_sme), data_sm, query_sm, cancel_sm, replace_sm, enquire_link, a malformed PDU and
//! its generic_nack, and unbind is captured on the
//! loopback interface and decoded by `tshark`, which must find every PDU and no malformed
//! packet. Needs tshark and its dumpcap, allowed to capture on lo (see [`testkit`] for what a
//! missing one does).

use std::time::Duration;

use smsc::{ChannelHandler, EsmeAccount, EsmeDirectory, SmppConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn tshark_decodes_the_session_without_malformed_packets() {
    let Some(dumpcap) = testkit::command("dumpcap", "apt-get install tshark") else { return };
    let Some(tshark) = testkit::command("tshark", "apt-get install tshark") else { return };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("smpp.pcapng");
    let mut capture = tokio::process::Command::new(dumpcap)
        .args(["-q", "-i", "lo", "-f", &format!("tcp port {}", addr.port()), "-w"])
        .arg(&pcap)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Capturing has begun once dumpcap has written its file header; it exits at once when it
    // may not capture.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = capture.try_wait() {
            let mut stderr = String::new();
            if let Some(mut e) = capture.stderr.take() {
                let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut stderr).await;
            }
            // The line naming the failure starts with `dumpcap:`; advice on permissions follows.
            let why = stderr.lines().find(|l| l.starts_with("dumpcap:")).unwrap_or("no message");
            testkit::skip(
                &format!("permission for dumpcap to capture on lo ({status}; {why})"),
                "run as root, or as a member of group wireshark after `dpkg-reconfigure wireshark-common`",
            );
            return;
        }
        if std::fs::metadata(&pcap).is_ok_and(|m| m.len() > 0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "dumpcap did not start capturing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let directory = EsmeDirectory::new([EsmeAccount::new("bank", "s3cret", 100).unwrap()]);
    tokio::spawn(smsc::serve(
        listener,
        SmppConfig::default(),
        directory,
        ChannelHandler::new(tx),
        smsc::Receivers::new(),
        stop.clone(),
    ));
    let c = smsc::client::Client::bind_transmitter(addr, "bank", "s3cret").await.unwrap();
    c.submit("MyBank", "4790000001", b"Your code is 123456").await.unwrap();
    message_operations(&c).await;
    c.unbind().await.unwrap();
    rx.recv().await.unwrap();
    // An unknown command id answered with generic_nack.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&[0, 0, 0, 16, 0, 0, 0x09, 0x99, 0, 0, 0, 0, 0, 0, 0, 7]).await.unwrap();
    let mut buf = [0u8; 16];
    tokio::io::AsyncReadExt::read_exact(&mut raw, &mut buf).await.unwrap();
    drop(raw);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SIGINT, so that dumpcap closes its file properly.
    // SAFETY: signalling our own child; no memory is involved.
    unsafe { libc::kill(capture.id().unwrap_or(0) as i32, libc::SIGINT) };
    let _ = capture.wait().await;
    stop.cancel();

    let decode = |filter: &str| {
        let out = std::process::Command::new(&tshark)
            .args(["-r"])
            .arg(&pcap)
            .args([
                "-d",
                &format!("tcp.port=={},smpp", addr.port()),
                "-Y",
                filter,
                "-T",
                "fields",
                "-e",
                "smpp.command_id",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect::<Vec<_>>()
    };
    let pdus: Vec<String> =
        decode("smpp").iter().flat_map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>()).collect();
    // bind_transmitter(_resp), submit_sm(_resp), unbind(_resp), the unknown command, generic_nack,
    // and the message operations and their responses.
    for id in ["0x00000002", "0x80000002", "0x00000004", "0x80000004", "0x00000006", "0x80000006", "0x80000000"]
        .into_iter()
        .chain(["0x00000021", "0x80000021", "0x00000103", "0x80000103", "0x00000003", "0x80000003"])
        .chain(["0x00000008", "0x80000008", "0x00000007", "0x80000007"])
    {
        assert!(pdus.iter().any(|p| p == id), "tshark saw no {id} in {pdus:?}");
    }
    assert_eq!(decode("smpp.SC_interface_version").len(), 1, "the bind answer's sc_interface_version");
    assert_eq!(decode("smpp.error_status_code").len(), 1, "submit_multi_resp's unsuccess_sme");
    assert_eq!(decode("_ws.malformed"), Vec::<String>::new(), "malformed packets");
}

/// submit_multi (to a number and a distribution list), data_sm, query_sm, cancel_sm and
/// replace_sm on bound client `c`; the handler keeps nothing, so the last three are refused.
async fn message_operations(c: &smsc::client::Client) {
    use smsc::rusmpp::pdus::{CancelSm, DataSm, QuerySm, ReplaceSm, SubmitMulti};
    use smsc::rusmpp::tlvs::MessageSubmissionRequestTlvValue;
    use smsc::rusmpp::types::{AnyOctetString, OctetString};
    use smsc::rusmpp::values::{DestAddress, DistributionListName, MessagePayload, Npi, SmeAddress, Ton};
    let multi = SubmitMulti::builder()
        .source_addr("MyBank".parse().unwrap())
        .dest_address(vec![
            DestAddress::SmeAddress(SmeAddress::new(Ton::International, Npi::Isdn, "4790000001".parse().unwrap())),
            DestAddress::DistributionListName(DistributionListName::new("staff".parse().unwrap())),
        ])
        .short_message(OctetString::from_slice(b"To all").unwrap())
        .build();
    c.call(multi).await.unwrap();
    let payload = MessagePayload::new(AnyOctetString::from_static_slice(b"A data_sm body"));
    let data = DataSm::builder()
        .source_addr("MyBank".parse().unwrap())
        .destination_addr("4790000001".parse().unwrap())
        .push_tlv(MessageSubmissionRequestTlvValue::MessagePayload(payload))
        .build();
    c.call(data).await.unwrap();
    use smsc::client::ClientError::Status;
    use smsc::rusmpp::CommandStatus::{EsmeRcancelfail, EsmeRqueryfail, EsmeRreplacefail};
    let id = || "1".parse().unwrap();
    let query = c.call(QuerySm::builder().message_id(id()).build()).await;
    assert!(matches!(query, Err(Status(EsmeRqueryfail))), "{query:?}");
    let cancel = c.call(CancelSm::builder().message_id(id()).build()).await;
    assert!(matches!(cancel, Err(Status(EsmeRcancelfail))), "{cancel:?}");
    let replace = c.call(ReplaceSm::builder().message_id(id()).build()).await;
    assert!(matches!(replace, Err(Status(EsmeRreplacefail))), "{replace:?}");
}
