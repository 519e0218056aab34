//! The device's sending side (tokio): commands from the durable queues to the elements, at the
//! rate each category's state and each element's capacity allow.
//!
//! The owner of the durable queues (the operator node) commits commands first and then hands
//! them over with [`Dispatcher::submit`]; the dispatcher records each final outcome (executed,
//! or dead-lettered with its reason) through the owner's [`Journal`], in batches. One task owns
//! all the state and ticks every [`DispatcherConfig::tick`]:
//!
//! - **Order per subscriber.** Commands for one subscriber on one element form a chain in
//!   submission order; only its head may be ready, in flight or waiting to retry, and the next
//!   becomes ready only once the head's outcome is *durable*, so that not even a crash followed
//!   by a restart can reorder them (a deactivation never overtakes the activation it follows).
//! - **Rate.** Per element a [`Pacer`] at [`HEADROOM`](crate::core::allocate::HEADROOM) of the
//!   capacity it last reported, and at most `window` commands in flight; what the pacer grants
//!   is shared among the categories by [`allocate`], by priority and protection state.
//! - **Protection.** Each tick every category's [`Protection`] observes the worst
//!   [`Pressure`] over the elements, from their latest load reports and the work queued ahead.
//! - **Failures.** An `overloaded` answer or a lost connection is retried with exponential
//!   back-off; after `max_attempts`, or at once for any other refusal, the command is dead.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use numport_core::{Clock, Millis, Msisdn};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::core::allocate::{Pacer, allocate};
use crate::core::order::{Category, Command, Element};
use crate::core::protection::{ElementLoad, Pressure, Protection, ProtectionState, Thresholds, Transition};
use crate::core::wire::{Reply, Request};
use crate::framing::BoundedLines;

/// How the dispatcher runs.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Where each element listens; a command for an element not listed is dead at once.
    pub elements: HashMap<Element, SocketAddr>,
    pub tick: Duration,
    /// Commands in flight per element at most.
    pub window: usize,
    /// The pacer's burst, in milliseconds of the element's rate.
    pub burst_ms: u32,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Per category, indexed as [`Category::ALL`].
    pub thresholds: [Thresholds; 3],
}

impl DispatcherConfig {
    pub fn new(elements: HashMap<Element, SocketAddr>) -> DispatcherConfig {
        DispatcherConfig {
            elements,
            tick: Duration::from_millis(2),
            window: 512,
            burst_ms: 10,
            max_attempts: 10,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(10),
            thresholds: Category::ALL.map(Thresholds::default_for),
        }
    }
}

/// A committed command handed to the dispatcher.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The command's durable id; also its tag on the wire (positive).
    pub id: i64,
    pub category: Category,
    pub command: Command,
}

/// The final outcome of a command, to be made durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done { id: i64, at: Millis },
    Dead { id: i64, at: Millis, reason: String },
}

impl Outcome {
    pub fn id(&self) -> i64 {
        match self {
            Outcome::Done { id, .. } | Outcome::Dead { id, .. } => *id,
        }
    }
}

/// Where outcomes are made durable (the owner of the queues).
pub trait Journal: Send + 'static {
    /// Record `outcomes` durably; an error is retried.
    fn record(&mut self, outcomes: &[Outcome]) -> impl Future<Output = Result<(), String>> + Send;
}

/// What the dispatcher shows: per category and per element, and the recent transitions.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    pub categories: Vec<CategoryStatus>,
    pub elements: Vec<ElementStatus>,
    /// The most recent state changes, oldest first (at most [`TRANSITIONS_KEPT`]).
    pub transitions: Vec<Transition>,
}

/// Transitions [`Status`] keeps.
pub const TRANSITIONS_KEPT: usize = 64;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategoryStatus {
    pub category: Category,
    pub state: ProtectionState,
    /// Commands submitted whose outcome is not yet durable.
    pub depth: u64,
    pub in_flight: u64,
    pub executed: u64,
    pub dead: u64,
    pub retried: u64,
    /// State changes since start.
    pub transitions: u64,
    /// The pressure last observed (1.0: an element at capacity).
    pub pressure: f64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ElementStatus {
    pub element: Element,
    pub connected: bool,
    /// The latest load the element reported.
    pub load: Option<ElementLoad>,
    pub in_flight: u64,
    pub sent: u64,
}

/// The dispatcher's handle; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::UnboundedSender<Input>,
    status: Arc<Mutex<Status>>,
}

enum Input {
    Submit(Vec<Queued>),
    LinkUp(Element, mpsc::UnboundedSender<Vec<u8>>),
    LinkDown(Element),
    Reply(Element, Reply),
    Recorded(Vec<Outcome>),
}

impl Dispatcher {
    /// Start dispatching; the handle returned finishes once `shutdown` is cancelled and the
    /// outcomes already known are recorded.
    pub fn start<J: Journal>(
        config: DispatcherConfig,
        journal: J,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> (Dispatcher, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(Status::default()));
        for (&element, &addr) in &config.elements {
            tokio::spawn(link(element, addr, tx.clone(), shutdown.clone()));
        }
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record(journal, outcomes_rx, tx.clone()));
        let state = State::new(config, clock, outcomes_tx, status.clone());
        let run = tokio::spawn(async move {
            state.run(rx, shutdown).await;
            let _ = recorder.await;
        });
        (Dispatcher { tx, status }, run)
    }

    /// Hand over committed commands, in the order they were committed.
    pub fn submit(&self, commands: Vec<Queued>) {
        if !commands.is_empty() {
            let _ = self.tx.send(Input::Submit(commands));
        }
    }

    pub fn status(&self) -> Status {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Pending {
    queued: Queued,
    attempts: u32,
}

struct Link {
    element: Element,
    writer: Option<mpsc::UnboundedSender<Vec<u8>>>,
    load: Option<ElementLoad>,
    pacer: Option<Pacer>,
    in_flight: HashMap<i64, ()>,
    sent: u64,
}

struct Counters {
    depth: u64,
    in_flight: u64,
    executed: u64,
    dead: u64,
    retried: u64,
    transitions: u64,
    pressure: f64,
}

struct State {
    config: DispatcherConfig,
    clock: Arc<dyn Clock>,
    started: Instant,
    commands: HashMap<i64, Pending>,
    /// Per (element, subscriber), the commands in submission order; the head is the one
    /// allowed to be ready, in flight, waiting to retry, or waiting for its outcome's record.
    chains: HashMap<(Element, Msisdn), VecDeque<i64>>,
    /// `ready[category][element]`.
    ready: [[VecDeque<i64>; 3]; 3],
    retry_at: BinaryHeap<Reverse<(Instant, i64)>>,
    links: [Link; 3],
    protection: [Protection; 3],
    counters: [Counters; 3],
    transitions: VecDeque<Transition>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    status: Arc<Mutex<Status>>,
}

impl State {
    fn new(
        config: DispatcherConfig,
        clock: Arc<dyn Clock>,
        outcomes: mpsc::UnboundedSender<Outcome>,
        status: Arc<Mutex<Status>>,
    ) -> State {
        let link =
            |element| Link { element, writer: None, load: None, pacer: None, in_flight: HashMap::new(), sent: 0 };
        let counters =
            || Counters { depth: 0, in_flight: 0, executed: 0, dead: 0, retried: 0, transitions: 0, pressure: 0.0 };
        State {
            protection: Category::ALL.map(|c| Protection::new(c, config.thresholds[c.index()])),
            config,
            clock,
            started: Instant::now(),
            commands: HashMap::new(),
            chains: HashMap::new(),
            ready: Default::default(),
            retry_at: BinaryHeap::new(),
            links: Element::ALL.map(link),
            counters: Category::ALL.map(|_| counters()),
            transitions: VecDeque::new(),
            outcomes,
            status,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.tick(),
                input = rx.recv() => match input {
                    None => break,
                    Some(i) => {
                        self.input(i);
                        // Take everything already waiting before the next tick.
                        while let Ok(i) = rx.try_recv() {
                            self.input(i);
                        }
                    }
                },
            }
        }
        self.publish();
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Submit(commands) => commands.into_iter().for_each(|q| self.submit(q)),
            Input::LinkUp(element, writer) => self.links[element.index()].writer = Some(writer),
            Input::LinkDown(element) => self.link_down(element),
            Input::Reply(element, reply) => self.reply(element, reply),
            Input::Recorded(outcomes) => outcomes.iter().for_each(|o| self.recorded(o)),
        }
    }

    fn submit(&mut self, q: Queued) {
        let (id, category, element) = (q.id, q.category, q.command.element);
        if self.commands.contains_key(&id) {
            return;
        }
        let key = (element, q.command.msisdn.clone());
        self.counters[category.index()].depth += 1;
        self.commands.insert(id, Pending { queued: q, attempts: 0 });
        if !self.config.elements.contains_key(&element) {
            // Still behind its chain: the outcome is recorded, in order, like any other.
            self.finish(id, Err(format!("no {element} element configured")));
            return;
        }
        let chain = self.chains.entry(key).or_default();
        chain.push_back(id);
        if chain.len() == 1 {
            self.ready[category.index()][element.index()].push_back(id);
        }
    }

    /// An answer or report from an element.
    fn reply(&mut self, element: Element, reply: Reply) {
        let (tag, result, load) = match reply {
            Reply::Load(load) => return self.load(element, load),
            Reply::Stats { load, .. } => return self.load(element, load),
            Reply::Ok { tag, load } => (tag, Ok(()), load),
            Reply::Err { tag, reason, load } => (tag, Err(reason), load),
        };
        self.load(element, load);
        let id = tag as i64;
        if self.links[element.index()].in_flight.remove(&id).is_none() {
            return; // an answer for a command already given up on this link
        }
        let Some(category) = self.commands.get(&id).map(|p| p.queued.category) else { return };
        self.counters[category.index()].in_flight -= 1;
        match result {
            Ok(()) => self.finish(id, Ok(())),
            Err(reason) if reason.is_transient() => self.retry(id, reason.as_str()),
            Err(reason) => self.finish(id, Err(reason.as_str().to_owned())),
        }
    }

    fn load(&mut self, element: Element, load: ElementLoad) {
        let link = &mut self.links[element.index()];
        let now_us = self.started.elapsed().as_micros() as i64;
        match &mut link.pacer {
            Some(_) if link.load.is_some_and(|l| l.capacity == load.capacity) => {}
            Some(p) => p.set_capacity(load.capacity, self.config.burst_ms),
            None => link.pacer = Some(Pacer::new(load.capacity, self.config.burst_ms, now_us)),
        }
        link.load = Some(load);
    }

    fn link_down(&mut self, element: Element) {
        let link = &mut self.links[element.index()];
        link.writer = None;
        link.load = None;
        link.pacer = None;
        let lost: Vec<i64> = link.in_flight.drain().map(|(id, ())| id).collect();
        for id in lost {
            if let Some(p) = self.commands.get(&id) {
                self.counters[p.queued.category.index()].in_flight -= 1;
            }
            self.retry(id, "connection lost");
        }
    }

    fn retry(&mut self, id: i64, reason: &str) {
        let Some(p) = self.commands.get_mut(&id) else { return };
        p.attempts += 1;
        if p.attempts >= self.config.max_attempts {
            let attempts = p.attempts;
            return self.finish(id, Err(format!("{reason} (given up after {attempts} attempts)")));
        }
        self.counters[p.queued.category.index()].retried += 1;
        let exp = self.config.backoff_base.saturating_mul(1 << (p.attempts - 1).min(16));
        // A little spread, so commands refused together do not all come back together.
        let spread = self.config.backoff_base.mul_f64((id % 16) as f64 / 16.0);
        let delay = exp.min(self.config.backoff_max) + spread;
        self.retry_at.push(Reverse((Instant::now() + delay, id)));
    }

    /// The command's final outcome: to the journal; its chain moves on once it is recorded.
    fn finish(&mut self, id: i64, result: Result<(), String>) {
        let at = self.clock.now_ms();
        let outcome = match result {
            Ok(()) => Outcome::Done { id, at },
            Err(reason) => Outcome::Dead { id, at, reason },
        };
        let _ = self.outcomes.send(outcome);
    }

    /// The outcome of `id` is durable: count it and let the next of its chain go.
    fn recorded(&mut self, outcome: &Outcome) {
        let id = outcome.id();
        let Some(p) = self.commands.remove(&id) else { return };
        let c = &mut self.counters[p.queued.category.index()];
        c.depth -= 1;
        match outcome {
            Outcome::Done { .. } => c.executed += 1,
            Outcome::Dead { .. } => c.dead += 1,
        }
        let key = (p.queued.command.element, p.queued.command.msisdn);
        let Some(chain) = self.chains.get_mut(&key) else { return };
        if chain.front() == Some(&id) {
            chain.pop_front();
        }
        match chain.front().copied() {
            None => {
                self.chains.remove(&key);
            }
            Some(next) => {
                if let Some(n) = self.commands.get(&next) {
                    self.ready[n.queued.category.index()][key.0.index()].push_back(next);
                }
            }
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((due, id))) = self.retry_at.peek().copied() {
            if due > now {
                break;
            }
            self.retry_at.pop();
            if let Some(p) = self.commands.get(&id) {
                self.ready[p.queued.category.index()][p.queued.command.element.index()].push_front(id);
            }
        }
        self.protect();
        for element in Element::ALL {
            self.send(element);
        }
        self.publish();
    }

    /// Observe each category's pressure: the worst over the elements of their load and the
    /// work queued ahead of it.
    fn protect(&mut self) {
        let now = self.clock.now_ms();
        for c in Category::ALL {
            let mut pressure = Pressure::NONE;
            for link in &self.links {
                let Some(load) = &link.load else { continue };
                let ahead: usize =
                    Category::ALL[..c.index()].iter().map(|h| self.ready[h.index()][link.element.index()].len()).sum();
                pressure = pressure.max(Pressure::of(link.element, load, ahead as u64));
            }
            self.counters[c.index()].pressure = pressure.value;
            if let Some(t) = self.protection[c.index()].observe(pressure, now) {
                tracing::info!(category = %c, from = %t.from, to = %t.to, cause = %t.cause, "protection state changed");
                self.counters[c.index()].transitions += 1;
                if self.transitions.len() == TRANSITIONS_KEPT {
                    self.transitions.pop_front();
                }
                self.transitions.push_back(t);
            }
        }
    }

    /// Send to `element` what its pacer and the allocation allow now.
    fn send(&mut self, element: Element) {
        let now_us = self.started.elapsed().as_micros() as i64;
        let e = element.index();
        let link = &mut self.links[e];
        let (Some(writer), Some(pacer)) = (&link.writer, &mut link.pacer) else { return };
        let room = self.config.window.saturating_sub(link.in_flight.len()) as u32;
        let budget = pacer.available(now_us).min(room);
        if budget == 0 {
            return;
        }
        let demand = Category::ALL.map(|c| self.ready[c.index()][e].len() as u32);
        let states = self.protection.each_ref().map(|p| p.state());
        let grant = allocate(budget, demand, states);
        let mut out = String::new();
        let mut total = 0;
        for c in Category::ALL {
            for _ in 0..grant[c.index()] {
                let Some(id) = self.ready[c.index()][e].pop_front() else { break };
                let Some(p) = self.commands.get(&id) else { continue };
                let cmd = &p.queued.command;
                let params = cmd.params.clone();
                Request::Command { tag: id as u64, verb: cmd.verb, msisdn: cmd.msisdn.clone(), params }
                    .encode(&mut out);
                link.in_flight.insert(id, ());
                self.counters[c.index()].in_flight += 1;
                total += 1;
            }
        }
        if total > 0 {
            pacer.take(total);
            link.sent += u64::from(total);
            let _ = writer.send(out.into_bytes());
        }
    }

    fn publish(&self) {
        let status = Status {
            categories: Category::ALL
                .map(|c| {
                    let n = &self.counters[c.index()];
                    CategoryStatus {
                        category: c,
                        state: self.protection[c.index()].state(),
                        depth: n.depth,
                        in_flight: n.in_flight,
                        executed: n.executed,
                        dead: n.dead,
                        retried: n.retried,
                        transitions: n.transitions,
                        pressure: n.pressure,
                    }
                })
                .to_vec(),
            elements: self
                .links
                .iter()
                .filter(|l| self.config.elements.contains_key(&l.element))
                .map(|l| ElementStatus {
                    element: l.element,
                    connected: l.writer.is_some(),
                    load: l.load,
                    in_flight: l.in_flight.len() as u64,
                    sent: l.sent,
                })
                .collect(),
            transitions: self.transitions.iter().cloned().collect(),
        };
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// Record outcomes in batches; tell the dispatcher which are durable.
async fn record<J: Journal>(
    mut journal: J,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    tx: mpsc::UnboundedSender<Input>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while let Ok(o) = rx.try_recv() {
            batch.push(o);
        }
        loop {
            match journal.record(&batch).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, outcomes = batch.len(), "recording provisioning outcomes failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let _ = tx.send(Input::Recorded(std::mem::take(&mut batch)));
    }
}

/// Keep a connection to one element: connect (with back-off), forward its lines to the
/// dispatcher, write what the dispatcher sends.
async fn link(element: Element, addr: SocketAddr, tx: mpsc::UnboundedSender<Input>, shutdown: CancellationToken) {
    let mut delay = Duration::from_millis(50);
    while !shutdown.is_cancelled() {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                delay = Duration::from_millis(50);
                let _ = stream.set_nodelay(true);
                let (read, mut write) = stream.into_split();
                let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
                if tx.send(Input::LinkUp(element, wtx)).is_err() {
                    return;
                }
                let writer = tokio::spawn(async move {
                    while let Some(bytes) = wrx.recv().await {
                        if write.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                });
                let mut lines = FramedRead::new(read, BoundedLines::new());
                loop {
                    let line = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        l = lines.next() => l,
                    };
                    match line {
                        Some(Ok(Ok(line))) => match Reply::parse(&line) {
                            Ok(reply) => {
                                if tx.send(Input::Reply(element, reply)).is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!(%element, error = %e, "unreadable line from element"),
                        },
                        Some(Ok(Err(_too_long))) => tracing::warn!(%element, "over-long line from element"),
                        Some(Err(_)) | None => break,
                    }
                }
                writer.abort();
                let _ = tx.send(Input::LinkDown(element));
                tracing::warn!(%element, %addr, "connection to element lost");
            }
            Err(e) => tracing::debug!(%element, %addr, error = %e, "element unreachable"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
