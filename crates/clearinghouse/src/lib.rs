//! F1: the neutral number portability clearinghouse.
//!
//! The clearinghouse stands between the recipient operator (which wants the subscriber), the
//! donor operator (which serves the number now) and the terminal. It verifies the terminal's
//! proof against the donor's deposit, brokers the credit query, settles the compensation in a
//! double-entry ledger, records the new route and appends it to the routing change log, and
//! supervises every step's deadline so that no donor can stall a port.
//!
//! - [`porting`]: the porting order, from verification request to settlement.
//! - [`numbers`]: number status and number return; accounts, violations, inbox.
//! - [`admin`]: what the portability center does on its own database (operators, credentials,
//!   ranges, funding).
//! - [`dispatcher`]: signed callbacks from the durable outbox, with retries.
//! - [`settler`]: F1 step 6, the accepted orders settled in batches.
//! - [`feed`]: the source of F2: the routing change log as a long-poll, and the snapshot.
//! - [`supervisor`]: the deadline sweeper.
//! - [`http`]: the `/v1` API, idempotency, errors.
//! - [`openapi`]: the OpenAPI document generated from the handlers and bodies.
//! - [`auth`]: operator API keys.
//! - [`rate`]: each operator's request rate.
//! - [`callback_address`]: which addresses callbacks may go to.
//! - [`store`]: the clearinghouse's tables and every SQL statement, on the `numport_db` engine.

pub mod admin;
pub mod auth;
pub mod callback_address;
pub mod config;
pub mod dispatcher;
pub mod error;
pub mod feed;
pub mod http;
pub mod metrics;
pub mod numbers;
pub mod openapi;
pub mod porting;
pub mod rate;
pub mod settler;
pub mod store;
pub mod supervisor;

use std::collections::HashMap;
use std::sync::Arc;

use numport_core::porting::Reason;
use numport_core::{Clock, Millis, OperatorName, RoutingNumber};
use numport_db::{Connection, Db};
use telemetry::Registry;
use tokio::sync::Notify;

pub use config::ClearinghouseConfig;
pub use error::Error;
pub use metrics::Metrics;

/// The clearinghouse: database, clock, configuration and the wake-up of the dispatcher.
/// Cheap to clone; every HTTP handler and background task holds one.
#[derive(Clone)]
pub struct Clearinghouse {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ClearinghouseConfig>,
    master_key: Arc<[u8; 32]>,
    pub metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    /// Wakes the settler: an acceptance committed.
    settle: Arc<Notify>,
    auth_cache: Arc<auth::AuthCache>,
    /// Each operator's request bucket.
    rate: Arc<rate::RateLimiter>,
    operators: Arc<std::sync::RwLock<HashMap<i64, Arc<OperatorInfo>>>>,
    /// Ticks after every commit that may have appended routing changes; wakes long-polls.
    feed: Arc<tokio::sync::watch::Sender<()>>,
    /// The highest sequence number this process has appended to the change log (perhaps not
    /// committed yet). A woken long-poll reads the database only if this is past its `after`:
    /// most commits (outbox, inbox, idempotency answers) append no change, and re-reading the
    /// log for every waiting replica on each of them would take database time from porting.
    feed_hint: Arc<std::sync::atomic::AtomicI64>,
    /// The change log's pages read last, shared by the followers a commit wakes together
    /// (`feed::read_page`).
    feed_pages: Arc<tokio::sync::Mutex<feed::RecentPages>>,
}

/// What never changes about a registered operator, cached so that hot paths do not ask the
/// database for it again.
#[derive(Debug)]
pub struct OperatorInfo {
    pub id: i64,
    pub name: OperatorName,
    pub routing_number: RoutingNumber,
    /// Its settlement account.
    pub account_id: i64,
}

impl Clearinghouse {
    pub fn new(db: Db, clock: Arc<dyn Clock>, config: ClearinghouseConfig, master_key: [u8; 32]) -> Clearinghouse {
        let rate = Arc::new(rate::RateLimiter::new(config.rate_limit));
        Clearinghouse {
            db,
            clock,
            config: Arc::new(config),
            master_key: Arc::new(master_key),
            metrics: Arc::new(Metrics::new(Registry::new())),
            wake: Arc::new(Notify::new()),
            settle: Arc::new(Notify::new()),
            auth_cache: Arc::default(),
            rate,
            operators: Arc::default(),
            feed: Arc::new(tokio::sync::watch::channel(()).0),
            feed_hint: Arc::default(),
            feed_pages: Arc::default(),
        }
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// The secret an operator's callbacks are signed with, at the given key version.
    pub fn callback_secret(&self, operator: &str, version: i64) -> [u8; 32] {
        numport_core::signing::derive_callback_secret(&*self.master_key, operator, version)
    }

    /// The unchanging facts of an operator, from the cache or (once) from the database.
    pub async fn operator(&self, conn: &mut Connection, id: i64) -> Result<Arc<OperatorInfo>, Error> {
        if let Some(op) = self.operators.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(op.clone());
        }
        let op = crate::store::operators::by_id(conn, id).await?;
        let (account_id, _) = crate::store::ledger::operator_account(conn, id).await?;
        let info = Arc::new(OperatorInfo { id, name: op.name, routing_number: op.routing_number, account_id });
        self.operators.write().unwrap_or_else(|p| p.into_inner()).insert(id, info.clone());
        Ok(info)
    }

    /// Tell the dispatcher that new messages are committed, and change-log followers that
    /// the log may have grown.
    pub fn wake_dispatcher(&self) {
        self.wake.notify_one();
        self.wake_feed();
    }

    /// Tell the settler that accepted orders are committed.
    pub(crate) fn wake_settler(&self) {
        self.settle.notify_one();
    }

    /// Tell change-log followers that the log may have grown.
    pub(crate) fn wake_feed(&self) {
        self.feed.send_replace(());
    }

    /// Records that the change log has (or will have, at commit) sequence number `seq`; call
    /// before the commit, or after changing the log from outside the server (a bulk import),
    /// followed by [`Clearinghouse::wake_dispatcher`].
    pub fn note_feed_seq(&self, seq: i64) {
        self.feed_hint.fetch_max(seq, std::sync::atomic::Ordering::AcqRel);
    }

    /// Whether the change log may hold changes after `after` that this process appended.
    pub(crate) fn feed_may_have_after(&self, after: i64) -> bool {
        self.feed_hint.load(std::sync::atomic::Ordering::Acquire) > after
    }

    /// A receiver that ticks when the routing change log may have grown.
    pub fn feed_ticks(&self) -> tokio::sync::watch::Receiver<()> {
        self.feed.subscribe()
    }
}

/// What a request adds to the porting counters, kept until its transaction commits: a request
/// that rolls back (one that lost its idempotency claim, or a conflict run again) counts
/// nothing, and one that commits counts once.
#[derive(Debug, Default)]
pub struct Counts {
    orders_requested: u64,
    ports_completed: u64,
    compensation_minor_units: u64,
    violations: u64,
    closed: Vec<Reason>,
    settlements_queued: u64,
}

impl Counts {
    pub(crate) fn order_requested(&mut self) {
        self.orders_requested += 1;
    }
    pub(crate) fn port_completed(&mut self, compensation: numport_core::Money) {
        self.ports_completed += 1;
        self.compensation_minor_units += compensation.0.max(0) as u64;
    }
    pub(crate) fn violation(&mut self) {
        self.violations += 1;
    }
    pub(crate) fn closed(&mut self, reason: Reason) {
        self.closed.push(reason);
    }
    pub(crate) fn settlement_queued(&mut self) {
        self.settlements_queued += 1;
    }
    /// Whether the settler has work once these are committed.
    pub(crate) fn queued_settlements(&self) -> bool {
        self.settlements_queued > 0
    }
}

/// Serve the API on `listener` (over TLS unless the configuration chose plain HTTP) and run the
/// dispatcher, settlers and supervisor until `shutdown` fires; then stop accepting, finish
/// requests in flight, and let deliveries in flight complete.
pub async fn run(
    ch: Clearinghouse,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let invalid = |e: numport_tls::TlsError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    let tls = numport_tls::serving(ch.config.tls.as_ref(), ch.config.plain_http).map_err(invalid)?;
    let metrics = match ch.config.metrics_listen {
        Some(addr) => {
            let router = telemetry::metrics_routes(ch.metrics.registry.clone());
            Some(numport_tls::http::serve_metrics(addr, router, ch.config.tls.as_ref(), shutdown.clone()).await?.1)
        }
        None => None,
    };
    let background = shutdown.child_token();
    let deliverer = dispatcher::deliverer(listener.local_addr()?);
    let callbacks = dispatcher::http_client(&ch.config).map_err(invalid)?;
    let dispatcher = tokio::spawn(dispatcher::run(ch.clone(), callbacks, deliverer, background.clone()));
    let supervisor = tokio::spawn(supervisor::run(ch.clone(), background.clone()));
    // Two settlers: while one commits a batch, the other waits at the database for the lock
    // that serializes them, and reads the next batch the moment that COMMIT lands.
    let settlers = [(); settler::TASKS].map(|()| tokio::spawn(settler::run(ch.clone(), background.clone())));
    let commits = tokio::spawn(feed::follow_commits(ch.clone(), background.clone()));
    let served = numport_tls::http::serve(listener, http::router(ch.clone()), tls, shutdown.clone()).await;
    background.cancel();
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    let _ = tokio::join!(dispatcher, supervisor, futures::future::join_all(settlers), commits);
    served
}
