//! TLS for every numport link.
//!
//! - [`server_config`] and [`client_config`] build rustls configurations from PEM files: a
//!   server's identity and, for mutual TLS, the CA its clients' certificates must chain to; a
//!   client's trusted CA and, for mutual TLS, its own identity.
//! - [`peer_identity`] reads the role and name a numport certificate carries in its subject, which
//!   is how the clearinghouse learns which operator a client certificate belongs to.
//! - [`ServerTls`] and [`ClientTls`] are the `[tls]` tables of the roles' configurations;
//!   [`serving`] holds a server to TLS unless its configuration chose plain HTTP explicitly.
//! - [`http`] (feature `http`) serves an axum router over TLS and builds reqwest clients.
//! - [`pki`] makes a CA and one certificate per role (`numport pki`).
//!
//! Only rustls' `ring` provider is compiled in; every configuration names it explicitly, so no
//! process-wide default provider has to be installed.

mod config;
mod der;
#[cfg(feature = "http")]
pub mod http;
pub mod pki;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub use config::{ClientTls, ServerTls, serving};
pub use der::{PeerIdentity, peer_identity};
pub use rustls;

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate, followed by any intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be opened, read or decoded.
    #[error("{path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("{path}: no certificate in the file")]
    NoCertificate { path: PathBuf },
    /// A key file holds no private key.
    #[error("{path}: no private key in the file")]
    NoKey { path: PathBuf },
    /// A CA certificate that rustls refuses as a trust anchor.
    #[error("{path}: not usable as a CA certificate: {source}")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the CA.
    #[error("{path}: client CA: {source}")]
    ClientVerifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls refused the identity (e.g. the key does not match the certificate).
    #[error("{cert}: {source}")]
    Identity {
        cert: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// Making a key or a certificate failed.
    #[error("generating {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    /// A PKI file could not be written.
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `numport pki` does not overwrite an existing PKI.
    #[error("{path} exists: the PKI is not overwritten (choose an empty directory)")]
    Exists { path: PathBuf },
    /// A certificate whose DER could not be read.
    #[error("malformed certificate: {what}")]
    Malformed { what: &'static str },
    /// A server with neither TLS nor the explicit choice of plain HTTP.
    #[error("no [tls] section (cert, key): set one, or plain_http = true to serve without TLS")]
    NotConfigured,
    /// A server configured both ways.
    #[error("both a [tls] section and plain_http = true: choose one")]
    Ambiguous,
    /// A client identity needs both files.
    #[error("a client certificate needs both cert and key")]
    HalfIdentity,
    /// The HTTP client could not be built with the TLS configuration.
    #[cfg(feature = "http")]
    #[error("building the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// A name that cannot be a certificate's name or host.
    #[error("{name:?} is not usable as {what}")]
    BadName { name: String, what: &'static str },
}

/// The one crypto provider every configuration uses: ring. rustls marks it deprecated because it
/// has no post-quantum key exchange; the alternative, aws-lc-rs, needs cmake and a C toolchain
/// build that this project does not carry.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file, in order; an empty file is an error.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem { path: path.to_owned(), source };
    let certs = CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<Vec<_>, _>>().map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: path.to_owned() },
        source => TlsError::Pem { path: path.to_owned(), source },
    })
}

/// Reads a CA file into a root store; every certificate in it becomes a trust anchor.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::BadCa { path: path.to_owned(), source })?;
    }
    Ok(roots)
}

/// A server configuration presenting `identity`. With `client_ca`, every client must present a
/// certificate that chains to it (mutual TLS); without, clients are anonymous.
pub fn server_config(identity: &TlsFiles, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Identity { cert: identity.cert.clone(), source })?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider)
                .build()
                .map_err(|source| TlsError::ClientVerifier { path: ca.to_owned(), source })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(load_certs(&identity.cert)?, load_key(&identity.key)?)
        .map_err(|source| TlsError::Identity { cert: identity.cert.clone(), source })?;
    Ok(Arc::new(config))
}

/// A client configuration trusting only the CA in `ca`, presenting `identity` when the server
/// asks for a certificate (mutual TLS).
pub fn client_config(ca: &Path, identity: Option<&TlsFiles>) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::BadCa { path: ca.to_owned(), source })?
        .with_root_certificates(load_roots(ca)?);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(load_certs(&identity.cert)?, load_key(&identity.key)?)
            .map_err(|source| TlsError::Identity { cert: identity.cert.clone(), source })?,
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
