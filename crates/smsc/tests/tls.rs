//! SMPP over TLS: the server's TLS listener beside its plain one, and the client
//! ([`smsc::client::ClientTls`], as the interconnect uses it), with certificates from the PKI
//! `numport pki` makes ([`numport_tls::pki`]).
//!
//! What must hold: a TLS client binds, submits and receives deliver_sm; plain text to the TLS
//! port gets no SMPP answer; the client refuses a certificate from another CA, for another name,
//! or expired; a client that stalls its handshake holds up no one else and is cut off after the
//! bind timeout; `openssl s_client` verifies the server's chain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use numport_tls::TlsFiles;
use numport_tls::pki::{Authority, Leaf};
use smsc::client::{Client, ClientError, ClientTls};
use smsc::rusmpp::CommandStatus;
use smsc::rusmpp::pdus::DeliverSm;
use smsc::rusmpp::types::OctetString;
use smsc::{BindMode, Endpoints, EsmeAccount, EsmeDirectory, SmppConfig, Submitted};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// A CA written to `dir/STEM-ca.pem`, and a server certificate it issued for 127.0.0.1 valid
/// from `not_before` to `not_after`, written beside it.
fn issue(dir: &Path, stem: &str, not_before: SystemTime, not_after: SystemTime) -> (PathBuf, TlsFiles) {
    let ca = Authority::generate(&format!("{stem} CA"), YEAR).unwrap();
    let ca_path = dir.join(format!("{stem}-ca.pem"));
    std::fs::write(&ca_path, &ca.own().cert_pem).unwrap();
    let leaf = Leaf { not_before, not_after, ..Leaf::new("operator", "opb", vec!["127.0.0.1".into()], YEAR) };
    (ca_path, ca.issue(&leaf).unwrap().write(dir, stem).unwrap())
}

struct Server {
    plain: SocketAddr,
    tls: SocketAddr,
    submitted: mpsc::Receiver<Submitted>,
    receivers: smsc::Receivers,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(identity: &TlsFiles, config: SmppConfig) -> Server {
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, tls_addr) = (plain.local_addr().unwrap(), tls.local_addr().unwrap());
    let server_config = numport_tls::server_config(identity, None).unwrap();
    let endpoints = Endpoints { plain: Some(plain), tls: Some((tls, server_config)) };
    let directory = EsmeDirectory::new([EsmeAccount::new("opa", "icpw", 1_000_000).unwrap()]);
    let (tx, submitted) = mpsc::channel(1024);
    let (receivers, stop) = (smsc::Receivers::new(), CancellationToken::new());
    let handler = smsc::ChannelHandler::new(tx);
    tokio::spawn(smsc::serve(endpoints, config, directory, handler, receivers.clone(), stop.clone()));
    Server { plain: plain_addr, tls: tls_addr, submitted, receivers, stop }
}

fn client_tls(ca: &Path, name: &str) -> ClientTls {
    ClientTls {
        config: numport_tls::client_config(ca, None).unwrap(),
        server_name: name.to_owned().try_into().unwrap(),
    }
}

async fn bind(
    addr: SocketAddr,
    tls: Option<&ClientTls>,
) -> Result<(Client, mpsc::Receiver<smsc::client::Incoming>), ClientError> {
    tokio::time::timeout(Duration::from_secs(10), Client::bind_over(addr, tls, "opa", "icpw", BindMode::Transceiver))
        .await
        .expect("bind within 10 s")
}

#[tokio::test]
async fn a_tls_session_binds_submits_and_receives_beside_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let (ca, identity) = issue(dir.path(), "opb", now - Duration::from_secs(3600), now + YEAR);
    let mut server = start(&identity, SmppConfig::default()).await;
    let tls = client_tls(&ca, "127.0.0.1");

    let (client, mut incoming) = bind(server.tls, Some(&tls)).await.unwrap();
    // Many outstanding at once, as the interconnect sends them.
    let destinations: Vec<String> = (0..200).map(|i| format!("47900{i:05}")).collect();
    let submits = destinations.iter().map(|d| client.submit("opa", d, b"over TLS"));
    let ids = futures::future::try_join_all(submits).await.unwrap();
    assert_eq!(ids.len(), 200);
    for _ in 0..200 {
        let m = server.submitted.recv().await.unwrap();
        assert_eq!((m.system_id.as_str(), m.submit.short_message().as_ref()), ("opa", &b"over TLS"[..]));
    }
    // deliver_sm to the TLS session, and its answer back.
    let receivers = server.receivers.clone();
    let deliver = DeliverSm::builder().short_message(OctetString::from_slice(b"receipt").unwrap()).build();
    let sent = tokio::spawn(async move { receivers.deliver("opa", deliver, Duration::from_secs(5)).await });
    let received = tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await.unwrap().unwrap();
    assert_eq!(received.deliver.short_message().as_ref(), b"receipt");
    received.answer(CommandStatus::EsmeRok);
    assert_eq!(sent.await.unwrap(), Ok(CommandStatus::EsmeRok));

    // The plain listener serves at the same time.
    let (plain, _) = bind(server.plain, None).await.unwrap();
    plain.submit("opa", "4790000001", b"plain").await.unwrap();
    assert_eq!(server.submitted.recv().await.unwrap().submit.short_message().as_ref(), b"plain");
    plain.unbind().await.unwrap();
    client.unbind().await.unwrap();
}

#[tokio::test]
async fn plain_text_to_the_tls_port_gets_no_smpp_answer() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let (_, identity) = issue(dir.path(), "opb", now - Duration::from_secs(3600), now + YEAR);
    let server = start(&identity, SmppConfig::default()).await;

    // The project's client, without TLS.
    assert!(bind(server.tls, None).await.is_err());
    // A bind_transmitter by hand: the server answers (at most) a TLS alert, and closes.
    let mut raw = TcpStream::connect(server.tls).await.unwrap();
    let mut bind = vec![0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1];
    bind.extend_from_slice(b"opa\0icpw\0\0\x34\0\0\0");
    let len = bind.len() as u32;
    bind[..4].copy_from_slice(&len.to_be_bytes());
    raw.write_all(&bind).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await.unwrap().ok();
    assert!(answer.is_empty() || answer[0] == 0x15, "not a TLS alert: {answer:02x?}");
    assert!(!server.receivers.is_bound("opa"));
}

#[tokio::test]
async fn the_client_refuses_another_ca_another_name_and_an_expired_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let (ca, identity) = issue(dir.path(), "opb", now - Duration::from_secs(3600), now + YEAR);
    let (other_ca, _) = issue(dir.path(), "other", now - Duration::from_secs(3600), now + YEAR);
    let server = start(&identity, SmppConfig::default()).await;
    let refused = |outcome: Result<_, ClientError>| match outcome {
        Err(ClientError::Tls { reason, .. }) => reason,
        Err(e) => panic!("expected a TLS error, got {e}"),
        Ok(_) => panic!("bound with a certificate that must be refused"),
    };
    let reason = refused(bind(server.tls, Some(&client_tls(&other_ca, "127.0.0.1"))).await);
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    let reason = refused(bind(server.tls, Some(&client_tls(&ca, "smsc.opb.example"))).await);
    assert!(reason.contains("not valid for name"), "{reason}");

    let day = Duration::from_secs(86_400);
    let (expired_ca, expired) = issue(dir.path(), "expired", now - 3 * day, now - day);
    let old = start(&expired, SmppConfig::default()).await;
    let reason = refused(bind(old.tls, Some(&client_tls(&expired_ca, "127.0.0.1"))).await);
    assert!(reason.contains("certificate expired"), "{reason}");
    // The right CA and name still bind.
    bind(server.tls, Some(&client_tls(&ca, "127.0.0.1"))).await.unwrap();
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_no_one_and_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let (ca, identity) = issue(dir.path(), "opb", now - Duration::from_secs(3600), now + YEAR);
    // Stalled handshakes served one after the other would hold a bind up for at least this.
    let timeout = Duration::from_secs(3);
    let config = SmppConfig { bind_timeout: timeout, ..SmppConfig::default() };
    let server = start(&identity, config).await;
    let mut stalled: Vec<TcpStream> = Vec::new();
    for _ in 0..5 {
        stalled.push(TcpStream::connect(server.tls).await.unwrap());
    }
    let started = std::time::Instant::now();
    let (client, _) = bind(server.tls, Some(&client_tls(&ca, "127.0.0.1"))).await.unwrap();
    assert!(started.elapsed() < timeout - Duration::from_millis(500), "a bind waited for stalled handshakes");
    for mut s in stalled {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(timeout * 3, s.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a stalled handshake was not cut off: {read:?}");
    }
    assert!(started.elapsed() >= timeout - Duration::from_millis(500), "cut off before the bind timeout");
    client.unbind().await.unwrap();
}

#[tokio::test]
async fn openssl_verifies_the_servers_chain() {
    let Some(openssl) = testkit::command("openssl", "apt-get install openssl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let (ca, identity) = issue(dir.path(), "opb", now - Duration::from_secs(3600), now + YEAR);
    let server = start(&identity, SmppConfig::default()).await;
    let addr = server.tls.to_string();
    let ca_arg = ca.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(openssl)
            .args(["s_client", "-connect", &addr, "-verify_return_error", "-verify_ip", "127.0.0.1", "-CAfile"])
            .arg(ca_arg)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Verify return code: 0 (ok)"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
