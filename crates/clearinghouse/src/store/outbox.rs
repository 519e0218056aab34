//! The durable outbox: every message to an operator is a row, written in the transaction of the
//! state change that caused it. A dispatcher delivers rows to callback URLs with retries;
//! operators can also read them from their inbox. Nothing is sent that was not committed, and
//! nothing committed is lost.

use numport_core::Millis;
use numport_db::sql::{self, Connection, Row};

use numport_db::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub operator_id: i64,
    pub kind: String,
    pub order_id: Option<i64>,
    pub body: String,
    pub created_at: Millis,
    pub delivered_at: Option<Millis>,
    pub attempts: i64,
}

/// A message due for callback delivery, with what the dispatcher needs to send it.
#[derive(Debug, Clone)]
pub struct Due {
    pub message: Message,
    pub operator: String,
    pub callback_url: Option<String>,
    pub callback_key_version: i64,
}

fn message(r: &Row) -> Result<Message> {
    Ok(Message {
        id: r.try_get("id")?,
        operator_id: r.try_get("operator_id")?,
        kind: r.try_get("kind")?,
        order_id: r.try_get("order_id")?,
        body: r.try_get("body")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
        attempts: r.try_get("attempts")?,
    })
}

/// Queue a message for callback delivery from `send_at` on (it is in the inbox at once).
/// Pipelined: in a transaction on PostgreSQL, it travels with the next statement.
pub async fn enqueue(
    conn: &mut Connection,
    operator_id: i64,
    kind: &str,
    order_id: Option<i64>,
    body: &str,
    now: Millis,
    send_at: Millis,
) -> Result<()> {
    sql::query(
        "INSERT INTO messages (operator_id, kind, order_id, body, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(operator_id)
    .bind(kind)
    .bind(order_id)
    .bind(body)
    .bind(now)
    .bind(send_at)
    .execute_pipelined(conn)
    .await
}

/// A message for [`enqueue_many`], due at once.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub operator_id: i64,
    pub kind: &'a str,
    pub order_id: Option<i64>,
    pub body: String,
}

/// Queue `messages` in their order, due at once, in one statement (a settlement batch's).
pub async fn enqueue_many(conn: &mut Connection, messages: &[NewMessage<'_>], now: Millis) -> Result<()> {
    use sql::Kind::{Int, Text};
    static ENQUEUE: sql::PerEngine = sql::PerEngine::new(|pg| {
        format!(
            "INSERT INTO messages (operator_id, kind, order_id, body, created_at, next_attempt_at) \
             SELECT r.operator_id, r.kind, r.order_id, r.body, $2, $2 FROM {} ORDER BY r.n",
            sql::json_rows(pg, 1, &[("operator_id", Int), ("kind", Text), ("order_id", Int), ("body", Text)])
        )
    });
    if messages.is_empty() {
        return Ok(());
    }
    let rows = sql::rows_param(messages.iter().map(
        |m| serde_json::json!({ "operator_id": m.operator_id, "kind": m.kind, "order_id": m.order_id, "body": m.body }),
    ))?;
    sql::query(ENQUEUE.text(conn)).bind(rows).bind(now).execute_pipelined(conn).await
}

/// Cancel an order's reminders of `kind` that are not due yet (a deposit request once the
/// deposit came). A message already due or tried is left alone. Cancelled ones stay in the
/// inbox, marked why.
pub async fn withdraw(conn: &mut Connection, order_id: i64, kind: &str, now: Millis) -> Result<()> {
    sql::query(
        "UPDATE messages SET delivered_at = $1, last_error = 'withdrawn: no longer needed' \
         WHERE order_id = $2 AND kind = $3 AND delivered_at IS NULL AND attempts = 0 AND next_attempt_at > $1",
    )
    .bind(now)
    .bind(order_id)
    .bind(kind)
    .execute_pipelined(conn)
    .await
}

/// Take or keep the right to deliver the outbox until `until`; whether `holder` has it. One
/// process at a time delivers: the one whose lease has not run out (migration
/// `delivery_lease`). A holder that stops without [`release_delivery`] is replaced once its
/// lease runs out, and what it had in flight is sent again: at least once.
pub async fn hold_delivery(conn: &mut Connection, holder: &str, now: Millis, until: Millis) -> Result<bool> {
    let done =
        sql::query("UPDATE delivery_lease SET holder = $1, until = $3 WHERE id = 1 AND (holder = $1 OR until <= $2)")
            .bind(holder)
            .bind(now)
            .bind(until)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Give the delivery lease up (a clean shutdown), so that another process need not wait for it.
pub async fn release_delivery(conn: &mut Connection, holder: &str) -> Result<()> {
    sql::query("UPDATE delivery_lease SET until = 0 WHERE id = 1 AND holder = $1").bind(holder).execute(conn).await?;
    Ok(())
}

/// Undelivered messages whose next attempt is due, oldest first, leaving out `in_flight` (the
/// ids the caller is delivering now) and those of operators with no callback URL: they wait in
/// the inbox, and [`make_due`] brings them back when a URL is registered, with no failed
/// attempt of theirs in flight to push them back. The ids travel as one parameter: a PostgreSQL
/// array, a JSON array on SQLite.
pub async fn due(conn: &mut Connection, now: Millis, limit: i64, in_flight: &[i64]) -> Result<Vec<Due>> {
    static DUE: sql::PerEngine = sql::PerEngine::new(|pg| {
        let not_in_flight =
            if pg { "NOT (m.id = ANY ($3::text::BIGINT[]))" } else { "m.id NOT IN (SELECT value FROM json_each($3))" };
        format!(
            "SELECT m.id, m.operator_id, m.kind, m.order_id, m.body, m.created_at, m.delivered_at, \
             m.attempts, o.name, o.callback_url, o.callback_key_version \
             FROM messages m JOIN operators o ON o.id = m.operator_id \
             WHERE m.delivered_at IS NULL AND m.next_attempt_at <= $1 AND o.callback_url IS NOT NULL \
             AND {not_in_flight} \
             ORDER BY m.next_attempt_at, m.id LIMIT $2"
        )
    });
    let ids = in_flight.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let ids = if conn.is_postgres() { format!("{{{ids}}}") } else { format!("[{ids}]") };
    let rows = sql::query(DUE.text(conn)).bind(now).bind(limit).bind(ids).fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            Ok(Due {
                message: message(r)?,
                operator: r.try_get("name")?,
                callback_url: r.try_get("callback_url")?,
                callback_key_version: r.try_get("callback_key_version")?,
            })
        })
        .collect()
}

/// After failed attempt number `attempt` (the first is 1): count it, and try again at `at`,
/// remembering why it failed. An outcome recorded already for that attempt (a delivery made
/// twice, by a process that lost the delivery lease and the one that took it over) changes
/// nothing.
pub async fn reschedule(conn: &mut Connection, id: i64, attempt: i64, at: Millis, error: &str) -> Result<()> {
    sql::query(
        "UPDATE messages SET attempts = $4, next_attempt_at = $1, last_error = $2 \
         WHERE id = $3 AND attempts = $4 - 1 AND delivered_at IS NULL",
    )
    .bind(at)
    .bind(error)
    .bind(id)
    .bind(attempt)
    .execute_pipelined(conn)
    .await
}

/// Make an operator's undelivered messages due now (its callback URL changed).
pub async fn make_due(conn: &mut Connection, operator_id: i64, now: Millis) -> Result<()> {
    sql::query("UPDATE messages SET next_attempt_at = $1 WHERE operator_id = $2 AND delivered_at IS NULL")
        .bind(now)
        .bind(operator_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// An operator's undelivered messages, and the error of the latest failed attempt among them.
pub async fn undelivered(conn: &mut Connection, operator_id: i64) -> Result<(i64, Option<String>)> {
    let count: i64 = sql::query_scalar("SELECT COUNT(*) FROM messages WHERE delivered_at IS NULL AND operator_id = $1")
        .bind(operator_id)
        .fetch_one(&mut *conn)
        .await?;
    let last_error: Option<String> = sql::query_scalar(
        "SELECT last_error FROM messages WHERE delivered_at IS NULL AND operator_id = $1 \
         AND last_error IS NOT NULL ORDER BY next_attempt_at DESC, id DESC LIMIT 1",
    )
    .bind(operator_id)
    .fetch_optional(conn)
    .await?;
    Ok((count, last_error))
}

/// Delivered by a callback: counted as an attempt, and not sent again.
pub async fn mark_delivered(conn: &mut Connection, ids: &[i64], now: Millis) -> Result<()> {
    update_ids(conn, "SET delivered_at = $1, attempts = attempts + 1 WHERE delivered_at IS NULL AND", ids, now).await
}

/// Most ids one `UPDATE … id IN (…)` binds.
const IDS_PER_STATEMENT: usize = 512;

/// `UPDATE messages <set_where> id IN (ids)`, with `$1` bound to `value`; nothing for no ids.
/// The ids go in chunks of at most [`IDS_PER_STATEMENT`], each list padded to a power of two
/// by repeating its last id (harmless in `IN`): so there are ten statement texts, not one per
/// count, for a connection to prepare and keep, and no list passes PostgreSQL's limit of
/// 65,535 parameters.
async fn update_ids(conn: &mut Connection, set_where: &str, ids: &[i64], value: Millis) -> Result<()> {
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let width = chunk.len().next_power_of_two();
        let sql = format!("UPDATE messages {set_where} id IN ({})", placeholders(2, width));
        let mut q = sql::query(&sql).bind(value);
        for i in 0..width {
            q = q.bind(chunk[i.min(chunk.len() - 1)]);
        }
        q.execute_pipelined(conn).await?;
    }
    Ok(())
}

/// An operator's messages with `id > after`, delivered or not: the polled inbox.
pub async fn inbox(conn: &mut Connection, operator_id: i64, after: i64, limit: i64) -> Result<Vec<Message>> {
    let rows = sql::query(
        "SELECT id, operator_id, kind, order_id, body, created_at, delivered_at, attempts \
         FROM messages WHERE operator_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(operator_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(message).collect()
}

/// The operator confirms it has everything up to `up_to`: stop calling back about those.
pub async fn ack(conn: &mut Connection, operator_id: i64, up_to: i64, now: Millis) -> Result<u64> {
    let r = sql::query(
        "UPDATE messages SET delivered_at = $1 WHERE operator_id = $2 AND id <= $3 AND delivered_at IS NULL",
    )
    .bind(now)
    .bind(operator_id)
    .bind(up_to)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Messages not yet delivered, for metrics.
pub async fn pending_count(conn: &mut Connection) -> Result<i64> {
    sql::query_scalar("SELECT COUNT(*) FROM messages WHERE delivered_at IS NULL").fetch_one(conn).await
}

fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::operators;
    use numport_db::Db;

    /// A fresh SQLite clearinghouse database with one operator, and that operator's id.
    async fn with_operator() -> (tempfile::TempDir, Db, i64) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::connect(&format!("sqlite://{}/ch.db", dir.path().display())).await.unwrap();
        let mut conn = db.acquire().await.unwrap();
        let op = operators::insert(&mut conn, &"opa".parse().unwrap(), &"D1".parse().unwrap(), None, 0).await.unwrap();
        drop(conn);
        (dir, db, op.id)
    }

    #[tokio::test]
    async fn an_attempts_outcome_counts_once() {
        let (_dir, db, op) = with_operator().await;
        let mut conn = db.acquire().await.unwrap();
        enqueue(&mut conn, op, "credit_query", Some(1), "{}", 0, 0).await.unwrap();
        let id = inbox(&mut conn, op, 0, 10).await.unwrap()[0].id;
        reschedule(&mut conn, id, 1, 500, "callback answered 503").await.unwrap();
        // The same attempt's outcome again (from a second process): no change.
        reschedule(&mut conn, id, 1, 900, "no callback URL registered").await.unwrap();
        // An attempt that skips one is not the next: no change either.
        reschedule(&mut conn, id, 3, 900, "callback failed").await.unwrap();
        let state = async |conn: &mut Connection| -> (i64, i64, Option<String>) {
            sql::query_as("SELECT attempts, next_attempt_at, last_error FROM messages WHERE id = $1")
                .bind(id)
                .fetch_one(conn)
                .await
                .unwrap()
        };
        assert_eq!(state(&mut conn).await, (1, 500, Some("callback answered 503".into())));
        reschedule(&mut conn, id, 2, 700, "callback timed out").await.unwrap();
        mark_delivered(&mut conn, &[id], 800).await.unwrap();
        assert_eq!(state(&mut conn).await, (3, 700, Some("callback timed out".into())));
    }

    #[tokio::test]
    async fn updates_by_id_cover_every_id_in_padded_chunks() {
        let (_dir, db, op) = with_operator().await;
        let mut conn = db.acquire().await.unwrap();
        for _ in 0..(IDS_PER_STATEMENT + 3) {
            enqueue(&mut conn, op, "credit_query", Some(1), "{}", 0, 0).await.unwrap();
        }
        let all: Vec<i64> = inbox(&mut conn, op, 0, 10_000).await.unwrap().iter().map(|m| m.id).collect();
        // Two chunks (512 and 3, the second padded to 4); the last message is left alone.
        mark_delivered(&mut conn, &all[..all.len() - 1], 7).await.unwrap();
        let undelivered: Vec<i64> =
            sql::query_scalar("SELECT id FROM messages WHERE delivered_at IS NULL").fetch_all(&mut conn).await.unwrap();
        assert_eq!(undelivered, [*all.last().unwrap()]);
        let delivered: i64 = sql::query_scalar("SELECT COUNT(*) FROM messages WHERE delivered_at = 7")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(delivered as usize, IDS_PER_STATEMENT + 2);
    }
}
