//! An answer stored under an idempotency key is also the key's claim (`idempotency::record`):
//! a second copy of the request that writes the same key, after the first committed or while
//! it is still running, fails as `key_taken` and commits nothing of what it did. On PostgreSQL
//! the write is pipelined, so the failure comes with the COMMIT.

mod common;

use std::time::Duration;

use clearinghouse::store::idempotency;
use common::TestDb;
use numport_db::Backend;

async fn key_taken_by_a_committed_or_running_copy(backend: Backend) {
    let Some((_guard, url)) = TestDb::create(backend).await else { return };
    let db = clearinghouse::store::connect(&url).await.unwrap();
    let record = async |tx: &mut numport_db::DbTx, key: &str, body: &str| {
        idempotency::record(tx, 7, key, "hash", 200, body, 1).await
    };

    let mut tx = db.begin().await.unwrap();
    record(&mut tx, "k", "first").await.unwrap();
    tx.commit().await.unwrap();

    // A copy after the first committed: its other writes go with it.
    let mut tx = db.begin().await.unwrap();
    record(&mut tx, "other", "written by the copy").await.unwrap();
    let e = match record(&mut tx, "k", "second").await {
        Ok(()) => tx.commit().await.expect_err("a taken key must fail the commit"),
        Err(e) => {
            tx.rollback().await.unwrap();
            e
        }
    };
    assert!(idempotency::key_taken(&e), "{e}");
    let mut conn = db.acquire().await.unwrap();
    assert_eq!(idempotency::get(&mut conn, 7, "k").await.unwrap().unwrap().body, "first");
    assert_eq!(idempotency::get(&mut conn, 7, "other").await.unwrap(), None, "the copy committed nothing");
    drop(conn);

    // A copy while the first is still running: it waits, then finds the key taken.
    let mut first = db.begin().await.unwrap();
    record(&mut first, "r", "first").await.unwrap();
    // Read back, so that the pipelined write has run (uncommitted) before the copy starts.
    assert!(idempotency::get(&mut first, 7, "r").await.unwrap().is_some());
    let copy = tokio::spawn({
        let db = db.clone();
        async move {
            let mut tx = db.begin().await?;
            match idempotency::record(&mut tx, 7, "r", "hash", 200, "second", 2).await {
                Ok(()) => tx.commit().await,
                Err(e) => tx.rollback().await.and(Err(e)),
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!copy.is_finished(), "the copy must wait for the running request");
    first.commit().await.unwrap();
    let e = copy.await.unwrap().expect_err("the copy must lose");
    assert!(idempotency::key_taken(&e), "{e}");

    // Other errors are not mistaken for it.
    let mut conn = db.acquire().await.unwrap();
    let e = numport_db::sql::query("INSERT INTO nowhere VALUES (1)").execute(&mut conn).await.unwrap_err();
    assert!(!idempotency::key_taken(&e), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_key_taken_by_a_committed_or_running_copy() {
    key_taken_by_a_committed_or_running_copy(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_key_taken_by_a_committed_or_running_copy() {
    key_taken_by_a_committed_or_running_copy(Backend::Postgres).await
}
