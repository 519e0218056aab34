//! Self-service account opening and the OTA server (F7) inside a node: the account API on
//! SQLite and PostgreSQL (identity errors, idempotency, cards, the number pool under
//! concurrency), the card stock's sealed keys, the OTA counters across a restart, and the
//! whole path over real sockets: an account opened, its packet through the SMS center and
//! the air interface to a card (the `sim` crate's UICC behind a handset), the proof of receipt
//! back, a job retried after its first attempt went unanswered.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use numport_core::{Clock, ManualClock};
use numport_db::testing::TempDatabase;
use operator::ota::stock::{self, NewCard};
use operator::{Listeners, Node, OperatorConfig};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "back-office-token-0001";
const KEK: [u8; 32] = [0x4b; 32];

/// The node `opa` on `database_url` (SQLite in `dir` when `None`), its replica serving 4790
/// (opa) and 4791 (opb), pools in 4790 and IMSIs in 24201, the back-office token, a
/// key-encryption key, and `tweak` applied last.
async fn node(
    dir: &tempfile::TempDir,
    database_url: Option<&str>,
    clock: Arc<dyn Clock>,
    tweak: impl FnOnce(&mut OperatorConfig),
) -> Node {
    let npdb = tempfile::tempdir().unwrap().keep();
    let ops = [("opa", "D001"), ("opb", "D002")]
        .map(|(n, r)| npdb::Operator { name: n.parse().unwrap(), routing_number: r.parse().unwrap() });
    let ranges = [("4790", "opa"), ("4791", "opb")].map(|(p, o)| (p.parse().unwrap(), o.parse().unwrap()));
    let index = npdb::Index::new(ops, ranges).unwrap();
    replica::disk::install_index(&npdb, &index, 0, 0).unwrap();
    let mut config = OperatorConfig {
        database_url: database_url
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sqlite://{}/operator-{{name}}.db", dir.path().display())),
        key_encryption_key: hex(&KEK),
        npdb: replica::ReplicaConfig { data_dir: Some(npdb), ..config("opa", "http://127.0.0.1:9").npdb },
        ..config("opa", "http://127.0.0.1:9")
    };
    config.provisioning.token_sha256 = hex(&Sha256::digest(TOKEN.as_bytes()));
    config.accounts.msisdn_pool = vec!["4790500000-4790500009".into()];
    config.accounts.imsi_pool = vec!["242010000000100-242010000000199".into()];
    config.ota.sms_center_address = "+4790000000".into();
    config.ota.spn = "Operator A".into();
    tweak(&mut config);
    Node::open(config, clock).await.unwrap()
}

/// A valid ICCID of the test range, number `n`.
fn iccid(n: u32) -> String {
    operator::account_opening::identity::with_luhn_digit(&format!("894700000000{n:06}"))
}

/// Loads card `n` with fixed AES keys; what it was personalised with.
async fn load_card(node: &Node, n: u32) -> stock::LoadedCard {
    let card = NewCard {
        iccid: iccid(n),
        imsi: None,
        k_sim: Some(vec![n as u8; 32]),
        algorithm: sim::Algorithm::Aes,
        key_len: 16,
        kic: Some(vec![0x11; 16]),
        kid: Some(vec![0x22; 16]),
        key_index: 1,
        msisdn: None,
    };
    stock::load(node.store(), node.config(), card, node.now()).await.unwrap()
}

fn person(card: u32) -> Value {
    json!({
        "given_name": "Kari",
        "family_name": "Nordmann",
        "date_of_birth": "1990-04-17",
        "id_document": "P1234567",
        "email": "kari@example.no",
        "iccid": iccid(card),
    })
}

async fn call(
    node: &Node,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (StatusCode, Value) {
    use tower::ServiceExt;
    let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
    let resp = node.router().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn open(node: &Node, body: &Value, key: &str) -> (StatusCode, Value) {
    call(node, "POST", "/v1/accounts", &[("idempotency-key", key)], Some(body)).await
}

/// The account API on one engine: an account opened and read back, its repeat, a key reused
/// for another body, a card taken, identity errors, an unknown account.
async fn account_round_trip(node: &Node) {
    let loaded = load_card(node, 1).await;
    assert_eq!(loaded.imsi, "242010000000100", "the IMSI comes from the pool");
    load_card(node, 2).await;

    let (status, opened) = open(node, &person(1), "k-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{opened}");
    assert_eq!((opened["msisdn"].as_str(), opened["state"].as_str()), (Some("4790500000"), Some("allocated")));
    assert_eq!(opened["repeat"], false);
    let id = opened["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);

    let (status, view) = call(node, "GET", &format!("/v1/accounts/{id}"), &[], None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!((view["iccid"].as_str(), view["allocated"].as_bool()), (Some(iccid(1).as_str()), Some(true)));
    assert!(view["ota_job_id"].is_i64() && view["provisioning_order_id"].is_i64(), "{view}");
    // The subscriber and the SIM the air interface attaches exist.
    let sub = node.store().subscriber(&"4790500000".parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(sub.status, operator::SubscriberStatus::Active);
    let (msisdn, k_sim) = node.store().sim("242010000000100").await.unwrap().unwrap();
    assert_eq!((msisdn.as_str(), k_sim), ("4790500000", vec![1; 32]));

    // The same request again: the same account, nothing new.
    let (status, again) = open(node, &person(1), "k-1").await;
    assert_eq!(
        (status, again["id"].as_str(), again["repeat"].as_bool()),
        (StatusCode::ACCEPTED, Some(id.as_str()), Some(true))
    );
    // The same key with another body.
    let (status, e) = open(node, &person(2), "k-1").await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::CONFLICT, Some("idempotency_key_reused")), "{e}");
    // Another key for the card already taken.
    let (status, e) = open(node, &person(1), "k-2").await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::CONFLICT, Some("card_unavailable")), "{e}");
    // An unknown card.
    let (status, e) = open(node, &person(99), "k-3").await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::CONFLICT, Some("card_unavailable")), "{e}");

    // Identity errors: every field named, nothing opened.
    let bad = json!({
        "given_name": " ", "family_name": "N0rdmann", "date_of_birth": "2015-02-30",
        "id_document": "x", "email": "kari@", "iccid": "8947000000000000011",
    });
    let (status, e) = open(node, &bad, "k-4").await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_identity")), "{e}");
    let message = e["message"].as_str().unwrap();
    for field in
        ["given_name: is required", "family_name:", "date_of_birth:", "id_document:", "email:", "iccid: check digit"]
    {
        assert!(message.contains(field), "{field} in {message}");
    }
    let (status, e) = call(node, "POST", "/v1/accounts", &[], Some(&json!({"given_name": "Kari"}))).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{e}");
    let (status, e) = call(node, "GET", "/v1/accounts/00000000000000000000000000000000", &[], None).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));

    // The second card gets the next number.
    let (status, second) = open(node, &person(2), "k-5").await;
    assert_eq!((status, second["msisdn"].as_str()), (StatusCode::ACCEPTED, Some("4790500001")), "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_round_trip_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, None, Arc::new(ManualClock::new(T0)), |_| {}).await;
    account_round_trip(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_round_trip_postgres() {
    let Some(db) = TempDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, Some(db.url()), Arc::new(ManualClock::new(T0)), |_| {}).await;
    account_round_trip(&node).await;
    node.store().close().await;
    db.remove().await.unwrap();
}

/// Concurrent openings on distinct cards each get a number of their own; once the pool is
/// empty the next is refused, and nothing was given twice.
async fn pool_under_concurrency(node: &Node) {
    for n in 1..=12 {
        load_card(node, n).await;
    }
    let opens = (1..=12).map(|n| {
        let node = node.clone();
        async move { open(&node, &person(n), &format!("key-{n}")).await }
    });
    let answers = futures::future::join_all(opens).await;
    let numbers: Vec<&str> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .map(|(_, a)| a["msisdn"].as_str().unwrap())
        .collect();
    assert_eq!(numbers.len(), 10, "the pool holds ten numbers: {answers:?}");
    assert_eq!(numbers.iter().collect::<HashSet<_>>().len(), 10, "no number twice: {numbers:?}");
    let refused: Vec<&Value> = answers.iter().filter(|(s, _)| *s != StatusCode::ACCEPTED).map(|(_, a)| a).collect();
    assert!(refused.iter().all(|a| a["error"] == "numbers_exhausted"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_unique_under_concurrency_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, None, Arc::new(ManualClock::new(T0)), |_| {}).await;
    pool_under_concurrency(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_unique_under_concurrency_postgres() {
    let Some(db) = TempDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, Some(db.url()), Arc::new(ManualClock::new(T0)), |_| {}).await;
    pool_under_concurrency(&node).await;
    node.store().close().await;
    db.remove().await.unwrap();
}

#[tokio::test]
async fn card_keys_are_sealed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, None, Arc::new(ManualClock::new(T0)), |_| {}).await;
    load_card(&node, 3).await;
    let card = node.store().sim_card(&iccid(3)).await.unwrap().unwrap();
    for (sealed, plain) in
        [(&card.kic_sealed, [0x11u8; 16].as_slice()), (&card.kid_sealed, &[0x22; 16]), (&card.k_sim_sealed, &[3; 32])]
    {
        assert!(!sealed.contains(&hex(plain)), "a key in the clear");
        assert!(node.sealer().unwrap().open(b"wrong context", sealed).is_err());
    }
    // Loading the same card twice is refused.
    let again = NewCard {
        iccid: iccid(3),
        imsi: Some("242010000000150".into()),
        k_sim: None,
        algorithm: sim::Algorithm::Aes,
        key_len: 16,
        kic: None,
        kid: None,
        key_index: 1,
        msisdn: None,
    };
    assert!(matches!(stock::load(node.store(), node.config(), again, T0).await, Err(stock::StockError::Duplicate)));
}

/// Counters reserved for a card's packets only grow, across a restart of the node.
#[tokio::test]
async fn ota_counters_grow_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let first = node(&dir, None, clock.clone(), |_| {}).await;
    load_card(&first, 4).await;
    let (status, _) = open(&first, &person(4), "k").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = first.store().due_ota_jobs(T0, 10).await.unwrap().remove(0);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(first.store().reserve_ota_attempt(job.id, &job.iccid, T0, T0).await.unwrap().unwrap().counter);
    }
    first.store().close().await;
    drop(first);
    let second = node(&dir, None, clock, |_| {}).await;
    for _ in 0..3 {
        seen.push(second.store().reserve_ota_attempt(job.id, &job.iccid, T0, T0).await.unwrap().unwrap().counter);
    }
    assert_eq!(seen, [1, 2, 3, 4, 5, 6]);
    let stored = second.store().ota_job(job.id).await.unwrap().unwrap();
    assert_eq!((stored.counter_from, stored.counter, stored.attempts), (Some(1), Some(6), 6));
}

/// The page is served, self-contained.
#[tokio::test]
async fn the_page_is_served_without_outside_assets() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, None, Arc::new(ManualClock::new(T0)), |_| {}).await;
    let resp = node.router().oneshot(Request::get("/self-service").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(page.contains("/v1/accounts") && page.contains("SIM written"));
    assert!(!page.contains("http://") && !page.contains("https://"), "no outside assets");
}

/// The node served on loopback sockets (HTTP and the air interface), so its OTA server,
/// provisioning and SMS center run.
async fn serve(node: &Node) -> (std::net::SocketAddr, std::net::SocketAddr, CancellationToken) {
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let air = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, air_addr) = (http.local_addr().unwrap(), air.local_addr().unwrap());
    let stop = CancellationToken::new();
    let listeners = Listeners { http, enum_dns: None, smpp: None, smpp_tls: None, air: Some(air), gy: None };
    tokio::spawn(node.clone().serve(listeners, stop.clone()));
    eventually("provisioning running", async || node.provisioner().status().is_some()).await;
    (http_addr, air_addr, stop)
}

/// The card the manufacturer made from `loaded`.
fn card_of(loaded: &stock::LoadedCard) -> Arc<std::sync::Mutex<sim::Card>> {
    let keys = sim::OtaKeys::aes(&hex::decode(&loaded.kic).unwrap(), &hex::decode(&loaded.kid).unwrap()).unwrap();
    let p = sim::Personalisation {
        imsi: loaded.imsi.clone(),
        k_sim: hex::decode(&loaded.k_sim).unwrap(),
        ota_keys: vec![(loaded.key_index, keys)],
        msisdn: None,
        spn: None,
        smsc: None,
        sms_auth: None,
    };
    Arc::new(std::sync::Mutex::new(sim::Card::personalise(&p).unwrap()))
}

/// A handset with `card` on the air interface; the causes of its PoRs' SubmitAcks.
fn handset(
    air: std::net::SocketAddr,
    card: Arc<std::sync::Mutex<sim::Card>>,
    stop: CancellationToken,
) -> tokio::sync::mpsc::UnboundedReceiver<operator::ota::handset::PorSent> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let result = operator::ota::handset::serve_card(air, card, tx, stop).await;
        assert!(matches!(result, Ok(Ok(()))), "handset: {result:?}");
    });
    rx
}

async fn job(node: &Node, account: &Value) -> operator::store::ota::OtaJob {
    let id = account["ota_job_id"].as_i64().unwrap();
    node.store().ota_job(id).await.unwrap().unwrap()
}

async fn wait_account(node: &Node, id: &str, state: &str) -> Value {
    for _ in 0..500 {
        let (_, view) = call(node, "GET", &format!("/v1/accounts/{id}"), &[], None).await;
        if view["state"] == state {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, view) = call(node, "GET", &format!("/v1/accounts/{id}"), &[], None).await;
    panic!("account never {state}: {view}");
}

/// The whole path: an account opened, its packet through the SMS center and the air interface
/// to the card, the card's files written, its PoR collected, the account `sim_written`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_account_gets_its_card_written_over_the_air() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, None, Arc::new(ManualClock::new(T0)), |_| {}).await;
    let (_, air, stop) = serve(&node).await;
    let loaded = load_card(&node, 5).await;
    let card = card_of(&loaded);
    let (status, opened) = open(&node, &person(5), "e2e").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{opened}");
    let mut pors = handset(air, card.clone(), stop.clone());
    let por = tokio::time::timeout(Duration::from_secs(5), pors.recv()).await.expect("a PoR in time").unwrap();
    assert_eq!(por.cause, sms::air::CAUSE_OK);
    let view = wait_account(&node, opened["id"].as_str().unwrap(), "sim_written").await;
    assert_eq!((view["provisioned"].as_bool(), view["sim_written"].as_bool()), (Some(true), Some(true)));

    let job = job(&node, &view).await;
    assert_eq!((job.state.as_str(), job.attempts, job.por_status), ("done", 1, Some(0)));
    let c = card.lock().unwrap().clone();
    assert_eq!(c.msisdn().as_deref(), Some("+4790500000"));
    assert_eq!(c.spn().as_deref(), Some("Operator A"));
    assert_eq!(c.smsc().as_deref(), Some("+4790000000"));
    assert_eq!(c.counter(sim::Tar::RFM_SIM), job.counter.unwrap() as u64);
    // The SMS-authentication key written is the SMS center's, issued for the job and active
    // now that the card confirmed it.
    assert_eq!(job.sms_auth_version, Some(1));
    let issued = operator::sms_center::authentication::issued_key(
        node.store(),
        node.sealer().unwrap(),
        &node.config().sms_auth,
        &loaded.imsi,
        1,
        node.now(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(c.sms_auth_key(), Some((1, &issued.key[..])));
    let stored = node.store().sms_auth_keys(&loaded.imsi, node.now()).await.unwrap();
    assert!(stored[0].activated_at.is_some() && stored[0].retired_at.is_none(), "{stored:?}");

    // The metrics count the PoR and the job.
    let metrics = telemetry_text(&node).await;
    assert!(metrics.contains("operator_ota_proofs_of_receipt_total{status=\"ok\"} 1"), "{metrics}");
    stop.cancel();
}

async fn telemetry_text(node: &Node) -> String {
    use tower::ServiceExt;
    let resp = node.router().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    String::from_utf8(axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
}

/// Attempts without a PoR are sent again with fresh counters; once they are all spent the job
/// fails, the account says why, and a retry through the API writes the card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_job_is_retried_then_fails_and_a_retry_writes_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let node = node(&dir, None, clock.clone(), |c| {
        c.ota.retry_initial_ms = 1_000;
        c.ota.max_attempts = 2;
    })
    .await;
    let (_, air, stop) = serve(&node).await;
    let loaded = load_card(&node, 6).await;
    let (_, opened) = open(&node, &person(6), "retry").await;
    let id = opened["id"].as_str().unwrap().to_owned();
    let (_, view) = call(&node, "GET", &format!("/v1/accounts/{id}"), &[], None).await;
    let job_id = view["ota_job_id"].as_i64().unwrap();
    let attempts = async |n: i64| {
        eventually("the attempt", async || node.store().ota_job(job_id).await.unwrap().unwrap().attempts == n).await
    };
    attempts(1).await;
    // No handset: no PoR. The second attempt goes once the first one's wait is over.
    clock.advance_ms(1_001);
    node.ota().wake();
    attempts(2).await;
    let j = node.store().ota_job(job_id).await.unwrap().unwrap();
    assert_eq!((j.counter_from, j.counter, j.state.as_str()), (Some(1), Some(2), "sent"));
    clock.advance_ms(2_001);
    node.ota().wake();
    let view = wait_account(&node, &id, "failed").await;
    assert!(view["reason"].as_str().unwrap().contains("no proof of receipt after 2 attempts"), "{view}");

    // Retried: the third packet (counter 3) reaches the card, which has seen none before.
    let token = format!("Bearer {TOKEN}");
    let (status, retried) =
        call(&node, "POST", &format!("/v1/ota/jobs/{job_id}/retry"), &[("authorization", &token)], None).await;
    assert_eq!((status, retried["state"].as_str()), (StatusCode::ACCEPTED, Some("queued")), "{retried}");
    let (status, _) =
        call(&node, "POST", &format!("/v1/ota/jobs/{job_id}/retry"), &[("authorization", &token)], None).await;
    assert_eq!(status, StatusCode::CONFLICT, "only a failed job is retried");
    let card = card_of(&loaded);
    let _pors = handset(air, card.clone(), stop.clone());
    wait_account(&node, &id, "sim_written").await;
    let (status, j) = call(&node, "GET", &format!("/v1/ota/jobs/{job_id}"), &[("authorization", &token)], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (j["state"].as_str(), j["attempts"].as_i64(), j["por_status"].as_i64()),
        (Some("done"), Some(1), Some(0)),
        "{j}"
    );
    assert!(j["counter"].as_i64().unwrap() >= 3, "fresh counters only: {j}");
    assert_eq!(card.lock().unwrap().msisdn().as_deref(), Some("+4790500000"));
    let (status, _) = call(&node, "GET", "/v1/ota/status", &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    stop.cancel();
}

/// A card whose KID differs from the node's answers "RC/CC/DS failed", without a checksum
/// (it never signs an answer to a packet it could not verify): the job is not ended by a PoR
/// anyone could have sent, and the status is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_with_other_keys_never_confirms() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir, None, Arc::new(ManualClock::new(T0)), |_| {}).await;
    let (_, air, stop) = serve(&node).await;
    let mut loaded = load_card(&node, 7).await;
    loaded.kid = hex(&[0x33; 16]);
    let card = card_of(&loaded);
    let (_, opened) = open(&node, &person(7), "wrong-keys").await;
    let mut pors = handset(air, card.clone(), stop.clone());
    tokio::time::timeout(Duration::from_secs(5), pors.recv()).await.expect("a PoR in time").unwrap();
    let (_, view) = call(&node, "GET", &format!("/v1/accounts/{}", opened["id"].as_str().unwrap()), &[], None).await;
    let job = job(&node, &view).await;
    assert_eq!(job.state, "sent", "still waiting for a PoR it can trust");
    assert_eq!(card.lock().unwrap().msisdn(), None, "nothing written");
    let metrics = telemetry_text(&node).await;
    assert!(metrics.contains("operator_ota_proofs_of_receipt_total{status=\"checksum_failed\"} 1"), "{metrics}");
    stop.cancel();
}
