//! The migration runner on both engines: order, history, a changed or unknown migration, a
//! failed one, and a database whose history is sqlx's. PostgreSQL runs on a throw-away
//! database of `NUMPORT_TEST_POSTGRES_URL`'s server.

use numport_db::StoreError;
use numport_db::migrate::{self, MigrateError, Migration};
use numport_db::pg::PgPool;
use numport_db::sql::{self, Connection};
use numport_db::testing::TempDatabase;

const SQLITE: &[Migration] = &[
    Migration::new(
        "0001_accounts.sql",
        "-- Accounts.\nCREATE TABLE accounts (id BIGINT PRIMARY KEY, name TEXT NOT NULL);\n\
         INSERT INTO accounts (id, name) VALUES (1, 'first');\n",
    ),
    Migration::new(
        "0002_account_names.sql",
        "CREATE INDEX accounts_name ON accounts (name);\n\
         CREATE TRIGGER accounts_named BEFORE INSERT ON accounts WHEN NEW.name = '' \
         BEGIN SELECT RAISE(ABORT, 'a name'); END;\n",
    ),
    Migration::new("0003_notes.sql", "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT);\n"),
];

/// The same schema in PostgreSQL's dialect, with a function body between `$$` (whose `;` must
/// not split the file).
const POSTGRES: &[Migration] = &[
    Migration::new(
        "0001_accounts.sql",
        "-- Accounts.\nCREATE TABLE accounts (id BIGINT PRIMARY KEY, name TEXT NOT NULL);\n\
         INSERT INTO accounts (id, name) VALUES (1, 'first');\n",
    ),
    Migration::new(
        "0002_account_names.sql",
        "CREATE INDEX accounts_name ON accounts (name);\n\
         CREATE FUNCTION accounts_named() RETURNS trigger LANGUAGE plpgsql AS $$\n\
         BEGIN IF NEW.name = '' THEN RAISE EXCEPTION 'a name'; END IF; RETURN NEW; END; $$;\n\
         CREATE TRIGGER accounts_named BEFORE INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION accounts_named();\n",
    ),
    Migration::new("0003_notes.sql", "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT);\n"),
];

/// sqlx's history table, as sqlx 0.8 creates it on each engine.
const SQLX_TABLE_SQLITE: &str = "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
     installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, \
     execution_time BIGINT NOT NULL)";
const SQLX_TABLE_POSTGRES: &str = "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
     installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, \
     execution_time BIGINT NOT NULL)";

/// A fresh database of one engine, and the connections the test opens on it.
enum Fresh {
    Sqlite(tempfile::TempDir),
    Postgres(TempDatabase),
}

impl Fresh {
    async fn sqlite() -> Fresh {
        Fresh::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Option<Fresh> {
        TempDatabase::create().await.map(Fresh::Postgres)
    }

    async fn connect(&self) -> Connection {
        match self {
            Fresh::Sqlite(dir) => Connection::sqlite(rusqlite::Connection::open(dir.path().join("m.db")).unwrap()),
            Fresh::Postgres(db) => {
                Connection::postgres(PgPool::connect(db.url(), 1).await.unwrap().acquire().await.unwrap())
            }
        }
    }

    fn migrations(&self) -> &'static [Migration] {
        match self {
            Fresh::Sqlite(_) => SQLITE,
            Fresh::Postgres(_) => POSTGRES,
        }
    }

    fn sqlx_table(&self) -> &'static str {
        match self {
            Fresh::Sqlite(_) => SQLX_TABLE_SQLITE,
            Fresh::Postgres(_) => SQLX_TABLE_POSTGRES,
        }
    }
}

async fn count(conn: &mut Connection, table: &str) -> i64 {
    sql::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(conn).await.unwrap()
}

fn migrate_error(e: StoreError) -> MigrateError {
    match e {
        StoreError::Migrate(e) => e,
        other => panic!("expected a migration error, got {other}"),
    }
}

async fn applies_in_order_records_and_checks_its_history(db: Fresh) {
    let all = db.migrations();
    let mut conn = db.connect().await;
    migrate::run(&mut conn, &all[..2]).await.unwrap();
    let history = migrate::applied(&mut conn).await.unwrap();
    assert_eq!(history.iter().map(|a| a.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(history[1].description, "account_names");
    assert_eq!(history[0].checksum, all[0].checksum());
    assert_eq!(history[0].checksum.len(), 64);
    assert!(history.iter().all(|a| a.origin == "applied" && a.applied_at > 1_700_000_000_000));

    // Again: nothing to do. Then the next one.
    migrate::run(&mut conn, &all[..2]).await.unwrap();
    migrate::run(&mut conn, all).await.unwrap();
    assert_eq!(migrate::applied(&mut conn).await.unwrap().len(), 3);
    assert_eq!(count(&mut conn, "accounts").await, 1);
    assert_eq!(count(&mut conn, "notes").await, 0);
    // The trigger of the file with several statements is in place.
    let refused = sql::query("INSERT INTO accounts (id, name) VALUES (2, '')").execute(&mut conn).await;
    assert!(refused.is_err());

    // An applied migration changed: an error that names it.
    let mut changed = all.to_vec();
    changed[1].sql = "CREATE INDEX accounts_name ON accounts (name);\n";
    let e = migrate_error(migrate::run(&mut conn, &changed).await.unwrap_err());
    assert!(matches!(e, MigrateError::Changed { version: 2, .. }), "{e}");
    assert!(e.to_string().contains("migration 2 (account_names)"), "{e}");

    // A history this build does not know all of: the database is a newer build's.
    let e = migrate_error(migrate::run(&mut conn, &all[..1]).await.unwrap_err());
    assert!(matches!(e, MigrateError::Unknown { version: 2, .. }), "{e}");
    assert!(e.to_string().contains("migration 2 (account_names)"), "{e}");

    // A failing migration leaves nothing behind, and is not recorded.
    let mut failing = all.to_vec();
    failing.push(Migration::new("0004_broken.sql", "CREATE TABLE broken (x BIGINT);\nSELECT no_such_function();\n"));
    let e = migrate_error(migrate::run(&mut conn, &failing).await.unwrap_err());
    assert!(matches!(e, MigrateError::Failed { version: 4, .. }), "{e}");
    assert_eq!(migrate::applied(&mut conn).await.unwrap().len(), 3);
    assert!(sql::query("SELECT COUNT(*) FROM broken").execute(&mut conn).await.is_err());
    conn.close().await;
}

/// A database sqlx migrated up to 0002, with the files' earlier text (other comments): its
/// history is adopted, 0003 is applied, nothing runs twice.
async fn adopts_the_history_sqlx_left(db: Fresh) {
    let all = db.migrations();
    let mut conn = db.connect().await;
    conn.execute_batch(db.sqlx_table()).await.unwrap();
    for m in &all[..2] {
        conn.execute_batch(&format!("-- As first written.\n{}", m.sql)).await.unwrap();
        let checksum = if conn.is_postgres() { "'\\x00ff'::bytea" } else { "X'00FF'" };
        let description = m.description.replace('_', " ");
        let version = m.version;
        conn.execute_batch(&format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({version}, '{description}', TRUE, {checksum}, 1000)"
        ))
        .await
        .unwrap();
    }
    migrate::run(&mut conn, all).await.unwrap();
    let history = migrate::applied(&mut conn).await.unwrap();
    let origins: Vec<(i64, &str)> = history.iter().map(|a| (a.version, a.origin.as_str())).collect();
    assert_eq!(origins, [(1, "sqlx"), (2, "sqlx"), (3, "applied")]);
    // The adopted rows take this build's checksums and sqlx's time of application.
    assert_eq!(history[0].checksum, all[0].checksum());
    assert!(history[0].applied_at > 1_700_000_000_000);
    assert_eq!(count(&mut conn, "accounts").await, 1);
    assert_eq!(count(&mut conn, "notes").await, 0);
    // sqlx's table stays as it was; adoption happens once.
    assert_eq!(count(&mut conn, "_sqlx_migrations").await, 2);
    migrate::run(&mut conn, all).await.unwrap();
    conn.close().await;
}

/// sqlx recorded a migration as failed: nothing is adopted, nothing applied.
async fn refuses_a_failed_sqlx_migration(db: Fresh) {
    let all = db.migrations();
    let mut conn = db.connect().await;
    conn.execute_batch(db.sqlx_table()).await.unwrap();
    conn.execute_batch(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (1, 'accounts', FALSE, X'00', 0)"
            .replace("X'00'", if conn.is_postgres() { "'\\x00'::bytea" } else { "X'00'" })
            .as_str(),
    )
    .await
    .unwrap();
    let e = migrate_error(migrate::run(&mut conn, all).await.unwrap_err());
    assert!(matches!(e, MigrateError::SqlxFailed { version: 1, .. }), "{e}");
    assert!(migrate::applied(&mut conn).await.unwrap().is_empty());
    conn.close().await;
}

#[tokio::test]
async fn sqlite_applies_in_order_records_and_checks_its_history() {
    applies_in_order_records_and_checks_its_history(Fresh::sqlite().await).await;
}

#[tokio::test]
async fn sqlite_adopts_the_history_sqlx_left() {
    adopts_the_history_sqlx_left(Fresh::sqlite().await).await;
}

#[tokio::test]
async fn sqlite_refuses_a_failed_sqlx_migration() {
    refuses_a_failed_sqlx_migration(Fresh::sqlite().await).await;
}

#[tokio::test]
async fn postgres_applies_in_order_records_and_checks_its_history() {
    let Some(db) = Fresh::postgres().await else { return };
    applies_in_order_records_and_checks_its_history(db).await;
}

#[tokio::test]
async fn postgres_adopts_the_history_sqlx_left() {
    let Some(db) = Fresh::postgres().await else { return };
    adopts_the_history_sqlx_left(db).await;
}

#[tokio::test]
async fn postgres_refuses_a_failed_sqlx_migration() {
    let Some(db) = Fresh::postgres().await else { return };
    refuses_a_failed_sqlx_migration(db).await;
}
