//! The append-only audit trail: every state change, by whom, when. The migrations install
//! triggers that refuse UPDATE and DELETE on it.

use numport_core::Millis;
use numport_db::sql::{self, Connection, Row};

use numport_db::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Millis,
    /// `operator:<name>`, `admin`, `supervisor`.
    pub actor: String,
    pub action: String,
    pub order_id: Option<i64>,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    /// JSON with whatever else the action needs to be understood later.
    pub detail: String,
}

#[allow(clippy::too_many_arguments)]
pub async fn append(
    conn: &mut Connection,
    at: Millis,
    actor: &str,
    action: &str,
    order_id: Option<i64>,
    from_state: Option<&str>,
    to_state: Option<&str>,
    detail: &str,
) -> Result<()> {
    sql::query(
        "INSERT INTO audit_log (at, actor, action, order_id, from_state, to_state, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(at)
    .bind(actor)
    .bind(action)
    .bind(order_id)
    .bind(from_state)
    .bind(to_state)
    .bind(detail)
    .execute_pipelined(conn)
    .await
}

/// An order's state change for [`append_many`].
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub action: &'a str,
    pub order_id: i64,
    pub from_state: &'a str,
    pub to_state: &'a str,
    pub detail: String,
}

/// Append the entries of many orders' state changes, by one actor at one time, in one
/// statement (a settlement batch's).
pub async fn append_many(conn: &mut Connection, at: Millis, actor: &str, entries: &[NewEntry<'_>]) -> Result<()> {
    use sql::Kind::{Int, Text};
    static APPEND: sql::PerEngine = sql::PerEngine::new(|pg| {
        format!(
            "INSERT INTO audit_log (at, actor, action, order_id, from_state, to_state, detail) \
             SELECT $2, $3, r.action, r.order_id, r.from_state, r.to_state, r.detail FROM {} ORDER BY r.n",
            sql::json_rows(
                pg,
                1,
                &[("action", Text), ("order_id", Int), ("from_state", Text), ("to_state", Text), ("detail", Text)]
            )
        )
    });
    if entries.is_empty() {
        return Ok(());
    }
    let rows = sql::rows_param(entries.iter().map(|e| {
        serde_json::json!({
            "action": e.action,
            "order_id": e.order_id,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "detail": e.detail,
        })
    }))?;
    sql::query(APPEND.text(conn)).bind(rows).bind(at).bind(actor).execute_pipelined(conn).await
}

fn entry(r: &Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        order_id: r.try_get("order_id")?,
        from_state: r.try_get("from_state")?,
        to_state: r.try_get("to_state")?,
        detail: r.try_get("detail")?,
    })
}

/// The trail of one order, oldest first.
pub async fn for_order(conn: &mut Connection, order_id: i64) -> Result<Vec<AuditEntry>> {
    let rows = sql::query(
        "SELECT id, at, actor, action, order_id, from_state, to_state, detail FROM audit_log \
         WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(entry).collect()
}

/// When a completed port passed each step of F1, from its order and its trail: what a slow port
/// spent its time on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Milestones {
    pub msisdn: String,
    pub created_at: Millis,
    /// The donor's credit information in (`awaiting_decision`).
    pub credit_info_at: Option<Millis>,
    /// The recipient's acceptance (`settling`).
    pub accepted_at: Option<Millis>,
    pub completed_at: Option<Millis>,
}

/// [`Milestones`] of every completed order, oldest first.
pub async fn milestones(conn: &mut Connection) -> Result<Vec<Milestones>> {
    let rows = sql::query(
        "SELECT o.msisdn, o.created_at, o.completed_at, \
                MIN(CASE WHEN a.to_state = 'awaiting_decision' THEN a.at END) AS credit_info_at, \
                MIN(CASE WHEN a.to_state = 'settling' THEN a.at END) AS accepted_at \
         FROM porting_orders o JOIN audit_log a ON a.order_id = o.id \
         WHERE o.state = 'completed' \
         GROUP BY o.id, o.msisdn, o.created_at, o.completed_at ORDER BY o.id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Milestones {
                msisdn: r.try_get("msisdn")?,
                created_at: r.try_get("created_at")?,
                credit_info_at: r.try_get("credit_info_at")?,
                accepted_at: r.try_get("accepted_at")?,
                completed_at: r.try_get("completed_at")?,
            })
        })
        .collect()
}
