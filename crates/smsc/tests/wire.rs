//! The SMPP bytes on the wire, as Wireshark's dissector reads them: a session of binds (the
//! answer with its sc_interface_version), submits, submit_multi (its answer with an
//! unsuccess_sme), data_sm, query_sm, cancel_sm, replace_sm, enquire_link, a malformed PDU and
//! its generic_nack, and unbind is captured on the
//! loopback interface and decoded by `tshark`, which must find every PDU and no malformed
//! packet. Needs tshark and its dumpcap, allowed to capture on lo (see [`testkit`] for what a
//! missing one does).

use smsc::{ChannelHandler, EsmeAccount, EsmeDirectory, SmppConfig};
use testkit::capture::{Capture, tshark};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn tshark_decodes_the_session_without_malformed_packets() {
    let Some(_) = testkit::command("tshark", "apt-get install tshark") else { return };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("smpp.pcapng");
    let Some(capture) = Capture::start(&format!("tcp port {}", addr.port()), &pcap).await else { return };

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
    let pcap = capture.stop().await;
    stop.cancel();

    let port = format!("tcp.port=={},smpp", addr.port());
    let decode = |filter: &str| tshark(&pcap, &["-d", &port, "-Y", filter, "-T", "fields", "-e", "smpp.command_id"]);
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
