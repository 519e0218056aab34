//! Settling a port (F1 step 6): the compensation's journal, the routing change log entry and
//! the message announcing the change, the part of a settlement every other one waits for.
//!
//! Posting locks the ledger's rows and appending locks the log's head until the transaction
//! ends (see [`ledger::post`], [`routing::append_change`]). On SQLite that costs nothing extra:
//! one writer runs transactions one at a time. On PostgreSQL, settlements run side by side and
//! the locks were held across every round trip to the client after them; so there, [`settle`]
//! writes the settlement as a row and a deferred trigger does the locked work at COMMIT
//! (migration 0006), holding the locks for that work and the commit's flush only.

use numport_core::porting::ChangeKind;
use numport_core::{JournalEntry, Millis, Msisdn, RoutingNumber};

use crate::ledger::{self, PostError};
use crate::sql::{self, Connection};
use crate::{StoreError, outbox, routing};

/// What one settlement writes.
#[derive(Debug, Clone)]
pub struct Settlement<'a> {
    pub order_id: i64,
    /// The compensation's journal and its idempotency key; `None` when nothing is owed.
    pub compensation: Option<(&'a str, &'a JournalEntry<i64>)>,
    pub msisdn: &'a Msisdn,
    /// The operator that serves the number from now on, and its routing number.
    pub operator_id: i64,
    pub routing_number: &'a RoutingNumber,
    pub change: ChangeKind,
    /// The message that announces the change: to whom, its kind, and its JSON body, an object
    /// whose `seq` is set to the change's sequence number.
    pub announce_to: i64,
    pub announce_kind: &'a str,
    pub announcement: &'a serde_json::Value,
    pub now: Millis,
}

/// When the change log entry got its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Written now, as `seq`.
    Now(i64),
    /// It will get its number at COMMIT (PostgreSQL). Funds gone meanwhile fail the COMMIT
    /// with a serialization failure (SQLSTATE 40001).
    AtCommit,
}

/// The journal kind of a compensation.
const COMPENSATION: &str = "compensation";

/// Settle within the caller's transaction. Call last: from here, on SQLite, the ledger's and
/// the log's rows are locked until COMMIT.
pub async fn settle(conn: &mut Connection, s: &Settlement<'_>) -> Result<Settled, PostError> {
    if conn.is_postgres() {
        return settle_at_commit(conn, s).await.map_err(PostError::from);
    }
    if let Some((key, entry)) = s.compensation {
        ledger::post(conn, key, COMPENSATION, Some(s.order_id), entry, s.now).await?;
    }
    let seq =
        routing::append_change(conn, s.msisdn, s.operator_id, s.routing_number, s.change, Some(s.order_id), s.now)
            .await?;
    let mut body = s.announcement.clone();
    let Some(fields) = body.as_object_mut() else {
        return Err(StoreError::Corrupt("a settlement's announcement is not a JSON object".into()).into());
    };
    fields.insert("seq".into(), seq.into());
    outbox::enqueue(conn, s.announce_to, s.announce_kind, Some(s.order_id), &body.to_string(), s.now, s.now).await?;
    Ok(Settled::Now(seq))
}

async fn settle_at_commit(conn: &mut Connection, s: &Settlement<'_>) -> crate::Result<Settled> {
    let (key, kind, lines) = match s.compensation {
        Some((key, entry)) => (Some(key), Some(COMPENSATION), Some(ledger::lines_json(entry)?)),
        None => (None, None, None),
    };
    sql::query(
        "INSERT INTO settlements (order_id, journal_key, journal_kind, journal_lines, msisdn, operator_id, \
         routing_number, change_kind, announce_to, announce_kind, announce_body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(s.order_id)
    .bind(key)
    .bind(kind)
    .bind(lines)
    .bind(s.msisdn.as_str())
    .bind(s.operator_id)
    .bind(s.routing_number.as_str())
    .bind(s.change.as_str())
    .bind(s.announce_to)
    .bind(s.announce_kind)
    .bind(s.announcement.to_string())
    .bind(s.now)
    .execute_pipelined(conn)
    .await?;
    Ok(Settled::AtCommit)
}
