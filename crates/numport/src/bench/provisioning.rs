//! `numport bench provisioning`: the provisioning device under overload (F6).
//!
//! One operator node as a process (`numport operator`, SQLite), and its three network elements
//! (HLR/HSS, SMS center list, charging) as servers on loopback sockets in this process, so the
//! benchmark can change their capacity and read what they counted. Orders go through the
//! node's HTTP API, as the business side would send them.
//!
//! 1. **throughput**: `--throughput-orders` port-in activations (three commands each) queued as
//!    fast as the API takes them, elements at `--throughput-capacity`; `commands_per_s` is the
//!    commands over the time until the node reports the last outcome recorded in its database.
//! 2. **overload**: steady mixed load (port-ins, service orders on existing subscribers, bulk
//!    plan changes), elements at `--capacity`; after `--baseline-s` the HLR drops to
//!    `--overload-share` of its capacity for `--overload-s`, then recovers for `--recovery-s`;
//!    then the load stops and the queues drain. A port-in's latency is from the start of the
//!    request that queued it until the last element executed its command (the elements' own
//!    clock); `priority_p99_ms_baseline` and `_overload` are by the request's start.
//!    `capacity_violations` is what the elements counted beyond their capacity; `lost` the
//!    acknowledged orders the node's database does not hold as executed at the end.
//!    With `--crash` the node is killed (SIGKILL) in the middle of the overload and restarted.
//!    From the node's status, sampled every 100 ms: `highest_state_during_overload` and
//!    `deepest_queue_during_overload` per category, and `transitions`, every state change
//!    with its cause over both of the node's lives.
//!
//! The same run writes an SVG plot of the queue depths and protection states over time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use numport_core::Msisdn;
use operator::OperatorConfig;
use provisioning::element::{ElementConfig, ElementServer};
use provisioning::{Action, Element, Order, Origin};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use numport::launch::{Launched, launch};

#[derive(clap::Args)]
pub struct Args {
    /// Port-in orders of the throughput phase (three commands each).
    #[arg(long, default_value_t = 20_000)]
    throughput_orders: usize,
    /// Each element's capacity (commands/s) in the throughput phase.
    #[arg(long, default_value_t = 20_000)]
    throughput_capacity: u32,
    /// Each element's capacity (commands/s) in the overload scenario.
    #[arg(long, default_value_t = 4_000)]
    capacity: u32,
    /// Port-in orders per second offered (activation, high priority).
    #[arg(long, default_value_t = 100.0)]
    port_ins: f64,
    /// Service orders per second offered (bar, unbar, plan change; medium).
    #[arg(long, default_value_t = 200.0)]
    service: f64,
    /// Bulk plan changes per second offered (low).
    #[arg(long, default_value_t = 800.0)]
    bulk: f64,
    #[arg(long, default_value_t = 5.0)]
    baseline_s: f64,
    #[arg(long, default_value_t = 10.0)]
    overload_s: f64,
    #[arg(long, default_value_t = 5.0)]
    recovery_s: f64,
    /// The HLR's share of its capacity during the overload.
    #[arg(long, default_value_t = 0.2)]
    overload_share: f64,
    /// Kill the node with SIGKILL in the middle of the overload, and restart it.
    #[arg(long)]
    crash: bool,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "data/bench-provisioning")]
    dir: PathBuf,
    /// Where to write the plot; default `<dir>/provisioning.svg`.
    #[arg(long)]
    plot: Option<PathBuf>,
}

const TOKEN: &str = "bench-provisioning-token";

/// Numbers: port-ins of the throughput phase, port-ins of the overload, existing subscribers.
const THROUGHPUT_BASE: u64 = 4_792_000_000;
const PORT_IN_BASE: u64 = 4_793_000_000;
const EXISTING_BASE: u64 = 4_794_000_000;
const EXISTING: u64 = 20_000;

fn number(base: u64, i: u64) -> Msisdn {
    (base + i).to_string().parse().unwrap_or_else(|_| unreachable!("ten digits starting with 4 is a number"))
}

/// The node process, restartable, and where it listens now.
struct NodeProc {
    launched: Launched,
    config: PathBuf,
    log: PathBuf,
    url: Arc<RwLock<String>>,
}

impl NodeProc {
    async fn start(config: PathBuf, log: PathBuf) -> anyhow::Result<NodeProc> {
        let launched = launch(&node_args(&config), &log).await?;
        let url = Arc::new(RwLock::new(launched.url()));
        Ok(NodeProc { launched, config, log, url })
    }

    async fn restart_after_kill(&mut self) -> anyhow::Result<()> {
        self.launched.kill_hard().await?;
        self.launched = launch(&node_args(&self.config), &self.log).await?;
        *self.url.write().unwrap_or_else(|e| e.into_inner()) = self.launched.url();
        Ok(())
    }

    fn url(&self) -> String {
        self.url.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn node_args(config: &Path) -> Vec<String> {
    vec!["operator".into(), "--config".into(), config.display().to_string()]
}

fn write_config(dir: &Path, elements: &[ElementServer]) -> anyhow::Result<PathBuf> {
    let addr = |kind| elements.iter().find(|e| e.kind() == kind).map(ElementServer::addr);
    let mut cfg = OperatorConfig {
        name: "opa".parse()?,
        listen: "127.0.0.1:0".parse()?,
        plain_http: true,
        database_url: format!("sqlite://{}/operator.db", dir.display()),
        // No clearinghouse in this benchmark: the node's portability sync retries in the
        // background and is not measured.
        clearinghouse_url: "http://127.0.0.1:9".into(),
        api_token: "bench.unused".into(),
        air_listen: Some("127.0.0.1:0".parse()?),
        ..OperatorConfig::default()
    };
    cfg.smpp.listen = Some("127.0.0.1:0".parse()?);
    cfg.npdb.data_dir = Some(dir.join("npdb"));
    cfg.provisioning.hlr = addr(Element::Hlr);
    cfg.provisioning.smsc = addr(Element::Smsc);
    cfg.provisioning.charging = addr(Element::Charging);
    cfg.provisioning.token_sha256 = sha256_hex(TOKEN);
    let path = dir.join("operator.toml");
    std::fs::write(&path, toml::to_string(&cfg)?)?;
    Ok(path)
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// What was acknowledged, and when each port-in's request started.
#[derive(Default)]
struct Acked {
    orders: Vec<i64>,
    commands: u64,
    /// Port-in number → (request start, seconds since the load started).
    port_ins: HashMap<Msisdn, (Instant, f64)>,
}

async fn post_orders(client: &reqwest::Client, url: &str, orders: &[Order]) -> anyhow::Result<Vec<(i64, u64)>> {
    let resp = client
        .post(format!("{url}/v1/provisioning/orders"))
        .bearer_auth(TOKEN)
        .json(&json!({ "orders": orders }))
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "{status}: {body}");
    Ok(body["orders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| (o["id"].as_i64().unwrap_or(0), o["commands"].as_u64().unwrap_or(0)))
        .collect())
}

async fn status(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let resp = client.get(format!("{url}/v1/provisioning/status")).bearer_auth(TOKEN).send().await?;
    Ok(resp.json().await?)
}

fn stored(status: &Value, what: &str) -> i64 {
    status["stored"].as_array().into_iter().flatten().map(|c| c[what].as_i64().unwrap_or(0)).sum()
}

/// Commands whose outcome the node has recorded since it started.
fn executed(status: &Value) -> i64 {
    status["categories"].as_array().into_iter().flatten().map(|c| c["executed"].as_i64().unwrap_or(0)).sum()
}

/// Throughput: `orders` port-ins as fast as the API takes them; commands per second until the
/// last outcome is recorded.
async fn throughput(client: &reqwest::Client, node: &NodeProc, orders: usize) -> anyhow::Result<(u64, f64)> {
    let before = executed(&status(client, &node.url()).await?);
    let all: Vec<Order> = (0..orders as u64)
        .map(|i| {
            Order::new(
                number(THROUGHPUT_BASE, i),
                Action::PortIn { imsi: format!("24201{i:010}"), plan: "basic".into() },
            )
        })
        .collect();
    let started = Instant::now();
    let mut commands = 0;
    let url = node.url();
    let url = url.as_str();
    use futures::StreamExt;
    let mut batches = futures::stream::iter(all.chunks(500).map(|c| post_orders(client, url, c))).buffer_unordered(4);
    while let Some(r) = batches.next().await {
        commands += r?.iter().map(|(_, c)| c).sum::<u64>();
    }
    let accepted = started.elapsed();
    loop {
        let done = executed(&status(client, &node.url()).await?) - before;
        if done as u64 >= commands {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "throughput phase: {done} of {commands} after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    tracing::info!(commands, accepted_s = accepted.as_secs_f64(), elapsed, "throughput phase done");
    Ok((commands, elapsed))
}

/// One point of the plot.
#[derive(Clone)]
struct Sample {
    t: f64,
    depth: [i64; 3],
    state: [i64; 3],
    hlr_capacity: i64,
}

/// The node's state changes with their causes, over all its lives (a restart forgets those
/// before it), oldest first.
#[derive(Default)]
struct Transitions {
    seen: Vec<Value>,
}

impl Transitions {
    /// Add those of a status's `transitions` not seen yet (each is told by its time, category
    /// and states).
    fn add(&mut self, reported: &Value) {
        for t in reported.as_array().into_iter().flatten() {
            if !self.seen.contains(t) {
                self.seen.push(t.clone());
            }
        }
    }
}

fn sample_of(t: f64, s: &Value) -> Sample {
    let mut depth = [0; 3];
    let mut state = [0; 3];
    for (i, c) in s["categories"].as_array().into_iter().flatten().enumerate().take(3) {
        depth[i] = c["depth"].as_i64().unwrap_or(0);
        state[i] = match c["state"].as_str() {
            Some("limited") => 1,
            Some("suspended") => 2,
            _ => 0,
        };
    }
    let hlr = s["elements"].as_array().into_iter().flatten().find(|e| e["element"] == "hlr");
    let hlr_capacity = hlr.and_then(|e| e["load"]["capacity"].as_i64()).unwrap_or(0);
    Sample { t, depth, state, hlr_capacity }
}

/// The orders of one 10 ms tick of the mixed load.
struct Mix {
    owed: [f64; 3],
    next_port_in: u64,
    next_service: u64,
    next_bulk: u64,
}

impl Mix {
    fn tick(&mut self, rates: [f64; 3], dt: f64) -> Vec<Order> {
        let mut orders = Vec::new();
        for (i, rate) in rates.iter().enumerate() {
            self.owed[i] += rate * dt;
            while self.owed[i] >= 1.0 {
                self.owed[i] -= 1.0;
                orders.push(self.next(i));
            }
        }
        orders
    }

    fn next(&mut self, kind: usize) -> Order {
        match kind {
            0 => {
                let i = self.next_port_in;
                self.next_port_in += 1;
                Order::new(
                    number(PORT_IN_BASE, i),
                    Action::PortIn { imsi: format!("24202{i:010}"), plan: "basic".into() },
                )
            }
            1 => {
                let i = self.next_service;
                self.next_service += 1;
                let action = match i % 3 {
                    0 => Action::Bar,
                    1 => Action::Unbar,
                    _ => Action::PlanChange { plan: "gold".into() },
                };
                Order::new(number(EXISTING_BASE, i % (EXISTING / 2)), action)
            }
            _ => {
                let i = self.next_bulk;
                self.next_bulk += 1;
                let o = Order::new(
                    number(EXISTING_BASE, EXISTING / 2 + i % (EXISTING / 2)),
                    Action::PlanChange { plan: format!("bulk-{}", i / (EXISTING / 2)) },
                );
                Order { origin: Origin::Bulk, ..o }
            }
        }
    }
}

fn p(latencies: &mut [f64], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort_by(f64::total_cmp);
    let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
    (latencies[i] * 100.0).round() / 100.0
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let stop = CancellationToken::new();
    let mut elements = Vec::new();
    for kind in Element::ALL {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let config = ElementConfig { keep_log: true, ..ElementConfig::new(kind, args.throughput_capacity) };
        elements.push(ElementServer::spawn(config, listener, stop.clone())?);
    }
    let existing: Vec<Msisdn> = (0..EXISTING).map(|i| number(EXISTING_BASE, i)).collect();
    for e in &elements {
        e.preload(existing.iter().cloned());
    }
    let config = write_config(&args.dir, &elements)?;
    let mut node = NodeProc::start(config, args.dir.join("operator.log")).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(16).build()?;

    let (commands, seconds) = throughput(&client, &node, args.throughput_orders).await?;
    let commands_per_s = (commands as f64 / seconds).round();

    for e in &elements {
        e.set_capacity(args.capacity);
    }
    let acked = Arc::new(Mutex::new(Acked::default()));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let transitions = Arc::new(Mutex::new(Transitions::default()));
    let load_started = Instant::now();
    let total_s = args.baseline_s + args.overload_s + args.recovery_s;
    let sampler = {
        let (client, url, stop) = (client.clone(), node.url.clone(), stop.clone());
        let (samples, transitions) = (samples.clone(), transitions.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while !stop.is_cancelled() {
                tick.tick().await;
                let url = url.read().unwrap_or_else(|e| e.into_inner()).clone();
                if let Ok(s) = status(&client, &url).await {
                    transitions.lock().unwrap_or_else(|e| e.into_inner()).add(&s["transitions"]);
                    samples
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(sample_of(load_started.elapsed().as_secs_f64(), &s));
                }
            }
        })
    };
    let load_stop = CancellationToken::new();
    let load = {
        let (client, url, acked, load_stop) = (client.clone(), node.url.clone(), acked.clone(), load_stop.clone());
        let rates = [args.port_ins, args.service, args.bulk];
        tokio::spawn(async move {
            let mut mix = Mix { owed: [0.0; 3], next_port_in: 0, next_service: 0, next_bulk: 0 };
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut requests = tokio::task::JoinSet::new();
            while !load_stop.is_cancelled() {
                tick.tick().await;
                let orders = mix.tick(rates, 0.01);
                let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
                requests.spawn(async move {
                    let url = url.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let start = Instant::now();
                    let t = start.duration_since(load_started).as_secs_f64();
                    if let Ok(answer) = post_orders(&client, &url, &orders).await {
                        let mut a = acked.lock().unwrap_or_else(|e| e.into_inner());
                        for (o, (id, commands)) in orders.iter().zip(answer) {
                            a.orders.push(id);
                            a.commands += commands;
                            if matches!(o.action, Action::PortIn { .. }) {
                                a.port_ins.insert(o.msisdn.clone(), (start, t));
                            }
                        }
                    }
                });
                while requests.try_join_next().is_some() {}
            }
            while requests.join_next().await.is_some() {}
        })
    };
    let hlr = &elements[Element::Hlr.index()];
    tokio::time::sleep(Duration::from_secs_f64(args.baseline_s)).await;
    hlr.set_capacity((f64::from(args.capacity) * args.overload_share) as u32);
    tracing::info!("HLR capacity down to {:.0} %", args.overload_share * 100.0);
    if args.crash {
        tokio::time::sleep(Duration::from_secs_f64(args.overload_s / 2.0)).await;
        tracing::info!("killing the node (SIGKILL)");
        node.restart_after_kill().await?;
        tokio::time::sleep(Duration::from_secs_f64(args.overload_s / 2.0)).await;
    } else {
        tokio::time::sleep(Duration::from_secs_f64(args.overload_s)).await;
    }
    hlr.set_capacity(args.capacity);
    tracing::info!("HLR capacity restored");
    tokio::time::sleep(Duration::from_secs_f64(args.recovery_s)).await;
    load_stop.cancel();
    load.await?;

    // Drain: every committed command has an outcome.
    let drain_started = Instant::now();
    let drained = loop {
        let s = status(&client, &node.url()).await?;
        if stored(&s, "queued") == 0 {
            break true;
        }
        if drain_started.elapsed() > Duration::from_secs(180) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drain_s = load_started.elapsed().as_secs_f64() - total_s;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    let _ = sampler.await;
    let final_status = status(&client, &node.url()).await?;
    transitions.lock().unwrap_or_else(|e| e.into_inner()).add(&final_status["transitions"]);
    node.launched.stop().await;

    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner()));
    let lost = count_lost(&args.dir.join("operator.db"), &acked.orders)?;
    let (baseline, overload) = priority_latencies(&elements, &acked, args.baseline_s, args.overload_s);
    let (mut baseline, mut overload) = (baseline, overload);
    let capacity_violations: u64 = elements.iter().map(|e| e.counts().1).sum();
    let received: u64 = elements.iter().map(|e| e.counts().0).sum();
    let dead = final_status["dead_letters"].as_i64().unwrap_or(0);
    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let plot = args.plot.clone().unwrap_or_else(|| args.dir.join("provisioning.svg"));
    std::fs::write(
        &plot,
        svg(
            &samples,
            args.baseline_s,
            args.baseline_s + args.overload_s,
            args.crash.then_some(args.baseline_s + args.overload_s / 2.0),
        ),
    )
    .with_context(|| format!("writing {}", plot.display()))?;
    // The highest state each category reached while the HLR was reduced, from the samples
    // (a restart forgets the node's own list of transitions).
    let names = ["normal", "limited", "suspended"];
    let during: Vec<&Sample> =
        samples.iter().filter(|s| s.t >= args.baseline_s && s.t < args.baseline_s + args.overload_s).collect();
    let (mut highest, mut deepest) = (serde_json::Map::new(), serde_json::Map::new());
    for (i, c) in ["activation", "service", "bulk"].iter().enumerate() {
        let level = during.iter().map(|s| s.state[i]).max().unwrap_or(0);
        highest.insert((*c).into(), names[level.clamp(0, 2) as usize].into());
        deepest.insert((*c).into(), during.iter().map(|s| s.depth[i]).max().unwrap_or(0).into());
    }
    let figures = json!({
        "commands_per_s": commands_per_s,
        "throughput": { "commands": commands, "seconds": (seconds * 100.0).round() / 100.0 },
        "priority_p50_ms_baseline": p(&mut baseline, 0.50),
        "priority_p99_ms_baseline": p(&mut baseline, 0.99),
        "priority_p50_ms_overload": p(&mut overload, 0.50),
        "priority_p99_ms_overload": p(&mut overload, 0.99),
        "port_ins_measured": { "baseline": baseline.len(), "overload": overload.len() },
        "capacity_violations": capacity_violations,
        "commands_received_by_elements": received,
        "acknowledged_orders": acked.orders.len(),
        "acknowledged_commands": acked.commands,
        "lost": lost,
        "dead_letters": dead,
        "delivered_after_recovery": drained && lost == 0,
        "drain_s_after_load": (drain_s * 10.0).round() / 10.0,
        "crash": args.crash,
        "highest_state_during_overload": highest,
        "deepest_queue_during_overload": deepest,
        "samples_during_overload": during.len(),
        "transitions": std::mem::take(&mut transitions.lock().unwrap_or_else(|e| e.into_inner()).seen),
        "plot": plot.display().to_string(),
    });
    if args.json {
        println!("{figures}");
    } else {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Port-in latencies (ms) by the phase their request started in: from the request's start to
/// the last of the three elements executing its command.
fn priority_latencies(
    elements: &[ElementServer],
    acked: &Acked,
    baseline_s: f64,
    overload_s: f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut last: HashMap<&Msisdn, Instant> = HashMap::new();
    let logs: Vec<_> = elements.iter().map(ElementServer::log).collect();
    for log in &logs {
        let mut first: HashMap<&Msisdn, Instant> = HashMap::new();
        for e in log {
            if acked.port_ins.contains_key(&e.msisdn) {
                first.entry(&e.msisdn).or_insert(e.at);
            }
        }
        for (m, at) in first {
            let l = last.entry(m).or_insert(at);
            *l = (*l).max(at);
        }
    }
    let (mut baseline, mut overload) = (Vec::new(), Vec::new());
    for (m, (start, t)) in &acked.port_ins {
        let Some(done) = last.get(m) else { continue };
        let ms = done.saturating_duration_since(*start).as_secs_f64() * 1000.0;
        if *t < baseline_s {
            baseline.push(ms);
        } else if *t < baseline_s + overload_s {
            overload.push(ms);
        }
    }
    (baseline, overload)
}

/// Acknowledged orders the node's database does not hold as executed (missing, or with a
/// command not done).
fn count_lost(db: &Path, acked: &[i64]) -> anyhow::Result<u64> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut done = std::collections::HashSet::new();
    let mut stmt = conn.prepare(
        "SELECT o.id FROM provisioning_orders o WHERE NOT EXISTS \
         (SELECT 1 FROM provisioning_commands c WHERE c.order_id = o.id AND c.state <> 'done')",
    )?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    for id in rows {
        done.insert(id?);
    }
    Ok(acked.iter().filter(|id| !done.contains(id)).count() as u64)
}

/// The plot: queue depth per category (top), protection state per category and the HLR's
/// capacity (bottom), over the seconds of the overload scenario.
fn svg(samples: &[Sample], overload_from: f64, overload_to: f64, crash_at: Option<f64>) -> String {
    let (w, h, left, top_h, gap, bottom_h) = (900.0, 520.0, 70.0, 260.0, 50.0, 140.0);
    let right = w - 20.0;
    let t_max = samples.last().map(|s| s.t).unwrap_or(1.0).max(1.0);
    let d_max = samples.iter().flat_map(|s| s.depth).max().unwrap_or(1).max(1) as f64;
    let x = |t: f64| left + (right - left) * t / t_max;
    let y_depth = |d: f64| 20.0 + top_h * (1.0 - d / d_max);
    let bottom0 = 20.0 + top_h + gap;
    let colours = ["#d62728", "#1f77b4", "#7f7f7f"];
    let names = ["activation", "service", "bulk"];
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    // The overload window, shaded across both panels.
    let _ = writeln!(
        out,
        "<rect x=\"{:.1}\" y=\"20\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#fde0c5\"/>",
        x(overload_from),
        x(overload_to) - x(overload_from),
        top_h + gap + bottom_h
    );
    if let Some(c) = crash_at {
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"20\" y2=\"{1:.1}\" stroke=\"black\" stroke-dasharray=\"4 3\"/><text x=\"{0:.1}\" y=\"16\">kill -9</text>",
            x(c),
            bottom0 + bottom_h
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{left}\" y=\"14\">queue depth (commands) per category; shaded: HLR at reduced capacity</text>"
    );
    for (i, (colour, name)) in colours.iter().zip(names).enumerate() {
        let points: Vec<String> =
            samples.iter().map(|s| format!("{:.1},{:.1}", x(s.t), y_depth(s.depth[i] as f64))).collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">{name}</text>",
            right - 90.0,
            40.0 + 15.0 * i as f64
        );
        // States: one band per category, a step line at 0 (normal), 1 (limited), 2 (suspended).
        let band = bottom_h / 3.0;
        let y_state = |s: i64| bottom0 + band * (i as f64) + band * (0.85 - 0.35 * s as f64);
        let mut steps = Vec::new();
        for (j, s) in samples.iter().enumerate() {
            if j > 0 {
                steps.push(format!("{:.1},{:.1}", x(s.t), y_state(samples[j - 1].state[i])));
            }
            steps.push(format!("{:.1},{:.1}", x(s.t), y_state(s.state[i])));
        }
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            steps.join(" ")
        );
        let _ = writeln!(
            out,
            "<text x=\"4\" y=\"{:.1}\" fill=\"{colour}\">{name}</text>",
            bottom0 + band * (i as f64 + 0.6)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{left}\" y=\"{:.1}\">protection state per category (low: normal, middle: limited, high: suspended)</text>",
        bottom0 - 8.0
    );
    // Axes and ticks.
    let _ = writeln!(out, "<line x1=\"{left}\" x2=\"{left}\" y1=\"20\" y2=\"{:.1}\" stroke=\"black\"/>", 20.0 + top_h);
    let _ = writeln!(
        out,
        "<line x1=\"{left}\" x2=\"{right}\" y1=\"{0:.1}\" y2=\"{0:.1}\" stroke=\"black\"/>",
        20.0 + top_h
    );
    for k in 0..=4 {
        let d = d_max * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}</text>",
            left - 4.0,
            y_depth(d) + 4.0,
            d
        );
    }
    let step = if t_max > 40.0 { 10.0 } else { 5.0 };
    let mut t = 0.0;
    while t <= t_max {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t:.0} s</text>",
            x(t),
            bottom0 + bottom_h + 16.0
        );
        t += step;
    }
    let caps: Vec<String> = samples.iter().map(|s| format!("{}", s.hlr_capacity)).collect();
    let _ = writeln!(out, "<!-- HLR capacity reported per sample: {} -->", caps.join(","));
    out.push_str("</svg>\n");
    out
}
