//! The node's configuration: one TOML table, every field defaulted so a node starts with none.

use std::net::SocketAddr;
use std::path::PathBuf;

use numport_core::signing::DEFAULT_TOLERANCE_MS;
use numport_core::{Millis, Money, OperatorName};
use numport_db::DbConfig;
use numport_tls::{ClientTls, ServerTls};
use replica::ReplicaConfig;
use serde::{Deserialize, Serialize};

use crate::OperatorError;

/// The node's replica directory when `[npdb]` names none: one per operator.
const NPDB_DATA_DIR: &str = "data/npdb-{name}";
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
    /// Serve `/metrics` here instead of on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// The HTTP API's certificate and key (`[tls]`; `client_ca` asks every caller for a
    /// certificate from that CA).
    pub tls: Option<ServerTls>,
    /// Serve the HTTP API without TLS: required, with no `[tls]`.
    pub plain_http: bool,
    /// `sqlite://path` or `postgres://…`: the engine's [`DbConfig::url`], as in every role's
    /// configuration. `{name}` is replaced by the operator name, so that nodes of several
    /// operators on one machine keep separate databases by default.
    pub database_url: String,
    /// PostgreSQL sessions kept open (not used on SQLite): the engine's [`DbConfig::sessions`].
    pub database_sessions: usize,
    pub clearinghouse_url: String,
    /// The CA an `https://` clearinghouse is verified against, and this operator's certificate
    /// (for a clearinghouse that asks for one: mutual TLS).
    pub clearinghouse_tls: Option<ClientTls>,
    /// The API key the clearinghouse issued to this operator (`<key id>.<secret>`).
    pub api_token: String,
    /// The callback secret the clearinghouse issued (hex). Empty: every callback is refused,
    /// and messages arrive only by inbox catch-up.
    pub callback_secret: String,
    /// The key that seals the subscribers' card keys at rest (`crate::sealing`): 64 hex
    /// digits. Empty: nothing that keeps such keys (OTA, SMS authentication) can run.
    pub key_encryption_key: String,
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
    /// The node's portability replica (F2). A key the table leaves out is the node's own:
    /// `clearinghouse_url` and `api_token` the node's, `data_dir` `data/npdb-{name}` (a
    /// `data_dir` given may contain `{name}` too). See [`Self::resolved_npdb`].
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
    /// Provisioning of the network elements (F6).
    pub provisioning: crate::provisioner::ProvisioningConfig,
    /// Self-service account opening (F7): the number and IMSI pools, the plan.
    pub accounts: crate::account_opening::AccountsConfig,
    /// The OTA server (F7): its address, the card application it writes, what it writes.
    pub ota: crate::ota::OtaConfig,
    /// SMS authentication at the SMS center (F3): keys, counters, the old key's grace.
    pub sms_auth: crate::sms_center::authentication::SmsAuthConfig,
    /// The online charging system the node embeds (F4); none without an `[ocs]` table.
    pub ocs: Option<crate::online_charging::OcsSection>,
}

/// `[[interconnect]]`: another operator's SMS center and this operator's account there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterconnectPeer {
    pub operator: OperatorName,
    pub addr: SocketAddr,
    pub system_id: String,
    pub password: String,
    /// SMPP over TLS to the peer (`tls = { ca = "…" }`); without it, plain TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<PeerTls>,
    /// An enquire_link goes to the peer after this long without sending, so its idle timeout
    /// (a third of SMPP's customary 120 s by default) never unbinds the link; one unanswered
    /// for as long means the link is lost.
    #[serde(default = "default_enquire_link_ms")]
    pub enquire_link_ms: u64,
}

/// A third of the peer's idle timeout, when that is the customary (and our own default) 120 s.
pub const DEFAULT_ENQUIRE_LINK_MS: u64 = 40_000;

fn default_enquire_link_ms() -> u64 {
    DEFAULT_ENQUIRE_LINK_MS
}

/// How the peer's SMS center is verified over TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerTls {
    /// The CA (PEM) the peer's certificate must chain to.
    pub ca: PathBuf,
    /// The name the peer's certificate must be valid for; default: the address's IP.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// `[smpp.tls]`: SMPP over TLS on a port of its own, beside the plain `listen`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppTls {
    pub listen: SocketAddr,
    /// The server's certificate chain and private key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[smpp]`: where ESMEs bind, and the limits of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmppSection {
    /// Plain TCP; `None` (`listen = "none"`: an SMS center on TLS only, or with no `tls`
    /// none at all) runs no plain SMPP server.
    #[serde(with = "listen_or_none")]
    pub listen: Option<SocketAddr>,
    /// SMPP over TLS; `None` offers none.
    pub tls: Option<SmppTls>,
    pub max_pdu: usize,
    pub bind_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    /// Connections at once, bound or not; beyond it a connection is closed on accept. An
    /// unbound connection holds its slot for at most `bind_timeout`, whatever it sends.
    pub max_connections: usize,
    /// Failed binds for one system_id within `bind_failure_window_ms` that lock it out for
    /// `bind_lockout_ms`: its binds are refused at once (ESME_RBINDFAIL) from any address.
    /// 0: never.
    pub bind_failures_per_system_id: u32,
    /// Failed binds from one address (IPv6: its /64) within the window that lock it out, for
    /// every system_id. 0: never.
    pub bind_failures_per_address: u32,
    pub bind_failure_window_ms: u64,
    pub bind_lockout_ms: u64,
    /// Submits of one session in the SMS center at once (and deliver_sm awaiting answer).
    pub window: usize,
    /// Validity of a message whose submit names none.
    pub default_validity_s: u64,
    /// Longest validity accepted; a longer one is cut to it.
    pub max_validity_s: u64,
    /// First wait before trying an absent terminal again; it doubles with each attempt.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// The system_ids other operators' SMS centers bind here with. What they submit came over
    /// an interconnect, as does every submit carrying the origin reference TLV our own
    /// centers send: it is delivered here or refused, never forwarded again.
    pub interconnect_accounts: Vec<String>,
}

impl Default for SmppSection {
    fn default() -> Self {
        let d = smsc::SmppConfig::default();
        SmppSection {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 2775))),
            tls: None,
            max_pdu: d.max_pdu,
            bind_timeout_ms: d.bind_timeout.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
            max_connections: d.max_connections,
            bind_failures_per_system_id: d.lockout.max_failures_per_system_id,
            bind_failures_per_address: d.lockout.max_failures_per_address,
            bind_failure_window_ms: d.lockout.window.as_millis() as u64,
            bind_lockout_ms: d.lockout.lockout.as_millis() as u64,
            window: d.window,
            default_validity_s: 48 * 3600,
            max_validity_s: 7 * 24 * 3600,
            retry_initial_ms: 30_000,
            retry_max_ms: 3_600_000,
            interconnect_accounts: Vec::new(),
        }
    }
}

/// `[smpp] listen`: an address, or `"none"`. Written out, `None` stays `"none"`, so that a
/// configuration without plain SMPP keeps none when read back (an absent key means the
/// default address).
pub(crate) mod listen_or_none {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    const NONE: &str = "none";

    pub fn serialize<S: Serializer>(listen: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match listen {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str(NONE),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text == NONE {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("{text:?}: an address or \"none\"")))
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
        use std::time::Duration;
        smsc::SmppConfig {
            system_id: operator.to_string(),
            max_pdu: self.max_pdu,
            bind_timeout: Duration::from_millis(self.bind_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
            window: self.window.max(1),
            lockout: smsc::LockoutConfig {
                max_failures_per_system_id: self.bind_failures_per_system_id,
                max_failures_per_address: self.bind_failures_per_address,
                window: Duration::from_millis(self.bind_failure_window_ms),
                lockout: Duration::from_millis(self.bind_lockout_ms),
            },
            ..smsc::SmppConfig::default()
        }
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            name: default_name(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8500)),
            metrics_listen: None,
            tls: None,
            plain_http: false,
            database_url: "sqlite://data/operator-{name}.db".into(),
            database_sessions: numport_db::DEFAULT_SESSIONS,
            clearinghouse_url: "http://127.0.0.1:8400".into(),
            clearinghouse_tls: None,
            api_token: String::new(),
            callback_secret: String::new(),
            key_encryption_key: String::new(),
            public_url: None,
            policy: RecipientPolicy::default(),
            signature_tolerance_ms: DEFAULT_TOLERANCE_MS,
            reprocess_interval_ms: 1000,
            reprocess_after_ms: 2000,
            npdb: ReplicaConfig::default(),
            smpp: SmppSection::default(),
            air_listen: Some(SocketAddr::from(([127, 0, 0, 1], 7700))),
            service_number: DEFAULT_SERVICE_NUMBER.into(),
            interconnect: Vec::new(),
            provisioning: Default::default(),
            accounts: Default::default(),
            ota: Default::default(),
            sms_auth: Default::default(),
            ocs: None,
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

    /// The replica's configuration, each key `[npdb]` leaves out taken from the node: its
    /// clearinghouse, its API key and a directory of its own (`data/npdb-{name}`), with
    /// `{name}` replaced.
    pub fn resolved_npdb(&self) -> ReplicaConfig {
        let mut c = self.npdb.clone();
        let dir = c.data_dir.take().unwrap_or_else(|| NPDB_DATA_DIR.into());
        c.data_dir = Some(dir.to_string_lossy().replace("{name}", self.name.as_str()).into());
        c.clearinghouse_url.get_or_insert_with(|| self.clearinghouse_url.clone());
        c.api_token.get_or_insert_with(|| self.api_token.clone());
        if c.clearinghouse_tls.is_none() {
            c.clearinghouse_tls = self.clearinghouse_tls.clone();
        }
        c
    }

    /// Refuses what a node cannot run with: no API key (it could reach neither the
    /// clearinghouse nor, through its replica, the routing feed).
    pub fn check(&self) -> Result<(), OperatorError> {
        if self.api_token.trim().is_empty() {
            return Err(OperatorError::Config("api_token is not set".into()));
        }
        Ok(())
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

    /// The sealer of `key_encryption_key`; `None` when none is configured.
    pub fn sealer(&self) -> Result<Option<crate::sealing::Sealer>, OperatorError> {
        if self.key_encryption_key.trim().is_empty() {
            return Ok(None);
        }
        crate::sealing::Sealer::from_hex(&self.key_encryption_key)
            .map(Some)
            .map_err(|e| OperatorError::Config(e.to_string()))
    }

    /// The URL to register at the clearinghouse, given the address the node is bound to
    /// (`https://` when the node serves TLS). A `public_url` that already ends in the callback
    /// path is taken as is.
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
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                format!("{scheme}://{addr}{CALLBACK_PATH}")
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
    fn smpp_listen_none_runs_no_plain_smpp_and_reads_back_as_none() {
        let c: OperatorConfig = toml::from_str("[smpp]\nlisten = \"none\"").unwrap();
        assert_eq!(c.smpp.listen, None);
        let again: OperatorConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again.smpp.listen, None);
        let c: OperatorConfig = toml::from_str("[smpp]\nlisten = \"127.0.0.1:2776\"").unwrap();
        assert_eq!(c.smpp.listen, Some("127.0.0.1:2776".parse().unwrap()));
        assert_eq!(toml::from_str::<OperatorConfig>("[smpp]").unwrap().smpp.listen, SmppSection::default().listen);
        let err = toml::from_str::<OperatorConfig>("[smpp]\nlisten = \"off\"").unwrap_err();
        assert!(err.to_string().contains("an address or \"none\""), "{err}");
    }

    #[test]
    fn smpp_bind_lockout_is_configured_in_smpp_with_defaults() {
        let c: OperatorConfig = toml::from_str(
            "[smpp]\nbind_failures_per_system_id = 3\nbind_failures_per_address = 0\n\
             bind_failure_window_ms = 1000\nbind_lockout_ms = 2000",
        )
        .unwrap();
        let lockout = c.smpp.server_config(&c.name).lockout;
        assert_eq!(lockout.max_failures_per_system_id, 3);
        assert_eq!(lockout.max_failures_per_address, 0);
        assert_eq!(lockout.window, std::time::Duration::from_secs(1));
        assert_eq!(lockout.lockout, std::time::Duration::from_secs(2));
        let d = OperatorConfig::default();
        assert_eq!(d.smpp.server_config(&d.name).lockout, smsc::LockoutConfig::default());
    }

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
    fn npdb_table_takes_the_nodes_own_values_for_the_keys_it_omits() {
        let c: OperatorConfig = toml::from_str(
            r#"
            name = "opb"
            clearinghouse_url = "http://ch.example:9400"
            api_token = "k1.s1"
            [npdb]
            poll_wait_ms = 100
            "#,
        )
        .unwrap();
        let r = c.resolved_npdb();
        assert_eq!(r.clearinghouse_url.as_deref(), Some("http://ch.example:9400"));
        assert_eq!(r.api_token.as_deref(), Some("k1.s1"));
        assert_eq!(r.data_dir, Some("data/npdb-opb".into()));
        assert_eq!(r.poll_wait_ms, 100);
        assert_eq!(r.missing_key(), None);

        let empty: OperatorConfig =
            toml::from_str("name = \"opb\"\n[npdb]\n[npdb.enum_dns]\n[smpp]\n[policy]").unwrap();
        let none: OperatorConfig = toml::from_str("name = \"opb\"").unwrap();
        assert_eq!(empty, none, "an empty table means what no table means");
        assert_eq!(none.resolved_npdb().data_dir, Some("data/npdb-opb".into()));

        let given: OperatorConfig = toml::from_str(
            "name = \"opb\"\napi_token = \"k1.s1\"\n[npdb]\nclearinghouse_url = \"http://feed.example\"\n\
             api_token = \"k2.s2\"\ndata_dir = \"/srv/{name}/npdb\"",
        )
        .unwrap();
        let r = given.resolved_npdb();
        assert_eq!(r.clearinghouse_url.as_deref(), Some("http://feed.example"));
        assert_eq!(r.api_token.as_deref(), Some("k2.s2"));
        assert_eq!(r.data_dir, Some("/srv/opb/npdb".into()));
    }

    #[test]
    fn a_node_without_its_api_key_is_refused() {
        let e = OperatorConfig::default().check().unwrap_err();
        assert_eq!(e.to_string(), "configuration: api_token is not set");
        let c = OperatorConfig { api_token: "k1.s1".into(), ..OperatorConfig::default() };
        assert!(c.check().is_ok());
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
