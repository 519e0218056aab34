//! `numport bench ocs`: the OCS (F4) as its own process (`numport ocs` on a fresh SQLite
//! database), driven over loopback Diameter Gy by the network simulator's load (crate
//! `network`, `network::load`), both on this machine.
//!
//! - Before: tariffs (1 minor unit per second) and `--accounts` funded accounts, written
//!   through the `ocs` crate as `numport ocs account` does; `rated_per_s`, the rating function
//!   alone on one core (`ocs::bench::rated_per_s`), measured while nothing else runs.
//! - (a) `ccr_per_s`, `p50_ms`: voice sessions (CCR-I, two U, T) as fast as the OCS answers,
//!   `--sessions` in flight over `--connections` Gy connections, for `--duration` s.
//! - (b) `p99_ms`: the same paced at `--rate` CCR/s; latency from the request's hand-over to
//!   the Diameter client to its answer.
//! - In both, one request in `--retransmit-every` is sent again with the T flag (same
//!   Session-Id and CC-Request-Number) and the answers compared.
//! - After: the OCS is stopped and its database opened here: `overdraft` from
//!   `Ocs::check_ledger` (which also checks that the books balance), and every account's
//!   charge against what its sessions reported as used. `double_charged` counts the
//!   retransmissions answered differently plus the accounts charged more than their sessions
//!   used.
//! - `simulator_ccr_per_core_s`: CCRs of phase (a) divided by the CPU seconds this process
//!   (the simulator alone) spent in it: what the load generator could send on one core.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use diameter::base::Identity;
use futures::future::try_join_all;
use network::load::{LoadConfig, LoadFigures};
use network::traffic::Subscribers;
use numport::launch::{Launched, launch};
use numport_core::{Money, SystemClock};
use numport_db::DbConfig;
use ocs::{Ocs, OcsConfig, Service, TariffRule, TimeBand};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of the open-loop phase (a).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of the paced phase (b).
    #[arg(long, default_value_t = 10.0)]
    paced_duration: f64,
    /// CCRs per second of the paced phase.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    /// Subscriber accounts the sessions are spread over.
    #[arg(long, default_value_t = 1000)]
    accounts: u64,
    /// Sessions in flight in phase (a).
    #[arg(long, default_value_t = 512)]
    sessions: usize,
    /// Sessions available to the pacer in phase (b).
    #[arg(long, default_value_t = 2000)]
    paced_sessions: usize,
    /// Gy connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// One request in this many is retransmitted with the T flag.
    #[arg(long, default_value_t = 20)]
    retransmit_every: u64,
    /// Seconds of rating alone for `rated_per_s`.
    #[arg(long, default_value_t = 2.0)]
    rating_s: f64,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
    /// Where the OCS's database and log go (a fresh directory inside it per run).
    #[arg(long, default_value = "data/bench-ocs")]
    dir: PathBuf,
}

const FIRST_ACCOUNT: u64 = 4_791_000_000;
const FUNDS: Money = Money(100_000_000);
const GATEWAY: (&str, &str) = ("bench-gw.numport.local", "numport.local");

async fn prepare(db: &DbConfig, accounts: u64) -> anyhow::Result<()> {
    let ocs = Ocs::open(db, OcsConfig::default(), Arc::new(SystemClock), &telemetry::Registry::new()).await?;
    ocs.set_tariffs(vec![TariffRule {
        service: Service::Voice,
        prefix: String::new(),
        band: TimeBand::ALL_DAY,
        price: Money(1),
        block: 1,
    }])
    .await?;
    let numbers: Vec<u64> = (0..accounts).map(|i| FIRST_ACCOUNT + i).collect();
    for chunk in numbers.chunks(200) {
        try_join_all(chunk.iter().map(|n| {
            let (ocs, msisdn) = (ocs.clone(), n.to_string());
            async move {
                ocs.create_account(&msisdn, Money::ZERO).await?;
                ocs.recharge(&msisdn, FUNDS, None, &format!("bench-{msisdn}")).await
            }
        }))
        .await?;
    }
    ocs.db().close().await;
    Ok(())
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// The OCS's group commits so far, from its `/metrics`: (seconds spent writing, effects).
async fn group_commits(ocs: &Launched) -> anyhow::Result<(f64, f64)> {
    let text = reqwest::get(format!("http://{}/metrics", ocs.http)).await?.error_for_status()?.text().await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
            .with_context(|| format!("{name} not in the OCS's /metrics"))
    };
    Ok((value("ocs_group_commit_latency_seconds_sum ")?, value("ocs_group_commit_effects_total ")?))
}

/// CPU seconds the OCS's thread `name` has used, from `/proc` (Linux): the group commit's
/// writer runs on the database's `db-tx` thread, so this is what the writer costs.
fn thread_cpu_seconds(ocs: &Launched, name: &str) -> Option<f64> {
    let pid = ocs.child.id()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = None;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        if std::fs::read_to_string(task.path().join("comm")).ok()?.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the command's closing parenthesis: state is the 3rd, utime the 14th.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let (user, system): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
        *total.get_or_insert(0.0) += (user + system) / ticks;
    }
    total
}

fn load_config(ocs: &Launched, args: &Args, phase: &str) -> anyhow::Result<LoadConfig> {
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Ok(LoadConfig {
        identity: Identity {
            origin_host: GATEWAY.0.into(),
            origin_realm: GATEWAY.1.into(),
            host_ip_addresses: vec![std::net::Ipv4Addr::LOCALHOST.into()],
            vendor_id: 0,
            product_name: "numport-bench".into(),
            origin_state_id: started.as_secs() as u32,
        },
        destination_realm: "numport.local".into(),
        ocs: ocs.diameter.context("the OCS announced no Diameter address")?,
        connections: args.connections,
        subscribers: Subscribers { first: FIRST_ACCOUNT, count: args.accounts.max(1) },
        sessions: args.sessions,
        rate: None,
        duration: Duration::try_from_secs_f64(args.duration)?,
        retransmit_every: args.retransmit_every,
        used_per_request: 30,
        run: format!("{};{}{}", GATEWAY.0, phase, started.as_secs()),
    })
}

/// What the books say after the run.
struct Books {
    overdraft: i64,
    /// Accounts charged more than their sessions used, and less.
    overcharged: u64,
    undercharged: u64,
    charged: i64,
}

async fn audit(db: &DbConfig, accounts: u64, runs: &[&LoadFigures]) -> anyhow::Result<Books> {
    let ocs = Ocs::open(db, OcsConfig::default(), Arc::new(SystemClock), &telemetry::Registry::new()).await?;
    let report = ocs.check_ledger().await.context("the OCS's books")?;
    let mut books = Books { overdraft: report.overdraft, overcharged: 0, undercharged: 0, charged: 0 };
    for i in 0..accounts {
        let msisdn = (FIRST_ACCOUNT + i).to_string();
        if runs.iter().any(|r| r.uncertain.contains(&msisdn)) {
            continue;
        }
        let b = ocs.balance(&msisdn).await?;
        let charged = FUNDS.0 - b.balance.0 - b.reserved.0;
        let used: u64 = runs.iter().filter_map(|r| r.used_s.get(&msisdn)).sum();
        books.charged += charged;
        match charged.cmp(&(used as i64)) {
            std::cmp::Ordering::Greater => books.overcharged += 1,
            std::cmp::Ordering::Less => books.undercharged += 1,
            std::cmp::Ordering::Equal => {}
        }
    }
    ocs.db().close().await;
    Ok(books)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = tempfile::tempdir_in(&args.dir)?;
    let db = DbConfig {
        url: format!("sqlite://{}", dir.path().join("ocs.db").display()),
        sessions: numport_db::DEFAULT_SESSIONS,
    };
    prepare(&db, args.accounts).await.context("preparing the OCS's accounts")?;
    let rating_s = Duration::try_from_secs_f64(args.rating_s)?;
    let rated_per_s = tokio::task::spawn_blocking(move || ocs::bench::rated_per_s(rating_s)).await?;

    let launch_args: Vec<String> = [
        "ocs",
        "--plain",
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--database-url",
        &db.url,
        "--peer",
        &format!("{},{}", GATEWAY.0, GATEWAY.1),
    ]
    .map(String::from)
    .to_vec();
    let mut ocs = launch(&launch_args, &dir.path().join("ocs.log")).await?;

    let open = load_config(&ocs, &args, "a")?;
    let (cpu, writer_cpu) = (cpu_seconds(), thread_cpu_seconds(&ocs, "db-tx"));
    let a = network::load::run(open).await?;
    let simulator_cpu_s = cpu_seconds() - cpu;
    let (commit_s, effects) = group_commits(&ocs).await?;
    let writer_cpu_s = thread_cpu_seconds(&ocs, "db-tx").zip(writer_cpu).map(|(after, before)| after - before);
    let paced = LoadConfig {
        rate: Some(args.rate),
        sessions: args.paced_sessions,
        duration: Duration::try_from_secs_f64(args.paced_duration)?,
        ..load_config(&ocs, &args, "b")?
    };
    let b = network::load::run(paced).await?;
    let load_average = load_average();
    ocs.stop().await;
    let books = audit(&db, args.accounts, &[&a, &b]).await?;

    let mut answers = a.answers.clone();
    for (k, v) in &b.answers {
        *answers.entry(*k).or_default() += v;
    }
    let figures = serde_json::json!({
        "ccr_per_s": a.ccr_per_s().round(),
        "p50_ms": a.quantile_ms(0.5),
        "p99_ms": b.quantile_ms(0.99),
        "rated_per_s": rated_per_s.round(),
        "overdraft": books.overdraft,
        "double_charged": a.answers_differ + b.answers_differ + books.overcharged,
        "requests": a.requests,
        "open_loop_p99_ms": a.quantile_ms(0.99),
        "paced_rate": args.rate,
        "paced_ccr_per_s": b.ccr_per_s().round(),
        "paced_p50_ms": b.quantile_ms(0.5),
        "paced_requests": b.requests,
        "retransmissions": a.retransmissions + b.retransmissions,
        "answers_differ": a.answers_differ + b.answers_differ,
        "accounts_overcharged": books.overcharged,
        "accounts_undercharged": books.undercharged,
        "charged": books.charged,
        "errors": a.errors + b.errors,
        "answers": answers,
        "simulator_ccr_per_core_s": (a.requests + a.retransmissions) as f64 / simulator_cpu_s.max(1e-9),
        "commit_us_per_ccr": commit_s * 1e6 / effects.max(1.0),
        "writer_cpu_us_per_ccr": writer_cpu_s.map(|s| s * 1e6 / effects.max(1.0)),
        "load_average": load_average,
    });
    if args.json {
        println!("{figures}");
    } else {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(ExitCode::SUCCESS)
}
