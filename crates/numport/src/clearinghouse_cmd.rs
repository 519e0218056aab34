//! `numport clearinghouse`: serve, or administer the clearinghouse database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use clearinghouse::{Clearinghouse, ClearinghouseConfig, admin};
use numport_core::{Clock, Money, OperatorName, RoutingNumber, SystemClock};
use numport_db::Db;

#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration (every key optional; see docs/OPERATIONS.md).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override `listen`.
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Override `database_url` (`sqlite://…` or `postgres://…`).
    #[arg(long, global = true, env = "NUMPORT_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    admin: Option<Admin>,
}

#[derive(Subcommand)]
enum Admin {
    /// Create or update the schema, and the master key file if missing.
    Init,
    /// Register an operator and open its settlement account.
    AddOperator {
        name: OperatorName,
        #[arg(long)]
        routing_number: RoutingNumber,
        #[arg(long)]
        callback_url: Option<String>,
    },
    /// List registered operators.
    Operators,
    /// Issue (or rotate) an operator's API key and callback secret; prints them once.
    Credentials {
        operator: String,
        /// Seconds the previous key keeps working.
        #[arg(long, default_value_t = 0)]
        grace_secs: i64,
    },
    /// Load number ranges from a CSV file of `prefix,operator` lines.
    LoadRanges { file: PathBuf },
    /// Load an existing national database's ported numbers from a CSV file of
    /// `msisdn,operator` lines; each becomes a record and a routing change.
    ImportPorted { file: PathBuf },
    /// Pay into an operator's settlement account (amount like 1000.00).
    Fund {
        operator: String,
        amount: Money,
        /// Makes a repeated command a no-op.
        #[arg(long)]
        key: String,
    },
    /// List deadline violations of all operators.
    Violations,
    /// Check the ledger (balances sum to zero, match their postings) and print balances.
    Ledger,
}

fn resolve(args: &Args) -> anyhow::Result<ClearinghouseConfig> {
    let mut cfg: ClearinghouseConfig = crate::config::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(u) = &args.database_url {
        cfg.database_url = u.clone();
    }
    Ok(cfg)
}

pub async fn open_db(cfg: &ClearinghouseConfig) -> anyhow::Result<Db> {
    clearinghouse::store::open(&cfg.database()).await.with_context(|| format!("opening {}", cfg.database_url))
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = resolve(&args)?;
    let db = open_db(&cfg).await?;
    let now = SystemClock.now_ms();
    let Some(cmd) = args.admin else { return serve(cfg, db).await };
    match cmd {
        Admin::Init => {
            admin::load_or_create_master_key(&cfg.master_key_path)?;
            println!("schema up to date; master key at {}", cfg.master_key_path.display());
        }
        Admin::AddOperator { name, routing_number, callback_url } => {
            let op = admin::register_operator(&db, &name, &routing_number, callback_url.as_deref(), now).await?;
            println!("registered {} (routing number {})", op.name, op.routing_number);
        }
        Admin::Operators => {
            let mut conn = db.acquire().await?;
            for op in clearinghouse::store::operators::list(&mut conn).await? {
                println!("{}\t{}\t{}", op.name, op.routing_number, op.callback_url.unwrap_or_else(|| "-".into()));
            }
        }
        Admin::Credentials { operator, grace_secs } => {
            let key = admin::load_or_create_master_key(&cfg.master_key_path)?;
            let creds = admin::issue_credentials(&db, &key, &operator, grace_secs * 1000, now).await?;
            println!("{}", serde_json::to_string_pretty(&creds)?);
        }
        Admin::LoadRanges { file } => {
            let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let n = admin::load_ranges_csv(&db, std::io::BufReader::new(f), now).await?;
            println!("loaded {n} ranges");
        }
        Admin::ImportPorted { file } => {
            let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let bar = indicatif::ProgressBar::new(f.metadata()?.len()).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta} left)")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let reader = std::io::BufReader::with_capacity(1 << 20, bar.wrap_read(f));
            let report =
                admin::import_ported_csv(&db, reader, now, |lines| bar.set_message(format!("{lines} lines"))).await?;
            bar.finish();
            println!(
                "imported {} ported numbers ({} lines named the range holder and were skipped)",
                report.imported, report.range_holder
            );
        }
        Admin::Fund { operator, amount, key } => {
            let (posted, balance) = admin::fund(&db, &operator, amount, &key, now).await?;
            let what = match posted {
                clearinghouse::store::ledger::Posted::New(_) => "funded",
                clearinghouse::store::ledger::Posted::Already(_) => "already funded under this key",
            };
            println!("{operator}: {what}; balance {balance}");
        }
        Admin::Violations => {
            let ch = Clearinghouse::new(db.clone(), Arc::new(SystemClock), cfg.clone(), [0; 32]);
            let mut conn = db.acquire().await?;
            for v in ch.violations(&mut conn, None, 10_000).await? {
                println!(
                    "{}\t{}\torder {}\t{}\tlate by {} ms",
                    v.operator,
                    v.kind.as_str(),
                    v.order_id,
                    v.step,
                    v.lateness_ms
                );
            }
        }
        Admin::Ledger => {
            let mut conn = db.acquire().await?;
            for (name, balance) in clearinghouse::store::ledger::balances(&mut conn).await? {
                println!("{name}\t{balance}");
            }
            let check = clearinghouse::store::ledger::check(&mut conn).await?;
            if !check.is_sound() {
                println!("LEDGER UNSOUND: {check:?}");
                return Ok(ExitCode::FAILURE);
            }
            println!("ledger sound: balances and postings sum to zero");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(cfg: ClearinghouseConfig, db: Db) -> anyhow::Result<ExitCode> {
    let tls = numport_tls::serving(cfg.tls.as_ref(), cfg.plain_http)?.is_some();
    let key = admin::load_or_create_master_key(&cfg.master_key_path)?;
    {
        let mut conn = db.acquire().await?;
        let check = clearinghouse::store::ledger::check(&mut conn).await?;
        anyhow::ensure!(check.is_sound(), "ledger check failed at startup: {check:?}");
    }
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let ch = Clearinghouse::new(db.clone(), Arc::new(SystemClock), cfg, key);
    tracing::info!(%addr, "clearinghouse listening");
    crate::announce_listening("clearinghouse", None, addr, tls, &[]);
    clearinghouse::run(ch, listener, crate::shutdown_on_signal()).await?;
    db.close().await;
    Ok(ExitCode::SUCCESS)
}
