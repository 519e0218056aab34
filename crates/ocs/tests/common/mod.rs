//! Test harness: an OCS on a fresh SQLite file or PostgreSQL database, a manual clock, and the
//! tariffs and requests the suites share.

#![allow(dead_code)]

use std::sync::Arc;

use numport_core::{ManualClock, Millis, Money};
use numport_db::testing::TempDatabase;
use numport_db::{Backend, DbConfig};
use ocs::rating::{Service, TariffRule, TimeBand, UnitKind};
use ocs::session::{CreditControlRequest, MsccRequest, RequestType, ServiceUnits, SubscriptionId};
use ocs::{Ocs, OcsConfig};

/// 10:00 UTC on a day in 2027.
pub const T0: Millis = 1_800_000_000_000 - (1_800_000_000_000 % 86_400_000) + 10 * 3_600_000;

/// Where a test's database lives; dropped with the test.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(TempDatabase),
}

pub struct TestOcs {
    pub ocs: Ocs,
    pub clock: ManualClock,
    pub url: String,
    pub registry: telemetry::Registry,
    pub db: TestDb,
}

impl TestOcs {
    /// A fresh OCS with [`tariffs`]; `None` when PostgreSQL is not configured (and not under CI).
    pub async fn start(backend: Backend) -> Option<TestOcs> {
        let (db, url) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().ok()?;
                let url = format!("sqlite://{}", dir.path().join("ocs.db").display());
                (TestDb::Sqlite(dir), url)
            }
            Backend::Postgres => {
                let db = TempDatabase::create().await?;
                let url = db.url().to_owned();
                (TestDb::Postgres(db), url)
            }
        };
        let clock = ManualClock::new(T0);
        let registry = telemetry::Registry::new();
        let ocs = Ocs::open(&DbConfig::new(&url), OcsConfig::default(), Arc::new(clock.clone()), &registry)
            .await
            .expect("opening the OCS");
        ocs.set_tariffs(tariffs()).await.expect("tariffs");
        Some(TestOcs { ocs, clock, url, registry, db })
    }

    /// The same database opened again, as after a restart.
    pub async fn reopen(&self) -> Ocs {
        self.ocs.db().close().await;
        Ocs::open(
            &DbConfig::new(&self.url),
            OcsConfig::default(),
            Arc::new(self.clock.clone()),
            &telemetry::Registry::new(),
        )
        .await
        .expect("reopening the OCS")
    }
}

/// Voice to 47: 10 per started minute; SMS 50 each; data 1 per started MB on every rating group.
pub fn tariffs() -> Vec<TariffRule> {
    let rule = |service, prefix: &str, price, block| TariffRule {
        service,
        prefix: prefix.into(),
        band: TimeBand::ALL_DAY,
        price: Money(price),
        block,
    };
    vec![rule(Service::Voice, "47", 10, 60), rule(Service::Sms, "", 50, 1), rule(Service::Data, "", 1, 1_000_000)]
}

pub fn ccr(
    session: &str,
    msisdn: &str,
    t: RequestType,
    n: u32,
    requested: Option<u64>,
    used: Option<u64>,
) -> CreditControlRequest {
    CreditControlRequest {
        session_id: session.into(),
        request_type: t,
        request_number: n,
        subscription_id: SubscriptionId::e164(msisdn),
        service: Service::Voice,
        destination: Some("4791234567".into()),
        event_time: T0,
        mscc: vec![MsccRequest {
            rating_group: Some(1),
            service_identifier: None,
            requested: requested.map(|s| ServiceUnits::of(UnitKind::Time, s)),
            used: used.map(|s| ServiceUnits::of(UnitKind::Time, s)),
        }],
    }
}

/// Run `$body` (an async fn taking a `TestOcs`) on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident => $body:ident;)+) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = $crate::common::TestOcs::start(numport_db::Backend::Sqlite).await.expect("sqlite");
                    super::$body(t).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(t) = $crate::common::TestOcs::start(numport_db::Backend::Postgres).await else { return };
                    super::$body(t).await;
                }
            )+
        }
    };
}
