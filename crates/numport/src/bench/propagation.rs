//! `numport bench propagation`: how long after a port settles at the clearinghouse every
//! replica answers the new route (F2).
//!
//! A cluster (clearinghouse and three operator nodes, each with its replica) plus one
//! standalone `numport npdb` replica: four replicas following the feed, over TLS unless
//! `--plain`. Ports run through the
//! real F1 flow at a steady rate. The benchmark tails the clearinghouse's change log; each
//! change's `effective_at` (the settlement's clock reading, in milliseconds, on this same
//! machine) starts its clock, and the benchmark polls every replica's batch lookup
//! (`POST /v1/lookup`, all pending numbers at once, every millisecond) until each names the
//! new operator. The figure per port is the time until the *last* replica answers it.
//!
//! Both ends of the measurement err on the slow side: `effective_at` is truncated to the
//! millisecond and a replica is seen to answer only at the next poll.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use numport_core::proof::PinStretch;
use numport_core::{Msisdn, OperatorName};
use numport_db::Db;
use tokio_util::sync::CancellationToken;

use numport::cluster::{Cluster, ClusterSpec};
use numport::launch::{Launched, launch};

use super::porting::{Bench, Port};

#[derive(clap::Args)]
pub struct Args {
    /// Ports to time.
    #[arg(long, default_value_t = 600)]
    ports: usize,
    /// Ports started per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
    /// Run every link without TLS, for measuring its cost.
    #[arg(long)]
    plain: bool,
    #[arg(long, default_value = "data/bench-propagation")]
    dir: PathBuf,
}

/// A settled change not yet seen at every replica.
struct Pending {
    operator: OperatorName,
    effective_at_ms: i64,
    /// Replicas that have answered it.
    seen: Vec<bool>,
}

fn now_ms_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stretch = PinStretch::FAST;
    eprintln!("setting up a cluster of three operators and a standalone replica ...");
    let cluster = Cluster::start(ClusterSpec {
        dir: args.dir.clone(),
        clearinghouse_db: None,
        subscribers_per_operator: args.ports.div_ceil(3),
        pin_stretch: stretch,
        clearinghouse: clearinghouse::ClearinghouseConfig::default(),
        tls: !args.plain,
        sms_auth: true,
    })
    .await?;
    let standalone = launch_standalone(&args, &cluster).await?;
    let mut replicas: Vec<(String, String)> =
        cluster.ops.iter().map(|o| (format!("{} node", o.name), o.proc.url())).collect();
    replicas.push(("standalone npdb".into(), standalone.url()));
    let http = cluster.http()?.tcp_nodelay(true).build()?;
    wait_loaded(&http, &replicas).await?;

    let bench = Arc::new(Bench::new(&cluster)?);
    let ports = Arc::new(Bench::ports(args.ports, stretch)?);
    let timings = Arc::new(Timings::new(replicas.len())?);
    let stop = CancellationToken::new();
    let tail = tokio::spawn(tail_changes(cluster.ch_db.clone(), bench.clone(), timings.clone(), stop.clone()));
    let urls: Vec<String> = replicas.iter().map(|(_, u)| format!("{u}/v1/lookup")).collect();
    let poller = tokio::spawn(poll_replicas(http, urls, timings.clone(), stop.clone()));

    eprintln!("{} ports at {}/s, watched at {} replicas ...", args.ports, args.rate, replicas.len());
    let failures = run_ports(&args, &bench, &ports).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while timings.timed.load(Ordering::Relaxed) + failures < args.ports && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let _ = tokio::join!(tail, poller);
    let unseen = timings.pending.lock().unwrap_or_else(|e| e.into_inner()).len();
    drop(standalone);
    cluster.stop().await;

    let h = timings.hist.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let replica_p99: serde_json::Map<String, serde_json::Value> = replicas
        .iter()
        .zip(timings.per_replica.iter())
        .map(|((name, _), h)| (name.clone(), ms(&h.lock().unwrap_or_else(|e| e.into_inner()), 0.99).into()))
        .collect();
    let report = serde_json::json!({
        "bench": "propagation",
        "tls": !args.plain,
        "replicas": replicas.len(),
        "ports": args.ports,
        "rate_per_s": args.rate,
        "timed": h.len(),
        "failed": failures,
        "never_seen_everywhere": unseen,
        "p50_ms": ms(&h, 0.50),
        "p99_ms": ms(&h, 0.99),
        "max_ms": ms(&h, 1.0),
        "p99_ms_by_replica": replica_p99,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if h.len() as usize == args.ports { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Starts the standalone `numport npdb` replica, following the cluster's clearinghouse with
/// opa's token.
async fn launch_standalone(args: &Args, cluster: &Cluster) -> anyhow::Result<Launched> {
    let config = args.dir.join("npdb-standalone.toml");
    cluster.write_npdb_config(&config, "opa")?;
    launch(
        &[
            "npdb".into(),
            "--config".into(),
            config.display().to_string(),
            "--data-dir".into(),
            args.dir.join("npdb-standalone").display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--enum-listen".into(),
            "127.0.0.1:0".into(),
            "--clearinghouse-url".into(),
            cluster.ch.url(),
            "--api-token".into(),
            cluster.op("opa").api_token.clone(),
        ],
        &args.dir.join("npdb-standalone.log"),
    )
    .await
}

/// Waits (up to 20 s each) until every replica, `(name, url)`, has loaded its snapshot.
async fn wait_loaded(http: &reqwest::Client, replicas: &[(String, String)]) -> anyhow::Result<()> {
    for (name, url) in replicas {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{url}/healthz")).send().await.ok();
            let body: Option<serde_json::Value> = match ready {
                Some(r) => r.json().await.ok(),
                None => None,
            };
            if body.is_some_and(|b| b["npdb"]["ready"] == true) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "replica {name} did not load its snapshot");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// What the change-log tail and the replica poller share.
struct Timings {
    /// Settled changes not yet answered by every replica.
    pending: Mutex<HashMap<Msisdn, Pending>>,
    /// Per change, µs from settlement until the last replica answered it.
    hist: Mutex<Histogram<u64>>,
    /// Per replica, µs from settlement until it answered.
    per_replica: Vec<Mutex<Histogram<u64>>>,
    /// Changes answered everywhere.
    timed: AtomicUsize,
}

impl Timings {
    fn new(replicas: usize) -> anyhow::Result<Timings> {
        Ok(Timings {
            pending: Mutex::default(),
            hist: Mutex::new(Histogram::new(3)?),
            per_replica: (0..replicas).map(|_| Histogram::new(3).map(Mutex::new)).collect::<Result<_, _>>()?,
            timed: AtomicUsize::new(0),
        })
    }

    /// Marks what each replica's answer (`bodies[r]` to the lookup of `numbers`) shows as
    /// seen at `now_ms`, and times the changes now seen everywhere.
    fn record(&self, numbers: &[String], bodies: &[Option<serde_json::Value>], now_ms: f64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (r, body) in bodies.iter().enumerate() {
            let Some(results) = body.as_ref().and_then(|b| b["results"].as_array()) else { continue };
            for (number, result) in numbers.iter().zip(results) {
                let Ok(msisdn) = number.parse::<Msisdn>() else { continue };
                let Some(p) = pending.get_mut(&msisdn) else { continue };
                if !p.seen[r] && result["operator"].as_str() == Some(p.operator.as_str()) {
                    p.seen[r] = true;
                    let us = ((now_ms - p.effective_at_ms as f64) * 1000.0).max(0.0) as u64;
                    let _ = self.per_replica[r].lock().unwrap_or_else(|e| e.into_inner()).record(us);
                }
            }
        }
        pending.retain(|_, p| {
            if p.seen.iter().all(|&s| s) {
                let us = ((now_ms - p.effective_at_ms as f64) * 1000.0).max(0.0) as u64;
                let _ = self.hist.lock().unwrap_or_else(|e| e.into_inner()).record(us);
                self.timed.fetch_add(1, Ordering::Relaxed);
                false
            } else {
                true
            }
        });
    }
}

/// Tails the change log: completes the handsets' ports and starts each change's clock.
async fn tail_changes(db: Db, bench: Arc<Bench>, timings: Arc<Timings>, stop: CancellationToken) {
    let replicas = timings.per_replica.len();
    let mut seq = 0;
    while !stop.is_cancelled() {
        let changes = match db.read().await {
            Ok(mut conn) => clearinghouse::store::routing::changes_after(&mut conn, seq, 10_000)
                .await
                .map(|p| p.changes)
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let now = Instant::now();
        for c in changes {
            seq = c.seq;
            bench.completed(&c.msisdn, now);
            let p = Pending { operator: c.operator, effective_at_ms: c.effective_at, seen: vec![false; replicas] };
            timings.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(c.msisdn, p);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Polls every replica's batch lookup (`urls`) for every pending number, every millisecond.
async fn poll_replicas(http: reqwest::Client, urls: Vec<String>, timings: Arc<Timings>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let numbers: Vec<String> =
            timings.pending.lock().unwrap_or_else(|e| e.into_inner()).keys().map(|m| m.to_string()).collect();
        if numbers.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let body = serde_json::json!({ "numbers": numbers });
        let answers = futures::future::join_all(urls.iter().map(|u| http.post(u).json(&body).send())).await;
        let mut bodies = Vec::with_capacity(answers.len());
        for a in answers {
            bodies.push(match a {
                Ok(r) => r.json::<serde_json::Value>().await.ok(),
                Err(_) => None,
            });
        }
        timings.record(&numbers, &bodies, now_ms_f64());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Starts `--ports` ports at `--rate` per second and waits for them; returns how many failed.
async fn run_ports(args: &Args, bench: &Arc<Bench>, ports: &Arc<Vec<Port>>) -> anyhow::Result<usize> {
    let t0 = tokio::time::Instant::now();
    let failures = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..args.ports {
        let at = t0 + Duration::from_secs_f64(i as f64 / args.rate);
        let (bench, ports, failures) = (bench.clone(), ports.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Err(e) = bench.port(&ports[i]).await
                && failures.fetch_add(1, Ordering::Relaxed) < 5
            {
                eprintln!("port {} failed: {e:#}", ports[i].msisdn);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(failures.load(Ordering::Relaxed))
}
