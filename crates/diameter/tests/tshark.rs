//! The Gy bytes on the wire, captured on loopback and decoded by tshark (Wireshark's Diameter
//! dissector and dictionary, independent of this crate): the client's CER, CCRs with MSCC,
//! Service-Information (PS and IMS), the server's CEA and CCAs with grants and
//! Final-Unit-Indication, DWR/DWA, DPR/DPA and a T-flagged retransmission: no malformed packet, no expert warning, and every
//! AVP named. Needs tshark and its dumpcap allowed to capture on lo (see testkit).

mod common;

use std::time::Duration;

use common::{OCS_REALM, identity, service_information};
use diameter::avp::Writer;
use diameter::cc::*;
use diameter::message::Header;
use diameter::peer::{Client, ClientConfig, Timers};
use testkit::capture::{Capture, PROBLEMS, tshark};

fn ccr(kind: CcRequestType, number: u32) -> Ccr {
    Ccr {
        session_id: "pgw.numport.test;1780000000;7".into(),
        origin_host: String::new(),
        origin_realm: String::new(),
        destination_realm: OCS_REALM.into(),
        destination_host: None,
        auth_application_id: 4,
        service_context_id: PS_CONTEXT.into(),
        request_type: kind,
        request_number: number,
        user_name: Some("4790000001".into()),
        origin_state_id: Some(1),
        event_timestamp: Some(ntp_seconds(1_780_000_000)),
        subscription_ids: vec![
            SubscriptionId { kind: SubscriptionIdType::EndUserE164, data: "4790000001".into() },
            SubscriptionId { kind: SubscriptionIdType::EndUserImsi, data: "242019876543210".into() },
        ],
        requested_action: None,
        multiple_services_indicator: Some(1),
        mscc: vec![Mscc {
            rating_group: Some(10),
            service_identifiers: vec![1],
            requested: Some(ServiceUnit { total_octets: Some(1 << 20), ..Default::default() }),
            used: if number > 0 {
                vec![ServiceUnit {
                    time: Some(60),
                    total_octets: Some(3000),
                    input_octets: Some(1000),
                    output_octets: Some(2000),
                    service_specific_units: Some(1),
                }]
            } else {
                vec![]
            },
            reporting_reason: (number > 0).then_some(2),
            ..Default::default()
        }],
        termination_cause: (kind == CcRequestType::Termination).then_some(1),
        service_information: Some(service_information()),
        retransmitted: false,
    }
}

/// Grants with a Final-Unit-Indication on the update: the last grant before the balance ends.
struct FinalGrant;

impl diameter::peer::CreditControlHandler for FinalGrant {
    async fn credit_control(&self, ccr: Ccr) -> Cca {
        let mut cca = Cca::answering(&ccr, 2001);
        if ccr.request_type != CcRequestType::Termination {
            let last = ccr.request_type == CcRequestType::Update;
            cca.mscc = vec![Mscc {
                rating_group: Some(10),
                service_identifiers: vec![1],
                granted: Some(ServiceUnit { total_octets: Some(500_000), time: Some(3600), ..Default::default() }),
                validity_time: Some(600),
                result_code: Some(2001),
                final_unit_indication: last.then(|| FinalUnitIndication {
                    action: FinalUnitAction::Redirect,
                    redirect_server: Some(RedirectServer {
                        address_type: RedirectAddressType::Url,
                        address: "http://topup.numport.test/".into(),
                    }),
                }),
                volume_quota_threshold: Some(50_000),
                quota_holding_time: Some(30),
                ..Default::default()
            }];
        }
        cca
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tshark_decodes_the_gy_session_with_every_avp_named() {
    let Some(_) = testkit::command("tshark", "apt-get install tshark") else { return };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("gy.pcapng");
    let Some(capture) = Capture::start(&format!("tcp port {}", addr.port()), &pcap).await else { return };

    let peers =
        vec![diameter::peer::KnownPeer { origin_host: "pgw.numport.test".into(), origin_realm: OCS_REALM.into() }];
    let mut config = diameter::peer::ServerConfig::new(identity(common::OCS_HOST, OCS_REALM), peers);
    config.timers = Timers { tw: Duration::from_millis(200), capabilities_exchange: Duration::from_secs(2) };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(diameter::peer::serve(listener, config.into(), FinalGrant.into(), stop_rx));

    let mut config = ClientConfig::new(identity("pgw.numport.test", OCS_REALM), OCS_REALM, vec![addr]);
    config.timers.tw = Duration::from_secs(30);
    let client = Client::start(config);
    for (kind, n) in [(CcRequestType::Initial, 0), (CcRequestType::Update, 1), (CcRequestType::Termination, 2)] {
        assert_eq!(client.credit_control(ccr(kind, n)).await.unwrap().result_code, 2001);
    }
    client.credit_control(ccr(CcRequestType::Event, 3)).await.unwrap();
    // Silence: the server's DWR, the client's DWA; then the client's DPR.
    tokio::time::sleep(Duration::from_millis(350)).await;
    client.stop().await;

    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let cer = diameter::Capabilities::of(&identity("pgw.numport.test", OCS_REALM), &[4]).encode_request(1, 1);
    common::send(&mut raw, &cer).await;
    common::read_message(&mut raw).await.unwrap();
    // A control, T-flagged as after a failover: a request with an AVP no dictionary has
    // (without M, so it is answered).
    let mut header = Header::request(272, 4, 77, 77);
    header.flags |= diameter::message::FLAG_T;
    let mut w = Writer::message(Vec::new(), &header);
    let mut control = ccr(CcRequestType::Event, 9);
    control.origin_host = "pgw.numport.test".into();
    control.origin_realm = OCS_REALM.into();
    w.encoded(&control.encode(0, 0)[20..]);
    w.raw_avp(64_999, 0, 0, b"unknown");
    common::send(&mut raw, &w.finish()).await;
    common::read_message(&mut raw).await.unwrap();
    let me = identity("pgw.numport.test", OCS_REALM);
    let dpr = diameter::Control::request(&me, 282, Some(diameter::DisconnectCause::Rebooting));
    common::send(&mut raw, &dpr.encode_request(78, 78)).await;
    common::read_message(&mut raw).await.unwrap();
    assert!(common::closed(&mut raw).await);
    let _ = stop.send(true);
    let _ = server.await;
    let pcap = capture.stop().await;

    let decode_as = format!("tcp.port=={},diameter", addr.port());
    let fields =
        |filter: &str, field: &str| tshark(&pcap, &["-d", &decode_as, "-Y", filter, "-T", "fields", "-e", field]);
    // The only Diameter packet tshark warns about is the control, for its unknown AVP. (TCP's
    // own notes on loopback timing, such as a retransmitted FIN, are not the codec's.)
    let control = fields("diameter.hopbyhopid == 77 && diameter.flags.request == 1", "frame.number");
    assert_eq!(control.len(), 1);
    let problems = fields(&format!("diameter && ({PROBLEMS})"), "frame.number");
    assert_eq!(problems, control, "malformed or warned Diameter packets besides the control");
    let commands: Vec<String> = fields("diameter", "diameter.cmd.code");
    for (code, what) in [("257", "CER/CEA"), ("280", "DWR/DWA"), ("272", "CCR/CCA"), ("282", "DPR/DPA")] {
        let n = commands.iter().flat_map(|c| c.split(',')).filter(|c| *c == code).count();
        assert!(n >= 2, "tshark saw {n} of {what} in {commands:?}");
    }
    assert_eq!(fields("diameter.flags.T == 1", "diameter.endtoendid").len(), 1, "one T-flagged request");

    // Every AVP has a name in Wireshark's dictionary, except the control's.
    let avps: Vec<String> = tshark(&pcap, &["-d", &decode_as, "-V", "-Y", "diameter"])
        .into_iter()
        .filter_map(|l| l.trim_start().strip_prefix("AVP: ").map(str::to_owned))
        .collect();
    let unknown: Vec<&String> = avps.iter().filter(|l| l.starts_with("Unknown")).collect();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(unknown[0].starts_with("Unknown(64999)"), "{unknown:?}");
    for name in [
        "Multiple-Services-Credit-Control(456)",
        "Requested-Service-Unit(437)",
        "Granted-Service-Unit(431)",
        "Used-Service-Unit(446)",
        "CC-Service-Specific-Units(417)",
        "Final-Unit-Indication(430)",
        "Redirect-Server-Address(435)",
        "Subscription-Id-Data(444)",
        "PS-Information(874)",
        "IMS-Information(876)",
        "Called-Party-Address(832)",
        "Host-IP-Address(257)",
        "Disconnect-Cause(273)",
    ] {
        assert!(avps.iter().any(|a| a.starts_with(name)), "tshark named no {name}");
    }
}
