//! Handshakes over real loopback sockets between the configurations this crate builds.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::pki::{Authority, Leaf, PkiPlan, ROLE_OPERATOR};

fn plan() -> PkiPlan {
    PkiPlan {
        hosts: vec!["ch.example".into()],
        operators: vec!["opa".into(), "opb".into()],
        replicas: vec!["npdb1".into()],
        validity_days: 30,
    }
}

/// What each side saw of a handshake: the server the client's identity, the client success.
struct Outcome {
    server: Result<Option<PeerIdentity>, String>,
    client: Result<(), String>,
}

async fn handshake(server: Arc<ServerConfig>, client: Arc<ClientConfig>, host: &str) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        tls.write_all(&byte).await.map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().map(|c| c[0].clone());
        Ok(peer.map(|c| peer_identity(&c).unwrap()))
    });
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let client = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        Ok(())
    }
    .await;
    Outcome { server: server.await.unwrap(), client }
}

#[tokio::test]
async fn server_and_client_from_one_pki_agree() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path(), &plan()).unwrap();
    let server = server_config(&pki.clearinghouse, None).unwrap();
    for host in ["localhost", "127.0.0.1", "ch.example"] {
        let client = client_config(&pki.ca, None).unwrap();
        let outcome = handshake(server.clone(), client, host).await;
        assert_eq!(outcome.client, Ok(()), "{host}");
        assert_eq!(outcome.server, Ok(None), "an anonymous client");
    }
    let client = client_config(&pki.ca, None).unwrap();
    let outcome = handshake(server, client, "elsewhere.example").await;
    let err = outcome.client.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn mutual_tls_names_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path(), &plan()).unwrap();
    let server = server_config(&pki.clearinghouse, Some(&pki.ca)).unwrap();
    let client = client_config(&pki.ca, pki.operator("opb")).unwrap();
    let outcome = handshake(server.clone(), client, "localhost").await;
    assert_eq!(outcome.client, Ok(()));
    let identity = outcome.server.unwrap().unwrap();
    assert_eq!(identity.operator(), Some("opb"));
    assert_eq!(identity.role.as_deref(), Some(ROLE_OPERATOR));

    let anonymous = client_config(&pki.ca, None).unwrap();
    let outcome = handshake(server, anonymous, "localhost").await;
    assert!(outcome.server.is_err(), "a client without a certificate");
}

/// Two CAs of the same name fail on the signature, of different names on the issuer.
fn refused_issuer(err: &str) -> bool {
    err.contains("invalid peer certificate") && (err.contains("BadSignature") || err.contains("UnknownIssuer"))
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path(), &plan()).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = pki::generate(other_dir.path(), &plan()).unwrap();

    let server = server_config(&other.clearinghouse, None).unwrap();
    let client = client_config(&pki.ca, None).unwrap();
    let outcome = handshake(server, client, "localhost").await;
    let err = outcome.client.unwrap_err();
    assert!(refused_issuer(&err), "{err}");

    let server = server_config(&pki.clearinghouse, Some(&pki.ca)).unwrap();
    let client = client_config(&pki.ca, other.operator("opa")).unwrap();
    let outcome = handshake(server, client, "localhost").await;
    let err = outcome.server.unwrap_err();
    assert!(refused_issuer(&err), "{err}");
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::generate("test CA", Duration::from_secs(86_400)).unwrap();
    let ca_files = ca.own().write(dir.path(), "ca").unwrap();
    let mut leaf = Leaf::new(ROLE_OPERATOR, "opa", vec!["localhost".into()], Duration::ZERO);
    leaf.not_before = SystemTime::now() - Duration::from_secs(7200);
    leaf.not_after = SystemTime::now() - Duration::from_secs(3600);
    let expired = ca.issue(&leaf).unwrap().write(dir.path(), "opa").unwrap();

    let server = server_config(&expired, None).unwrap();
    let client = client_config(&ca_files.cert, None).unwrap();
    let outcome = handshake(server, client, "localhost").await;
    let err = outcome.client.unwrap_err();
    assert!(err.contains("certificate expired"), "{err}");

    let fresh = ca
        .issue(&Leaf::new(ROLE_OPERATOR, "opb", vec!["localhost".into()], Duration::from_secs(3600)))
        .unwrap()
        .write(dir.path(), "opb")
        .unwrap();
    let server = server_config(&fresh, Some(&ca_files.cert)).unwrap();
    let client = client_config(&ca_files.cert, Some(&expired)).unwrap();
    let outcome = handshake(server, client, "localhost").await;
    let err = outcome.server.unwrap_err();
    assert!(err.contains("certificate expired"), "{err}");
}

#[test]
fn the_pki_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    pki::generate(dir.path(), &plan()).unwrap();
    let ca_before = std::fs::read(dir.path().join("ca.key")).unwrap();
    let err = pki::generate(dir.path(), &plan()).unwrap_err();
    assert!(matches!(err, TlsError::Exists { .. }), "{err}");
    assert_eq!(std::fs::read(dir.path().join("ca.key")).unwrap(), ca_before);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("operator-opa.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn unusable_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path(), &plan()).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(load_certs(&empty), Err(TlsError::NoCertificate { path }) if path == empty));
    let cert = &pki.clearinghouse.cert;
    assert!(matches!(load_key(cert), Err(TlsError::NoKey { path }) if &path == cert));
    let missing = Path::new("/nonexistent/ca.pem");
    let err = client_config(missing, None).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    let mismatched = TlsFiles { cert: pki.clearinghouse.cert.clone(), key: pki.operator("opa").unwrap().key.clone() };
    assert!(matches!(server_config(&mismatched, None), Err(TlsError::Identity { .. })));
}

#[test]
fn names_that_would_leave_the_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan();
    plan.operators.push("../x".into());
    assert!(matches!(pki::generate(dir.path(), &plan), Err(TlsError::BadName { .. })));
    assert!(!dir.path().join("ca.pem").exists(), "nothing written");
}

#[test]
fn the_identity_reader_refuses_every_truncation_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path(), &plan()).unwrap();
    let cert = load_certs(&pki.operator("opa").unwrap().cert).unwrap().remove(0);
    let identity = peer_identity(&cert).unwrap();
    assert_eq!(identity.common_name.as_deref(), Some("opa"));
    assert_eq!(identity.operator(), Some("opa"));
    let bytes = cert.as_ref();
    for len in 0..bytes.len() {
        let truncated = CertificateDer::from(bytes[..len].to_vec());
        assert!(peer_identity(&truncated).is_err(), "cut at {len}");
    }
    for at in 0..bytes.len() {
        for byte in [0x00, 0x7f, 0x84, 0xff] {
            let mut corrupt = bytes.to_vec();
            corrupt[at] = byte;
            // Whatever a corrupt byte does to the structure, the reader answers.
            let _ = peer_identity(&CertificateDer::from(corrupt));
        }
    }
    let clearinghouse = load_certs(&pki.clearinghouse.cert).unwrap().remove(0);
    assert_eq!(peer_identity(&clearinghouse).unwrap().operator(), None);
    let mut flipped = bytes.to_vec();
    flipped[1] = 0x85;
    assert!(peer_identity(&CertificateDer::from(flipped)).is_err());
}
