//! Answers already given to operator requests, by `Idempotency-Key`. The answer is stored in
//! the transaction that made the change, so a retry after a lost response finds it and a
//! retried request never acts twice.

use numport_core::Millis;
use sqlx::{AnyConnection, Row};

use crate::{Result, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status: u16,
    pub body: String,
}

pub async fn get(conn: &mut AnyConnection, operator_id: i64, key: &str) -> Result<Option<StoredResponse>> {
    let row = sqlx::query(
        "SELECT request_hash, status, response FROM idempotency_keys WHERE operator_id = $1 AND key = $2",
    )
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

pub async fn put(
    conn: &mut AnyConnection,
    operator_id: i64,
    key: &str,
    request_hash: &str,
    status: u16,
    body: &str,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO idempotency_keys (operator_id, key, request_hash, status, response, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(operator_id)
    .bind(key)
    .bind(request_hash)
    .bind(i64::from(status))
    .bind(body)
    .bind(now)
    .execute(conn)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}
