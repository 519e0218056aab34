//! The OCS embedded in the operator node (`[ocs]`): an account opened and recharged through the
//! node's own HTTP API (`/v1/ocs`, its own bearer token), a voice session over the node's
//! Diameter Gy listener from a switching centre the section names, the balance charged by what
//! was used, the OCS's metrics on the node's `/metrics`, and an unnamed peer refused at CER.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use common::{T0, config};
use diameter::base::Identity;
use diameter::cc::{self, CcRequestType, Ccr, Mscc, ServiceInformation, ServiceUnit};
use diameter::peer::{Client, ClientConfig};
use numport_core::ManualClock;
use operator::online_charging::OcsSection;
use operator::{Listeners, Node};
use sha2::{Digest, Sha256};

const MSC: (&str, &str) = ("msc1.opa.test", "opa.test");
const TOKEN: &str = "ocs-token";
const SUBSCRIBER: &str = "4790000001";

fn identity(host: &str, realm: &str) -> Identity {
    Identity {
        origin_host: host.into(),
        origin_realm: realm.into(),
        host_ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        vendor_id: 0,
        product_name: "numport-test".into(),
        origin_state_id: 1,
    }
}

/// A voice CCR of session `msc1;1` from the switching centre.
fn voice(kind: CcRequestType, n: u32, requested_s: Option<u32>, used_s: Option<u32>) -> Ccr {
    let seconds = |t| ServiceUnit { time: Some(t), ..Default::default() };
    Ccr {
        origin_host: MSC.0.into(),
        origin_realm: MSC.1.into(),
        destination_realm: "opa.numport.local".into(),
        event_timestamp: Some(cc::ntp_seconds((T0 / 1000) as u64)),
        mscc: vec![Mscc {
            rating_group: Some(1),
            requested: requested_s.map(seconds),
            used: used_s.map(seconds).into_iter().collect(),
            ..Default::default()
        }],
        service_information: Some(ServiceInformation::ims_call(SUBSCRIBER, "4791234567")),
        ..Ccr::new("msc1.opa.test;1", cc::IMS_CONTEXT, kind, n, SUBSCRIBER)
    }
}

#[tokio::test]
async fn the_node_charges_calls_over_gy_and_shows_the_balance_on_its_api() {
    let dir = tempfile::tempdir().unwrap();
    let section = OcsSection {
        database_url: format!("sqlite://{}/ocs-{{name}}.db", dir.path().display()),
        peers: vec![format!("{},{}", MSC.0, MSC.1).parse().unwrap()],
        api_token_sha256: hex::encode(Sha256::digest(TOKEN)),
        ..OcsSection::default()
    };
    let node_config = operator::OperatorConfig {
        database_url: format!("sqlite://{}/operator-{{name}}.db", dir.path().display()),
        ocs: Some(section),
        ..config("opa", "http://127.0.0.1:9")
    };
    let node = Node::open(node_config, Arc::new(ManualClock::new(T0))).await.unwrap();
    assert!(dir.path().join("ocs-opa.db").exists(), "the OCS keeps a database of its own");
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (api, gy_addr) = (format!("http://{}", http.local_addr().unwrap()), gy.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let listeners = Listeners { http, enum_dns: None, smpp: None, smpp_tls: None, air: None, gy: Some(gy) };
    let served = tokio::spawn(node.clone().serve(listeners, stop.clone()));

    let web = reqwest::Client::new();
    let refused = web.post(format!("{api}/v1/ocs/accounts")).json(&serde_json::json!({"msisdn": SUBSCRIBER})).send();
    assert_eq!(refused.await.unwrap().status(), 401, "the OCS API needs its token");
    let opened = web
        .post(format!("{api}/v1/ocs/accounts"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"msisdn": SUBSCRIBER, "credit_limit": 0}))
        .send()
        .await
        .unwrap();
    assert!(opened.status().is_success(), "{:?}", opened.text().await);
    // Voice to Norway at 1.00 a started minute.
    let tariffs = serde_json::json!([{"service": "voice", "prefix": "47", "band": {"start_minute": 0, "end_minute": 1440}, "price": 100, "block": 60}]);
    let set = web.put(format!("{api}/v1/ocs/tariffs")).bearer_auth(TOKEN).json(&tariffs).send().await.unwrap();
    assert!(set.status().is_success(), "{:?}", set.text().await);
    let recharged = web
        .post(format!("{api}/v1/ocs/accounts/{SUBSCRIBER}/recharges"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", "first")
        .json(&serde_json::json!({"amount": 500}))
        .send()
        .await
        .unwrap();
    assert!(recharged.status().is_success(), "{:?}", recharged.text().await);

    let msc = Client::start(ClientConfig::new(identity(MSC.0, MSC.1), "opa.numport.local", vec![gy_addr]));
    assert!(msc.wait_open(Duration::from_secs(5)).await.is_some(), "CER/CEA with the node's Gy");
    let a = msc.credit_control(voice(CcRequestType::Initial, 0, Some(60), None)).await.unwrap();
    assert_eq!((a.result_code, a.mscc[0].granted.as_ref().and_then(|g| g.time)), (2001, Some(60)));
    let a = msc.credit_control(voice(CcRequestType::Termination, 1, None, Some(45))).await.unwrap();
    assert_eq!(a.result_code, 2001);
    msc.stop().await;

    let balance = node.ocs().unwrap().balance(SUBSCRIBER).await.unwrap();
    let shown: serde_json::Value = web
        .get(format!("{api}/v1/ocs/accounts/{SUBSCRIBER}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["balance"], serde_json::json!(balance.balance.0));
    assert_eq!((balance.balance.0, balance.reserved.0), (400, 0), "45 s charged as a started minute, nothing held");
    let report = node.ocs().unwrap().check_ledger().await.unwrap();
    assert_eq!((report.total, report.overdraft), (0, 0));
    let metrics = web.get(format!("{api}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ocs_ccr_total{request_type=\"initial\",result_code=\"2001\"} 1"), "{metrics}");
    let grouped = metrics.lines().find_map(|l| l.strip_prefix("ocs_group_commit_effects_total "));
    assert_eq!(grouped, Some("2"), "both CCRs went through the group commit");

    // A switching centre the section does not name is refused at CER (3010).
    let stranger = Client::start(ClientConfig::new(identity("msc9.evil.test", "evil.test"), "opa", vec![gy_addr]));
    assert!(stranger.wait_open(Duration::from_millis(800)).await.is_none(), "an unknown peer is refused");
    stranger.stop().await;

    stop.cancel();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_gy_listener_without_an_ocs_section_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node_config = operator::OperatorConfig {
        database_url: format!("sqlite://{}/operator-{{name}}.db", dir.path().display()),
        ..config("opa", "http://127.0.0.1:9")
    };
    let node = Node::open(node_config, Arc::new(ManualClock::new(T0))).await.unwrap();
    assert!(node.ocs().is_none());
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gy = Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let listeners = Listeners { http, enum_dns: None, smpp: None, smpp_tls: None, air: None, gy };
    let e = node.serve(listeners, tokio_util::sync::CancellationToken::new()).await.unwrap_err();
    assert!(e.to_string().contains("[ocs]"), "{e}");
}
