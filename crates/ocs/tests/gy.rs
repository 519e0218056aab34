//! The OCS behind the real Diameter Gy server on loopback, driven by the `diameter` crate's
//! client: CER, a voice session I/U/T, a T-flagged retransmission answered alike and not
//! charged, 4012 with Final-Unit-Indication before it, 5030, and an SMS event.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use common::{T0, TestOcs};
use diameter::base::Identity;
use diameter::cc::{self, CcRequestType, Ccr, FinalUnitAction, Mscc, ServiceInformation, ServiceUnit};
use diameter::peer::{Client, ClientConfig, KnownPeer, ServerConfig, serve};
use numport_core::Money;
use ocs::gy::GyHandler;
use tokio::net::TcpListener;

const GW: (&str, &str) = ("sbc.numport.test", "numport.test");

fn identity(host: &str, realm: &str) -> Identity {
    Identity {
        origin_host: host.into(),
        origin_realm: realm.into(),
        host_ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        vendor_id: 0,
        product_name: "numport".into(),
        origin_state_id: 1,
    }
}

fn voice(session: &str, msisdn: &str, kind: CcRequestType, n: u32, requested: Option<u32>, used: Option<u32>) -> Ccr {
    Ccr {
        origin_host: GW.0.into(),
        origin_realm: GW.1.into(),
        destination_realm: "ocs.numport.test".into(),
        event_timestamp: Some(cc::ntp_seconds((T0 / 1000) as u64)),
        mscc: vec![Mscc {
            rating_group: Some(1),
            requested: requested.map(|t| ServiceUnit { time: Some(t), ..Default::default() }),
            used: used.map(|t| ServiceUnit { time: Some(t), ..Default::default() }).into_iter().collect(),
            ..Default::default()
        }],
        service_information: Some(ServiceInformation::ims_call(msisdn, "4791234567")),
        ..Ccr::new(session, cc::IMS_CONTEXT, kind, n, msisdn)
    }
}

async fn gy_session(t: TestOcs) {
    t.ocs.create_account("4790000001", Money(0)).await.unwrap();
    t.ocs.recharge("4790000001", Money(60), None, "seed").await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig::new(
        identity("ocs.numport.test", "ocs.numport.test"),
        vec![KnownPeer { origin_host: GW.0.into(), origin_realm: GW.1.into() }],
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(listener, Arc::new(config), Arc::new(GyHandler::new(t.ocs.clone())), stopped));
    let client = Client::start(ClientConfig::new(identity(GW.0, GW.1), "ocs.numport.test", vec![addr]));
    assert!(client.wait_open(Duration::from_secs(5)).await.is_some(), "CER/CEA");

    let a =
        client.credit_control(voice("sbc;1", "4790000001", CcRequestType::Initial, 0, Some(120), None)).await.unwrap();
    assert_eq!(a.result_code, 2001);
    assert_eq!(a.mscc[0].granted, Some(ServiceUnit { time: Some(120), ..Default::default() }));
    assert_eq!((a.mscc[0].validity_time, a.mscc[0].result_code), (Some(600), Some(2001)));
    // 100 s used (20), 40 left buys 240 s of the 600 asked: the last grant.
    let update = voice("sbc;1", "4790000001", CcRequestType::Update, 1, Some(600), Some(100));
    let a = client.credit_control(update.clone()).await.unwrap();
    assert_eq!(a.mscc[0].granted, Some(ServiceUnit { time: Some(240), ..Default::default() }));
    assert_eq!(a.mscc[0].final_unit_indication.as_ref().map(|f| f.action), Some(FinalUnitAction::Terminate));
    let balance = t.ocs.balance("4790000001").await.unwrap();
    // The gateway resends the update with the T flag: the same answer, nothing charged.
    let again = client.credit_control(Ccr { retransmitted: true, ..update }).await.unwrap();
    assert_eq!(again.mscc, a.mscc);
    assert_eq!(t.ocs.balance("4790000001").await.unwrap(), balance);
    let a = client
        .credit_control(voice("sbc;1", "4790000001", CcRequestType::Update, 2, Some(60), Some(240)))
        .await
        .unwrap();
    assert_eq!((a.result_code, a.mscc[0].result_code), (4012, Some(4012)));
    let a = client
        .credit_control(voice("sbc;1", "4790000001", CcRequestType::Termination, 3, None, Some(0)))
        .await
        .unwrap();
    assert_eq!(a.result_code, 2001);
    assert_eq!(t.ocs.balance("4790000001").await.unwrap().balance, Money(0));

    let a =
        client.credit_control(voice("sbc;2", "4799999999", CcRequestType::Initial, 0, Some(60), None)).await.unwrap();
    assert_eq!(a.result_code, 5030);
    let mut sms = voice("sbc;3", "4790000001", CcRequestType::Event, 0, None, None);
    sms.service_context_id = ocs::gy::SMS_CONTEXT.into();
    sms.mscc[0].requested = Some(ServiceUnit { service_specific_units: Some(1), ..Default::default() });
    assert_eq!(client.credit_control(sms).await.unwrap().result_code, 4012);
    client.stop().await;
    let _ = stop.send(true);
    server.await.unwrap().unwrap();
    t.ocs.check_ledger().await.unwrap();
}

both_backends! {
    gy_session_over_loopback => gy_session;
}
