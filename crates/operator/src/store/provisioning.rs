//! Provisioning (F6): the durable per-category queues. An order and its commands are written
//! in one transaction before the order is acknowledged; a command stays `queued` until its
//! outcome is recorded (`done`, or `dead` with the reason), which is how a restart finds what
//! is left to send.
//!
//! Ids are given by the caller (the node's provisioning, in memory, under one lock), so that
//! the commands' order is the order they were committed in, on both engines: the dispatcher
//! keeps per-subscriber order by it.

use std::collections::HashMap;

use numport_core::{Millis, Msisdn};
use numport_db::sql::{self, Kind, PerEngine, Row};
use provisioning::dispatcher::{Outcome, Queued};
use provisioning::{Category, Command, Element, Order, Verb};
use serde_json::json;

use super::{OperatorStore, parse_col};
use crate::OperatorError;

/// An order to write, with its commands.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: i64,
    pub order: Order,
    /// Where it came from, unique: a second order from the same source is not written.
    pub source: Option<String>,
    pub created_at: Millis,
    pub commands: Vec<Queued>,
}

/// A stored order with its commands.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRecord {
    pub id: i64,
    pub order: Order,
    pub category: Category,
    pub created_at: Millis,
    pub commands: Vec<CommandRecord>,
}

/// A stored command and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRecord {
    pub id: i64,
    pub order_id: i64,
    pub category: Category,
    pub command: Command,
    /// `queued`, `done` or `dead`.
    pub state: String,
    pub reason: Option<String>,
    pub done_at: Option<Millis>,
}

static INSERT_ORDERS: PerEngine = PerEngine::new(|pg| {
    let rows = sql::json_rows(
        pg,
        1,
        &[
            ("id", Kind::Int),
            ("msisdn", Kind::Text),
            ("action", Kind::Text),
            ("category", Kind::Text),
            ("body", Kind::Text),
            ("source", Kind::Text),
            ("created_at", Kind::Int),
        ],
    );
    format!(
        "INSERT INTO provisioning_orders (id, msisdn, action, category, body, source, created_at) \
         SELECT id, msisdn, action, category, body, source, created_at FROM {rows} ORDER BY n"
    )
});

static INSERT_COMMANDS: PerEngine = PerEngine::new(|pg| {
    let rows = sql::json_rows(
        pg,
        1,
        &[
            ("id", Kind::Int),
            ("order_id", Kind::Int),
            ("category", Kind::Text),
            ("element", Kind::Text),
            ("verb", Kind::Text),
            ("msisdn", Kind::Text),
            ("params", Kind::Text),
        ],
    );
    format!(
        "INSERT INTO provisioning_commands (id, order_id, category, element, verb, msisdn, params, state) \
         SELECT id, order_id, category, element, verb, msisdn, params, 'queued' FROM {rows} ORDER BY n"
    )
});

static RECORD: PerEngine = PerEngine::new(|pg| {
    let rows =
        sql::json_rows(pg, 1, &[("id", Kind::Int), ("state", Kind::Text), ("reason", Kind::Text), ("at", Kind::Int)]);
    format!(
        "UPDATE provisioning_commands SET state = r.state, reason = r.reason, done_at = r.at FROM {rows} \
         WHERE provisioning_commands.id = r.id AND provisioning_commands.state = 'queued'"
    )
});

static SOURCES: PerEngine = PerEngine::new(|pg| {
    let rows = sql::json_rows(pg, 1, &[("source", Kind::Text)]);
    format!("SELECT o.source, o.id FROM provisioning_orders o JOIN {rows} ON o.source = r.source")
});

const COMMAND_COLUMNS: &str = "id, order_id, category, element, verb, msisdn, params, state, reason, done_at";

fn command_row(r: &Row) -> Result<CommandRecord, OperatorError> {
    let text = |name: &str| -> Result<String, OperatorError> { Ok(r.try_get::<String, _>(name)?) };
    let msisdn: Msisdn = parse_col("msisdn", &text("msisdn")?)?;
    let params = text("params")?;
    let params = Command::parse_params(&params).ok_or_else(|| OperatorError::Corrupt(format!("params {params:?}")))?;
    let element: Element = parse_col("element", &text("element")?)?;
    let verb: Verb = parse_col("verb", &text("verb")?)?;
    Ok(CommandRecord {
        id: r.try_get("id")?,
        order_id: r.try_get("order_id")?,
        category: parse_col("category", &text("category")?)?,
        command: Command { element, verb, msisdn, params },
        state: text("state")?,
        reason: r.try_get("reason")?,
        done_at: r.try_get("done_at")?,
    })
}

impl OperatorStore {
    /// The next free order and command ids.
    pub async fn provisioning_next_ids(&self) -> Result<(i64, i64), OperatorError> {
        let mut conn = self.conn().await?;
        let order: Option<i64> =
            sql::query_scalar("SELECT MAX(id) FROM provisioning_orders").fetch_one(&mut conn).await?;
        let command: Option<i64> =
            sql::query_scalar("SELECT MAX(id) FROM provisioning_commands").fetch_one(&mut conn).await?;
        Ok((order.unwrap_or(0) + 1, command.unwrap_or(0) + 1))
    }

    /// Of `sources`, those already used, with their order's id.
    pub async fn provisioning_sources(&self, sources: &[&str]) -> Result<HashMap<String, i64>, OperatorError> {
        if sources.is_empty() {
            return Ok(HashMap::new());
        }
        let mut conn = self.conn().await?;
        let param = sql::rows_param(sources.iter().map(|s| json!({ "source": s })))?;
        let rows = sql::query(SOURCES.text(&conn)).bind(param).fetch_all(&mut conn).await?;
        rows.iter().map(|r| Ok((r.try_get::<String, _>("source")?, r.try_get::<i64, _>("id")?))).collect()
    }

    /// Write orders and their commands in one transaction.
    pub async fn insert_provisioning_orders(&self, orders: &[NewOrder]) -> Result<(), OperatorError> {
        if orders.is_empty() {
            return Ok(());
        }
        let order_rows = orders.iter().map(|o| {
            json!({
                "id": o.id,
                "msisdn": o.order.msisdn.as_str(),
                "action": o.order.action.name(),
                "category": o.order.category().as_str(),
                "body": serde_json::to_string(&o.order).unwrap_or_default(),
                "source": o.source,
                "created_at": o.created_at,
            })
        });
        let command_rows = orders.iter().flat_map(|o| {
            o.commands.iter().map(move |q| {
                json!({
                    "id": q.id,
                    "order_id": o.id,
                    "category": q.category.as_str(),
                    "element": q.command.element.as_str(),
                    "verb": q.command.verb.as_str(),
                    "msisdn": q.command.msisdn.as_str(),
                    "params": q.command.params_text(),
                })
            })
        });
        let (order_rows, command_rows) = (sql::rows_param(order_rows)?, sql::rows_param(command_rows)?);
        let mut conn = self.conn().await?;
        let mut tx = conn.begin().await?;
        sql::query(INSERT_ORDERS.text(&tx)).bind(order_rows).execute(&mut tx).await?;
        sql::query(INSERT_COMMANDS.text(&tx)).bind(command_rows).execute(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record commands' final outcomes, in one statement.
    pub async fn record_provisioning_outcomes(&self, outcomes: &[Outcome]) -> Result<(), OperatorError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let rows = sql::rows_param(outcomes.iter().map(|o| match o {
            Outcome::Done { id, at } => json!({ "id": id, "state": "done", "reason": null, "at": at }),
            Outcome::Dead { id, at, reason } => json!({ "id": id, "state": "dead", "reason": reason, "at": at }),
        }))?;
        let mut conn = self.conn().await?;
        sql::query(RECORD.text(&conn)).bind(rows).execute(&mut conn).await?;
        Ok(())
    }

    /// Every command still queued, in the order committed.
    pub async fn queued_provisioning_commands(&self) -> Result<Vec<Queued>, OperatorError> {
        let mut conn = self.conn().await?;
        let rows = sql::query(&format!(
            "SELECT {COMMAND_COLUMNS} FROM provisioning_commands WHERE state = 'queued' ORDER BY id"
        ))
        .fetch_all(&mut conn)
        .await?;
        rows.iter()
            .map(|r| command_row(r).map(|c| Queued { id: c.id, category: c.category, command: c.command }))
            .collect()
    }

    /// An order with its commands.
    pub async fn provisioning_order(&self, id: i64) -> Result<Option<OrderRecord>, OperatorError> {
        let mut conn = self.conn().await?;
        let Some(row) = sql::query("SELECT id, category, body, created_at FROM provisioning_orders WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut conn)
            .await?
        else {
            return Ok(None);
        };
        let body: String = row.try_get("body")?;
        let order: Order =
            serde_json::from_str(&body).map_err(|e| OperatorError::Corrupt(format!("order {id}: {e}")))?;
        let category: String = row.try_get("category")?;
        let commands =
            sql::query(&format!("SELECT {COMMAND_COLUMNS} FROM provisioning_commands WHERE order_id = $1 ORDER BY id"))
                .bind(id)
                .fetch_all(&mut conn)
                .await?;
        Ok(Some(OrderRecord {
            id,
            order,
            category: parse_col("category", &category)?,
            created_at: row.try_get("created_at")?,
            commands: commands.iter().map(command_row).collect::<Result<_, _>>()?,
        }))
    }

    /// The orders for `msisdn`, oldest first, with their commands.
    pub async fn provisioning_orders_of(&self, msisdn: &Msisdn) -> Result<Vec<OrderRecord>, OperatorError> {
        let ids: Vec<i64> = {
            let mut conn = self.conn().await?;
            let rows = sql::query("SELECT id FROM provisioning_orders WHERE msisdn = $1 ORDER BY id")
                .bind(msisdn.as_str())
                .fetch_all(&mut conn)
                .await?;
            rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?
        };
        let mut orders = Vec::with_capacity(ids.len());
        for id in ids {
            orders.extend(self.provisioning_order(id).await?);
        }
        Ok(orders)
    }

    /// Dead commands, newest first, below id `before` (all when `None`).
    pub async fn provisioning_dead_letters(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<CommandRecord>, OperatorError> {
        let mut conn = self.conn().await?;
        let rows = sql::query(&format!(
            "SELECT {COMMAND_COLUMNS} FROM provisioning_commands WHERE state = 'dead' AND id < $1 \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(command_row).collect()
    }

    /// Commands queued and dead, per category (each count read through its partial index, so
    /// the cost does not grow with the commands executed).
    pub async fn provisioning_counts(&self) -> Result<Vec<(Category, String, i64)>, OperatorError> {
        let mut conn = self.conn().await?;
        let mut counts = Vec::new();
        for state in ["queued", "dead"] {
            let rows = sql::query(&format!(
                "SELECT category, COUNT(*) AS n FROM provisioning_commands WHERE state = '{state}' GROUP BY category"
            ))
            .fetch_all(&mut conn)
            .await?;
            for r in &rows {
                let category: String = r.try_get("category")?;
                counts.push((parse_col("category", &category)?, state.to_owned(), r.try_get("n")?));
            }
        }
        Ok(counts)
    }

    /// The IMSI of the SIM this node issued for `msisdn`, if any.
    pub async fn imsi_of(&self, msisdn: &Msisdn) -> Result<Option<String>, OperatorError> {
        let mut conn = self.conn().await?;
        Ok(sql::query_scalar("SELECT imsi FROM sims WHERE msisdn = $1")
            .bind(msisdn.as_str())
            .fetch_optional(&mut conn)
            .await?)
    }

    /// Ports in and out this node recorded for which no provisioning order exists (their
    /// order is written after the port's own transaction; a crash between leaves it to this).
    pub async fn unprovisioned_ports(&self) -> Result<Vec<super::PortEvent>, OperatorError> {
        let mut conn = self.conn().await?;
        let rows = sql::query(
            "SELECT e.id, e.message_id, e.kind, e.order_id, e.msisdn, e.counterpart, e.detail, e.at \
             FROM port_events e WHERE e.kind IN ('port_in', 'port_out') AND e.message_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM provisioning_orders o WHERE o.source = 'message:' || e.message_id) \
             ORDER BY e.id",
        )
        .fetch_all(&mut conn)
        .await?;
        rows.iter().map(super::events::event_row).collect()
    }
}
