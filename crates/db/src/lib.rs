//! The storage engine every role with a database opens it through: SQLite, embedded, or
//! PostgreSQL, chosen by the URL ([`DbConfig`]), with one statement API over both.
//!
//! Two database stacks, each for a measured reason:
//! - **rusqlite** for SQLite: a statement is a call into the library on the thread that holds
//!   the connection, costing only SQLite's own work. sqlx's SQLite driver runs each statement on
//!   a worker thread of its own and hands the rows back over a channel, two thread switches per
//!   statement: at the porting benchmark's saturation (`numport bench porting`) that costs more
//!   CPU than SQLite itself ([`sql`] says more).
//! - **the project's own PostgreSQL client** ([`pg`], on `postgres-protocol`'s message codecs):
//!   it pipelines, sending the statements whose answers nobody waits for with the next one whose
//!   answer is wanted, under one `Sync`. With a round trip per statement, the round trips are
//!   the cost of a port on PostgreSQL (`numport bench porting --db postgres`); why not
//!   `tokio-postgres` either is in `pg/wire.rs`.
//! - No third stack: migrations ([`migrate`]) and `LISTEN` ([`pg::PgListener`]) run on the
//!   same connections. A library kept only for them (sqlx, whose drivers the two points above
//!   rule out for statements) would bring errors and connection settings of its own.
//!
//! The engine knows no role's tables: the clearinghouse's are in `clearinghouse::store`, the
//! operator node's in `operator::store`. A role describes its database with a [`Schema`] and
//! opens it with [`Db::open`], which applies its migrations and gives the same [`Db`] handle
//! to every role: transactions, reads and the writer.
//!
//! One code path for both engines: statements go through [`sql`] with `$n` placeholders, which
//! both accept, and use only what both dialects share (`ON CONFLICT`, `RETURNING`, partial
//! indexes); columns are `BIGINT`/`TEXT` only, so rows decode the same way on both. Dialect
//! differences live in each role's two migration folders, and in the few statements written
//! per engine (see [`Connection::is_postgres`]).
//!
//! SQLite is a library whose calls block: where each of its calls runs is said in [`db`]. In
//! short: statements (microseconds) on the calling thread, the runtime's workers included; the
//! fsyncs of the WAL restart through [`sql::blocking`] (`tokio::task::block_in_place`); the
//! checkpoints on a thread of their own.
//!
//! - [`sql`]: running statements on either engine.
//! - [`pg`]: PostgreSQL sessions: the pool, prepared statements, pipelining, TLS (`sslmode`).
//! - [`db`]: opening by URL, migrations; transactions, group commit on SQLite, readers.
//! - [`migrate`]: the migration runner and its history table.
//! - `testing` (cargo feature `testing`): throw-away PostgreSQL databases for tests.
//! - [`wal`]: SQLite WAL checkpoints off the commit path.

pub mod db;
pub mod migrate;
pub mod pg;
pub mod sql;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wal;

pub use db::{
    Backend, DEFAULT_SESSIONS, Db, DbConfig, DbConn, DbTx, Migrations, SQLITE_PRAGMAS, Schema, SqliteLayout,
    SqliteWriter, prepare_sqlite_url, sqlite_file,
};
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
    /// The session could not be encrypted, or its server not verified, as `sslmode` asks.
    #[error("PostgreSQL TLS: {0}")]
    PgTls(#[from] pg::TlsError),
    #[error("the database is closed")]
    Closed,
    #[error("no database connection came free in time")]
    PoolTimedOut,
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database cannot be opened as configured (a SQLite URL that names no file, …).
    #[error("database configuration: {0}")]
    Config(String),
    /// A file or a thread of the engine's could not be made (the SQLite file's directory, the
    /// checkpointer's thread, …).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A column held something else than the code reads it as, or a statement's parameters
    /// do not match what was bound.
    #[error("stored data does not decode: {0}")]
    Decode(String),
    /// `fetch_one` found no row.
    #[error("no row returned")]
    NoRow,
    #[error("{0}")]
    Migrate(#[from] migrate::MigrateError),
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
    pub fn unique_violation(&self) -> Option<(String, Option<&str>)> {
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

/// The SQLSTATE a role's PostgreSQL function raises for a lost compare-and-set, recognised by
/// [`StoreError::is_state_changed`] (the clearinghouse's `numport_expect_changed`, its
/// migration 0007).
pub const STATE_CHANGED_SQLSTATE: &str = "NPCAS";
