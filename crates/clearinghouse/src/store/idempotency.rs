//! Answers already given to operator requests, by `Idempotency-Key`. The answer is stored in
//! the transaction that made the change, so a retry after a lost response finds it and a
//! retried request never acts twice.

use numport_core::Millis;
use numport_db::sql::{self, Connection};

use numport_db::{Result, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status: u16,
    pub body: String,
}

pub async fn get(conn: &mut Connection, operator_id: i64, key: &str) -> Result<Option<StoredResponse>> {
    let row =
        sql::query("SELECT request_hash, status, response FROM idempotency_keys WHERE operator_id = $1 AND key = $2")
            .bind(operator_id)
            .bind(key)
            .fetch_optional(conn)
            .await?;
    row.map(|r| {
        let status: i64 = r.try_get("status")?;
        Ok(StoredResponse {
            request_hash: r.try_get("request_hash")?,
            status: u16::try_from(status).map_err(|_| StoreError::Corrupt(format!("status {status}")))?,
            body: r.try_get("response")?,
        })
    })
    .transpose()
}

/// Store a request's answer under `key`, in the transaction that made its change: the key's
/// claim and its answer are one row, written last. If a copy of the request committed first,
/// this fails as [`key_taken`] and the transaction must roll back and give that copy's answer;
/// a copy still running makes it wait for that copy's end.
///
/// On PostgreSQL the write is pipelined: its failure reaches the `COMMIT` sent with it, which
/// then rolls back, so nothing the losing copy did can commit. Before this write a copy may
/// also fail on what the winner changed (an order's state, a number's open order): a failed
/// request looks for a stored answer too.
pub async fn record(
    conn: &mut Connection,
    operator_id: i64,
    key: &str,
    request_hash: &str,
    status: u16,
    body: &str,
    now: Millis,
) -> Result<()> {
    sql::query(
        "INSERT INTO idempotency_keys (operator_id, key, request_hash, status, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(operator_id)
    .bind(key)
    .bind(request_hash)
    .bind(i64::from(status))
    .bind(body)
    .bind(now)
    .execute_pipelined(conn)
    .await
}

/// Whether `e` is [`record`] finding its key taken: another copy of the request committed first.
pub fn key_taken(e: &StoreError) -> bool {
    e.unique_violation().is_some_and(|(message, constraint)| match constraint {
        Some(name) => name == "idempotency_keys_pkey",
        None => message.contains("idempotency_keys."),
    })
}
