//! The settlement ledger: accounts, balanced journals and their postings.
//!
//! **Invariant:** money only moves through [`post`]. Every journal balances (checked by
//! [`JournalEntry`] before it gets here), so the sum of all balances is zero at all times; money
//! paid into the system comes from the `external:funding` account, which goes negative.
//! Each journal has a unique idempotency key: posting the same business event twice is a no-op.
//! Operator accounts may not go below zero.

use numport_core::{JournalEntry, Millis, Money};
use numport_db::sql::{self, Connection};

use numport_db::{Result, StoreError};

/// The account that money entering the clearinghouse is drawn from (the banks, outside).
pub const FUNDING_ACCOUNT: &str = "external:funding";

#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("account {account} would go below zero")]
    InsufficientFunds { account: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// Written now, as journal `id`.
    New(i64),
    /// This idempotency key was posted before, as journal `id`; nothing was written.
    Already(i64),
}

pub async fn open_account(conn: &mut Connection, name: &str, operator_id: Option<i64>) -> Result<i64> {
    let id: i64 =
        sql::query_scalar("INSERT INTO accounts (name, operator_id, balance) VALUES ($1, $2, 0) RETURNING id")
            .bind(name)
            .bind(operator_id)
            .fetch_one(conn)
            .await
            .map_err(StoreError::from_insert)?;
    Ok(id)
}

/// The funding account's id, created on first use.
pub async fn funding_account(conn: &mut Connection) -> Result<i64> {
    sql::query(
        "INSERT INTO accounts (name, operator_id, balance) VALUES ($1, NULL, 0) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(FUNDING_ACCOUNT)
    .execute(&mut *conn)
    .await?;
    let id: i64 =
        sql::query_scalar("SELECT id FROM accounts WHERE name = $1").bind(FUNDING_ACCOUNT).fetch_one(conn).await?;
    Ok(id)
}

/// An operator's settlement account: `(account id, balance)`.
pub async fn operator_account(conn: &mut Connection, operator_id: i64) -> Result<(i64, Money)> {
    operator_account_deferred(conn, operator_id).await?.get(conn).await
}

/// [`operator_account`] sent ahead: on PostgreSQL in a transaction its answer comes with the
/// next statement's, so a read the caller needs anyway (the order being decided) carries it.
pub async fn operator_account_deferred(conn: &mut Connection, operator_id: i64) -> Result<AccountRead> {
    let sent = sql::query("SELECT id, balance FROM accounts WHERE operator_id = $1")
        .bind(operator_id)
        .fetch_deferred(conn)
        .await?;
    Ok(AccountRead(sent))
}

/// An operator's settlement account as read by [`operator_account_deferred`].
pub struct AccountRead(sql::Deferred);

impl AccountRead {
    /// `(account id, balance)`, reading the answers owed on `conn` if they have not come.
    pub async fn get(self, conn: &mut Connection) -> Result<(i64, Money)> {
        let rows = self.0.rows(conn).await?;
        let row = rows.first().ok_or(StoreError::NotFound("settlement account"))?;
        Ok((row.try_get("id")?, Money(row.try_get("balance")?)))
    }
}

/// Write one balanced journal entry under `idempotency_key`.
///
/// Every call first takes the `ledger_head` row, so money movements are serialized and balance
/// rows never have two writers waiting on each other (see migration 0002). An overdraft undoes
/// what this call wrote before returning [`PostError::InsufficientFunds`], so the caller's
/// transaction stays usable without a savepoint. Those rows stay locked until the caller's
/// COMMIT, so call this late in a transaction.
///
/// Two implementations, one per engine, for a measured reason: on PostgreSQL the statements
/// below would hold `ledger_head`, which every other posting and settlement waits for, across
/// a round trip to the client per statement (five for a two-line entry); [`post_by_function`] holds it across one (plus the COMMIT),
/// which `numport bench porting --db postgres` shows in ports/s. On SQLite a statement is a
/// library call, not a round trip, and SQLite has no PL/pgSQL: [`post_by_statements`]. The
/// test `ledger_posting` runs the same postings (new, repeated keys, overdrafts, unbalanced
/// entries) through both on PostgreSQL and through the statements on SQLite, and requires the
/// same outcomes, journals, postings and balances.
pub async fn post(
    conn: &mut Connection,
    idempotency_key: &str,
    kind: &str,
    order_id: Option<i64>,
    entry: &JournalEntry<i64>,
    now: Millis,
) -> Result<Posted, PostError> {
    if conn.is_postgres() {
        post_by_function(conn, idempotency_key, kind, order_id, entry, now).await
    } else {
        post_by_statements(conn, idempotency_key, kind, order_id, entry, now).await
    }
}

/// [`post`] as statements from here, on either engine: what [`post`] runs on SQLite.
pub async fn post_by_statements(
    conn: &mut Connection,
    idempotency_key: &str,
    kind: &str,
    order_id: Option<i64>,
    entry: &JournalEntry<i64>,
    now: Millis,
) -> Result<Posted, PostError> {
    let lines = sorted_lines(entry);
    sql::query("UPDATE ledger_head SET journals = journals + 1 WHERE id = 1").execute(&mut *conn).await?;
    let inserted: Option<i64> = sql::query_scalar(
        "INSERT INTO journals (idempotency_key, kind, order_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(idempotency_key)
    .bind(kind)
    .bind(order_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(journal) = inserted else {
        let id: i64 = sql::query_scalar("SELECT id FROM journals WHERE idempotency_key = $1")
            .bind(idempotency_key)
            .fetch_one(&mut *conn)
            .await?;
        return Ok(Posted::Already(id));
    };
    for (i, (account, amount)) in lines.iter().enumerate() {
        let r = sql::query(
            "UPDATE accounts SET balance = balance + $1 \
             WHERE id = $2 AND (operator_id IS NULL OR balance + $1 >= 0)",
        )
        .bind(amount.0)
        .bind(*account)
        .execute(&mut *conn)
        .await?;
        if r.rows_affected() != 1 {
            for (undo_account, undo_amount) in &lines[..i] {
                sql::query("UPDATE accounts SET balance = balance - $1 WHERE id = $2")
                    .bind(undo_amount.0)
                    .bind(*undo_account)
                    .execute(&mut *conn)
                    .await?;
            }
            sql::query("DELETE FROM journals WHERE id = $1").bind(journal).execute(&mut *conn).await?;
            return Err(PostError::InsufficientFunds { account: *account });
        }
    }
    let values: Vec<String> = (0..lines.len()).map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3)).collect();
    let sql = format!("INSERT INTO postings (journal_id, account_id, amount) VALUES {}", values.join(", "));
    let mut q = sql::query(&sql).bind(journal);
    for (account, amount) in &lines {
        q = q.bind(*account).bind(amount.0);
    }
    q.execute(&mut *conn).await?;
    Ok(Posted::New(journal))
}

/// A journal entry to post with others in one [`post_batch`].
#[derive(Debug, Clone)]
pub struct NewJournal<'a> {
    pub idempotency_key: String,
    pub kind: &'a str,
    pub order_id: Option<i64>,
    pub entry: &'a JournalEntry<i64>,
}

/// The ledger held for one [`post_batch`]: `ledger_head` taken, as every posting takes it
/// first, so no other posting runs until COMMIT, and every account's balance read. Sent ahead:
/// the answers come with the next statement's (the settler's read of the orders it settles),
/// so a batch's reads take one round trip. Every account is read because which ones the batch
/// touches is not known yet; there is one per operator and one for funding. Take it after
/// `routing::lock_head`, as the settler does: two transactions taking both heads in opposite
/// orders deadlock.
pub async fn hold(conn: &mut Connection) -> Result<HeldLedger> {
    sql::query("UPDATE ledger_head SET journals = journals WHERE id = 1").execute_pipelined(&mut *conn).await?;
    let balances =
        sql::query("SELECT id, CASE WHEN operator_id IS NULL THEN 1 ELSE 0 END AS external, balance FROM accounts")
            .fetch_deferred(conn)
            .await?;
    Ok(HeldLedger(balances))
}

/// See [`hold`].
#[must_use = "the ledger is held for a post_batch"]
pub struct HeldLedger(sql::Deferred);

/// Post `journals` in one go, in their order, on the ledger [`hold`] took: each one that leaves
/// no operator account below zero is written, each other is refused with
/// [`PostError::InsufficientFunds`] and writes nothing. The answer has one outcome per journal.
///
/// Which journals fit is worked out here from the balances `hold` read, which stay true until
/// COMMIT, and they are written in four statements whatever their number (a settlement
/// batch's, where one journal at a time cost ~12 statements each), sent without waiting: on
/// PostgreSQL an error in them (an idempotency key posted before, an overdraft the schema
/// refuses) fails the COMMIT. A batch is for new business events only (the settler's orders,
/// which leave `settling` in the same transaction).
pub async fn post_batch(
    conn: &mut Connection,
    held: HeldLedger,
    journals: &[NewJournal<'_>],
    now: Millis,
) -> Result<Vec<std::result::Result<(), PostError>>> {
    use sql::Kind::{Int, Text};
    static JOURNALS: sql::PerEngine = sql::PerEngine::new(|pg| {
        format!(
            "INSERT INTO journals (idempotency_key, kind, order_id, created_at) \
             SELECT r.idempotency_key, r.kind, r.order_id, $2 FROM {} ORDER BY r.n",
            sql::json_rows(pg, 1, &[("idempotency_key", Text), ("kind", Text), ("order_id", Int)])
        )
    });
    // The journals' ids by their keys, written just before: no round trip to learn them. One
    // index lookup a line (a join lets the planner scan every journal).
    static POSTINGS: sql::PerEngine = sql::PerEngine::new(|pg| {
        format!(
            "INSERT INTO postings (journal_id, account_id, amount) \
             SELECT (SELECT j.id FROM journals j WHERE j.idempotency_key = r.idempotency_key), r.account_id, r.amount \
             FROM {} ORDER BY r.n",
            sql::json_rows(pg, 1, &[("idempotency_key", Text), ("account_id", Int), ("amount", Int)])
        )
    });
    // Worked out under `ledger_head`, so exact; an operator account below zero, which cannot
    // happen here, the schema refuses anyway (migration `settle_in_batches`).
    static BALANCE_CHANGES: sql::PerEngine = sql::PerEngine::new(|pg| {
        format!(
            "UPDATE accounts SET balance = accounts.balance + r.delta FROM {} WHERE accounts.id = r.account",
            sql::json_rows(pg, 1, &[("account", Int), ("delta", Int)])
        )
    });
    let rows = held.0.rows(conn).await?;
    if journals.is_empty() {
        return Ok(Vec::new());
    }
    // Balance and whether it may go negative, by account, as read.
    let mut balances = std::collections::HashMap::with_capacity(rows.len());
    for r in &rows {
        balances.insert(
            r.try_get::<i64, _>("id")?,
            (r.try_get::<i64, _>("balance")?, r.try_get::<i64, _>("external")? == 1),
        );
    }
    // What the journals posted so far change, by account.
    let mut deltas: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
    let mut outcomes = Vec::with_capacity(journals.len());
    for j in journals {
        let mut refused = None;
        for (account, amount) in sorted_lines(j.entry) {
            let Some((balance, external)) = balances.get(&account) else {
                return Err(StoreError::NotFound("ledger account"));
            };
            let after = balance.saturating_add(deltas.get(&account).copied().unwrap_or(0)).saturating_add(amount.0);
            if !external && after < 0 {
                refused = Some(PostError::InsufficientFunds { account });
                break;
            }
        }
        if refused.is_none() {
            for (account, amount) in j.entry.lines() {
                *deltas.entry(*account).or_default() += amount.0;
            }
        }
        outcomes.push(refused.map_or(Ok(()), Err));
    }
    let posted: Vec<&NewJournal<'_>> =
        journals.iter().zip(&outcomes).filter(|(_, outcome)| outcome.is_ok()).map(|(j, _)| j).collect();
    if posted.is_empty() {
        return Ok(outcomes);
    }
    let listed =
        sql::rows_param(posted.iter().map(
            |j| serde_json::json!({ "idempotency_key": j.idempotency_key, "kind": j.kind, "order_id": j.order_id }),
        ))?;
    sql::query(JOURNALS.text(conn)).bind(listed).bind(now).execute_pipelined(&mut *conn).await?;
    let postings = posted.iter().flat_map(|j| {
        sorted_lines(j.entry).into_iter().map(|(account, amount)| {
            serde_json::json!({ "idempotency_key": j.idempotency_key, "account_id": account, "amount": amount.0 })
        })
    });
    sql::query(POSTINGS.text(conn)).bind(sql::rows_param(postings)?).execute_pipelined(&mut *conn).await?;
    let changes = deltas.iter().filter(|(_, delta)| **delta != 0);
    let listed = sql::rows_param(changes.map(|(a, d)| serde_json::json!({ "account": a, "delta": d })))?;
    sql::query(BALANCE_CHANGES.text(conn)).bind(listed).execute_pipelined(conn).await?;
    Ok(outcomes)
}

/// [`post`] as one call to `numport_post_journal` (PostgreSQL migration 0004, the same
/// statements in PL/pgSQL): what [`post`] runs on PostgreSQL.
pub async fn post_by_function(
    conn: &mut Connection,
    idempotency_key: &str,
    kind: &str,
    order_id: Option<i64>,
    entry: &JournalEntry<i64>,
    now: Millis,
) -> Result<Posted, PostError> {
    let lines_json = lines_as_json(&sorted_lines(entry))?;
    let row = sql::query("SELECT post_outcome, post_ref FROM numport_post_journal($1, $2, $3, $4, $5)")
        .bind(idempotency_key)
        .bind(kind)
        .bind(order_id)
        .bind(now)
        .bind(lines_json)
        .fetch_one(conn)
        .await?;
    let reference: i64 = row.try_get("post_ref")?;
    match row.try_get::<&str, _>("post_outcome")? {
        "new" => Ok(Posted::New(reference)),
        "already" => Ok(Posted::Already(reference)),
        "insufficient_funds" => Err(PostError::InsufficientFunds { account: reference }),
        other => Err(StoreError::Corrupt(format!("numport_post_journal answered {other:?}")).into()),
    }
}

/// An entry's lines in account order: the order every poster locks the accounts in.
fn sorted_lines(entry: &JournalEntry<i64>) -> Vec<(i64, Money)> {
    let mut lines = entry.lines().to_vec();
    lines.sort_by_key(|(account, _)| *account);
    lines
}

fn lines_as_json(sorted: &[(i64, Money)]) -> Result<String> {
    serde_json::to_string(&sorted.iter().map(|(a, m)| [*a, m.0]).collect::<Vec<_>>())
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// One line of an account statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLine {
    pub journal_id: i64,
    pub kind: String,
    pub order_id: Option<i64>,
    pub amount: Money,
    pub at: Millis,
}

/// The latest `limit` postings to an account, newest first.
pub async fn statement(conn: &mut Connection, account_id: i64, limit: i64) -> Result<Vec<StatementLine>> {
    let rows = sql::query(
        "SELECT j.id AS journal_id, j.kind, j.order_id, p.amount, j.created_at \
         FROM postings p JOIN journals j ON j.id = p.journal_id \
         WHERE p.account_id = $1 ORDER BY p.id DESC LIMIT $2",
    )
    .bind(account_id)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StatementLine {
                journal_id: r.try_get("journal_id")?,
                kind: r.try_get("kind")?,
                order_id: r.try_get("order_id")?,
                amount: Money(r.try_get("amount")?),
                at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// The ledger's health: the sum of balances (must be 0), the sum of postings (must be 0), and
/// the accounts whose cached balance differs from the sum of their postings (must be none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerCheck {
    pub balance_sum: i64,
    pub posting_sum: i64,
    pub mismatched_accounts: Vec<i64>,
}

impl LedgerCheck {
    pub fn is_sound(&self) -> bool {
        self.balance_sum == 0 && self.posting_sum == 0 && self.mismatched_accounts.is_empty()
    }
}

pub async fn check(conn: &mut Connection) -> Result<LedgerCheck> {
    let balance_sum: i64 = sql::query_scalar("SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM accounts")
        .fetch_one(&mut *conn)
        .await?;
    let posting_sum: i64 = sql::query_scalar("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM postings")
        .fetch_one(&mut *conn)
        .await?;
    let mismatched_accounts: Vec<i64> = sql::query_scalar(
        "SELECT a.id FROM accounts a \
         WHERE a.balance <> (SELECT CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM postings p WHERE p.account_id = a.id)",
    )
    .fetch_all(conn)
    .await?;
    Ok(LedgerCheck { balance_sum, posting_sum, mismatched_accounts })
}

/// Balances of every account by name, for reports and tests.
pub async fn balances(conn: &mut Connection) -> Result<Vec<(String, Money)>> {
    let rows = sql::query("SELECT name, balance FROM accounts ORDER BY name").fetch_all(conn).await?;
    rows.iter().map(|r| Ok((r.try_get("name")?, Money(r.try_get("balance")?)))).collect()
}
