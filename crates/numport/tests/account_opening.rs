//! Self-service account opening end to end with real processes (F7): an operator node with a
//! blank card in stock, the card personalised from the stock's data (`numport terminal sim
//! new`), an account opened over HTTP, `numport terminal` with the card attached over the air:
//! the node's OTA server writes the card through its SMS center and collects the PoR, and
//! `numport terminal sim show` reads the new number, SPN and SMS center address, and the
//! SMS-authentication key the SMS center tags with: the terminal's own SMS and its status
//! report come back authentic under the card's key. Then the
//! counters across `kill -9`: a packet sent, the node killed, restarted; the next packet has a
//! higher counter, which the card accepts.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use numport::ota_node;
use serde_json::{Value, json};

/// The node configured in `dir` with one blank card, started; what the card was made with.
async fn node(
    dir: &Path,
    retry_initial_ms: u64,
) -> (numport::launch::Launched, operator::ota::stock::LoadedCard, std::path::PathBuf) {
    static BIN: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before any test of this binary starts a process or reads the
    // environment (every test goes through here first).
    BIN.call_once(|| unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) });
    let config = ota_node::configure(dir, retry_initial_ms).unwrap();
    let card = ota_node::load_cards(&config, 1).await.unwrap().remove(0);
    let node = ota_node::start(&config).await.unwrap();
    (node, card, config)
}

fn numport(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_numport")).args(args).env("NUMPORT_LOG", "warn").output().unwrap()
}

fn new_card(file: &Path, card: &operator::ota::stock::LoadedCard) {
    let out = numport(&[
        "terminal",
        "sim",
        "new",
        "--card",
        file.to_str().unwrap(),
        "--imsi",
        &card.imsi,
        "--k-sim",
        &card.k_sim,
        "--kic",
        &card.kic,
        "--kid",
        &card.kid,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn show(file: &Path) -> Value {
    let out = numport(&["terminal", "sim", "show", "--card", file.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn open_account(http: &reqwest::Client, url: &str, iccid: &str) -> Value {
    let body = json!({
        "given_name": "Kari", "family_name": "Nordmann", "date_of_birth": "1990-04-17",
        "id_document": "P1234567", "iccid": iccid,
    });
    let resp =
        http.post(format!("{url}/v1/accounts")).header("idempotency-key", iccid).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    resp.json().await.unwrap()
}

async fn wait_state(http: &reqwest::Client, url: &str, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view: Value = http.get(format!("{url}/v1/accounts/{id}")).send().await.unwrap().json().await.unwrap();
        if view["state"] == state || Instant::now() > deadline {
            assert_eq!(view["state"], state, "{view}");
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The terminal with `card`, until it has taken one SIM data download.
fn terminal(air: std::net::SocketAddr, card: &operator::ota::stock::LoadedCard, file: &Path) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_numport"))
        .args(["terminal", "--node", &air.to_string(), "--imsi", &card.imsi, "--card", file.to_str().unwrap()])
        .args(["--count", "1"])
        .env("NUMPORT_K_SIM", &card.k_sim)
        .env("NUMPORT_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_opened_over_http_writes_the_terminals_card() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, card, config) = node(dir.path(), 10_000).await;
    let (imsi, k_sim) = (card.imsi.clone(), card.k_sim.clone());
    let file = dir.path().join("card.json");
    new_card(&file, &card);
    assert_eq!(show(&file)["msisdn"], Value::Null, "a blank card");

    let http = reqwest::Client::new();
    let opened = open_account(&http, &node.url(), &card.iccid).await;
    assert_eq!(opened["msisdn"], "4790500000");
    let air = node.air.unwrap();
    tokio::task::spawn_blocking(move || terminal(air, &card, &file)).await.unwrap();
    let written = show(&dir.path().join("card.json"));
    assert_eq!(written["msisdn"], "+4790500000", "{written}");
    assert_eq!(written["spn"], "Operator A", "{written}");
    assert_eq!(written["smsc"], "+4790000000", "{written}");
    let view = wait_state(&http, &node.url(), opened["id"].as_str().unwrap(), "sim_written").await;
    assert_eq!(view["sim_written"], true);

    // One key: the card's SMS-authentication key is the one the SMS center tags with.
    let cfg: operator::OperatorConfig = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let store =
        operator::OperatorStore::connect(&format!("sqlite://{}", dir.path().join("opa.db").display())).await.unwrap();
    let now = numport_core::Clock::now_ms(&numport_core::SystemClock);
    let keys = store.sms_auth_keys(&imsi, now).await.unwrap();
    let active = keys.iter().find(|k| k.activated_at.is_some() && k.retired_at.is_none()).expect("an active key");
    let sealer = cfg.sealer().unwrap().unwrap();
    let key =
        operator::sms_center::authentication::issued_key(&store, &sealer, &cfg.sms_auth, &imsi, active.version, now)
            .await
            .unwrap()
            .unwrap();
    store.close().await;
    assert_eq!(written["sms_auth_key"]["version"], active.version, "{written}");
    assert_eq!(written["sms_auth_key"]["kcv"], hex::encode_upper(sim::crypto::secret_check_value(&key.key)));

    // The terminal sends itself an SMS: the SMS-DELIVER and the status report the SMS center
    // sends back are authentic under the card's key, for the number in the card's EF_MSISDN.
    let file = dir.path().join("card.json");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_numport"))
            .args(["terminal", "--node", &air.to_string(), "--imsi", &imsi, "--card", file.to_str().unwrap()])
            .args(["--send", "4790500000", "--text", "Hei fra meg selv", "--count", "2", "--json"])
            .env("NUMPORT_K_SIM", &k_sim)
            .env("NUMPORT_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let message = shown.iter().find(|v| v["text"] == "Hei fra meg selv").expect("the SMS shown");
    assert_eq!(message["verdict"], "authentic", "{message}");
    let report = shown.iter().find(|v| v["status_report"].is_object()).expect("the status report shown");
    assert_eq!(
        (report["status_report"]["status"].as_str(), report["verdict"].as_str()),
        (Some("delivered"), Some("authentic"))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_keep_growing_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // A packet unanswered for 1 s is sent again.
    let (mut node, card, config) = node(dir.path(), 1_000).await;
    let http = reqwest::Client::new();
    let opened = open_account(&http, &node.url(), &card.iccid).await;
    let url = format!("sqlite://{}", dir.path().join("opa.db").display());
    let store = operator::OperatorStore::connect(&url).await.unwrap();
    let job_id = {
        let view = wait_state(&http, &node.url(), opened["id"].as_str().unwrap(), "provisioned").await;
        view["ota_job_id"].as_i64().unwrap()
    };
    // The first attempt issues the job's key, then reserves its counter.
    let deadline = Instant::now() + Duration::from_secs(20);
    let before = loop {
        match store.ota_job(job_id).await.unwrap().unwrap().counter {
            Some(c) => break c,
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            None => panic!("no packet sent in 20 s"),
        }
    };
    node.kill_hard().await.unwrap();
    let mut node = ota_node::start(&config).await.unwrap();
    // The restarted node's next attempt takes a counter above every one reserved before.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let c = store.ota_job(job_id).await.unwrap().unwrap().counter.unwrap();
        if c > before || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(after > before, "counter {after} after the restart, {before} before");
    store.close().await;
    // The card takes the latest packet (and refuses older ones as replays): written.
    let file = dir.path().join("card.json");
    new_card(&file, &card);
    let air = node.air.unwrap();
    tokio::task::spawn_blocking(move || terminal(air, &card, &file)).await.unwrap();
    wait_state(&http, &node.url(), opened["id"].as_str().unwrap(), "sim_written").await;
    node.stop().await;
}
