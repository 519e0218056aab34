//! The node's own record of porting: each step it took or was told of, as donor or recipient.
//!
//! An event caused by a clearinghouse message carries the message id, which is unique: the
//! changes a message makes to subscriber accounts are written in the transaction that records
//! its event, so re-processing a message changes nothing twice.

use std::fmt;
use std::str::FromStr;

use numport_core::porting::UnknownCode;
use numport_core::{Millis, Msisdn, OperatorName};
use numport_db::sql::{self, Connection, Row};

use super::subscribers::{Subscriber, SubscriberStatus};
use super::{Backend, OperatorStore, parse_col};
use crate::OperatorError;

/// What happened, stored in `port_events.kind` as its [`EventKind::as_str`] code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Recipient: the subscriber asked for a port-in through the node and the clearinghouse
    /// opened the order.
    PortInRequested,
    /// Donor: the proof for a port-out was deposited, asked for by the clearinghouse or by the
    /// subscriber through the node.
    Deposit,
    /// Donor: the subscriber's figures were sent in answer to a credit query.
    CreditAnswered,
    /// Recipient: the port was accepted on the donor's credit information.
    Accepted,
    /// Recipient: the port was refused on the donor's credit information.
    Refused,
    /// Donor: the port was settled and the number left; the subscriber is `ported_out`.
    PortOut,
    /// Recipient: the port completed; the number is an active subscriber.
    PortIn,
    /// The order ended without a port.
    OrderClosed,
    /// A ported number was terminated and returned to this node, its range holder.
    NumberReturned,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::PortInRequested,
        EventKind::Deposit,
        EventKind::CreditAnswered,
        EventKind::Accepted,
        EventKind::Refused,
        EventKind::PortOut,
        EventKind::PortIn,
        EventKind::OrderClosed,
        EventKind::NumberReturned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PortInRequested => "port_in_requested",
            EventKind::Deposit => "deposit",
            EventKind::CreditAnswered => "credit_answered",
            EventKind::Accepted => "accepted",
            EventKind::Refused => "refused",
            EventKind::PortOut => "port_out",
            EventKind::PortIn => "port_in",
            EventKind::OrderClosed => "order_closed",
            EventKind::NumberReturned => "number_returned",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownCode { kind: "event kind", value: s.to_owned() })
    }
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPortEvent {
    /// The clearinghouse message that caused it; `None` for the node's own initiatives.
    pub message_id: Option<i64>,
    pub kind: EventKind,
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
    pub kind: EventKind,
    pub order_id: Option<i64>,
    pub msisdn: Msisdn,
    pub counterpart: Option<OperatorName>,
    pub detail: serde_json::Value,
    pub at: Millis,
}

/// What handling a clearinghouse message leaves to record besides the message's own row.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Nothing: the message was given up, or the order had moved on.
    Nothing,
    /// An event.
    Event(NewPortEvent),
    /// A completed port-in: the event, and the number becomes an active subscriber with zero
    /// balances and no port key (see [`OperatorStore::apply_port_in`]).
    PortIn(NewPortEvent),
    /// A settled port-out: the event, and the subscriber becomes `ported_out`.
    PortOut(NewPortEvent),
}

const INSERT: &str = "INSERT INTO port_events \
     (message_id, kind, order_id, msisdn, counterpart, detail, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING";

pub(super) fn event_row(r: &Row) -> Result<PortEvent, OperatorError> {
    let kind: String = r.try_get("kind")?;
    let msisdn: String = r.try_get("msisdn")?;
    let counterpart: Option<String> = r.try_get("counterpart")?;
    let detail: String = r.try_get("detail")?;
    Ok(PortEvent {
        id: r.try_get("id")?,
        message_id: r.try_get("message_id")?,
        kind: parse_col("event kind", &kind)?,
        order_id: r.try_get("order_id")?,
        msisdn: parse_col("msisdn", &msisdn)?,
        counterpart: counterpart.map(|c| parse_col("operator", &c)).transpose()?,
        detail: serde_json::from_str(&detail).map_err(|e| OperatorError::Corrupt(format!("event detail: {e}")))?,
        at: r.try_get("at")?,
    })
}

/// `statement` with the event bound as $1–$7, in [`INSERT`]'s order.
fn event_query<'q>(statement: &'q str, e: &NewPortEvent) -> sql::Query<'q> {
    sql::query(statement)
        .bind(e.message_id)
        .bind(e.kind.as_str())
        .bind(e.order_id)
        .bind(e.msisdn.as_str())
        .bind(e.counterpart.as_ref().map(OperatorName::as_str))
        .bind(e.detail.to_string())
        .bind(e.at)
}

async fn insert_event(conn: &mut Connection, e: &NewPortEvent) -> Result<bool, OperatorError> {
    Ok(event_query(INSERT, e).execute(conn).await?.rows_affected() == 1)
}

// `finish_message` statements. Parameters: $1-$7 the event (as in INSERT), $8 processed_at,
// $9 the note, $10 the received message's id, $11 the subscriber status a port sets.

const SQLITE_MARK: &str = "UPDATE received_messages SET processed_at = $8, attempts = attempts + 1, \
     last_error = $9 WHERE id = $10 AND processed_at IS NULL";

/// The subscriber change of a port-in, unless the message's event is recorded already; run
/// before the event is inserted, in the same transaction.
const SQLITE_PORT_IN_SUBSCRIBER: &str = "INSERT INTO subscribers (msisdn, port_key, arrears, \
     unbilled_usage, contract_remaining, deposit_held, status, updated_at) \
     SELECT $4, NULL, 0, 0, 0, 0, $11, $7 \
     WHERE NOT EXISTS (SELECT 1 FROM port_events WHERE message_id = $1) \
     ON CONFLICT (msisdn) DO UPDATE SET port_key = NULL, arrears = 0, unbilled_usage = 0, \
     contract_remaining = 0, deposit_held = 0, status = excluded.status, \
     updated_at = excluded.updated_at";

const SQLITE_PORT_OUT_SUBSCRIBER: &str = "UPDATE subscribers SET status = $11, updated_at = $7 \
     WHERE msisdn = $4 AND NOT EXISTS (SELECT 1 FROM port_events WHERE message_id = $1)";

const PG_EVENT: &str = "WITH e AS (INSERT INTO port_events \
     (message_id, kind, order_id, msisdn, counterpart, detail, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (message_id) DO NOTHING RETURNING id, msisdn)";

const PG_MARK: &str = ", m AS (UPDATE received_messages SET processed_at = $8, \
     attempts = attempts + 1, last_error = $9 WHERE id = $10 AND processed_at IS NULL RETURNING id) \
     SELECT id FROM e";

const PG_PORT_IN_SUBSCRIBER: &str = ", s AS (INSERT INTO subscribers (msisdn, port_key, arrears, \
     unbilled_usage, contract_remaining, deposit_held, status, updated_at) \
     SELECT msisdn, NULL, 0, 0, 0, 0, $11, $7 FROM e \
     ON CONFLICT (msisdn) DO UPDATE SET port_key = NULL, arrears = 0, unbilled_usage = 0, \
     contract_remaining = 0, deposit_held = 0, status = excluded.status, \
     updated_at = excluded.updated_at RETURNING msisdn)";

const PG_PORT_OUT_SUBSCRIBER: &str = ", s AS (UPDATE subscribers SET status = $11, updated_at = $7 \
     WHERE msisdn IN (SELECT msisdn FROM e) RETURNING msisdn)";

/// A `finish_message` statement with its parameters: every statement takes the same ones and
/// uses those it names ($11 only where there is a subscriber status to set).
fn finish_query<'q>(
    statement: &'q str,
    e: &NewPortEvent,
    now: Millis,
    note: Option<&str>,
    id: i64,
    status: Option<SubscriberStatus>,
) -> sql::Query<'q> {
    let q = event_query(statement, e).bind(now).bind(note).bind(id);
    match status {
        Some(status) => q.bind(status.as_str()),
        None => q,
    }
}

/// [`OperatorStore::finish_message`] on `conn`, which on SQLite must be in a transaction.
pub(super) async fn finish_on(
    conn: &mut Connection,
    backend: Backend,
    id: i64,
    now: Millis,
    note: Option<&str>,
    effect: &Effect,
) -> Result<bool, OperatorError> {
    let (e, status) = match effect {
        Effect::Nothing => {
            sql::query(MARK_PROCESSED).bind(now).bind(note).bind(id).execute(conn).await?;
            return Ok(false);
        }
        Effect::Event(e) => (e, None),
        Effect::PortIn(e) => (e, Some(SubscriberStatus::Active)),
        Effect::PortOut(e) => (e, Some(SubscriberStatus::PortedOut)),
    };
    let bound = |statement| finish_query(statement, e, now, note, id, status);
    if backend == Backend::Sqlite {
        // Statements on SQLite cost no round trip: the subscriber change, the event and the
        // mark, one after the other in the caller's transaction.
        match effect {
            Effect::PortIn(_) => drop(bound(SQLITE_PORT_IN_SUBSCRIBER).execute(conn).await?),
            Effect::PortOut(_) => drop(bound(SQLITE_PORT_OUT_SUBSCRIBER).execute(conn).await?),
            Effect::Event(_) | Effect::Nothing => {}
        }
        let inserted = insert_event(conn, e).await?;
        bound(SQLITE_MARK).execute(conn).await?;
        return Ok(inserted);
    }
    let sql = match effect {
        Effect::PortIn(_) => format!("{PG_EVENT}{PG_PORT_IN_SUBSCRIBER}{PG_MARK}"),
        Effect::PortOut(_) => format!("{PG_EVENT}{PG_PORT_OUT_SUBSCRIBER}{PG_MARK}"),
        Effect::Event(_) | Effect::Nothing => format!("{PG_EVENT}{PG_MARK}"),
    };
    let rows = bound(&sql).fetch_all(conn).await?;
    Ok(!rows.is_empty())
}

/// Marks a received message processed: $1 processed_at, $2 the note, $3 its id.
pub(super) const MARK_PROCESSED: &str = "UPDATE received_messages SET processed_at = $1, \
     attempts = attempts + 1, last_error = $2 WHERE id = $3 AND processed_at IS NULL";

impl OperatorStore {
    /// Record an event; false when its message already recorded one.
    pub async fn record_event(&self, e: &NewPortEvent) -> Result<bool, OperatorError> {
        let mut conn = self.conn().await?;
        insert_event(&mut conn, e).await
    }

    /// Handling message `id` ended: write its effect (an event, and for a port the subscriber
    /// change, at most once per message as [`OperatorStore::apply_port_in`] and
    /// [`OperatorStore::apply_port_out`] do) and mark the message processed with `note`, in one
    /// round trip to the database where the engine allows (a port's subscriber change, its event
    /// and the mark are one transaction; an event alone and the mark need not be, because both
    /// are idempotent). True when the effect's event was new.
    pub async fn finish_message(
        &self,
        id: i64,
        now: Millis,
        note: Option<&str>,
        effect: &Effect,
    ) -> Result<bool, OperatorError> {
        let mut conn = self.conn().await?;
        if self.backend == Backend::Sqlite {
            let mut tx = conn.begin().await?;
            let new = finish_on(&mut tx, self.backend, id, now, note, effect).await?;
            tx.commit().await?;
            return Ok(new);
        }
        finish_on(&mut conn, self.backend, id, now, note, effect).await
    }

    /// A port-in completed: record it and make the number an active subscriber with zero
    /// balances and no port key (a returning subscriber's old figures are cleared). Once per
    /// message; false when the message was already applied.
    pub async fn apply_port_in(&self, e: &NewPortEvent) -> Result<bool, OperatorError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        if !insert_event(&mut tx, e).await? {
            return Ok(false);
        }
        let s = Subscriber::new(e.msisdn.clone(), e.at);
        sql::query(
            "INSERT INTO subscribers (msisdn, port_key, arrears, unbilled_usage, contract_remaining, \
             deposit_held, status, updated_at) VALUES ($1, NULL, 0, 0, 0, 0, $2, $3) \
             ON CONFLICT (msisdn) DO UPDATE SET port_key = NULL, arrears = 0, unbilled_usage = 0, \
             contract_remaining = 0, deposit_held = 0, status = excluded.status, \
             updated_at = excluded.updated_at",
        )
        .bind(s.msisdn.as_str())
        .bind(s.status.as_str())
        .bind(s.updated_at)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A port-out was settled: record it and mark the subscriber `ported_out` (the row stays).
    /// Once per message; false when the message was already applied.
    pub async fn apply_port_out(&self, e: &NewPortEvent) -> Result<bool, OperatorError> {
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        if !insert_event(&mut tx, e).await? {
            return Ok(false);
        }
        sql::query("UPDATE subscribers SET status = $1, updated_at = $2 WHERE msisdn = $3")
            .bind(SubscriberStatus::PortedOut.as_str())
            .bind(e.at)
            .bind(e.msisdn.as_str())
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Events for one number, oldest first.
    pub async fn port_events(&self, msisdn: &Msisdn) -> Result<Vec<PortEvent>, OperatorError> {
        let rows = sql::query(
            "SELECT id, message_id, kind, order_id, msisdn, counterpart, detail, at \
             FROM port_events WHERE msisdn = $1 ORDER BY id",
        )
        .bind(msisdn.as_str())
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// The latest `limit` events of any number, newest first.
    pub async fn recent_port_events(&self, limit: i64) -> Result<Vec<PortEvent>, OperatorError> {
        let rows = sql::query(
            "SELECT id, message_id, kind, order_id, msisdn, counterpart, detail, at \
             FROM port_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        rows.iter().map(event_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_read_back_from_their_codes() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        let err = "port".parse::<EventKind>().unwrap_err();
        assert_eq!(err.to_string(), r#"unknown event kind "port""#);
    }
}
