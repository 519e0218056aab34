//! Pipelined statements on PostgreSQL (`Query::execute_pipelined`, `Query::fetch_deferred`):
//! sent at once, their answers read with the next statement's. What must hold: they run in
//! order with what follows, a failed one fails the transaction's COMMIT (nothing is written),
//! a deferred answer is there when asked for, a session given back with answers still owed
//! is cleaned before anyone else uses it, and one that has run more distinct statements than
//! it keeps prepared still runs them in order.
//!
//! Needs `NUMPORT_TEST_POSTGRES_URL` (as `.ci/run` sets it); each test runs on a database of
//! its own on that server.

use numport_db::pg::PgPool;
use numport_db::sql::{self, Connection};
use numport_db::testing::TempDatabase;

/// A pool on a new database, with the table `name` in it; the database goes with the guard.
async fn pool(name: &str) -> Option<(PgPool, String, TempDatabase)> {
    let db = TempDatabase::create().await?;
    let pool = PgPool::connect(db.url(), 2).await.expect("connect to PostgreSQL");
    let table = format!("{name}_{}", std::process::id());
    let mut c = Connection::postgres(pool.acquire().await.unwrap());
    c.execute_batch(&format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id BIGINT PRIMARY KEY, note TEXT)"))
        .await
        .unwrap();
    Some((pool, table, db))
}

async fn ids(c: &mut Connection, table: &str) -> Vec<i64> {
    sql::query_scalar(&format!("SELECT id FROM {table} ORDER BY id")).fetch_all(c).await.unwrap()
}

#[tokio::test]
async fn pipelined_writes_run_in_order_and_a_failed_one_fails_the_commit() {
    let Some((pool, table, _db)) = pool("pipelining").await else { return };
    let insert = format!("INSERT INTO {table} (id, note) VALUES ($1, $2)");
    let mut c = Connection::postgres(pool.acquire().await.unwrap());

    // In order with what follows: a read after two pipelined writes sees both.
    let mut tx = c.begin().await.unwrap();
    sql::query(&insert).bind(1i64).bind("a").execute_pipelined(&mut tx).await.unwrap();
    sql::query(&insert).bind(2i64).bind(None::<&str>).execute_pipelined(&mut tx).await.unwrap();
    assert_eq!(ids(&mut tx, &table).await, [1, 2]);
    sql::query(&insert).bind(3i64).bind("c").execute_pipelined(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ids(&mut c, &table).await, [1, 2, 3]);

    // A duplicate key, pipelined: the COMMIT reports it, and the write before it is undone too.
    let mut tx = c.begin().await.unwrap();
    sql::query(&insert).bind(4i64).bind("d").execute_pipelined(&mut tx).await.unwrap();
    sql::query(&insert).bind(1i64).bind("again").execute_pipelined(&mut tx).await.unwrap();
    let e = tx.commit().await.expect_err("a failed pipelined write must fail the commit");
    assert_eq!(e.sql_state(), Some("23505"), "{e}");
    assert_eq!(ids(&mut c, &table).await, [1, 2, 3]);

    // Outside a transaction it runs at once, so its error is never lost.
    let e = sql::query(&insert).bind(2i64).bind("x").execute_pipelined(&mut c).await.unwrap_err();
    assert_eq!(e.sql_state(), Some("23505"), "{e}");

    // Abandoned with an answer owed: rolled back before the session serves again.
    let mut tx = c.begin().await.unwrap();
    sql::query(&insert).bind(5i64).bind("e").execute_pipelined(&mut tx).await.unwrap();
    drop(tx);
    assert_eq!(ids(&mut c, &table).await, [1, 2, 3]);
    drop(c);
    for _ in 0..4 {
        let mut c = Connection::postgres(pool.acquire().await.unwrap());
        assert_eq!(ids(&mut c, &table).await, [1, 2, 3]);
    }

    let mut c = Connection::postgres(pool.acquire().await.unwrap());
    c.execute_batch(&format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test]
async fn a_deferred_answer_comes_with_the_next_statement_or_when_asked() {
    let Some((pool, table, _db)) = pool("deferred").await else { return };
    let claim = format!("INSERT INTO {table} (id, note) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id");
    let claimed = |rows: Vec<sql::Row>| rows.iter().map(|r| r.try_get::<i64, _>("id").unwrap()).collect::<Vec<_>>();
    let mut c = Connection::postgres(pool.acquire().await.unwrap());

    // Read with the next statement: it ran first, and its rows are kept for the caller.
    let mut tx = c.begin().await.unwrap();
    let first = sql::query(&claim).bind(1i64).bind("a").fetch_deferred(&mut tx).await.unwrap();
    let again = sql::query(&claim).bind(1i64).bind("b").fetch_deferred(&mut tx).await.unwrap();
    assert_eq!(ids(&mut tx, &table).await, [1]);
    assert_eq!(claimed(first.rows(&mut tx).await.unwrap()), [1]);
    assert!(again.rows(&mut tx).await.unwrap().is_empty(), "the second claim of id 1 must find it taken");
    // Asked for before any other statement: the answers owed are read then.
    let alone = sql::query(&claim).bind(2i64).bind("c").fetch_deferred(&mut tx).await.unwrap();
    assert_eq!(claimed(alone.rows(&mut tx).await.unwrap()), [2]);
    tx.commit().await.unwrap();
    assert_eq!(ids(&mut c, &table).await, [1, 2]);

    // A deferred statement that fails: the next statement reports its error, its own answer
    // is an error too, and nothing of the transaction stays.
    let broken = format!("INSERT INTO {table} (id, note) VALUES ($1, $2) RETURNING id");
    let mut tx = c.begin().await.unwrap();
    sql::query(&claim).bind(3i64).bind("d").execute_pipelined(&mut tx).await.unwrap();
    let failed = sql::query(&broken).bind(1i64).bind("dup").fetch_deferred(&mut tx).await.unwrap();
    let e = sql::query(&format!("SELECT id FROM {table}")).fetch_all(&mut tx).await.unwrap_err();
    assert_eq!(e.sql_state(), Some("23505"), "{e}");
    assert!(failed.rows(&mut tx).await.is_err());
    drop(tx);
    assert_eq!(ids(&mut c, &table).await, [1, 2]);

    // Outside a transaction it runs at once.
    let now = sql::query(&claim).bind(4i64).bind("e").fetch_deferred(&mut c).await.unwrap();
    assert_eq!(ids(&mut c, &table).await, [1, 2, 4]);
    assert_eq!(claimed(now.rows(&mut c).await.unwrap()), [4]);

    c.execute_batch(&format!("DROP TABLE {table}")).await.unwrap();
}

#[tokio::test]
async fn a_session_prepares_past_its_cache_and_mixes_types() {
    let Some((pool, table, _db)) = pool("statements").await else { return };
    let mut c = Connection::postgres(pool.acquire().await.unwrap());
    // More distinct statements than a session keeps prepared (256): the rest run unnamed, each
    // prepared for its one use, and pipelined writes around them keep their order.
    let mut tx = c.begin().await.unwrap();
    for i in 0..300i64 {
        let insert = format!("INSERT INTO {table} (id, note) VALUES ($1 + {i}, $2)");
        sql::query(&insert).bind(0i64).bind(format!("n{i}")).execute_pipelined(&mut tx).await.unwrap();
        let n: i64 =
            sql::query_scalar(&format!("SELECT COUNT(*) + {i} - {i} FROM {table}")).fetch_one(&mut tx).await.unwrap();
        assert_eq!(n, i + 1);
    }
    tx.commit().await.unwrap();
    // Text, integers and NULLs of either type come back as bound.
    let row = sql::query(&format!("SELECT id, note, NULL::TEXT AS nothing FROM {table} WHERE id = $1"))
        .bind(299i64)
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(row.try_get::<i64, _>("id").unwrap(), 299);
    assert_eq!(row.try_get::<String, _>("note").unwrap(), "n299");
    assert_eq!(row.try_get::<Option<String>, _>("nothing").unwrap(), None);
    c.execute_batch(&format!("DROP TABLE {table}")).await.unwrap();
}
