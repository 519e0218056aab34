//! The OCS's tables and every statement on them, through `numport-db` (SQLite or PostgreSQL,
//! one code path: `$n` placeholders, `BIGINT`/`TEXT` columns; migrations of its own in
//! `migrations/{sqlite,postgres}`).
//!
//! Functions take the caller's `&mut Connection` (a transaction): [`crate::Ocs`] owns the
//! transactions. Accounts are serialised in memory ([`crate::engine`]), not by row locks: an
//! account is one row, its buckets and reservations in its `state` (JSON), read once when the
//! OCS first needs it ([`account`]) and rewritten whole. Credit control writes through the
//! group commit ([`write_batch`]: accounts, journal lines, sessions with their answers); the
//! rarer writers through [`save_account`] and [`post`].

use std::collections::HashMap;

use numport_core::{Millis, Money};
use numport_db::migrate::Migration;
use numport_db::sql::{self, Connection, Row};
use numport_db::{Migrations, Schema, SqliteLayout, StoreError};

use crate::balance::{Account, AccountId, Entry, MoneyBucket, Reservation, UnitBucket};
use crate::data_charging::ChargingMode;
use crate::online_list::{EntryKind, ListEntry};
use crate::rating::{Service, TariffRule, TimeBand};
use crate::session::{CreditControlAnswer, RequestType, Session, SessionState};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub static SQLITE_MIGRATIONS: &[Migration] = numport_db::migrations!(
    "migrations/sqlite",
    ["0001_ocs.sql", "0002_sessions_state_check.sql", "0003_journal_in_commit_order.sql"]
);
pub static POSTGRES_MIGRATIONS: &[Migration] =
    numport_db::migrations!("migrations/postgres", ["0001_ocs.sql", "0002_journal_in_commit_order.sql"]);

/// The OCS's database as the engine opens it: SQLite's default pages, and two readers, for
/// what the working copy ([`crate::engine`]) loads while the group commit holds the writer.
pub const SCHEMA: Schema = Schema {
    role: "ocs",
    migrations: Migrations { sqlite: SQLITE_MIGRATIONS, postgres: POSTGRES_MIGRATIONS },
    sqlite: SqliteLayout { page_size: None, readers: 2 },
};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| corrupt("encoding", e))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

/// `FOR UPDATE` on PostgreSQL; nothing on SQLite, whose one writer already excludes others.
fn for_update(conn: &Connection) -> &'static str {
    if conn.is_postgres() { " FOR UPDATE" } else { "" }
}

// ---------------------------------------------------------------- accounts

/// An account's buckets and reservations, as its row's `state` holds them.
#[derive(serde::Serialize)]
struct StateRef<'a> {
    money: &'a [MoneyBucket],
    units: &'a [UnitBucket],
    reservations: &'a [Reservation],
}

#[derive(serde::Deserialize)]
struct State {
    money: Vec<MoneyBucket>,
    units: Vec<UnitBucket>,
    reservations: Vec<Reservation>,
}

fn state_json(a: &Account) -> Result<String> {
    to_json(&StateRef { money: &a.money, units: &a.units, reservations: &a.reservations })
}

pub async fn create_account(
    conn: &mut Connection,
    msisdn: &str,
    credit_limit: Money,
    now: Millis,
) -> Result<AccountId> {
    let state = state_json(&Account::new(0, credit_limit))?;
    sql::query_scalar(
        "INSERT INTO ocs_accounts (msisdn, credit_limit, debt, balance, reserved, state, created_at) \
         VALUES ($1, $2, 0, 0, 0, $3, $4) RETURNING id",
    )
    .bind(msisdn)
    .bind(credit_limit.0)
    .bind(state)
    .bind(now)
    .fetch_one(conn)
    .await
    .map_err(StoreError::from_insert)
}

/// Every account's id and number, in id order.
pub async fn accounts(conn: &mut Connection) -> Result<Vec<(AccountId, String)>> {
    sql::query_as("SELECT id, msisdn FROM ocs_accounts ORDER BY id").fetch_all(conn).await
}

const ACCOUNT_COLUMNS: &str = "id, credit_limit, debt, state";

fn account_row(r: &Row) -> Result<Account> {
    let state: String = r.try_get("state")?;
    let state: State = from_json("account state", &state)?;
    Ok(Account {
        id: r.try_get("id")?,
        credit_limit: Money(r.try_get("credit_limit")?),
        debt: Money(r.try_get("debt")?),
        money: state.money,
        units: state.units,
        reservations: state.reservations,
    })
}

/// Account `id` with its buckets and reservations, as committed. Nothing is locked: the OCS's
/// working copy ([`crate::engine`]) is what serialises the account's writers.
pub async fn account(conn: &mut Connection, id: AccountId) -> Result<Option<Account>> {
    let q = format!("SELECT {ACCOUNT_COLUMNS} FROM ocs_accounts WHERE id = $1");
    sql::query(&q).bind(id).fetch_optional(conn).await?.map(|r| account_row(&r)).transpose()
}

/// The account id of `msisdn`, if it has one.
pub async fn account_id(conn: &mut Connection, msisdn: &str) -> Result<Option<AccountId>> {
    sql::query_scalar("SELECT id FROM ocs_accounts WHERE msisdn = $1").bind(msisdn).fetch_optional(conn).await
}

/// Write `after` if it differs from `before` (as loaded).
pub async fn save_account(conn: &mut Connection, before: &Account, after: &Account) -> Result<()> {
    if before == after {
        return Ok(());
    }
    sql::query(
        "UPDATE ocs_accounts SET debt = $2, credit_limit = $3, balance = $4, reserved = $5, state = $6 WHERE id = $1",
    )
    .bind(after.id)
    .bind(after.debt.0)
    .bind(after.credit_limit.0)
    .bind(after.net().0)
    .bind(after.reserved().0)
    .bind(state_json(after)?)
    .execute(conn)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- journal

/// Post `entries` under the business event `key` (`{key}/{i}` each). The journal does not
/// check that a key is new: the business event's own table does, in the same transaction
/// (see [`record_recharge`]).
pub async fn post(conn: &mut Connection, key: &str, kind: &'static str, entries: &[Entry], at: Millis) -> Result<()> {
    let mut rows = Vec::new();
    posting_rows(&mut rows, key, kind, entries, at);
    insert_postings(conn, rows.iter()).await
}

/// Journal lines, one prepared statement each (pipelined on PostgreSQL).
async fn insert_postings<'a>(conn: &mut Connection, rows: impl Iterator<Item = &'a PostingRow>) -> Result<()> {
    for p in rows {
        sql::query(
            "INSERT INTO ocs_postings (entry_key, line, ledger, amount, kind, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(p.entry_key.as_str())
        .bind(p.line)
        .bind(p.ledger.as_str())
        .bind(p.amount)
        .bind(p.kind)
        .bind(p.at)
        .execute_pipelined(conn)
        .await
        .map_err(StoreError::from_insert)?;
    }
    Ok(())
}

/// Whether the recharge `key` was applied.
pub async fn recharged(conn: &mut Connection, key: &str) -> Result<bool> {
    let found: Option<i64> =
        sql::query_scalar("SELECT 1 FROM ocs_recharges WHERE key = $1").bind(key).fetch_optional(conn).await?;
    Ok(found.is_some())
}

/// Mark the recharge `key` applied; a key applied before fails the transaction (on SQLite
/// here, as [`StoreError::Duplicate`]; on PostgreSQL at the next statement or the commit).
pub async fn record_recharge(conn: &mut Connection, key: &str, at: Millis) -> Result<()> {
    sql::query("INSERT INTO ocs_recharges (key, at) VALUES ($1, $2)")
        .bind(key)
        .bind(at)
        .execute_pipelined(conn)
        .await
        .map_err(StoreError::from_insert)
}

/// Every ledger account's balance.
pub async fn ledger_balances(conn: &mut Connection) -> Result<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> =
        sql::query_as("SELECT ledger, CAST(SUM(amount) AS BIGINT) FROM ocs_postings GROUP BY ledger")
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Entries whose lines do not sum to zero (none, unless the journal was tampered with).
pub async fn unbalanced_entries(conn: &mut Connection) -> Result<Vec<String>> {
    sql::query_scalar("SELECT entry_key FROM ocs_postings GROUP BY entry_key HAVING SUM(amount) <> 0")
        .fetch_all(conn)
        .await
}

// ---------------------------------------------------------------- sessions

pub async fn session(conn: &mut Connection, id: &str) -> Result<Option<Session>> {
    let row = sql::query(
        "SELECT id, account_id, service, destination, state, last_request_number, last_request_type, last_answer, \
         tcc_deadline, charged FROM ocs_sessions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| session_row(&r)).transpose()
}

fn session_row(r: &Row) -> Result<Session> {
    let service: String = r.try_get("service")?;
    let state: String = r.try_get("state")?;
    let answer: String = r.try_get("last_answer")?;
    let answer: CreditControlAnswer = from_json("answer", &answer)?;
    let request_type: String = r.try_get("last_request_type")?;
    let request_type: RequestType = from_json("request type", &format!("\"{request_type}\""))?;
    Ok(Session {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        service: service.parse::<Service>().map_err(|e| corrupt("service", e))?,
        destination: r.try_get("destination")?,
        state: SessionState::parse(&state).ok_or_else(|| corrupt("session state", &state))?,
        last_request_number: r.try_get::<i64, _>("last_request_number")? as u32,
        last_request_type: request_type,
        last_answer: answer,
        tcc_deadline: r.try_get("tcc_deadline")?,
        charged: Money(r.try_get("charged")?),
    })
}

/// Open sessions whose Tcc deadline passed, oldest first, with their accounts.
pub async fn due_sessions(conn: &mut Connection, now: Millis, limit: i64) -> Result<Vec<(String, AccountId)>> {
    sql::query_as(
        "SELECT id, account_id FROM ocs_sessions WHERE state = 'open' AND tcc_deadline <= $1 \
         ORDER BY tcc_deadline LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

// ---------------------------------------------------------------- tariffs

pub async fn tariffs(conn: &mut Connection) -> Result<Vec<TariffRule>> {
    let rows =
        sql::query("SELECT service, prefix, start_minute, end_minute, price, block FROM ocs_tariffs ORDER BY id")
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| {
            let service: String = r.try_get("service")?;
            Ok(TariffRule {
                service: service.parse().map_err(|e| corrupt("service", e))?,
                prefix: r.try_get("prefix")?,
                band: TimeBand {
                    start_minute: r.try_get::<i64, _>("start_minute")? as u16,
                    end_minute: r.try_get::<i64, _>("end_minute")? as u16,
                },
                price: Money(r.try_get("price")?),
                block: r.try_get::<i64, _>("block")? as u64,
            })
        })
        .collect()
}

pub async fn replace_tariffs(conn: &mut Connection, rules: &[TariffRule]) -> Result<()> {
    sql::query("DELETE FROM ocs_tariffs").execute(conn).await?;
    for (i, r) in rules.iter().enumerate() {
        sql::query(
            "INSERT INTO ocs_tariffs (id, service, prefix, start_minute, end_minute, price, block) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(i as i64)
        .bind(r.service.as_str())
        .bind(r.prefix.as_str())
        .bind(i64::from(r.band.start_minute))
        .bind(i64::from(r.band.end_minute))
        .bind(r.price.0)
        .bind(r.block as i64)
        .execute(conn)
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- online-charging list

pub async fn online_list(conn: &mut Connection) -> Result<Vec<ListEntry>> {
    let rows: Vec<(String, String)> =
        sql::query_as("SELECT digits, kind FROM ocs_online_list ORDER BY digits").fetch_all(conn).await?;
    rows.into_iter()
        .map(|(digits, kind)| {
            Ok(ListEntry { kind: EntryKind::parse(&kind).ok_or_else(|| corrupt("list entry kind", &kind))?, digits })
        })
        .collect()
}

pub async fn put_online_entry(conn: &mut Connection, digits: &str, kind: EntryKind, now: Millis) -> Result<()> {
    sql::query(
        "INSERT INTO ocs_online_list (digits, kind, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (digits) DO UPDATE SET kind = excluded.kind, updated_at = excluded.updated_at",
    )
    .bind(digits)
    .bind(kind.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_online_entry(conn: &mut Connection, digits: &str) -> Result<bool> {
    let done = sql::query("DELETE FROM ocs_online_list WHERE digits = $1").bind(digits).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

// ---------------------------------------------------------------- capacity

pub async fn set_capacity(conn: &mut Connection, total: u64) -> Result<()> {
    sql::query(
        "INSERT INTO ocs_capacity (id, total) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET total = excluded.total",
    )
    .bind(total as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// The configured total (locked until the transaction ends, so loads are serialised), the
/// weight loaded, and whether `msisdn` is loaded.
pub async fn lock_capacity(conn: &mut Connection, msisdn: &str) -> Result<(Option<u64>, u64, bool)> {
    let q = format!("SELECT total FROM ocs_capacity WHERE id = 1{}", for_update(conn));
    let total: Option<i64> = sql::query_scalar(&q).fetch_optional(conn).await?;
    let loaded: Option<i64> =
        sql::query_scalar("SELECT CAST(SUM(weight) AS BIGINT) FROM ocs_loaded").fetch_one(conn).await?;
    let already: Option<i64> =
        sql::query_scalar("SELECT weight FROM ocs_loaded WHERE msisdn = $1").bind(msisdn).fetch_optional(conn).await?;
    Ok((total.map(|t| t as u64), loaded.unwrap_or(0) as u64, already.is_some()))
}

pub async fn insert_loaded(conn: &mut Connection, msisdn: &str, weight: u64, now: Millis) -> Result<()> {
    sql::query("INSERT INTO ocs_loaded (msisdn, weight, loaded_at) VALUES ($1, $2, $3)")
        .bind(msisdn)
        .bind(weight as i64)
        .bind(now)
        .execute(conn)
        .await
        .map_err(StoreError::from_insert)?;
    Ok(())
}

pub async fn delete_loaded(conn: &mut Connection, msisdn: &str) -> Result<bool> {
    let done = sql::query("DELETE FROM ocs_loaded WHERE msisdn = $1").bind(msisdn).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

// ---------------------------------------------------------------- charging modes, data records

pub async fn charging_modes(conn: &mut Connection) -> Result<Vec<(String, u32, ChargingMode)>> {
    let rows: Vec<(String, i64, String)> =
        sql::query_as("SELECT subscriber, service_id, mode FROM ocs_charging_modes").fetch_all(conn).await?;
    rows.into_iter().map(|(s, id, m)| Ok((s, id as u32, from_json("charging mode", &m)?))).collect()
}

pub async fn put_charging_mode(
    conn: &mut Connection,
    subscriber: &str,
    service_id: u32,
    mode: &ChargingMode,
) -> Result<()> {
    sql::query(
        "INSERT INTO ocs_charging_modes (subscriber, service_id, mode) VALUES ($1, $2, $3) \
         ON CONFLICT (subscriber, service_id) DO UPDATE SET mode = excluded.mode",
    )
    .bind(subscriber)
    .bind(i64::from(service_id))
    .bind(to_json(mode)?)
    .execute(conn)
    .await?;
    Ok(())
}

/// Record the flat fee of (`subscriber`, `service_id`, `day`); false if it was already charged.
pub async fn claim_flat_fee(conn: &mut Connection, subscriber: &str, service_id: u32, day: i64) -> Result<bool> {
    let done = sql::query(
        "INSERT INTO ocs_flat_fees (subscriber, service_id, day) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(subscriber)
    .bind(i64::from(service_id))
    .bind(day)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The stored result of a data record or a partial CDR's decision, by its table and key.
pub async fn data_record_result(conn: &mut Connection, record_id: &str) -> Result<Option<String>> {
    sql::query_scalar("SELECT result FROM ocs_data_records WHERE record_id = $1")
        .bind(record_id)
        .fetch_optional(conn)
        .await
}

pub async fn insert_data_record(
    conn: &mut Connection,
    record_id: &str,
    subscriber: &str,
    result: &str,
    at: Millis,
) -> Result<()> {
    sql::query("INSERT INTO ocs_data_records (record_id, subscriber, result, at) VALUES ($1, $2, $3, $4)")
        .bind(record_id)
        .bind(subscriber)
        .bind(result)
        .bind(at)
        .execute(conn)
        .await
        .map_err(StoreError::from_insert)?;
    Ok(())
}

// ---------------------------------------------------------------- partial CDRs

pub async fn partial_decision(conn: &mut Connection, call_id: &str, seq: u32) -> Result<Option<String>> {
    sql::query_scalar("SELECT decision FROM ocs_partial_cdrs WHERE call_id = $1 AND seq = $2")
        .bind(call_id)
        .bind(i64::from(seq))
        .fetch_optional(conn)
        .await
}

pub async fn insert_partial(
    conn: &mut Connection,
    call_id: &str,
    seq: u32,
    body: &str,
    decision: &str,
    charged: Money,
    at: Millis,
) -> Result<()> {
    sql::query(
        "INSERT INTO ocs_partial_cdrs (call_id, seq, body, decision, charged, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(call_id)
    .bind(i64::from(seq))
    .bind(body)
    .bind(decision)
    .bind(charged.0)
    .bind(at)
    .execute(conn)
    .await
    .map_err(StoreError::from_insert)?;
    Ok(())
}

/// A call's partials (bodies) and what they were charged in all.
pub async fn partials(conn: &mut Connection, call_id: &str) -> Result<(Vec<String>, Money)> {
    let rows: Vec<(String, i64)> =
        sql::query_as("SELECT body, charged FROM ocs_partial_cdrs WHERE call_id = $1 ORDER BY seq")
            .bind(call_id)
            .fetch_all(conn)
            .await?;
    let charged = rows.iter().map(|(_, c)| c).sum();
    Ok((rows.into_iter().map(|(b, _)| b).collect(), Money(charged)))
}

pub async fn call_result(conn: &mut Connection, call_id: &str) -> Result<Option<String>> {
    sql::query_scalar("SELECT result FROM ocs_calls WHERE call_id = $1").bind(call_id).fetch_optional(conn).await
}

pub async fn insert_call(
    conn: &mut Connection,
    call_id: &str,
    account_id: AccountId,
    result: &str,
    at: Millis,
) -> Result<()> {
    sql::query("INSERT INTO ocs_calls (call_id, account_id, result, at) VALUES ($1, $2, $3, $4)")
        .bind(call_id)
        .bind(account_id)
        .bind(result)
        .bind(at)
        .execute(conn)
        .await
        .map_err(StoreError::from_insert)?;
    Ok(())
}

// ---------------------------------------------------------------- group commit

/// An account's row as a request left it, rendered by the request (its JSON off the writer).
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: AccountId,
    debt: i64,
    credit_limit: i64,
    balance: i64,
    reserved: i64,
    state: String,
}

impl AccountRow {
    pub fn of(a: &Account) -> Result<AccountRow> {
        Ok(AccountRow {
            id: a.id,
            debt: a.debt.0,
            credit_limit: a.credit_limit.0,
            balance: a.net().0,
            reserved: a.reserved().0,
            state: state_json(a)?,
        })
    }
}

/// One journal line, as [`post`] writes it.
#[derive(Debug, Clone)]
pub struct PostingRow {
    entry_key: String,
    line: i64,
    ledger: String,
    amount: i64,
    kind: &'static str,
    at: Millis,
}

/// The lines of `entries` under the business event `key` (`{key}/{i}` each), appended to `out`.
pub fn posting_rows(out: &mut Vec<PostingRow>, key: &str, kind: &'static str, entries: &[Entry], at: Millis) {
    for (i, e) in entries.iter().enumerate() {
        for (line, (ledger, amount)) in e.lines().iter().enumerate() {
            out.push(PostingRow {
                entry_key: format!("{key}/{i}"),
                line: line as i64,
                ledger: ledger.key(),
                amount: amount.0,
                kind,
                at,
            });
        }
    }
}

/// A session with its answer, as its row holds it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub id: String,
    account_id: AccountId,
    service: &'static str,
    destination: Option<String>,
    state: &'static str,
    last_request_number: i64,
    last_request_type: &'static str,
    last_answer: String,
    tcc_deadline: Millis,
    charged: i64,
    updated_at: Millis,
}

impl SessionRow {
    pub fn of(s: &Session, now: Millis) -> Result<SessionRow> {
        Ok(SessionRow {
            id: s.id.clone(),
            account_id: s.account_id,
            service: s.service.as_str(),
            destination: s.destination.clone(),
            state: s.state.as_str(),
            last_request_number: i64::from(s.last_request_number),
            last_request_type: s.last_request_type.as_str(),
            last_answer: to_json(&s.last_answer)?,
            tcc_deadline: s.tcc_deadline,
            charged: s.charged.0,
            updated_at: now,
        })
    }
}

const UPSERT_SESSION: &str = "INSERT INTO ocs_sessions (id, account_id, service, destination, state, \
     last_request_number, last_request_type, last_answer, tcc_deadline, charged, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (id) DO UPDATE SET destination = excluded.destination, state = excluded.state, \
     last_request_number = excluded.last_request_number, last_request_type = excluded.last_request_type, \
     last_answer = excluded.last_answer, tcc_deadline = excluded.tcc_deadline, charged = excluded.charged, \
     updated_at = excluded.updated_at";

/// Write a group commit's rows: each account's and session's (its last version), and the
/// journal lines. One prepared statement per row: on SQLite a row costs only its b-tree work
/// (a batch as one JSON parameter, parsed by `json_each`, measured about twice as slow:
/// docs/BENCHMARKS.md, OCS), and on PostgreSQL the statements are pipelined, their answers
/// read with the `COMMIT`'s.
pub async fn write_batch(
    conn: &mut Connection,
    accounts: &[&AccountRow],
    postings: &[&PostingRow],
    sessions: &[&SessionRow],
) -> Result<()> {
    for a in accounts {
        sql::query(
            "UPDATE ocs_accounts SET debt = $2, credit_limit = $3, balance = $4, reserved = $5, state = $6 \
             WHERE id = $1",
        )
        .bind(a.id)
        .bind(a.debt)
        .bind(a.credit_limit)
        .bind(a.balance)
        .bind(a.reserved)
        .bind(a.state.as_str())
        .execute_pipelined(conn)
        .await?;
    }
    insert_postings(conn, postings.iter().copied()).await?;
    for s in sessions {
        sql::query(UPSERT_SESSION)
            .bind(s.id.as_str())
            .bind(s.account_id)
            .bind(s.service)
            .bind(s.destination.as_deref())
            .bind(s.state)
            .bind(s.last_request_number)
            .bind(s.last_request_type)
            .bind(s.last_answer.as_str())
            .bind(s.tcc_deadline)
            .bind(s.charged)
            .bind(s.updated_at)
            .execute_pipelined(conn)
            .await?;
    }
    Ok(())
}
