//! `cargo run --release -p ocs --example gy_load -- [DATABASE_URL] [SECONDS] [GATEWAYS]`: credit
//! control over Diameter Gy on loopback: the OCS behind `diameter::peer::serve`, and
//! `GATEWAYS` concurrent voice sessions (INITIAL, UPDATE, UPDATE, TERMINATION; one request in
//! ten sent again with the T flag) on one `diameter::peer::Client` connection, in this one
//! process. Prints CCR/s, p50 and p99 of the CCA, retransmissions answered differently, and
//! the ledger's overdraft, as JSON. Defaults: a SQLite file in a temporary directory, 10
//! seconds, 64 gateways.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diameter::base::Identity;
use diameter::cc::{self, CcRequestType, Ccr, ImsInformation, Mscc, ServiceInformation, ServiceUnit};
use diameter::peer::{Client, ClientConfig, KnownPeer, ServerConfig, serve};
use numport_core::{Money, SystemClock};
use numport_db::DbConfig;
use ocs::gy::GyHandler;

const GW: (&str, &str) = ("sbc.numport.test", "numport.test");
const OCS: &str = "ocs.numport.test";

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

fn voice(session: &str, msisdn: &str, kind: CcRequestType, n: u32) -> Ccr {
    let units = |t| Some(ServiceUnit { time: Some(t), ..Default::default() });
    Ccr {
        session_id: session.into(),
        origin_host: GW.0.into(),
        origin_realm: GW.1.into(),
        destination_realm: OCS.into(),
        destination_host: None,
        auth_application_id: 4,
        service_context_id: cc::IMS_CONTEXT.into(),
        request_type: kind,
        request_number: n,
        user_name: None,
        origin_state_id: None,
        event_timestamp: None,
        subscription_ids: vec![cc::SubscriptionId { kind: cc::SubscriptionIdType::EndUserE164, data: msisdn.into() }],
        requested_action: None,
        multiple_services_indicator: Some(1),
        mscc: vec![Mscc {
            rating_group: Some(1),
            requested: if kind == CcRequestType::Termination { None } else { units(120) },
            used: if n == 0 { None } else { units(100) }.into_iter().collect(),
            ..Default::default()
        }],
        termination_cause: None,
        service_information: Some(ServiceInformation {
            ps: None,
            ims: Some(ImsInformation {
                node_functionality: 0,
                role_of_node: Some(0),
                calling_party_address: Some(format!("tel:+{msisdn}")),
                called_party_address: Some("tel:+4790000000".into()),
            }),
        }),
        retransmitted: false,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = tempfile::tempdir()?;
    let url = args
        .get(1)
        .filter(|u| !u.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("ocs.db").display()));
    let seconds: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let gateways: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let ocs = ocs::Ocs::open(
        &DbConfig::new(&url),
        ocs::OcsConfig::default(),
        Arc::new(SystemClock),
        &telemetry::Registry::new(),
    )
    .await?;
    ocs.set_tariffs(ocs::bench::sample_tariffs(10_000).rules().to_vec()).await?;
    let accounts = 1000;
    for i in 0..accounts {
        let msisdn = format!("{}", 4_791_000_000u64 + i as u64);
        ocs.create_account(&msisdn, Money(500)).await?;
        ocs.recharge(&msisdn, Money(100_000_000), None, &msisdn).await?;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let peers = vec![KnownPeer { origin_host: GW.0.into(), origin_realm: GW.1.into() }];
    let config = Arc::new(ServerConfig::new(identity(OCS, OCS), peers));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(listener, config, Arc::new(GyHandler::new(ocs.clone())), stopped));
    let client = Arc::new(Client::start(ClientConfig::new(identity(GW.0, GW.1), OCS, vec![addr])));
    client.wait_open(Duration::from_secs(5)).await.ok_or("no CEA from the OCS")?;

    let started = Instant::now();
    let duration = Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..gateways)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                let (mut latencies, mut doubles) = (Vec::new(), 0u64);
                let msisdn = format!("{}", 4_791_000_000u64 + (w % accounts) as u64);
                let kinds =
                    [CcRequestType::Initial, CcRequestType::Update, CcRequestType::Update, CcRequestType::Termination];
                let mut call = 0u64;
                while started.elapsed() < duration {
                    call += 1;
                    for (n, kind) in kinds.into_iter().enumerate() {
                        let ccr = voice(&format!("sbc;{w};{call}"), &msisdn, kind, n as u32);
                        let t = Instant::now();
                        let cca = client.credit_control(ccr.clone()).await?;
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                        if (call + n as u64).is_multiple_of(10) {
                            let again = client.credit_control(Ccr { retransmitted: true, ..ccr }).await?;
                            if (again.result_code, &again.mscc) != (cca.result_code, &cca.mscc) {
                                doubles += 1;
                            }
                        }
                    }
                }
                Ok::<_, diameter::peer::ClientError>((latencies, doubles))
            })
        })
        .collect();
    let (mut latencies, mut double_charged) = (Vec::new(), 0);
    for t in tasks {
        let (l, d) = t.await??;
        latencies.extend(l);
        double_charged += d;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let report = ocs.check_ledger().await?;
    let figures = serde_json::json!({
        "ccr_per_s": latencies.len() as f64 / elapsed,
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "requests": latencies.len(),
        "double_charged": double_charged,
        "overdraft": report.overdraft,
    });
    println!("{figures}");
    let _ = stop.send(true);
    let _ = server.await;
    Ok(())
}
