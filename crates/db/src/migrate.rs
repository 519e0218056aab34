//! Schema migrations: SQL files embedded at compile time ([`crate::migrations!`]), applied in
//! order on the engine's own [`Connection`], each in a transaction of its own, and recorded in
//! the table `numport_migrations` with its version, description, SHA-256 and time.
//!
//! Why not a migration crate: none fits both engines on connections of ours as asked here.
//! `sqlx`'s migrator runs only on sqlx's own connections (a third database stack beside
//! rusqlite and [`crate::pg`]). `refinery` could drive our [`Connection`] through its
//! `AsyncMigrate` traits, but it records a 64-bit SipHash, not a SHA-256, in a history table
//! of its own layout, and adopting sqlx's history would still be code of ours.
//! `rusqlite_migration` is SQLite only. What is needed is small: a list, a table, and a
//! transaction per file.
//!
//! What the history guards against:
//! - a migration applied and then changed (its checksum differs): an error naming it;
//! - a database migrated by a newer build (its history has a version this build does not
//!   know): an error naming the version, so an old binary never runs against a newer schema.
//!
//! A database migrated by sqlx keeps its `_sqlx_migrations` table; on the first run here its
//! applied versions are adopted (see `adopt_sqlx_history`).
//!
//! Each file runs as one script: on PostgreSQL through the simple-query protocol, so a file
//! may hold several statements and `CREATE FUNCTION … $$ … $$` bodies; on SQLite through
//! `sqlite3_exec`'s equivalent, [`rusqlite::Connection::execute_batch`].

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::sql::{self, Connection};
use crate::{Result, StoreError};

/// Where the history is kept.
const TABLE: &str = "numport_migrations";

/// Held on PostgreSQL while migrating, so that two processes starting together apply each
/// migration once (an arbitrary constant: `numport` in ASCII).
const PG_LOCK: i64 = 0x006e_756d_706f_7274;

/// One migration file: `NNNN_description.sql`, its version the number.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    /// The name after the number, underscores and all (`settle_in_batches`).
    pub description: &'static str,
    pub file: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// The migration in `file` (a name such as `0009_settle_in_batches.sql`) with its text.
    /// In a `const` (as [`crate::migrations!`] builds it) a badly formed name fails the build.
    pub const fn new(file: &'static str, sql: &'static str) -> Migration {
        let bytes = file.as_bytes();
        let mut i = 0;
        let mut version: i64 = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            version = version * 10 + (bytes[i] - b'0') as i64;
            i += 1;
        }
        assert!(i > 0 && i < bytes.len() && bytes[i] == b'_', "a migration file is named NNNN_description.sql");
        let n = bytes.len();
        assert!(
            n > i + 5 && bytes[n - 4] == b'.' && bytes[n - 3] == b's' && bytes[n - 2] == b'q' && bytes[n - 1] == b'l',
            "a migration file ends in .sql"
        );
        let Some((head, _)) = file.split_at_checked(n - 4) else { panic!("a migration file name is ASCII") };
        let Some((_, description)) = head.split_at_checked(i + 1) else { panic!("a migration file name is ASCII") };
        Migration { version, description, file, sql }
    }

    /// SHA-256 of the file, hex.
    pub fn checksum(&self) -> String {
        hex(&Sha256::digest(self.sql.as_bytes()))
    }
}

/// The migrations of one folder, in order: `migrations!("migrations/sqlite", ["0001_a.sql",
/// "0002_b.sql"])`, the folder relative to the calling crate's `Cargo.toml`. Files are listed
/// by hand (no build script); [`check_folder`] in a test keeps the list and the folder equal.
#[macro_export]
macro_rules! migrations {
    ($dir:literal, [$($file:literal),+ $(,)?]) => {
        &[$($crate::migrate::Migration::new(
            $file,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $dir, "/", $file)),
        )),+]
    };
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "migration {version} ({description}) differs from the one applied to this database: an applied migration must not change; add a new one"
    )]
    Changed { version: i64, description: String },
    #[error(
        "the database has migration {version} ({description}), which this build does not know: it was migrated by a newer build"
    )]
    Unknown { version: i64, description: String },
    #[error(
        "sqlx's history has migration {version} ({description}) as failed: repair the schema by hand and delete that row of _sqlx_migrations"
    )]
    SqlxFailed { version: i64, description: String },
    #[error("migration {version} ({description}) failed: {source}")]
    Failed {
        version: i64,
        description: &'static str,
        #[source]
        source: Box<StoreError>,
    },
    #[error("migration list: {0}")]
    List(String),
}

/// One row of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub description: String,
    /// SHA-256 of the file as applied (hex). For a migration adopted from sqlx's history, of
    /// the file as this build has it (see `adopt_sqlx_history`).
    pub checksum: String,
    /// Unix milliseconds.
    pub applied_at: i64,
    /// `applied` (by this runner) or `sqlx` (adopted from `_sqlx_migrations`).
    pub origin: String,
}

/// Bring `conn`'s database up to date with `migrations` (in ascending version order).
pub async fn run(conn: &mut Connection, migrations: &[Migration]) -> Result<()> {
    check_list(migrations)?;
    if conn.is_postgres() {
        sql::query("SELECT pg_advisory_lock($1)").bind(PG_LOCK).execute(conn).await?;
        let outcome = run_locked(conn, migrations).await;
        let unlocked = sql::query("SELECT pg_advisory_unlock($1)").bind(PG_LOCK).execute(conn).await;
        outcome.and(unlocked.map(drop))
    } else {
        run_locked(conn, migrations).await
    }
}

async fn run_locked(conn: &mut Connection, migrations: &[Migration]) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         checksum TEXT NOT NULL, applied_at BIGINT NOT NULL, origin TEXT NOT NULL)"
    ))
    .await?;
    transaction(conn, async |conn: &mut Connection| adopt_sqlx_history(conn, migrations).await).await?;
    let history = applied(conn).await?;
    for done in &history {
        check_applied(done, migrations)?;
    }
    for m in migrations {
        if history.iter().any(|a| a.version == m.version) {
            continue;
        }
        let outcome = transaction(conn, async |conn: &mut Connection| {
            // Another process may have applied it meanwhile (SQLite: `BEGIN IMMEDIATE` orders
            // the processes; PostgreSQL: the advisory lock does).
            if let Some(done) = applied(conn).await?.iter().find(|a| a.version == m.version) {
                return check_applied(done, migrations);
            }
            conn.execute_batch(m.sql).await?;
            record(conn, m, now_ms(), "applied").await
        })
        .await;
        outcome.map_err(|e| match e {
            e @ StoreError::Migrate(_) => e,
            e => MigrateError::Failed { version: m.version, description: m.description, source: Box::new(e) }.into(),
        })?;
        tracing::info!(version = m.version, description = m.description, "migration applied");
    }
    Ok(())
}

/// The history, by version.
pub async fn applied(conn: &mut Connection) -> Result<Vec<Applied>> {
    let rows =
        sql::query(&format!("SELECT version, description, checksum, applied_at, origin FROM {TABLE} ORDER BY version"))
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| {
            Ok(Applied {
                version: r.try_get(0)?,
                description: r.try_get(1)?,
                checksum: r.try_get(2)?,
                applied_at: r.try_get(3)?,
                origin: r.try_get(4)?,
            })
        })
        .collect()
}

fn check_applied(done: &Applied, migrations: &[Migration]) -> Result<()> {
    let Some(m) = migrations.iter().find(|m| m.version == done.version) else {
        return Err(MigrateError::Unknown { version: done.version, description: done.description.clone() }.into());
    };
    if m.checksum() != done.checksum {
        return Err(MigrateError::Changed { version: m.version, description: m.description.to_owned() }.into());
    }
    Ok(())
}

/// A database migrated by sqlx, never by this runner: record sqlx's applied versions as ours.
///
/// Each must be one this build knows, under the same description (sqlx's is the file name's,
/// underscores as spaces), and none may have failed. sqlx stored the SHA-384 of the file it
/// ran; the files' comments have been rewritten since, so that checksum is not compared:
/// the adopted row takes the SHA-256 of the file as this build has it, with origin `sqlx`,
/// and from then on that file may not change. Migrations sqlx had not applied run as usual
/// afterwards. `_sqlx_migrations` is left as it is.
async fn adopt_sqlx_history(conn: &mut Connection, migrations: &[Migration]) -> Result<()> {
    let ours: i64 = sql::query_scalar(&format!("SELECT COUNT(*) FROM {TABLE}")).fetch_one(conn).await?;
    if ours > 0 || !table_exists(conn, "_sqlx_migrations").await? {
        return Ok(());
    }
    let installed_ms = if conn.is_postgres() {
        "CAST(EXTRACT(EPOCH FROM installed_on) * 1000 AS BIGINT)"
    } else {
        "CAST(strftime('%s', installed_on) AS INTEGER) * 1000"
    };
    let rows: Vec<(i64, String, bool, i64)> = sql::query_as(&format!(
        "SELECT version, description, CASE WHEN success THEN 1 ELSE 0 END, {installed_ms} \
         FROM _sqlx_migrations ORDER BY version"
    ))
    .fetch_all(conn)
    .await?;
    for (version, description, success, installed_at) in rows {
        if !success {
            return Err(MigrateError::SqlxFailed { version, description }.into());
        }
        let Some(m) = migrations.iter().find(|m| m.version == version) else {
            return Err(MigrateError::Unknown { version, description }.into());
        };
        if m.description.replace('_', " ") != description {
            return Err(MigrateError::Changed { version, description }.into());
        }
        record(conn, m, installed_at, "sqlx").await?;
        tracing::info!(version, description = m.description, "migration adopted from sqlx's history");
    }
    Ok(())
}

async fn record(conn: &mut Connection, m: &Migration, applied_at: i64, origin: &str) -> Result<()> {
    sql::query(&format!(
        "INSERT INTO {TABLE} (version, description, checksum, applied_at, origin) VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(m.version)
    .bind(m.description)
    .bind(m.checksum())
    .bind(applied_at)
    .bind(origin)
    .execute(conn)
    .await
    .map(drop)
}

async fn table_exists(conn: &mut Connection, table: &str) -> Result<bool> {
    let sql = if conn.is_postgres() {
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
    } else {
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
    };
    Ok(sql::query_scalar::<i64>(sql).bind(table).fetch_one(conn).await? > 0)
}

/// Run `work` in a transaction of its own (SQLite: `BEGIN IMMEDIATE`, so that the reads in it
/// already hold the write lock): committed if it succeeds, rolled back if not.
async fn transaction<T>(conn: &mut Connection, work: impl AsyncFnOnce(&mut Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch(if conn.is_postgres() { "BEGIN" } else { "BEGIN IMMEDIATE" }).await?;
    match work(conn).await {
        Ok(out) => {
            if let Err(e) = conn.execute_batch("COMMIT").await {
                if !conn.is_postgres() {
                    let _ = conn.execute_batch("ROLLBACK").await;
                }
                return Err(e);
            }
            Ok(out)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Versions ascending, each once.
fn check_list(migrations: &[Migration]) -> Result<()> {
    for pair in migrations.windows(2) {
        if pair[0].version >= pair[1].version {
            return Err(MigrateError::List(format!("{} is listed before {}", pair[0].file, pair[1].file)).into());
        }
    }
    Ok(())
}

/// Whether `migrations` are exactly the `.sql` files in `dir`, with the same text: for a test
/// in each crate that embeds a folder, so that a file added to it is never left out.
pub fn check_folder(dir: &Path, migrations: &[Migration]) -> std::result::Result<(), String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect();
    files.sort();
    let listed: Vec<&str> = migrations.iter().map(|m| m.file).collect();
    if files != listed {
        return Err(format!("{} holds {files:?}, the list has {listed:?}", dir.display()));
    }
    for m in migrations {
        let text = std::fs::read_to_string(dir.join(m.file)).map_err(|e| format!("{}: {e}", m.file))?;
        if text != m.sql {
            return Err(format!("{} changed since it was embedded: rebuild", m.file));
        }
    }
    check_list(migrations).map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
