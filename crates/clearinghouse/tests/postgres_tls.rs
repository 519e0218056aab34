//! The clearinghouse on PostgreSQL over TLS: `sslmode=require` against the shared test server
//! (`NUMPORT_TEST_POSTGRES_URL`, Debian's with `ssl = on`), and `verify-full` against a
//! throw-away server whose certificate the PKI of `numport pki` issued
//! (`numport_db::testing::TempServer`, which accepts TLS sessions only). On each the store is
//! opened (its migrations, PL/pgSQL included), operators are registered and funded through the
//! ledger, and the API answers from it.

use std::sync::Arc;
use std::time::Duration;

use clearinghouse::{Clearinghouse, admin};
use clearinghouse_api::ClearinghouseClient;
use numport_core::{ManualClock, Money};
use numport_db::testing::{ServerIdentity, TempDatabase, TempServer};
use numport_tls::pki::{Authority, Leaf};
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_800_000_000_000;

/// Opens the clearinghouse's store at `url`, registers and funds two operators, serves the API
/// and reads an operator's account through it.
async fn run_on(url: &str) {
    let db = clearinghouse::store::connect(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let master_key = [7u8; 32];
    let mut tokens = Vec::new();
    for (name, rn) in [("opa", "D001"), ("opb", "D002")] {
        admin::register_operator(&db, &name.parse().unwrap(), &rn.parse().unwrap(), None, T0).await.unwrap();
        tokens.push(admin::issue_credentials(&db, &master_key, name, 0, T0).await.unwrap().api_token);
        admin::fund(&db, name, Money(250_000), &format!("initial-{name}"), T0).await.unwrap();
    }
    admin::load_ranges_csv(&db, "prefix,operator\n4790,opa\n4791,opb\n".as_bytes(), T0).await.unwrap();
    // HTTPS has suites of its own (`tls.rs`); here the database link is the subject.
    let config = clearinghouse::ClearinghouseConfig { plain_http: true, ..Default::default() };
    let ch = Clearinghouse::new(db, Arc::new(ManualClock::new(T0)), config, master_key);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(clearinghouse::run(ch, listener, stop.clone()));
    let client = ClearinghouseClient::new(&base, &tokens[1]);
    let account = tokio::time::timeout(Duration::from_secs(10), client.account()).await.unwrap().unwrap();
    assert_eq!(account.balance, Money(250_000), "{account:?}");
    stop.cancel();
}

#[tokio::test]
async fn on_the_shared_server_with_sslmode_require() {
    let Some(db) = TempDatabase::create().await else { return };
    let sep = if db.url().contains('?') { '&' } else { '?' };
    run_on(&format!("{}{sep}sslmode=require", db.url())).await;
}

#[tokio::test]
async fn on_a_server_of_its_own_with_sslmode_verify_full() {
    let dir = tempfile::tempdir().unwrap();
    let year = Duration::from_secs(365 * 86_400);
    let ca = Authority::generate("numport CA", year).unwrap();
    let leaf = Leaf::new("database", "postgresql", vec!["localhost".into(), "127.0.0.1".into()], year);
    let issued = ca.issue(&leaf).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.own().cert_pem).unwrap();
    let identity = ServerIdentity { cert: &issued.cert_pem, key: &issued.key_pem };
    let Some(server) = TempServer::start(Some(identity)) else { return };
    run_on(&server.url("localhost", &format!("?sslmode=verify-full&sslrootcert={}", ca_file.display()))).await;
}
