//! The replica's shared state: the index, the checkpoint, the feed status and the figures.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use clearinghouse_api::ClearinghouseClient;
use clearinghouse_api::model::RoutingChange;
use npdb::{Index, Operator};
use numport_core::Msisdn;
use serde::Serialize;
use telemetry::{Counter, Gauge, Registry};

use crate::ReplicaConfig;
use crate::disk::{Disk, DiskError};

/// A portability replica; cheap to clone, every clone is the same replica.
#[derive(Clone)]
pub struct Replica {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: ReplicaConfig,
    pub client: ClearinghouseClient,
    pub index: RwLock<Index>,
    /// Sequence of the last change applied (the checkpoint).
    pub seq: AtomicI64,
    /// The clearinghouse's head at the last successful feed request.
    pub head: AtomicI64,
    /// Version of the number ranges the index holds.
    pub ranges_version: AtomicI64,
    /// Whether the index holds a complete snapshot (from disk or the clearinghouse).
    pub ready: AtomicBool,
    pub feed: Mutex<FeedStatus>,
    pub disk: Mutex<Disk>,
    pub metrics: Metrics,
}

/// How the last contact with the clearinghouse went.
#[derive(Debug, Default)]
pub(crate) struct FeedStatus {
    pub last_ok: Option<Instant>,
    pub last_error: Option<String>,
}

/// The replica's figures at `/metrics`. The ENUM counters are updated per query on the UDP fast
/// path: each is a handle registered once, an `Arc` of one atomic, and an update is one relaxed
/// atomic add.
pub(crate) struct Metrics {
    pub changes_applied: Counter,
    pub gaps: Counter,
    pub bootstraps: Counter,
    pub feed_errors: Counter,
    pub http_lookups: Counter,
    pub enum_answers: Counter,
    pub enum_nxdomain: Counter,
    pub enum_errors: Counter,
    pub stale: Gauge,
    pub lag: Gauge,
    pub checkpoint: Gauge,
    pub ported_numbers: Gauge,
}

impl Metrics {
    fn new(r: &Registry) -> Metrics {
        Metrics {
            changes_applied: r.counter("npdb_changes_applied", "Routing changes applied from the feed"),
            gaps: r.counter("npdb_feed_gaps", "Gaps detected in the change feed (each repaired)"),
            bootstraps: r.counter("npdb_bootstraps", "Snapshots loaded from the clearinghouse"),
            feed_errors: r.counter("npdb_feed_errors", "Failed requests to the clearinghouse feed"),
            http_lookups: r.counter("npdb_http_lookups", "Numbers looked up over HTTP"),
            enum_answers: r.counter("npdb_enum_answers", "ENUM queries answered with a NAPTR record"),
            enum_nxdomain: r.counter("npdb_enum_nxdomain", "ENUM queries for numbers in no range"),
            enum_errors: r.counter("npdb_enum_errors", "DNS requests refused or malformed"),
            stale: r.gauge("npdb_stale", "1 while the replica cannot confirm it is current"),
            lag: r.gauge("npdb_lag_changes", "Changes the clearinghouse had that this replica had not applied"),
            checkpoint: r.gauge("npdb_checkpoint_seq", "Sequence number of the last change applied"),
            ported_numbers: r.gauge("npdb_ported_numbers", "Ported-number exceptions held"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("the clearinghouse feed: {0}")]
    Feed(#[from] clearinghouse_api::ClientError),
    #[error("{0}")]
    Snapshot(String),
    /// A key without default that the configuration does not set.
    #[error("configuration: `{0}` is not set")]
    Unset(&'static str),
    #[error("TLS to the clearinghouse: {0}")]
    Tls(#[from] numport_tls::TlsError),
}

/// The answer for one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Answer {
    pub msisdn: Msisdn,
    pub operator: String,
    pub routing_number: String,
    /// Served by someone other than its range holder.
    pub ported: bool,
}

/// The replica's state as `/healthz` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub ready: bool,
    pub stale: bool,
    pub seq: i64,
    pub head: i64,
    pub ported_numbers: usize,
    pub ranges: usize,
    pub last_ok_ms_ago: Option<u64>,
    pub last_error: Option<String>,
}

impl Replica {
    /// Opens the data directory and loads the snapshot and journal found there (if any), so
    /// the replica answers from its last known data before it reaches the clearinghouse.
    /// Metrics go to `registry`. A configuration without its clearinghouse, key or directory
    /// is refused ([`ReplicaError::Unset`]).
    pub async fn open(config: ReplicaConfig, registry: &Registry) -> Result<Replica, ReplicaError> {
        let (Some(url), Some(token), Some(dir)) =
            (config.clearinghouse_url.as_deref(), config.api_token.as_deref(), config.data_dir.clone())
        else {
            return Err(ReplicaError::Unset(config.missing_key().unwrap_or("clearinghouse_url")));
        };
        let client = ClearinghouseClient::with_tls(url, token, config.clearinghouse_tls.as_ref())?;
        let (disk, loaded) = tokio::task::spawn_blocking(move || {
            let mut disk = Disk::open(&dir)?;
            let loaded = disk.load()?;
            Ok::<_, DiskError>((disk, loaded))
        })
        .await
        .map_err(|e| ReplicaError::Snapshot(format!("loading task failed: {e}")))??;
        let empty = Index::new([], []).map_err(|e| ReplicaError::Snapshot(e.to_string()))?;
        let replica = Replica {
            inner: Arc::new(Inner {
                config,
                client,
                index: RwLock::new(empty),
                seq: AtomicI64::new(0),
                head: AtomicI64::new(0),
                ranges_version: AtomicI64::new(0),
                ready: AtomicBool::new(false),
                feed: Mutex::new(FeedStatus::default()),
                disk: Mutex::new(disk),
                metrics: Metrics::new(registry),
            }),
        };
        if let Some(loaded) = loaded {
            let mut index = loaded.index;
            let mut seq = loaded.snapshot_seq;
            for c in &loaded.replayed {
                apply_change(&mut index, c);
                seq = c.seq;
            }
            tracing::info!(
                seq,
                snapshot_seq = loaded.snapshot_seq,
                replayed = loaded.replayed.len(),
                ported = index.len(),
                "replica loaded from disk"
            );
            replica.install(index, seq, loaded.ranges_version);
        }
        Ok(replica)
    }

    pub fn config(&self) -> &ReplicaConfig {
        &self.inner.config
    }

    /// Replaces the whole index (bootstrap), valid at `seq`, with ranges at `ranges_version`.
    pub(crate) fn install(&self, index: Index, seq: i64, ranges_version: i64) {
        self.inner.ranges_version.store(ranges_version, Ordering::Release);
        self.inner.metrics.ported_numbers.set(index.len() as i64);
        *self.inner.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        self.set_seq(seq);
        self.inner.ready.store(true, Ordering::Release);
    }

    fn set_seq(&self, seq: i64) {
        self.inner.seq.store(seq, Ordering::Release);
        self.inner.metrics.checkpoint.set(seq);
        self.inner.metrics.lag.set(self.inner.head.load(Ordering::Relaxed).saturating_sub(seq).max(0));
    }

    /// Applies consecutive changes (journalled already) and moves the checkpoint.
    pub(crate) fn apply(&self, changes: &[RoutingChange]) {
        let Some(last) = changes.last() else { return };
        let ported = {
            let mut index = self.inner.index.write().unwrap_or_else(|p| p.into_inner());
            for c in changes {
                apply_change(&mut index, c);
            }
            index.len()
        };
        self.inner.metrics.changes_applied.inc_by(changes.len() as u64);
        self.inner.metrics.ported_numbers.set(ported as i64);
        self.set_seq(last.seq);
    }

    /// The checkpoint: sequence number of the last change applied.
    pub fn seq(&self) -> i64 {
        self.inner.seq.load(Ordering::Acquire)
    }

    /// Version of the number ranges the index holds.
    pub fn ranges_version(&self) -> i64 {
        self.inner.ranges_version.load(Ordering::Acquire)
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Stale: never loaded, the last feed request failed, or none succeeded for `stale_after_ms`.
    pub fn is_stale(&self) -> bool {
        let feed = self.inner.feed.lock().unwrap_or_else(|p| p.into_inner());
        let stale_after = Duration::from_millis(self.inner.config.stale_after_ms);
        !self.is_ready() || feed.last_error.is_some() || feed.last_ok.is_none_or(|t| t.elapsed() > stale_after)
    }

    pub(crate) fn feed_ok(&self, head: i64) {
        self.inner.head.store(head, Ordering::Relaxed);
        let mut feed = self.inner.feed.lock().unwrap_or_else(|p| p.into_inner());
        feed.last_ok = Some(Instant::now());
        feed.last_error = None;
        drop(feed);
        self.inner.metrics.lag.set(head.saturating_sub(self.seq()).max(0));
        self.refresh_stale();
    }

    pub(crate) fn feed_failed(&self, error: String) {
        self.inner.metrics.feed_errors.inc();
        self.inner.feed.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(error);
        self.refresh_stale();
    }

    /// Updates the `npdb_stale` gauge; every feed event and every [`status`] (each `/healthz`)
    /// calls it.
    ///
    /// [`status`]: Replica::status
    pub(crate) fn refresh_stale(&self) -> bool {
        let stale = self.is_stale();
        self.inner.metrics.stale.set(stale as i64);
        stale
    }

    pub fn status(&self) -> Status {
        let stale = self.refresh_stale();
        let (ported_numbers, ranges) = {
            let index = self.read();
            (index.len(), index.range_count())
        };
        let feed = self.inner.feed.lock().unwrap_or_else(|p| p.into_inner());
        Status {
            ready: self.is_ready(),
            stale,
            seq: self.seq(),
            head: self.inner.head.load(Ordering::Relaxed),
            ported_numbers,
            ranges,
            last_ok_ms_ago: feed.last_ok.map(|t| t.elapsed().as_millis() as u64),
            last_error: feed.last_error.clone(),
        }
    }

    /// Read access to the index, for lookups in bulk.
    pub fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.inner.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Who serves `msisdn` now; `None` when it is in no known range and not ported.
    pub fn lookup(&self, msisdn: &Msisdn) -> Option<Answer> {
        let index = self.read();
        index.lookup(msisdn).map(|r| Answer {
            msisdn: msisdn.clone(),
            operator: r.name.to_string(),
            routing_number: r.routing_number.to_string(),
            ported: r.ported,
        })
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

/// One change into the index. An operator the index does not know yet (registered after the
/// snapshot) is added with the routing number the change carries.
pub fn apply_change(index: &mut Index, c: &RoutingChange) {
    if index.op_id(&c.operator).is_err() {
        let routing_number = c.routing_number.clone();
        if let Err(e) = index.add_operator(Operator { name: c.operator.clone(), routing_number }) {
            tracing::error!(seq = c.seq, error = %e, "cannot add operator; change skipped");
            return;
        }
    }
    if let Err(e) = index.apply(&c.msisdn, &c.operator) {
        tracing::error!(seq = c.seq, msisdn = %c.msisdn, error = %e, "change skipped");
    }
}
