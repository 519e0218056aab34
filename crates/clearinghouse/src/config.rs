//! The clearinghouse's configuration (`numport clearinghouse --config clearinghouse.toml`).
//! Every field has a default but one choice: a `[tls]` table, or `plain_http = true`.

use std::net::SocketAddr;
use std::path::PathBuf;

use numport_core::Millis;
use numport_core::porting::Deadlines;
use numport_db::DbConfig;
use numport_tls::{ClientTls, ServerTls};
use serde::{Deserialize, Serialize};

const DAY_MS: Millis = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClearinghouseConfig {
    /// HTTP API, feed, `/metrics` (unless `metrics_listen` is set) and `/healthz`.
    pub listen: SocketAddr,
    /// Serve `/metrics` here instead of on `listen` (with the same certificate, without client
    /// certificates).
    pub metrics_listen: Option<SocketAddr>,
    /// The server's certificate and key, and with `client_ca` mutual TLS: every caller presents
    /// an operator's certificate that must name the operator its API key belongs to.
    pub tls: Option<ServerTls>,
    /// Serve plain HTTP: required, with no `[tls]`, so that no server runs without TLS by
    /// omission.
    pub plain_http: bool,
    /// The CA the operators' callback URLs are verified against (`https://`), and the
    /// certificate to present if their nodes ask for one.
    pub callback_tls: Option<ClientTls>,
    /// `sqlite://data/clearinghouse.db` (embedded default) or `postgres://…`: the engine's
    /// [`DbConfig::url`], as in every role's configuration.
    pub database_url: String,
    /// PostgreSQL sessions kept open (not used on SQLite): the engine's [`DbConfig::sessions`].
    pub database_sessions: usize,
    /// File holding the master key that callback secrets are derived from (created by `init`).
    pub master_key_path: PathBuf,
    /// How long each party has for its step.
    pub deadlines: Deadlines,
    pub verification: VerificationPolicy,
    /// A number may not complete another port sooner than this after its last one.
    pub min_port_interval_ms: Millis,
    /// How long after a request without the donor's deposit the donor is called back with a
    /// `deposit_requested` reminder (it is in the donor's inbox at once).
    pub deposit_reminder_ms: Millis,
    pub supervisor_interval_ms: Millis,
    pub dispatcher: DispatcherConfig,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Requests each operator may make, as a token bucket; past it, 429 `rate_limited`.
    pub rate_limit: RateLimit,
    /// Whether callback URLs may name loopback, link-local, private or otherwise non-public
    /// addresses (checked at registration and, after resolution, at each delivery). Off, an
    /// operator cannot make the clearinghouse call its own host's or network's services; a
    /// cluster on one host turns it on.
    pub allow_private_callback_addresses: bool,
}

impl Default for ClearinghouseConfig {
    fn default() -> Self {
        ClearinghouseConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8400)),
            metrics_listen: None,
            tls: None,
            plain_http: false,
            callback_tls: None,
            database_url: "sqlite://data/clearinghouse.db".into(),
            database_sessions: numport_db::DEFAULT_SESSIONS,
            master_key_path: PathBuf::from("data/clearinghouse.key"),
            deadlines: Deadlines::default(),
            verification: VerificationPolicy::default(),
            min_port_interval_ms: 60 * DAY_MS,
            deposit_reminder_ms: 1_000,
            supervisor_interval_ms: 250,
            dispatcher: DispatcherConfig::default(),
            max_body_bytes: 64 * 1024,
            rate_limit: RateLimit::default(),
            allow_private_callback_addresses: false,
        }
    }
}

impl ClearinghouseConfig {
    /// The database to open, from `database_url` and `database_sessions`.
    pub fn database(&self) -> DbConfig {
        DbConfig { url: self.database_url.clone(), sessions: self.database_sessions }
    }
}

/// Limits on terminal verification (F1 step 1–2). A failed verification is charged to the
/// operator held responsible for it (docs/PORTING.md, "Failed verifications"): the requester,
/// or the donor whose deposits disagree with more than one requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerificationPolicy {
    /// Longest validity a terminal may give its proof.
    pub max_proof_validity_ms: Millis,
    /// Failed verifications charged to one requesting operator for one number within
    /// `failure_window_ms` after which its requests for that number are refused.
    pub max_failures_per_number: i64,
    /// Failed verifications charged to one requesting operator within `failure_window_ms`
    /// after which all its requests are refused.
    pub max_failures_total: i64,
    pub failure_window_ms: Millis,
    /// How long a deposit is kept for a request to match it. Past this the proof it matches
    /// has expired (a terminal's proof is valid at most `max_proof_validity_ms`), and the
    /// supervisor deletes it.
    pub deposit_retention_ms: Millis,
}

impl Default for VerificationPolicy {
    fn default() -> Self {
        VerificationPolicy {
            max_proof_validity_ms: 15 * 60 * 1000,
            max_failures_per_number: 3,
            max_failures_total: 20,
            failure_window_ms: 60 * 60 * 1000,
            deposit_retention_ms: 20 * 60 * 1000,
        }
    }
}

/// Each operator's request rate, a token bucket refilled at `per_second` and holding at most
/// `burst`. The default is far above what the porting benchmark asks of three operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit { per_second: 20_000, burst: 40_000 }
    }
}

/// Delivery of outbox messages to operators' callback URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DispatcherConfig {
    /// Callbacks in flight at once.
    pub concurrency: usize,
    pub request_timeout_ms: u64,
    /// First retry delay; doubles per attempt up to `max_backoff_ms`.
    pub base_backoff_ms: Millis,
    pub max_backoff_ms: Millis,
    /// The delivery lease (`outbox::hold_delivery`): one process delivers the outbox and
    /// renews it at half this; another takes over this long after it stopped renewing.
    pub lease_ms: Millis,
    /// Idle poll interval (new messages wake the dispatcher at once).
    pub poll_interval_ms: u64,
    /// Most messages in one callback POST. Messages due for the same operator in one pass go
    /// together as a JSON array of envelopes, signed as a whole; 1 sends each envelope alone.
    pub batch_max: usize,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            concurrency: 128,
            request_timeout_ms: 5_000,
            base_backoff_ms: 500,
            max_backoff_ms: 60_000,
            lease_ms: 15_000,
            poll_interval_ms: 250,
            batch_max: 64,
        }
    }
}
