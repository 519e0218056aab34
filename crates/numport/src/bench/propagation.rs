//! `numport bench propagation`: how long after a port settles at the clearinghouse every
//! replica answers the new route (F2).
//!
//! A cluster (clearinghouse and three operator nodes, each with its replica) plus one
//! standalone `numport npdb` replica: four replicas following the feed. Ports run through the
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
use tokio_util::sync::CancellationToken;

use numport::cluster::{Cluster, ClusterSpec};
use numport::launch::launch;

use super::porting::Bench;

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
    })
    .await?;
    let standalone = launch(
        &[
            "npdb".into(),
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
    .await?;
    let mut replicas: Vec<(String, String)> =
        cluster.ops.iter().map(|o| (format!("{} node", o.name), o.proc.url())).collect();
    replicas.push(("standalone npdb".into(), standalone.url()));
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    for (name, url) in &replicas {
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

    let bench = Arc::new(Bench::new(&cluster)?);
    let ports = Arc::new(Bench::ports(args.ports, stretch)?);
    let pending: Arc<Mutex<HashMap<Msisdn, Pending>>> = Arc::default();
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let per_replica: Arc<Vec<Mutex<Histogram<u64>>>> =
        Arc::new((0..replicas.len()).map(|_| Histogram::new(3).map(Mutex::new)).collect::<Result<_, _>>()?);
    let stop = CancellationToken::new();

    // Tail the change log: completes the handsets' ports and starts each change's clock.
    let tail = {
        let (db, bench, pending, stop, n) =
            (cluster.ch_db.clone(), bench.clone(), pending.clone(), stop.clone(), replicas.len());
        tokio::spawn(async move {
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
                    let p = Pending { operator: c.operator, effective_at_ms: c.effective_at, seen: vec![false; n] };
                    pending.lock().unwrap_or_else(|e| e.into_inner()).insert(c.msisdn, p);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    // Poll every replica for every pending number.
    let timed = Arc::new(AtomicUsize::new(0));
    let poller = {
        let (pending, hist, per_replica, stop, timed, http) =
            (pending.clone(), hist.clone(), per_replica.clone(), stop.clone(), timed.clone(), http.clone());
        let urls: Vec<String> = replicas.iter().map(|(_, u)| format!("{u}/v1/lookup")).collect();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let numbers: Vec<String> =
                    pending.lock().unwrap_or_else(|e| e.into_inner()).keys().map(|m| m.to_string()).collect();
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
                let now = now_ms_f64();
                {
                    let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
                    for (r, body) in bodies.iter().enumerate() {
                        let Some(results) = body.as_ref().and_then(|b| b["results"].as_array()) else { continue };
                        for (number, result) in numbers.iter().zip(results) {
                            let Ok(msisdn) = number.parse::<Msisdn>() else { continue };
                            let Some(p) = pending.get_mut(&msisdn) else { continue };
                            if !p.seen[r] && result["operator"].as_str() == Some(p.operator.as_str()) {
                                p.seen[r] = true;
                                let us = ((now - p.effective_at_ms as f64) * 1000.0).max(0.0) as u64;
                                let _ = per_replica[r].lock().unwrap_or_else(|e| e.into_inner()).record(us);
                            }
                        }
                    }
                    pending.retain(|_, p| {
                        if p.seen.iter().all(|&s| s) {
                            let us = ((now - p.effective_at_ms as f64) * 1000.0).max(0.0) as u64;
                            let _ = hist.lock().unwrap_or_else(|e| e.into_inner()).record(us);
                            timed.fetch_add(1, Ordering::Relaxed);
                            false
                        } else {
                            true
                        }
                    });
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    eprintln!("{} ports at {}/s, watched at {} replicas ...", args.ports, args.rate, replicas.len());
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while timed.load(Ordering::Relaxed) + failures.load(Ordering::Relaxed) < args.ports && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let _ = tokio::join!(tail, poller);
    let unseen = pending.lock().unwrap_or_else(|e| e.into_inner()).len();
    drop(standalone);
    cluster.stop().await;

    let h = hist.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let replica_p99: serde_json::Map<String, serde_json::Value> = replicas
        .iter()
        .zip(per_replica.iter())
        .map(|((name, _), h)| (name.clone(), ms(&h.lock().unwrap_or_else(|e| e.into_inner()), 0.99).into()))
        .collect();
    let report = serde_json::json!({
        "bench": "propagation",
        "replicas": replicas.len(),
        "ports": args.ports,
        "rate_per_s": args.rate,
        "timed": h.len(),
        "failed": failures.load(Ordering::Relaxed),
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
