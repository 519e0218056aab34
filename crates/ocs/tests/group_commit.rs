//! The working copy in memory and its group commit, on SQLite and on PostgreSQL: a copy of a
//! request whose change is still committing gets its answer only once it is durable; a group
//! commit the database refuses fails its requests and leaves memory as the database holds it.

mod common;

use common::{TestOcs, ccr};
use numport_core::Money;
use ocs::session::{RequestType::*, result_code::*};
use ocs::{Account, OcsError};

const A: &str = "4790000001";

both_backends! {
    a_copy_in_the_same_group_waits_for_the_commit => a_copy_in_the_same_group_waits_for_the_commit;
    a_refused_group_commit_leaves_memory_as_the_database => a_refused_group_commit_leaves_memory_as_the_database;
    a_session_state_outside_the_three_is_refused => a_session_state_outside_the_three_is_refused;
}

async fn funded(t: &TestOcs, msisdn: &str, amount: i64, credit: i64) {
    t.ocs.create_account(msisdn, Money(credit)).await.unwrap();
    t.ocs.recharge(msisdn, Money(amount), None, &format!("seed-{msisdn}")).await.unwrap();
}

/// The account as the database holds it.
async fn stored_account(t: &TestOcs, msisdn: &str) -> Account {
    let mut conn = t.ocs.db().read().await.unwrap();
    let id = ocs::store::account_id(&mut conn, msisdn).await.unwrap().unwrap();
    ocs::store::account(&mut conn, id).await.unwrap().unwrap()
}

async fn a_copy_in_the_same_group_waits_for_the_commit(t: TestOcs) {
    funded(&t, A, 1_000_000, 0).await;
    // Many sessions at once, each INITIAL sent twice together: the copy finds the first's
    // change queued for the group commit, and must not answer before it is in the database.
    let tasks: Vec<_> = (0..24)
        .map(|s| {
            let ocs = t.ocs.clone();
            tokio::spawn(async move {
                let r = ccr(&format!("g{s}"), A, Initial, 0, Some(120), None);
                let copy = async {
                    let answer = ocs.credit_control(r.clone()).await.unwrap();
                    let mut conn = ocs.db().read().await.unwrap();
                    let stored = ocs::store::session(&mut conn, &r.session_id).await.unwrap();
                    (answer, stored.map(|s| s.last_answer))
                };
                let (first, (copy, stored)) = tokio::join!(ocs.credit_control(r.clone()), copy);
                let first = first.unwrap();
                assert_eq!(copy, first);
                assert_eq!(stored, Some(first.clone()), "the copy was answered before the commit");
                first
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().result_code, SUCCESS);
    }
    // Each session reserved once: 120 s at 10 per minute.
    let b = t.ocs.balance(A).await.unwrap();
    assert_eq!((b.reserved, b.balance), (Money(24 * 20), Money(1_000_000 - 24 * 20)));
    assert!(t.registry.render().contains("ocs_retransmissions_total 24"));
    let report = t.ocs.check_ledger().await.unwrap();
    assert_eq!((report.total, report.overdraft), (0, 0));
}

/// Make the database refuse journal lines, as a full disk or a broken server would refuse the
/// group's transaction; `false` lifts it.
async fn refuse_postings(t: &TestOcs, refuse: bool) {
    let mut conn = t.ocs.db().acquire().await.unwrap();
    let sql = match (conn.is_postgres(), refuse) {
        (false, true) => {
            "CREATE TRIGGER refuse_postings BEFORE INSERT ON ocs_postings BEGIN SELECT RAISE(ABORT, 'refused'); END"
        }
        (false, false) => "DROP TRIGGER refuse_postings",
        (true, true) => {
            "CREATE FUNCTION refuse_postings() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused'; END $$; \
             CREATE TRIGGER refuse_postings BEFORE INSERT ON ocs_postings \
             FOR EACH STATEMENT EXECUTE FUNCTION refuse_postings()"
        }
        (true, false) => "DROP TRIGGER refuse_postings ON ocs_postings; DROP FUNCTION refuse_postings()",
    };
    conn.execute_batch(sql).await.unwrap();
}

async fn a_refused_group_commit_leaves_memory_as_the_database(t: TestOcs) {
    funded(&t, A, 1000, 0).await;
    for s in 0..8 {
        t.ocs.credit_control(ccr(&format!("s{s}"), A, Initial, 0, Some(60), None)).await.unwrap();
    }
    let before = t.ocs.balance(A).await.unwrap();
    refuse_postings(&t, true).await;
    // Eight sessions on the account at once: each update builds on the ones before it in
    // memory, and every one of them fails with the group.
    let updates: Vec<_> = (0..8)
        .map(|s| {
            let ocs = t.ocs.clone();
            tokio::spawn(
                async move { ocs.credit_control(ccr(&format!("s{s}"), A, Update, 1, Some(60), Some(60))).await },
            )
        })
        .collect();
    for u in updates {
        assert!(matches!(u.await.unwrap(), Err(OcsError::Store(_))));
    }
    // Memory was put back to what the database holds: nothing of the failed group.
    let after = t.ocs.balance(A).await.unwrap();
    assert_eq!(after, before);
    let stored = stored_account(&t, A).await;
    assert_eq!(
        (stored.net(), stored.reserved(), stored.money.clone()),
        (after.balance, after.reserved, after.money_buckets)
    );
    refuse_postings(&t, false).await;
    // The gateways' retransmissions are handled afresh, each charged once.
    for s in 0..8 {
        let r = ccr(&format!("s{s}"), A, Update, 1, Some(60), Some(60));
        let first = t.ocs.credit_control(r.clone()).await.unwrap();
        assert_eq!(first.result_code, SUCCESS);
        assert_eq!(t.ocs.credit_control(r).await.unwrap(), first);
    }
    let b = t.ocs.balance(A).await.unwrap();
    assert_eq!((b.balance, b.reserved), (Money(1000 - 8 * 10 - 8 * 10), Money(8 * 10)));
    assert_eq!(stored_account(&t, A).await.net(), b.balance);
    let report = t.ocs.check_ledger().await.unwrap();
    assert_eq!((report.total, report.overdraft), (0, 0));
}

/// The sessions' state check (written as comparisons on SQLite, `IN` on PostgreSQL) lets the
/// three states through and nothing else.
async fn a_session_state_outside_the_three_is_refused(t: TestOcs) {
    funded(&t, A, 1000, 0).await;
    t.ocs.credit_control(ccr("c1", A, Initial, 0, Some(60), None)).await.unwrap();
    let mut conn = t.ocs.db().acquire().await.unwrap();
    for (state, allowed) in [("closed", true), ("timed_out", true), ("open", true), ("lost", false), ("", false)] {
        let r = numport_db::sql::query("UPDATE ocs_sessions SET state = $1 WHERE id = 'c1'")
            .bind(state)
            .execute(&mut conn)
            .await;
        assert_eq!(r.is_ok(), allowed, "state {state:?}: {r:?}");
    }
}
