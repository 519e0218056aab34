//! The online charging system the node embeds (F4), when its configuration has an `[ocs]`
//! table: the `ocs` crate on a database of its own (the OCS's migration history is its own, as
//! `numport ocs` keeps it), serving Diameter Gy on the node's `gy` listener under the node's TLS
//! settings, its API under `/v1/ocs` beside the node's, and its metrics in the node's registry.

use std::net::SocketAddr;
use std::sync::Arc;

use numport_core::{Clock, OperatorName};
use numport_db::DbConfig;
use ocs::server::{GySettings, Peer};
use ocs::{Ocs, OcsConfig};
use serde::{Deserialize, Serialize};

use crate::OperatorError;

/// `[ocs]`: where the embedded OCS keeps its books, and who may reach it over Gy. `{name}` in
/// `database_url`, `origin_host` and `origin_realm` is the operator's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcsSection {
    /// `sqlite://path` or `postgres://…`: the OCS's own database, never the node's.
    pub database_url: String,
    pub database_sessions: usize,
    /// Diameter Gy's address; the operator command binds it, `"none"` serves no Gy (the API
    /// still runs).
    #[serde(with = "crate::config::listen_or_none")]
    pub gy_listen: Option<SocketAddr>,
    pub origin_host: String,
    pub origin_realm: String,
    /// The switching centres and gateways whose CER is accepted; any other is answered 3010.
    pub peers: Vec<Peer>,
    /// SHA-256 (hex) of the bearer token of `/v1/ocs`; without one that API refuses every
    /// request.
    pub api_token_sha256: String,
    /// Credit control, tariff zone and Tcc supervision.
    pub charging: OcsConfig,
}

impl Default for OcsSection {
    fn default() -> Self {
        OcsSection {
            database_url: "sqlite://data/ocs-{name}.db".into(),
            database_sessions: numport_db::DEFAULT_SESSIONS,
            gy_listen: Some(SocketAddr::from(([127, 0, 0, 1], 3868))),
            origin_host: "ocs.{name}.numport.local".into(),
            origin_realm: "{name}.numport.local".into(),
            peers: Vec::new(),
            api_token_sha256: String::new(),
            charging: OcsConfig::default(),
        }
    }
}

impl OcsSection {
    /// This section with `{name}` replaced by the operator's name.
    pub fn resolved(&self, operator: &OperatorName) -> OcsSection {
        let named = |s: &str| s.replace("{name}", operator.as_str());
        OcsSection {
            database_url: named(&self.database_url),
            origin_host: named(&self.origin_host),
            origin_realm: named(&self.origin_realm),
            ..self.clone()
        }
    }

    pub fn database(&self) -> DbConfig {
        DbConfig { url: self.database_url.clone(), sessions: self.database_sessions }
    }

    /// The Diameter server's settings, TLS as the node's HTTP API has it.
    pub fn gy_settings(&self, tls: Option<Arc<numport_tls::rustls::ServerConfig>>) -> GySettings {
        GySettings {
            origin_host: self.origin_host.clone(),
            origin_realm: self.origin_realm.clone(),
            peers: self.peers.clone(),
            tls,
        }
    }
}

/// Open the OCS of a resolved `[ocs]` section, its metrics in `registry`.
pub async fn open(
    section: &OcsSection,
    clock: Arc<dyn Clock>,
    registry: &telemetry::Registry,
) -> Result<Ocs, OperatorError> {
    Ocs::open(&section.database(), section.charging, clock, registry)
        .await
        .map_err(|e| OperatorError::Config(format!("opening the OCS database {}: {e}", section.database_url)))
}
