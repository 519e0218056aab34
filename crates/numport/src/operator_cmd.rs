//! `numport operator`: run an operator node, or administer its database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use numport_core::{OperatorName, SystemClock};
use operator::{Listeners, Node, OperatorConfig, OperatorStore};

#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration (every key optional).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override `name`.
    #[arg(long, global = true)]
    name: Option<OperatorName>,
    /// Override `listen`.
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Override `database_url`.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Override `clearinghouse_url`.
    #[arg(long, global = true)]
    clearinghouse_url: Option<String>,
    #[command(subcommand)]
    admin: Option<Admin>,
}

#[derive(Subcommand)]
enum Admin {
    /// Load subscriber accounts from CSV:
    /// `msisdn,port_key,arrears,unbilled_usage,contract_remaining,deposit_held`.
    ImportSubscribers { file: PathBuf },
    /// Allow an enterprise (ESME) to bind to the SMS center; the password is stored only as a
    /// hash. Takes effect at the node's next start.
    AddEsme {
        system_id: String,
        #[arg(long, env = "NUMPORT_ESME_PASSWORD", hide_env_values = true)]
        password: String,
        /// submit_sm per second before ESME_RTHROTTLED.
        #[arg(long, default_value_t = 1000)]
        max_submits_per_s: u32,
        /// What the ESME's data_coding 0 means: `gsm` (GSM 03.38, one septet an octet) or
        /// `latin1`.
        #[arg(long = "data-coding-0", default_value = "gsm")]
        data_coding_0: smsc::DefaultAlphabet,
        /// Sessions the ESME may hold bound at once before ESME_RBINDFAIL.
        #[arg(long, default_value_t = smsc::esme::DEFAULT_MAX_SESSIONS)]
        max_sessions: u32,
    },
    /// Record a SIM this operator issued: its IMSI, the number it serves, and its key (hex),
    /// which the terminal proves it holds when it attaches. A new SIM also gets its
    /// SMS-authentication key, printed as `VERSION:HEX` for the SIM.
    AddSim {
        imsi: String,
        #[arg(long)]
        msisdn: numport_core::Msisdn,
        #[arg(long, env = "NUMPORT_K_SIM", hide_env_values = true)]
        k_sim: String,
    },
    /// The running node's provisioning (F6): status, bulk changes from CSV.
    Provisioning(crate::provisioning_cmd::Args),
    /// The running node's OTA server (F7): jobs, proofs of receipt, retries.
    Ota(crate::ota_cmd::OtaArgs),
    /// The card stock (F7): load cards with their IMSI and keys (sealed in the database).
    SimStock(crate::ota_cmd::StockArgs),
}

pub fn resolve(args: &Args) -> anyhow::Result<OperatorConfig> {
    let mut cfg: OperatorConfig = crate::config::load(args.config.as_deref())?;
    if let Some(n) = &args.name {
        cfg.name = n.clone();
    }
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(u) = &args.database_url {
        cfg.database_url = u.clone();
    }
    if let Some(u) = &args.clearinghouse_url {
        cfg.clearinghouse_url = u.clone();
    }
    Ok(cfg)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = resolve(&args)?;
    match args.admin {
        None => serve(cfg).await,
        Some(Admin::Provisioning(p)) => crate::provisioning_cmd::run(&cfg, p).await,
        Some(Admin::Ota(a)) => crate::ota_cmd::ota(&cfg, a).await,
        Some(Admin::SimStock(a)) => crate::ota_cmd::stock(&cfg, a).await,
        Some(Admin::ImportSubscribers { file }) => {
            let store = OperatorStore::open(&cfg.database()).await?;
            let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let n = store
                .import_subscribers_csv(std::io::BufReader::new(f), numport_core::Clock::now_ms(&SystemClock))
                .await?;
            println!("imported {n} subscribers into {}", cfg.name);
            Ok(ExitCode::SUCCESS)
        }
        Some(Admin::AddEsme { system_id, password, max_submits_per_s, data_coding_0, max_sessions }) => {
            anyhow::ensure!((1..=15).contains(&system_id.len()), "system_id: 1 to 15 characters");
            anyhow::ensure!((1..=8).contains(&password.len()), "password: 1 to 8 characters (SMPP)");
            let store = OperatorStore::open(&cfg.database()).await?;
            let account = smsc::EsmeAccount::new(&system_id, &password, max_submits_per_s)
                .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
                .with_default_alphabet(data_coding_0)
                .with_max_sessions(max_sessions);
            store.upsert_esme(&account, numport_core::Clock::now_ms(&SystemClock)).await?;
            println!(
                "ESME {system_id} may bind to {}'s SMS center ({max_submits_per_s} submits/s, \
                 {max_sessions} sessions, data_coding 0 {})",
                cfg.name,
                data_coding_0.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Admin::AddSim { imsi, msisdn, k_sim }) => {
            anyhow::ensure!(
                (6..=15).contains(&imsi.len()) && imsi.bytes().all(|b| b.is_ascii_digit()),
                "IMSI: 6 to 15 digits"
            );
            let key = hex::decode(k_sim.trim()).context("k_sim must be hex")?;
            anyhow::ensure!(key.len() >= 16, "k_sim: at least 16 bytes");
            let sealer = cfg.sealer()?.context("key_encryption_key is not set: the SIM's keys cannot be sealed")?;
            let store = OperatorStore::open(&cfg.database()).await?;
            let now = numport_core::Clock::now_ms(&SystemClock);
            let issued = operator::sms_center::authentication::issue_sim(
                &store,
                &sealer,
                &cfg.sms_auth,
                &imsi,
                msisdn.as_str(),
                &key,
                now,
            )
            .await?;
            println!("SIM {imsi} serves {msisdn} at {}", cfg.name);
            if let Some(k) = issued {
                // What the personalisation writes into the SIM: `numport terminal --sms-auth-key`.
                println!("SMS-authentication key {}:{}", k.version, hex::encode(k.key));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(cfg: OperatorConfig) -> anyhow::Result<ExitCode> {
    let name = cfg.name.to_string();
    let tls = numport_tls::serving(cfg.tls.as_ref(), cfg.plain_http)?.is_some();
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let enum_dns = match cfg.npdb.enum_dns.listen {
        Some(a) => Some(replica::dns::bind(a).await.with_context(|| format!("binding ENUM on {a}"))?),
        None => None,
    };
    let dns_addr = enum_dns.as_ref().map(|s| s.addr);
    let smpp = match cfg.smpp.listen {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.with_context(|| format!("binding SMPP on {a}"))?),
        None => None,
    };
    let smpp_addr = smpp.as_ref().and_then(|l| l.local_addr().ok());
    let smpp_tls = match &cfg.smpp.tls {
        Some(t) => Some(
            tokio::net::TcpListener::bind(t.listen)
                .await
                .with_context(|| format!("binding SMPP over TLS on {}", t.listen))?,
        ),
        None => None,
    };
    let smpp_tls_addr = smpp_tls.as_ref().and_then(|l| l.local_addr().ok());
    let air = match cfg.air_listen {
        Some(a) => {
            Some(tokio::net::TcpListener::bind(a).await.with_context(|| format!("binding the air interface on {a}"))?)
        }
        None => None,
    };
    let air_addr = air.as_ref().and_then(|l| l.local_addr().ok());
    let gy = match cfg.ocs.as_ref().and_then(|o| o.gy_listen) {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.with_context(|| format!("binding Diameter Gy on {a}"))?),
        None => None,
    };
    let gy_addr = gy.as_ref().and_then(|l| l.local_addr().ok());
    let node = Node::open(cfg, Arc::new(SystemClock)).await?;
    tracing::info!(%addr, dns = ?dns_addr, smpp = ?smpp_addr, smpp_tls = ?smpp_tls_addr, air = ?air_addr, gy = ?gy_addr, operator = name, "operator node listening");
    crate::announce_listening(
        "operator",
        Some(&name),
        addr,
        tls,
        &[("dns", dns_addr), ("smpp", smpp_addr), ("smpp_tls", smpp_tls_addr), ("air", air_addr), ("gy", gy_addr)],
    );
    node.serve(Listeners { http: listener, enum_dns, smpp, smpp_tls, air, gy }, crate::shutdown_on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
