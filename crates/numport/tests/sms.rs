//! A bank's SMS end to end on the real binaries: the bank binds to opa's SMS center over SMPP
//! and submits; `numport terminal`, attached with the subscriber's SIM, shows the message, for
//! an opa subscriber (local delivery) and for an opb subscriber (over the interconnect).

use numport::cluster::{BANK_PASSWORD, BANK_SYSTEM_ID, Cluster, ClusterSpec, sim_of, subscriber_number};
use numport_core::proof::PinStretch;

/// Runs `numport terminal` against `air` until it has shown one message.
async fn terminal(air: std::net::SocketAddr, imsi: &str, k_sim_hex: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_numport"))
        .args(["terminal", "--node", &air.to_string(), "--imsi", imsi, "--k-sim", k_sim_hex])
        .args(["--count", "1", "--json"])
        .env("NUMPORT_LOG", "warn")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bank_sms_reaches_the_terminal() {
    // SAFETY: no other test in this binary reads the environment.
    unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) };
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(ClusterSpec {
        dir: tmp.path().join("cluster"),
        clearinghouse_db: None,
        subscribers_per_operator: 2,
        pin_stretch: PinStretch::FAST,
        clearinghouse: clearinghouse::ClearinghouseConfig::default(),
    })
    .await
    .unwrap();
    let opa = cluster.op("opa");
    let msisdn = subscriber_number("4790", 1);
    let (imsi, k_sim) = sim_of(&msisdn);

    // The replica must know opa's ranges before it can route.
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let r = http.get(format!("{}/v1/lookup/{msisdn}", opa.proc.url())).send().await.unwrap();
        if r.status().is_success() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let bank =
        smsc::client::Client::bind_transmitter(opa.proc.smpp.unwrap(), BANK_SYSTEM_ID, BANK_PASSWORD).await.unwrap();
    bank.submit("MyBank", msisdn.as_str(), b"Your code is 123456").await.unwrap();
    bank.unbind().await.unwrap();

    let out = terminal(opa.proc.air.unwrap(), &imsi, &hex::encode(&k_sim)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(shown["from"], "MyBank");
    assert_eq!(shown["text"], "Your code is 123456");

    // A wrong key does not attach.
    let out = terminal(opa.proc.air.unwrap(), &imsi, "00112233445566778899aabbccddeeff").await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("attach refused"));

    // A number opb serves, submitted at opa: opa forwards it over the SMPP interconnect to
    // opb's SMS center, which delivers it to opb's subscriber.
    let theirs = subscriber_number("4791", 0);
    let (bank, mut receipts) =
        smsc::client::Client::bind(opa.proc.smpp.unwrap(), BANK_SYSTEM_ID, BANK_PASSWORD, smsc::BindMode::Transceiver)
            .await
            .unwrap();
    let id = bank.submit("MyBank", theirs.as_str(), b"Across the interconnect").await.unwrap();
    let (imsi, k_sim) = sim_of(&theirs);
    let out = terminal(cluster.op("opb").proc.air.unwrap(), &imsi, &hex::encode(&k_sim)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!((shown["from"].as_str(), shown["text"].as_str()), (Some("MyBank"), Some("Across the interconnect")));
    // opb's receipt comes back over the interconnect; opa relays it under its own message id.
    let receipt = tokio::time::timeout(std::time::Duration::from_secs(10), receipts.recv()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(receipt.deliver.short_message().as_ref()).into_owned();
    assert_eq!(receipt.deliver.source_addr.as_str(), theirs.as_str());
    receipt.answer(smsc::rusmpp::CommandStatus::EsmeRok);
    let parsed = smsc::receipt::Receipt::parse(&text).unwrap();
    assert_eq!((parsed.message_id.as_str(), parsed.state), (id.as_str(), smsc::receipt::ReceiptState::Delivered));
    bank.unbind().await.unwrap();
    cluster.stop().await;
}
