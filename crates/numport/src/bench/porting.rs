//! `numport bench porting`: complete ports through the real HTTP API.
//!
//! The benchmark plays the handsets. For each port it attaches the subscriber's SIM to the
//! donor node's air interface and sends the port-out authorisation by SMS to the donor's
//! service number, and sends the port-in request to the recipient node, as a subscriber
//! would; the three operator processes and the clearinghouse do the rest on their
//! own (deposit, credit query, credit information, decision, settlement). A port counts as
//! complete when its routing change appears in the clearinghouse's change log, which the
//! benchmark follows through the API as the operators' replicas do: "request to routing
//! record".
//!
//! Two phases: saturation (a fixed number of handsets in a closed loop) gives `ports_per_s`;
//! then an open loop at half that rate gives the latency figures `p50_ms` and `p99_ms`.
//! Every link runs over TLS, as deployed; `--plain` runs the same without, for its cost.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clearinghouse::store::audit::Milestones;
use clearinghouse_api::model::PortingRequest;
use hdrhistogram::Histogram;
use numport_core::proof::{Nonce, PinStretch, PortKey};
use numport_core::{Clock, Msisdn, OperatorName, SystemClock};
use numport_db::testing::TempDatabase;
use operator::PortOutText;
use tokio::sync::oneshot;

use numport::cluster::{Cluster, ClusterSpec, OPERATORS, sim_of, subscriber_number, terminal_key};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(clap::Args)]
pub struct Args {
    /// The clearinghouse's database (operator nodes keep SQLite).
    #[arg(long, value_enum, default_value = "sqlite")]
    db: DbKind,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
    /// Run every link without TLS, for measuring its cost.
    #[arg(long)]
    plain: bool,
    /// Ports in the saturation phase (the half-load phase runs half as many).
    #[arg(long, default_value_t = 6000)]
    ports: usize,
    /// Rate of the latency phase, ports per second (default: half the saturation rate), so
    /// that two builds' latencies can be compared at the same load.
    #[arg(long)]
    latency_rate: Option<f64>,
    /// Handsets porting at once in the saturation phase.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Server to create a fresh benchmark database on, for `--db postgres`.
    #[arg(long, env = "NUMPORT_BENCH_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    #[arg(long, default_value = "data/bench-porting")]
    dir: PathBuf,
    /// Write each port of the half-load phase to this CSV file: its start and latency, and
    /// its steps as the clearinghouse's audit trail times them (see `Steps`).
    #[arg(long)]
    trace: Option<PathBuf>,
}

/// One handset's port: who, from where to where, its SIM and its port key.
pub(super) struct Port {
    pub msisdn: Msisdn,
    pub donor: usize,
    pub recipient: usize,
    pub imsi: String,
    pub k_sim: Vec<u8>,
    pub key: PortKey,
}

pub(super) type Waiters = Arc<Mutex<HashMap<Msisdn, oneshot::Sender<Instant>>>>;

/// The handsets' side of a cluster: starts ports at the operator nodes, and learns of their
/// completion from whoever tails the change log ([`Bench::completed`]).
pub(super) struct Bench {
    pub http: reqwest::Client,
    pub node_urls: Vec<String>,
    /// Each node's air interface, where its subscribers' handsets attach.
    pub air: Vec<std::net::SocketAddr>,
    pub names: Vec<OperatorName>,
    pub waiters: Waiters,
}

impl Bench {
    pub(super) fn new(cluster: &Cluster) -> anyhow::Result<Bench> {
        Ok(Bench {
            http: cluster.http()?.pool_max_idle_per_host(1024).tcp_nodelay(true).build()?,
            node_urls: cluster.ops.iter().map(|o| o.proc.url()).collect(),
            air: cluster
                .ops
                .iter()
                .map(|o| o.proc.air.context("an operator runs no air interface"))
                .collect::<anyhow::Result<_>>()?,
            names: cluster.ops.iter().map(|o| o.name.clone()).collect(),
            waiters: Arc::default(),
        })
    }

    /// `total` ports: port i from operator i%3 to the next one, each number once.
    pub(super) fn ports(total: usize, stretch: PinStretch) -> anyhow::Result<Vec<Port>> {
        (0..total)
            .map(|i| {
                let donor = i % 3;
                let msisdn = subscriber_number(OPERATORS[donor].2, i / 3);
                let key = terminal_key(&msisdn, stretch)?;
                let (imsi, k_sim) = sim_of(&msisdn);
                Ok(Port { msisdn, donor, recipient: (donor + 1) % 3, imsi, k_sim, key })
            })
            .collect()
    }

    /// The change log shows `msisdn` moved: the handset waiting for it is done.
    pub(super) fn completed(&self, msisdn: &Msisdn, at: Instant) {
        if let Some(tx) = self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(msisdn) {
            let _ = tx.send(at);
        }
    }

    /// The handset's authorisation: attach to the donor's air interface with the SIM, send
    /// `auth` to the service number, and return the `SubmitAck` cause.
    async fn authorise(&self, p: &Port, auth: &PortOutText) -> anyhow::Result<u8> {
        let mut air = tokio::net::TcpStream::connect(self.air[p.donor]).await?;
        air.set_nodelay(true)?;
        if let Err(cause) = operator::air::attach_terminal(&mut air, &p.imsi, &p.k_sim).await? {
            anyhow::bail!("attach refused (cause {cause})");
        }
        Ok(operator::air::send_authorisation(&mut air, operator::config::DEFAULT_SERVICE_NUMBER, auth, 1).await?)
    }

    /// Run one port and return its latency, request to routing record.
    pub(super) async fn port(&self, p: &Port) -> anyhow::Result<Duration> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(p.msisdn.clone(), tx);
        let started = Instant::now();
        let nonce = Nonce(rand::random());
        let expiry = SystemClock.now_ms() + 300_000;
        let recipient = &self.names[p.recipient];
        let auth = PortOutText { recipient: recipient.clone(), nonce, expiry, msisdn: None };
        let req = PortingRequest {
            msisdn: p.msisdn.clone(),
            nonce: nonce.to_hex(),
            expiry,
            proof: p.key.prove(&nonce, &p.msisdn, recipient, expiry).to_hex(),
        };
        let to_recipient =
            self.http.post(format!("{}/v1/self-service/port-in", self.node_urls[p.recipient])).json(&req).send();
        let (d, r) = tokio::join!(self.authorise(p, &auth), to_recipient);
        let r = r?;
        let cause = d?;
        anyhow::ensure!(
            cause == sms::air::CAUSE_OK,
            "donor refused the authorisation: {} (RP-cause {cause})",
            operator::air::cause_text(cause)
        );
        anyhow::ensure!(
            r.status().is_success(),
            "recipient refused the port-in: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
        let done =
            tokio::time::timeout(Duration::from_secs(30), rx).await.context("port not completed within 30 s")??;
        Ok(done.duration_since(started))
    }
}

/// Follow the routing change log as the operators' replicas do, long-polling
/// `GET /v1/routing/changes` with their page size, and wake the handset whose number just
/// moved: the port is complete when a follower can see it.
async fn tail_changes(
    client: clearinghouse_api::ClearinghouseClient,
    page_size: i64,
    bench: Arc<Bench>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut seq = 0;
    while !stop.is_cancelled() {
        let page = tokio::select! {
            _ = stop.cancelled() => return,
            page = client.routing_changes(seq, page_size, TAIL_WAIT_MS) => page,
        };
        let now = Instant::now();
        match page {
            Ok(page) => {
                if let Some(last) = page.changes.last() {
                    seq = last.seq;
                }
                for c in page.changes {
                    bench.completed(&c.msisdn, now);
                }
            }
            // The clearinghouse is busy or restarting: ask again shortly; a port whose change
            // is never seen fails by its own timeout.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// How long one long-poll of the change log waits for a change.
const TAIL_WAIT_MS: u64 = 5_000;

/// Count one port's outcome: its latency, or a failure (the first few are printed).
fn record(result: anyhow::Result<Duration>, port: &Port, hist: &Mutex<Histogram<u64>>, failures: &AtomicUsize) {
    match result {
        Ok(d) => {
            let _ = hist.lock().unwrap_or_else(|e| e.into_inner()).record(d.as_micros() as u64);
        }
        Err(e) => {
            if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("port {} failed: {e:#}", port.msisdn);
            }
        }
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let half = args.ports / 2;
    let total = args.ports + half;
    let stretch = PinStretch::FAST;
    let (cluster, pg_db) = start_cluster(&args, total.div_ceil(OPERATORS.len()), stretch).await?;

    let ports = Arc::new(Bench::ports(total, stretch)?);
    let bench = Arc::new(Bench::new(&cluster)?);
    let stop = tokio_util::sync::CancellationToken::new();
    let tail = tokio::spawn(tail_changes(
        cluster.ops[0].ch_client.clone(),
        replica::ReplicaConfig::default().page_size,
        bench.clone(),
        stop.clone(),
    ));
    let failures = Arc::new(AtomicUsize::new(0));
    let (sat, ports_per_s) = saturation(&args, &bench, &ports, &failures).await?;
    // Open loop at half the measured rate, or the rate asked for.
    let rate = args.latency_rate.unwrap_or(ports_per_s / 2.0).max(1.0);
    let (hl, traced) = half_load(args.ports..total, rate, &bench, &ports, &failures).await?;
    stop.cancel();
    let _ = tail.await;

    let mut conn = cluster.ch_db.read().await?;
    let ledger = clearinghouse::store::ledger::check(&mut conn).await?;
    let completed = clearinghouse::store::routing::head(&mut conn).await?;
    let milestones: HashMap<String, Milestones> =
        clearinghouse::store::audit::milestones(&mut conn).await?.into_iter().map(|m| (m.msisdn.clone(), m)).collect();
    drop(conn);
    let steps: Vec<Steps> = traced
        .iter()
        .filter_map(|&(i, started, latency)| {
            Steps::of(&ports[i].msisdn, started, latency, milestones.get(ports[i].msisdn.as_str())?)
        })
        .collect();
    if let Some(path) = &args.trace {
        Steps::write_csv(&steps, path)?;
    }
    cluster.stop().await;
    if let Some(db) = pg_db {
        let _ = db.remove().await;
    }

    let failed = failures.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "bench": "porting",
        "tls": !args.plain,
        "db": match args.db { DbKind::Sqlite => "sqlite", DbKind::Postgres => "postgres" },
        "ports": total,
        "completed": completed,
        "failed": failed,
        "ledger_sound": ledger.is_sound(),
        "concurrency": args.concurrency,
        "ports_per_s": (ports_per_s * 10.0).round() / 10.0,
        "half_load_rate_per_s": rate.round(),
        "p50_ms": ms(&hl, 0.50),
        "p99_ms": ms(&hl, 0.99),
        "saturation_p50_ms": ms(&sat, 0.50),
        "saturation_p99_ms": ms(&sat, 0.99),
        "half_load_steps_ms": Steps::summary(&steps),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    let ok = failed == 0 && ledger.is_sound() && completed as usize == total;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Starts the cluster with `per_op` subscribers at each operator; for `--db postgres` the
/// clearinghouse gets a fresh database, whose name is returned for dropping afterwards.
async fn start_cluster(
    args: &Args,
    per_op: usize,
    stretch: PinStretch,
) -> anyhow::Result<(Cluster, Option<TempDatabase>)> {
    // A database of the run's own, dropped at its end (or, should the run fail, when this is).
    let pg_db = match args.db {
        DbKind::Sqlite => None,
        DbKind::Postgres => Some(
            TempDatabase::create_on(&args.postgres_url, "np_bench")
                .await
                .with_context(|| format!("creating a database on {}", args.postgres_url))?,
        ),
    };
    let clearinghouse_db = pg_db.as_ref().map(|db| db.url().to_owned());
    eprintln!("setting up: {} subscribers at each of 3 operators ...", per_op);
    let cluster = Cluster::start(ClusterSpec {
        dir: args.dir.clone(),
        clearinghouse_db,
        subscribers_per_operator: per_op,
        pin_stretch: stretch,
        clearinghouse: clearinghouse::ClearinghouseConfig::default(),
        tls: !args.plain,
        sms_auth: true,
    })
    .await?;
    Ok((cluster, pg_db))
}

/// Phase 1: the first `--ports` ports by `--concurrency` handsets in a closed loop. Returns
/// their latencies and the rate of the ports that completed.
async fn saturation(
    args: &Args,
    bench: &Arc<Bench>,
    ports: &Arc<Vec<Port>>,
    failures: &Arc<AtomicUsize>,
) -> anyhow::Result<(Histogram<u64>, f64)> {
    eprintln!("saturation: {} ports, {} handsets at once ...", args.ports, args.concurrency);
    let next = Arc::new(AtomicUsize::new(0));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (bench, ports, next, hist, failures) =
            (bench.clone(), ports.clone(), next.clone(), hist.clone(), failures.clone());
        let limit = args.ports;
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                record(bench.port(&ports[i]).await, &ports[i], &hist, &failures);
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let done = args.ports - failures.load(Ordering::Relaxed);
    let ports_per_s = done as f64 / t0.elapsed().as_secs_f64();
    let hist = hist.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok((hist, ports_per_s))
}

/// A traced port of the half-load phase: its index, start (µs since the Unix epoch) and
/// latency (µs).
type Traced = (usize, i64, i64);

/// Phase 2: ports `range` started at `rate` per second, an open loop. Returns their latencies
/// and the trace of each completed one.
async fn half_load(
    range: std::ops::Range<usize>,
    rate: f64,
    bench: &Arc<Bench>,
    ports: &Arc<Vec<Port>>,
    failures: &Arc<AtomicUsize>,
) -> anyhow::Result<(Histogram<u64>, Vec<Traced>)> {
    eprintln!("half load: {} ports at {rate:.0}/s ...", range.len());
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let trace = Arc::new(Mutex::new(Vec::new()));
    let t1 = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for (k, i) in range.enumerate() {
        let at = t1 + Duration::from_secs_f64(k as f64 / rate);
        let (bench, ports, hist, failures, trace) =
            (bench.clone(), ports.clone(), hist.clone(), failures.clone(), trace.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let started = unix_us();
            let result = bench.port(&ports[i]).await;
            if let Ok(latency) = &result {
                trace.lock().unwrap_or_else(|e| e.into_inner()).push((i, started, latency.as_micros() as i64));
            }
            record(result, &ports[i], &hist, &failures);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let hist = hist.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let traced = std::mem::take(&mut *trace.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((hist, traced))
}

fn unix_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Where one port of the half-load phase spent its time, in ms: the benchmark's clock at both
/// ends, the clearinghouse's (ms, the same machine) between.
struct Steps {
    msisdn: String,
    started_unix_us: i64,
    latency_us: i64,
    /// Each of [`Steps::NAMES`], in that order.
    ms: [f64; 5],
}

impl Steps {
    /// Handset to recipient node to the clearinghouse's new order; the deposit matched, the
    /// credit query to the donor and its answer in; the credit information to the recipient and
    /// its acceptance in; waiting for the settler, and its batch; the settled change to a
    /// follower of the change log.
    const NAMES: [&str; 5] = ["to_order", "credit_query", "decision", "settlement", "to_follower"];

    fn of(msisdn: &Msisdn, started_unix_us: i64, latency_us: i64, m: &Milestones) -> Option<Steps> {
        let started = started_unix_us as f64 / 1000.0;
        let seen = (started_unix_us + latency_us) as f64 / 1000.0;
        let (created, credit, accepted, completed) =
            (m.created_at as f64, m.credit_info_at? as f64, m.accepted_at? as f64, m.completed_at? as f64);
        let ms = [created - started, credit - created, accepted - credit, completed - accepted, seen - completed];
        Some(Steps { msisdn: msisdn.to_string(), started_unix_us, latency_us, ms })
    }

    /// Writes `steps` to `path` as CSV, one line per port.
    fn write_csv(steps: &[Steps], path: &std::path::Path) -> anyhow::Result<()> {
        let mut csv = Steps::csv_header();
        for s in steps {
            csv.push_str(&s.csv_line());
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
    }

    fn csv_header() -> String {
        let steps = Steps::NAMES.map(|name| format!("{name}_ms"));
        format!("msisdn,started_unix_us,latency_us,{}\n", steps.join(","))
    }

    fn csv_line(&self) -> String {
        let ms = self.ms.map(|x| format!("{x:.1}"));
        format!("{},{},{},{}\n", self.msisdn, self.started_unix_us, self.latency_us, ms.join(","))
    }

    /// p50 and p99 of each step over `steps`.
    fn summary(steps: &[Steps]) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (k, name) in Steps::NAMES.iter().enumerate() {
            let mut v: Vec<f64> = steps.iter().map(|s| s.ms[k]).collect();
            v.sort_by(f64::total_cmp);
            let at = |q: f64| {
                let i = ((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1));
                v.get(i).map(|x| (x * 10.0).round() / 10.0)
            };
            out.insert((*name).into(), serde_json::json!({ "p50": at(0.50), "p99": at(0.99) }));
        }
        out.into()
    }
}
