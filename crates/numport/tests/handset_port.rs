//! A port started from the handset, on the real binaries: `numport terminal port` attaches to
//! its donor's air interface with the SIM, sends the port-out authorisation by SMS to the
//! donor's service number, hands its proof to the recipient's self-service API and follows the
//! order. With the right PIN the port completes; with a wrong one the order is rejected
//! `proof_mismatch` and the handset says why. A terminal cannot authorise a number other than
//! its own, a malformed text is refused with its cause, and the anonymous HTTP authorisation
//! endpoint is gone. On SQLite, and on PostgreSQL when `NUMPORT_TEST_POSTGRES_URL` is set.

use std::time::Duration;

use numport::cluster::{Cluster, ClusterSpec, OperatorProc, pin_of, sim_of, subscriber_number};
use numport_core::porting::{OrderState, Reason};
use numport_core::proof::{Nonce, PinStretch};
use numport_core::{Clock, Msisdn, SystemClock};
use numport_db::testing::TempDatabase;
use operator::air::{CAUSE_FACILITY_REJECTED, CAUSE_SEMANTICALLY_INCORRECT_MESSAGE, send_authorisation};
use operator::config::DEFAULT_SERVICE_NUMBER;
use operator::{EventKind, OperatorStore, PortOutText};
use sms::air::CAUSE_OK;

/// One cluster at a time: the machine may have two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster(dir: &std::path::Path, clearinghouse_db: Option<String>) -> Cluster {
    static BIN: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before any test of this binary starts a process or reads the
    // environment (every test goes through here first).
    BIN.call_once(|| unsafe { std::env::set_var("NUMPORT_BIN", env!("CARGO_BIN_EXE_numport")) });
    Cluster::start(ClusterSpec { clearinghouse_db, ..ClusterSpec::for_tests(dir.join("cluster"), 3) }).await.unwrap()
}

/// `numport terminal port` for the SIM of `msisdn`, attached to `donor`, porting to
/// `recipient` (over HTTPS, trusting `ca`) with `pin`: whether it succeeded, and its stdout.
async fn handset_port(
    ca: &std::path::Path,
    donor: &OperatorProc,
    recipient: &OperatorProc,
    msisdn: &Msisdn,
    pin: &str,
) -> (bool, String) {
    let (imsi, k_sim) = sim_of(msisdn);
    let fast = PinStretch::FAST;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_numport"))
        .args(["terminal", "port", "--node", &donor.proc.air.unwrap().to_string(), "--imsi", &imsi])
        .args([
            "--k-sim",
            &hex::encode(&k_sim),
            "--to",
            recipient.name.as_str(),
            "--recipient-url",
            &recipient.proc.url(),
        ])
        .arg("--ca")
        .arg(ca)
        .args([
            "--pin",
            pin,
            "--pin-memory-kib",
            &fast.memory_kib.to_string(),
            "--pin-passes",
            &fast.passes.to_string(),
        ])
        .env("NUMPORT_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("the handset finishes").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

/// The SIM of `msisdn` attached to `donor` sends `text` to the service number; the cause.
async fn send_text(donor: &OperatorProc, msisdn: &Msisdn, text: &PortOutText) -> u8 {
    let (imsi, k_sim) = sim_of(msisdn);
    let mut s = tokio::net::TcpStream::connect(donor.proc.air.unwrap()).await.unwrap();
    let attached = operator::air::attach_terminal(&mut s, &imsi, &k_sim).await.unwrap();
    assert_eq!(attached.as_deref(), Ok(msisdn.as_str()));
    send_authorisation(&mut s, DEFAULT_SERVICE_NUMBER, text, 1).await.unwrap()
}

async fn scenario(clearinghouse_db: Option<String>) {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let cluster = cluster(tmp.path(), clearinghouse_db).await;
    let (a, b) = (cluster.op("opa"), cluster.op("opb"));
    let (ours, wrong_pin, other) =
        (subscriber_number("4790", 0), subscriber_number("4790", 1), subscriber_number("4790", 2));

    // The right PIN: the port completes, the donor took the authorisation from the air.
    let (ok, out) = handset_port(&cluster.pki.ca, a, b, &ours, &pin_of(&ours)).await;
    assert!(ok, "{out}");
    assert!(out.contains("to the service number 1999: accepted") && out.contains("completed"), "{out}");
    let status = b.ch_client.number(&ours).await.unwrap();
    assert_eq!(status.serving_operator.as_str(), "opb");
    let donor_store = OperatorStore::connect(&a.db_url).await.unwrap();
    let events = donor_store.port_events(&ours).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == EventKind::Deposit && e.detail["channel"] == "service_number"),
        "{events:?}"
    );

    // A wrong PIN: the donor's deposit and the handset's proof differ.
    let pin = format!("{:06}", (pin_of(&wrong_pin).parse::<u32>().unwrap() + 1) % 1_000_000);
    let (ok, out) = handset_port(&cluster.pki.ca, a, b, &wrong_pin, &pin).await;
    assert!(!ok, "{out}");
    assert!(out.contains("verification failed: the PIN is wrong"), "{out}");
    let orders = b.ch_client.orders().await.unwrap().orders;
    let order = orders.iter().find(|o| o.msisdn == wrong_pin).expect("an order for the number");
    assert_eq!((order.state, order.reason), (OrderState::Rejected, Some(Reason::ProofMismatch)));
    assert_eq!(a.ch_client.number(&wrong_pin).await.unwrap().serving_operator.as_str(), "opa");

    // A terminal authorises its own number only; a malformed text is refused with its cause.
    let expiry = SystemClock.now_ms() + 600_000;
    let text = PortOutText { recipient: b.name.clone(), nonce: Nonce(rand::random()), expiry, msisdn: Some(ours) };
    assert_eq!(send_text(a, &other, &text).await, CAUSE_FACILITY_REJECTED);
    let own = PortOutText { msisdn: Some(other.clone()), ..text.clone() };
    let malformed = PortOutText { expiry: 0, ..own.clone() };
    assert_eq!(send_text(a, &other, &malformed).await, CAUSE_SEMANTICALLY_INCORRECT_MESSAGE);
    assert!(donor_store.port_events(&other).await.unwrap().is_empty(), "nothing deposited for {other}");
    assert_eq!(send_text(a, &other, &own).await, CAUSE_OK);
    donor_store.close().await;

    // No anonymous HTTP channel to the donor.
    let body = serde_json::json!({"msisdn": other, "nonce": own.nonce.to_hex(), "recipient": "opb", "expiry": expiry});
    let r = cluster
        .http()
        .unwrap()
        .build()
        .unwrap()
        .post(format!("{}/v1/self-service/port-out-authorisations", a.proc.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_from_the_handset_on_sqlite() {
    scenario(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_from_the_handset_on_postgres() {
    let Some(db) = TempDatabase::create().await else { return };
    scenario(Some(db.url().to_owned())).await;
    db.remove().await.unwrap();
}
