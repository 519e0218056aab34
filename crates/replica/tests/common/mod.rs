//! Test harness: a real clearinghouse (SQLite, loopback HTTP) with operators `opa`, `opb`,
//! `opc` holding ranges 4790, 4791, 4792, and replicas following it.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clearinghouse::{Clearinghouse, ClearinghouseConfig, admin};
use numport_core::{ManualClock, Millis};
use replica::{Replica, ReplicaConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const T0: Millis = 1_800_000_000_000;

pub struct TestCh {
    pub ch: Clearinghouse,
    pub url: String,
    /// `opa`'s API token (any operator may read the feed).
    pub token: String,
    /// `opc`'s client, to return numbers it serves.
    pub opc: clearinghouse_api::ClearinghouseClient,
    stop: CancellationToken,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestCh {
    pub async fn start() -> TestCh {
        TestCh::start_with(None).await
    }

    /// Over TLS when `tls` is given (its `client_ca` asking for operators' certificates).
    pub async fn start_with(tls: Option<numport_tls::ServerTls>) -> TestCh {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let dir = tempfile::tempdir().unwrap();
        let db =
            clearinghouse::store::connect(&format!("sqlite://{}", dir.path().join("ch.db").display())).await.unwrap();
        for (name, rn) in [("opa", "D001"), ("opb", "D002"), ("opc", "D003")] {
            admin::register_operator(&db, &name.parse().unwrap(), &rn.parse().unwrap(), None, T0).await.unwrap();
        }
        admin::load_ranges_csv(&db, "4790,opa\n4791,opb\n4792,opc\n".as_bytes(), T0).await.unwrap();
        let master_key = [7u8; 32];
        let token = admin::issue_credentials(&db, &master_key, "opa", 0, T0).await.unwrap().api_token;
        let opc_token = admin::issue_credentials(&db, &master_key, "opc", 0, T0).await.unwrap().api_token;
        let ch = Clearinghouse::new(
            db,
            Arc::new(ManualClock::new(T0)),
            ClearinghouseConfig {
                supervisor_interval_ms: 3_600_000,
                plain_http: tls.is_none(),
                tls,
                ..ClearinghouseConfig::default()
            },
            master_key,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let (ch, stop) = (ch.clone(), stop.clone());
            async move {
                let _ = clearinghouse::run(ch, listener, stop).await;
            }
        });
        let opc = clearinghouse_api::ClearinghouseClient::new(&url, &opc_token);
        TestCh { ch, url, token, opc, stop, server, _dir: dir }
    }

    /// Ports numbers through the bulk import (`msisdn,operator` lines); each is one change.
    pub async fn import(&self, csv: &str) {
        admin::import_ported_csv(&self.ch.db, csv.as_bytes(), T0, |_| {}).await.unwrap();
        self.ch.note_feed_seq(self.head().await);
        self.ch.wake_dispatcher();
    }

    pub async fn head(&self) -> i64 {
        let mut conn = self.ch.db.acquire().await.unwrap();
        clearinghouse::store::routing::head(&mut conn).await.unwrap()
    }

    /// Stops the HTTP server (the database stays).
    pub async fn stop(&mut self) {
        self.stop.cancel();
        let _ = (&mut self.server).await;
    }
}

impl Drop for TestCh {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `count` numbers of opa's range 4790, from `first`, ported to `to`.
pub fn ports(first: u32, count: u32, to: &str) -> String {
    (first..first + count).map(|i| format!("47900{i:05},{to}\n")).collect()
}

pub fn config(url: &str, token: &str, dir: &Path) -> ReplicaConfig {
    ReplicaConfig {
        clearinghouse_url: Some(url.to_owned()),
        api_token: Some(token.to_owned()),
        data_dir: Some(dir.to_owned()),
        poll_wait_ms: 300,
        stale_after_ms: 2_000,
        ..ReplicaConfig::default()
    }
}

/// A replica following the feed on a task of its own.
pub struct Running {
    pub replica: Replica,
    pub registry: telemetry::Registry,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn start(config: ReplicaConfig) -> Running {
        let registry = telemetry::Registry::new();
        let replica = Replica::open(config, &registry).await.unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(replica.clone().follow(stop.clone()));
        Running { replica, registry, stop, task }
    }

    /// Stops following and closes the data directory (as a process exit would).
    pub async fn shut(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }

    pub fn metric(&self, name: &str) -> f64 {
        let text = self.registry.render();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not in\n{text}"))
    }
}

/// Polls `cond` every 10 ms for up to 10 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn serving(replica: &Replica, msisdn: &str) -> Option<(String, bool)> {
    replica.lookup(&msisdn.parse().unwrap()).map(|a| (a.operator, a.ported))
}
