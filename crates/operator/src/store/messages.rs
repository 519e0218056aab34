//! Clearinghouse messages this node has received, and how far its inbox has been read.
//!
//! A message is recorded (by its outbox id) before it is acknowledged, and marked processed only
//! after its handling succeeded. The id is the primary key, so a replayed or re-delivered
//! message is recognised by the insert itself, and an unprocessed row is durable work that
//! survives a crash between acknowledgement and processing.

use numport_core::Millis;
use numport_db::sql::{self, Row};

use super::OperatorStore;
use super::events::{Effect, MARK_PROCESSED, finish_on};
use crate::OperatorError;

/// A recorded message, as the re-processor reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub id: i64,
    pub kind: String,
    /// The envelope JSON as received.
    pub body: String,
    pub received_at: Millis,
    pub processed_at: Option<Millis>,
    pub attempts: i64,
    pub next_attempt_at: Millis,
    pub last_error: Option<String>,
}

fn message_row(r: &Row) -> Result<ReceivedMessage, OperatorError> {
    Ok(ReceivedMessage {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        body: r.try_get("body")?,
        received_at: r.try_get("received_at")?,
        processed_at: r.try_get("processed_at")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
    })
}

const COLUMNS: &str = "id, kind, body, received_at, processed_at, attempts, next_attempt_at, last_error";

/// A message as it arrives, to record.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub id: i64,
    pub kind: &'a str,
    /// The envelope JSON as received.
    pub body: &'a str,
    /// Its handling, when it needs nothing but the node's own database (the note and the
    /// effect to finish it with); `None` leaves it to be processed.
    pub handled: Option<(Option<&'a str>, &'a Effect)>,
}

impl OperatorStore {
    /// Record a message unless its id is already known. True when it is new (process it);
    /// false for a duplicate or replay (do nothing). `retry_at` is when the re-processor may
    /// take it up if its first processing does not finish.
    pub async fn record_message(
        &self,
        id: i64,
        kind: &str,
        body: &str,
        now: Millis,
        retry_at: Millis,
    ) -> Result<bool, OperatorError> {
        let new = self.record_messages(&[Arrival { id, kind, body, handled: None }], now, retry_at).await?;
        Ok(new[0])
    }

    /// Record the messages of one callback in one transaction: for each, in order, whether it
    /// is new. A new one that comes already handled is also finished in that transaction, as
    /// [`OperatorStore::finish_message`] would.
    pub async fn record_messages(
        &self,
        arrivals: &[Arrival<'_>],
        now: Millis,
        retry_at: Millis,
    ) -> Result<Vec<bool>, OperatorError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        let mut new = Vec::with_capacity(arrivals.len());
        for a in arrivals {
            let r = sql::query(
                "INSERT INTO received_messages (id, kind, body, received_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(a.id)
            .bind(a.kind)
            .bind(a.body)
            .bind(now)
            .bind(retry_at)
            .execute(&mut tx)
            .await?;
            let is_new = r.rows_affected() == 1;
            if is_new && let Some((note, effect)) = a.handled {
                finish_on(&mut tx, self.backend, a.id, now, note, effect).await?;
            }
            new.push(is_new);
        }
        tx.commit().await?;
        Ok(new)
    }

    pub async fn received_message(&self, id: i64) -> Result<Option<ReceivedMessage>, OperatorError> {
        let row = sql::query(&format!("SELECT {COLUMNS} FROM received_messages WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        row.as_ref().map(message_row).transpose()
    }

    /// Handling succeeded (or can never succeed and was given up): do not process again.
    /// `note` keeps why, when it was given up.
    pub async fn mark_processed(&self, id: i64, now: Millis, note: Option<&str>) -> Result<(), OperatorError> {
        sql::query(MARK_PROCESSED).bind(now).bind(note).bind(id).execute(&mut *self.conn().await?).await?;
        Ok(())
    }

    /// Handling failed in a way a retry may cure: try again from `next_attempt_at`.
    pub async fn mark_failed(&self, id: i64, error: &str, next_attempt_at: Millis) -> Result<(), OperatorError> {
        sql::query(
            "UPDATE received_messages SET attempts = attempts + 1, last_error = $1, \
             next_attempt_at = $2 WHERE id = $3 AND processed_at IS NULL",
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(id)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    /// Unprocessed messages due by `due_by`, oldest first.
    pub async fn due_messages(&self, due_by: Millis, limit: i64) -> Result<Vec<ReceivedMessage>, OperatorError> {
        let rows = sql::query(&format!(
            "SELECT {COLUMNS} FROM received_messages \
             WHERE processed_at IS NULL AND next_attempt_at <= $1 ORDER BY id LIMIT $2"
        ))
        .bind(due_by)
        .bind(limit)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(message_row).collect()
    }

    pub async fn unprocessed_count(&self) -> Result<i64, OperatorError> {
        Ok(sql::query_scalar("SELECT COUNT(*) FROM received_messages WHERE processed_at IS NULL")
            .fetch_one(&mut *self.conn().await?)
            .await?)
    }

    /// The id of the last inbox message read by catch-up (0 before the first).
    pub async fn inbox_cursor(&self) -> Result<i64, OperatorError> {
        Ok(sql::query_scalar("SELECT last_id FROM inbox_cursor WHERE id = 1")
            .fetch_optional(&mut *self.conn().await?)
            .await?
            .unwrap_or(0))
    }

    /// Move the inbox cursor forward to `last_id`; it never moves back.
    pub async fn advance_inbox_cursor(&self, last_id: i64, now: Millis) -> Result<(), OperatorError> {
        sql::query("UPDATE inbox_cursor SET last_id = $1, updated_at = $2 WHERE id = 1 AND last_id < $1")
            .bind(last_id)
            .bind(now)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }
}
