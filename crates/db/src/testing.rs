//! Throw-away PostgreSQL databases, for tests and benchmarks (cargo feature `testing`).
//!
//! ```no_run
//! # async fn test() {
//! let Some(db) = numport_db::testing::TempDatabase::create().await else { return };
//! let schema = numport_db::Schema {
//!     role: "example",
//!     migrations: numport_db::Migrations { sqlite: &[], postgres: &[] },
//!     sqlite: numport_db::SqliteLayout { page_size: None, readers: 0 },
//! };
//! let store = numport_db::Db::open(&numport_db::DbConfig::new(db.url()), &schema).await.unwrap();
//! # }
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

use crate::Result;
use crate::pg::PgPool;
use crate::sql::Connection;

/// A database of its own, created on a server and dropped (`WITH (FORCE)`, so sessions still
/// open do not keep it) when this is dropped or [`TempDatabase::remove`]d.
#[derive(Debug)]
pub struct TempDatabase {
    admin_url: String,
    name: String,
    url: String,
    removed: bool,
}

impl TempDatabase {
    /// A new database on the server that `NUMPORT_TEST_POSTGRES_URL` names; when the variable
    /// is unset, [`testkit::postgres_url`] fails the test under `CI=true` and otherwise prints
    /// one skip line, and this returns `None`. Panics if the server refuses.
    pub async fn create() -> Option<TempDatabase> {
        let admin_url = testkit::postgres_url()?;
        match TempDatabase::create_on(&admin_url, "np_test").await {
            Ok(db) => Some(db),
            Err(e) => panic!("creating a test database on NUMPORT_TEST_POSTGRES_URL ({admin_url}): {e}"),
        }
    }

    /// A new database named `{prefix}_{pid}_{n}_{nanos}` on the server of `admin_url` (whose
    /// user may create databases).
    pub async fn create_on(admin_url: &str, prefix: &str) -> Result<TempDatabase> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let name = format!("{prefix}_{}_{}_{nanos}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        admin(admin_url, &format!("CREATE DATABASE {name}")).await?;
        let url = with_database(admin_url, &name);
        Ok(TempDatabase { admin_url: admin_url.to_owned(), name, url, removed: false })
    }

    /// `postgres://…/{name}`, with the server, user and parameters of the admin URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drop the database now.
    pub async fn remove(mut self) -> Result<()> {
        self.removed = true;
        admin(&self.admin_url, &drop_statement(&self.name)).await
    }
}

impl Drop for TempDatabase {
    /// Drops the database on a thread of its own (`Drop` cannot await); best effort.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (admin_url, statement) = (self.admin_url.clone(), drop_statement(&self.name));
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(admin(&admin_url, &statement)).ok()
        })
        .join();
    }
}

fn drop_statement(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
}

/// Run one statement that may not run inside a transaction, on a session of its own.
async fn admin(admin_url: &str, statement: &str) -> Result<()> {
    let pool = PgPool::connect(admin_url, 1).await?;
    let mut conn = Connection::postgres(pool.acquire().await?);
    let outcome = conn.execute_batch(statement).await;
    conn.close().await;
    pool.close();
    outcome
}

/// `url` with its database replaced by `name`, its query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (head, query) = url.split_once('?').map_or((url, None), |(h, q)| (h, Some(q)));
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let root = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_of_a_url_is_replaced() {
        use super::with_database;
        assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(with_database("postgresql://h/db?host=/run/pg", "x"), "postgresql://h/x?host=/run/pg");
    }
}
