//! The node's own database, and every SQL statement the node runs.
//!
//! The database is opened through the engine, `numport_db` ([`OperatorStore::open`], with this
//! role's [`SCHEMA`] and the same `database_url`/`database_sessions` keys as the
//! clearinghouse's). Like the clearinghouse's tables, one code path serves both engines:
//! [`numport_db::sql`] (rusqlite on SQLite; the engine's pipelining client on PostgreSQL), `$n`
//! placeholders, only `BIGINT` and `TEXT` columns, and dialect differences confined to the two
//! migration folders, except where finishing a message takes one round trip to PostgreSQL
//! instead of several ([`OperatorStore::finish_message`]: one statement with data-modifying
//! `WITH` clauses). Unlike the clearinghouse, an operator node keeps its SQL behind one handle,
//! [`OperatorStore`], because the node has few tables and no transaction spans two modules.
//!
//! On SQLite every statement runs on the engine's one writer connection ([`numport_db::Db::acquire`]),
//! on the calling task's thread (microseconds each; the WAL restart's fsync when the writer is
//! given back goes through [`numport_db::sql::blocking`], `block_in_place`); the SMS center's
//! batches run on a second writer, on a thread of their own (`sms_sqlite`).
//!
//! - [`subscribers`]: subscriber accounts (port key, the figures of a credit query, status).
//! - [`messages`]: clearinghouse messages received (replay guard and durable work queue) and the
//!   inbox cursor.
//! - [`events`]: the node's record of porting events.
//! - [`sms`]: the SMS center's ESME accounts and acknowledged messages.
//! - [`provisioning`]: the provisioning orders and the durable per-category command queues.
//! - [`accounts`]: number and IMSI pools, the card stock (keys sealed), self-service accounts.
//! - [`ota`]: the OTA server's jobs and the cards' counters.
//! - [`sms_auth`]: the SMS center's authentication keys (sealed) and counter marks (F3).

pub mod accounts;
pub mod events;
pub mod messages;
pub mod ota;
pub mod provisioning;
pub mod sms;
pub mod sms_auth;
mod sms_sqlite;
pub mod subscribers;

use std::fmt;
use std::str::FromStr;

use numport_db::migrate::Migration;
use numport_db::{Db, DbConfig, DbConn, Migrations, Schema, SqliteLayout};

use crate::OperatorError;

pub use events::{Effect, EventKind, NewPortEvent, PortEvent};
pub use messages::{Arrival, ReceivedMessage};
pub use subscribers::{Subscriber, SubscriberStatus};

pub use numport_db::Backend;

/// The node's schema, one list per engine (see [`numport_db::migrate`]).
pub static SQLITE_MIGRATIONS: &[Migration] = numport_db::migrations!(
    "migrations/sqlite",
    [
        "0001_operator.sql",
        "0002_sms.sql",
        "0003_sims.sql",
        "0004_sms_delivery.sql",
        "0005_sms_origin_ref.sql",
        "0006_sms_queue_indexes.sql",
        "0007_esme_default_alphabet.sql",
        "0008_sms_forwarded_expiry.sql",
        "0009_sms_schedule.sql",
        "0010_esme_max_sessions.sql",
        "0011_provisioning.sql",
        "0012_sms_protocol_id.sql",
        "0013_account_opening_ota.sql",
        "0014_sms_auth_keys.sql",
        "0015_ota_sms_auth_key.sql",
    ]
);
pub static POSTGRES_MIGRATIONS: &[Migration] = numport_db::migrations!(
    "migrations/postgres",
    [
        "0001_operator.sql",
        "0002_sms.sql",
        "0003_sims.sql",
        "0004_sms_delivery.sql",
        "0005_sms_origin_ref.sql",
        "0006_sms_queue_indexes.sql",
        "0007_esme_default_alphabet.sql",
        "0008_sms_forwarded_expiry.sql",
        "0009_sms_schedule.sql",
        "0010_esme_max_sessions.sql",
        "0011_provisioning.sql",
        "0012_sms_protocol_id.sql",
        "0013_account_opening_ota.sql",
        "0014_sms_auth_keys.sql",
        "0015_ota_sms_auth_key.sql",
    ]
);

/// The node's database as the engine opens it.
///
/// SQLite keeps its default 4 KiB pages: the SMS center's rows are written once and updated in
/// place, and with 2 KiB pages (the clearinghouse's) its `submit_sm` answers came later at the
/// same throughput (`numport bench sms`). No readers: every statement runs on the one writer,
/// as the node's reads are few beside the SMS center's writes.
pub const SCHEMA: Schema = Schema {
    role: "operator node",
    migrations: Migrations { sqlite: SQLITE_MIGRATIONS, postgres: POSTGRES_MIGRATIONS },
    sqlite: SqliteLayout { page_size: None, readers: 0 },
};

/// A handle on the node's database; cheap to clone.
#[derive(Clone)]
pub struct OperatorStore {
    db: Db,
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
    /// Open the node's database (`sqlite://path`, `postgres://…`) and bring the schema up to
    /// date. SQLite runs in WAL mode with `synchronous=NORMAL` (the engine's
    /// [`numport_db::SQLITE_PRAGMAS`]): a commit survives `kill -9`, and the one writer never
    /// meets `SQLITE_BUSY` from its own process; the directory of a SQLite file is created if
    /// missing. The database must be the node's own: its migration history is this crate's alone.
    pub async fn open(config: &DbConfig) -> Result<OperatorStore, OperatorError> {
        let db = Db::open(config, &SCHEMA).await?;
        let sms_writer = db.sqlite_writer()?.map(sms_sqlite::SqliteSmsWriter::start).transpose()?;
        Ok(OperatorStore { backend: db.backend, db, sms_writer })
    }

    /// [`OperatorStore::open`] `url` with the default number of PostgreSQL sessions.
    pub async fn connect(url: &str) -> Result<OperatorStore, OperatorError> {
        OperatorStore::open(&DbConfig::new(url)).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection for a few statements (SQLite: the writer, once the holder before is done
    /// with it; given back by dropping it).
    pub(crate) async fn conn(&self) -> Result<DbConn, OperatorError> {
        Ok(self.db.acquire().await?)
    }

    /// Close the database; later calls fail.
    pub async fn close(&self) {
        if let Some(w) = &self.sms_writer {
            w.close();
        }
        self.db.close().await;
    }
}

/// Parse a stored code back into its domain type; a failure means the row was tampered with.
pub(crate) fn parse_col<T: FromStr>(what: &str, s: &str) -> Result<T, OperatorError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| OperatorError::Corrupt(format!("{what} {s:?}: {e}")))
}
