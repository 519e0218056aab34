//! `ledger::post` has two implementations: the statements run from Rust
//! (`ledger::post_by_statements`, what SQLite runs) and one call to the PL/pgSQL function
//! `numport_post_journal` (`ledger::post_by_function`, what PostgreSQL runs; the reason for
//! both is at `ledger::post`). Here the same postings go through the statements on SQLite, and
//! through the statements and through the function on PostgreSQL, and all three must end with
//! the same outcomes, journals, postings and balances.
//!
//! The PostgreSQL part runs when `NUMPORT_TEST_POSTGRES_URL` is set (as `.ci/run` does).

mod common;

use clearinghouse::store::ledger::{self, PostError, Posted};
use clearinghouse::store::operators;
use common::TestDb;
use numport_core::{JournalEntry, Money};
use numport_db::{Backend, Connection, sql};

/// The accounts a script names: the funding account and two operators' settlement accounts.
const ACCOUNTS: [&str; 3] = ["funding", "opa", "opb"];

/// One posting of the script: its idempotency key and its lines (account, amount).
type Step = (&'static str, &'static [(&'static str, i64)]);

/// New journals, a repeated key (with the same lines and with others), overdrafts on the
/// first and on the last line, an overdraft that would be covered by a line later in the
/// entry, three-line entries, and unbalanced entries (refused before either poster sees them).
const SCRIPT: &[Step] = &[
    ("fund-a", &[("funding", -10_000), ("opa", 10_000)]),
    ("fund-b", &[("funding", -500), ("opb", 500)]),
    ("a-to-b", &[("opa", -2_500), ("opb", 2_500)]),
    ("a-to-b", &[("opa", -2_500), ("opb", 2_500)]),
    ("a-to-b", &[("opa", -1), ("opb", 1)]),
    ("b-overdraws-first", &[("opb", -3_001), ("opa", 3_001)]),
    ("a-overdraws-last", &[("funding", 7_501), ("opa", -7_501)]),
    ("a-overdraws-unless-credited", &[("opa", -8_000), ("opb", -1_000), ("funding", 9_000)]),
    ("three-lines", &[("opa", -1_000), ("opb", -1_000), ("funding", 2_000)]),
    ("b-overdraws-first", &[("opb", -2_000), ("opa", 2_000)]),
    ("unbalanced", &[("funding", -100), ("opa", 99)]),
    ("one-line", &[("opa", 0)]),
    ("zero-line", &[("opa", 0), ("opb", 0)]),
    ("b-to-a-all", &[("opb", -2_000), ("opa", 2_000)]),
    ("fund-b", &[("funding", -1), ("opb", 1)]),
];

/// What a posting came to, with journal ids and accounts by name (ids differ by engine).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    New(String),
    Already(String),
    InsufficientFunds(&'static str),
    /// Not a balanced entry: `JournalEntry` refuses it, so neither poster sees it.
    Refused,
}

/// What the ledger holds at the end: journals by key, postings as (key, account, amount), and
/// balances, all by name.
#[derive(Debug, PartialEq, Eq)]
struct Ledger {
    outcomes: Vec<Outcome>,
    journals: Vec<String>,
    postings: Vec<(String, String, i64)>,
    balances: Vec<(String, i64)>,
}

#[derive(Debug, Clone, Copy)]
enum Poster {
    Statements,
    Function,
}

/// The script through `poster` on the database at `url`.
async fn run(url: &str, poster: Poster) -> Ledger {
    let db = clearinghouse::store::connect(url).await.expect("open database");
    let mut conn = db.acquire().await.unwrap();
    let funding = ledger::funding_account(&mut conn).await.unwrap();
    let mut ids = vec![funding];
    for name in &ACCOUNTS[1..] {
        let op =
            operators::insert(&mut conn, &name.parse().unwrap(), &format!("D{}", ids.len()).parse().unwrap(), None, 0)
                .await
                .unwrap();
        ids.push(ledger::operator_account(&mut conn, op.id).await.unwrap().0);
    }
    let name_of = |id: i64| ACCOUNTS[ids.iter().position(|a| *a == id).expect("a script account")];
    let mut outcomes = Vec::new();
    for (key, lines) in SCRIPT {
        let lines: Vec<(i64, Money)> = lines
            .iter()
            .map(|(name, amount)| (ids[ACCOUNTS.iter().position(|a| a == name).unwrap()], Money(*amount)))
            .collect();
        let Ok(entry) = JournalEntry::new(lines) else {
            outcomes.push(Outcome::Refused);
            continue;
        };
        // Each posting in a transaction of its own, as the clearinghouse posts.
        let mut tx = conn.begin().await.unwrap();
        let posted = match poster {
            Poster::Statements => ledger::post_by_statements(&mut tx, key, "test", None, &entry, 7).await,
            Poster::Function => ledger::post_by_function(&mut tx, key, "test", None, &entry, 7).await,
        };
        let outcome = match posted {
            Ok(Posted::New(id)) => Outcome::New(journal_key(&mut tx, id).await),
            Ok(Posted::Already(id)) => Outcome::Already(journal_key(&mut tx, id).await),
            Err(PostError::InsufficientFunds { account }) => Outcome::InsufficientFunds(name_of(account)),
            Err(e) => panic!("{key}: {e}"),
        };
        tx.commit().await.unwrap();
        outcomes.push(outcome);
    }
    let journals = sql::query_scalar("SELECT idempotency_key FROM journals ORDER BY idempotency_key")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let postings: Vec<(String, i64, i64)> = sql::query_as(
        "SELECT j.idempotency_key, p.account_id, p.amount FROM postings p JOIN journals j ON j.id = p.journal_id \
         ORDER BY j.idempotency_key, p.account_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let postings =
        postings.into_iter().map(|(key, account, amount)| (key, name_of(account).to_owned(), amount)).collect();
    let mut balances = Vec::new();
    for (name, id) in ACCOUNTS.iter().zip(&ids) {
        let balance: i64 = sql::query_scalar("SELECT balance FROM accounts WHERE id = $1")
            .bind(*id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        balances.push((name.to_string(), balance));
    }
    assert!(ledger::check(&mut conn).await.unwrap().is_sound());
    drop(conn);
    db.close().await;
    Ledger { outcomes, journals, postings, balances }
}

async fn journal_key(conn: &mut Connection, id: i64) -> String {
    sql::query_scalar("SELECT idempotency_key FROM journals WHERE id = $1").bind(id).fetch_one(conn).await.unwrap()
}

#[tokio::test]
async fn the_statements_and_numport_post_journal_post_alike() {
    let (_sqlite, url) = TestDb::create(Backend::Sqlite).await.unwrap();
    let on_sqlite = run(&url, Poster::Statements).await;

    // What the script must come to, whatever runs it.
    use Outcome::*;
    let new = |k: &str| New(k.to_owned());
    assert_eq!(
        on_sqlite.outcomes,
        [
            new("fund-a"),
            new("fund-b"),
            new("a-to-b"),
            Already("a-to-b".into()),
            Already("a-to-b".into()),
            InsufficientFunds("opb"),
            InsufficientFunds("opa"),
            InsufficientFunds("opa"),
            new("three-lines"),
            new("b-overdraws-first"),
            Refused,
            Refused,
            Refused,
            InsufficientFunds("opb"),
            Already("fund-b".into()),
        ]
    );
    assert_eq!(on_sqlite.balances, [("funding".to_owned(), -8_500), ("opa".to_owned(), 8_500), ("opb".to_owned(), 0)]);

    let Some((_pg_statements, statements_url)) = TestDb::create(Backend::Postgres).await else { return };
    let Some((_pg_function, function_url)) = TestDb::create(Backend::Postgres).await else { return };
    assert_eq!(run(&statements_url, Poster::Statements).await, on_sqlite, "the statements on PostgreSQL");
    assert_eq!(run(&function_url, Poster::Function).await, on_sqlite, "numport_post_journal");
}
