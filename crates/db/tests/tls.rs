//! PostgreSQL over TLS (`sslmode`, `sslrootcert`), against real servers: the shared test server
//! (Debian's, with `ssl = on` and its self-signed certificate), and throw-away servers started
//! here ([`TempServer`]): one whose certificate a test CA issued and that takes TLS sessions
//! only, and one with TLS off.
//!
//! What must hold: `require` and `prefer` encrypt (pipelined statements and `LISTEN` work over
//! it); `verify-full` accepts only a certificate of the root given for the host connected to
//! (IPv6 address included), `verify-ca` the root without the host; `require` with a root is
//! `verify-ca`; `disable` is refused by a server that wants TLS, and `require` by one without;
//! `prefer` falls back to plain text there.

use std::path::PathBuf;
use std::time::Duration;

use numport_db::StoreError;
use numport_db::pg::{PgListener, PgPool, TlsError};
use numport_db::sql::{self, Connection};
use numport_db::testing::{ServerIdentity, TempDatabase, TempServer};
use numport_tls::pki::{Authority, Leaf};

const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// Opens a session to `url` and says whether the server sees it encrypted.
async fn encrypted(url: &str) -> Result<bool, StoreError> {
    let pool = PgPool::connect(url, 1).await?;
    let mut c = Connection::postgres(pool.acquire().await?);
    let ssl: i64 =
        sql::query_scalar("SELECT ssl::int FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&mut c).await?;
    c.close().await;
    pool.close();
    Ok(ssl == 1)
}

/// The TLS error a connection to `url` fails with.
async fn refused(url: &str) -> TlsError {
    match encrypted(url).await {
        Err(StoreError::PgTls(e)) => e,
        other => panic!("{url}: expected a TLS error, got {other:?}"),
    }
}

/// `url` with `param` added to its query string.
fn with(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

#[tokio::test]
async fn the_shared_server_encrypts_with_require_and_prefer() {
    let Some(db) = TempDatabase::create().await else { return };
    let admin = PgPool::connect(&with(db.url(), "sslmode=disable"), 1).await.unwrap();
    let mut c = Connection::postgres(admin.acquire().await.unwrap());
    let ssl: String = sql::query_scalar("SHOW ssl").fetch_one(&mut c).await.unwrap();
    if ssl != "on" {
        testkit::skip("ssl = on on the server of NUMPORT_TEST_POSTGRES_URL", ".ci/run --prerequisites turns it on");
        return;
    }
    assert!(!encrypted(&with(db.url(), "sslmode=disable")).await.unwrap());
    assert!(encrypted(&with(db.url(), "sslmode=require")).await.unwrap());
    assert!(encrypted(&with(db.url(), "sslmode=prefer")).await.unwrap());

    // Pipelined statements and their answers, over TLS.
    let pool = PgPool::connect(&with(db.url(), "sslmode=require"), 1).await.unwrap();
    let mut c = Connection::postgres(pool.acquire().await.unwrap());
    c.execute_batch("CREATE TABLE t (id BIGINT PRIMARY KEY, note TEXT)").await.unwrap();
    let mut tx = c.begin().await.unwrap();
    for id in 0..500i64 {
        let note = "x".repeat(id as usize * 7 % 3000);
        sql::query("INSERT INTO t (id, note) VALUES ($1, $2)")
            .bind(id)
            .bind(note)
            .execute_pipelined(&mut tx)
            .await
            .unwrap();
    }
    let long: i64 =
        sql::query_scalar("SELECT count(*) FROM t WHERE length(note) > 2000").fetch_one(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(long, (0..500).filter(|id| id * 7 % 3000 > 2000).count() as i64);
    let notes: Vec<String> = sql::query_scalar("SELECT note FROM t ORDER BY id").fetch_all(&mut c).await.unwrap();
    assert_eq!(notes.iter().map(String::len).sum::<usize>(), (0..500).map(|id| id * 7 % 3000).sum::<usize>());
}

/// A CA, and a certificate it issued for 127.0.0.1 and ::1 (not `localhost`).
fn test_pki(dir: &std::path::Path) -> (PathBuf, numport_tls::pki::Issued) {
    let ca = Authority::generate("numport test database CA", YEAR).unwrap();
    let leaf = Leaf::new("database", "postgresql", vec!["127.0.0.1".into(), "::1".into()], YEAR);
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, &ca.own().cert_pem).unwrap();
    (ca_path, ca.issue(&leaf).unwrap())
}

#[tokio::test]
async fn verify_full_takes_only_the_certificate_of_its_root_for_the_host_connected_to() {
    let files = tempfile::tempdir().unwrap();
    let (ca, issued) = test_pki(files.path());
    let identity = ServerIdentity { cert: &issued.cert_pem, key: &issued.key_pem };
    let Some(server) = TempServer::start(Some(identity)) else { return };
    let other_ca = files.path().join("other-ca.pem");
    let other = Authority::generate("another CA", YEAR).unwrap();
    std::fs::write(&other_ca, &other.own().cert_pem).unwrap();
    let root = |path: &PathBuf| format!("sslrootcert={}", path.display());
    let url = |host: &str, params: &str| server.url(host, &format!("?{params}"));

    let full = format!("sslmode=verify-full&{}", root(&ca));
    assert!(encrypted(&url("127.0.0.1", &full)).await.unwrap());
    if server.has_ipv6() {
        assert!(encrypted(&url("[::1]", &full)).await.unwrap());
    } else {
        testkit::skip("the IPv6 loopback address ::1", "enable IPv6 on lo");
    }
    // A name the certificate is not for.
    let e = refused(&url("localhost", &full)).await;
    assert!(matches!(&e, TlsError::Certificate { reason, .. } if reason.contains("not valid for name")), "{e}");
    // verify-ca does not look at the name; it does at the issuer.
    assert!(encrypted(&url("localhost", &format!("sslmode=verify-ca&{}", root(&ca)))).await.unwrap());
    let e = refused(&url("127.0.0.1", &format!("sslmode=verify-ca&{}", root(&other_ca)))).await;
    assert!(matches!(&e, TlsError::Certificate { reason, .. } if reason.contains("UnknownIssuer")), "{e}");
    let e = refused(&url("127.0.0.1", &format!("sslmode=verify-full&{}", root(&other_ca)))).await;
    assert!(matches!(e, TlsError::Certificate { .. }), "{e}");
    // require: any certificate, unless a root is given (then as verify-ca).
    assert!(encrypted(&url("127.0.0.1", "sslmode=require")).await.unwrap());
    let e = refused(&url("127.0.0.1", &format!("sslmode=require&{}", root(&other_ca)))).await;
    assert!(matches!(e, TlsError::Certificate { .. }), "{e}");
    assert!(encrypted(&url("127.0.0.1", &format!("sslmode=require&{}", root(&ca)))).await.unwrap());

    // Plain text: the server refuses the session, and says why.
    match encrypted(&url("127.0.0.1", "sslmode=disable")).await {
        Err(e @ StoreError::Postgres(_)) => {
            assert_eq!(e.sql_state(), Some("28000"), "{e}");
            assert!(e.to_string().contains("no encryption"), "{e}");
        }
        other => panic!("a plain-text session was not refused: {other:?}"),
    }

    // LISTEN on a session of its own, verified the same way.
    let mut listener = PgListener::connect(&url("127.0.0.1", &full)).await.unwrap();
    listener.listen("numport_tls").await.unwrap();
    let pool = PgPool::connect(&url("127.0.0.1", &full), 1).await.unwrap();
    let mut c = Connection::postgres(pool.acquire().await.unwrap());
    sql::query("SELECT pg_notify('numport_tls', 'over TLS')").execute(&mut c).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.unwrap().unwrap();
    assert_eq!((n.channel.as_str(), n.payload.as_str()), ("numport_tls", "over TLS"));
    let e = PgListener::connect(&url("localhost", &full)).await.unwrap_err();
    assert!(matches!(e, StoreError::PgTls(TlsError::Certificate { .. })), "{e}");
}

#[tokio::test]
async fn a_server_without_tls_is_refused_by_require_and_spoken_to_in_plain_text_by_prefer() {
    let Some(server) = TempServer::start(None) else { return };
    let e = refused(&server.url("127.0.0.1", "?sslmode=require")).await;
    assert!(matches!(e, TlsError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("sslmode=require"), "{e}");
    let files = tempfile::tempdir().unwrap();
    let (ca, _) = test_pki(files.path());
    let e = refused(&server.url("127.0.0.1", &format!("?sslmode=verify-full&sslrootcert={}", ca.display()))).await;
    assert!(matches!(e, TlsError::Refused { .. }), "{e}");
    assert!(!encrypted(&server.url("127.0.0.1", "")).await.unwrap());
    assert!(!encrypted(&server.url("127.0.0.1", "?sslmode=prefer")).await.unwrap());
}
