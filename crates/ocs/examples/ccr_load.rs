//! `cargo run --release -p ocs --example ccr_load -- [DATABASE_URL] [SECONDS] [GATEWAYS]`: credit
//! control in process (no Diameter) against a fresh OCS database
//! (`ocs::bench::credit_control_load`), printed as JSON. The default database is a SQLite file
//! in a temporary directory; 10 seconds; 64 concurrent gateway sessions.

use std::sync::Arc;
use std::time::Duration;

use numport_core::{Money, SystemClock};
use numport_db::DbConfig;

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
    let figures = ocs::bench::credit_control_load(&ocs, accounts, gateways, Duration::from_secs(seconds)).await?;
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}
