//! Property tests: under any interleaving of concurrent sessions on one account the balance
//! never passes the credit limit and money is conserved; retransmissions never charge twice.
//!
//! The pure model is what the storage serialises (one request at a time per account, under the
//! account's lock), so the interleavings are generated here and run through the same functions
//! the service calls; `concurrent_storage_interleavings` then runs random session scripts
//! concurrently against the real service on SQLite.

mod common;

use std::collections::HashMap;

use numport_core::{Millis, Money};
use ocs::balance::{Account, Entry, Ledger};
use ocs::rating::{Service, TariffRule, TariffTable, TimeBand, UnitKind};
use ocs::session::{
    self, CreditControlRequest, GyPolicy, MsccRequest, RequestType, ServiceUnits, Session, SubscriptionId,
};
use proptest::prelude::*;

#[derive(Default)]
struct Books(HashMap<Ledger, i64>);

impl Books {
    fn post(&mut self, entries: &[Entry]) {
        for e in entries {
            for (l, m) in e.lines() {
                *self.0.entry(*l).or_default() += m.0;
            }
        }
    }
    fn get(&self, l: Ledger) -> Money {
        Money(self.0.get(&l).copied().unwrap_or(0))
    }
    fn check(&self, a: &Account) {
        a.check(self.get(Ledger::Available(a.id)), self.get(Ledger::Reserved(a.id))).unwrap();
        assert_eq!(self.0.values().sum::<i64>(), 0, "money created or destroyed");
        assert!(a.debt <= a.credit_limit && !a.debt.is_negative());
        // What was charged never exceeds what was paid in plus the credit limit.
        assert!(
            self.get(Ledger::Revenue).0 + self.get(Ledger::Forfeited).0
                <= -self.get(Ledger::Funding).0 + a.credit_limit.0
        );
    }
}

#[derive(Debug, Clone)]
enum Op {
    Reserve { session: u8, group: u8, wanted: u64 },
    Commit { session: u8, group: u8, used: u64 },
    Release { session: u8 },
    Debit(i64),
    Refund(i64),
    Recharge { amount: i64, expires_in: Option<Millis> },
    Units { group: u8, amount: u64 },
    Tick(Millis),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4u8, 0..2u8, 0..2000u64).prop_map(|(session, group, wanted)| Op::Reserve { session, group, wanted }),
        4 => (0..4u8, 0..2u8, 0..4000u64).prop_map(|(session, group, used)| Op::Commit { session, group, used }),
        1 => (0..4u8).prop_map(|session| Op::Release { session }),
        1 => (0..300i64).prop_map(Op::Debit),
        1 => (0..50i64).prop_map(Op::Refund),
        2 => (1..500i64, proptest::option::of(1..5000i64)).prop_map(|(amount, expires_in)| Op::Recharge { amount, expires_in }),
        1 => (0..2u8, 1..500u64).prop_map(|(group, amount)| Op::Units { group, amount }),
        1 => (1..3000i64).prop_map(Op::Tick),
    ]
}

fn price() -> ocs::rating::Price {
    ocs::rating::Price { per_block: Money(7), block: 60 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn balance_never_passes_the_credit_limit_and_money_is_conserved(
        credit in 0..500i64,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut a = Account::new(1, Money(credit));
        let mut books = Books::default();
        let mut now: Millis = 0;
        for op in ops {
            let entries: Vec<Entry> = match op {
                Op::Reserve { session, group, wanted } => {
                    match a.reserve(&session.to_string(), group.into(), UnitKind::Time, price(), wanted, now) {
                        Ok((g, e)) => {
                            prop_assert!(g.units <= wanted);
                            e.into_iter().collect()
                        }
                        Err(ocs::balance::BalanceError::AlreadyReserved(..)) => vec![],
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Commit { session, group, used } => {
                    a.commit(&session.to_string(), group.into(), used, now).map(|(_, e)| e).unwrap_or_default()
                }
                Op::Release { session } => a.release_session(&session.to_string(), now).unwrap(),
                Op::Debit(m) => a.debit(Money(m), now).map(|e| e.into_iter().collect()).unwrap_or_default(),
                Op::Refund(m) => {
                    // Only what was charged can be refunded.
                    let m = m.min(books.get(Ledger::Revenue).0);
                    a.refund(Money(m.max(0))).unwrap().into_iter().collect()
                }
                Op::Recharge { amount, expires_in } => vec![a.recharge(Money(amount), expires_in.map(|d| now + d)).unwrap().1],
                Op::Units { group, amount } => {
                    a.add_units(UnitKind::Time, Some(group.into()), amount, None);
                    vec![]
                }
                Op::Tick(d) => {
                    now += d;
                    a.expire(now).unwrap()
                }
            };
            books.post(&entries);
            books.check(&a);
            prop_assert!(a.available(now).0 >= 0);
        }
    }
}

fn tariffs() -> TariffTable {
    TariffTable::compile(
        vec![TariffRule {
            service: Service::Voice,
            prefix: String::new(),
            band: TimeBand::ALL_DAY,
            price: Money(7),
            block: 60,
        }],
        0,
    )
    .unwrap()
}

/// One step of one session's script: what its gateway sends next.
#[derive(Debug, Clone, Copy)]
struct Step {
    session: u8,
    requested: u64,
    used: u64,
    /// The gateway sends this request twice (a retransmission).
    repeat: bool,
}

fn request(session: u8, kind: RequestType, n: u32, requested: u64, used: u64) -> CreditControlRequest {
    CreditControlRequest {
        session_id: format!("s{session}"),
        request_type: kind,
        request_number: n,
        subscription_id: SubscriptionId::e164("4790000001"),
        service: Service::Voice,
        destination: Some("47".into()),
        event_time: 0,
        mscc: vec![MsccRequest {
            rating_group: Some(1),
            service_identifier: None,
            requested: Some(ServiceUnits::of(UnitKind::Time, requested)),
            used: (n > 0).then(|| ServiceUnits::of(UnitKind::Time, used)),
        }],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Sessions interleaved at random, each I, U…, T, some requests retransmitted: the copies
    /// get the first answer and change nothing; the limit and the books hold throughout.
    #[test]
    fn retransmissions_never_charge_twice(
        funds in 0..2000i64,
        credit in 0..500i64,
        steps in proptest::collection::vec((0..4u8, 0..600u64, 0..900u64, any::<bool>()), 1..60),
    ) {
        let steps: Vec<Step> =
            steps.into_iter().map(|(session, requested, used, repeat)| Step { session, requested, used, repeat }).collect();
        let (tariffs, policy) = (tariffs(), GyPolicy::default());
        let mut a = Account::new(1, Money(credit));
        let mut books = Books::default();
        if funds > 0 {
            books.post(&[a.recharge(Money(funds), None).unwrap().1]);
        }
        let mut sessions: HashMap<u8, Session> = HashMap::new();
        let mut numbers: HashMap<u8, u32> = HashMap::new();
        let count = steps.len();
        for (i, step) in steps.into_iter().enumerate() {
            let n = *numbers.entry(step.session).or_insert(0);
            let open = sessions.get(&step.session).is_some_and(|s| s.state == session::SessionState::Open);
            let kind = match (n, open) {
                (0, _) => RequestType::Initial,
                (_, true) if i + 4 >= count => RequestType::Termination,
                (_, true) => RequestType::Update,
                (_, false) => continue,
            };
            let req = request(step.session, kind, n, step.requested, step.used);
            let known = sessions.get(&step.session).cloned();
            let o = session::credit_control(&mut a, known, &req, &tariffs, &policy, 0).unwrap();
            books.post(&o.entries);
            books.check(&a);
            if let Some(s) = o.session {
                sessions.insert(step.session, s);
            }
            numbers.insert(step.session, n + 1);
            if step.repeat {
                let before = a.clone();
                let replayed = session::replay(sessions.get(&step.session), &req);
                prop_assert_eq!(replayed, Some(o.answer));
                prop_assert_eq!(&a, &before);
            }
        }
    }
}

fn any_units() -> impl Strategy<Value = Option<ServiceUnits>> {
    let amount = prop_oneof![Just(0u64), Just(u64::MAX), Just(u64::MAX / 60), 0..100_000u64];
    proptest::option::of((
        proptest::option::of(amount.clone()),
        proptest::option::of(amount.clone()),
        proptest::option::of(amount),
    ))
    .prop_map(|u| u.map(|(time, total_octets, service_specific)| ServiceUnits { time, total_octets, service_specific }))
}

fn any_request_type() -> impl Strategy<Value = RequestType> {
    prop_oneof![
        Just(RequestType::Initial),
        Just(RequestType::Update),
        Just(RequestType::Termination),
        Just(RequestType::Event)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever a gateway puts in its CCRs (extreme amounts, any order of request types and
    /// numbers, several MSCCs on one rating group), the OCS answers without failing and the
    /// books and the credit limit hold.
    #[test]
    fn hostile_requests_are_answered_and_the_books_hold(
        free in any::<bool>(),
        credit in 0..1000i64,
        requests in proptest::collection::vec(
            (any_request_type(), 0..6u32, proptest::collection::vec((proptest::option::of(0..3u32), any_units(), any_units()), 0..4)),
            1..30,
        ),
    ) {
        let price = if free { 0 } else { 7 };
        let tariffs = TariffTable::compile(
            vec![TariffRule { service: Service::Voice, prefix: String::new(), band: TimeBand::ALL_DAY, price: Money(price), block: 60 }],
            0,
        )
        .unwrap();
        let mut a = Account::new(1, Money(credit));
        let mut books = Books::default();
        books.post(&[a.recharge(Money(500), None).unwrap().1]);
        let mut session: Option<Session> = None;
        for (kind, n, mscc) in requests {
            let req = CreditControlRequest {
                session_id: "s".into(),
                request_type: kind,
                request_number: n,
                subscription_id: SubscriptionId::e164("4790000001"),
                service: Service::Voice,
                destination: None,
                event_time: 0,
                mscc: mscc
                    .into_iter()
                    .map(|(rating_group, requested, used)| MsccRequest { rating_group, service_identifier: None, requested, used })
                    .collect(),
            };
            if let Some(answer) = session::replay(session.as_ref(), &req) {
                prop_assert_eq!(answer.request_number, n);
                continue;
            }
            let o = session::credit_control(&mut a, session.clone(), &req, &tariffs, &GyPolicy::default(), 0).unwrap();
            books.post(&o.entries);
            books.check(&a);
            if let Some(s) = o.session {
                session = Some(s);
            }
        }
    }
}

/// Random session scripts run concurrently against the service on SQLite: whatever the
/// interleaving the scheduler picks, the books balance and no account passes its limit.
#[test]
fn concurrent_storage_interleavings() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(6));
    let scripts =
        proptest::collection::vec(proptest::collection::vec((0..300u64, 0..500u64, any::<bool>()), 1..6), 2..6);
    runner
        .run(&(0..400i64, 0..200i64, scripts), |(funds, credit, scripts)| {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let t = common::TestOcs::start(numport_db::Backend::Sqlite).await.unwrap();
                let msisdn = "4790000001";
                t.ocs.create_account(msisdn, Money(credit)).await.unwrap();
                if funds > 0 {
                    t.ocs.recharge(msisdn, Money(funds), None, "seed").await.unwrap();
                }
                let tasks: Vec<_> = scripts
                    .into_iter()
                    .enumerate()
                    .map(|(s, script)| {
                        let ocs = t.ocs.clone();
                        tokio::spawn(async move {
                            let id = format!("p{s}");
                            let last = script.len() as u32;
                            for (n, (requested, used, repeat)) in script.into_iter().enumerate() {
                                let n = n as u32;
                                let kind = match n {
                                    0 => RequestType::Initial,
                                    n if n == last - 1 && n > 0 => RequestType::Termination,
                                    _ => RequestType::Update,
                                };
                                let req = common::ccr(&id, msisdn, kind, n, Some(requested), (n > 0).then_some(used));
                                let first = ocs.credit_control(req.clone()).await.unwrap();
                                if repeat {
                                    assert_eq!(ocs.credit_control(req).await.unwrap(), first);
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                let report = t.ocs.check_ledger().await.unwrap();
                assert_eq!((report.total, report.overdraft), (0, 0));
                let b = t.ocs.balance(msisdn).await.unwrap();
                assert!(b.debt <= b.credit_limit);
            });
            Ok(())
        })
        .unwrap();
}
