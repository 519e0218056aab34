//! `numport network` against `numport ocs`, both real processes on loopback: online calls
//! charged exactly what they used (over Gy and on partial CDRs), offline calls in the CDR files
//! and not charged, long calls cut into partial CDRs, data sessions with their usage records,
//! a prepaid subscriber cut off at its balance, the CDR files parsed; and failover to the
//! second OCS when the first is killed mid-traffic.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use network::cdr::{self, Cdr, Charging, RecordType};
use network::ocs_api::OcsApi;
use numport::launch::{Launched, launch};
use numport_core::Money;
use ocs::data_charging::ChargingMode;
use ocs::online_list::EntryKind;
use ocs::{Service, TariffRule, TimeBand};
use sha2::{Digest, Sha256};

const TOKEN: &str = "network-test-token";
const MSC: (&str, &str) = ("msc.numport.test", "numport.test");
const FIRST: u64 = 4_790_000_000;
const SUBSCRIBERS: u64 = 10;
/// The prepaid subscriber with little money.
const POOR: u64 = FIRST + 9;
const FUNDS: i64 = 10_000_000;
const POOR_FUNDS: i64 = 300;
/// What service 2001's data records cost per started megabyte.
const VIDEO_BLOCK: u64 = 1_000_000;

async fn start_ocs(dir: &Path, name: &str) -> (Launched, OcsApi) {
    // SAFETY of the environment: every test of this binary sets the same value.
    unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) };
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, format!("api_token_sha256 = \"{}\"\n", hex::encode(Sha256::digest(TOKEN)))).unwrap();
    let db = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    let args: Vec<String> = [
        "ocs",
        "--config",
        config.to_str().unwrap(),
        "--plain",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--database-url",
        &db,
        "--peer",
        &format!("{},{}", MSC.0, MSC.1),
    ]
    .map(String::from)
    .to_vec();
    let ocs = launch(&args, &dir.join(format!("{name}.log"))).await.unwrap();
    let api = OcsApi::new(&ocs.url(), TOKEN);
    prepare(&api).await;
    (ocs, api)
}

/// Voice at 1 per second; data free over Gy, its usage records charged per service; calls to
/// 4790 and 4791 online, to 4680 offline; ten subscribers, one of them nearly broke.
async fn prepare(api: &OcsApi) {
    let rule = |service, price, block| TariffRule {
        service,
        prefix: String::new(),
        band: TimeBand::ALL_DAY,
        price: Money(price),
        block,
    };
    api.set_tariffs(&[rule(Service::Voice, 1, 1), rule(Service::Data, 0, 1)]).await.unwrap();
    api.put_online_entry("4790", EntryKind::Prefix).await.unwrap();
    api.put_online_entry("4791", EntryKind::Prefix).await.unwrap();
    api.set_charging_mode("*", 1001, ChargingMode::Free).await.unwrap();
    api.set_charging_mode("*", 2001, ChargingMode::Volume { price: Money(1), block_octets: VIDEO_BLOCK })
        .await
        .unwrap();
    api.set_charging_mode("*", 3001, ChargingMode::PerEvent { price: Money(5) }).await.unwrap();
    for i in 0..SUBSCRIBERS {
        let msisdn = (FIRST + i).to_string();
        let funds = if FIRST + i == POOR { POOR_FUNDS } else { FUNDS };
        api.create_account(&msisdn, Money::ZERO).await.unwrap();
        api.recharge(&msisdn, Money(funds), &format!("first-{msisdn}")).await.unwrap();
    }
}

fn network_args(ocs: &[&Launched], api: &Launched, cdr_dir: &Path, duration: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["network".into()];
    for o in ocs {
        args.extend(["--ocs".into(), o.diameter.unwrap().to_string()]);
    }
    let rest = [
        "--api-url",
        &api.url(),
        "--api-token",
        TOKEN,
        "--subscribers",
        &format!("{FIRST}-{}", FIRST + SUBSCRIBERS - 1),
        "--called-prefix",
        "4790",
        "--called-prefix",
        "4791",
        "--called-prefix",
        "4680",
        "--calls-per-s",
        "25",
        "--data-per-s",
        "8",
        "--duration",
        duration,
        "--drain",
        "30",
        "--speedup",
        "600",
        "--long-call-share",
        "0.2",
        "--partial-cdr-share",
        "0.4",
        "--cdr-dir",
        cdr_dir.to_str().unwrap(),
        "--cdr-max-records",
        "40",
        "--origin-host",
        MSC.0,
        "--origin-realm",
        MSC.1,
        "--seed",
        "28",
    ];
    args.extend(rest.map(String::from));
    args
}

async fn run_network(args: &[String]) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_numport")).args(args).output().await.unwrap();
    assert!(out.status.success(), "numport network: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Every record of every file the summary lists (each file parsed and checked).
fn records(summary: &serde_json::Value) -> Vec<Cdr> {
    let files = summary["cdr_files"].as_array().unwrap();
    assert!(files.len() >= 2, "the files rotate at 40 records: {summary}");
    let mut all = Vec::new();
    for f in files {
        let bytes = std::fs::read(f.as_str().unwrap()).unwrap();
        let file = cdr::parse(&bytes).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(file.header.node, MSC.0);
        all.extend(file.records);
    }
    assert_eq!(all.len() as u64, summary["cdr_records"].as_u64().unwrap());
    all
}

/// What the OCS should have charged each subscriber for `records`: a second of online voice
/// at 1, and a started megabyte of video in a data record at 1.
fn expected_charges(records: &[Cdr]) -> HashMap<String, i64> {
    let mut due: HashMap<String, i64> = HashMap::new();
    for r in records {
        let amount = match (r.record_type, r.charging) {
            (RecordType::Voice, Charging::Online | Charging::PartialCdr) => r.duration_s as i64,
            (RecordType::Voice, Charging::Offline) => 0,
            (RecordType::Data, _) => r
                .services
                .iter()
                .filter(|s| s.service_id == 2001)
                .map(|s| (s.uplink_octets + s.downlink_octets).div_ceil(VIDEO_BLOCK) as i64)
                .sum(),
        };
        *due.entry(r.served.clone()).or_default() += amount;
    }
    due
}

#[tokio::test]
async fn calls_and_data_are_charged_exactly_and_written_to_cdr_files() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ocs, api) = start_ocs(dir.path(), "ocs").await;
    let cdr_dir = dir.path().join("cdr");
    let summary = run_network(&network_args(&[&ocs], &ocs, &cdr_dir, "3")).await;
    assert_eq!(summary["dropped"], 0, "{summary}");
    assert_eq!(summary["ccr_failed"], 0, "{summary}");
    let records = records(&summary);

    let voice: Vec<&Cdr> = records.iter().filter(|r| r.record_type == RecordType::Voice).collect();
    let of = |c: Charging| voice.iter().filter(|r| r.charging == c).count();
    assert!(of(Charging::Online) > 5 && of(Charging::PartialCdr) > 5 && of(Charging::Offline) > 5, "{summary}");
    for r in voice.iter().filter(|r| r.charging == Charging::Offline) {
        assert!(r.other_party.starts_with("4680") && r.session_id.is_empty(), "{r:?}");
    }
    let long =
        voice.iter().find(|r| r.charging == Charging::PartialCdr && r.partials >= 3 && r.served != POOR.to_string());
    let long = long.unwrap_or_else(|| panic!("a long call on partial CDRs: {summary}"));
    assert!(long.duration_s > 600, "{long:?}");
    assert!(summary["partial_cdrs"]["continue"].as_u64().unwrap() >= 2, "{summary}");
    let data: Vec<&Cdr> = records.iter().filter(|r| r.record_type == RecordType::Data).collect();
    assert!(data.len() > 5 && data.iter().all(|r| !r.services.is_empty() || r.duration_s == 0), "{summary}");
    assert!(summary["data_records"]["rated"].as_u64().unwrap() > 5, "{summary}");
    assert!(summary["answers"]["2001"].as_u64().unwrap() > 20, "{summary}");

    let due = expected_charges(&records);
    for i in 0..SUBSCRIBERS {
        let msisdn = (FIRST + i).to_string();
        let b = api.balance(&msisdn).await.unwrap();
        assert_eq!(b.reserved, Money::ZERO, "{msisdn}: every session ended");
        let charged = if FIRST + i == POOR { POOR_FUNDS } else { FUNDS } - b.balance.0;
        if FIRST + i == POOR {
            // Prepaid: never below zero, and its calls were cut when the money ran out.
            assert!(b.balance.0 >= 0, "{b:?}");
            let cut = voice
                .iter()
                .filter(|r| r.served == msisdn)
                .any(|r| matches!(r.cause, cdr::Cause::CreditLimit | cdr::Cause::FinalUnits | cdr::Cause::CutOff));
            assert!(cut, "the poor subscriber's calls are cut off: {summary}");
        } else {
            assert_eq!(charged, due.get(&msisdn).copied().unwrap_or(0), "{msisdn}: charged what was used");
        }
    }
    ocs.stop().await;
}

#[tokio::test]
async fn gy_fails_over_to_the_second_ocs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _) = start_ocs(dir.path(), "first").await;
    let (mut second, second_api) = start_ocs(dir.path(), "second").await;
    let cdr_dir = dir.path().join("cdr");
    let args = network_args(&[&first, &second], &second, &cdr_dir, "4");
    let network = tokio::spawn(async move { run_network(&args).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    first.kill_hard().await.unwrap();
    let summary = network.await.unwrap();
    let a = first.diameter.unwrap().to_string();
    let b = second.diameter.unwrap().to_string();
    assert_eq!(summary["failovers"], 1, "{summary}");
    assert_eq!(summary["connected_to"], serde_json::json!([a, b]), "{summary}");
    records(&summary);
    // The second OCS charged the calls that started after the failover.
    let metrics = reqwest::get(format!("{}/metrics", second.url())).await.unwrap().text().await.unwrap();
    let initial_ok = metrics
        .lines()
        .find(|l| l.starts_with("ocs_ccr_total{request_type=\"initial\",result_code=\"2001\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(initial_ok > 10, "{metrics}");
    let moved = second_api.balance(&FIRST.to_string()).await.unwrap();
    assert!(moved.balance.0 < FUNDS, "{moved:?}");
    second.stop().await;
}
