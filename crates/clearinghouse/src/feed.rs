//! The source of F2: the routing change log and the snapshot replicas bootstrap from.
//!
//! Both are for every authenticated operator (routing data is shared by design); neither
//! changes anything, so neither needs an idempotency key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::store::routing::FeedPage;
use crate::store::{operators, ranges, routing};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use clearinghouse_api::model::{ChangePage, RoutingChange};
use npdb::snapshot::{self, SnapshotHeader, SnapshotOperator};
use numport_core::{OperatorName, Prefix};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Clearinghouse;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::http::query;
use crate::openapi::{Internal, Unauthorized};

/// Longest a long-poll of the change log waits for a change.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Ported numbers read per database round trip while streaming a snapshot.
const SNAPSHOT_PAGE: i64 = 20_000;

pub(crate) fn routes() -> OpenApiRouter<Clearinghouse> {
    OpenApiRouter::new().routes(routes!(routing_changes)).routes(routes!(routing_snapshot))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ChangesQuery {
    /// Only changes with a sequence number greater than this (0 if absent).
    after: Option<i64>,
    /// At most this many changes (clamped to 1..10000; 1000 if absent).
    #[param(minimum = 1, maximum = 10000, default = 1000)]
    limit: Option<i64>,
    /// How long to wait for a change when there is none yet, in milliseconds (at most 30000).
    #[param(maximum = 30000, default = 0)]
    wait_ms: Option<u64>,
}

/// The routing change log after a sequence number (long-poll)
///
/// Every authenticated operator may follow the log. Returns at once when changes after `after`
/// exist; otherwise waits up to `wait_ms` (at most 30 s) for one, then returns an empty page.
#[utoipa::path(get, path = "/v1/routing/changes", tag = "routing", operation_id = "routingChanges",
    params(ChangesQuery),
    responses(
        (status = 200, description = "Changes in sequence order.", body = ChangePage),
        (status = 401, response = Unauthorized),
        (status = 422, response = crate::openapi::InvalidQuery),
        (status = 500, response = Internal),
    ))]
async fn routing_changes(
    State(ch): State<Clearinghouse>,
    _caller: Caller,
    q: std::result::Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<axum::Json<ChangePage>> {
    let q = query(q)?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    // Subscribe before reading, so a commit between the read and the wait still wakes us.
    let mut ticks = ch.feed_ticks();
    // Read at once, and again on a tick only if this process appended past `after`; at the
    // deadline read in any case (a change made by another process, a bulk import, shows then).
    let mut read = true;
    loop {
        let expired = tokio::time::Instant::now() >= deadline;
        if read || expired {
            let page = read_page(&ch, after, limit).await?;
            if !page.changes.is_empty() || expired {
                let (head, ranges_version) = (page.head, page.ranges_version);
                let changes = page
                    .changes
                    .iter()
                    .map(|c| RoutingChange {
                        seq: c.seq,
                        msisdn: c.msisdn.clone(),
                        operator: c.operator.clone(),
                        routing_number: c.routing_number.clone(),
                        kind: c.kind,
                        effective_at: c.effective_at,
                    })
                    .collect();
                return Ok(axum::Json(ChangePage { changes, head, ranges_version }));
            }
        }
        let _ = tokio::time::timeout_at(deadline, ticks.changed()).await;
        read = ch.feed_may_have_after(after);
    }
}

/// Pages of the change log recently read, each for one `(after, limit)`, newest last.
#[derive(Default)]
pub(crate) struct RecentPages(std::collections::VecDeque<(i64, i64, Arc<FeedPage>)>);

/// How many pages [`RecentPages`] keeps: more than followers of one clearinghouse drift apart.
const RECENT_PAGES: usize = 16;

/// The change log after `after`, read once for the followers asking for it.
///
/// A commit that appends a change wakes every follower at once, and they ask for the same
/// `after` (each was caught up) or for one a page or two apart: one reads, and the others
/// wait for it and take its page. Only a page with changes is kept (it stays true: the log
/// only grows, and a follower that gets it a little late asks again from its end); an empty one
/// is never reused, so a follower never sleeps on a stale "nothing new".
async fn read_page(ch: &Clearinghouse, after: i64, limit: i64) -> Result<Arc<FeedPage>> {
    let mut recent = ch.feed_pages.lock().await;
    if let Some((_, _, page)) = recent.0.iter().find(|(a, l, _)| (*a, *l) == (after, limit)) {
        return Ok(page.clone());
    }
    let page = {
        let mut conn = ch.db.read().await?;
        Arc::new(routing::changes_after(&mut conn, after, limit).await?)
    };
    if !page.changes.is_empty() {
        if recent.0.len() == RECENT_PAGES {
            recent.0.pop_front();
        }
        recent.0.push_back((after, limit, page.clone()));
    }
    Ok(page)
}

/// Every current routing record and the change-log sequence it is valid at
///
/// For replicas to bootstrap from, streamed. Line 1 is a JSON header (format
/// `numport-snapshot`, version 1, `seq`, `operators`, `ranges`, `ported` as a count hint,
/// `ranges_version`); then one `msisdn,operator` line per ported number; the last line is
/// `end,<records>`. A body without its end line is incomplete (the stream was cut) and must be
/// refused. The records may already reflect changes after `seq`: apply every change after
/// `seq` on top and the result is exact.
#[utoipa::path(get, path = "/v1/routing/snapshot", tag = "routing", operation_id = "routingSnapshot",
    responses(
        (status = 200, description = "The snapshot.", content_type = "application/vnd.numport.snapshot", body = String,
            example = "{\"format\":\"numport-snapshot\",\"version\":1,\"seq\":1,\"operators\":[{\"name\":\"opa\",\"routing_number\":\"D001\"},{\"name\":\"opb\",\"routing_number\":\"D002\"}],\"ranges\":[[\"4790\",\"opa\"]],\"ported\":1}\n4790000001,opb\nend,1\n"),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
    ))]
async fn routing_snapshot(State(ch): State<Clearinghouse>, _caller: Caller) -> Result<Response> {
    // The header's `seq` is read first and the ported numbers are then paged by number, each
    // page its own short read: a snapshot of millions of numbers never holds the database, and
    // what it sees of changes committed meanwhile is harmless (the format's "fuzzy snapshot"
    // rule). A database failure mid-stream aborts the body, so the reader sees no end line and
    // refuses it.
    let mut conn = ch.db.read().await?;
    let (seq, ranges_version) = routing::feed_state(&mut conn).await?;
    let ops = operators::list(&mut conn).await?;
    let range_rows = ranges::list(&mut conn).await?;
    let ported = routing::ported_count(&mut conn).await?;
    drop(conn);
    let names: Arc<HashMap<i64, OperatorName>> = Arc::new(ops.iter().map(|o| (o.id, o.name.clone())).collect());
    let mut range_list = Vec::with_capacity(range_rows.len());
    for (prefix, holder) in range_rows {
        let prefix: Prefix = prefix
            .parse()
            .map_err(|e| Error::Store(numport_db::StoreError::Corrupt(format!("stored prefix {prefix:?}: {e}"))))?;
        let holder: OperatorName = holder
            .parse()
            .map_err(|e| Error::Store(numport_db::StoreError::Corrupt(format!("stored operator {holder:?}: {e}"))))?;
        range_list.push((prefix, holder));
    }
    let mut header = SnapshotHeader::new(
        seq,
        ops.into_iter().map(|o| SnapshotOperator { name: o.name, routing_number: o.routing_number }).collect(),
        range_list,
        Some(ported),
    );
    header.ranges_version = ranges_version;

    struct Cursor {
        after: Option<String>,
        records: u64,
    }
    let head = futures::stream::once(async move { Ok::<_, Error>(Bytes::from(snapshot::header_line(&header))) });
    let pages = futures::stream::unfold(Cursor { after: Some(String::new()), records: 0 }, move |mut cur| {
        let ch = ch.clone();
        let names = names.clone();
        async move {
            let after = cur.after.take()?;
            let page = async {
                let mut conn = ch.db.read().await?;
                Ok::<_, Error>(routing::ported_page(&mut conn, &after, SNAPSHOT_PAGE).await?)
            }
            .await;
            let rows = match page {
                Ok(rows) => rows,
                Err(e) => return Some((Err(e), cur)),
            };
            if rows.is_empty() {
                return Some((Ok(Bytes::from(snapshot::end_line(cur.records))), cur));
            }
            let mut buf = Vec::with_capacity(rows.len() * 20);
            for (msisdn, op) in &rows {
                let Some(name) = names.get(op) else {
                    return Some((
                        Err(Error::Store(numport_db::StoreError::Corrupt(format!(
                            "operator {op} registered during a snapshot"
                        )))),
                        cur,
                    ));
                };
                snapshot::push_record(&mut buf, msisdn.as_bytes(), name.as_str());
            }
            cur.records += rows.len() as u64;
            cur.after = rows.last().map(|(m, _)| m.clone());
            Some((Ok(Bytes::from(buf)), cur))
        }
    });
    let body = Body::from_stream(futures::StreamExt::chain(head, pages));
    Ok(([(header::CONTENT_TYPE, snapshot::MEDIA_TYPE)], body).into_response())
}

/// On PostgreSQL, learn the change log's head as settlers commit (`routing::announce`) and wake
/// the long-polls, as an append with a known number does through
/// [`Clearinghouse::note_feed_seq`]: so changes settled by other processes show at once
/// too. Returns at `shutdown`; at once on SQLite.
pub(crate) async fn follow_commits(ch: Clearinghouse, shutdown: tokio_util::sync::CancellationToken) {
    let mut listener = loop {
        match ch.db.listen(routing::FEED_CHANNEL).await {
            Ok(Some(listener)) => break listener,
            Ok(None) => return,
            Err(e) => tracing::warn!(error = %e, "cannot listen for change log commits; trying again"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    // Changes committed before the listener was in place.
    note_head(&ch).await;
    ch.wake_feed();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = listener.recv() => n,
        };
        match next {
            Ok(n) => match n.payload.parse::<i64>() {
                Ok(seq) => ch.note_feed_seq(seq),
                Err(_) => tracing::warn!(payload = n.payload, "unexpected notification on {}", routing::FEED_CHANNEL),
            },
            // The session was lost, and what was notified meanwhile with it: listen again
            // (or let the next `recv` try), then take the head instead.
            Err(e) => {
                tracing::debug!(error = %e, "change log listener interrupted");
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = listener.ensure_listening().await;
                note_head(&ch).await;
            }
        }
        ch.wake_feed();
    }
}

async fn note_head(ch: &Clearinghouse) {
    if let Ok(mut conn) = ch.db.read().await
        && let Ok(head) = routing::head(&mut conn).await
    {
        ch.note_feed_seq(head);
    }
}
