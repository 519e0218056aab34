//! `LISTEN` on the engine's own PostgreSQL client: what another session notifies arrives, and
//! after the session is lost the next receive listens again. Needs `NUMPORT_TEST_POSTGRES_URL`.

use std::time::Duration;

use numport_db::pg::{PgListener, PgPool};
use numport_db::sql::{self, Connection};
use numport_db::testing::TempDatabase;

async fn notify(conn: &mut Connection, channel: &str, payload: &str) {
    sql::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(conn).await.unwrap();
}

#[tokio::test]
async fn notifications_from_another_session_arrive_and_survive_a_lost_session() {
    let Some(db) = TempDatabase::create().await else { return };
    let pool = PgPool::connect(db.url(), 2).await.unwrap();
    let mut conn = Connection::postgres(pool.acquire().await.unwrap());
    let mut listener = PgListener::connect(db.url()).await.unwrap();
    listener.listen("numport_test").await.unwrap();
    listener.listen("Other Channel").await.unwrap();
    let recv = async |l: &mut PgListener| tokio::time::timeout(Duration::from_secs(5), l.recv()).await.unwrap();

    // Notified inside a transaction: delivered once it commits, in order.
    conn.execute_batch("BEGIN").await.unwrap();
    notify(&mut conn, "numport_test", "1").await;
    notify(&mut conn, "Other Channel", "2").await;
    conn.execute_batch("COMMIT").await.unwrap();
    let n = recv(&mut listener).await.unwrap();
    assert_eq!((n.channel.as_str(), n.payload.as_str()), ("numport_test", "1"));
    let n = recv(&mut listener).await.unwrap();
    assert_eq!((n.channel.as_str(), n.payload.as_str()), ("Other Channel", "2"));

    // Waiting can be given up (as `select!` does) without losing the session.
    assert!(tokio::time::timeout(Duration::from_millis(50), listener.recv()).await.is_err());
    notify(&mut conn, "numport_test", "3").await;
    assert_eq!(recv(&mut listener).await.unwrap().payload, "3");

    // The server ends the listener's session: the receive fails, the next one listens again.
    sql::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert!(recv(&mut listener).await.is_err());
    let next = tokio::spawn(async move {
        let n = listener.recv().await;
        (listener, n)
    });
    // Until the listener is back, a notification goes nowhere; send until one arrives.
    for i in 0.. {
        notify(&mut conn, "Other Channel", &format!("again {i}")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if next.is_finished() || i > 250 {
            break;
        }
    }
    let (listener, n) = next.await.unwrap();
    assert!(n.unwrap().payload.starts_with("again"));
    listener.close().await;
    conn.close().await;
    pool.close();
}
