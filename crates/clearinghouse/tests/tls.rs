//! The clearinghouse over TLS on a real socket: plain text, a foreign CA and an expired
//! certificate are refused; under mutual TLS the client certificate must name the API key's
//! operator; a silent client stalls nobody; `/metrics` on a listener of its own; an operator
//! node (its replica included) working against an HTTPS clearinghouse end to end.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clearinghouse::{Clearinghouse, ClearinghouseConfig};
use clearinghouse_api::ClearinghouseClient;
use common::{T0, Terminal, TestCh};
use numport_core::ManualClock;
use numport_db::Backend;
use numport_tls::pki::{self, Authority, Leaf, Pki, PkiPlan, ROLE_CLEARINGHOUSE};
use numport_tls::{ClientTls, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A PKI for the three operators and one replica, with its CA kept to issue more.
struct TestPki {
    dir: tempfile::TempDir,
    ca: Authority,
    pki: Pki,
}

impl TestPki {
    fn new() -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::generate("test CA", Duration::from_secs(86_400)).unwrap();
        let plan = PkiPlan {
            hosts: vec![],
            operators: vec!["opa".into(), "opb".into(), "opc".into()],
            replicas: vec!["npdb1".into()],
            validity_days: 1,
        };
        let pki = pki::generate_with(dir.path(), &plan, &ca).unwrap();
        TestPki { dir, ca, pki }
    }

    /// The clearinghouse's `[tls]`; with `mutual`, operators must present certificates.
    fn server(&self, mutual: bool) -> ServerTls {
        let own = &self.pki.clearinghouse;
        ServerTls { cert: own.cert.clone(), key: own.key.clone(), client_ca: mutual.then(|| self.pki.ca.clone()) }
    }

    fn client(&self, files: Option<&numport_tls::TlsFiles>) -> ClientTls {
        ClientTls { ca: self.pki.ca.clone(), cert: files.map(|f| f.cert.clone()), key: files.map(|f| f.key.clone()) }
    }

    /// A certificate of this CA that expired an hour ago.
    fn expired(&self, role: &'static str, name: &str) -> numport_tls::TlsFiles {
        let mut leaf = Leaf::new(role, name, vec!["127.0.0.1".into()], Duration::ZERO);
        leaf.not_before = SystemTime::now() - Duration::from_secs(7200);
        leaf.not_after = SystemTime::now() - Duration::from_secs(3600);
        self.ca.issue(&leaf).unwrap().write(self.dir.path(), &format!("expired-{name}")).unwrap()
    }
}

fn tls_config(tls: ServerTls) -> ClearinghouseConfig {
    ClearinghouseConfig { tls: Some(tls), plain_http: false, ..common::test_config() }
}

async fn start(backend: Backend, pki: &TestPki, mutual: bool) -> Option<TestCh> {
    TestCh::start_with_pki(backend, tls_config(pki.server(mutual)), Some(&pki.pki)).await
}

async fn plain_text_is_refused_where_tls_is_required(backend: Backend) {
    let pki = TestPki::new();
    let Some(t) = start(backend, &pki, false).await else { return };
    t.a.client.account().await.expect("over TLS");
    let plain = t.url.replace("https://", "http://");
    let err = reqwest::get(format!("{plain}/healthz")).await.expect_err("plain HTTP to a TLS port");
    assert!(err.is_request() || err.is_connect(), "{err}");
    // On the wire: a plain request gets no HTTP answer, the connection is closed.
    let mut tcp = tokio::net::TcpStream::connect(plain.trim_start_matches("http://")).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await.expect("closed");
    assert!(!answer.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&answer));
}

async fn a_certificate_from_another_ca_is_refused(backend: Backend) {
    let pki = TestPki::new();
    let other = TestPki::new();
    let Some(t) = start(backend, &pki, true).await else { return };
    let token = |_: &str| "k.s";
    // The client does not trust a server whose certificate another CA signed...
    let foreign_trust = ClearinghouseClient::with_tls(&t.url, token("opa"), Some(&other.client(None))).unwrap();
    let err = foreign_trust.account().await.expect_err("unknown issuer");
    assert!(format!("{err:?}").contains("InvalidCertificate"), "{err:?}");
    // ...and the server refuses a client certificate another CA signed, even for the right name.
    let foreign_cert = pki.client(other.pki.operator("opa"));
    let client = ClearinghouseClient::with_tls(&t.url, token("opa"), Some(&foreign_cert)).unwrap();
    assert!(client.account().await.is_err(), "a foreign operator certificate");
    t.a.client.account().await.expect("the CA's own certificate");
}

async fn an_expired_certificate_is_refused(backend: Backend) {
    let pki = TestPki::new();
    let Some(t) = start(backend, &pki, true).await else { return };
    let expired = pki.expired(numport_tls::pki::ROLE_OPERATOR, "opa");
    let client = ClearinghouseClient::with_tls(&t.url, "k.s", Some(&pki.client(Some(&expired)))).unwrap();
    assert!(client.account().await.is_err(), "an expired client certificate");

    // A clearinghouse serving an expired certificate is refused by its clients.
    let mut server = pki.server(false);
    let expired = pki.expired(ROLE_CLEARINGHOUSE, "clearinghouse");
    (server.cert, server.key) = (expired.cert, expired.key);
    let Some(t) = TestCh::start_with_pki(backend, tls_config(server), Some(&pki.pki)).await else { return };
    let err = t.a.client.account().await.expect_err("expired server certificate");
    assert!(format!("{err:?}").to_lowercase().contains("expired"), "{err:?}");
}

async fn mutual_tls_the_certificate_must_name_the_keys_operator(backend: Backend) {
    let pki = TestPki::new();
    let Some(t) = start(backend, &pki, true).await else { return };
    let ca = pki.pki.ca.clone();
    // opa's own certificate with opa's key: accepted.
    t.a.client.account().await.expect("matching certificate");
    let opa_token = t.a.token.clone();
    // opb's certificate with opa's key: 403 in the API's error shape.
    let http = numport_tls::http::client(Some(&pki.client(pki.pki.operator("opb"))), |b| b).unwrap();
    let resp = http.get(format!("{}/v1/accounts/me", t.url)).bearer_auth(&opa_token).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "forbidden", "{body}");
    assert!(body["message"].as_str().unwrap().contains("opb"), "{body}");
    // A client certificate of this CA for another role names no operator.
    let leaf = Leaf::new(numport_tls::pki::ROLE_NPDB, "opa", vec![], Duration::from_secs(3600));
    let replica = pki.ca.issue(&leaf).unwrap().write(pki.dir.path(), "replica-client").unwrap();
    let client = ClearinghouseClient::with_tls(&t.url, &opa_token, Some(&pki.client(Some(&replica)))).unwrap();
    assert_eq!(client.account().await.unwrap_err().code(), Some("forbidden"));
    // No certificate: no handshake.
    let client =
        ClearinghouseClient::with_tls(&t.url, &opa_token, Some(&ClientTls { ca, cert: None, key: None })).unwrap();
    assert!(client.account().await.unwrap_err().code().is_none(), "refused by the TLS layer");
}

async fn a_silent_client_stalls_nobody(backend: Backend) {
    let pki = TestPki::new();
    let Some(t) = start(backend, &pki, false).await else { return };
    let addr = t.url.trim_start_matches("https://").to_owned();
    let mut silent = Vec::new();
    for _ in 0..32 {
        silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let answered = tokio::time::timeout(Duration::from_secs(3), t.a.client.account()).await;
    answered.expect("answered while 32 clients say nothing").unwrap();
}

on_both_backends!(
    plain_text_is_refused_where_tls_is_required,
    a_certificate_from_another_ca_is_refused,
    an_expired_certificate_is_refused,
    mutual_tls_the_certificate_must_name_the_keys_operator,
    a_silent_client_stalls_nobody,
);

#[tokio::test]
async fn without_tls_or_plain_http_the_server_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = clearinghouse::store::connect(&format!("sqlite://{}", dir.path().join("ch.db").display())).await.unwrap();
    let config = ClearinghouseConfig { plain_http: false, tls: None, ..common::test_config() };
    let ch = Clearinghouse::new(db, Arc::new(ManualClock::new(T0)), config, [7; 32]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = clearinghouse::run(ch, listener, Default::default()).await.unwrap_err();
    assert!(err.to_string().contains("plain_http = true") && err.to_string().contains("[tls]"), "{err}");
}

#[tokio::test]
async fn metrics_on_a_listener_of_their_own() {
    let pki = TestPki::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = ClearinghouseConfig { metrics_listen: Some(port), ..tls_config(pki.server(false)) };
    let t = TestCh::start_with_pki(Backend::Sqlite, config, Some(&pki.pki)).await.unwrap();
    let http = numport_tls::http::client(Some(&pki.client(None)), |b| b).unwrap();
    let mut scraped = None;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("https://{port}/metrics")).send().await {
            scraped = Some(r.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(scraped.expect("metrics listener").contains("# TYPE"));
    assert_eq!(http.get(format!("{}/metrics", t.url)).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("{}/healthz", t.url)).send().await.unwrap().status(), 200);
}

/// An operator node serving HTTPS, its client certificate at a mutual-TLS clearinghouse: it
/// registers an `https://` callback URL, its replica follows the feed, and the clearinghouse
/// delivers a callback to it over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_node_works_against_an_https_clearinghouse() {
    let pki = TestPki::new();
    let config = ClearinghouseConfig {
        callback_tls: Some(pki.client(None)),
        // The donor's reminder is due at once, so the request makes a callback.
        deposit_reminder_ms: 0,
        ..tls_config(pki.server(true))
    };
    let t = TestCh::start_with_pki(Backend::Sqlite, config, Some(&pki.pki)).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let own = pki.pki.operator("opa").unwrap();
    let node_config = operator::OperatorConfig {
        name: "opa".parse().unwrap(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", data.path().join("opa.db").display()),
        clearinghouse_url: t.url.clone(),
        clearinghouse_tls: Some(pki.client(Some(own))),
        api_token: t.a.token.clone(),
        callback_secret: t.a.callback_secret.clone(),
        tls: Some(ServerTls { cert: own.cert.clone(), key: own.key.clone(), client_ca: None }),
        plain_http: false,
        npdb: replica::ReplicaConfig {
            data_dir: Some(data.path().join("npdb")),
            enum_dns: replica::EnumConfig { listen: None, ..Default::default() },
            ..operator::OperatorConfig::default().npdb
        },
        smpp: operator::config::SmppSection { listen: None, ..Default::default() },
        air_listen: None,
        ..operator::OperatorConfig::default()
    };
    let node = operator::Node::open(node_config, Arc::new(ManualClock::new(T0))).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(node.clone().run(listener, stop.clone()));

    eventually("callback registered over TLS", || node.callback_registered()).await;
    let mut conn = t.ch.db.read().await.unwrap();
    let url = clearinghouse::store::operators::list(&mut conn).await.unwrap()[0].callback_url.clone().unwrap();
    drop(conn);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    eventually("replica bootstrapped over TLS", || node.replica().is_ready()).await;

    // opb asks for an opa number: the clearinghouse calls opa back over TLS.
    let term = Terminal::new("4790000001");
    t.b.client.request_port(&term.request(&t.b.name, T0), "k1").await.unwrap();
    eventually("callback delivered", || {
        t.ch.metrics.callbacks_delivered.get() > 0 || t.ch.metrics.callbacks_failed.get() > 0
    })
    .await;
    assert_eq!(t.ch.metrics.callbacks_failed.get(), 0);
    stop.cancel();
    served.await.unwrap().unwrap();
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 10 s");
}
