//! Test harness: a real clearinghouse on a loopback port, over SQLite or PostgreSQL, with three
//! registered operators (`opa`, `opb`, `opc`) whose API clients the tests drive directly.
//! No callback URLs are registered, so tests read each operator's messages from its inbox.

#![allow(dead_code)]

use std::sync::Arc;

use clearinghouse::{Clearinghouse, ClearinghouseConfig, admin};
use clearinghouse_api::ClearinghouseClient;
use clearinghouse_api::messages::Message;
use clearinghouse_api::model::{Order, PortingRequest};
use numport_core::porting::OrderState;
use numport_core::proof::{Nonce, PinStretch, PortKey};
use numport_core::{ManualClock, Millis, Money, Msisdn, OperatorName};
use numport_db::Backend;
use numport_db::testing::TempDatabase;
use tokio_util::sync::CancellationToken;

pub const T0: Millis = 1_800_000_000_000;

/// Where a test's database lives; dropped with the test.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(TempDatabase),
}

impl TestDb {
    /// A fresh, empty database on `backend`. On PostgreSQL, a database of its own on the
    /// server of `NUMPORT_TEST_POSTGRES_URL`; without that variable `None`, after one skip line
    /// (and under `CI=true` the test fails instead).
    pub async fn create(backend: Backend) -> Option<(TestDb, String)> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().ok()?;
                let url = format!("sqlite://{}", dir.path().join("ch.db").display());
                Some((TestDb::Sqlite(dir), url))
            }
            Backend::Postgres => {
                let db = TempDatabase::create().await?;
                let url = db.url().to_owned();
                Some((TestDb::Postgres(db), url))
            }
        }
    }
}

pub struct Operator {
    pub name: OperatorName,
    pub client: ClearinghouseClient,
    /// The API key as issued.
    pub token: String,
    pub callback_secret: String,
}

pub struct TestCh {
    pub ch: Clearinghouse,
    pub clock: ManualClock,
    pub url: String,
    pub a: Operator,
    pub b: Operator,
    pub c: Operator,
    shutdown: CancellationToken,
    _db: TestDb,
}

impl Drop for TestCh {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The tests' configuration: the supervisor left to the tests, and callbacks to loopback
/// allowed (every receiver here listens on 127.0.0.1).
pub fn test_config() -> ClearinghouseConfig {
    ClearinghouseConfig {
        min_port_interval_ms: 0,
        supervisor_interval_ms: 3_600_000,
        allow_private_callback_addresses: true,
        // TLS has suites of its own (`tls.rs`); here it is not the subject.
        plain_http: true,
        ..ClearinghouseConfig::default()
    }
}

impl TestCh {
    pub async fn start(backend: Backend) -> Option<TestCh> {
        TestCh::start_with(backend, test_config()).await
    }

    pub async fn start_with(backend: Backend, config: ClearinghouseConfig) -> Option<TestCh> {
        TestCh::start_with_pki(backend, config, None).await
    }

    /// Over TLS: `config` serves with `pki`'s certificates, and each operator's client trusts
    /// `pki`'s CA and presents the operator's own certificate.
    pub async fn start_with_pki(
        backend: Backend,
        config: ClearinghouseConfig,
        pki: Option<&numport_tls::pki::Pki>,
    ) -> Option<TestCh> {
        let (test_db, url) = TestDb::create(backend).await?;
        let db = clearinghouse::store::connect(&url).await.expect("open database");
        let clock = ManualClock::new(T0);
        let master_key = [7u8; 32];
        let mut ops = Vec::new();
        for (name, rn, prefix) in [("opa", "D001", "4790"), ("opb", "D002", "4791"), ("opc", "D003", "4792")] {
            admin::register_operator(&db, &name.parse().unwrap(), &rn.parse().unwrap(), None, T0).await.unwrap();
            let _ = prefix;
        }
        admin::load_ranges_csv(&db, "prefix,operator\n4790,opa\n4791,opb\n4792,opc\n".as_bytes(), T0).await.unwrap();
        for name in ["opa", "opb", "opc"] {
            let creds = admin::issue_credentials(&db, &master_key, name, 0, T0).await.unwrap();
            admin::fund(&db, name, Money(1_000_000), &format!("initial-{name}"), T0).await.unwrap();
            ops.push(creds);
        }
        let ch = Clearinghouse::new(db, Arc::new(clock.clone()), config, master_key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(clearinghouse::run(ch.clone(), listener, shutdown.clone()));
        let base = format!("{}://{addr}", if pki.is_some() { "https" } else { "http" });
        let client_base = base.clone();
        let tls = move |name: &str| {
            pki.map(|pki| {
                let own = pki.operator(name).expect("a certificate per operator");
                numport_tls::ClientTls { ca: pki.ca.clone(), cert: Some(own.cert.clone()), key: Some(own.key.clone()) }
            })
        };
        let mut ops = ops.into_iter().map(move |c| Operator {
            name: c.operator.parse().unwrap(),
            client: ClearinghouseClient::with_tls(&client_base, &c.api_token, tls(&c.operator).as_ref()).unwrap(),
            token: c.api_token,
            callback_secret: c.callback_secret,
        });
        Some(TestCh {
            ch,
            clock,
            url: base,
            a: ops.next().unwrap(),
            b: ops.next().unwrap(),
            c: ops.next().unwrap(),
            shutdown,
            _db: test_db,
        })
    }

    /// Messages for `op` of the given kind, oldest first.
    pub async fn messages(&self, op: &Operator, kind: &str) -> Vec<Message> {
        let inbox = op.client.inbox(0, 1000).await.unwrap();
        inbox.messages.into_iter().map(|e| e.message).filter(|m| m.kind() == kind).collect()
    }

    /// Order `id` once the settler has taken it out of `settling` (as `op` sees it).
    pub async fn settled(&self, op: &Operator, id: i64) -> Order {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let o = op.client.order(id).await.unwrap();
            if o.state != OrderState::Settling {
                return o;
            }
            assert!(std::time::Instant::now() < deadline, "order {id} still settling after 10 s");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    pub async fn ledger_sound(&self) -> bool {
        let mut conn = self.ch.db.acquire().await.unwrap();
        clearinghouse::store::ledger::check(&mut conn).await.unwrap().is_sound()
    }
}

/// A subscriber's handset: its port key, and the proofs it makes.
pub struct Terminal {
    pub msisdn: Msisdn,
    pub key: PortKey,
}

impl Terminal {
    pub fn new(msisdn: &str) -> Terminal {
        let key =
            PortKey::derive(format!("ksim-{msisdn}").as_bytes(), "123456", b"salt-1234", PinStretch::FAST).unwrap();
        Terminal { msisdn: msisdn.parse().unwrap(), key }
    }

    /// A fresh request to port to `recipient`, valid for 5 minutes from `now`.
    pub fn request(&self, recipient: &OperatorName, now: Millis) -> PortingRequest {
        let nonce = Nonce(rand::random());
        let expiry = now + 300_000;
        PortingRequest {
            msisdn: self.msisdn.clone(),
            nonce: nonce.to_hex(),
            expiry,
            proof: self.key.prove(&nonce, &self.msisdn, recipient, expiry).to_hex(),
        }
    }

    /// What the donor deposits for a request (it holds the same port key).
    pub fn deposit_for(
        &self,
        req: &PortingRequest,
        recipient: &OperatorName,
    ) -> clearinghouse_api::model::DepositRequest {
        let nonce = Nonce::from_hex(&req.nonce).unwrap();
        clearinghouse_api::model::DepositRequest {
            msisdn: self.msisdn.clone(),
            nonce: req.nonce.clone(),
            proof: self.key.prove(&nonce, &self.msisdn, recipient, req.expiry).to_hex(),
        }
    }
}

/// Generate `#[tokio::test]`s running an `async fn(Backend)` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(numport_db::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name(numport_db::Backend::Postgres).await } )*
        }
    };
}
