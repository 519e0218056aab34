//! The node's own database, and every SQL statement the node runs.
//!
//! Like the clearinghouse's store, one code path serves both engines: [`numport_store::sql`]
//! (rusqlite on SQLite, run on the calling thread; the engine's pipelined client on
//! PostgreSQL), `$n` placeholders, only `BIGINT` and `TEXT` columns, and dialect differences
//! confined to the two migration folders (run by [`numport_store::migrate`]),
//! except where finishing a message takes one round trip to PostgreSQL instead of several
//! ([`OperatorStore::finish_message`]: one statement with data-modifying `WITH` clauses). Unlike it, an operator node keeps its SQL behind one handle,
//! [`OperatorStore`], because the node has few tables and no transaction spans two modules.
//!
//! - [`subscribers`]: subscriber accounts (port key, the figures of a credit query, status).
//! - [`messages`]: clearinghouse messages received (replay guard and durable work queue) and the
//!   inbox cursor.
//! - [`events`]: the node's record of porting events.
//! - [`sms`]: the SMS center's ESME accounts and acknowledged messages.

pub mod events;
pub mod messages;
pub mod sms;
mod sms_sqlite;
pub mod subscribers;

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;

use numport_store::StoreError;
use numport_store::migrate::Migration;
use numport_store::pg::PgPool;
use numport_store::sql::Connection;
use numport_store::wal::WalCheckpointer;
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

use crate::OperatorError;

pub use events::{Effect, EventKind, NewPortEvent, PortEvent};
pub use messages::{Arrival, ReceivedMessage};
pub use subscribers::{Subscriber, SubscriberStatus};

pub use numport_store::Backend;

/// The node's schema, one list per engine (see [`numport_store::migrate`]).
pub static SQLITE_MIGRATIONS: &[Migration] = numport_store::migrations!(
    "migrations/sqlite",
    [
        "0001_operator.sql",
        "0002_sms.sql",
        "0003_sims.sql",
        "0004_sms_delivery.sql",
        "0005_sms_origin_ref.sql",
        "0006_sms_queue_indexes.sql",
    ]
);
pub static POSTGRES_MIGRATIONS: &[Migration] = numport_store::migrations!(
    "migrations/postgres",
    [
        "0001_operator.sql",
        "0002_sms.sql",
        "0003_sims.sql",
        "0004_sms_delivery.sql",
        "0005_sms_origin_ref.sql",
        "0006_sms_queue_indexes.sql",
    ]
);

/// How the store reaches its database.
#[derive(Clone)]
enum Handle {
    /// PostgreSQL: a pool.
    Pool(PgPool),
    /// SQLite: the one connection (rusqlite's), taken in turn, `None` once closed; and the
    /// file's WAL checkpoints, shared with the SMS writer.
    Single(Arc<Mutex<Option<Connection>>>, Arc<WalCheckpointer>),
}

/// A connection taken from the store for a few statements; give it back by dropping it.
pub(crate) enum Conn {
    Pooled(Connection),
    Single(OwnedMappedMutexGuard<Option<Connection>, Connection>, Arc<WalCheckpointer>),
}

impl Drop for Conn {
    /// Given back with a long WAL: copy what the background checkpoints left, while no other
    /// statement of this connection can slip in, so that its next transaction writes the WAL
    /// from its start again (see `numport_store::wal`; without this the WAL of a node whose
    /// SMS writer is idle grew by 600 MB in one porting benchmark).
    fn drop(&mut self) {
        if let Conn::Single(conn, wal) = self
            && let Some(c) = conn.as_sqlite()
        {
            wal.reset_if_long(c);
        }
    }
}

impl Deref for Conn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Conn::Pooled(c) => c,
            Conn::Single(c, _) => c,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Connection {
        match self {
            Conn::Pooled(c) => c,
            Conn::Single(c, _) => c,
        }
    }
}

/// A handle on the node's database; cheap to clone.
#[derive(Clone)]
pub struct OperatorStore {
    handle: Handle,
    backend: Backend,
    /// SQLite files: the SMS center's group commit, on a connection of its own.
    sms_writer: Option<sms_sqlite::SqliteSmsWriter>,
}

impl fmt::Debug for OperatorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorStore").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl OperatorStore {
    /// Connect to `url` (`sqlite://path`, `postgres://…`) and bring the schema up to date.
    ///
    /// SQLite runs in WAL mode with `synchronous=NORMAL` on a single connection, as the
    /// clearinghouse does: a commit survives `kill -9`, and the one writer never meets
    /// `SQLITE_BUSY` from its own process. The directory of a SQLite file is created if missing.
    /// The database must be the node's own: its migration history is this crate's alone.
    pub async fn connect(url: &str) -> Result<OperatorStore, OperatorError> {
        let backend = Backend::of(url);
        let (handle, sms_writer) = match backend {
            Backend::Sqlite => {
                let url = numport_store::prepare_sqlite_url(url)?;
                let Some(path) = numport_store::sqlite_file(&url) else {
                    return Err(OperatorError::Config(format!("{url}: the node's SQLite database must be a file")));
                };
                let migrator = rusqlite::Connection::open(path).map_err(StoreError::Sqlite)?;
                migrator.execute_batch(numport_store::SQLITE_PRAGMAS).map_err(StoreError::Sqlite)?;
                let mut migrator = Connection::sqlite(migrator);
                numport_store::migrate::run(&mut migrator, SQLITE_MIGRATIONS).await?;
                migrator.close().await;
                // Its statements run on the runtime's threads, so none may checkpoint the WAL
                // (an fsync) inside a commit: a checkpointer thread does, and a long WAL is
                // brought back to its start when the connection is given back (`Conn`'s drop).
                let checkpoints = Arc::new(WalCheckpointer::start(path, "db-checkpoint")?);
                let conn = Connection::sqlite(checkpoints.open_writer(path)?);
                let sms_writer = sms_sqlite::SqliteSmsWriter::start(path, checkpoints.clone())?;
                (Handle::Single(Arc::new(Mutex::new(Some(conn))), checkpoints), Some(sms_writer))
            }
            Backend::Postgres => {
                let pool = PgPool::connect(url, 8).await?;
                numport_store::migrate::run(&mut Connection::postgres(pool.acquire().await?), POSTGRES_MIGRATIONS)
                    .await?;
                (Handle::Pool(pool), None)
            }
        };
        Ok(OperatorStore { handle, backend, sms_writer })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection for a few statements (SQLite: the connection, once the holder before is
    /// done with it).
    pub(crate) async fn conn(&self) -> Result<Conn, OperatorError> {
        match &self.handle {
            Handle::Pool(pool) => Ok(Conn::Pooled(Connection::postgres(pool.acquire().await?))),
            Handle::Single(conn, wal) => OwnedMutexGuard::try_map(conn.clone().lock_owned().await, Option::as_mut)
                .map(|c| Conn::Single(c, wal.clone()))
                .map_err(|_| StoreError::Closed.into()),
        }
    }

    /// Close the database; later calls fail.
    pub async fn close(&self) {
        if let Some(w) = &self.sms_writer {
            w.close();
        }
        match &self.handle {
            Handle::Pool(pool) => pool.close(),
            Handle::Single(conn, wal) => {
                if let Some(c) = conn.lock().await.take() {
                    c.close().await;
                }
                wal.stop();
            }
        }
    }
}

/// Parse a stored code back into its domain type; a failure means the row was tampered with.
pub(crate) fn parse_col<T: FromStr>(what: &str, s: &str) -> Result<T, OperatorError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| OperatorError::Corrupt(format!("{what} {s:?}: {e}")))
}
