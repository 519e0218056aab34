//! `numport bench sms`: short messages end to end through the SMS centers (F3).
//!
//! A cluster (clearinghouse, operators opa, opb, opc as processes), TLS on every link unless
//! `--plain`. The benchmark plays the enterprises and the handsets: `--esmes` SMPP (over TLS)
//! connections bound to opa as the bank, and a
//! simulated terminal attached over the air interface for each of `--terminals` subscribers
//! at opa and as many at opb. Every message goes to one of these subscribers, so a share of
//! them (`--interconnect-share`) is routed by opa's replica to opb and crosses the SMPP
//! interconnect. A message counts as delivered when its terminal has it; its text names its
//! sequence number, so loss and repeats are counted per message.
//!
//! Three phases, on one cluster:
//! 1. **throughput**: `--messages` submitted as fast as the windows allow; the rate is the
//!    messages over the time until the last one reached its terminal;
//! 2. **latency**: `--rate` submits per second for `--seconds`; submit_sm_resp latency;
//! 3. **crash**: submits at `--crash-rate` while opa is killed with SIGKILL and restarted;
//!    every acknowledged message must reach its terminal, and none may be shown twice
//!    (terminals drop repeats by message reference, as handsets do).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use numport_core::Msisdn;
use numport_core::proof::PinStretch;
use sms::air::{CAUSE_OK, Frame};
use smsc::BindMode;
use smsc::rusmpp::pdus::SubmitSm;
use smsc::rusmpp::types::OctetString;
use smsc::rusmpp::values::{Npi, Ton};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use numport::cluster::{BANK_PASSWORD, BANK_SYSTEM_ID, Cluster, ClusterSpec, SmscAccess, sim_of, subscriber_number};

#[derive(clap::Args)]
pub struct Args {
    /// Messages in the throughput phase.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// SMPP connections submitting (each with its own window).
    #[arg(long, default_value_t = 8)]
    esmes: usize,
    /// Submits outstanding per connection.
    #[arg(long, default_value_t = 128)]
    window: usize,
    /// Attached terminals at each of opa and opb.
    #[arg(long, default_value_t = 200)]
    terminals: usize,
    /// Share of messages for opb's subscribers (over the interconnect).
    #[arg(long, default_value_t = 0.5)]
    interconnect_share: f64,
    /// Submit rate of the latency phase.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Submit rate of the crash phase (0 skips it).
    #[arg(long, default_value_t = 5_000.0)]
    crash_rate: f64,
    /// Print one JSON object with the figures.
    #[arg(long)]
    json: bool,
    /// Run every link without TLS, for measuring its cost.
    #[arg(long)]
    plain: bool,
    #[arg(long, default_value = "data/bench-sms")]
    dir: PathBuf,
}

impl Args {
    /// The arguments of a throughput phase alone (`numport bench smsauth`).
    pub fn throughput(messages: usize, esmes: usize, window: usize, terminals: usize, dir: PathBuf) -> Args {
        Args {
            messages,
            esmes,
            window,
            terminals,
            interconnect_share: 0.5,
            rate: 0.0,
            seconds: 0.0,
            crash_rate: 0.0,
            json: false,
            plain: false,
            dir,
        }
    }
}

/// What the terminals have seen, per message sequence number.
struct Tally {
    /// SMS-DELIVERs received, repeats included.
    received: Vec<AtomicU8>,
    /// Shown to the user: first time its reference was seen at that terminal.
    shown: Vec<AtomicU8>,
    shown_total: AtomicUsize,
    repeats_dropped: AtomicUsize,
    /// SMS-DELIVERs a verifying handset did not find authentic.
    not_authentic: AtomicUsize,
}

impl Tally {
    fn new(n: usize) -> Tally {
        Tally {
            received: (0..n).map(|_| AtomicU8::new(0)).collect(),
            shown: (0..n).map(|_| AtomicU8::new(0)).collect(),
            shown_total: AtomicUsize::new(0),
            repeats_dropped: AtomicUsize::new(0),
            not_authentic: AtomicUsize::new(0),
        }
    }
}

/// One subscriber's handset, attached to its operator's air interface; it reattaches (to the
/// address in `air`, which changes when the node restarts) whenever the link drops. With a
/// `verifier` (the SIM's SMS-authentication key) it verifies each SMS-DELIVER as a handset
/// does, and counts those not authentic.
async fn terminal(
    msisdn: Msisdn,
    air: Arc<RwLock<SocketAddr>>,
    tally: Arc<Tally>,
    mut verifier: Option<sms::auth::Verifier>,
    stop: CancellationToken,
) {
    let (imsi, k_sim) = sim_of(&msisdn);
    let mut seen: HashSet<u32> = HashSet::new();
    while !stop.is_cancelled() {
        let addr = *air.read().unwrap_or_else(|e| e.into_inner());
        let session = async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            if let Err(cause) = operator::air::attach_terminal(&mut s, &imsi, &k_sim).await? {
                anyhow::bail!("attach refused (cause {cause})")
            }
            let (mut r, mut w) = s.into_split();
            loop {
                let Some(frame) = operator::air::read_frame(&mut r).await? else { return Ok(()) };
                let Frame::Deliver { reference, tpdu } = frame else { continue };
                let deliver = sms::Tpdu::decode_mt(&tpdu);
                if let (Some(v), Ok(sms::Tpdu::Deliver(d))) = (&mut verifier, &deliver)
                    && !v.verify(d, msisdn.as_str(), 0).is_authentic()
                {
                    tally.not_authentic.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(sms::Tpdu::Deliver(d)) = deliver
                    && let Some(seq) =
                        d.user_data.text(d.dcs).strip_prefix("bench ").and_then(|n| n.parse::<usize>().ok())
                    && seq < tally.received.len()
                {
                    tally.received[seq].fetch_add(1, Ordering::Relaxed);
                    if seen.insert(reference) {
                        tally.shown[seq].fetch_add(1, Ordering::Relaxed);
                        tally.shown_total.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tally.repeats_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                w.write_all(&Frame::DeliverAck { reference, cause: CAUSE_OK }.encode()).await?;
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            r = session => if let Err(e) = r { tracing::debug!(%msisdn, error = %e, "terminal link") },
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn submit_of(seq: usize, destination: &Msisdn) -> anyhow::Result<SubmitSm> {
    Ok(SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr("MyBank".parse().map_err(|_| anyhow::anyhow!("source"))?)
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(destination.as_str().parse().map_err(|_| anyhow::anyhow!("destination"))?)
        .short_message(OctetString::from_slice(format!("bench {seq}").as_bytes())?)
        .build())
}

/// Where messages go: the attached subscribers, opb's for the interconnect share.
#[derive(Clone)]
struct Destinations {
    local: Vec<Msisdn>,
    remote: Vec<Msisdn>,
    share: f64,
}

impl Destinations {
    fn of(&self, seq: usize) -> &Msisdn {
        // A fixed pattern rather than randomness: the same run sends the same traffic.
        let remote = (seq % 1000) as f64 / 1000.0 < self.share;
        if remote { &self.remote[seq / 1000 % self.remote.len()] } else { &self.local[seq % self.local.len()] }
    }
}

/// Submits `seqs` over `esmes` connections, each keeping `window` outstanding, paced to
/// `rate` per second if given. Returns the acknowledged sequence numbers and the latency
/// histogram (µs) of submit_sm_resp.
async fn submit_all(
    smsc: &SmscAccess,
    esmes: usize,
    window: usize,
    seqs: std::ops::Range<usize>,
    rate: Option<f64>,
    dest: &Destinations,
) -> anyhow::Result<(Vec<usize>, Histogram<u64>)> {
    let next = AtomicUsize::new(seqs.start);
    let started = Instant::now();
    let acked = Mutex::new(Vec::new());
    let hist = Mutex::new(Histogram::<u64>::new(3)?);
    let lanes = (0..esmes).map(|_| async {
        let (client, _) = smsc.bind(BANK_SYSTEM_ID, BANK_PASSWORD, BindMode::Transmitter).await?;
        let mut inflight = FuturesUnordered::new();
        let mut mine = Vec::new();
        let mut h = Histogram::<u64>::new(3)?;
        let mut seq = next.fetch_add(1, Ordering::Relaxed);
        while seq < seqs.end || !inflight.is_empty() {
            let due = match rate {
                Some(rate) => started + Duration::from_secs_f64((seq - seqs.start) as f64 / rate),
                None => started,
            };
            tokio::select! {
                biased;
                Some((seq, outcome, took)) = inflight.next(), if !inflight.is_empty() => {
                    acknowledged(seq, outcome)?;
                    mine.push(seq);
                    let took: Duration = took;
                    h.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX))?;
                }
                _ = tokio::time::sleep_until(due.into()), if seq < seqs.end && inflight.len() < window => {
                    let submit = submit_of(seq, dest.of(seq))?;
                    let client = &client;
                    // The clock starts when the submit is handed to the connection.
                    let sent = Instant::now();
                    inflight.push(async move { (seq, client.submit_sm(submit).await, sent.elapsed()) });
                    seq = next.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        drop(inflight);
        client.unbind().await.ok();
        acked.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
        hist.lock().unwrap_or_else(|e| e.into_inner()).add(&h)?;
        anyhow::Ok(())
    });
    futures::future::try_join_all(lanes).await?;
    Ok((acked.into_inner().unwrap_or_default(), hist.into_inner().unwrap_or_else(|e| e.into_inner())))
}

fn acknowledged(seq: usize, outcome: Result<String, smsc::client::ClientError>) -> anyhow::Result<String> {
    outcome.with_context(|| format!("submit {seq}"))
}

/// Waits until every message in `seqs` was shown, or `timeout`; returns when the last was.
async fn wait_shown(tally: &Tally, seqs: &[usize], timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if seqs.iter().all(|&s| tally.shown[s].load(Ordering::Relaxed) > 0) {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The times, after the start, at which the count of shown messages passed `base` + each
/// fraction of `n`: where the end-to-end time goes (the bulk, or a few late messages).
fn note_milestones(
    tally: Arc<Tally>,
    base: usize,
    n: usize,
    fractions: &'static [f64],
) -> tokio::task::JoinHandle<Vec<f64>> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut at = vec![f64::NAN; fractions.len()];
        let mut next = 0;
        while next < fractions.len() && started.elapsed() < Duration::from_secs(120) {
            let shown = tally.shown_total.load(Ordering::Relaxed).saturating_sub(base);
            while next < fractions.len() && shown as f64 >= fractions[next] * n as f64 {
                at[next] = started.elapsed().as_secs_f64();
                next += 1;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        at
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let terminals = args.terminals.max(1);
    let rate_n = (args.rate * args.seconds) as usize;
    let crash_n = (args.crash_rate * 6.0) as usize;
    let latency_seqs = args.messages..args.messages + rate_n;
    let crash_seqs = latency_seqs.end..latency_seqs.end + crash_n;
    let mut rig = Rig::start(&args, terminals, crash_seqs.end, true).await?;
    let throughput = throughput(&args, &rig).await?;
    let latency = latency(&args, &rig, latency_seqs).await?;
    let crash = if args.crash_rate > 0.0 && crash_n > 0 {
        crash(&args, &mut rig, crash_seqs).await?
    } else {
        serde_json::Value::Null
    };
    rig.stop.cancel();

    let result = serde_json::json!({
        "bench": "sms",
        "tls": !args.plain,
        "esmes": args.esmes,
        "window": args.window,
        "terminals_per_operator": terminals,
        "interconnect_share": rig.dest.share,
        "throughput": throughput,
        "latency": latency,
        "crash": crash,
        "repeats_dropped_by_terminals": rig.tally.repeats_dropped.load(Ordering::Relaxed),
        "not_authentic_at_terminals": rig.tally.not_authentic.load(Ordering::Relaxed),
    });
    if args.json {
        println!("{result}");
    }
    rig.cluster.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// The throughput phase alone, on a cluster of its own with SMS authentication on (every
/// handset verifying; anything not authentic is an error) or off: the end-to-end rate.
pub async fn throughput_only(args: &Args, auth: bool) -> anyhow::Result<f64> {
    let rig = Rig::start(args, args.terminals.max(1), args.messages, auth).await?;
    let figures = throughput(args, &rig).await?;
    rig.stop.cancel();
    let not_authentic = rig.tally.not_authentic.load(Ordering::Relaxed);
    rig.cluster.stop().await;
    anyhow::ensure!(not_authentic == 0, "{not_authentic} SMS-DELIVERs were not authentic at their handsets");
    figures["end_to_end_per_s"].as_f64().context("not every message reached its terminal")
}

/// The cluster under load, and the terminals attached to it.
struct Rig {
    cluster: Cluster,
    /// opa's SMS center, where the bank binds (over TLS unless `--plain`).
    smsc: SmscAccess,
    /// opa's air interface; it moves when opa restarts.
    air_a: Arc<RwLock<SocketAddr>>,
    dest: Destinations,
    tally: Arc<Tally>,
    /// Detaches the terminals.
    stop: CancellationToken,
}

impl Rig {
    /// Starts the cluster (SMS authentication on or off, as `auth` says), waits for opa's
    /// replica, and attaches `terminals` subscribers at each of opa and opb, tallying `messages`
    /// sequence numbers; with `auth` they verify what they receive.
    async fn start(args: &Args, terminals: usize, messages: usize, auth: bool) -> anyhow::Result<Rig> {
        eprintln!("setting up a cluster of three operators with {terminals} subscribers each ...");
        let cluster = Cluster::start(ClusterSpec {
            dir: args.dir.clone(),
            clearinghouse_db: None,
            subscribers_per_operator: terminals,
            pin_stretch: PinStretch::FAST,
            clearinghouse: clearinghouse::ClearinghouseConfig::default(),
            tls: !args.plain,
            sms_auth: auth,
        })
        .await?;
        let (opa, opb) = (cluster.op("opa"), cluster.op("opb"));
        let smsc = cluster.smsc(opa)?;
        let air_a = Arc::new(RwLock::new(opa.proc.air.context("opa runs no air interface")?));
        let air_b = Arc::new(RwLock::new(opb.proc.air.context("opb runs no air interface")?));
        wait_for_ranges(&cluster.http()?.build()?, &opa.proc.url(), &subscriber_number("4791", 0)).await;

        let dest = Destinations {
            local: (0..terminals).map(|i| subscriber_number("4790", i)).collect(),
            remote: (0..terminals).map(|i| subscriber_number("4791", i)).collect(),
            share: args.interconnect_share.clamp(0.0, 1.0),
        };
        let tally = Arc::new(Tally::new(messages));
        let stop = CancellationToken::new();
        let verifier = |m: &Msisdn| auth.then(|| cluster.handset_verifier(m)).transpose();
        for m in &dest.local {
            tokio::spawn(terminal(m.clone(), air_a.clone(), tally.clone(), verifier(m)?, stop.clone()));
        }
        for m in &dest.remote {
            tokio::spawn(terminal(m.clone(), air_b.clone(), tally.clone(), verifier(m)?, stop.clone()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await; // attaches
        Ok(Rig { cluster, smsc, air_a, dest, tally, stop })
    }
}

/// Waits (up to 10 s) until the replica of the operator at `url` answers a lookup of `probe`.
async fn wait_for_ranges(http: &reqwest::Client, url: &str, probe: &Msisdn) {
    for _ in 0..500 {
        let r = http.get(format!("{url}/v1/lookup/{probe}")).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Phase 1: `--messages` submitted as fast as the windows allow, timed until the last one
/// reached its terminal.
async fn throughput(args: &Args, rig: &Rig) -> anyhow::Result<serde_json::Value> {
    eprintln!("throughput: {} messages over {} connections ...", args.messages, args.esmes);
    const FRACTIONS: &[f64] = &[0.5, 0.9, 0.99, 0.999];
    let base = rig.tally.shown_total.load(Ordering::Relaxed);
    let milestones = note_milestones(rig.tally.clone(), base, args.messages, FRACTIONS);
    let started = Instant::now();
    let (acked, hist) = submit_all(&rig.smsc, args.esmes, args.window, 0..args.messages, None, &rig.dest).await?;
    let submitted_in = started.elapsed();
    let last = wait_shown(&rig.tally, &acked, Duration::from_secs(120)).await;
    let milestones = milestones.await.unwrap_or_default();
    eprintln!(
        "  shown at their terminals: {}",
        FRACTIONS
            .iter()
            .zip(&milestones)
            .map(|(f, s)| format!("{}% after {s:.2} s", f * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let e2e = last.map(|t| t - started);
    let submit_rate = acked.len() as f64 / submitted_in.as_secs_f64();
    let e2e_rate = e2e.map(|d| acked.len() as f64 / d.as_secs_f64());
    eprintln!(
        "  {} acknowledged in {:.2} s ({submit_rate:.0}/s), all at their terminals after {}; resp p50 {:.2} ms, p99 {:.2} ms",
        acked.len(),
        submitted_in.as_secs_f64(),
        e2e.map_or("never".into(), |d| format!(
            "{:.2} s ({:.0}/s end to end)",
            d.as_secs_f64(),
            e2e_rate.unwrap_or(0.0)
        )),
        ms(hist.value_at_quantile(0.5)),
        ms(hist.value_at_quantile(0.99))
    );
    Ok(serde_json::json!({
        "messages": acked.len(),
        "submit_per_s": submit_rate,
        "end_to_end_per_s": e2e_rate,
        "resp_p50_ms": ms(hist.value_at_quantile(0.5)),
        "resp_p99_ms": ms(hist.value_at_quantile(0.99)),
        "shown_after_s": FRACTIONS.iter().zip(&milestones).map(|(f, s)| (format!("{f}"), *s)).collect::<std::collections::BTreeMap<_, _>>(),
    }))
}

/// Phase 2: `--rate` submits per second for `--seconds` (sequence numbers `seqs`), and the
/// submit_sm_resp latency.
async fn latency(args: &Args, rig: &Rig, seqs: std::ops::Range<usize>) -> anyhow::Result<serde_json::Value> {
    eprintln!("latency: {:.0} submits/s for {:.0} s ...", args.rate, args.seconds);
    let started = Instant::now();
    let (lat_acked, lat) = submit_all(&rig.smsc, args.esmes, args.window, seqs, Some(args.rate), &rig.dest).await?;
    let achieved = lat_acked.len() as f64 / started.elapsed().as_secs_f64();
    let lat_delivered = wait_shown(&rig.tally, &lat_acked, Duration::from_secs(60)).await.is_some();
    eprintln!(
        "  {achieved:.0}/s achieved; submit_sm_resp p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; all delivered: {lat_delivered}",
        ms(lat.value_at_quantile(0.5)),
        ms(lat.value_at_quantile(0.99)),
        ms(lat.max())
    );
    Ok(serde_json::json!({
        "target_rate": args.rate,
        "achieved_rate": achieved,
        "resp_p50_ms": ms(lat.value_at_quantile(0.5)),
        "resp_p99_ms": ms(lat.value_at_quantile(0.99)),
        "resp_max_ms": ms(lat.max()),
        "all_delivered": lat_delivered,
    }))
}

/// Phase 3: submits at `--crash-rate` (sequence numbers `seqs`) while opa is killed with
/// SIGKILL and restarted; counts the acknowledged messages lost and those shown twice.
async fn crash(args: &Args, rig: &mut Rig, seqs: std::ops::Range<usize>) -> anyhow::Result<serde_json::Value> {
    eprintln!("crash: {:.0} submits/s; opa killed with SIGKILL after 2 s, restarted ...", args.crash_rate);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let submitter = tokio::spawn(submit_through_crash(
        rig.smsc.clone(),
        rig.dest.clone(),
        seqs.clone(),
        args.crash_rate,
        (acked.clone(), sent.clone()),
        rig.stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opa_index = rig.cluster.ops.iter().position(|o| o.name.as_str() == "opa").context("opa")?;
    rig.cluster.ops[opa_index].proc.kill_hard().await?;
    let killed_at = Instant::now();
    rig.cluster.restart_operator("opa").await?;
    let restart_s = killed_at.elapsed().as_secs_f64();
    *rig.air_a.write().unwrap_or_else(|e| e.into_inner()) = rig.cluster.op("opa").proc.air.context("air")?;
    submitter.await?;

    let tally = &rig.tally;
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let all_there = wait_shown(tally, &acked, Duration::from_secs(90)).await.is_some();
    let lost = acked.iter().filter(|&&s| tally.shown[s].load(Ordering::Relaxed) == 0).count();
    let shown_twice = seqs.clone().filter(|&s| tally.shown[s].load(Ordering::Relaxed) > 1).count();
    let redelivered = seqs.filter(|&s| tally.received[s].load(Ordering::Relaxed) > 1).count();
    eprintln!(
        "  sent {}, acknowledged {}, opa back after {restart_s:.2} s; lost {lost}, shown twice {shown_twice}, \
         redelivered (repeats the terminals dropped) {redelivered}; all acknowledged delivered: {all_there}",
        sent.load(Ordering::Relaxed),
        acked.len()
    );
    Ok(serde_json::json!({
        "rate": args.crash_rate,
        "sent": sent.load(Ordering::Relaxed),
        "acknowledged": acked.len(),
        "restart_s": restart_s,
        "lost": lost,
        "shown_twice": shown_twice,
        "redelivered_and_dropped": redelivered,
    }))
}

/// Submits `seqs` at `rate` per second over one connection to `smsc`, counting them in `sent`
/// and the acknowledged ones in `acked`. When the connection fails (the SMS center died)
/// every unanswered submit is simply not acknowledged, and a new bind is tried until it
/// succeeds.
async fn submit_through_crash(
    smsc: SmscAccess,
    dest: Destinations,
    seqs: std::ops::Range<usize>,
    rate: f64,
    (acked, sent): (Arc<Mutex<Vec<usize>>>, Arc<AtomicU64>),
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut seq = seqs.start;
    while seq < seqs.end && !stop.is_cancelled() {
        let Ok((client, _)) = smsc.bind(BANK_SYSTEM_ID, BANK_PASSWORD, BindMode::Transmitter).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut inflight = FuturesUnordered::new();
        let mut failed = false;
        while !failed && (seq < seqs.end || !inflight.is_empty()) {
            let due = started + Duration::from_secs_f64((seq - seqs.start) as f64 / rate);
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()), if seq < seqs.end && inflight.len() < 512 => {
                    let Ok(submit) = submit_of(seq, dest.of(seq)) else { break };
                    let c = &client;
                    let s = seq;
                    inflight.push(async move { (s, c.submit_sm(submit).await) });
                    sent.fetch_add(1, Ordering::Relaxed);
                    seq += 1;
                }
                Some((s, r)) = inflight.next(), if !inflight.is_empty() => match r {
                    Ok(_) => acked.lock().unwrap_or_else(|e| e.into_inner()).push(s),
                    Err(_) => failed = true,
                },
            }
        }
        // Drain what is still in flight on the dead link.
        while let Some((s, r)) = inflight.next().await {
            if r.is_ok() {
                acked.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            }
        }
    }
}
