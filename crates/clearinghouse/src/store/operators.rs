//! Operators registered at the clearinghouse, and their API keys.

use numport_core::{Millis, OperatorName, RoutingNumber};
use numport_db::sql::{self, Connection, Row};

use super::parse_col;
use numport_db::{Result, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: i64,
    pub name: OperatorName,
    pub routing_number: RoutingNumber,
    pub callback_url: Option<String>,
    /// Version of the derived callback secret; 0 until credentials are first issued.
    pub callback_key_version: i64,
    pub created_at: Millis,
}

const COLUMNS: &str = "id, name, routing_number, callback_url, callback_key_version, created_at";

fn from_row(r: &Row) -> Result<Operator> {
    Ok(Operator {
        id: r.try_get("id")?,
        name: parse_col("operator name", r.try_get::<&str, _>("name")?)?,
        routing_number: parse_col("routing number", r.try_get::<&str, _>("routing_number")?)?,
        callback_url: r.try_get("callback_url")?,
        callback_key_version: r.try_get("callback_key_version")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Register an operator and open its settlement account.
pub async fn insert(
    conn: &mut Connection,
    name: &OperatorName,
    routing_number: &RoutingNumber,
    callback_url: Option<&str>,
    now: Millis,
) -> Result<Operator> {
    let row = sql::query(&format!(
        "INSERT INTO operators (name, routing_number, callback_url, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(name.as_str())
    .bind(routing_number.as_str())
    .bind(callback_url)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::from_insert)?;
    let op = from_row(&row)?;
    super::ledger::open_account(conn, &format!("settlement:{}", op.name), Some(op.id)).await?;
    Ok(op)
}

pub async fn by_name(conn: &mut Connection, name: &str) -> Result<Option<Operator>> {
    let row =
        sql::query(&format!("SELECT {COLUMNS} FROM operators WHERE name = $1")).bind(name).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_id(conn: &mut Connection, id: i64) -> Result<Operator> {
    let row = sql::query(&format!("SELECT {COLUMNS} FROM operators WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound("operator"))?;
    from_row(&row)
}

pub async fn list(conn: &mut Connection) -> Result<Vec<Operator>> {
    let rows = sql::query(&format!("SELECT {COLUMNS} FROM operators ORDER BY name")).fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

pub async fn set_callback_url(conn: &mut Connection, id: i64, url: Option<&str>) -> Result<()> {
    sql::query("UPDATE operators SET callback_url = $1 WHERE id = $2").bind(url).bind(id).execute(conn).await?;
    Ok(())
}

/// Move to the next callback secret version and return it.
pub async fn bump_callback_key_version(conn: &mut Connection, id: i64) -> Result<i64> {
    let v: i64 = sql::query_scalar(
        "UPDATE operators SET callback_key_version = callback_key_version + 1 \
         WHERE id = $1 RETURNING callback_key_version",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(v)
}

/// An API key's stored half: which operator it authenticates, and the hash of its secret.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub key_id: String,
    pub operator_id: i64,
    pub secret_hash: String,
    pub revoked_at: Option<Millis>,
}

pub async fn insert_api_key(
    conn: &mut Connection,
    key_id: &str,
    operator_id: i64,
    secret_hash: &str,
    now: Millis,
) -> Result<()> {
    sql::query("INSERT INTO api_keys (key_id, operator_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(key_id)
        .bind(operator_id)
        .bind(secret_hash)
        .bind(now)
        .execute(conn)
        .await
        .map_err(StoreError::from_insert)?;
    Ok(())
}

/// Revoke an operator's keys that are still valid at `at` (rotation revokes with a grace time).
pub async fn revoke_api_keys(conn: &mut Connection, operator_id: i64, at: Millis) -> Result<u64> {
    let r = sql::query(
        "UPDATE api_keys SET revoked_at = $1 WHERE operator_id = $2 \
         AND (revoked_at IS NULL OR revoked_at > $1)",
    )
    .bind(at)
    .bind(operator_id)
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

pub async fn api_key(conn: &mut Connection, key_id: &str) -> Result<Option<ApiKey>> {
    let row = sql::query("SELECT key_id, operator_id, secret_hash, revoked_at FROM api_keys WHERE key_id = $1")
        .bind(key_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(ApiKey {
            key_id: r.try_get("key_id")?,
            operator_id: r.try_get("operator_id")?,
            secret_hash: r.try_get("secret_hash")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    })
    .transpose()
}
