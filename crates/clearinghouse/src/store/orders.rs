//! Porting orders, the donor's proof deposits, failed verifications and violations.

use numport_core::porting::{CreditInfo, OrderKind, OrderState, Party, Reason, ViolationKind};
use numport_core::{Millis, Money, Msisdn, OperatorName};
use numport_db::sql::{self, Connection, Row};

use super::parse_col;
use numport_db::{Result, StoreError};

/// A porting order as stored, with operator names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub id: i64,
    pub msisdn: Msisdn,
    pub kind: OrderKind,
    pub recipient_id: i64,
    pub recipient: OperatorName,
    pub donor_id: Option<i64>,
    pub donor: Option<OperatorName>,
    pub range_holder_id: Option<i64>,
    pub state: OrderState,
    pub reason: Option<Reason>,
    pub nonce: String,
    pub proof: String,
    pub expiry: Millis,
    pub deadline_at: Option<Millis>,
    pub credit: Option<CreditInfo>,
    pub compensation: Option<Money>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub completed_at: Option<Millis>,
}

impl OrderRecord {
    /// Whether `operator_id` is a party to this order (and so may see it).
    pub fn involves(&self, operator_id: i64) -> bool {
        self.recipient_id == operator_id || self.donor_id == Some(operator_id)
    }
}

const SELECT: &str = "SELECT o.id, o.msisdn, o.kind, o.recipient_id, r.name AS recipient_name, \
     o.donor_id, d.name AS donor_name, o.range_holder_id, o.state, o.reason, o.nonce, o.proof, \
     o.expiry, o.deadline_at, o.arrears, o.unbilled_usage, o.contract_remaining, o.deposit_held, \
     o.compensation, o.created_at, o.updated_at, o.completed_at \
     FROM porting_orders o JOIN operators r ON r.id = o.recipient_id \
     LEFT JOIN operators d ON d.id = o.donor_id";

fn from_row(r: &Row) -> Result<OrderRecord> {
    let reason: Option<String> = r.try_get("reason")?;
    let donor: Option<String> = r.try_get("donor_name")?;
    let arrears: Option<i64> = r.try_get("arrears")?;
    let credit = match arrears {
        Some(a) => Some(CreditInfo {
            arrears: Money(a),
            unbilled_usage: Money(r.try_get::<Option<i64>, _>("unbilled_usage")?.unwrap_or(0)),
            contract_remaining: Money(r.try_get::<Option<i64>, _>("contract_remaining")?.unwrap_or(0)),
            deposit_held: Money(r.try_get::<Option<i64>, _>("deposit_held")?.unwrap_or(0)),
        }),
        None => None,
    };
    Ok(OrderRecord {
        id: r.try_get("id")?,
        msisdn: parse_col("msisdn", r.try_get::<&str, _>("msisdn")?)?,
        kind: parse_col("order kind", r.try_get::<&str, _>("kind")?)?,
        recipient_id: r.try_get("recipient_id")?,
        recipient: parse_col("operator", r.try_get::<&str, _>("recipient_name")?)?,
        donor_id: r.try_get("donor_id")?,
        donor: donor.map(|d| parse_col("operator", &d)).transpose()?,
        range_holder_id: r.try_get("range_holder_id")?,
        state: parse_col("order state", r.try_get::<&str, _>("state")?)?,
        reason: reason.map(|s| parse_col("reason", &s)).transpose()?,
        nonce: r.try_get("nonce")?,
        proof: r.try_get("proof")?,
        expiry: r.try_get("expiry")?,
        deadline_at: r.try_get("deadline_at")?,
        credit,
        compensation: r.try_get::<Option<i64>, _>("compensation")?.map(Money),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        completed_at: r.try_get("completed_at")?,
    })
}

/// A new order as the clearinghouse decided it: possibly already rejected.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub msisdn: &'a Msisdn,
    pub kind: OrderKind,
    pub recipient_id: i64,
    pub donor_id: Option<i64>,
    pub range_holder_id: Option<i64>,
    pub state: OrderState,
    pub reason: Option<Reason>,
    pub nonce: &'a str,
    pub proof: &'a str,
    pub expiry: Millis,
    pub deadline_at: Option<Millis>,
    pub now: Millis,
}

pub async fn insert(conn: &mut Connection, o: &NewOrder<'_>) -> Result<i64> {
    insert_deferred(conn, o).await?.id(conn).await
}

/// [`insert`] sent ahead: on PostgreSQL in a transaction the id comes with the next
/// statement's answer, so the order and the statements after it that need no id (the
/// rendezvous row of [`await_deposit`]) share a round trip.
pub async fn insert_deferred(conn: &mut Connection, o: &NewOrder<'_>) -> Result<InsertedOrder> {
    let sent = sql::query(
        "INSERT INTO porting_orders (msisdn, kind, recipient_id, donor_id, range_holder_id, state, \
         reason, active, nonce, proof, expiry, deadline_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING id",
    )
    .bind(o.msisdn.as_str())
    .bind(o.kind.as_str())
    .bind(o.recipient_id)
    .bind(o.donor_id)
    .bind(o.range_holder_id)
    .bind(o.state.as_str())
    .bind(o.reason.map(|r| r.as_str()))
    .bind(if o.state.is_terminal() { 0i64 } else { 1i64 })
    .bind(o.nonce)
    .bind(o.proof)
    .bind(o.expiry)
    .bind(o.deadline_at)
    .bind(o.now)
    .fetch_deferred(conn)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(InsertedOrder(sent))
}

/// An order sent by [`insert_deferred`].
#[must_use = "the insert's outcome is known only once its id is read"]
pub struct InsertedOrder(sql::Deferred);

impl InsertedOrder {
    /// The new order's id; [`StoreError::Duplicate`] if the number has an open order already
    /// (or the nonce was used).
    pub async fn id(self, conn: &mut Connection) -> Result<i64> {
        let rows = self.0.rows(conn).await.map_err(StoreError::from_insert)?;
        rows.first().ok_or(StoreError::NoRow)?.try_get(0)
    }
}

pub async fn get(conn: &mut Connection, id: i64) -> Result<Option<OrderRecord>> {
    let row = sql::query(&format!("{SELECT} WHERE o.id = $1")).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// Orders where `operator_id` is recipient or donor, newest first, ids below `before` if given.
pub async fn list_for_operator(
    conn: &mut Connection,
    operator_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<OrderRecord>> {
    let rows = sql::query(&format!(
        "{SELECT} WHERE (o.recipient_id = $1 OR o.donor_id = $1) AND o.id < $2 \
         ORDER BY o.id DESC LIMIT $3"
    ))
    .bind(operator_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Everything the clearinghouse checks about a number before opening or verifying an order,
/// in one statement (each round trip to the database costs more than the lookups themselves).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberContext {
    /// The operator holding the longest range prefix of the number.
    pub range_holder: Option<i64>,
    /// The operator serving it, if it is ported.
    pub ported_to: Option<i64>,
    pub open_order: bool,
    /// Failed verifications of this number charged to the requester since the `since` given.
    pub failures_here: i64,
    /// Failed verifications charged to the requester since the `since` given, of any number.
    pub failures_total: i64,
    pub last_completed_at: Option<Millis>,
    pub nonce_used: bool,
    /// The donor's deposit for this nonce, if made.
    pub deposit: Option<Deposit>,
}

impl NumberContext {
    /// Who serves the number now: the operator it was ported to, else its range holder.
    pub fn serving(&self) -> Option<i64> {
        self.ported_to.or(self.range_holder)
    }
}

/// The context of `msisdn` and `nonce` for a request by `requester` (whose failures since
/// `failures_since` are counted).
pub async fn number_context(
    conn: &mut Connection,
    msisdn: &Msisdn,
    nonce: &str,
    requester: i64,
    failures_since: Millis,
) -> Result<NumberContext> {
    let prefixes: Vec<&str> = msisdn.prefixes().collect();
    let in_list: Vec<String> = (0..prefixes.len()).map(|i| format!("${}", i + 5)).collect();
    let sql = format!(
        "SELECT \
           (SELECT operator_id FROM number_ranges WHERE prefix IN ({list}) ORDER BY LENGTH(prefix) DESC LIMIT 1) AS holder, \
           (SELECT operator_id FROM ported_numbers WHERE msisdn = $1) AS ported_to, \
           (SELECT COUNT(*) FROM porting_orders WHERE msisdn = $1 AND active = 1) AS open_orders, \
           (SELECT COUNT(*) FROM verification_failures WHERE operator_id = $4 AND msisdn = $1 AND at >= $3) AS failures_here, \
           (SELECT COUNT(*) FROM verification_failures WHERE operator_id = $4 AND at >= $3) AS failures_total, \
           (SELECT MAX(completed_at) FROM porting_orders WHERE msisdn = $1 AND state = 'completed') AS last_completed, \
           (SELECT COUNT(*) FROM porting_orders WHERE msisdn = $1 AND nonce = $2) AS nonce_uses, \
           (SELECT donor_id FROM proof_deposits WHERE msisdn = $1 AND nonce = $2 AND proof <> '') AS deposit_donor, \
           (SELECT proof FROM proof_deposits WHERE msisdn = $1 AND nonce = $2 AND proof <> '') AS deposit_proof",
        list = in_list.join(", ")
    );
    let mut q = sql::query(&sql).bind(msisdn.as_str()).bind(nonce).bind(failures_since).bind(requester);
    for p in &prefixes {
        q = q.bind(*p);
    }
    let r = q.fetch_one(conn).await?;
    let deposit_donor: Option<i64> = r.try_get("deposit_donor")?;
    let deposit_proof: Option<String> = r.try_get("deposit_proof")?;
    Ok(NumberContext {
        range_holder: r.try_get("holder")?,
        ported_to: r.try_get("ported_to")?,
        open_order: r.try_get::<i64, _>("open_orders")? > 0,
        failures_here: r.try_get("failures_here")?,
        failures_total: r.try_get("failures_total")?,
        last_completed_at: r.try_get("last_completed")?,
        nonce_used: r.try_get::<i64, _>("nonce_uses")? > 0,
        deposit: deposit_donor.zip(deposit_proof).map(|(donor_id, proof)| Deposit { donor_id, proof }),
    })
}

/// The open order for a number, if any.
pub async fn open_order_for(conn: &mut Connection, msisdn: &Msisdn) -> Result<Option<i64>> {
    sql::query_scalar("SELECT id FROM porting_orders WHERE msisdn = $1 AND active = 1")
        .bind(msisdn.as_str())
        .fetch_optional(conn)
        .await
}

/// The compare-and-set of [`transition`].
const TRANSITION: &str = "UPDATE porting_orders SET state = $1, reason = $2, deadline_at = $3, active = $4, \
     updated_at = $5, completed_at = CASE WHEN $1 = 'completed' THEN $5 ELSE completed_at END, \
     arrears = COALESCE($8, arrears), unbilled_usage = COALESCE($9, unbilled_usage), \
     contract_remaining = COALESCE($10, contract_remaining), deposit_held = COALESCE($11, deposit_held), \
     compensation = COALESCE($12, compensation) \
     WHERE id = $6 AND state = $7";

/// [`TRANSITION`] on PostgreSQL, where it is pipelined: no row changed is an error the server
/// raises (migration 0007), so the transaction aborts.
/// Its audit entry is written by the same statement, from the row it changed: one statement
/// instead of two, and no change without its entry.
static PG_TRANSITION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH changed AS ({TRANSITION} RETURNING id), \
         audited AS (INSERT INTO audit_log (at, actor, action, order_id, from_state, to_state, detail) \
                     SELECT $5, $13, 'state_changed', id, $7, $1, $14 FROM changed) \
         SELECT numport_expect_changed((SELECT COUNT(*) FROM changed), 'porting order ' || $6 || ' changed meanwhile')"
    )
});

/// Move an order from `from` to `to` if it is still in `from` (compare-and-set), recording
/// credit information with it when given, and append the change to the audit trail
/// (`state_changed`, by `actor`, with `detail`). When another writer got there first it fails with
/// [`StoreError::is_state_changed`], so a late duplicate event changes nothing: at once on
/// SQLite; on PostgreSQL, where it is pipelined, with the next statement or the COMMIT, the
/// transaction then aborted by the server, so nothing written after it commits.
#[allow(clippy::too_many_arguments)]
pub async fn transition(
    conn: &mut Connection,
    id: i64,
    from: OrderState,
    to: OrderState,
    reason: Option<Reason>,
    deadline_at: Option<Millis>,
    credit: Option<&CreditInfo>,
    now: Millis,
    actor: &str,
    detail: &str,
) -> Result<()> {
    let pg = conn.is_postgres();
    let q = sql::query(if pg { &PG_TRANSITION } else { TRANSITION })
        .bind(to.as_str())
        .bind(reason.map(|r| r.as_str()))
        .bind(deadline_at)
        .bind(if to.is_terminal() { 0i64 } else { 1i64 })
        .bind(now)
        .bind(id)
        .bind(from.as_str())
        .bind(credit.map(|c| c.arrears.0))
        .bind(credit.map(|c| c.unbilled_usage.0))
        .bind(credit.map(|c| c.contract_remaining.0))
        .bind(credit.map(|c| c.deposit_held.0))
        .bind(credit.map(|c| c.compensation().0));
    if pg {
        return q.bind(actor).bind(detail).execute_pipelined(conn).await;
    }
    if q.execute(conn).await?.rows_affected() != 1 {
        return Err(StoreError::StateChanged("porting order"));
    }
    super::audit::append(conn, now, actor, "state_changed", Some(id), Some(from.as_str()), Some(to.as_str()), detail)
        .await
}

/// Accepted orders waiting for the settler, in the order they were accepted, at most `limit`
/// (migration `settle_in_batches`: the orders in `settling` are the settler's queue).
pub async fn settling(conn: &mut Connection, limit: i64) -> Result<Vec<OrderRecord>> {
    static SETTLING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{SELECT} WHERE o.state = 'settling' ORDER BY o.updated_at, o.id LIMIT $1")
    });
    let rows = sql::query(&SETTLING).bind(limit).fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

/// Take orders out of `settling` to where the settler sent them (`completed`, or `rejected`
/// with its reason), in one statement sent without waiting. The orders must have been read in
/// `settling` under the lock that serializes settlers (`routing::lock_head`), so none has left
/// it since; one that had is left alone.
pub async fn conclude_settling(
    conn: &mut Connection,
    outcomes: &[(i64, OrderState, Option<Reason>)],
    now: Millis,
) -> Result<()> {
    use sql::Kind::{Int, Text};
    static CONCLUDE: sql::PerEngine = sql::PerEngine::new(|pg| {
        format!(
            "UPDATE porting_orders SET state = r.state, reason = r.reason, active = 0, deadline_at = NULL, \
             updated_at = $2, completed_at = CASE WHEN r.state = 'completed' THEN $2 END FROM {} \
             WHERE porting_orders.id = r.id AND porting_orders.state = 'settling'",
            sql::json_rows(pg, 1, &[("id", Int), ("state", Text), ("reason", Text)])
        )
    });
    let rows = sql::rows_param(outcomes.iter().map(|(id, state, reason)| {
        serde_json::json!({ "id": id, "state": state.as_str(), "reason": reason.map(|r| r.as_str()) })
    }))?;
    sql::query(CONCLUDE.text(conn)).bind(rows).bind(now).execute_pipelined(conn).await
}

/// Open orders whose step deadline has passed, oldest deadline first.
pub async fn overdue(conn: &mut Connection, now: Millis, limit: i64) -> Result<Vec<OrderRecord>> {
    let rows =
        sql::query(&format!("{SELECT} WHERE o.active = 1 AND o.deadline_at <= $1 ORDER BY o.deadline_at LIMIT $2"))
            .bind(now)
            .bind(limit)
            .fetch_all(conn)
            .await?;
    rows.iter().map(from_row).collect()
}

/// Count of open orders, for metrics.
pub async fn count_open(conn: &mut Connection) -> Result<i64> {
    sql::query_scalar("SELECT COUNT(*) FROM porting_orders WHERE active = 1").fetch_one(conn).await
}

/// Count of orders per state.
pub async fn count_by_state(conn: &mut Connection) -> Result<Vec<(String, i64)>> {
    let rows = sql::query("SELECT state, COUNT(*) AS n FROM porting_orders GROUP BY state ORDER BY state")
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok((r.try_get("state")?, r.try_get("n")?))).collect()
}

/// The donor's deposit of the expected proof for `(msisdn, nonce)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deposit {
    pub donor_id: i64,
    pub proof: String,
}

/// The rendezvous of an order and its deposit, which arrive independently (the terminal sends
/// both at once) and on PostgreSQL may be in flight together, each unable to see the other.
/// Both write the one `proof_deposits` row of `(msisdn, nonce)`: the order a placeholder with
/// an empty proof, the deposit its proof. Whoever comes second waits on the row until the
/// first commits, so the second always sees the first.
///
/// The order's side: claim the row for a waiting order. `Some(deposit)` if the deposit was
/// there first (committed), `None` if the placeholder now waits for it.
pub async fn await_deposit(
    conn: &mut Connection,
    msisdn: &Msisdn,
    nonce: &str,
    donor_id: i64,
    now: Millis,
) -> Result<Option<Deposit>> {
    let placed: Option<i64> = sql::query_scalar(
        "INSERT INTO proof_deposits (msisdn, nonce, donor_id, proof, created_at) VALUES ($1, $2, $3, '', $4) \
         ON CONFLICT (msisdn, nonce) DO NOTHING RETURNING donor_id",
    )
    .bind(msisdn.as_str())
    .bind(nonce)
    .bind(donor_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if placed.is_some() {
        return Ok(None);
    }
    deposit(conn, msisdn, nonce).await
}

/// The deposit's side: record the proof, filling an order's placeholder if one is there.
/// [`DepositWrite::written`] is false if a proof was deposited for this nonce before. Sent
/// ahead: on PostgreSQL in a transaction its answer comes with the next statement's, which is
/// [`awaiting_deposit`]: that runs after this has written (or waited on) the rendezvous row.
pub async fn insert_deposit(
    conn: &mut Connection,
    msisdn: &Msisdn,
    nonce: &str,
    donor_id: i64,
    proof: &str,
    now: Millis,
) -> Result<DepositWrite> {
    let sent = sql::query(
        "INSERT INTO proof_deposits (msisdn, nonce, donor_id, proof, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (msisdn, nonce) DO UPDATE SET proof = excluded.proof, donor_id = excluded.donor_id, \
         created_at = excluded.created_at WHERE proof_deposits.proof = '' RETURNING donor_id",
    )
    .bind(msisdn.as_str())
    .bind(nonce)
    .bind(donor_id)
    .bind(proof)
    .bind(now)
    .fetch_deferred(conn)
    .await?;
    Ok(DepositWrite(sent))
}

/// A deposit sent by [`insert_deposit`].
#[must_use = "whether the proof was written is known only once read"]
pub struct DepositWrite(sql::Deferred);

impl DepositWrite {
    /// True if this wrote the proof; false if one was deposited for the nonce before.
    pub async fn written(self, conn: &mut Connection) -> Result<bool> {
        self.0.returned_a_row(conn).await
    }
}

/// The proof deposited for `(msisdn, nonce)`, if any (an order's placeholder is not one).
pub async fn deposit(conn: &mut Connection, msisdn: &Msisdn, nonce: &str) -> Result<Option<Deposit>> {
    let row = sql::query("SELECT donor_id, proof FROM proof_deposits WHERE msisdn = $1 AND nonce = $2 AND proof <> ''")
        .bind(msisdn.as_str())
        .bind(nonce)
        .fetch_optional(conn)
        .await?;
    row.map(|r| Ok(Deposit { donor_id: r.try_get("donor_id")?, proof: r.try_get("proof")? })).transpose()
}

/// The order waiting for this deposit, if one is.
pub async fn awaiting_deposit(conn: &mut Connection, msisdn: &Msisdn, nonce: &str) -> Result<Option<OrderRecord>> {
    let row = sql::query(&format!("{SELECT} WHERE o.msisdn = $1 AND o.nonce = $2 AND o.state = 'awaiting_deposit'"))
        .bind(msisdn.as_str())
        .bind(nonce)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// A failed verification of `msisdn`: `requester`'s proof disagreed with `donor`'s deposit;
/// `charged` is the one held responsible.
pub async fn record_failure(
    conn: &mut Connection,
    msisdn: &Msisdn,
    requester: i64,
    donor: i64,
    charged: i64,
    now: Millis,
) -> Result<()> {
    sql::query(
        "INSERT INTO verification_failures (msisdn, requester_id, donor_id, operator_id, at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(msisdn.as_str())
    .bind(requester)
    .bind(donor)
    .bind(charged)
    .bind(now)
    .execute_pipelined(conn)
    .await
}

/// Whether `donor`'s deposits for `msisdn` disagreed since `since` with the proof of a
/// requester other than `requester`.
pub async fn disagreed_with_another(
    conn: &mut Connection,
    msisdn: &Msisdn,
    donor: i64,
    requester: i64,
    since: Millis,
) -> Result<bool> {
    let n: i64 = sql::query_scalar(
        "SELECT COUNT(*) FROM verification_failures \
         WHERE msisdn = $1 AND donor_id = $2 AND requester_id <> $3 AND at >= $4",
    )
    .bind(msisdn.as_str())
    .bind(donor)
    .bind(requester)
    .bind(since)
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}

/// Delete failed verifications recorded before `before`, at most `limit`; returns how many.
pub async fn expire_failures(conn: &mut Connection, before: Millis, limit: i64) -> Result<u64> {
    let done = sql::query(
        "DELETE FROM verification_failures WHERE id IN \
         (SELECT id FROM verification_failures WHERE at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Delete deposits (and orders' rendezvous rows) made before `before` that no order awaits,
/// at most `limit`; returns how many. A request that comes later for such a nonce waits for a
/// deposit again, so nothing is lost but a row.
pub async fn expire_deposits(conn: &mut Connection, before: Millis, limit: i64) -> Result<u64> {
    let done = sql::query(
        "DELETE FROM proof_deposits WHERE (msisdn, nonce) IN \
         (SELECT d.msisdn, d.nonce FROM proof_deposits d WHERE d.created_at < $1 AND NOT EXISTS \
            (SELECT 1 FROM porting_orders o WHERE o.msisdn = d.msisdn AND o.nonce = d.nonce \
             AND o.state = 'awaiting_deposit') \
          LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A violation: a missed deadline, charged to the operator that should have answered, or an
/// abuse of verification (see [`ViolationKind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub id: i64,
    pub operator: OperatorName,
    pub kind: ViolationKind,
    pub party: Party,
    pub order_id: i64,
    pub step: OrderState,
    pub deadline_at: Millis,
    pub recorded_at: Millis,
    pub lateness_ms: Millis,
}

/// Record a violation of `kind` by `operator_id` on `order_id` in `step`; `deadline_at` is the
/// deadline missed, or the time of the offence for the other kinds.
pub async fn insert_violation(
    conn: &mut Connection,
    operator_id: i64,
    kind: ViolationKind,
    order_id: i64,
    step: OrderState,
    deadline_at: Millis,
    now: Millis,
) -> Result<()> {
    sql::query(
        "INSERT INTO violations (operator_id, kind, order_id, step, deadline_at, recorded_at, lateness_ms) \
         VALUES ($1, $7, $2, $3, $4, $5, $6)",
    )
    .bind(operator_id)
    .bind(order_id)
    .bind(step.as_str())
    .bind(deadline_at)
    .bind(now)
    .bind(now.saturating_sub(deadline_at))
    .bind(kind.as_str())
    .execute_pipelined(conn)
    .await
}

/// Violations, all or those of one operator (`operator_id`), newest first.
pub async fn violations(conn: &mut Connection, operator_id: Option<i64>, limit: i64) -> Result<Vec<Violation>> {
    let rows = sql::query(
        "SELECT v.id, o.name, v.kind, v.order_id, v.step, v.deadline_at, v.recorded_at, v.lateness_ms \
         FROM violations v JOIN operators o ON o.id = v.operator_id \
         WHERE ($1 < 0 OR v.operator_id = $1) ORDER BY v.id DESC LIMIT $2",
    )
    .bind(operator_id.unwrap_or(-1))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let step: OrderState = parse_col("step", r.try_get::<&str, _>("step")?)?;
            let kind: ViolationKind = parse_col("violation kind", r.try_get::<&str, _>("kind")?)?;
            let party = match kind {
                ViolationKind::DeadlineMissed => step.waiting_on().unwrap_or(Party::Donor),
                ViolationKind::TooManyAttempts => Party::Recipient,
                ViolationKind::DepositMismatch => Party::Donor,
            };
            Ok(Violation {
                id: r.try_get("id")?,
                operator: parse_col("operator", r.try_get::<&str, _>("name")?)?,
                kind,
                party,
                order_id: r.try_get("order_id")?,
                step,
                deadline_at: r.try_get("deadline_at")?,
                recorded_at: r.try_get("recorded_at")?,
                lateness_ms: r.try_get("lateness_ms")?,
            })
        })
        .collect()
}
