//! `numport npdb`: a standalone portability replica (next to an SMS router, say), or building
//! a replica's snapshot from an existing national database's CSV files.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use npdb::{Index, Operator};
use numport_core::{OperatorName, Prefix, RoutingNumber};
use numport_tls::ServerTls;
use replica::{Replica, ReplicaConfig};
use serde::{Deserialize, Serialize};

/// Where a standalone replica keeps its data when `[replica]` names no `data_dir`.
const DATA_DIR: &str = "data/npdb";

/// The standalone replica's configuration file. `replica.clearinghouse_url` and
/// `replica.api_token` have no default: a replica serves numbers on behalf of whoever reads
/// them, so which clearinghouse it follows is said, not assumed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NpdbConfig {
    /// HTTP: lookups, `/metrics` (unless `metrics_listen` is set), `/healthz`.
    pub listen: SocketAddr,
    /// Serve `/metrics` here instead of on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// The lookup API's certificate and key (`[tls]`).
    pub tls: Option<ServerTls>,
    /// Serve the lookup API without TLS: required, with no `[tls]`.
    pub plain_http: bool,
    pub replica: ReplicaConfig,
}

impl Default for NpdbConfig {
    fn default() -> Self {
        NpdbConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8600)),
            metrics_listen: None,
            tls: None,
            plain_http: false,
            replica: ReplicaConfig::default(),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration (every key optional).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Override `replica.data_dir` (default `data/npdb`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Override `listen` (HTTP).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Override `replica.enum_dns.listen` (UDP and TCP).
    #[arg(long)]
    enum_listen: Option<SocketAddr>,
    /// Override `replica.clearinghouse_url`.
    #[arg(long, env = "NUMPORT_CLEARINGHOUSE_URL")]
    clearinghouse_url: Option<String>,
    /// Serve the lookup API without TLS (`plain_http = true`).
    #[arg(long)]
    plain_http: bool,
    /// Override `replica.api_token`.
    #[arg(long, env = "NUMPORT_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    #[command(subcommand)]
    admin: Option<Admin>,
}

#[derive(Subcommand)]
enum Admin {
    /// Build the replica's snapshot from CSV files, so that it starts from an existing national
    /// database instead of downloading the clearinghouse's snapshot.
    Import {
        /// `name,routing_number` lines.
        #[arg(long)]
        operators: PathBuf,
        /// `prefix,operator` lines.
        #[arg(long)]
        ranges: PathBuf,
        /// `msisdn,operator` lines: the ported numbers.
        #[arg(long)]
        ported: Option<PathBuf>,
        /// The clearinghouse's change-log sequence the files are valid at; the replica follows
        /// the feed from there.
        #[arg(long, default_value_t = 0)]
        seq: i64,
        /// The clearinghouse's ranges version the ranges file matches (`ranges_version` of
        /// `GET /v1/routing/changes`); another version makes the replica reload the
        /// clearinghouse's snapshot at start.
        #[arg(long, default_value_t = 0)]
        ranges_version: i64,
    },
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg: NpdbConfig = crate::config::load(args.config.as_deref())?;
    if let Some(d) = args.data_dir {
        cfg.replica.data_dir = Some(d);
    }
    let dir = cfg.replica.data_dir.get_or_insert_with(|| DATA_DIR.into()).clone();
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    if let Some(l) = args.enum_listen {
        cfg.replica.enum_dns.listen = Some(l);
    }
    if let Some(u) = args.clearinghouse_url {
        cfg.replica.clearinghouse_url = Some(u);
    }
    if let Some(t) = args.api_token {
        cfg.replica.api_token = Some(t);
    }
    cfg.plain_http |= args.plain_http;
    match args.admin {
        None => serve(cfg).await,
        Some(Admin::Import { operators, ranges, ported, seq, ranges_version }) => {
            tokio::task::spawn_blocking(move || {
                import(&dir, &operators, &ranges, ported.as_deref(), seq, ranges_version)
            })
            .await??;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(cfg: NpdbConfig) -> anyhow::Result<ExitCode> {
    if let Some(key) = cfg.replica.missing_key() {
        anyhow::bail!(
            "replica.{key} is not set: give it in the configuration's [replica] table or with --{}",
            key.replace('_', "-")
        );
    }
    let tls = numport_tls::serving(cfg.tls.as_ref(), cfg.plain_http)?;
    let listener =
        tokio::net::TcpListener::bind(cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let enum_dns = match cfg.replica.enum_dns.listen {
        Some(a) => Some(replica::dns::bind(a).await.with_context(|| format!("binding ENUM on {a}"))?),
        None => None,
    };
    let registry = telemetry::Registry::new();
    let replica = Replica::open(cfg.replica.clone(), &registry).await?;
    let stop = crate::shutdown_on_signal();
    let background = stop.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(replica.clone().follow(background.clone()));
    let dns_addr = enum_dns.as_ref().map(|s| s.addr);
    if let Some(sockets) = enum_dns {
        let handler =
            replica::dns::EnumHandler::new(replica.clone(), &cfg.replica.enum_dns).map_err(anyhow::Error::msg)?;
        let stop = background.clone();
        tasks.spawn(async move {
            if let Err(e) = replica::dns::serve(handler, sockets, stop).await {
                tracing::error!(error = %e, "ENUM server stopped");
            }
        });
    }
    let health_replica = replica.clone();
    let health: telemetry::HealthCheck = std::sync::Arc::new(move || {
        let health = replica::http::Health::of(&health_replica);
        (health.npdb.ready, serde_json::to_value(health).unwrap_or_default())
    });
    let metrics = match cfg.metrics_listen {
        Some(addr) => {
            let router = telemetry::metrics_routes(registry);
            let (_, served) = numport_tls::http::serve_metrics(addr, router, cfg.tls.as_ref(), stop.clone())
                .await
                .with_context(|| format!("binding metrics on {addr}"))?;
            tasks.spawn(async move {
                let _ = served.await;
            });
            None
        }
        None => Some(registry),
    };
    let app = replica::http::server(replica.clone(), metrics, health);
    tracing::info!(%addr, dns = ?dns_addr, "portability replica listening");
    crate::announce_listening("npdb", None, addr, tls.is_some(), &[("dns", dns_addr)]);
    numport_tls::http::serve(listener, app, tls, stop.clone()).await?;
    background.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(ExitCode::SUCCESS)
}

/// Reads the CSV files into an index (with a progress bar over the ported numbers) and
/// installs it as the replica's snapshot.
fn import(
    dir: &Path,
    operators: &Path,
    ranges: &Path,
    ported: Option<&Path>,
    seq: i64,
    ranges_version: i64,
) -> anyhow::Result<()> {
    let ops: Vec<Operator> = csv_pairs(operators, "name")?
        .into_iter()
        .map(|(line, name, rn)| {
            Ok(Operator {
                name: name
                    .parse::<OperatorName>()
                    .map_err(|e| anyhow::anyhow!("{}:{line}: {e}", operators.display()))?,
                routing_number: rn
                    .parse::<RoutingNumber>()
                    .map_err(|e| anyhow::anyhow!("{}:{line}: {e}", operators.display()))?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let range_list: Vec<(Prefix, OperatorName)> = csv_pairs(ranges, "prefix")?
        .into_iter()
        .map(|(line, prefix, holder)| {
            let bad = |e: String| anyhow::anyhow!("{}:{line}: {e}", ranges.display());
            Ok((prefix.parse().map_err(|e| bad(format!("{e}")))?, holder.parse().map_err(|e| bad(format!("{e}")))?))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut index = Index::new(ops, range_list)?;
    if let Some(path) = ported {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let bar = ProgressBar::new(file.metadata()?.len()).with_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut reader = BufReader::with_capacity(1 << 20, bar.wrap_read(file));
        let mut line = Vec::new();
        let (mut lineno, mut records) = (0u64, 0u64);
        while reader.read_until(b'\n', &mut line)? > 0 {
            lineno += 1;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if !(text.is_empty() || text.starts_with(b"#") || (lineno == 1 && text.starts_with(b"msisdn"))) {
                let (key, op) = npdb::snapshot::parse_record(&index, text)
                    .map_err(|e| anyhow::anyhow!("{}:{lineno}: {e}", path.display()))?;
                index.set_serving_id(key, op)?;
                records += 1;
                if records % 100_000 == 0 {
                    bar.set_message(format!("{records} numbers"));
                }
            }
            line.clear();
        }
        bar.finish_with_message(format!("{records} numbers"));
    }
    replica::disk::install_index(dir, &index, seq, ranges_version)?;
    println!(
        "snapshot of {} ported numbers and {} ranges at seq {seq} written to {}",
        index.len(),
        index.range_count(),
        dir.display()
    );
    Ok(())
}

/// `(line number, first, second)` of a two-column CSV file, skipping a header whose first
/// field is `header`, blank lines and `#` comments.
fn csv_pairs(path: &Path, header: &str) -> anyhow::Result<Vec<(u64, String, String)>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut rdr =
        csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).comment(Some(b'#')).from_reader(file);
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("reading {}", path.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let (Some(a), Some(b)) = (rec.get(0), rec.get(1)) else {
            anyhow::bail!("{}:{line}: expected two fields", path.display());
        };
        if line == 1 && a.eq_ignore_ascii_case(header) {
            continue;
        }
        out.push((line, a.to_owned(), b.to_owned()));
    }
    Ok(out)
}
