//! The clearinghouse's tables: its schema (`migrations/sqlite`, `migrations/postgres` in this
//! crate) and every SQL statement it runs, one module per table group.
//!
//! The database is opened through the engine, `numport_db` ([`open`], with this role's
//! [`SCHEMA`]), and every statement goes through its [`numport_db::sql`], one body of SQL for
//! SQLite and PostgreSQL. Functions take a `&mut Connection`, usually a transaction opened by
//! the caller: the clearinghouse decides what belongs in one transaction, these modules know
//! how to write it. A few statements are written per engine where a hot row's lock is held
//! ([`ledger::post`], [`orders::transition`]).
//!
//! - [`operators`]: operators and their API keys.
//! - [`ranges`]: number ranges and the range holder of a number.
//! - [`ledger`]: settlement accounts, balanced journals, postings.
//! - [`orders`]: porting orders, proof deposits, verification failures, violations.
//! - [`routing`]: ported numbers and the gap-free routing change log.
//! - [`outbox`]: messages to operators (callback delivery and inbox).
//! - [`audit`]: the append-only audit trail.
//! - [`idempotency`]: stored answers to operator requests by idempotency key.

pub mod audit;
pub mod idempotency;
pub mod ledger;
pub mod operators;
pub mod orders;
pub mod outbox;
pub mod ranges;
pub mod routing;

use numport_db::migrate::Migration;
use numport_db::{Db, DbConfig, Migrations, Result, Schema, SqliteLayout, StoreError};

/// The clearinghouse's schema, one list per engine (see [`numport_db::migrate`]).
pub static SQLITE_MIGRATIONS: &[Migration] = numport_db::migrations!(
    "migrations/sqlite",
    [
        "0001_clearinghouse.sql",
        "0002_ledger_head.sql",
        "0003_ranges_version.sql",
        "0004_messages_order.sql",
        "0005_delivery_lease.sql",
        "0006_settle_in_batches.sql",
        "0007_failures_where_they_come_from.sql",
    ]
);
pub static POSTGRES_MIGRATIONS: &[Migration] = numport_db::migrations!(
    "migrations/postgres",
    [
        "0001_clearinghouse.sql",
        "0002_ledger_head.sql",
        "0003_ranges_version.sql",
        "0004_post_journal.sql",
        "0005_messages_order.sql",
        "0006_settle_at_commit.sql",
        "0007_expect_changed.sql",
        "0008_delivery_lease.sql",
        "0009_settle_in_batches.sql",
        "0010_failures_where_they_come_from.sql",
    ]
);

/// The clearinghouse's database as the engine opens it.
///
/// Its SQLite file is created with 2 KiB pages (an existing file keeps its own). A commit
/// writes each page it changed to the WAL whole, and a port's transactions change pages all
/// over the orders, messages, audit and idempotency tables and their indexes: half the page,
/// about half the WAL bytes a port writes. `numport bench porting` measures it (ports/s and
/// the p50 of a port); 1 KiB would put more rows (JSON bodies) on overflow pages. Two readers
/// serve the reads beside the writer (the dispatcher, the change feed, the API's reads).
pub const SCHEMA: Schema = Schema {
    role: "clearinghouse",
    migrations: Migrations { sqlite: SQLITE_MIGRATIONS, postgres: POSTGRES_MIGRATIONS },
    sqlite: SqliteLayout { page_size: Some(2048), readers: 2 },
};

/// Open the clearinghouse's database and bring its schema up to date.
pub async fn open(config: &DbConfig) -> Result<Db> {
    Db::open(config, &SCHEMA).await
}

/// [`open`] `url` with the default number of PostgreSQL sessions.
pub async fn connect(url: &str) -> Result<Db> {
    open(&DbConfig::new(url)).await
}

/// Parse a stored code back into its domain type; a failure means the database was tampered with.
pub(crate) fn parse_col<T: std::str::FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| StoreError::Corrupt(format!("{what} {s:?}: {e}")))
}
