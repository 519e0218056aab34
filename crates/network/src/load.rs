//! Load for `numport bench ocs`: many voice sessions (CCR-INITIAL, two UPDATEs, TERMINATION)
//! in flight at once, pipelined over a few Gy connections, either as fast as the OCS answers
//! or paced at a fixed rate of CCRs. CCA latency is measured at the client, from the request's
//! hand-over to the Diameter client to its answer. A share of requests is sent a second time
//! with the T flag (same Session-Id and CC-Request-Number) and the two answers compared; the
//! seconds every account's sessions reported as used are returned, for the caller to check
//! against what the OCS charged.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diameter::base::Identity;
use diameter::cc::{self, CcRequestType, Cca, Ccr, Mscc, ServiceInformation, ServiceUnit};
use diameter::peer::{Client, ClientConfig};
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::charging::SUCCESS;
use crate::traffic::Subscribers;

/// A load run's settings.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub identity: Identity,
    pub destination_realm: String,
    pub ocs: SocketAddr,
    /// Gy connections (one [`Client`] each).
    pub connections: usize,
    pub subscribers: Subscribers,
    /// Sessions in progress at once.
    pub sessions: usize,
    /// CCRs per second, or as fast as the OCS answers.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// One request in this many is sent again, T-flagged (0: none).
    pub retransmit_every: u64,
    /// Seconds each UPDATE and the TERMINATION report as used.
    pub used_per_request: u32,
    /// The Session-Ids' `<DiameterIdentity>;<high 32 bits>` (RFC 6733 §8.8), which makes this
    /// run's unique; the low part is one counter over all workers, as a gateway numbers its
    /// sessions.
    pub run: String,
}

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadFigures {
    /// CCRs answered (retransmitted copies not included).
    pub requests: u64,
    pub elapsed: Duration,
    pub latency_us: Option<Histogram<u64>>,
    pub answers: BTreeMap<u32, u64>,
    /// Requests that got no answer.
    pub errors: u64,
    pub retransmissions: u64,
    /// Retransmissions answered differently from the first time.
    pub answers_differ: u64,
    /// Seconds reported as used in requests answered 2001, by subscriber.
    pub used_s: HashMap<String, u64>,
    /// Subscribers with a request that got no answer: what was charged is not known.
    pub uncertain: Vec<String>,
}

impl LoadFigures {
    pub fn ccr_per_s(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q`, ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.as_ref().map(|h| h.value_at_quantile(q) as f64 / 1000.0).unwrap_or(0.0)
    }

    fn merge(&mut self, o: LoadFigures) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.retransmissions += o.retransmissions;
        self.answers_differ += o.answers_differ;
        for (k, v) in o.answers {
            *self.answers.entry(k).or_default() += v;
        }
        for (k, v) in o.used_s {
            *self.used_s.entry(k).or_default() += v;
        }
        self.uncertain.extend(o.uncertain);
        match (&mut self.latency_us, o.latency_us) {
            (Some(h), Some(o)) => {
                let _ = h.add(o);
            }
            (h @ None, o) => *h = o,
            _ => {}
        }
    }
}

fn request(session: &str, msisdn: &str, kind: CcRequestType, number: u32, used: Option<u32>) -> Ccr {
    let units = |s| ServiceUnit { time: Some(s), ..ServiceUnit::default() };
    Ccr {
        mscc: vec![Mscc {
            rating_group: Some(crate::sim::VOICE_RATING_GROUP),
            requested: (kind != CcRequestType::Termination).then(|| units(60)),
            used: used.map(units).into_iter().collect(),
            ..Mscc::default()
        }],
        termination_cause: (kind == CcRequestType::Termination).then_some(1),
        service_information: Some(ServiceInformation::ims_call(msisdn, "4790000000")),
        ..Ccr::new(session, cc::IMS_CONTEXT, kind, number, msisdn)
    }
}

struct Shared {
    clients: Vec<Client>,
    config: LoadConfig,
    pacer: Option<Semaphore>,
    stop: AtomicBool,
    /// Every worker has finished its last session: the pacer stops.
    finished: AtomicBool,
    /// The low part of the next Session-Id.
    next_session: AtomicU64,
    /// Every worker's CCA latencies, µs: one histogram (a few hundred kilobytes at this
    /// precision) rather than one per worker, whose allocation and zeroing at the start of a
    /// run of thousands of workers would stall the load generator itself.
    latency_us: std::sync::Mutex<Histogram<u64>>,
}

/// One worker: sessions one after another until told to stop; the session in progress is
/// always finished, so no reservation is left behind.
async fn worker(shared: Arc<Shared>, w: usize) -> LoadFigures {
    let c = &shared.config;
    let client = &shared.clients[w % shared.clients.len()];
    let mut f = LoadFigures::default();
    let steps = [
        (CcRequestType::Initial, None),
        (CcRequestType::Update, Some(c.used_per_request)),
        (CcRequestType::Update, Some(c.used_per_request)),
        (CcRequestType::Termination, Some(c.used_per_request)),
    ];
    let mut sent = 0u64;
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let msisdn = c.subscribers.msisdn((w as u64).wrapping_mul(7919).wrapping_add(n));
        let session = format!("{};{}", c.run, shared.next_session.fetch_add(1, Ordering::Relaxed));
        for (number, (kind, used)) in steps.into_iter().enumerate() {
            if let Some(p) = &shared.pacer
                && let Ok(permit) = p.acquire().await
            {
                permit.forget();
            }
            let ccr = request(&session, &msisdn, kind, number as u32, used);
            let copy = (c.retransmit_every > 0 && (sent + w as u64).is_multiple_of(c.retransmit_every))
                .then(|| Ccr { retransmitted: true, ..ccr.clone() });
            sent += 1;
            let t = Instant::now();
            let answer = client.credit_control(ccr).await;
            let took = t.elapsed().as_micros() as u64;
            let Ok(answer) = answer else {
                f.errors += 1;
                f.uncertain.push(msisdn.clone());
                break;
            };
            let _ = shared.latency_us.lock().unwrap_or_else(|p| p.into_inner()).record(took.max(1));
            f.requests += 1;
            *f.answers.entry(answer.result_code).or_default() += 1;
            if answer.result_code == SUCCESS {
                *f.used_s.entry(msisdn.clone()).or_default() += u64::from(used.unwrap_or(0));
            }
            if let Some(copy) = copy {
                f.retransmissions += 1;
                match client.credit_control(copy).await {
                    Ok(again) if same(&again, &answer) => {}
                    Ok(_) => f.answers_differ += 1,
                    Err(_) => {
                        f.errors += 1;
                        f.uncertain.push(msisdn.clone());
                    }
                }
            }
            if answer.result_code != SUCCESS {
                break;
            }
        }
    }
    f
}

/// Two answers to one request agree: Result-Code, request identity and every MSCC.
fn same(a: &Cca, b: &Cca) -> bool {
    (a.result_code, &a.session_id, a.request_type, a.request_number, &a.mscc)
        == (b.result_code, &b.session_id, b.request_type, b.request_number, &b.mscc)
}

/// Adds `rate` permits a second to `pacer`, in steps of a millisecond, keeping at most a
/// hundredth of a second's worth unspent (so a stall is not followed by a burst). It paces the
/// sessions' last requests after the stop too: released at once, they would arrive as a burst
/// that the latency of the offered rate must not include.
async fn pace(shared: Arc<Shared>, rate: f64) {
    let Some(pacer) = &shared.pacer else { return };
    let cap = ((rate / 100.0) as usize).max(1);
    let start = Instant::now();
    let mut given = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !shared.finished.load(Ordering::Relaxed) {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        let add = due.saturating_sub(given) as usize;
        given = due;
        let room = cap.saturating_sub(pacer.available_permits());
        pacer.add_permits(add.min(room));
    }
}

/// Runs the load for `config.duration`, then lets every session in progress finish.
pub async fn run(config: LoadConfig) -> Result<LoadFigures, crate::sim::SimError> {
    let mut clients = Vec::new();
    for _ in 0..config.connections.max(1) {
        let mut cfg = ClientConfig::new(config.identity.clone(), &config.destination_realm, vec![config.ocs]);
        cfg.request_timeout = Duration::from_secs(30);
        let client = Client::start(cfg);
        if client.wait_open(Duration::from_secs(10)).await.is_none() {
            return Err(crate::sim::SimError::NoOcs(vec![config.ocs]));
        }
        clients.push(client);
    }
    let pacer = config.rate.map(|_| Semaphore::new(0));
    let shared = Arc::new(Shared {
        clients,
        pacer,
        stop: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        next_session: AtomicU64::new(0),
        latency_us: std::sync::Mutex::new(
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("1 µs to 60 s at 3 digits are valid bounds"),
        ),
        config,
    });
    let pacing = shared.config.rate.map(|r| tokio::spawn(pace(shared.clone(), r)));
    let start = Instant::now();
    let workers: Vec<_> = (0..shared.config.sessions).map(|w| tokio::spawn(worker(shared.clone(), w))).collect();
    tokio::time::sleep(shared.config.duration).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut figures = LoadFigures::default();
    for w in workers {
        if let Ok(f) = w.await {
            figures.merge(f);
        }
    }
    figures.elapsed = start.elapsed();
    figures.latency_us = Some(shared.latency_us.lock().unwrap_or_else(|p| p.into_inner()).clone());
    shared.finished.store(true, Ordering::Relaxed);
    if let Some(p) = pacing {
        let _ = p.await;
    }
    if let Ok(shared) = Arc::try_unwrap(shared) {
        for c in shared.clients {
            c.stop().await;
        }
    }
    figures.uncertain.sort();
    figures.uncertain.dedup();
    Ok(figures)
}
