//! Answers already given to operator requests, by `Idempotency-Key`. The answer is stored in
//! the transaction that made the change, so a retry after a lost response finds it and a
//! retried request never acts twice.

use crate::sql::{self, Connection};
use numport_core::Millis;

use crate::{Result, StoreError};

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

/// Claim `key` for a request about to run, inside its transaction; [`Claim::won`] tells
/// whether the key was free. On PostgreSQL a claim by a transaction still running makes this
/// wait for it to finish, so two copies of one request never run side by side.
///
/// The claim goes out with the request's first statement instead of a round trip of its own:
/// a request that lost it has run in a transaction that is then rolled back, unseen.
pub async fn claim(
    conn: &mut Connection,
    operator_id: i64,
    key: &str,
    request_hash: &str,
    now: Millis,
) -> Result<Claim> {
    let sent = sql::query(
        "INSERT INTO idempotency_keys (operator_id, key, request_hash, status, response, created_at) \
         VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (operator_id, key) DO NOTHING RETURNING operator_id",
    )
    .bind(operator_id)
    .bind(key)
    .bind(request_hash)
    .bind(now)
    .fetch_deferred(conn)
    .await?;
    Ok(Claim(sent))
}

/// A claim sent by [`claim`], its outcome read before the transaction commits.
#[must_use = "a request may act only once it knows it won its claim"]
pub struct Claim(sql::Deferred);

impl Claim {
    /// Whether this transaction holds the key (false: another request with it committed first).
    pub async fn won(self, conn: &mut Connection) -> Result<bool> {
        self.0.returned_a_row(conn).await
    }
}

/// Store the answer of a claimed request, in the transaction that made its change.
pub async fn answer(conn: &mut Connection, operator_id: i64, key: &str, status: u16, body: &str) -> Result<()> {
    sql::query("UPDATE idempotency_keys SET status = $1, response = $2 WHERE operator_id = $3 AND key = $4")
        .bind(i64::from(status))
        .bind(body)
        .bind(operator_id)
        .bind(key)
        .execute_pipelined(conn)
        .await
}
