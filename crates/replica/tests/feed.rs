//! The replica against a real clearinghouse: bootstrap, following, restart from the
//! checkpoint, gap repair, stale marking, and feed authentication.

mod common;

use common::*;

#[tokio::test]
async fn bootstraps_then_follows_the_feed() {
    let ch = TestCh::start().await;
    ch.import(&ports(1, 100, "opb")).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(config(&ch.url, &ch.token, dir.path())).await;
    eventually("bootstrap", || r.replica.seq() == 100).await;
    assert_eq!(r.metric("npdb_bootstraps_total"), 1.0);
    assert_eq!(serving(&r.replica, "4790000007"), Some(("opb".into(), true)));
    assert_eq!(serving(&r.replica, "4790099999"), Some(("opa".into(), false)), "never ported: range holder");
    assert_eq!(serving(&r.replica, "4793000000"), None, "in no range");

    // New ports arrive through the long-poll, and so does a number's return to its range holder.
    ch.import(&ports(101, 10, "opc")).await;
    eventually("follow", || r.replica.seq() == 110).await;
    assert_eq!(serving(&r.replica, "4790000105"), Some(("opc".into(), true)));
    ch.opc.return_number(&"4790000105".parse().unwrap(), "return-105").await.unwrap();
    eventually("return", || r.replica.seq() == 111).await;
    assert_eq!(serving(&r.replica, "4790000105"), Some(("opa".into(), false)));
    assert_eq!(r.metric("npdb_changes_applied_total"), 11.0);
    assert_eq!(r.metric("npdb_stale"), 0.0);
    assert_eq!(r.replica.read().len(), 109);
    r.shut().await;
}

#[tokio::test]
async fn restart_resumes_from_the_checkpoint_without_gap_or_duplicate() {
    let ch = TestCh::start().await;
    ch.import(&ports(1, 50, "opb")).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(config(&ch.url, &ch.token, dir.path())).await;
    eventually("bootstrap", || r.replica.seq() == 50).await;
    ch.import(&ports(51, 30, "opc")).await;
    eventually("follow", || r.replica.seq() == 80).await;
    r.shut().await;

    // While it is down, more changes; one of them re-ports a number it already has.
    ch.import(&(ports(81, 20, "opb") + "4790000060,opb\n")).await;
    let r = Running::start(config(&ch.url, &ch.token, dir.path())).await;
    // It answers from disk at once, at its old checkpoint, before reaching the clearinghouse.
    assert_eq!(r.replica.seq(), 80);
    assert!(r.replica.is_ready());
    assert_eq!(serving(&r.replica, "4790000060"), Some(("opc".into(), true)));
    eventually("catch up", || r.replica.seq() == 101).await;
    assert_eq!(r.metric("npdb_bootstraps_total"), 0.0, "no snapshot needed");
    assert_eq!(r.metric("npdb_changes_applied_total"), 21.0, "exactly the changes it missed");
    assert_eq!(r.metric("npdb_feed_gaps_total"), 0.0);
    assert_eq!(serving(&r.replica, "4790000060"), Some(("opb".into(), true)));
    assert_eq!(r.replica.read().len(), 100);
    r.shut().await;
}

#[tokio::test]
async fn snapshot_on_disk_replaces_the_journal() {
    let ch = TestCh::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = replica::ReplicaConfig { snapshot_every: 25, ..config(&ch.url, &ch.token, dir.path()) };
    let r = Running::start(cfg.clone()).await;
    eventually("bootstrap", || r.replica.is_ready()).await;
    for batch in 0..4 {
        ch.import(&ports(1 + batch * 10, 10, "opb")).await;
        eventually("follow", || r.replica.seq() == (batch as i64 + 1) * 10).await;
    }
    r.shut().await;
    let journal = std::fs::read_to_string(dir.path().join("journal")).unwrap();
    assert_eq!(journal.lines().count(), 10, "the journal holds only what came after the last snapshot:\n{journal}");
    let r = Running::start(cfg).await;
    assert_eq!(r.replica.seq(), 40);
    assert_eq!(r.replica.read().len(), 40);
    r.shut().await;
}

#[tokio::test]
async fn new_number_ranges_reach_the_replica() {
    let ch = TestCh::start().await;
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(config(&ch.url, &ch.token, dir.path())).await;
    eventually("bootstrap", || r.replica.is_ready()).await;
    assert_eq!(serving(&r.replica, "4793000001"), None);
    let before = r.replica.ranges_version();
    // The portability center assigns a new block to opc; the feed carries no number for it.
    clearinghouse::admin::load_ranges_csv(&ch.ch.db, "4793,opc\n".as_bytes(), T0).await.unwrap();
    eventually("new range", || serving(&r.replica, "4793000001").is_some()).await;
    assert_eq!(serving(&r.replica, "4793000001"), Some(("opc".into(), false)));
    assert_eq!(r.replica.ranges_version(), before + 1);
    assert_eq!(r.metric("npdb_bootstraps_total"), 2.0);
    r.shut().await;
    // The version is kept on disk with the snapshot: a restart does not reload again.
    let r = Running::start(config(&ch.url, &ch.token, dir.path())).await;
    assert_eq!(r.replica.ranges_version(), before + 1);
    ch.import(&ports(1, 1, "opb")).await;
    eventually("follow", || r.replica.seq() == 1).await;
    assert_eq!(r.metric("npdb_bootstraps_total"), 0.0);
    r.shut().await;
}

#[tokio::test]
async fn a_gap_the_feed_cannot_fill_is_repaired_from_a_snapshot() {
    let ch = TestCh::start().await;
    ch.import(&ports(1, 10, "opb")).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(config(&ch.url, &ch.token, dir.path())).await;
    eventually("bootstrap", || r.replica.seq() == 10).await;
    r.shut().await;

    ch.import(&ports(11, 10, "opc")).await;
    // Change 15 is lost from the log (a damaged restore, say); its effect is still in the
    // clearinghouse's current records.
    let mut conn = ch.ch.db.acquire().await.unwrap();
    numport_db::sql::query("DELETE FROM routing_changes WHERE seq = 15").execute(&mut conn).await.unwrap();
    drop(conn);

    let r = Running::start(config(&ch.url, &ch.token, dir.path())).await;
    eventually("repair", || r.replica.seq() >= 20).await;
    assert!(r.metric("npdb_feed_gaps_total") >= 1.0);
    assert_eq!(r.metric("npdb_bootstraps_total"), 1.0);
    assert_eq!(serving(&r.replica, "4790000015"), Some(("opc".into(), true)), "the lost change's effect");
    assert_eq!(r.replica.read().len(), 20);
    r.shut().await;
}

#[tokio::test]
async fn unreachable_clearinghouse_marks_stale_and_lookups_go_on() {
    let mut ch = TestCh::start().await;
    ch.import(&ports(1, 5, "opb")).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(config(&ch.url, &ch.token, dir.path())).await;
    eventually("bootstrap", || r.replica.seq() == 5).await;
    eventually("fresh", || !r.replica.is_stale()).await;
    ch.stop().await;
    eventually("stale", || r.replica.is_stale()).await;
    assert_eq!(r.metric("npdb_stale"), 1.0);
    let status = r.replica.status();
    assert!(status.stale && status.ready && status.last_error.is_some(), "{status:?}");
    assert_eq!(serving(&r.replica, "4790000003"), Some(("opb".into(), true)), "last known data is served");

    // HTTP answers say so too.
    let app = replica::http::routes(r.replica.clone());
    let resp = tower_get(app, "/v1/lookup/4790000003").await;
    assert_eq!(resp["operator"], "opb");
    assert_eq!(resp["stale"], true);
    r.shut().await;
}

#[tokio::test]
async fn the_feed_needs_valid_credentials() {
    let ch = TestCh::start().await;
    ch.import(&ports(1, 5, "opb")).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(config(&ch.url, "nokey.nosecret", dir.path())).await;
    eventually("an error", || r.replica.status().last_error.is_some()).await;
    let status = r.replica.status();
    assert!(!status.ready && status.stale);
    assert!(status.last_error.as_deref().unwrap().contains("401"), "{status:?}");
    assert_eq!(r.replica.seq(), 0);
    assert_eq!(r.replica.read().len(), 0, "nothing learned without credentials");
    // The raw endpoints refuse too.
    let http = reqwest::Client::new();
    for path in ["/v1/routing/changes?after=0", "/v1/routing/snapshot"] {
        let resp = http.get(format!("{}{path}", ch.url)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    r.shut().await;
}

#[tokio::test]
async fn http_lookups_single_and_batch() {
    let ch = TestCh::start().await;
    ch.import(&ports(1, 3, "opc")).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(config(&ch.url, &ch.token, dir.path())).await;
    eventually("bootstrap", || r.replica.seq() == 3).await;
    let app = replica::http::routes(r.replica.clone());
    let one = tower_get(app.clone(), "/v1/lookup/4790000002").await;
    assert_eq!(one["operator"], "opc");
    assert_eq!(one["routing_number"], "D003");
    assert_eq!(one["ported"], true);
    assert_eq!(one["seq"], 3);
    assert_eq!(tower_get(app.clone(), "/v1/lookup/4793000000").await["error"], "unknown_number");
    assert_eq!(tower_get(app.clone(), "/v1/lookup/12x").await["error"], "invalid_number");

    let body = serde_json::json!({ "numbers": ["4790000001", "4791000000", "x", "4793000000"] }).to_string();
    let batch = tower_post(app.clone(), "/v1/lookup", body).await;
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results[0]["operator"], "opc");
    assert_eq!(results[1]["operator"], "opb");
    assert_eq!(results[1]["ported"], false);
    assert_eq!(results[2]["error"], "invalid_number");
    assert_eq!(results[3]["error"], "unknown_number");
    assert_eq!(tower_post(app.clone(), "/v1/lookup", "{".into()).await["error"], "malformed_json");
    let too_many = serde_json::json!({ "numbers": vec!["4790000001"; 10_001] }).to_string();
    assert_eq!(tower_post(app, "/v1/lookup", too_many).await["error"], "batch_too_large");
    r.shut().await;
}

async fn tower_get(app: axum::Router, path: &str) -> serde_json::Value {
    send(app, axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap()).await
}

async fn tower_post(app: axum::Router, path: &str, body: String) -> serde_json::Value {
    send(app, axum::http::Request::post(path).body(axum::body::Body::from(body)).unwrap()).await
}

async fn send(app: axum::Router, req: axum::http::Request<axum::body::Body>) -> serde_json::Value {
    let resp = tower::ServiceExt::oneshot(app, req).await.unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The replica follows an HTTPS clearinghouse that asks for operators' certificates: without
/// one it reads nothing, with its operator's it bootstraps and follows.
#[tokio::test]
async fn follows_an_https_clearinghouse_under_mutual_tls() {
    let pki_dir = tempfile::tempdir().unwrap();
    let plan =
        numport_tls::pki::PkiPlan { hosts: vec![], operators: vec!["opa".into()], replicas: vec![], validity_days: 1 };
    let pki = numport_tls::pki::generate(pki_dir.path(), &plan).unwrap();
    let own = pki.clearinghouse.clone();
    let tls = numport_tls::ServerTls { cert: own.cert, key: own.key, client_ca: Some(pki.ca.clone()) };
    let ch = TestCh::start_with(Some(tls)).await;
    ch.import(&ports(1, 20, "opb")).await;

    let anonymous = numport_tls::ClientTls { ca: pki.ca.clone(), cert: None, key: None };
    let dir = tempfile::tempdir().unwrap();
    let cfg = replica::ReplicaConfig { clearinghouse_tls: Some(anonymous), ..config(&ch.url, &ch.token, dir.path()) };
    let r = Running::start(cfg).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!r.replica.is_ready(), "no feed without a client certificate");
    r.shut().await;

    let opa = pki.operator("opa").unwrap();
    let tls = numport_tls::ClientTls { ca: pki.ca.clone(), cert: Some(opa.cert.clone()), key: Some(opa.key.clone()) };
    let dir = tempfile::tempdir().unwrap();
    let cfg = replica::ReplicaConfig { clearinghouse_tls: Some(tls), ..config(&ch.url, &ch.token, dir.path()) };
    let r = Running::start(cfg).await;
    eventually("bootstrap over TLS", || r.replica.seq() == 20).await;
    ch.import(&ports(21, 5, "opc")).await;
    eventually("follow over TLS", || r.replica.seq() == 25).await;
    assert_eq!(serving(&r.replica, "4790000022"), Some(("opc".into(), true)));
    r.shut().await;
}
