//! The node's own database, and every SQL statement the node runs.
//!
//! Like the clearinghouse's store, one code path serves both engines: sqlx's `Any` driver,
//! `$n` placeholders, only `BIGINT` and `TEXT` columns, and dialect differences confined to the
//! two migration folders. Unlike it, an operator node keeps its SQL behind one handle,
//! [`OperatorStore`], because the node has few tables and no transaction spans two modules.
//!
//! - [`subscribers`]: subscriber accounts (port key, the figures of a credit query, status).
//! - [`messages`]: clearinghouse messages received (replay guard and durable work queue) and the
//!   inbox cursor.
//! - [`events`]: the node's record of porting events.

pub mod events;
pub mod messages;
pub mod subscribers;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::OperatorError;

pub use events::{NewPortEvent, PortEvent};
pub use messages::ReceivedMessage;
pub use subscribers::{Subscriber, SubscriberStatus};

/// Which engine is behind the `Any` pool; only migrations and pool sizing depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A handle on the node's database; cheap to clone.
#[derive(Debug, Clone)]
pub struct OperatorStore {
    pool: AnyPool,
    backend: Backend,
}

impl OperatorStore {
    /// Connect to `url` (`sqlite://path`, `postgres://…`) and bring the schema up to date.
    ///
    /// SQLite runs in WAL mode with `synchronous=NORMAL` on a single connection, as the
    /// clearinghouse does: a commit survives `kill -9`, and the one writer never meets
    /// `SQLITE_BUSY` from its own process. The directory of a SQLite file is created if missing.
    /// The database must be the node's own: its migration history is this crate's alone.
    pub async fn connect(url: &str) -> Result<OperatorStore, OperatorError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let url = match backend {
            Backend::Sqlite => {
                create_sqlite_dir(url)?;
                if url.contains("mode=") {
                    url.to_owned()
                } else {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    format!("{url}{sep}mode=rwc")
                }
            }
            Backend::Postgres => url.to_owned(),
        };
        let opts = AnyConnectOptions::from_str(&url)?;
        let pool = match backend {
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    // sqlx pings an idle connection before handing it out by default: for
                    // SQLite that is one more round trip to the connection's worker thread per
                    // acquire, and a local file connection has no peer that could have gone.
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                 PRAGMA busy_timeout=10000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await?
            }
        };
        let store = OperatorStore { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    pub async fn migrate(&self) -> Result<(), OperatorError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `sqlite://data/x.db` needs `data/` to exist; SQLite creates the file but not its directory.
fn create_sqlite_dir(url: &str) -> Result<(), OperatorError> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    Ok(())
}

/// Parse a stored code back into its domain type; a failure means the row was tampered with.
pub(crate) fn parse_col<T: FromStr>(what: &str, s: &str) -> Result<T, OperatorError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| OperatorError::Corrupt(format!("{what} {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_dir_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/a/b/node.db?mode=rwc", dir.path().display());
        create_sqlite_dir(&url).unwrap();
        assert!(dir.path().join("a/b").is_dir());
        create_sqlite_dir("sqlite::memory:").unwrap();
        create_sqlite_dir("sqlite://node.db").unwrap();
    }
}
