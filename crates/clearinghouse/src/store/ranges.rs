//! Number ranges: which operator holds each block of numbers before any porting.

use numport_core::{Msisdn, Prefix};
use numport_db::sql::{self, Connection};

use numport_db::Result;

/// Set the range holder of `prefix` (replacing an earlier holder of the same prefix).
pub async fn upsert(conn: &mut Connection, prefix: &Prefix, operator_id: i64) -> Result<()> {
    sql::query(
        "INSERT INTO number_ranges (prefix, operator_id) VALUES ($1, $2) \
         ON CONFLICT (prefix) DO UPDATE SET operator_id = excluded.operator_id",
    )
    .bind(prefix.as_str())
    .bind(operator_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The operator holding the longest range prefix of `msisdn`, if any range covers it.
pub async fn holder_of(conn: &mut Connection, msisdn: &Msisdn) -> Result<Option<i64>> {
    // Every prefix of the number is a candidate; at most 15, so one indexed IN lookup.
    let prefixes: Vec<&str> = msisdn.prefixes().collect();
    let placeholders: Vec<String> = (1..=prefixes.len()).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT prefix, operator_id FROM number_ranges WHERE prefix IN ({})", placeholders.join(", "));
    let mut q = sql::query(&sql);
    for p in &prefixes {
        q = q.bind(*p);
    }
    let rows = q.fetch_all(conn).await?;
    let mut best: Option<(usize, i64)> = None;
    for r in rows {
        let prefix: String = r.try_get("prefix")?;
        let op: i64 = r.try_get("operator_id")?;
        if best.is_none_or(|(len, _)| prefix.len() > len) {
            best = Some((prefix.len(), op));
        }
    }
    Ok(best.map(|(_, op)| op))
}

/// All ranges, for snapshots and the replica bootstrap.
pub async fn list(conn: &mut Connection) -> Result<Vec<(String, String)>> {
    let rows = sql::query(
        "SELECT r.prefix, o.name FROM number_ranges r JOIN operators o ON o.id = r.operator_id \
         ORDER BY r.prefix",
    )
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok((r.try_get("prefix")?, r.try_get("name")?))).collect()
}

/// Marks the ranges as changed (in the transaction that changed them); read with
/// `routing::feed_state`.
pub async fn bump_version(conn: &mut Connection) -> Result<i64> {
    sql::query_scalar("UPDATE feed_head SET ranges_version = ranges_version + 1 WHERE id = 1 RETURNING ranges_version")
        .fetch_one(conn)
        .await
}
