//! F3 against its attacker, on the real binaries: `numport terminal` holding its SIM's
//! SMS-authentication key attaches to a pseudo base station ([`numport::fakebts`]) as to its
//! network. The fake relays the attach and the bank's genuine SMS from the real node, then
//! sends a spoofed SMS in the bank's name with a phishing link, one with a made-up
//! authentication element, a replay of the genuine SMS, and one with a malformed element. The
//! terminal shows and stores each with its verdict and keeps running. Restarted, it still
//! refuses the replay (its replay window is on disk); and after the SMS center is killed with
//! SIGKILL and restarted, the next genuine SMS is authentic (no counter used twice), verified
//! this time with the key read from the terminal's SIM card file.

use std::process::Stdio;
use std::time::Duration;

use numport::cluster::{BANK_PASSWORD, BANK_SYSTEM_ID, Cluster, ClusterSpec, sim_of, subscriber_number};
use numport::fakebts::{Attacks, Network, capture};
use numport_core::Msisdn;
use sms::tpdu::Tpdu;
use sms::udh::{InformationElement, UserDataHeader};

const PHISHING: &str = "MyBank: your account is locked. Confirm your details at https://mybank-secure.example/login";

async fn cluster(dir: &std::path::Path) -> Cluster {
    // SAFETY: set before this test binary's only test starts a process.
    unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) };
    Cluster::start(ClusterSpec::for_tests(dir.join("cluster"), 2)).await.unwrap()
}

/// How the terminal holds its SMS-authentication key.
enum Key<'a> {
    /// Given on the command line, as the cluster's operator issued it.
    Argument,
    /// In the SIM card file at this path.
    Card(&'a str),
}

/// Runs `numport terminal` for `msisdn`'s SIM against `air` until it has shown `count`
/// messages; its JSON lines, or what went wrong.
async fn terminal(
    cluster: &Cluster,
    msisdn: &Msisdn,
    air: std::net::SocketAddr,
    (state, key): (&str, Key<'_>),
    count: usize,
) -> Result<Vec<serde_json::Value>, String> {
    let (imsi, k_sim) = sim_of(msisdn);
    let key = match key {
        Key::Argument => ["--sms-auth-key".to_owned(), cluster.sms_auth_key(msisdn).unwrap().to_string()],
        Key::Card(path) => ["--card".to_owned(), path.to_owned()],
    };
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_numport"))
        .args(["terminal", "--node", &air.to_string(), "--imsi", &imsi, "--k-sim", &hex::encode(&k_sim)])
        .args(key)
        .args(["--state", state, "--json", "--count", &count.to_string()])
        .env("NUMPORT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the terminal finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect())
}

fn verdicts(shown: &[serde_json::Value]) -> Vec<(String, String, String)> {
    shown
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_else(|| panic!("{k} in {m}")).to_owned();
            (s("from"), s("text"), s("verdict"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handset_flags_what_a_fake_base_station_sends() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = cluster(tmp.path()).await;
    let msisdn = subscriber_number("4790", 1);
    let opa_air = cluster.op("opa").proc.air.unwrap();
    let http = cluster.http().unwrap().build().unwrap();
    for _ in 0..500 {
        let r = http.get(format!("{}/v1/lookup/{msisdn}", cluster.op("opa").proc.url())).send().await.unwrap();
        if r.status().is_success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let smsc = cluster.smsc(cluster.op("opa")).unwrap();
    let (bank, _) = smsc.bind(BANK_SYSTEM_ID, BANK_PASSWORD, smsc::BindMode::Transmitter).await.unwrap();
    bank.submit("MyBank", msisdn.as_str(), b"Your code is 123456").await.unwrap();
    bank.unbind().await.unwrap();

    // A TPDU whose authentication element is three octets long.
    let mut malformed = numport::fakebts::deliver("MyBank", "Your code is 000000").unwrap();
    malformed.user_data.header = Some(UserDataHeader {
        elements: vec![InformationElement::Other { iei: sms::auth::IEI_SMS_AUTH, data: vec![1, 2, 3] }],
    });
    let malformed = Tpdu::Deliver(malformed).encode().unwrap();

    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let attacks = Attacks {
        spoof: Some(("MyBank".into(), PHISHING.into())),
        made_up: Some(("MyBank".into(), PHISHING.into())),
        replay_recorded: true,
        replay: vec![malformed],
    };
    let fake_bts = tokio::spawn(async move {
        let (handset, _) = fake.accept().await.unwrap();
        capture(handset, &Network::Relay { node: opa_air, deliveries: 1 }, &attacks).await
    });
    let state = tmp.path().join("handset.state");
    let state = state.to_str().unwrap();
    let shown = terminal(&cluster, &msisdn, fake_addr, (state, Key::Argument), 5).await;
    let outcome = fake_bts.await.unwrap().expect("the fake base station");
    let shown = shown.expect("the terminal");
    assert_eq!((outcome.recorded.len(), outcome.sent.len(), outcome.acknowledged), (1, 4, 4));
    assert_eq!(outcome.msisdn, msisdn.as_str(), "the real network attached the SIM through the fake");
    let code = "Your code is 123456".to_owned();
    let (bank_id, phishing) = ("MyBank".to_owned(), PHISHING.to_owned());
    assert_eq!(
        verdicts(&shown),
        [
            (bank_id.clone(), code.clone(), "authentic".into()),
            (bank_id.clone(), phishing.clone(), "forged".into()),
            (bank_id.clone(), phishing.clone(), "forged".into()),
            (bank_id.clone(), code.clone(), "replayed".into()),
            (bank_id.clone(), "Your code is 000000".into(), "forged".into()),
        ]
    );
    let details: Vec<&str> = shown.iter().map(|m| m["verdict_detail"].as_str().unwrap()).collect();
    assert!(
        details[1].contains("pseudo base station") && details[1].contains("no authentication element"),
        "{details:?}"
    );
    assert!(details[2].contains("MAC"), "{details:?}");
    assert!(details[4].contains("malformed"), "{details:?}");
    // Stored with the messages.
    let inbox = numport::handset_auth::read_inbox(&numport::handset_auth::inbox_path(&std::path::PathBuf::from(
        format!("{state}.smsauth"),
    )))
    .unwrap();
    assert_eq!(inbox.len(), 5);
    assert_eq!(inbox[1]["verdict"], "forged");

    // The terminal restarted, the fake (alone now) plays the recording again: still a replay.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let attacks = Attacks { replay: outcome.recorded.clone(), ..Attacks::default() };
    let number = msisdn.as_str().to_owned();
    let fake_bts = tokio::spawn(async move {
        let (handset, _) = fake.accept().await.unwrap();
        capture(handset, &Network::Alone { msisdn: number }, &attacks).await
    });
    let shown = terminal(&cluster, &msisdn, fake_addr, (state, Key::Argument), 1).await;
    fake_bts.await.unwrap().expect("the fake base station");
    let shown = shown.expect("the terminal");
    assert_eq!(verdicts(&shown), [(bank_id.clone(), code.clone(), "replayed".into())]);

    // The SMS center killed with SIGKILL and restarted: its next SMS is authentic, so no
    // counter it used before is used again.
    let opa = cluster.ops.iter().position(|o| o.name.as_str() == "opa").unwrap();
    cluster.ops[opa].proc.kill_hard().await.unwrap();
    cluster.restart_operator("opa").await.unwrap();
    let smsc = cluster.smsc(cluster.op("opa")).unwrap();
    let (bank, _) = smsc.bind(BANK_SYSTEM_ID, BANK_PASSWORD, smsc::BindMode::Transmitter).await.unwrap();
    bank.submit("MyBank", msisdn.as_str(), b"After the restart").await.unwrap();
    bank.unbind().await.unwrap();
    // This time the terminal has the key where a handset keeps it: in its SIM card's EF.
    let card = tmp.path().join("card.json");
    let (imsi, k_sim) = sim_of(&msisdn);
    let key = cluster.sms_auth_key(&msisdn).unwrap();
    let sim = sim::Card::personalise(&sim::Personalisation {
        imsi,
        k_sim,
        ota_keys: vec![(1, sim::OtaKeys::aes(&[1; 16], &[2; 16]).unwrap())],
        msisdn: Some(msisdn.as_str().to_owned()),
        spn: None,
        smsc: None,
        sms_auth: Some((key.version, key.key.to_vec())),
    })
    .unwrap();
    std::fs::write(&card, sim.to_bytes()).unwrap();
    let air = cluster.op("opa").proc.air.unwrap();
    let shown =
        terminal(&cluster, &msisdn, air, (state, Key::Card(card.to_str().unwrap())), 1).await.expect("the terminal");
    assert_eq!(verdicts(&shown), [(bank_id, "After the restart".into(), "authentic".into())]);
    cluster.stop().await;
}
