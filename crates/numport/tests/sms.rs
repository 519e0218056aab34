//! SMS end to end on the real binaries. A bank binds to opa's SMS center over SMPP and
//! submits; `numport terminal`, attached with the subscriber's SIM, shows the message, for an
//! opa subscriber (local delivery) and for an opb subscriber (over the interconnect).
//! Terminals also send (SMS-SUBMIT) and get status reports, long messages arrive whole, and a
//! terminal with a state file does not show a message the node delivers again. Python's
//! smpplib, over TLS, sends one submit_multi in the GSM alphabet to both operators' handsets.

use std::process::Stdio;
use std::time::Duration;

use numport::cluster::{BANK_PASSWORD, BANK_SYSTEM_ID, Cluster, ClusterSpec, sim_of, subscriber_number};
use numport_core::Msisdn;

/// One cluster at a time: the machine may have two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A cluster in `dir`, the binaries' own.
async fn cluster(dir: &std::path::Path) -> Cluster {
    static BIN: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before any test of this binary starts a process or reads the
    // environment (every test goes through here first).
    BIN.call_once(|| unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) });
    Cluster::start(ClusterSpec::for_tests(dir.join("cluster"), 2)).await.unwrap()
}

/// Waits until `op`'s replica routes `msisdn`.
async fn routable(cluster: &Cluster, op: &numport::cluster::OperatorProc, msisdn: &Msisdn) {
    let http = cluster.http().unwrap().build().unwrap();
    for _ in 0..500 {
        let r = http.get(format!("{}/v1/lookup/{msisdn}", op.proc.url())).send().await.unwrap();
        if r.status().is_success() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} does not route {msisdn}", op.name);
}

/// `numport terminal` for the SIM of `msisdn` at `op`, with `args`, stdout captured.
fn terminal_cmd(op: &numport::cluster::OperatorProc, msisdn: &Msisdn, args: &[&str]) -> tokio::process::Command {
    let (imsi, k_sim) = sim_of(msisdn);
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_numport"));
    cmd.args(["terminal", "--node", &op.proc.air.unwrap().to_string(), "--imsi", &imsi])
        .args(["--k-sim", &hex::encode(&k_sim)])
        .args(args)
        .env("NUMPORT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a terminal to its end (at most 30 s); its stdout lines. It must succeed.
async fn run_terminal(op: &numport::cluster::OperatorProc, msisdn: &Msisdn, args: &[&str]) -> Vec<String> {
    finish(terminal_cmd(op, msisdn, args).spawn().unwrap()).await
}

async fn finish(child: tokio::process::Child) -> Vec<String> {
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the terminal did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(str::to_owned).collect()
}

fn json(lines: &[String]) -> Vec<serde_json::Value> {
    lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

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
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let cluster = cluster(tmp.path()).await;
    let opa = cluster.op("opa");
    let msisdn = subscriber_number("4790", 1);
    let (imsi, k_sim) = sim_of(&msisdn);

    // The replica must know opa's ranges before it can route.
    let http = cluster.http().unwrap().build().unwrap();
    for _ in 0..200 {
        let r = http.get(format!("{}/v1/lookup/{msisdn}", opa.proc.url())).send().await.unwrap();
        if r.status().is_success() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The SMS center takes SMPP over TLS only: a plain bind to its port is refused.
    let smsc = cluster.smsc(opa).unwrap();
    assert_eq!(opa.proc.smpp, None, "no plain SMPP in a cluster with TLS");
    assert!(smsc::client::Client::bind_transmitter(smsc.addr, BANK_SYSTEM_ID, BANK_PASSWORD).await.is_err());
    let (bank, _) = smsc.bind(BANK_SYSTEM_ID, BANK_PASSWORD, smsc::BindMode::Transmitter).await.unwrap();
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
    let (bank, mut receipts) = smsc.bind(BANK_SYSTEM_ID, BANK_PASSWORD, smsc::BindMode::Transceiver).await.unwrap();
    // GSM 03.38 text (data_coding 0, one septet an octet): `@£$_{}[]~€ éüÑÅ`.
    let gsm = b"\x00\x01\x02\x11\x1b\x28\x1b\x29\x1b\x3c\x1b\x3e\x1b\x3d\x1b\x65 \x05\x7e\x5d\x0e";
    let id = bank.submit("MyBank", theirs.as_str(), &[b"Across the interconnect: ", &gsm[..]].concat()).await.unwrap();
    let (imsi, k_sim) = sim_of(&theirs);
    let out = terminal(cluster.op("opb").proc.air.unwrap(), &imsi, &hex::encode(&k_sim)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (shown["from"].as_str(), shown["text"].as_str()),
        (Some("MyBank"), Some("Across the interconnect: @£$_{}[]~€ éüÑÅ"))
    );
    // opb's receipt comes back over the interconnect; opa relays it under its own message id.
    let receipt = tokio::time::timeout(std::time::Duration::from_secs(10), receipts.recv()).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(receipt.deliver.short_message().as_ref()).into_owned();
    assert_eq!(receipt.deliver.source_addr.as_str(), theirs.as_str());
    receipt.answer(smsc::rusmpp::CommandStatus::EsmeRok);
    let parsed = smsc::receipt::Receipt::parse(&text).unwrap();
    assert_eq!((parsed.message_id.as_str(), parsed.state), (id.as_str(), smsc::receipt::ReceiptState::Delivered));

    // A long one, in message_payload: across the interconnect whole, then to the handset as
    // concatenated SMS, which `numport terminal` shows as one message.
    let long = "Your statement for November is ready; sign in to see it. ".repeat(6);
    let submit = smsc::rusmpp::pdus::SubmitSm::builder()
        .source_addr_ton(smsc::rusmpp::values::Ton::Alphanumeric)
        .source_addr("MyBank".parse().unwrap())
        .dest_addr_ton(smsc::rusmpp::values::Ton::International)
        .destination_addr(theirs.as_str().parse().unwrap())
        .esm_class(smsc::rusmpp::values::EsmClass::from(0))
        .push_tlv(smsc::rusmpp::tlvs::MessageSubmissionRequestTlvValue::MessagePayload(
            smsc::rusmpp::values::MessagePayload::new(smsc::rusmpp::types::AnyOctetString::from_vec(
                sms::gsm7::encode(&long).unwrap(),
            )),
        ))
        .build();
    bank.submit_sm(submit).await.unwrap();
    let out = terminal(cluster.op("opb").proc.air.unwrap(), &imsi, &hex::encode(&k_sim)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let shown: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(shown["text"].as_str(), Some(long.as_str()));
    bank.unbind().await.unwrap();

    // Python's smpplib over TLS, one submit_multi to both numbers: GSM text with the extension
    // table and accented letters reaches each handset intact, here and across the interconnect.
    if testkit::python_module("smpplib", "pip install smpplib") {
        let (host, port) = (smsc.addr.ip().to_string(), smsc.addr.port().to_string());
        let ca = cluster.pki.ca.to_str().unwrap();
        let args = [&host, &port, BANK_SYSTEM_ID, BANK_PASSWORD, msisdn.as_str(), theirs.as_str(), "-", ca];
        let script = include_str!("../../operator/tests/smpplib_operations.py");
        let out = tokio::process::Command::new("python3").args(["-c", script]).args(args).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let multi = stdout.lines().find_map(|l| l.strip_prefix("MULTI ")).unwrap_or_else(|| panic!("{stdout}"));
        // Both numbers accepted; the script's bad number and distribution list refused.
        let fields: Vec<&str> = multi.split(' ').collect();
        assert_eq!((fields[0], &fields[2..]), ("0", &["4799000000x=11", "staff=52"][..]), "{multi}");
        for (op, number) in [(opa, &msisdn), (cluster.op("opb"), &theirs)] {
            let (imsi, k_sim) = sim_of(number);
            let out = terminal(op.proc.air.unwrap(), &imsi, &hex::encode(&k_sim)).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            let shown: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!((shown["from"].as_str(), shown["text"].as_str()), (Some("MyBank"), Some("@£$_{}[]~€ éüÑÅ")));
        }
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_sends_across_the_interconnect_and_gets_status_reports() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let cluster = cluster(tmp.path()).await;
    let (opa, opb) = (cluster.op("opa"), cluster.op("opb"));
    // Alice is opa's subscriber, Bob opb's.
    let (alice, bob) = (subscriber_number("4790", 0), subscriber_number("4791", 0));
    routable(&cluster, opb, &alice).await;
    routable(&cluster, opa, &bob).await;

    // Alice's terminal waits for three messages.
    let alice_terminal = terminal_cmd(opa, &alice, &["--count", "3", "--json"]).spawn().unwrap();

    // Bob sends a short one (text output): opb routes it to opa over the interconnect; once
    // Alice's terminal has it, opa's receipt settles it at opb, which sends Bob's terminal
    // the SMS-STATUS-REPORT.
    let short = "Hei Alice! Kommer du på kaffe?";
    let lines = run_terminal(opb, &bob, &["--send", alice.as_str(), "--text", short, "--count", "1"]).await;
    assert_eq!(lines[0], format!("attached as {bob}"));
    let accepted = lines[1].strip_prefix(&format!("sent part 1/1 to {alice} (MR ")).expect(&lines[1]);
    let mr = accepted.strip_suffix("): accepted").expect(accepted);
    assert!(lines[2].contains(&format!("status report for MR {mr}: delivered (to {alice})")), "{lines:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");

    // A long text (300 characters: two parts) and a long UCS-2 one: each part is acknowledged
    // and reported on under its own TP-MR.
    let long: String = (0..300).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let ucs2 = "Hilsen fra Tromsø 🌌🦌 — nordlyset danser over fjorden i kveld, kom ut og se! ❄️ Blåbærsyltetøy!";
    for text in [long.as_str(), ucs2] {
        let parts = sms::concat::segment(text, sms::concat::Reference::Eight(0)).unwrap().parts.len();
        assert!(parts > 1, "{text} is long");
        let out = json(
            &run_terminal(
                opb,
                &bob,
                &["--send", alice.as_str(), "--text", text, "--count", &parts.to_string(), "--json"],
            )
            .await,
        );
        let mut submitted: Vec<u64> = out.iter().filter_map(|v| v["submitted"]["mr"].as_u64()).collect();
        let mut reported: Vec<u64> = out.iter().filter_map(|v| v["status_report"]["mr"].as_u64()).collect();
        assert_eq!(submitted.len(), parts, "{out:?}");
        assert!(out.iter().filter(|v| v.get("submitted").is_some()).all(|v| v["submitted"]["cause"] == 0));
        assert!(
            out.iter()
                .filter(|v| v.get("status_report").is_some())
                .all(|v| v["status_report"]["status"] == "delivered")
        );
        submitted.sort();
        reported.sort();
        assert_eq!(submitted, reported, "a status report for each part: {out:?}");
    }

    // Alice saw three messages from Bob, the long ones each once and whole.
    let shown = json(&finish(alice_terminal).await);
    let texts: Vec<&str> = shown.iter().map(|v| v["text"].as_str().unwrap()).collect();
    assert_eq!(texts, [short, long.as_str(), ucs2]);
    assert!(shown.iter().all(|v| v["from"] == bob.as_str()), "{shown:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_with_a_state_file_does_not_show_a_repeat_after_a_restart() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let cluster = cluster(tmp.path()).await;
    let (opa, opb) = (cluster.op("opa"), cluster.op("opb"));
    let (alice, bob) = (subscriber_number("4790", 0), subscriber_number("4791", 0));
    routable(&cluster, opa, &alice).await;
    let state = tmp.path().join("alice.state");
    let state = state.to_str().unwrap();

    // Bob's message reaches Alice's terminal, which records its reference in its state file.
    let send =
        async |text: &str| run_terminal(opb, &bob, &["--send", alice.as_str(), "--text", text, "--count", "0"]).await;
    routable(&cluster, opb, &alice).await;
    send("First").await;
    let shown = json(&run_terminal(opa, &alice, &["--count", "1", "--json", "--state", state]).await);
    assert_eq!(shown[0]["text"], "First");

    // The node delivers it again, as after a crash that lost the record of its delivery: the
    // message is queued again in opa's database.
    let file = numport_db::sqlite_file(&opa.db_url).expect("the cluster's nodes keep SQLite files");
    let db = rusqlite::Connection::open(file).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let first: i64 = db
        .query_row("SELECT MIN(id) FROM sms_messages WHERE destination = ?1", [alice.as_str()], |r| r.get(0))
        .unwrap();
    let requeue = || async {
        let state = || {
            db.query_row("SELECT state FROM sms_messages WHERE id = ?1", [first], |r| r.get::<_, String>(0)).unwrap()
        };
        // The delivery is recorded first (so that nothing overwrites the reset).
        let mut tries = 0;
        while state() != "delivered" {
            tries += 1;
            assert!(tries < 500, "message {first} is not delivered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        db.execute("UPDATE sms_messages SET state = 'queued', done_at = NULL WHERE id = ?1", [first]).unwrap();
    };
    requeue().await;
    send("Second").await;

    // Restarted with the same state file, the terminal acknowledges the repeat without
    // showing it, then shows the new message.
    let shown = json(&run_terminal(opa, &alice, &["--count", "1", "--json", "--state", state]).await);
    assert_eq!(shown.iter().map(|v| v["text"].as_str().unwrap()).collect::<Vec<_>>(), ["Second"]);

    // The repeat did reach the terminal (the node records it delivered again, which the reset
    // waits for); without the state file it is shown.
    requeue().await;
    let shown = json(&run_terminal(opa, &alice, &["--count", "1", "--json"]).await);
    assert_eq!(shown[0]["text"], "First");
    drop(db);
    cluster.stop().await;
}
