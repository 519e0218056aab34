//! The TLS tables of the roles' configurations.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};
use serde::{Deserialize, Serialize};

use crate::{TlsError, TlsFiles, client_config, server_config};

/// `[tls]` of a server: its certificate and key and, for mutual TLS, the CA every client's
/// certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Set: every client must present a certificate from this CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    pub fn identity(&self) -> TlsFiles {
        TlsFiles { cert: self.cert.clone(), key: self.key.clone() }
    }

    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        server_config(&self.identity(), self.client_ca.as_deref())
    }
}

/// How a client verifies its server (`ca`) and, for mutual TLS, the certificate it presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    pub ca: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// The client certificate and key, when both are set; one without the other is an error.
    pub fn identity(&self) -> Result<Option<TlsFiles>, TlsError> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert: cert.clone(), key: key.clone() })),
            (None, None) => Ok(None),
            _ => Err(TlsError::HalfIdentity),
        }
    }

    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        client_config(&self.ca, self.identity()?.as_ref())
    }
}

/// The TLS a server runs with: its `[tls]` table, or none when the configuration says
/// `plain_http = true`. Neither is an error, so that no server runs without TLS by omission.
pub fn serving(tls: Option<&ServerTls>, plain_http: bool) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    match (tls, plain_http) {
        (Some(tls), false) => tls.config().map(Some),
        (None, true) => Ok(None),
        (None, false) => Err(TlsError::NotConfigured),
        (Some(_), true) => Err(TlsError::Ambiguous),
    }
}
