//! The node's configuration: one TOML table, every field defaulted so a node starts with none.

use std::net::SocketAddr;

use numport_core::signing::DEFAULT_TOLERANCE_MS;
use numport_core::{Millis, Money, OperatorName};
use numport_db::DbConfig;
use replica::ReplicaConfig;
use serde::{Deserialize, Serialize};

use crate::OperatorError;

/// The service number a node answers port-out authorisations on unless configured otherwise.
pub const DEFAULT_SERVICE_NUMBER: &str = "1999";

/// Path of the callback route, appended to [`OperatorConfig::public_url`].
pub const CALLBACK_PATH: &str = "/v1/clearinghouse/callbacks";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperatorConfig {
    /// The operator's name at the clearinghouse.
    pub name: OperatorName,
    /// Where the node's HTTP API listens.
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://…`: the engine's [`DbConfig::url`], as in every role's
    /// configuration. `{name}` is replaced by the operator name, so that nodes of several
    /// operators on one machine keep separate databases by default.
    pub database_url: String,
    /// PostgreSQL sessions kept open (not used on SQLite): the engine's [`DbConfig::sessions`].
    pub database_sessions: usize,
    pub clearinghouse_url: String,
    /// The API key the clearinghouse issued to this operator (`<key id>.<secret>`).
    pub api_token: String,
    /// The callback secret the clearinghouse issued (hex). Empty: every callback is refused,
    /// and messages arrive only by inbox catch-up.
    pub callback_secret: String,
    /// The node's externally reachable base URL (`http://opa.example:8500`); the callback URL
    /// registered at the clearinghouse is this plus [`CALLBACK_PATH`]. Default: the bound
    /// address.
    pub public_url: Option<String>,
    /// How this node decides as recipient.
    pub policy: RecipientPolicy,
    /// How far a callback's timestamp may be from the node's clock.
    pub signature_tolerance_ms: Millis,
    /// How often the re-processor looks for messages whose processing did not finish.
    pub reprocess_interval_ms: u64,
    /// How long a recorded message may stay unprocessed before the re-processor takes it up;
    /// also the first retry delay after a failure (it doubles per attempt, up to a minute).
    pub reprocess_after_ms: Millis,
    /// The node's portability replica (F2). `data_dir` may contain `{name}`; left empty,
    /// `clearinghouse_url` and `api_token` are the node's own.
    pub npdb: ReplicaConfig,
    /// The SMS center's SMPP server.
    pub smpp: SmppSection,
    /// The air interface terminals attach to; `None` runs none.
    pub air_listen: Option<SocketAddr>,
    /// The operator's service number (a short code or an E.164 number, digits only): an SMS an
    /// attached terminal sends to it is no message to deliver but a port-out authorisation
    /// (`crate::portability::authorisation`).
    pub service_number: String,
    /// SMPP interconnects: where messages for numbers other operators serve are sent on.
    pub interconnect: Vec<InterconnectPeer>,
}

/// `[[interconnect]]`: another operator's SMS center and this operator's account there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterconnectPeer {
    pub operator: OperatorName,
    pub addr: SocketAddr,
    pub system_id: String,
    pub password: String,
}

/// `[smpp]`: where ESMEs bind, and the limits of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmppSection {
    /// `None` runs no SMPP server.
    pub listen: Option<SocketAddr>,
    pub max_pdu: usize,
    pub bind_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
    /// Submits of one session in the SMS center at once (and deliver_sm awaiting answer).
    pub window: usize,
    /// Validity of a message whose submit names none.
    pub default_validity_s: u64,
    /// Longest validity accepted; a longer one is cut to it.
    pub max_validity_s: u64,
    /// First wait before trying an absent terminal again; it doubles with each attempt.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for SmppSection {
    fn default() -> Self {
        let d = smsc::SmppConfig::default();
        SmppSection {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 2775))),
            max_pdu: d.max_pdu,
            bind_timeout_ms: d.bind_timeout.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
            max_connections: d.max_connections,
            window: d.window,
            default_validity_s: 48 * 3600,
            max_validity_s: 7 * 24 * 3600,
            retry_initial_ms: 30_000,
            retry_max_ms: 3_600_000,
        }
    }
}

impl SmppSection {
    /// The wait before delivery attempt `attempts + 1` to an absent terminal.
    pub fn retry_after(&self, attempts: i64) -> u64 {
        let doubled = self.retry_initial_ms.saturating_mul(1u64 << attempts.clamp(0, 30));
        doubled.min(self.retry_max_ms.max(self.retry_initial_ms))
    }

    /// The server configuration; the SMSC answers binds with the operator's name.
    pub fn server_config(&self, operator: &OperatorName) -> smsc::SmppConfig {
        smsc::SmppConfig {
            system_id: operator.to_string(),
            max_pdu: self.max_pdu,
            bind_timeout: std::time::Duration::from_millis(self.bind_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
            window: self.window.max(1),
            ..smsc::SmppConfig::default()
        }
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            name: default_name(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8500)),
            database_url: "sqlite://data/operator-{name}.db".into(),
            database_sessions: numport_db::DEFAULT_SESSIONS,
            clearinghouse_url: "http://127.0.0.1:8400".into(),
            api_token: String::new(),
            callback_secret: String::new(),
            public_url: None,
            policy: RecipientPolicy::default(),
            signature_tolerance_ms: DEFAULT_TOLERANCE_MS,
            reprocess_interval_ms: 1000,
            reprocess_after_ms: 2000,
            npdb: ReplicaConfig {
                clearinghouse_url: String::new(),
                data_dir: "data/npdb-{name}".into(),
                ..ReplicaConfig::default()
            },
            smpp: SmppSection::default(),
            air_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7700))),
            service_number: DEFAULT_SERVICE_NUMBER.into(),
            interconnect: Vec::new(),
        }
    }
}

fn default_name() -> OperatorName {
    "opa".parse().unwrap_or_else(|_| unreachable!("\"opa\" is a valid operator name"))
}

impl OperatorConfig {
    /// `database_url` with `{name}` replaced.
    pub fn resolved_database_url(&self) -> String {
        self.database_url.replace("{name}", self.name.as_str())
    }

    /// The database to open: [`Self::resolved_database_url`] and `database_sessions`.
    pub fn database(&self) -> DbConfig {
        DbConfig { url: self.resolved_database_url(), sessions: self.database_sessions }
    }

    /// The replica's configuration with the node's defaults filled in.
    pub fn resolved_npdb(&self) -> ReplicaConfig {
        let mut c = self.npdb.clone();
        c.data_dir = c.data_dir.to_string_lossy().replace("{name}", self.name.as_str()).into();
        if c.clearinghouse_url.is_empty() {
            c.clearinghouse_url = self.clearinghouse_url.clone();
        }
        if c.api_token.is_empty() {
            c.api_token = self.api_token.clone();
        }
        c
    }

    /// The service number, checked: 1 to 15 digits, a leading `+` dropped.
    pub fn service_number(&self) -> Result<&str, OperatorError> {
        let n = self.service_number.trim().trim_start_matches('+');
        if (1..=15).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) {
            Ok(n)
        } else {
            Err(OperatorError::Config(format!("service_number {:?} is no number", self.service_number)))
        }
    }

    /// The callback secret as bytes; `None` when none is configured.
    pub fn callback_secret_bytes(&self) -> Result<Option<Vec<u8>>, OperatorError> {
        let s = self.callback_secret.trim();
        if s.is_empty() {
            return Ok(None);
        }
        hex::decode(s).map(Some).map_err(|_| OperatorError::Config("callback_secret must be hex".into()))
    }

    /// The URL to register at the clearinghouse, given the address the node is bound to.
    /// A `public_url` that already ends in the callback path is taken as is.
    pub fn callback_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) if url.trim_end_matches('/').ends_with(CALLBACK_PATH) => url.trim_end_matches('/').to_owned(),
            Some(url) => format!("{}{CALLBACK_PATH}", url.trim_end_matches('/')),
            None => {
                let mut addr = bound;
                if addr.ip().is_unspecified() {
                    addr.set_ip(if addr.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                format!("http://{addr}{CALLBACK_PATH}")
            }
        }
    }
}

/// The recipient's rule for taking a subscriber: pay the compensation the donor's credit
/// information implies, up to a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecipientPolicy {
    /// The largest compensation (minor units) this operator pays to take a subscriber.
    pub max_compensation: Money,
}

impl Default for RecipientPolicy {
    fn default() -> Self {
        RecipientPolicy { max_compensation: Money(100_000) }
    }
}

impl RecipientPolicy {
    /// Accept when the compensation is within the ceiling.
    pub fn accepts(&self, compensation: Money) -> bool {
        compensation <= self.max_compensation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_partial_toml() {
        let c: OperatorConfig = serde_json::from_str(r#"{"name":"opb","policy":{"max_compensation":5}}"#).unwrap();
        assert_eq!(c.name.as_str(), "opb");
        assert_eq!(c.policy.max_compensation, Money(5));
        assert_eq!(c.listen, OperatorConfig::default().listen);
        assert_eq!(c.resolved_database_url(), "sqlite://data/operator-opb.db");
        assert!(serde_json::from_str::<OperatorConfig>(r#"{"nmae":"x"}"#).is_err());
    }

    #[test]
    fn callback_url() {
        let mut c = OperatorConfig::default();
        let bound: SocketAddr = "0.0.0.0:8500".parse().unwrap();
        assert_eq!(c.callback_url(bound), "http://127.0.0.1:8500/v1/clearinghouse/callbacks");
        c.public_url = Some("https://opa.example/".into());
        assert_eq!(c.callback_url(bound), "https://opa.example/v1/clearinghouse/callbacks");
        c.public_url = Some("https://opa.example/v1/clearinghouse/callbacks".into());
        assert_eq!(c.callback_url(bound), "https://opa.example/v1/clearinghouse/callbacks");
    }

    #[test]
    fn secret_and_policy() {
        let mut c = OperatorConfig::default();
        assert_eq!(c.callback_secret_bytes().unwrap(), None);
        c.callback_secret = "00ff".into();
        assert_eq!(c.callback_secret_bytes().unwrap(), Some(vec![0, 255]));
        c.callback_secret = "xyz".into();
        assert!(c.callback_secret_bytes().is_err());
        assert_eq!(c.service_number().unwrap(), DEFAULT_SERVICE_NUMBER);
        c.service_number = "+4790009999".into();
        assert_eq!(c.service_number().unwrap(), "4790009999");
        for bad in ["", "19x9", "1234567890123456"] {
            c.service_number = bad.into();
            assert!(c.service_number().is_err(), "{bad:?}");
        }
        let p = RecipientPolicy { max_compensation: Money(100) };
        assert!(p.accepts(Money(100)));
        assert!(!p.accepts(Money(101)));
    }
}
