//! The responder and the initiator on loopback, with hostile and broken peers: requests before
//! CER, unknown peers, no common application, unknown mandatory AVPs, bad AVP lengths, missing
//! AVPs, other applications, oversized messages, silent peers; and the initiator's watchdog,
//! failover with T-flagged retransmission, and TLS.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{OCS_HOST, OCS_REALM, closed, identity, quick_timers, read_message, send, server};
use diameter::avp::{FLAG_M, Writer};
use diameter::cc::{CcRequestType, Ccr, Mscc, ServiceUnit, SubscriptionId, SubscriptionIdType};
use diameter::dict::{self as d, application, command};
use diameter::message::{FLAG_E, FLAG_R, Header};
use diameter::peer::{Client, ClientConfig, ClientTls, Timers};
use diameter::{Capabilities, Cca, Control, Message};
use tokio::net::{TcpListener, TcpStream};

const GW: (&str, &str) = ("gw.numport.test", "numport.test");

fn cer(host: &str, realm: &str, apps: &[u32]) -> Vec<u8> {
    Capabilities::of(&identity(host, realm), apps).encode_request(1, 1)
}

fn ccr(session: &str, kind: CcRequestType, number: u32) -> Ccr {
    Ccr {
        session_id: session.into(),
        origin_host: GW.0.into(),
        origin_realm: GW.1.into(),
        destination_realm: OCS_REALM.into(),
        destination_host: None,
        auth_application_id: application::CREDIT_CONTROL,
        service_context_id: diameter::cc::PS_CONTEXT.into(),
        request_type: kind,
        request_number: number,
        user_name: None,
        origin_state_id: None,
        event_timestamp: Some(diameter::cc::ntp_seconds(1_780_000_000)),
        subscription_ids: vec![SubscriptionId { kind: SubscriptionIdType::EndUserE164, data: "4790000001".into() }],
        requested_action: None,
        multiple_services_indicator: Some(1),
        mscc: vec![Mscc {
            rating_group: Some(10),
            requested: Some(ServiceUnit { total_octets: Some(5000), ..ServiceUnit::default() }),
            ..Mscc::default()
        }],
        termination_cause: None,
        service_information: None,
        retransmitted: false,
    }
}

/// A CCR's mandatory AVPs written by hand, then `extra`, for malformed requests.
fn raw_ccr(extra: impl FnOnce(&mut Writer), skip_context: bool) -> Vec<u8> {
    let mut w =
        Writer::message(Vec::new(), &Header::request(command::CREDIT_CONTROL, application::CREDIT_CONTROL, 7, 7));
    w.str(&d::SESSION_ID, "gw;1;raw");
    w.str(&d::ORIGIN_HOST, GW.0);
    w.str(&d::ORIGIN_REALM, GW.1);
    w.str(&d::DESTINATION_REALM, OCS_REALM);
    w.u32(&d::AUTH_APPLICATION_ID, 4);
    if !skip_context {
        w.str(&d::SERVICE_CONTEXT_ID, diameter::cc::PS_CONTEXT);
    }
    w.u32(&d::CC_REQUEST_TYPE, 1);
    w.u32(&d::CC_REQUEST_NUMBER, 0);
    extra(&mut w);
    w.finish()
}

/// The Result-Code, header flags and Failed-AVP content of an answer.
fn outcome(bytes: &[u8]) -> (u32, u8, Option<Vec<u8>>) {
    let m = Message::decode(bytes).expect("a well-formed answer");
    assert!(!m.header.is_request());
    let code = m.find(&d::RESULT_CODE).expect("Result-Code").u32().unwrap();
    (code, m.header.flags, m.find(&d::FAILED_AVP).map(|a| a.data.to_vec()))
}

/// Connected, CER sent and answered 2001.
async fn open(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(&mut s, &cer(GW.0, GW.1, &[4])).await;
    let cea = read_message(&mut s).await.expect("CEA");
    assert_eq!(outcome(&cea).0, 2001);
    s
}

#[tokio::test]
async fn a_ccr_before_cer_is_refused_and_the_connection_closed() {
    let srv = server(&[GW], quick_timers(), 65536, Default::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    send(&mut s, &ccr("gw;1;early", CcRequestType::Initial, 0).encode(1, 1)).await;
    let (code, flags, _) = outcome(&read_message(&mut s).await.expect("an answer"));
    assert_eq!(code, 3010);
    assert_eq!(flags & FLAG_E, FLAG_E, "a protocol error sets E");
    assert!(closed(&mut s).await);
    assert!(srv.handler.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_peer_is_refused_3010_and_no_common_application_5010() {
    let srv = server(&[GW], quick_timers(), 65536, Default::default()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    send(&mut s, &cer("intruder.example", "example", &[4])).await;
    let cea = read_message(&mut s).await.unwrap();
    assert_eq!(Message::decode(&cea).unwrap().header.command, command::CAPABILITIES_EXCHANGE);
    assert_eq!(outcome(&cea).0, 3010);
    assert!(closed(&mut s).await);

    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    send(&mut s, &cer(GW.0, GW.1, &[16_777_238])).await;
    assert_eq!(outcome(&read_message(&mut s).await.unwrap()).0, 5010);
    assert!(closed(&mut s).await);
}

#[tokio::test]
async fn malformed_requests_get_their_result_code_and_failed_avp_and_the_peer_stays_up() {
    let srv = server(&[GW], quick_timers(), 65536, Default::default()).await;
    let mut s = open(srv.addr).await;

    // An unknown AVP with M set: 5001, Failed-AVP holds it.
    send(&mut s, &raw_ccr(|w| w.raw_avp(9999, FLAG_M, 0, b"?"), false)).await;
    let (code, _, failed) = outcome(&read_message(&mut s).await.unwrap());
    assert_eq!(code, 5001);
    let failed = failed.expect("Failed-AVP");
    assert_eq!(&failed[..4], &9999u32.to_be_bytes());
    // The same AVP without M is ignored: the request is answered.
    send(&mut s, &raw_ccr(|w| w.raw_avp(9999, 0, 0, b"?"), false)).await;
    assert_eq!(outcome(&read_message(&mut s).await.unwrap()).0, 2001);

    // An Unsigned32 of 3 octets: 5014 with the AVP.
    send(&mut s, &raw_ccr(|w| w.raw_avp(d::VALIDITY_TIME.code, FLAG_M, 0, &[0, 0, 1]), false)).await;
    let (code, _, failed) = outcome(&read_message(&mut s).await.unwrap());
    assert_eq!(code, 5014);
    assert_eq!(&failed.unwrap()[..4], &448u32.to_be_bytes());

    // An AVP Length beyond the message: 5014, Failed-AVP with the AVP's code.
    let mut bytes = raw_ccr(|w| w.raw_avp(d::RATING_GROUP.code, FLAG_M, 0, &[0, 0, 0, 1]), false);
    let at = bytes.len() - 12;
    bytes[at + 7] = 200;
    send(&mut s, &bytes).await;
    let (code, _, failed) = outcome(&read_message(&mut s).await.unwrap());
    assert_eq!(code, 5014);
    assert_eq!(&failed.unwrap()[..4], &432u32.to_be_bytes());

    // Service-Context-Id missing: 5005, Failed-AVP names it.
    send(&mut s, &raw_ccr(|_| {}, true)).await;
    let (code, _, failed) = outcome(&read_message(&mut s).await.unwrap());
    assert_eq!(code, 5005);
    assert_eq!(&failed.unwrap()[..4], &461u32.to_be_bytes());

    // Bad UTF-8 in Subscription-Id-Data: 5004.
    send(
        &mut s,
        &raw_ccr(
            |w| {
                w.grouped(&d::SUBSCRIPTION_ID, |w| {
                    w.u32(&d::SUBSCRIPTION_ID_TYPE, 0);
                    w.bytes(&d::SUBSCRIPTION_ID_DATA, &[0xff, 0xfe]);
                })
            },
            false,
        ),
    )
    .await;
    assert_eq!(outcome(&read_message(&mut s).await.unwrap()).0, 5004);

    // Another application (Gx): 3007 with E; another command of credit control: 3001.
    let mut gx = raw_ccr(|_| {}, false);
    gx[8..12].copy_from_slice(&16_777_238u32.to_be_bytes());
    send(&mut s, &gx).await;
    let (code, flags, _) = outcome(&read_message(&mut s).await.unwrap());
    assert_eq!((code, flags & FLAG_E), (3007, FLAG_E));
    let mut asr = raw_ccr(|_| {}, false);
    asr[7] = 18; // command 274, Abort-Session
    asr[6] = 1;
    send(&mut s, &asr).await;
    assert_eq!(outcome(&read_message(&mut s).await.unwrap()).0, 3001);

    // Still open: a DWR is answered.
    send(&mut s, &Control::request(&identity(GW.0, GW.1), command::DEVICE_WATCHDOG, None).encode_request(9, 9)).await;
    let dwa = read_message(&mut s).await.unwrap();
    assert_eq!(Message::decode(&dwa).unwrap().header.command, command::DEVICE_WATCHDOG);
    assert_eq!(outcome(&dwa).0, 2001);
}

#[tokio::test]
async fn an_oversized_message_is_answered_5012_and_the_connection_closed() {
    let srv = server(&[GW], quick_timers(), 4096, Default::default()).await;
    let mut s = open(srv.addr).await;
    let mut big = raw_ccr(|w| w.raw_avp(9999, 0, 0, &[0u8; 8192]), false);
    big.truncate(100); // the header claims 8 KiB; the rest never needs to arrive
    send(&mut s, &big).await;
    let (code, _, _) = outcome(&read_message(&mut s).await.expect("an answer"));
    assert_eq!(code, 5012);
    assert!(closed(&mut s).await);
}

#[tokio::test]
async fn a_silent_peer_gets_a_dwr_and_is_closed_when_it_does_not_answer() {
    let srv = server(&[GW], quick_timers(), 65536, Default::default()).await;
    let mut s = open(srv.addr).await;
    let started = Instant::now();
    let dwr = read_message(&mut s).await.expect("a DWR after Tw");
    let h = Message::decode(&dwr).unwrap().header;
    assert_eq!((h.command, h.flags & FLAG_R), (command::DEVICE_WATCHDOG, FLAG_R));
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(closed(&mut s).await, "closed after the DWR went unanswered");
}

#[tokio::test]
async fn a_peer_that_answers_dwr_stays_up_and_dpr_closes_in_order() {
    let srv = server(&[GW], quick_timers(), 65536, Default::default()).await;
    let mut s = open(srv.addr).await;
    let me = identity(GW.0, GW.1);
    for _ in 0..3 {
        let dwr = read_message(&mut s).await.expect("a DWR each Tw");
        let h = Message::decode(&dwr).unwrap().header;
        send(&mut s, &Control::answer(&me, command::DEVICE_WATCHDOG).encode_answer(&h)).await;
    }
    send(&mut s, &ccr("gw;2;a", CcRequestType::Event, 0).encode(5, 5)).await;
    assert_eq!(outcome(&read_message(&mut s).await.unwrap()).0, 2001);
    let dpr = Control::request(&me, command::DISCONNECT_PEER, Some(diameter::DisconnectCause::Rebooting));
    send(&mut s, &dpr.encode_request(6, 6)).await;
    let dpa = read_message(&mut s).await.unwrap();
    assert_eq!(Message::decode(&dpa).unwrap().header.command, command::DISCONNECT_PEER);
    assert!(closed(&mut s).await);
}

/// An OCS that completes the capabilities exchange and then never says anything again.
async fn silent_ocs() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let cer = read_message(&mut s).await.unwrap();
        let h = Message::decode(&cer).unwrap().header;
        let mut cea = Capabilities::of(&identity("silent.numport.test", OCS_REALM), &[4]);
        cea.result_code = Some(2001);
        send(&mut s, &cea.encode_answer(&h)).await;
        while read_message(&mut s).await.is_some() {}
    });
    (addr, task)
}

#[tokio::test]
async fn the_client_fails_over_when_the_watchdog_fails_and_retransmits_with_t() {
    let (silent, _task) = silent_ocs().await;
    let good = server(&[GW], Timers::default(), 65536, Default::default()).await;
    let mut config = ClientConfig::new(identity(GW.0, GW.1), OCS_REALM, vec![silent, good.addr]);
    config.timers = quick_timers();
    config.reconnect_delay = Duration::from_millis(10);
    let client = Client::start(config);
    assert_eq!(client.wait_open(Duration::from_secs(5)).await, Some(silent));

    let cca: Cca =
        client.credit_control(ccr("gw;3;f", CcRequestType::Initial, 0)).await.expect("answered after failover");
    assert_eq!(cca.result_code, 2001);
    assert_eq!(cca.origin_host, OCS_HOST);
    assert_eq!(cca.mscc[0].granted.unwrap().total_octets, Some(5000));
    assert_eq!(client.connected(), Some(good.addr));
    let seen = good.handler.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].retransmitted, "sent again with the T flag after the failover");

    // Requests after the failover are new: no T flag.
    client.credit_control(ccr("gw;3;f", CcRequestType::Update, 1)).await.unwrap();
    assert!(!good.handler.seen.lock().unwrap()[1].retransmitted);
    client.stop().await;
}

#[tokio::test]
async fn the_client_fails_over_when_the_ocs_disconnects() {
    let first = server(&[GW], Timers::default(), 65536, Default::default()).await;
    let second = server(&[GW], Timers::default(), 65536, Default::default()).await;
    let mut config = ClientConfig::new(identity(GW.0, GW.1), OCS_REALM, vec![first.addr, second.addr]);
    config.reconnect_delay = Duration::from_millis(10);
    let client = Client::start(config);
    assert_eq!(client.wait_open(Duration::from_secs(5)).await, Some(first.addr));
    client.credit_control(ccr("gw;4;a", CcRequestType::Initial, 0)).await.unwrap();
    // The first OCS shuts down: DPR, the client answers DPA and moves on.
    first.stop.send(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.connected() != Some(second.addr) {
        assert!(Instant::now() < deadline, "no failover to the second OCS");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cca = client.credit_control(ccr("gw;4;a", CcRequestType::Update, 1)).await.unwrap();
    assert_eq!(cca.result_code, 2001);
    assert_eq!(second.handler.seen.lock().unwrap().len(), 1);
    client.stop().await;
}

#[tokio::test]
async fn client_and_server_over_tls() {
    use numport_tls::pki::{Authority, Leaf};
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::generate("ocs CA", YEAR).unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca.own().cert_pem).unwrap();
    let leaf = Leaf::new("operator", "opa", vec!["127.0.0.1".into()], YEAR);
    let files = ca.issue(&leaf).unwrap().write(dir.path(), "ocs").unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = vec![diameter::peer::KnownPeer { origin_host: GW.0.into(), origin_realm: GW.1.into() }];
    let mut config = diameter::peer::ServerConfig::new(identity(OCS_HOST, OCS_REALM), peers);
    config.tls = Some(numport_tls::server_config(&files, None).unwrap());
    let handler = Arc::new(common::Granting::default());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(diameter::peer::serve(listener, Arc::new(config), handler.clone(), stop_rx));

    let mut config = ClientConfig::new(identity(GW.0, GW.1), OCS_REALM, vec![addr]);
    config.tls = Some(ClientTls {
        config: numport_tls::client_config(&ca_path, None).unwrap(),
        server_name: "127.0.0.1".try_into().unwrap(),
    });
    let client = Client::start(config);
    let cca = client.credit_control(ccr("gw;5;tls", CcRequestType::Event, 0)).await.unwrap();
    assert_eq!(cca.result_code, 2001);
    assert_eq!(handler.seen.lock().unwrap().len(), 1);

    // A plain-text CER on the TLS port gets nothing but a closed connection.
    let mut s = TcpStream::connect(addr).await.unwrap();
    send(&mut s, &cer(GW.0, GW.1, &[4])).await;
    assert!(closed(&mut s).await);
    client.stop().await;
}

#[tokio::test]
async fn a_slow_or_garbled_peer_is_closed_before_the_capabilities_exchange() {
    let timers = Timers { tw: Duration::from_millis(300), capabilities_exchange: Duration::from_millis(300) };
    let srv = server(&[GW], timers, 65536, Default::default()).await;
    // Half a header, then nothing: closed when the CER does not come in time.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    send(&mut s, &cer(GW.0, GW.1, &[4])[..10]).await;
    let started = Instant::now();
    assert!(closed(&mut s).await);
    assert!(started.elapsed() >= Duration::from_millis(250));
    // A version 2 request: answered 5011, then closed (no CER yet).
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let mut v2 = cer(GW.0, GW.1, &[4]);
    v2[0] = 2;
    send(&mut s, &v2).await;
    assert_eq!(outcome(&read_message(&mut s).await.unwrap()).0, 5011);
    assert!(closed(&mut s).await);
    // The server still serves.
    let _ = open(srv.addr).await;
}

#[tokio::test]
async fn no_more_than_max_outstanding_requests_of_a_connection_reach_the_handler() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = vec![diameter::peer::KnownPeer { origin_host: GW.0.into(), origin_realm: GW.1.into() }];
    let mut config = diameter::peer::ServerConfig::new(identity(OCS_HOST, OCS_REALM), peers);
    config.max_outstanding = 1;
    let handler = Arc::new(common::Granting { delay: Some(Duration::from_millis(100)), ..Default::default() });
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(diameter::peer::serve(listener, Arc::new(config), handler.clone(), stop_rx));

    let mut s = open(addr).await;
    let started = Instant::now();
    for n in 0..3 {
        send(&mut s, &ccr("gw;6;q", CcRequestType::Event, n).encode(n + 10, n + 10)).await;
    }
    for n in 0..3u32 {
        let answer = read_message(&mut s).await.unwrap();
        assert_eq!(Message::decode(&answer).unwrap().header.hop_by_hop, n + 10, "answered one at a time, in order");
    }
    assert!(started.elapsed() >= Duration::from_millis(300), "the three ran one after the other");
}
