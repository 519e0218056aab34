//! The processes over TLS: `numport pki` writes its files, and a standalone replica serves
//! HTTPS while following the cluster's clearinghouse under mutual TLS.

use std::time::Duration;

use numport::cluster::{Cluster, ClusterSpec};
use numport::launch::launch;

#[test]
fn pki_writes_a_ca_and_a_certificate_per_role_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_numport"))
            .args(["pki", "--dir", pki.to_str().unwrap(), "--operator", "opa", "--operator", "opb"])
            .args(["--npdb", "sms-router", "--host", "ch.example.net"])
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for file in ["ca", "clearinghouse", "operator-opa", "operator-opb", "npdb-sms-router"] {
        assert!(pki.join(format!("{file}.pem")).exists() && pki.join(format!("{file}.key")).exists(), "{file}");
    }
    let before = std::fs::read(pki.join("ca.key")).unwrap();
    let again = run();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(std::fs::read(pki.join("ca.key")).unwrap(), before);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_numport"))
        .args(["pki", "--dir", dir.path().join("bad").to_str().unwrap(), "--operator", "../x"])
        .output()
        .unwrap();
    assert!(!bad.status.success(), "an operator name is validated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_replica_serves_https_and_follows_the_clearinghouse_over_mutual_tls() {
    // SAFETY: the only test of this binary that starts processes through `launch`.
    unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) };
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterSpec::for_tests(tmp.path().join("cluster"), 2)).await.unwrap();
    assert!(cluster.ch.url().starts_with("https://"));
    let config = tmp.path().join("npdb.toml");
    cluster.write_npdb_config(&config, "opa").unwrap();
    let args = [
        "npdb",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        tmp.path().join("npdb").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--enum-listen",
        "127.0.0.1:0",
        "--clearinghouse-url",
        &cluster.ch.url(),
        "--api-token",
        &cluster.op("opa").api_token,
    ]
    .map(String::from);
    let npdb = launch(&args, &tmp.path().join("npdb.log")).await.unwrap();
    assert!(npdb.url().starts_with("https://"), "{}", npdb.url());

    let http = cluster.http().unwrap().build().unwrap();
    let mut answer = None;
    for _ in 0..500 {
        let resp = http.get(format!("{}/v1/lookup/4790000001", npdb.url())).send().await.unwrap();
        if resp.status().is_success() {
            answer = Some(resp.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answer.expect("the replica loaded the clearinghouse's snapshot")["operator"], "opa");
    let plain = npdb.url().replace("https://", "http://");
    assert!(reqwest::get(format!("{plain}/healthz")).await.is_err(), "plain HTTP is refused");
    // A client that does not trust the cluster's CA is refused too.
    let untrusting = reqwest::Client::new();
    assert!(untrusting.get(format!("{}/healthz", npdb.url())).send().await.is_err());
    cluster.stop().await;
}
