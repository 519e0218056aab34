//! Simulated network elements (HLR/HSS, SMS center subscriber list, charging account) as TCP
//! servers speaking [`crate::core::wire`].
//!
//! An element executes `capacity` commands per second, one after another, each answered
//! `latency` after it was executed, and holds at most `queue_ms` of work waiting: a command that
//! arrives when that much is already waiting is beyond its capacity. It is counted as a
//! violation and refused `overloaded`, which is what the device's tests and benchmark check
//! never happens. The element keeps its subscribers in memory (it is a stand-in; the device's
//! database is the durable record) and refuses, with the reason, what it cannot do: SET, BAR or
//! UNBAR for an unknown subscriber, a verb it does not take. It reports its load with every
//! answer and every `report_ms` on each connection.
//!
//! Hostile clients: lines are bounded ([`crate::core::wire::MAX_LINE`]; a longer one is refused and skipped),
//! a malformed line is answered `0 ERR bad_command` and the connection stays in step, the
//! number of connections is capped, and answers wait in a bounded queue per connection, so a
//! client that stops reading stops being read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use numport_core::Msisdn;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::core::order::{Element, Verb};
use crate::core::protection::ElementLoad;
use crate::core::wire::{Reason, Reply, Request};
use crate::framing::BoundedLines;

/// How an element behaves.
#[derive(Debug, Clone)]
pub struct ElementConfig {
    pub kind: Element,
    /// Commands executed per second.
    pub capacity: u32,
    /// Time from execution to the answer.
    pub latency: Duration,
    /// Work the element holds waiting, in milliseconds of its capacity.
    pub queue_ms: u32,
    /// Period of the unsolicited load report.
    pub report: Duration,
    pub max_connections: usize,
    /// Keep every executed command (tag, verb, number) in order, for tests that check the
    /// order an element saw.
    pub keep_log: bool,
}

impl ElementConfig {
    pub fn new(kind: Element, capacity: u32) -> ElementConfig {
        ElementConfig {
            kind,
            capacity,
            latency: Duration::from_millis(1),
            queue_ms: 100,
            report: Duration::from_millis(100),
            max_connections: 64,
            keep_log: false,
        }
    }
}

/// What an element knows of a subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The command's attributes, the last value of each key kept.
    pub attributes: HashMap<String, String>,
    pub barred: bool,
}

/// A command an element executed (kept with [`ElementConfig::keep_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub tag: u64,
    pub verb: Verb,
    pub msisdn: Msisdn,
    /// When its execution ends (its answer leaves `latency` later).
    pub at: std::time::Instant,
}

/// A running element; cheap to clone.
#[derive(Clone)]
pub struct ElementServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

struct Shared {
    kind: Element,
    latency: Duration,
    queue_ms: u32,
    report: Duration,
    service: Mutex<Service>,
    subscribers: Mutex<HashMap<Msisdn, Record>>,
    received: AtomicU64,
    violations: AtomicU64,
    log: Option<Mutex<Vec<Executed>>>,
}

/// The single server's schedule and the utilisation window.
struct Service {
    capacity: u32,
    /// When the last command accepted will have been executed.
    free_at: Instant,
    window_start: Instant,
    window_count: u64,
    /// Utilisation of the last full window.
    utilisation: f64,
}

/// Length of the window utilisation is measured over.
const UTILISATION_WINDOW: Duration = Duration::from_millis(100);

impl Service {
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= UTILISATION_WINDOW {
            let possible = f64::from(self.capacity.max(1)) * elapsed.as_secs_f64();
            // A window with no arrivals after a long gap reads 0, not a stale figure.
            self.utilisation = if elapsed >= 2 * UTILISATION_WINDOW && self.window_count == 0 {
                0.0
            } else {
                self.window_count as f64 / possible
            };
            self.window_start = now;
            self.window_count = 0;
        }
    }

    fn load(&mut self, now: Instant) -> ElementLoad {
        self.roll(now);
        let waiting = self.free_at.saturating_duration_since(now).as_secs_f64();
        ElementLoad {
            depth: (waiting * f64::from(self.capacity)).ceil() as u64,
            utilisation: self.utilisation,
            capacity: self.capacity,
        }
    }
}

impl Shared {
    /// Accept a command arriving at `now`: when it will have been executed, or `None` when the
    /// element's queue is full.
    fn admit(&self, now: Instant) -> Option<Instant> {
        let mut s = self.service.lock().unwrap_or_else(|e| e.into_inner());
        s.roll(now);
        s.window_count += 1;
        let start = s.free_at.max(now);
        if start.saturating_duration_since(now) >= Duration::from_millis(u64::from(self.queue_ms)) {
            return None;
        }
        s.free_at = start + Duration::from_secs_f64(1.0 / f64::from(s.capacity.max(1)));
        Some(s.free_at)
    }

    fn load(&self) -> ElementLoad {
        self.service.lock().unwrap_or_else(|e| e.into_inner()).load(Instant::now())
    }

    /// Apply a command to the subscriber data.
    fn execute(&self, verb: Verb, msisdn: Msisdn, params: Vec<(String, String)>) -> Result<(), Reason> {
        let allowed: &[Verb] = match self.kind {
            Element::Hlr => &Verb::ALL,
            Element::Smsc => &[Verb::Create, Verb::Delete],
            Element::Charging => &[Verb::Create, Verb::Delete, Verb::Set],
        };
        if !allowed.contains(&verb) {
            return Err(Reason::Unsupported);
        }
        if verb == Verb::Create && self.kind == Element::Hlr && !params.iter().any(|(k, _)| k == "imsi") {
            return Err(Reason::BadCommand);
        }
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        match verb {
            Verb::Create => {
                subscribers.insert(msisdn, Record { attributes: params.into_iter().collect(), barred: false });
            }
            Verb::Delete => {
                subscribers.remove(&msisdn);
            }
            Verb::Set | Verb::Bar | Verb::Unbar => {
                let r = subscribers.get_mut(&msisdn).ok_or(Reason::UnknownSubscriber)?;
                r.attributes.extend(params);
                r.barred = match verb {
                    Verb::Bar => true,
                    Verb::Unbar => false,
                    _ => r.barred,
                };
            }
        }
        Ok(())
    }
}

impl ElementServer {
    /// Serve `config` on `listener` until `shutdown` is cancelled.
    pub fn spawn(
        config: ElementConfig,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<ElementServer> {
        let addr = listener.local_addr()?;
        let now = Instant::now();
        let shared = Arc::new(Shared {
            kind: config.kind,
            latency: config.latency,
            queue_ms: config.queue_ms.max(1),
            report: config.report,
            service: Mutex::new(Service {
                capacity: config.capacity.max(1),
                free_at: now,
                window_start: now,
                window_count: 0,
                utilisation: 0.0,
            }),
            subscribers: Mutex::new(HashMap::new()),
            received: AtomicU64::new(0),
            violations: AtomicU64::new(0),
            log: config.keep_log.then(|| Mutex::new(Vec::new())),
        });
        let server = ElementServer { shared: shared.clone(), addr };
        let limit = Arc::new(Semaphore::new(config.max_connections));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((stream, _)) = accepted else { continue };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::warn!(element = %shared.kind, "connection refused: too many connections");
                    continue;
                };
                let (shared, stop) = (shared.clone(), shutdown.clone());
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    serve_connection(shared, stream, stop).await;
                    drop(permit);
                });
            }
        });
        Ok(server)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn kind(&self) -> Element {
        self.shared.kind
    }

    /// Change the capacity now (an element losing part of itself, and recovering).
    pub fn set_capacity(&self, capacity: u32) {
        let mut s = self.shared.service.lock().unwrap_or_else(|e| e.into_inner());
        s.capacity = capacity.max(1);
    }

    /// Commands received, and of them those beyond capacity.
    pub fn counts(&self) -> (u64, u64) {
        (self.shared.received.load(Ordering::Relaxed), self.shared.violations.load(Ordering::Relaxed))
    }

    pub fn load(&self) -> ElementLoad {
        self.shared.load()
    }

    pub fn subscriber(&self, msisdn: &Msisdn) -> Option<Record> {
        self.shared.subscribers.lock().unwrap_or_else(|e| e.into_inner()).get(msisdn).cloned()
    }

    /// Give the element subscribers it already has (a network's existing base), with no
    /// attributes.
    pub fn preload(&self, numbers: impl IntoIterator<Item = Msisdn>) {
        let mut subscribers = self.shared.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subscribers.extend(numbers.into_iter().map(|m| (m, Record::default())));
    }

    /// The commands executed, in order (with [`ElementConfig::keep_log`]).
    pub fn log(&self) -> Vec<Executed> {
        self.shared.log.as_ref().map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default()
    }

    pub fn subscriber_count(&self) -> usize {
        self.shared.subscribers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Answers waiting for their time, per connection.
const ANSWER_QUEUE: usize = 4096;

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, stop: CancellationToken) {
    let (read, write) = stream.into_split();
    let (tx, rx) = mpsc::channel::<(Instant, Answer)>(ANSWER_QUEUE);
    let writer = tokio::spawn(write_answers(shared.clone(), write, rx));
    let mut lines = FramedRead::new(read, BoundedLines::new());
    loop {
        let line = tokio::select! {
            _ = stop.cancelled() => break,
            l = lines.next() => l,
        };
        let answer = match line {
            None | Some(Err(_)) => break,
            Some(Ok(Err(_too_long))) => Answer::Err(0, Reason::BadCommand),
            Some(Ok(Ok(line))) => match Request::parse(&line) {
                Err(_) => Answer::Err(leading_tag(&line), Reason::BadCommand),
                Ok(Request::Stats { tag }) => Answer::Stats(tag),
                Ok(Request::Command { tag, verb, msisdn, params }) => {
                    shared.received.fetch_add(1, Ordering::Relaxed);
                    match shared.admit(Instant::now()) {
                        None => {
                            shared.violations.fetch_add(1, Ordering::Relaxed);
                            Answer::Err(tag, Reason::Overloaded)
                        }
                        Some(done_at) => {
                            if let Some(log) = &shared.log {
                                let at = done_at.into_std();
                                log.lock().unwrap_or_else(|e| e.into_inner()).push(Executed {
                                    tag,
                                    verb,
                                    msisdn: msisdn.clone(),
                                    at,
                                });
                            }
                            let answer = match shared.execute(verb, msisdn, params) {
                                Ok(()) => Answer::Ok(tag),
                                Err(reason) => Answer::Err(tag, reason),
                            };
                            if tx.send((done_at + shared.latency, answer)).await.is_err() {
                                break;
                            }
                            continue;
                        }
                    }
                }
            },
        };
        if tx.send((Instant::now(), answer)).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The tag of a line that failed to parse, when it starts with one; else 0.
fn leading_tag(line: &str) -> u64 {
    line.split(' ').next().and_then(|t| t.parse().ok()).unwrap_or(0)
}

enum Answer {
    Ok(u64),
    Err(u64, Reason),
    Stats(u64),
}

async fn write_answers(
    shared: Arc<Shared>,
    mut write: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<(Instant, Answer)>,
) {
    let mut report = tokio::time::interval(shared.report);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = String::new();
    loop {
        out.clear();
        tokio::select! {
            _ = report.tick() => Reply::Load(shared.load()).encode(&mut out),
            next = rx.recv() => {
                let Some((due, answer)) = next else { return };
                tokio::time::sleep_until(due).await;
                encode_answer(&shared, answer, &mut out);
                // Everything else already due goes in the same write.
                while let Ok((due, answer)) = rx.try_recv() {
                    if due > Instant::now() {
                        if write.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                        out.clear();
                        tokio::time::sleep_until(due).await;
                    }
                    encode_answer(&shared, answer, &mut out);
                }
            }
        }
        if write.write_all(out.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn encode_answer(shared: &Shared, answer: Answer, out: &mut String) {
    let load = shared.load();
    let reply = match answer {
        Answer::Ok(tag) => Reply::Ok { tag, load },
        Answer::Err(tag, reason) => Reply::Err { tag, reason, load },
        Answer::Stats(tag) => {
            let (received, violations) =
                (shared.received.load(Ordering::Relaxed), shared.violations.load(Ordering::Relaxed));
            Reply::Stats { tag, received, violations, load }
        }
    };
    reply.encode(out);
}
