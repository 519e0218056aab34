//! The self-service page in a real browser: headless Chromium, driven over WebDriver by
//! chromedriver from this test (`fantoccini`), fills in the form on the node's page, opens an
//! account, and waits until the page says "SIM written": the card behind a handset on the air
//! interface has confirmed the writes with its proof of receipt. With `NUMPORT_SCREENSHOT_DIR`
//! set, the page is saved there as `self-service.png` (docs/self-service.png is one).
//!
//! Needs `chromium` and `chromedriver` (Debian: chromium, chromium-driver); under `CI=true` a
//! missing one fails the test.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use fantoccini::{ClientBuilder, Locator};
use numport_core::ManualClock;
use operator::ota::stock::{self, NewCard};
use operator::{Listeners, Node, OperatorConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const ENABLE: &str = "apt-get install chromium chromium-driver";

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn chromedriver(program: &std::path::Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if testkit::listening(port) {
            return Driver { child, url };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not listen on port {port}");
}

/// Node `opa` serving HTTP and the air interface, a card in stock, and that card in a handset
/// that keeps trying to attach until its account exists (as a phone with a new card does).
async fn node_with_card(dir: &tempfile::TempDir) -> (std::net::SocketAddr, String, CancellationToken) {
    let npdb = tempfile::tempdir().unwrap().keep();
    let ops =
        [("opa", "D001")].map(|(n, r)| npdb::Operator { name: n.parse().unwrap(), routing_number: r.parse().unwrap() });
    let index = npdb::Index::new(ops, [("4790".parse().unwrap(), "opa".parse().unwrap())]).unwrap();
    replica::disk::install_index(&npdb, &index, 0, 0).unwrap();
    let mut config = OperatorConfig {
        database_url: format!("sqlite://{}/operator-{{name}}.db", dir.path().display()),
        key_encryption_key: hex(&[0x4b; 32]),
        npdb: replica::ReplicaConfig { data_dir: Some(npdb), ..config("opa", "http://127.0.0.1:9").npdb },
        ..config("opa", "http://127.0.0.1:9")
    };
    config.accounts.msisdn_pool = vec!["4790500000-4790500099".into()];
    config.accounts.imsi_pool = vec!["242010000000100-242010000000199".into()];
    config.ota.sms_center_address = "+4790000000".into();
    config.ota.spn = "Operator A".into();
    let node = Node::open(config, Arc::new(ManualClock::new(T0))).await.unwrap();
    let iccid = operator::account_opening::identity::with_luhn_digit("894700000000000042");
    let card = NewCard {
        iccid: iccid.clone(),
        imsi: None,
        k_sim: None,
        algorithm: sim::Algorithm::Aes,
        key_len: 16,
        kic: None,
        kid: None,
        key_index: 1,
        msisdn: None,
    };
    let loaded = stock::load(node.store(), node.config(), card, T0).await.unwrap();

    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let air = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, air_addr) = (http.local_addr().unwrap(), air.local_addr().unwrap());
    let stop = CancellationToken::new();
    let listeners = Listeners { http, enum_dns: None, smpp: None, smpp_tls: None, air: Some(air), gy: None };
    tokio::spawn(node.clone().serve(listeners, stop.clone()));

    let keys = sim::OtaKeys::aes(&hex::decode(&loaded.kic).unwrap(), &hex::decode(&loaded.kid).unwrap()).unwrap();
    let personalisation = sim::Personalisation {
        imsi: loaded.imsi,
        k_sim: hex::decode(&loaded.k_sim).unwrap(),
        ota_keys: vec![(1, keys)],
        msisdn: None,
        spn: None,
        smsc: None,
        sms_auth: None,
    };
    let card = Arc::new(std::sync::Mutex::new(sim::Card::personalise(&personalisation).unwrap()));
    let handset_stop = stop.clone();
    tokio::spawn(async move {
        let (pors, _rx) = tokio::sync::mpsc::unbounded_channel();
        while !handset_stop.is_cancelled() {
            let served =
                operator::ota::handset::serve_card(air_addr, card.clone(), pors.clone(), handset_stop.clone()).await;
            if !matches!(served, Ok(Err(_))) {
                return;
            }
            // Refused: no account on the card yet.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (http_addr, iccid, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_opens_an_account_in_the_browser_until_the_sim_is_written() {
    let (Some(driver), Some(chromium)) =
        (testkit::command("chromedriver", ENABLE), testkit::command("chromium", ENABLE))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (http, iccid, stop) = node_with_card(&dir).await;
    let driver = chromedriver(&driver).await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=820,1000"],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session");
    browser.goto(&format!("http://{http}/self-service")).await.unwrap();

    // A mistyped ICCID first: the page shows the error beside the field.
    for (field, value) in [
        ("given_name", "Kari"),
        ("family_name", "Nordmann"),
        ("date_of_birth", "1990-04-17"),
        ("id_document", "P1234567"),
        ("email", "kari@example.no"),
        ("iccid", "8947000000000000420"),
    ] {
        browser.find(Locator::Id(field)).await.unwrap().send_keys(value).await.unwrap();
    }
    browser.find(Locator::Id("open")).await.unwrap().click().await.unwrap();
    let error = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//div[@id='iccid-error' and string-length(text()) > 0]"))
        .await
        .expect("the ICCID error shown");
    assert!(error.text().await.unwrap().contains("check digit"));

    let field = browser.find(Locator::Id("iccid")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(&iccid).await.unwrap();
    browser.find(Locator::Id("open")).await.unwrap().click().await.unwrap();
    let status = browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("//div[@id='status' and text()='SIM written']"))
        .await;
    let page = browser.source().await.unwrap_or_default();
    let status = status.unwrap_or_else(|e| panic!("the page never said SIM written ({e}):\n{page}"));
    assert_eq!(status.text().await.unwrap(), "SIM written");
    assert_eq!(browser.find(Locator::Id("msisdn")).await.unwrap().text().await.unwrap(), "+4790500000");
    for step in ["allocated", "provisioned", "sim_written"] {
        let class = browser.find(Locator::Id(&format!("step-{step}"))).await.unwrap().attr("class").await.unwrap();
        assert_eq!(class.as_deref(), Some("done"), "step {step}");
    }
    if let Ok(dir) = std::env::var("NUMPORT_SCREENSHOT_DIR") {
        let png = browser.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join("self-service.png"), png).unwrap();
    }
    browser.close().await.unwrap();
    stop.cancel();
}
