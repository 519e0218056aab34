//! The node's own record of porting: each step it took or was told of, as donor or recipient.
//!
//! An event caused by a clearinghouse message carries the message id, which is unique: the
//! changes a message makes to subscriber accounts are written in the transaction that records
//! its event, so re-processing a message changes nothing twice.

use numport_core::{Millis, Msisdn, OperatorName};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::subscribers::{Subscriber, SubscriberStatus};
use super::{OperatorStore, parse_col};
use crate::OperatorError;

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPortEvent {
    /// The clearinghouse message that caused it; `None` for the node's own initiatives.
    pub message_id: Option<i64>,
    /// `port_in`, `port_out`, `deposit`, `credit_answered`, `decision`, `order_closed`, …
    pub kind: String,
    pub order_id: Option<i64>,
    pub msisdn: Msisdn,
    /// The other operator of the order, where known.
    pub counterpart: Option<OperatorName>,
    pub detail: serde_json::Value,
    pub at: Millis,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct PortEvent {
    pub id: i64,
    pub message_id: Option<i64>,
    pub kind: String,
    pub order_id: Option<i64>,
    pub msisdn: Msisdn,
    pub counterpart: Option<OperatorName>,
    pub detail: serde_json::Value,
    pub at: Millis,
}

const INSERT: &str = "INSERT INTO port_events \
     (message_id, kind, order_id, msisdn, counterpart, detail, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING";

fn event_row(r: &AnyRow) -> Result<PortEvent, OperatorError> {
    let msisdn: String = r.try_get("msisdn")?;
    let counterpart: Option<String> = r.try_get("counterpart")?;
    let detail: String = r.try_get("detail")?;
    Ok(PortEvent {
        id: r.try_get("id")?,
        message_id: r.try_get("message_id")?,
        kind: r.try_get("kind")?,
        order_id: r.try_get("order_id")?,
        msisdn: parse_col("msisdn", &msisdn)?,
        counterpart: counterpart.map(|c| parse_col("operator", &c)).transpose()?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| OperatorError::Corrupt(format!("event detail: {e}")))?,
        at: r.try_get("at")?,
    })
}

async fn insert_event(
    conn: &mut sqlx::AnyConnection,
    e: &NewPortEvent,
) -> Result<bool, OperatorError> {
    let r = sqlx::query(INSERT)
        .bind(e.message_id)
        .bind(e.kind.as_str())
        .bind(e.order_id)
        .bind(e.msisdn.as_str())
        .bind(e.counterpart.as_ref().map(OperatorName::as_str))
        .bind(e.detail.to_string())
        .bind(e.at)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

impl OperatorStore {
    /// Record an event; false when its message already recorded one.
    pub async fn record_event(&self, e: &NewPortEvent) -> Result<bool, OperatorError> {
        let mut conn = self.pool.acquire().await?;
        insert_event(&mut conn, e).await
    }

    /// A port-in completed: record it and make the number an active subscriber with zero
    /// balances and no port key (a returning subscriber's old figures are cleared). Once per
    /// message; false when the message was already applied.
    pub async fn apply_port_in(&self, e: &NewPortEvent) -> Result<bool, OperatorError> {
        let mut tx = self.pool.begin().await?;
        if !insert_event(&mut tx, e).await? {
            return Ok(false);
        }
        let s = Subscriber::new(e.msisdn.clone(), e.at);
        sqlx::query(
            "INSERT INTO subscribers (msisdn, port_key, arrears, unbilled_usage, contract_remaining, \
             deposit_held, status, updated_at) VALUES ($1, NULL, 0, 0, 0, 0, $2, $3) \
             ON CONFLICT (msisdn) DO UPDATE SET port_key = NULL, arrears = 0, unbilled_usage = 0, \
             contract_remaining = 0, deposit_held = 0, status = excluded.status, \
             updated_at = excluded.updated_at",
        )
        .bind(s.msisdn.as_str())
        .bind(s.status.as_str())
        .bind(s.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A port-out was settled: record it and mark the subscriber `ported_out` (the row stays).
    /// Once per message; false when the message was already applied.
    pub async fn apply_port_out(&self, e: &NewPortEvent) -> Result<bool, OperatorError> {
        let mut tx = self.pool.begin().await?;
        if !insert_event(&mut tx, e).await? {
            return Ok(false);
        }
        sqlx::query("UPDATE subscribers SET status = $1, updated_at = $2 WHERE msisdn = $3")
            .bind(SubscriberStatus::PortedOut.as_str())
            .bind(e.at)
            .bind(e.msisdn.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Events for one number, oldest first.
    pub async fn port_events(&self, msisdn: &Msisdn) -> Result<Vec<PortEvent>, OperatorError> {
        let rows = sqlx::query(
            "SELECT id, message_id, kind, order_id, msisdn, counterpart, detail, at \
             FROM port_events WHERE msisdn = $1 ORDER BY id",
        )
        .bind(msisdn.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// The latest `limit` events of any number, newest first.
    pub async fn recent_port_events(&self, limit: i64) -> Result<Vec<PortEvent>, OperatorError> {
        let rows = sqlx::query(
            "SELECT id, message_id, kind, order_id, msisdn, counterpart, detail, at \
             FROM port_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_row).collect()
    }
}
