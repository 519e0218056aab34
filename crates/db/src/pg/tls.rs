//! TLS for PostgreSQL sessions, as libpq reads the URL: `sslmode` and `sslrootcert`.
//!
//! A session asks with an `SSLRequest`; the server answers one byte, `S` (then the TLS
//! handshake) or `N` (plain text, which only `prefer` accepts). The byte is read alone, so
//! nothing the server (or a machine in the middle) sent before the handshake can be taken
//! for a message inside it. Sessions over a Unix socket are never encrypted (as with libpq).
//!
//! | `sslmode`     | encrypted                  | certificate checked                     |
//! |---------------|----------------------------|-----------------------------------------|
//! | `disable`     | never                      | —                                       |
//! | `prefer`      | if the server offers it    | no                                      |
//! | `require`     | always                     | no; with `sslrootcert`, as `verify-ca`  |
//! | `verify-ca`   | always                     | chain to `sslrootcert`                  |
//! | `verify-full` | always                     | chain to `sslrootcert`, and host name   |
//!
//! `prefer` (libpq's default) and `require` without a root certificate encrypt without knowing
//! who answers: that defeats a listener on the wire, not a machine in the middle. The handshake
//! signature is still checked against the certificate presented, so the session is bound to
//! that certificate's key. `sslrootcert` names a PEM file; `verify-ca` and `verify-full` need
//! one (there is no fallback to `~/.postgresql/root.crt`).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::Io;

/// How a session uses TLS (libpq's `sslmode`; `allow` is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl std::str::FromStr for SslMode {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<SslMode, TlsError> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::Mode(other.to_owned())),
        })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// Why a session could not be set up as its `sslmode` asks.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode={0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
    Mode(String),
    #[error("URL parameter {0} is not supported (client certificates and CRLs are not read)")]
    Parameter(String),
    #[error("sslmode={0} checks the server's certificate: the URL needs sslrootcert=PATH (a PEM file)")]
    NoRootCertificate(SslMode),
    #[error("sslrootcert: {0}")]
    RootCertificate(#[from] numport_tls::TlsError),
    #[error("{server} refused TLS (it answered the SSLRequest with N), and sslmode={mode} requires it")]
    Refused { server: String, mode: SslMode },
    #[error("{server} answered the SSLRequest with {answer:#04x}, neither S nor N")]
    Answer { server: String, answer: u8 },
    #[error("{server} presented a certificate that is refused: {reason}")]
    Certificate { server: String, reason: String },
    #[error("TLS handshake with {server}: {reason}")]
    Handshake { server: String, reason: String },
    #[error("TLS set-up: {0}")]
    Setup(String),
}

/// What a pool's sessions do about TLS, the root certificate read once for all of them.
#[derive(Clone)]
pub(super) struct Tls {
    mode: SslMode,
    /// `None` for `disable`.
    config: Option<Arc<ClientConfig>>,
}

impl Tls {
    pub(super) fn new(mode: SslMode, root_cert: Option<&Path>) -> Result<Tls, TlsError> {
        let config = match (mode, root_cert) {
            (SslMode::Disable, _) => return Ok(Tls { mode, config: None }),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => return Err(TlsError::NoRootCertificate(mode)),
            (SslMode::VerifyFull, Some(root)) => numport_tls::client_config(root, None)?,
            (SslMode::Prefer, _) | (SslMode::Require, None) => with_check(ChainCheck::new(None))?,
            // `require` with a root certificate is `verify-ca`, as with libpq.
            (SslMode::Require | SslMode::VerifyCa, Some(root)) => {
                with_check(ChainCheck::new(Some(Arc::new(numport_tls::load_roots(root)?))))?
            }
        };
        Ok(Tls { mode, config: Some(config) })
    }

    /// The stream a session speaks on over `tcp` to `host:port`: TLS, or plain text when the
    /// mode allows it.
    pub(super) async fn negotiate(&self, mut tcp: TcpStream, host: &str, port: u16) -> crate::Result<Box<dyn Io>> {
        let Some(config) = &self.config else { return Ok(Box::new(tcp)) };
        let server = format!("{host}:{port}");
        let io_error = |e: std::io::Error| TlsError::Handshake { server: server.clone(), reason: e.to_string() };
        let mut request = bytes::BytesMut::new();
        postgres_protocol::message::frontend::ssl_request(&mut request);
        tcp.write_all(&request).await.map_err(io_error)?;
        // One byte exactly: what follows it belongs to the handshake.
        let answer = tcp.read_u8().await.map_err(io_error)?;
        match answer {
            b'S' => {}
            b'N' if self.mode == SslMode::Prefer => return Ok(Box::new(tcp)),
            b'N' => return Err(TlsError::Refused { server, mode: self.mode }.into()),
            answer => return Err(TlsError::Answer { server, answer }.into()),
        }
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| TlsError::Handshake { server: server.clone(), reason: format!("host name: {e}") })?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        match connector.connect(name, tcp).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => Err(handshake_error(server, e).into()),
        }
    }
}

/// A refused certificate told apart from other handshake failures.
fn handshake_error(server: String, e: std::io::Error) -> TlsError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(reason)) => TlsError::Certificate { server, reason: reason.to_string() },
        Some(other) => TlsError::Handshake { server, reason: other.to_string() },
        None => TlsError::Handshake { server, reason: e.to_string() },
    }
}

/// A client configuration whose certificate check is `check`.
fn with_check(check: ChainCheck) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(numport_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(check))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificate check of `prefer`, `require` and `verify-ca`.
///
/// Without roots (`prefer`, and `require` without a root certificate) any certificate is
/// taken, as libpq does: these modes protect against listening on the wire, not against a
/// machine in the middle. The handshake must still be signed with the certificate's key, so
/// the session talks to whoever holds it. With roots (`verify-ca`) the certificate must chain
/// to one of them; the host name is not checked (`verify-full` uses rustls's own verifier).
#[derive(Debug)]
struct ChainCheck {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ChainCheck {
    fn new(roots: Option<Arc<RootCertStore>>) -> ChainCheck {
        ChainCheck { roots, algorithms: numport_tls::provider().signature_verification_algorithms }
    }
}

impl ServerCertVerifier for ChainCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algorithms.all)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
