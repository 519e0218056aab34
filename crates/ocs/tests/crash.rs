//! Crash consistency: an OCS process serving credit control is killed with SIGKILL in the
//! middle of its traffic, with group commits in flight (its gateways keep [`WORKERS`]
//! requests outstanding, which the writer commits together); after the restart the books
//! balance, reservations agree with the balances, every acknowledged answer is still there
//! (its retransmission gets it back and charges nothing), and the Tcc supervisor releases what
//! the dead gateway sessions held.
//!
//! The OCS process is this test binary run again as `crash_child` (an ignored test that only
//! acts when `OCS_CRASH_URL` is set): it prints each answer it acknowledged, after the commit.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use numport_core::{ManualClock, Money, SystemClock};
use numport_db::DbConfig;
use ocs::session::{CreditControlAnswer, CreditControlRequest, RequestType};
use ocs::{Ocs, OcsConfig};

const ACCOUNTS: [&str; 2] = ["4790000001", "4790000002"];

/// Concurrent gateway sessions in the OCS process: each has at most one request in flight.
const WORKERS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the OCS process of `kill_9_mid_traffic`; runs only with OCS_CRASH_URL set"]
async fn crash_child() {
    let Ok(url) = std::env::var("OCS_CRASH_URL") else { return };
    let ocs = Ocs::open(&DbConfig::new(&url), OcsConfig::default(), Arc::new(SystemClock), &telemetry::Registry::new())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let ocs = ocs.clone();
            tokio::spawn(async move {
                for call in 0.. {
                    let id = format!("w{worker}-c{call}");
                    let msisdn = ACCOUNTS[worker % 2];
                    let steps = [
                        (RequestType::Initial, Some(120), None),
                        (RequestType::Update, Some(120), Some(100)),
                        (RequestType::Update, Some(120), Some(130)),
                        (RequestType::Termination, None, Some(45)),
                    ];
                    for (n, (kind, requested, used)) in steps.into_iter().enumerate() {
                        let req = common::ccr(&id, msisdn, kind, n as u32, requested, used);
                        let answer = ocs.credit_control(req.clone()).await.unwrap();
                        println!("ACK {}", serde_json::to_string(&(req, answer)).unwrap());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

async fn kill_mid_traffic(url: &str) {
    let registry = telemetry::Registry::new();
    let clock = ManualClock::new(common::T0);
    let ocs = Ocs::open(&DbConfig::new(url), OcsConfig::default(), Arc::new(clock.clone()), &registry).await.unwrap();
    ocs.set_tariffs(common::tariffs()).await.unwrap();
    for (i, a) in ACCOUNTS.iter().enumerate() {
        ocs.create_account(a, Money(100)).await.unwrap();
        ocs.recharge(a, Money(1_000_000), None, &format!("seed-{i}")).await.unwrap();
    }
    ocs.db().close().await;

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env("OCS_CRASH_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked: Vec<(CreditControlRequest, CreditControlAnswer)> = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read = |acked: &mut Vec<_>, until: usize| {
        for line in lines.by_ref() {
            if let Some(json) = line.unwrap().strip_prefix("ACK ") {
                acked.push(serde_json::from_str(json).unwrap());
                if acked.len() == until {
                    return;
                }
            }
        }
    };
    read(&mut acked, 2000);
    assert_eq!(acked.len(), 2000, "the OCS process stopped before answering 2000 requests");
    // SIGKILL, with requests in flight; then what it acknowledged before dying.
    child.kill().unwrap();
    child.wait().unwrap();
    read(&mut acked, usize::MAX);

    let ocs = Ocs::open(&DbConfig::new(url), OcsConfig::default(), Arc::new(clock.clone()), &registry).await.unwrap();
    let report = ocs.check_ledger().await.unwrap();
    assert_eq!((report.total, report.overdraft), (0, 0));
    // The last acknowledged request of each session is answered again, identically, for free.
    let mut last = std::collections::HashMap::new();
    for (req, answer) in &acked {
        last.insert(req.session_id.clone(), (req.clone(), answer.clone()));
    }
    let balances = |ocs: Ocs| async move {
        let mut v = Vec::new();
        for a in ACCOUNTS {
            v.push(ocs.balance(a).await.unwrap());
        }
        v
    };
    let before = balances(ocs.clone()).await;
    let mut unacknowledged = 0;
    for (req, answer) in last.values() {
        if &ocs.credit_control(req.clone()).await.unwrap() != answer {
            // Only a request in flight at the kill may have committed without its answer
            // getting out: then the session is exactly one request further.
            let mut conn = ocs.db().acquire().await.unwrap();
            let stored = ocs::store::session(&mut conn, &req.session_id).await.unwrap().unwrap();
            assert_eq!(stored.last_request_number, req.request_number + 1, "{}", req.session_id);
            unacknowledged += 1;
        }
    }
    assert!(unacknowledged <= WORKERS, "{unacknowledged} sessions moved on without an answer");
    assert_eq!(balances(ocs.clone()).await, before, "a retransmission charged");
    // The dead gateway's sessions go silent: Tcc releases every reservation they held.
    clock.advance_ms(ocs.config().gy.tcc_ms + 1);
    ocs.supervise_once().await.unwrap();
    for b in balances(ocs.clone()).await {
        assert_eq!(b.reserved, Money(0), "{b:?}");
    }
    ocs.check_ledger().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_traffic_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    kill_mid_traffic(&format!("sqlite://{}", dir.path().join("ocs.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_traffic_postgres() {
    let Some(db) = numport_db::testing::TempDatabase::create().await else { return };
    kill_mid_traffic(db.url()).await;
}
