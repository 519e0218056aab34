//! Who serves each ported number, and the routing change log F2 publishes.
//!
//! **Invariant:** a change to `ported_numbers` and its `routing_changes` entry are written in the
//! same transaction, and `seq` is taken from `feed_head` in that transaction: the log has no
//! gaps and is in commit order on SQLite and PostgreSQL alike (the row lock on `feed_head`
//! orders concurrent settlements).

use crate::sql::{self, Connection};
use numport_core::porting::ChangeKind;
use numport_core::{Millis, Msisdn, OperatorName, RoutingNumber};

use crate::{Result, StoreError, parse_col};

/// The operator serving a ported number; `None` when the range holder serves it.
pub async fn ported_to(conn: &mut Connection, msisdn: &Msisdn) -> Result<Option<i64>> {
    sql::query_scalar("SELECT operator_id FROM ported_numbers WHERE msisdn = $1")
        .bind(msisdn.as_str())
        .fetch_optional(conn)
        .await
}

pub async fn set_ported(
    conn: &mut Connection,
    msisdn: &Msisdn,
    operator_id: i64,
    order_id: Option<i64>,
    now: Millis,
) -> Result<()> {
    sql::query(
        "INSERT INTO ported_numbers (msisdn, operator_id, order_id, ported_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (msisdn) DO UPDATE SET operator_id = excluded.operator_id, \
         order_id = excluded.order_id, ported_at = excluded.ported_at",
    )
    .bind(msisdn.as_str())
    .bind(operator_id)
    .bind(order_id)
    .bind(now)
    .execute_pipelined(conn)
    .await
}

pub async fn clear_ported(conn: &mut Connection, msisdn: &Msisdn) -> Result<bool> {
    let r = sql::query("DELETE FROM ported_numbers WHERE msisdn = $1").bind(msisdn.as_str()).execute(conn).await?;
    Ok(r.rows_affected() == 1)
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

/// Append a change and return its sequence number. Call last in the transaction: it takes the
/// `feed_head` row lock, which is held until commit. On PostgreSQL it is one statement, so
/// the lock waits for one round trip less.
pub async fn append_change(
    conn: &mut Connection,
    msisdn: &Msisdn,
    operator_id: i64,
    routing_number: &RoutingNumber,
    kind: ChangeKind,
    order_id: Option<i64>,
    now: Millis,
) -> Result<i64> {
    const INSERT: &str =
        "INSERT INTO routing_changes (seq, msisdn, operator_id, routing_number, kind, order_id, effective_at)";
    if conn.is_postgres() {
        let sql = format!(
            "WITH head AS (UPDATE feed_head SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq) \
             {INSERT} SELECT last_seq, $1, $2, $3, $4, $5, $6 FROM head RETURNING seq"
        );
        return sql::query_scalar(&sql)
            .bind(msisdn.as_str())
            .bind(operator_id)
            .bind(routing_number.as_str())
            .bind(kind.as_str())
            .bind(order_id)
            .bind(now)
            .fetch_one(conn)
            .await;
    }
    let seq: i64 = sql::query_scalar("UPDATE feed_head SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq")
        .fetch_one(&mut *conn)
        .await?;
    sql::query(&format!("{INSERT} VALUES ($1, $2, $3, $4, $5, $6, $7)"))
        .bind(seq)
        .bind(msisdn.as_str())
        .bind(operator_id)
        .bind(routing_number.as_str())
        .bind(kind.as_str())
        .bind(order_id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(seq)
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

/// Rows per statement of [`import_ported`]: 4 parameters each, far under every backend's limit.
const IMPORT_ROWS_PER_STATEMENT: usize = 500;

/// Records numbers as ported (an initial national database), each with its change-log entry
/// (kind `port`) so that replicas already following the feed see them too. One sequence block
/// is taken for the whole slice: call inside a transaction.
pub async fn import_ported(conn: &mut Connection, records: &[(Msisdn, i64, RoutingNumber)], now: Millis) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let last: i64 = sql::query_scalar("UPDATE feed_head SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq")
        .bind(records.len() as i64)
        .fetch_one(&mut *conn)
        .await?;
    let first = last - records.len() as i64 + 1;
    for (chunk_no, chunk) in records.chunks(IMPORT_ROWS_PER_STATEMENT).enumerate() {
        let values = |cols: usize| {
            (0..chunk.len())
                .map(|r| {
                    let p: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
                    format!("({})", p.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let sql = format!(
            "INSERT INTO ported_numbers (msisdn, operator_id, order_id, ported_at) VALUES {} \
             ON CONFLICT (msisdn) DO UPDATE SET operator_id = excluded.operator_id, \
             order_id = excluded.order_id, ported_at = excluded.ported_at",
            values(4)
        );
        let mut q = sql::query(&sql);
        for (msisdn, op, _) in chunk {
            q = q.bind(msisdn.as_str()).bind(*op).bind(None::<i64>).bind(now);
        }
        q.execute(&mut *conn).await?;
        let sql = format!(
            "INSERT INTO routing_changes (seq, msisdn, operator_id, routing_number, kind, effective_at) VALUES {}",
            values(6)
        );
        let mut q = sql::query(&sql);
        let base = first + (chunk_no * IMPORT_ROWS_PER_STATEMENT) as i64;
        for (i, (msisdn, op, rn)) in chunk.iter().enumerate() {
            q = q
                .bind(base + i as i64)
                .bind(msisdn.as_str())
                .bind(*op)
                .bind(rn.as_str())
                .bind(ChangeKind::Port.as_str())
                .bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
