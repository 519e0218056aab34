//! The replica's configuration: one TOML table. Which clearinghouse it follows, with which
//! key, and where it keeps its data have no default here: they are the role's own (an
//! operator node's, or what `numport npdb` requires), so a table that omits them cannot
//! silently follow another clearinghouse or share another replica's directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicaConfig {
    pub clearinghouse_url: Option<String>,
    /// The CA an `https://` clearinghouse is verified against, and the operator certificate
    /// presented when it asks for one (mutual TLS).
    pub clearinghouse_tls: Option<numport_tls::ClientTls>,
    /// An operator's API key at the clearinghouse (`<key id>.<secret>`); the feed is open to
    /// every authenticated operator.
    pub api_token: Option<String>,
    /// Where the snapshot and the journal of applied changes live.
    pub data_dir: Option<PathBuf>,
    /// How long one long-poll of the feed waits for a change.
    pub poll_wait_ms: u64,
    /// Changes asked for per feed request.
    pub page_size: i64,
    /// With no successful feed request for this long the replica reports itself stale (it is
    /// stale at once when a request fails).
    pub stale_after_ms: u64,
    /// Write a new snapshot (and empty the journal) after this many journalled changes.
    pub snapshot_every: u64,
    pub enum_dns: EnumConfig,
}

/// ENUM (RFC 6116) over DNS, with number portability data (RFC 4694).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnumConfig {
    /// UDP and TCP address of the ENUM server; `None` runs no DNS server.
    pub listen: Option<SocketAddr>,
    /// The ENUM zone the server is authoritative for.
    pub zone: String,
    /// `rn-context` of the routing numbers (RFC 4694 §4): routing numbers like `D002` are
    /// local numbers, meaningful within this country's numbering plan.
    pub rn_context: String,
    /// TTL of answers. Short, because a port must reach callers who cache.
    pub ttl: u32,
    /// The server's host name in the apex's NS record and the SOA's MNAME: the name resolvers
    /// reach it by. Outside the zone, which holds only numbers.
    pub nameserver: String,
    /// The SOA's RNAME, the zone's contact mailbox as a name (`hostmaster.example.net.` for
    /// hostmaster@example.net); `None`: `hostmaster.<zone>`.
    pub hostmaster: Option<String>,
    /// How long caches keep a negative answer (RFC 2308): the SOA's TTL and MINIMUM.
    pub negative_ttl: u32,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            clearinghouse_url: None,
            api_token: None,
            data_dir: None,
            clearinghouse_tls: None,
            poll_wait_ms: 5_000,
            page_size: 1_000,
            stale_after_ms: 15_000,
            snapshot_every: 100_000,
            enum_dns: EnumConfig::default(),
        }
    }
}

impl ReplicaConfig {
    /// The first of the keys without default that is not set, by its name in the table.
    pub fn missing_key(&self) -> Option<&'static str> {
        if self.clearinghouse_url.is_none() {
            Some("clearinghouse_url")
        } else if self.api_token.is_none() {
            Some("api_token")
        } else if self.data_dir.is_none() {
            Some("data_dir")
        } else {
            None
        }
    }
}

impl Default for EnumConfig {
    fn default() -> Self {
        EnumConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 5353))),
            zone: "e164.arpa.".into(),
            rn_context: "+47".into(),
            ttl: 5,
            nameserver: "localhost.".into(),
            hostmaster: None,
            negative_ttl: 60,
        }
    }
}
