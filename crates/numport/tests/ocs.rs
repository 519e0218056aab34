//! `numport ocs` end to end: accounts and tariffs through its subcommands, then Diameter Gy
//! from the `diameter` crate's client to the process: CER, a CCR-I granted, `/metrics`; the
//! process killed with SIGKILL and restarted on the same database, where the gateway's
//! retransmission of that CCR gets the same answer and the balance is unchanged.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use diameter::base::Identity;
use diameter::cc::{self, CcRequestType, Ccr, Mscc, ServiceInformation, ServiceUnit};
use diameter::peer::{Client, ClientConfig};
use numport::launch::launch;

const GW: (&str, &str) = ("sbc.numport.test", "numport.test");

fn admin(db: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_numport"))
        .args(["ocs", "--database-url", db])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ccr(kind: CcRequestType, n: u32, seconds: u32) -> Ccr {
    Ccr {
        origin_host: GW.0.into(),
        origin_realm: GW.1.into(),
        destination_realm: "numport.local".into(),
        mscc: vec![Mscc {
            rating_group: Some(1),
            requested: Some(ServiceUnit { time: Some(seconds), ..Default::default() }),
            ..Default::default()
        }],
        service_information: Some(ServiceInformation::ims_call("4790000001", "4791234567")),
        ..Ccr::new("sbc.numport.test;1;1", cc::IMS_CONTEXT, kind, n, "4790000001")
    }
}

async fn client(addr: std::net::SocketAddr) -> Client {
    let identity = Identity {
        origin_host: GW.0.into(),
        origin_realm: GW.1.into(),
        host_ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        vendor_id: 0,
        product_name: "numport-test".into(),
        origin_state_id: 1,
    };
    let c = Client::start(ClientConfig::new(identity, "numport.local", vec![addr]));
    assert!(c.wait_open(Duration::from_secs(10)).await.is_some(), "CER/CEA with the OCS");
    c
}

#[tokio::test]
async fn ocs_serves_gy_and_survives_a_kill_9() {
    // SAFETY of the environment: no other test in this binary reads NUMPORT_BIN.
    unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ocs.db").display());
    let tariffs = dir.path().join("tariffs.json");
    let rule =
        r#"[{"service":"voice","prefix":"47","band":{"start_minute":0,"end_minute":1440},"price":10,"block":60}]"#;
    std::fs::write(&tariffs, rule).unwrap();
    admin(&db, &["tariffs", tariffs.to_str().unwrap()]);
    let created = admin(&db, &["account", "--msisdn", "4790000001", "--recharge", "1.00"]);
    assert!(created.contains("\"balance\":100"), "{created}");

    let args: Vec<String> = ["ocs", "--plain", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]
        .into_iter()
        .map(String::from)
        .chain(["--database-url".into(), db.clone(), "--peer".into(), format!("{},{}", GW.0, GW.1)])
        .collect();
    let log = dir.path().join("ocs.log");
    let mut ocs = launch(&args, &log).await.unwrap();
    let gy = client(ocs.diameter.expect("the Diameter address")).await;
    let first = gy.credit_control(ccr(CcRequestType::Initial, 0, 300)).await.unwrap();
    assert_eq!(first.result_code, 2001);
    assert_eq!(first.mscc[0].granted, Some(ServiceUnit { time: Some(300), ..Default::default() }));
    let metrics = reqwest::get(format!("{}/metrics", ocs.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ocs_ccr_total{request_type=\"initial\",result_code=\"2001\"} 1"), "{metrics}");
    gy.stop().await;

    ocs.kill_hard().await.unwrap();
    let mut ocs = launch(&args, &log).await.unwrap();
    let gy = client(ocs.diameter.unwrap()).await;
    let again = gy.credit_control(Ccr { retransmitted: true, ..ccr(CcRequestType::Initial, 0, 300) }).await.unwrap();
    assert_eq!((again.result_code, &again.mscc), (first.result_code, &first.mscc));
    gy.stop().await;
    ocs.stop().await;
    let balance = admin(&db, &["balance", "--msisdn", "4790000001"]);
    assert!(balance.contains("\"balance\":50") && balance.contains("\"reserved\":50"), "{balance}");
}
