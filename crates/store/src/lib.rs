//! Clearinghouse storage: the schema and every SQL statement.
//!
//! Two database stacks, each where it is the cheaper one:
//! - SQLite through rusqlite, each statement run on the thread that holds the connection
//!   ([`sql`]);
//! - PostgreSQL through a client of the crate's own on `postgres-protocol`, which pipelines
//!   ([`pg`]).
//!
//! Migrations ([`migrate`]) and `LISTEN` ([`pg::PgListener`]) run on the same connections.
//! sqlx is not used: its SQLite driver runs each statement on a worker thread of its own and
//! hands the rows back over a channel, two thread switches per statement whose own work is a
//! few microseconds; its PostgreSQL driver cannot pipeline, so each statement is a round trip;
//! and kept only for migrations and `LISTEN` it would be a third stack, with errors and
//! connection settings of its own, beside the two that run every statement.
//!
//! One code path for both backends: statements go through [`sql`] (rusqlite on SQLite,
//! its wire protocol, pipelined, on PostgreSQL) with `$n` placeholders, which both engines
//! accept, and use only what both dialects share (`ON CONFLICT`, `RETURNING`, partial
//! indexes). Dialect differences live in the two migration folders, and in the few statements
//! written per engine where a hot row's lock is held (see [`Connection::is_postgres`]).
//! Columns are `BIGINT`/`TEXT` only, so rows decode the same way on both.
//!
//! Functions take a `&mut Connection`, usually a transaction opened by the caller: the
//! clearinghouse decides what belongs in one transaction, the store knows how to write it.
//!
//! - [`sql`]: running statements on either engine.
//! - [`pg`]: PostgreSQL sessions: the pool, prepared statements, pipelining.
//! - [`db`]: connecting, pragmas, migrations; transactions, group commit on SQLite, readers.
//! - [`migrate`]: the migration runner and its history table.
//! - `testing` (cargo feature `testing`): throw-away PostgreSQL databases for tests.
//! - [`wal`]: SQLite WAL checkpoints off the commit path.
//! - [`operators`]: operators and their API keys.
//! - [`ranges`]: number ranges and the range holder of a number.
//! - [`ledger`]: settlement accounts, balanced journals, postings.
//! - [`orders`]: porting orders, proof deposits, verification failures, violations.
//! - [`routing`]: ported numbers and the gap-free routing change log.
//! - [`outbox`]: messages to operators (callback delivery and inbox).
//! - [`audit`]: the append-only audit trail.
//! - [`idempotency`]: stored answers to operator requests by idempotency key.

pub mod audit;
pub mod db;
pub mod idempotency;
pub mod ledger;
pub mod migrate;
pub mod operators;
pub mod orders;
pub mod outbox;
pub mod pg;
pub mod ranges;
pub mod routing;
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wal;

pub use db::{Backend, DEFAULT_PG_SESSIONS, Db, DbConn, DbTx, SQLITE_PRAGMAS, prepare_sqlite_url, sqlite_file};
pub use sql::Connection;

/// Storage failures. Constraint violations the caller can act on are their own variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An error the PostgreSQL server raised.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] pg::DbError),
    /// The connection to PostgreSQL failed, or the server said something unexpected.
    #[error("PostgreSQL connection: {0}")]
    PgConnection(String),
    #[error("the database is closed")]
    Closed,
    #[error("no database connection came free in time")]
    PoolTimedOut,
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A column held something else than the code reads it as, or a statement's parameters
    /// do not match what was bound.
    #[error("stored data does not decode: {0}")]
    Decode(String),
    /// `fetch_one` found no row.
    #[error("no row returned")]
    NoRow,
    #[error("{0}")]
    Migrate(#[from] migrate::MigrateError),
    /// The database could not be opened as configured (a URL or a path it cannot use).
    #[error("{0}")]
    Config(String),
    /// An I/O failure outside the engines (a directory, a thread, a socket).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("row already exists ({0})")]
    Duplicate(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A compare-and-set found its row no longer as the caller read it: another writer got
    /// there first. See [`StoreError::is_state_changed`] for its PostgreSQL form.
    #[error("{0} changed meanwhile")]
    StateChanged(&'static str),
    /// The group commit a transaction joined failed: its changes are gone with the group's.
    #[error("commit failed: {0}")]
    CommitFailed(String),
}

impl StoreError {
    /// Turn a unique-constraint violation into [`StoreError::Duplicate`], anything else as is.
    pub fn from_insert(e: StoreError) -> StoreError {
        match e.unique_violation() {
            Some((message, _)) => StoreError::Duplicate(message),
            None => e,
        }
    }

    /// If this is a unique-constraint violation: what the engine said, and the constraint it
    /// names (PostgreSQL reports the name; SQLite names the columns in its message instead,
    /// `UNIQUE constraint failed: idempotency_keys.operator_id, …`).
    pub(crate) fn unique_violation(&self) -> Option<(String, Option<&str>)> {
        use rusqlite::ffi;
        match self {
            StoreError::Postgres(pg) if pg.code == UNIQUE_VIOLATION => {
                Some((pg.message.clone(), pg.constraint.as_deref()))
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, msg))
                if matches!(f.extended_code, ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) =>
            {
                Some((msg.clone().unwrap_or_else(|| f.to_string()), None))
            }
            _ => None,
        }
    }

    /// The SQLSTATE of an error PostgreSQL raised (`40001` for a serialization failure, …).
    pub fn sql_state(&self) -> Option<&str> {
        match self {
            StoreError::Postgres(pg) => Some(&pg.code),
            _ => None,
        }
    }

    /// A compare-and-set lost to another writer: [`StoreError::StateChanged`], or on
    /// PostgreSQL, where it is pipelined, the error the server raised for it (SQLSTATE
    /// [`STATE_CHANGED_SQLSTATE`]), seen by whichever statement read its answer.
    pub fn is_state_changed(&self) -> bool {
        matches!(self, StoreError::StateChanged(_)) || self.sql_state() == Some(STATE_CHANGED_SQLSTATE)
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, StoreError::Duplicate(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// PostgreSQL's SQLSTATE for a unique-constraint violation.
const UNIQUE_VIOLATION: &str = "23505";

/// The SQLSTATE `numport_expect_changed` raises (PostgreSQL migration 0007).
pub const STATE_CHANGED_SQLSTATE: &str = "NPCAS";

/// Parse a stored code back into its domain type; a failure means the database was tampered with.
pub(crate) fn parse_col<T: std::str::FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| StoreError::Corrupt(format!("{what} {s:?}: {e}")))
}
