//! The outbox's delivery on both engines: one process at a time holds the delivery lease, and
//! a pass leaves out the messages its process has in flight.

mod common;

use clearinghouse::store::{operators, outbox};
use common::TestDb;
use numport_db::Backend;

async fn one_deliverer_and_nothing_sent_twice(backend: Backend) {
    let Some((_guard, url)) = TestDb::create(backend).await else { return };
    let db = clearinghouse::store::connect(&url).await.unwrap();
    let mut conn = db.acquire().await.unwrap();

    // The lease: taken, refused to another while it runs, renewed by its holder, taken over
    // once it has run out, and free at once when given up.
    assert!(outbox::hold_delivery(&mut conn, "a", 1_000, 16_000).await.unwrap());
    assert!(!outbox::hold_delivery(&mut conn, "b", 2_000, 17_000).await.unwrap());
    // Renewed, or taken back by its holder restarted (the same host and address).
    assert!(outbox::hold_delivery(&mut conn, "a", 9_000, 24_000).await.unwrap());
    assert!(!outbox::hold_delivery(&mut conn, "b", 23_999, 38_999).await.unwrap());
    assert!(outbox::hold_delivery(&mut conn, "b", 24_000, 39_000).await.unwrap());
    assert!(!outbox::hold_delivery(&mut conn, "a", 25_000, 40_000).await.unwrap(), "a lost it");
    outbox::release_delivery(&mut conn, "a").await.unwrap();
    assert!(!outbox::hold_delivery(&mut conn, "a", 25_000, 40_000).await.unwrap(), "only b can give it up");
    outbox::release_delivery(&mut conn, "b").await.unwrap();
    assert!(outbox::hold_delivery(&mut conn, "a", 25_000, 40_000).await.unwrap());

    // Due messages, oldest first, leaving out those in flight; one due later is not there yet.
    // An operator without a callback URL has nothing due until it registers one.
    let op = operators::insert(&mut conn, &"opa".parse().unwrap(), &"D001".parse().unwrap(), None, 0).await.unwrap();
    for (order, send_at) in [(1, 10), (2, 20), (3, 30), (4, 5_000)] {
        outbox::enqueue(&mut conn, op.id, "credit_query", Some(order), "{}", 0, send_at).await.unwrap();
    }
    let orders = |due: Vec<outbox::Due>| due.iter().map(|d| d.message.order_id.unwrap()).collect::<Vec<_>>();
    assert!(outbox::due(&mut conn, 100, 10, &[]).await.unwrap().is_empty(), "no callback URL: waits in the inbox");
    operators::set_callback_url(&mut conn, op.id, Some("https://opa.example/cb")).await.unwrap();
    assert_eq!(orders(outbox::due(&mut conn, 100, 10, &[]).await.unwrap()), [1, 2, 3]);
    let first = outbox::due(&mut conn, 100, 1, &[]).await.unwrap()[0].message.id;
    assert_eq!(orders(outbox::due(&mut conn, 100, 10, &[first]).await.unwrap()), [2, 3]);
    let all: Vec<i64> = outbox::due(&mut conn, 100, 10, &[]).await.unwrap().iter().map(|d| d.message.id).collect();
    assert!(outbox::due(&mut conn, 100, 10, &all).await.unwrap().is_empty());
    // Delivered: never due again, whatever is in flight.
    outbox::mark_delivered(&mut conn, &[first], 100).await.unwrap();
    assert_eq!(orders(outbox::due(&mut conn, 100, 10, &[]).await.unwrap()), [2, 3]);
}

#[tokio::test]
async fn sqlite_one_deliverer_and_nothing_sent_twice() {
    one_deliverer_and_nothing_sent_twice(Backend::Sqlite).await
}

#[tokio::test]
async fn postgres_one_deliverer_and_nothing_sent_twice() {
    one_deliverer_and_nothing_sent_twice(Backend::Postgres).await
}
