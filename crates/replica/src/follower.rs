//! Following the clearinghouse's change feed: bootstrap, long-poll, gap repair, snapshots.
//!
//! The loop, per round:
//!
//! 1. No data yet (first start, or a gap the feed cannot fill): download the clearinghouse's
//!    snapshot to `snapshot.part`, sync it, load it, and make it the snapshot on disk.
//! 2. Otherwise long-poll the changes after the checkpoint. A page must continue the checkpoint
//!    exactly ([`check_page`]). A page that does not is a gap: the replica asks again for
//!    the same range at once; if the clearinghouse still cannot fill it, the replica loads a
//!    new snapshot instead of guessing.
//!    A page whose ranges version differs from the snapshot's (ranges were loaded at the
//!    clearinghouse; the feed carries numbers only) also leads to a new snapshot.
//! 3. Changes are journalled, then applied in memory; every `snapshot_every` changes the index
//!    is written as a new snapshot and the journal emptied.
//!
//! A failed request marks the replica stale (it keeps answering from what it has) and is
//! retried with back-off from 100 ms to 5 s.

use std::fs::File;
use std::io::BufReader;
use std::time::Duration;

use clearinghouse_api::ClientError;
use clearinghouse_api::model::ChangePage;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::disk::DiskError;
use crate::{Replica, ReplicaError};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a page of the feed cannot be applied after a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedGap {
    /// The page skips from `expected` to `found`.
    Skipped { expected: i64, found: i64 },
    /// The log's head is past the checkpoint, yet the page is empty: the changes are gone.
    Missing { after: i64, head: i64 },
    /// The log's head is before the checkpoint: the clearinghouse was restored to an earlier
    /// state, and this replica holds changes it no longer has.
    Rewound { checkpoint: i64, head: i64 },
}

impl std::fmt::Display for FeedGap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedGap::Skipped { expected, found } => write!(f, "expected change {expected}, got {found}"),
            FeedGap::Missing { after, head } => write!(f, "head is {head} but no change after {after} was returned"),
            FeedGap::Rewound { checkpoint, head } => write!(f, "head {head} is behind this replica's {checkpoint}"),
        }
    }
}

/// Whether `page` continues a replica whose checkpoint is `after`, change by change.
pub fn check_page(after: i64, page: &ChangePage) -> Result<(), FeedGap> {
    if page.head < after {
        return Err(FeedGap::Rewound { checkpoint: after, head: page.head });
    }
    if page.changes.is_empty() && page.head > after {
        return Err(FeedGap::Missing { after, head: page.head });
    }
    // Each change's seq is the one before plus one; checked without `+ 1`, which overflows
    // at the i64::MAX a hostile feed or snapshot may name.
    let mut last = after;
    for c in &page.changes {
        if c.seq.checked_sub(1) != Some(last) {
            return Err(FeedGap::Skipped { expected: last.saturating_add(1), found: c.seq });
        }
        last = c.seq;
    }
    Ok(())
}

impl Replica {
    /// Follows the feed until `stop` is cancelled. See the module documentation.
    pub async fn follow(self, stop: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let round = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.step() => r,
            };
            match round {
                Ok(()) => backoff = FIRST_BACKOFF,
                Err(e) => {
                    self.feed_failed(e.to_string());
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "routing feed");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One round of [`Replica::follow`]: bootstrap when there is no data, else one feed page.
    pub async fn step(&self) -> Result<(), ReplicaError> {
        if !self.is_ready() {
            return self.bootstrap().await;
        }
        let config = &self.inner.config;
        let after = self.seq();
        let page = self.inner.client.routing_changes(after, config.page_size, config.poll_wait_ms).await?;
        self.feed_ok(page.head);
        if page.ranges_version != self.ranges_version() {
            tracing::info!(
                have = self.ranges_version(),
                now = page.ranges_version,
                "number ranges changed at the clearinghouse; loading a new snapshot"
            );
            return self.bootstrap().await;
        }
        if let Err(gap) = check_page(after, &page) {
            self.metrics().gaps.inc();
            tracing::warn!(%gap, "gap in the routing feed; asking again");
            let again = self.inner.client.routing_changes(after, config.page_size, 0).await?;
            if let Err(gap) = check_page(after, &again) {
                tracing::warn!(%gap, "the clearinghouse cannot fill the gap; loading a new snapshot");
                return self.bootstrap().await;
            }
            return self.take(&again).await;
        }
        self.take(&page).await
    }

    /// Journals and applies a checked page, then writes a snapshot if one is due.
    async fn take(&self, page: &ChangePage) -> Result<(), ReplicaError> {
        if page.changes.is_empty() {
            return Ok(());
        }
        let due = {
            let mut disk = self.inner.disk.lock().unwrap_or_else(|p| p.into_inner());
            disk.append(&page.changes)?;
            disk.journal_lines() >= self.inner.config.snapshot_every
        };
        self.apply(&page.changes);
        if due {
            self.write_snapshot().await?;
        }
        Ok(())
    }

    /// Writes the index as the snapshot at the checkpoint and empties the journal. The feed
    /// waits meanwhile (it holds no lock readers need: lookups go on).
    pub async fn write_snapshot(&self) -> Result<(), ReplicaError> {
        let replica = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut disk = replica.inner.disk.lock().unwrap_or_else(|p| p.into_inner());
            let index = replica.read();
            let seq = replica.seq();
            disk.write_snapshot(&index, seq, replica.ranges_version())?;
            tracing::info!(seq, ported = index.len(), "snapshot written");
            Ok::<_, ReplicaError>(())
        })
        .await
        .map_err(|e| ReplicaError::Snapshot(format!("snapshot task failed: {e}")))?
    }

    /// Loads the clearinghouse's snapshot (see the module documentation).
    pub async fn bootstrap(&self) -> Result<(), ReplicaError> {
        let started = std::time::Instant::now();
        let part = self.inner.disk.lock().unwrap_or_else(|p| p.into_inner()).partial_snapshot_path();
        let io = |e: std::io::Error| ReplicaError::Disk(DiskError::Io { path: part.clone(), source: e });
        let mut resp = self.inner.client.routing_snapshot().await?;
        let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
        let mut bytes = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(ClientError::Transport)? {
            bytes += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        let replica = self.clone();
        let (seq, ported) = tokio::task::spawn_blocking(move || {
            let file = File::open(&part).map_err(|e| DiskError::Io { path: part.clone(), source: e })?;
            let (index, header) = npdb::snapshot::read_index(BufReader::with_capacity(1 << 20, file), |_| {})
                .map_err(|source| DiskError::Snapshot { path: part.clone(), source })?;
            replica.inner.disk.lock().unwrap_or_else(|p| p.into_inner()).install(&part)?;
            let ported = index.len();
            // Counted before the new checkpoint is visible, so that whoever sees the replica at
            // the snapshot's seq also sees the bootstrap counted.
            replica.metrics().bootstraps.inc();
            replica.install(index, header.seq, header.ranges_version);
            Ok::<_, ReplicaError>((header.seq, ported))
        })
        .await
        .map_err(|e| ReplicaError::Snapshot(format!("bootstrap task failed: {e}")))??;
        self.feed_ok(seq.max(self.inner.head.load(std::sync::atomic::Ordering::Relaxed)));
        tracing::info!(
            seq,
            ported,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "replica bootstrapped from the clearinghouse snapshot"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clearinghouse_api::model::RoutingChange;
    use numport_core::porting::ChangeKind;

    fn page(seqs: &[i64], head: i64) -> ChangePage {
        let changes = seqs
            .iter()
            .map(|&seq| RoutingChange {
                seq,
                msisdn: "4790000001".parse().unwrap(),
                operator: "opb".parse().unwrap(),
                routing_number: "D002".parse().unwrap(),
                kind: ChangeKind::Port,
                effective_at: 0,
            })
            .collect();
        ChangePage { changes, head, ranges_version: 0 }
    }

    #[test]
    fn pages_must_continue_the_checkpoint() {
        assert_eq!(check_page(5, &page(&[6, 7, 8], 8)), Ok(()));
        assert_eq!(check_page(5, &page(&[], 5)), Ok(()));
        assert_eq!(check_page(5, &page(&[7, 8], 8)), Err(FeedGap::Skipped { expected: 6, found: 7 }));
        assert_eq!(check_page(5, &page(&[6, 8], 8)), Err(FeedGap::Skipped { expected: 7, found: 8 }));
        assert_eq!(check_page(5, &page(&[6, 6], 8)), Err(FeedGap::Skipped { expected: 7, found: 6 }));
        assert_eq!(check_page(5, &page(&[], 9)), Err(FeedGap::Missing { after: 5, head: 9 }));
        assert_eq!(check_page(5, &page(&[], 3)), Err(FeedGap::Rewound { checkpoint: 5, head: 3 }));
    }

    /// Found by the `feed` fuzz target: a routing number with a comma or a newline was
    /// journalled as it came, and its line then read back as nothing (or as a forged change).
    #[test]
    fn a_page_with_a_malformed_routing_number_is_refused() {
        let page = |rn: &str| {
            format!(
                r#"{{"changes":[{{"seq":6,"msisdn":"4790000001","operator":"opb","routing_number":{},"kind":"port","effective_at":0}}],"head":6}}"#,
                serde_json::to_string(rn).unwrap()
            )
        };
        assert!(serde_json::from_str::<ChangePage>(&page("D002")).is_ok());
        for rn in ["D00,", ",002", "D002\n7,4790000009,opb,D002,port,0", "", "D0020000000"] {
            assert!(serde_json::from_str::<ChangePage>(&page(rn)).is_err(), "{rn:?}");
        }
    }

    /// Found by the `feed` fuzz target: a checkpoint at i64::MAX (a snapshot may name it)
    /// overflowed `after + 1`.
    #[test]
    fn checkpoints_at_the_ends_of_i64_are_checked_without_overflow() {
        assert_eq!(check_page(i64::MAX, &page(&[], i64::MAX)), Ok(()));
        assert_eq!(
            check_page(i64::MAX, &page(&[i64::MIN], i64::MAX)),
            Err(FeedGap::Skipped { expected: i64::MAX, found: i64::MIN })
        );
        assert_eq!(check_page(i64::MAX - 1, &page(&[i64::MAX], i64::MAX)), Ok(()));
        assert_eq!(
            check_page(i64::MIN, &page(&[i64::MIN], 0)),
            Err(FeedGap::Skipped { expected: i64::MIN + 1, found: i64::MIN })
        );
    }
}
