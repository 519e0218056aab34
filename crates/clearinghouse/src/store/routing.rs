//! Who serves each ported number, and the routing change log F2 publishes.
//!
//! **Invariant:** `ported_numbers` changes only through [`record_changes`], which writes each
//! change's `routing_changes` entry with it, numbered from `feed_head` as [`lock_head`] read and
//! locked it in the same transaction: the log has no gaps and is in commit order on SQLite and
//! PostgreSQL alike (the row lock on `feed_head` orders concurrent writers).

use numport_core::porting::ChangeKind;
use numport_core::{Millis, Msisdn, OperatorName, RoutingNumber};
use numport_db::sql::{self, Connection};

use super::parse_col;
use numport_db::{Result, StoreError};

/// The operator serving a ported number; `None` when the range holder serves it.
pub async fn ported_to(conn: &mut Connection, msisdn: &Msisdn) -> Result<Option<i64>> {
    sql::query_scalar("SELECT operator_id FROM ported_numbers WHERE msisdn = $1")
        .bind(msisdn.as_str())
        .fetch_optional(conn)
        .await
}

/// One entry of the routing change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingChange {
    pub seq: i64,
    pub msisdn: Msisdn,
    pub operator: OperatorName,
    pub routing_number: RoutingNumber,
    pub kind: ChangeKind,
    pub order_id: Option<i64>,
    pub effective_at: Millis,
}

/// The PostgreSQL channel that carries the change log's head as changes commit.
pub const FEED_CHANNEL: &str = "numport_feed";

/// Tell every listener on [`FEED_CHANNEL`] (the clearinghouse processes on this database,
/// which wake their change log long-polls) that the log reaches `seq` once this transaction
/// commits. Notifications are delivered at COMMIT, in commit order. Nothing on SQLite, which
/// has one writing process.
pub async fn announce(conn: &mut Connection, seq: i64) -> Result<()> {
    if !conn.is_postgres() {
        return Ok(());
    }
    sql::query("SELECT pg_notify($1, $2)").bind(FEED_CHANNEL).bind(seq.to_string()).execute_pipelined(conn).await
}

/// A page of the change log and where the log stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// Changes with `seq > after`, in order.
    pub changes: Vec<RoutingChange>,
    /// The last sequence number written.
    pub head: i64,
    /// The version of the number ranges (`ranges::bump_version`).
    pub ranges_version: i64,
}

/// Changes with `seq > after`, in order, at most `limit`, with the head and the ranges'
/// version, in one statement: a long-poll of the change log is one round trip.
pub async fn changes_after(conn: &mut Connection, after: i64, limit: i64) -> Result<FeedPage> {
    let rows = sql::query(
        "SELECT h.last_seq, h.ranges_version, c.seq, c.msisdn, c.name, c.routing_number, c.kind, c.order_id, \
         c.effective_at FROM feed_head h LEFT JOIN ( \
           SELECT c.seq, c.msisdn, o.name, c.routing_number, c.kind, c.order_id, c.effective_at \
           FROM routing_changes c JOIN operators o ON o.id = c.operator_id \
           WHERE c.seq > $1 ORDER BY c.seq LIMIT $2 \
         ) c ON 1 = 1 WHERE h.id = 1 ORDER BY c.seq",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    let first = rows.first().ok_or(StoreError::NotFound("the change log's head"))?;
    let (head, ranges_version) = (first.try_get("last_seq")?, first.try_get("ranges_version")?);
    let mut changes = Vec::with_capacity(rows.len());
    for r in &rows {
        let Some(seq) = r.try_get::<Option<i64>, _>("seq")? else { continue };
        changes.push(RoutingChange {
            seq,
            msisdn: parse_col("msisdn", r.try_get::<&str, _>("msisdn")?)?,
            operator: parse_col("operator", r.try_get::<&str, _>("name")?)?,
            routing_number: parse_col("routing number", r.try_get::<&str, _>("routing_number")?)?,
            kind: parse_col("change kind", r.try_get::<&str, _>("kind")?)?,
            order_id: r.try_get("order_id")?,
            effective_at: r.try_get("effective_at")?,
        });
    }
    Ok(FeedPage { changes, head, ranges_version })
}

/// The last sequence number written.
pub async fn head(conn: &mut Connection) -> Result<i64> {
    Ok(feed_state(conn).await?.0)
}

/// The last sequence number written and the version of the number ranges
/// (`ranges::bump_version`), in one read.
pub async fn feed_state(conn: &mut Connection) -> Result<(i64, i64)> {
    let row = sql::query("SELECT last_seq, ranges_version FROM feed_head WHERE id = 1").fetch_one(conn).await?;
    Ok((row.try_get("last_seq")?, row.try_get("ranges_version")?))
}

/// How many numbers are ported now.
pub async fn ported_count(conn: &mut Connection) -> Result<u64> {
    let n: i64 = sql::query_scalar("SELECT COUNT(*) FROM ported_numbers").fetch_one(conn).await?;
    Ok(n.max(0) as u64)
}

/// Ported numbers after `after` (by number), at most `limit`: `(msisdn, serving operator id)`.
/// Pages by key, so a snapshot of millions of rows holds no transaction or lock across pages.
pub async fn ported_page(conn: &mut Connection, after: &str, limit: i64) -> Result<Vec<(String, i64)>> {
    let rows = sql::query("SELECT msisdn, operator_id FROM ported_numbers WHERE msisdn > $1 ORDER BY msisdn LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok((r.try_get("msisdn")?, r.try_get("operator_id")?))).collect()
}

/// A change of the operator serving a number, for [`record_changes`].
#[derive(Debug, Clone)]
pub struct NewChange<'a> {
    pub msisdn: &'a Msisdn,
    /// The operator serving the number from now on.
    pub operator_id: i64,
    pub routing_number: &'a RoutingNumber,
    /// `Port` records the number as ported to `operator_id`; `PortBack` and `Return` give it
    /// back to its range holder (no longer ported).
    pub kind: ChangeKind,
    pub order_id: Option<i64>,
    pub at: Millis,
}

/// Take the change log's head for [`record_changes`]: lock it until COMMIT, and read it. Sent
/// ahead: the answer comes with the next statement's.
pub async fn lock_head(conn: &mut Connection) -> Result<LockedHead> {
    // An update that changes nothing, for the row lock and the value in one statement that
    // both engines speak (SQLite has no `FOR UPDATE`; its one writer needs none).
    let sent = sql::query("UPDATE feed_head SET last_seq = last_seq WHERE id = 1 RETURNING last_seq")
        .fetch_deferred(conn)
        .await?;
    Ok(LockedHead(sent))
}

/// The change log's head, locked by [`lock_head`].
pub struct LockedHead(sql::Deferred);

impl LockedHead {
    /// The last sequence number written.
    pub async fn last_seq(self, conn: &mut Connection) -> Result<i64> {
        self.0.rows(conn).await?.first().ok_or(StoreError::NotFound("the change log's head"))?.try_get(0)
    }
}

/// Record `changes`, each to a different number, with their change log entries numbered in
/// order after `head` (the last sequence number written, read by [`lock_head`] in this
/// transaction). Four statements whatever their number, sent without waiting: the settler's
/// batches, number returns and bulk imports.
pub async fn record_changes(conn: &mut Connection, head: i64, changes: &[NewChange<'_>]) -> Result<()> {
    use sql::Kind::{Int, Text};
    const COLUMNS: &[(&str, sql::Kind)] = &[
        ("msisdn", Text),
        ("operator_id", Int),
        ("routing_number", Text),
        ("kind", Text),
        ("order_id", Int),
        ("at", Int),
    ];
    static PORTED: sql::PerEngine = sql::PerEngine::new(|pg| {
        format!(
            "INSERT INTO ported_numbers (msisdn, operator_id, order_id, ported_at) \
             SELECT r.msisdn, r.operator_id, r.order_id, r.at FROM {} WHERE r.kind = 'port' \
             ON CONFLICT (msisdn) DO UPDATE SET operator_id = excluded.operator_id, \
             order_id = excluded.order_id, ported_at = excluded.ported_at",
            sql::json_rows(pg, 1, COLUMNS)
        )
    });
    static RETURNED: sql::PerEngine = sql::PerEngine::new(|pg| {
        format!(
            "DELETE FROM ported_numbers WHERE msisdn IN (SELECT r.msisdn FROM {} WHERE r.kind <> 'port')",
            sql::json_rows(pg, 1, COLUMNS)
        )
    });
    static LOGGED: sql::PerEngine = sql::PerEngine::new(|pg| {
        format!(
            "INSERT INTO routing_changes (seq, msisdn, operator_id, routing_number, kind, order_id, effective_at) \
             SELECT $2 + r.n, r.msisdn, r.operator_id, r.routing_number, r.kind, r.order_id, r.at FROM {} ORDER BY r.n",
            sql::json_rows(pg, 1, COLUMNS)
        )
    });
    if changes.is_empty() {
        return Ok(());
    }
    sql::query("UPDATE feed_head SET last_seq = $1 WHERE id = 1")
        .bind(head + changes.len() as i64)
        .execute_pipelined(&mut *conn)
        .await?;
    let rows = sql::rows_param(changes.iter().map(|c| {
        serde_json::json!({
            "msisdn": c.msisdn.as_str(),
            "operator_id": c.operator_id,
            "routing_number": c.routing_number.as_str(),
            "kind": c.kind.as_str(),
            "order_id": c.order_id,
            "at": c.at,
        })
    }))?;
    if changes.iter().any(|c| c.kind == ChangeKind::Port) {
        sql::query(PORTED.text(conn)).bind(rows.as_str()).execute_pipelined(&mut *conn).await?;
    }
    if changes.iter().any(|c| c.kind != ChangeKind::Port) {
        sql::query(RETURNED.text(conn)).bind(rows.as_str()).execute_pipelined(&mut *conn).await?;
    }
    sql::query(LOGGED.text(conn)).bind(rows).bind(head + 1).execute_pipelined(conn).await
}

/// Rows per [`record_changes`] of [`import_ported`].
const IMPORT_ROWS_PER_STATEMENT: usize = 500;

/// Records numbers as ported (an initial national database), each with its change-log entry
/// (kind `port`) so that replicas already following the feed see them too. Call inside a
/// transaction.
pub async fn import_ported(conn: &mut Connection, records: &[(Msisdn, i64, RoutingNumber)], now: Millis) -> Result<()> {
    for chunk in records.chunks(IMPORT_ROWS_PER_STATEMENT) {
        let changes: Vec<NewChange<'_>> = chunk
            .iter()
            .map(|(msisdn, operator_id, routing_number)| NewChange {
                msisdn,
                operator_id: *operator_id,
                routing_number,
                kind: ChangeKind::Port,
                order_id: None,
                at: now,
            })
            .collect();
        let head = lock_head(conn).await?.last_seq(conn).await?;
        record_changes(conn, head, &changes).await?;
    }
    Ok(())
}
