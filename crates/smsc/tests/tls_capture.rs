//! SMPP over TLS as Wireshark reads it: with `SSLKEYLOGFILE` set, the server and the client
//! write their TLS secrets to that file; a session over TLS (bind, submits, enquire_link, an
//! unbind from the client, and one from the server at its idle timeout) is captured on lo with
//! dumpcap and decrypted by tshark with the key log, which must find every PDU, and no
//! malformed packet, expert warning or reset. Needs tshark and its dumpcap, allowed to capture
//! on lo (see [`testkit`] for what a missing one does).
//!
//! The only test of its binary: it sets the environment of the process before anything runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use numport_tls::pki::{Authority, Leaf};
use smsc::client::{Client, ClientTls};
use smsc::{BindMode, Endpoints, EsmeAccount, EsmeDirectory, SmppConfig};
use testkit::capture::Capture;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// A CA and a server certificate for 127.0.0.1 it issued, written to `dir`.
fn issue(dir: &Path) -> (PathBuf, numport_tls::TlsFiles) {
    let ca = Authority::generate("opb CA", YEAR).unwrap();
    let ca_path = dir.join("opb-ca.pem");
    std::fs::write(&ca_path, &ca.own().cert_pem).unwrap();
    let leaf = Leaf::new("operator", "opb", vec!["127.0.0.1".into()], YEAR);
    (ca_path, ca.issue(&leaf).unwrap().write(dir, "opb").unwrap())
}

/// How tshark reads the capture: TCP port `port` as TLS, decrypted with `key_log`, and its
/// content as SMPP. tshark offers no "decode as" SMPP inside TLS; an entry of its RSA key list
/// does name the protocol of a port, and needs an RSA key that loads: `rsa_key`, which
/// decrypts nothing (the session is TLS 1.3, decrypted with the key log).
struct Decoding<'a> {
    tshark: &'a Path,
    pcap: &'a Path,
    key_log: &'a Path,
    rsa_key: &'a Path,
    port: u16,
}

impl Decoding<'_> {
    /// The `fields` of the packets that match `filter`.
    fn fields(&self, filter: &str, fields: &[&str]) -> Vec<String> {
        let port = self.port;
        let association = format!("uat:ssl_keys:\"127.0.0.1\",\"{port}\",\"smpp\",\"{}\",\"\"", self.rsa_key.display());
        let mut command = std::process::Command::new(self.tshark);
        command
            .arg("-r")
            .arg(self.pcap)
            .args(["-o", &format!("tls.keylog_file:{}", self.key_log.display())])
            .args(["-d", &format!("tcp.port=={port},tls"), "-o", &association])
            .args(["-Y", filter, "-T", "fields"]);
        for f in fields {
            command.args(["-e", f]);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "tshark: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
    }
}

#[tokio::test]
async fn tshark_decrypts_an_smpp_session_over_tls_with_the_key_log() {
    let Some(tshark) = testkit::command("tshark", "apt-get install tshark") else { return };
    let Some(openssl) = testkit::command("openssl", "apt-get install openssl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let key_log = dir.path().join("keys.log");
    // SAFETY: this binary's only test sets it before it starts a thread or reads the
    // environment anywhere else.
    unsafe { std::env::set_var("SSLKEYLOGFILE", &key_log) };
    let (ca, identity) = issue(dir.path());
    let rsa_key = dir.path().join("association-rsa.key");
    let made = std::process::Command::new(openssl)
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out"])
        .arg(&rsa_key)
        .output()
        .unwrap();
    assert!(made.status.success(), "openssl genpkey: {}", String::from_utf8_lossy(&made.stderr));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let pcap = dir.path().join("smpp-tls.pcapng");
    let Some(capture) = Capture::start(&format!("tcp port {}", addr.port()), &pcap).await else { return };

    let server_config = numport_tls::server_config(&identity, None).unwrap();
    let endpoints = Endpoints { plain: None, tls: Some((listener, server_config)) };
    let directory = EsmeDirectory::new([EsmeAccount::new("opa", "icpw", 1000).unwrap()]);
    let (tx, mut submitted) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let config = SmppConfig { idle_timeout: Duration::from_millis(500), ..SmppConfig::default() };
    let handler = smsc::ChannelHandler::new(tx);
    tokio::spawn(smsc::serve(endpoints, config, directory, handler, smsc::Receivers::new(), stop.clone()));
    let tls = ClientTls {
        config: numport_tls::client_config(&ca, None).unwrap(),
        server_name: "127.0.0.1".to_owned().try_into().unwrap(),
    };

    // The client unbinds.
    let (client, _) = Client::bind_over(addr, Some(&tls), "opa", "icpw", BindMode::Transceiver).await.unwrap();
    client.submit("opa", "4790000001", b"over TLS").await.unwrap();
    client.call(smsc::rusmpp::Pdu::EnquireLink).await.unwrap();
    client.unbind().await.unwrap();
    submitted.recv().await.unwrap();
    // The server unbinds at its idle timeout; the client answers and the server closes.
    let (idle, mut incoming) = Client::bind_over(addr, Some(&tls), "opa", "icpw", BindMode::Transceiver).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), incoming.recv()).await;
    assert!(matches!(ended, Ok(None)), "the server did not unbind the idle session");
    drop(idle);
    capture.stop().await;
    stop.cancel();

    let keys = std::fs::read_to_string(&key_log).unwrap();
    assert!(keys.contains("CLIENT_TRAFFIC_SECRET_0"), "no TLS 1.3 secrets in the key log: {keys}");
    let decoding = Decoding { tshark: &tshark, pcap: &pcap, key_log: &key_log, rsa_key: &rsa_key, port: addr.port() };
    let pdus: Vec<String> = decoding
        .fields("smpp", &["smpp.command_id"])
        .iter()
        .flat_map(|l| l.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    // bind_transceiver(_resp) twice, submit_sm(_resp), enquire_link(_resp), unbind(_resp) twice.
    let count = |id: &str| pdus.iter().filter(|p| *p == id).count();
    for (id, n) in [
        ("0x00000009", 2),
        ("0x80000009", 2),
        ("0x00000004", 1),
        ("0x80000004", 1),
        ("0x00000015", 1),
        ("0x80000015", 1),
        ("0x00000006", 2),
        ("0x80000006", 2),
    ] {
        assert_eq!(count(id), n, "tshark decrypted {n} of {id}: {pdus:?}");
    }
    let none = Vec::<String>::new();
    assert_eq!(decoding.fields("_ws.malformed", &["frame.number"]), none, "malformed packets");
    // Severity warning (0x600000) and error: among them a reset, and any SMPP complaint.
    let warnings = decoding.fields("_ws.expert.severity >= 0x600000", &["frame.number", "_ws.expert.message"]);
    assert_eq!(warnings, none, "expert warnings or errors");
}
