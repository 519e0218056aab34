//! Opening the database: SQLite (WAL) by path or PostgreSQL by URL, then the migrations.

use std::str::FromStr;
use std::time::Duration;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::Result;

/// Which engine is behind the `Any` pool; only migrations and pool sizing depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `postgres://…` and `postgresql://…` are PostgreSQL; anything else is a SQLite file.
    pub fn of(url: &str) -> Backend {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") { Backend::Postgres } else { Backend::Sqlite }
    }
}

/// How every numport SQLite database runs. WAL with `synchronous=NORMAL`: a commit survives a
/// crash of the process (`kill -9`) without an fsync per transaction; only a power cut can lose
/// the last commits. A 64 MiB page cache and reads through mmap keep hot tables out of
/// `pread` (the SMS center's tables are read and written thousands of times a second).
pub const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; \
     PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456;";

/// The file a SQLite URL names, or `None` for an in-memory database.
pub fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::Path::new(path))
}

/// A SQLite URL ready to open: its directory created (SQLite creates the file, not the folder)
/// and `mode=rwc` added so a first start creates the database.
pub fn prepare_sqlite_url(url: &str) -> std::io::Result<String> {
    if let Some(file) = sqlite_file(url)
        && let Some(dir) = file.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    if url.contains("mode=") {
        return Ok(url.to_owned());
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}mode=rwc"))
}

/// A handle on the clearinghouse database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    handle: Handle,
    pub backend: Backend,
}

/// How the database is reached. SQLite has one writer, so one connection behind a fair mutex
/// serves it best: no `SQLITE_BUSY` from our own process, and none of the pool's bookkeeping
/// (sqlx pings a connection on every return to its pool, and for SQLite each ping is a round
/// trip to the connection's worker thread, as costly as a statement).
#[derive(Debug, Clone)]
enum Handle {
    Pool(AnyPool),
    Single(Arc<Mutex<Option<AnyConnection>>>),
}

/// A connection lent out by [`Db::acquire`]; derefs to the connection.
pub enum DbConn {
    Pooled(PoolConnection<Any>),
    Single(OwnedMutexGuard<Option<AnyConnection>>),
}

impl Deref for DbConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            DbConn::Pooled(c) => c,
            // `acquire` hands out only a guard holding a connection.
            DbConn::Single(g) => g.as_ref().unwrap_or_else(|| unreachable!("closed connection lent out")),
        }
    }
}

impl DerefMut for DbConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            DbConn::Pooled(c) => c,
            DbConn::Single(g) => g.as_mut().unwrap_or_else(|| unreachable!("closed connection lent out")),
        }
    }
}

/// A transaction from [`Db::begin`]; derefs to its connection. Dropped without `commit`, it
/// is rolled back before the connection serves anyone else.
pub struct DbTx {
    conn: Option<DbConn>,
}

impl DbTx {
    pub async fn commit(mut self) -> Result<()> {
        let Some(mut conn) = self.conn.take() else { return Ok(()) };
        if let Err(e) = conn.execute("COMMIT").await {
            let _ = conn.execute("ROLLBACK").await;
            return Err(e.into());
        }
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<()> {
        if let Some(mut conn) = self.conn.take() {
            conn.execute("ROLLBACK").await?;
        }
        Ok(())
    }
}

impl Deref for DbTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.conn.as_deref().unwrap_or_else(|| unreachable!("transaction used after its end"))
    }
}

impl DerefMut for DbTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_deref_mut().unwrap_or_else(|| unreachable!("transaction used after its end"))
    }
}

impl Drop for DbTx {
    fn drop(&mut self) {
        // Abandoned (an error, or the request's future was dropped): the connection goes with
        // a task that rolls back first, so the next user never inherits the open transaction.
        if let Some(mut conn) = self.conn.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = conn.execute("ROLLBACK").await;
            });
        }
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connect to `url` (`sqlite://path`, `postgres://…`) and bring the schema up to date.
    /// SQLite runs with [`SQLITE_PRAGMAS`] on one connection.
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url);
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url).map_err(|e| sqlx::Error::Configuration(Box::new(e)))?,
            Backend::Postgres => url.to_owned(),
        };
        let opts = AnyConnectOptions::from_str(&url)?;
        let handle = match backend {
            Backend::Sqlite => {
                let mut conn = AnyConnection::connect_with(&opts).await?;
                conn.execute(SQLITE_PRAGMAS).await?;
                Handle::Single(Arc::new(Mutex::new(Some(conn))))
            }
            Backend::Postgres => Handle::Pool(
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await?,
            ),
        };
        let db = Db { handle, backend };
        db.migrate().await?;
        Ok(db)
    }

    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.acquire().await?;
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&mut *conn).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&mut *conn).await?,
        }
        Ok(())
    }

    pub async fn acquire(&self) -> Result<DbConn> {
        match &self.handle {
            Handle::Pool(pool) => Ok(DbConn::Pooled(pool.acquire().await?)),
            Handle::Single(m) => {
                let guard = m.clone().lock_owned().await;
                if guard.is_none() {
                    return Err(sqlx::Error::PoolClosed.into());
                }
                Ok(DbConn::Single(guard))
            }
        }
    }

    pub async fn begin(&self) -> Result<DbTx> {
        let mut conn = self.acquire().await?;
        conn.execute("BEGIN").await?;
        Ok(DbTx { conn: Some(conn) })
    }

    pub fn is_closed(&self) -> bool {
        match &self.handle {
            Handle::Pool(pool) => pool.is_closed(),
            Handle::Single(m) => m.try_lock().is_ok_and(|g| g.is_none()),
        }
    }

    pub async fn close(&self) {
        match &self.handle {
            Handle::Pool(pool) => pool.close().await,
            Handle::Single(m) => {
                if let Some(conn) = m.lock().await.take() {
                    let _ = conn.close().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_are_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let url = prepare_sqlite_url(&format!("sqlite://{}/a/b/x.db", dir.path().display())).unwrap();
        assert!(dir.path().join("a/b").is_dir());
        assert!(url.ends_with("x.db?mode=rwc"));
        assert_eq!(prepare_sqlite_url("sqlite::memory:").unwrap(), "sqlite::memory:?mode=rwc");
        assert_eq!(prepare_sqlite_url("sqlite://x.db?mode=ro").unwrap(), "sqlite://x.db?mode=ro");
        assert_eq!(sqlite_file("sqlite://data/opa.db?mode=rwc"), Some(std::path::Path::new("data/opa.db")));
        assert_eq!(sqlite_file("sqlite:/tmp/x.db"), Some(std::path::Path::new("/tmp/x.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://:memory:?mode=rwc"), None);
        assert_eq!(Backend::of("postgresql://h/db"), Backend::Postgres);
        assert_eq!(Backend::of("sqlite://x.db"), Backend::Sqlite);
    }
}
