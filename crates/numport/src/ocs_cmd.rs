//! `numport ocs`: the online charging system alone, serving Diameter Gy (F4), with its HTTP
//! API (`ocs::http`), `/metrics` and `/healthz`; or, with a subcommand, administering its
//! database (accounts and recharges, tariffs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use numport_core::{Money, SystemClock};
use numport_db::DbConfig;
use numport_tls::ServerTls;
use ocs::server::{GySettings, Peer};
use ocs::{Ocs, OcsConfig, TariffRule};
use serde::{Deserialize, Serialize};

/// The OCS's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcsRoleConfig {
    /// Diameter Gy: TCP, or TLS from the first octet with `[tls]`.
    pub listen: SocketAddr,
    /// The HTTP API, `/metrics` and `/healthz` (over TLS with `[tls]`); none when unset.
    pub http_listen: Option<SocketAddr>,
    /// SHA-256 (hex) of the HTTP API's bearer token; without one the API refuses every request.
    pub api_token_sha256: String,
    /// `sqlite://path` or `postgres://…`.
    pub database_url: String,
    pub database_sessions: usize,
    /// This OCS's Origin-Host and Origin-Realm.
    pub origin_host: String,
    pub origin_realm: String,
    /// The peers whose CER is accepted; any other is answered 3010.
    pub peers: Vec<Peer>,
    /// Certificate and key for Diameter over TLS and the metrics listener; with `client_ca`,
    /// peers must present a certificate of that CA.
    pub tls: Option<ServerTls>,
    /// Serve without TLS: required, with no `[tls]`.
    pub plain: bool,
    pub ocs: OcsConfig,
}

impl Default for OcsRoleConfig {
    fn default() -> Self {
        OcsRoleConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3868)),
            http_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8700))),
            api_token_sha256: String::new(),
            database_url: "sqlite://data/ocs/ocs.db".into(),
            database_sessions: numport_db::DEFAULT_SESSIONS,
            origin_host: "ocs.numport.local".into(),
            origin_realm: "numport.local".into(),
            peers: Vec::new(),
            tls: None,
            plain: false,
            ocs: OcsConfig::default(),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration (every key optional).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override `database_url`.
    #[arg(long, global = true, env = "NUMPORT_OCS_DATABASE_URL")]
    database_url: Option<String>,
    /// Override `listen` (Diameter).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Override `http_listen`.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Serve without TLS (`plain = true`).
    #[arg(long)]
    plain: bool,
    /// Accept this peer too, as `origin-host,origin-realm` (repeatable).
    #[arg(long = "peer")]
    peers: Vec<Peer>,
    #[command(subcommand)]
    admin: Option<Admin>,
}

#[derive(Subcommand)]
enum Admin {
    /// Open a subscriber's account, and recharge it.
    Account {
        #[arg(long)]
        msisdn: String,
        /// How far below zero the balance may go, like `10.00` (0 for prepaid).
        #[arg(long, default_value = "0")]
        credit_limit: Money,
        /// A first recharge, like `50.00`.
        #[arg(long)]
        recharge: Option<Money>,
    },
    /// Recharge an account, once per key.
    Recharge {
        #[arg(long)]
        msisdn: String,
        #[arg(long)]
        amount: Money,
        /// The recharge's idempotency key: the same key recharges once.
        #[arg(long)]
        key: String,
    },
    /// Replace the tariffs with a JSON file: an array of rules
    /// `{"service": "voice", "prefix": "47", "band": {"start_minute": 0, "end_minute": 1440}, "price": 10, "block": 60}`.
    Tariffs { file: PathBuf },
    /// Print an account's balance as JSON.
    Balance {
        #[arg(long)]
        msisdn: String,
    },
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg: OcsRoleConfig = crate::config::load(args.config.as_deref())?;
    if let Some(u) = args.database_url {
        cfg.database_url = u;
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(l) = args.http_listen {
        cfg.http_listen = Some(l);
    }
    cfg.plain |= args.plain;
    cfg.peers.extend(args.peers);
    let registry = telemetry::Registry::new();
    let db = DbConfig { url: cfg.database_url.clone(), sessions: cfg.database_sessions };
    let ocs = Ocs::open(&db, cfg.ocs, Arc::new(SystemClock), &registry)
        .await
        .with_context(|| format!("opening the OCS database {}", cfg.database_url))?;
    match args.admin {
        Some(admin) => administer(&ocs, admin).await,
        None => serve_gy(ocs, cfg, registry).await,
    }
}

async fn administer(ocs: &Ocs, admin: Admin) -> anyhow::Result<ExitCode> {
    match admin {
        Admin::Account { msisdn, credit_limit, recharge } => {
            let id = ocs.create_account(&msisdn, credit_limit).await?;
            if let Some(amount) = recharge {
                ocs.recharge(&msisdn, amount, None, &format!("account-{id}-first")).await?;
            }
            println!("{}", serde_json::to_string(&ocs.balance(&msisdn).await?)?);
        }
        Admin::Recharge { msisdn, amount, key } => {
            println!("{}", serde_json::to_string(&ocs.recharge(&msisdn, amount, None, &key).await?)?);
        }
        Admin::Tariffs { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let rules: Vec<TariffRule> =
                serde_json::from_str(&text).with_context(|| format!("in {}", file.display()))?;
            let n = rules.len();
            ocs.set_tariffs(rules).await?;
            println!("{{\"tariff_rules\": {n}}}");
        }
        Admin::Balance { msisdn } => println!("{}", serde_json::to_string(&ocs.balance(&msisdn).await?)?),
    }
    ocs.db().close().await;
    Ok(ExitCode::SUCCESS)
}

async fn serve_gy(ocs: Ocs, cfg: OcsRoleConfig, registry: telemetry::Registry) -> anyhow::Result<ExitCode> {
    let tls = match (&cfg.tls, cfg.plain) {
        (Some(_), true) => anyhow::bail!(numport_tls::TlsError::Ambiguous),
        (None, false) => anyhow::bail!(numport_tls::TlsError::NotConfigured),
        (Some(t), false) => Some(numport_tls::server_config(&t.identity(), t.client_ca.as_deref())?),
        (None, true) => None,
    };
    let shutdown = crate::shutdown_on_signal();
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding Diameter on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let settings = GySettings {
        origin_host: cfg.origin_host.clone(),
        origin_realm: cfg.origin_realm.clone(),
        peers: cfg.peers.clone(),
        tls,
    };
    let running = ocs::server::start(&ocs, Some(listener), &settings, shutdown.clone()).await?;
    let metrics = match cfg.http_listen {
        Some(m) => {
            let health: telemetry::HealthCheck = Arc::new(|| (true, serde_json::json!({ "role": "ocs" })));
            let api = ocs::http::router(ocs.clone(), &cfg.api_token_sha256);
            let router = telemetry::json_errors(api.merge(telemetry::routes(registry, health)));
            let (bound, served) = numport_tls::http::serve_metrics(m, router, cfg.tls.as_ref(), shutdown.clone())
                .await
                .with_context(|| format!("binding HTTP on {m}"))?;
            Some((bound, served))
        }
        None => None,
    };
    let http = metrics.as_ref().map(|(a, _)| *a).unwrap_or(addr);
    crate::announce_listening("ocs", None, http, cfg.tls.is_some(), &[("diameter", Some(addr))]);
    shutdown.cancelled().await;
    running.stop().await.context("the Diameter server")?;
    if let Some((_, served)) = metrics {
        let _ = served.await;
    }
    ocs.db().close().await;
    Ok(ExitCode::SUCCESS)
}
