//! The OCS on its real storage, each test on SQLite and on PostgreSQL: Gy sessions, idempotent
//! retransmissions, Tcc, the credit limit under concurrent sessions, restarts, and the four
//! seed methods end to end.

mod common;

use common::{T0, TestOcs, ccr};
use numport_core::Money;
use ocs::capacity::{Admission, Refusal};
use ocs::data_charging::{ANY_SUBSCRIBER, ChargingMode, DataUsageRecord, UsageContainer};
use ocs::online_list::{ChargingDecision, EntryKind, ListEntry};
use ocs::partial_cdr::{PartialCdr, PartialDecision};
use ocs::session::{FinalUnitAction, RequestType::*, ServiceUnits, result_code::*};
use ocs::{OcsError, UnitKind};

const A: &str = "4790000001";

both_backends! {
    session_initial_update_termination => session_initial_update_termination;
    retransmissions_are_answered_alike_and_charged_once => retransmissions_are_answered_alike_and_charged_once;
    unknown_subscriber_and_session => unknown_subscriber_and_session;
    tcc_releases_a_silent_session => tcc_releases_a_silent_session;
    concurrent_sessions_stay_within_the_credit_limit => concurrent_sessions_stay_within_the_credit_limit;
    state_survives_a_restart => state_survives_a_restart;
    recharge_is_idempotent_and_repays_credit => recharge_is_idempotent_and_repays_credit;
    online_charging_list => online_charging_list;
    capacity_admission => capacity_admission;
    data_record_split_and_rated_by_mode => data_record_split_and_rated_by_mode;
    partial_cdrs_then_formal_rating => partial_cdrs_then_formal_rating;
    load_benchmark_runs_clean => load_benchmark_runs_clean;
}

async fn load_benchmark_runs_clean(t: TestOcs) {
    for i in 0..3u64 {
        let msisdn = format!("{}", 4_791_000_000u64 + i);
        // The third account is nearly empty: its sessions meet the credit limit.
        funded(&t, &msisdn, if i == 2 { 25 } else { 1_000_000 }, 10).await;
    }
    let f = ocs::bench::credit_control_load(&t.ocs, 3, 6, std::time::Duration::from_millis(300)).await.unwrap();
    assert!(f.requests > 0);
    assert_eq!((f.double_charged, f.overdraft), (0, 0));
    let b = t.ocs.balance("4791000002").await.unwrap();
    assert!(b.debt <= b.credit_limit);
}

async fn funded(t: &TestOcs, msisdn: &str, amount: i64, credit: i64) {
    t.ocs.create_account(msisdn, Money(credit)).await.unwrap();
    t.ocs.recharge(msisdn, Money(amount), None, &format!("seed-{msisdn}")).await.unwrap();
}

async fn session_initial_update_termination(t: TestOcs) {
    funded(&t, A, 100, 0).await;
    let a = t.ocs.credit_control(ccr("s1", A, Initial, 0, Some(120), None)).await.unwrap();
    assert_eq!(a.result_code, SUCCESS);
    assert_eq!(a.mscc[0].granted, Some(ServiceUnits::of(UnitKind::Time, 120)));
    assert_eq!(a.mscc[0].validity_time, Some(600));
    let b = t.ocs.balance(A).await.unwrap();
    assert_eq!((b.balance, b.reserved, b.available), (Money(80), Money(20), Money(80)));
    let a = t.ocs.credit_control(ccr("s1", A, Update, 1, Some(900), Some(70))).await.unwrap();
    // 70 s used costs 20; 80 left buys 480 s of the 900 asked: the last grant.
    assert_eq!(a.mscc[0].granted, Some(ServiceUnits::of(UnitKind::Time, 480)));
    assert_eq!(a.mscc[0].final_unit_action, Some(FinalUnitAction::Terminate));
    let a = t.ocs.credit_control(ccr("s1", A, Termination, 2, None, Some(130))).await.unwrap();
    assert_eq!(a.result_code, SUCCESS);
    let b = t.ocs.balance(A).await.unwrap();
    assert_eq!((b.balance, b.reserved), (Money(50), Money(0)));
    let report = t.ocs.check_ledger().await.unwrap();
    assert_eq!((report.total, report.overdraft), (0, 0));
    assert!(t.registry.render().contains("ocs_ccr_total{request_type=\"termination\",result_code=\"2001\"} 1"));
}

async fn retransmissions_are_answered_alike_and_charged_once(t: TestOcs) {
    funded(&t, A, 1000, 0).await;
    let requests = [
        ccr("s1", A, Initial, 0, Some(60), None),
        ccr("s1", A, Update, 1, Some(60), Some(60)),
        ccr("s1", A, Termination, 2, None, Some(30)),
    ];
    for r in &requests {
        let first = t.ocs.credit_control(r.clone()).await.unwrap();
        let balance = t.ocs.balance(A).await.unwrap();
        // The T-flagged copy, twice, and concurrently.
        let (x, y) = tokio::join!(t.ocs.credit_control(r.clone()), t.ocs.credit_control(r.clone()));
        assert_eq!(x.unwrap(), first);
        assert_eq!(y.unwrap(), first);
        assert_eq!(t.ocs.balance(A).await.unwrap(), balance);
    }
    assert_eq!(t.ocs.balance(A).await.unwrap().balance, Money(1000 - 20));
    // A copy of the first request after the session moved on is out of sequence, not charged.
    let late = t.ocs.credit_control(requests[1].clone()).await.unwrap();
    assert_eq!(late.result_code, UNKNOWN_SESSION_ID);
    assert!(t.registry.render().contains("ocs_retransmissions_total 6"));
    t.ocs.check_ledger().await.unwrap();
}

async fn unknown_subscriber_and_session(t: TestOcs) {
    let a = t.ocs.credit_control(ccr("s1", "4799999999", Initial, 0, Some(60), None)).await.unwrap();
    assert_eq!((a.result_code, a.mscc.len()), (USER_UNKNOWN, 0));
    funded(&t, A, 100, 0).await;
    let a = t.ocs.credit_control(ccr("nope", A, Update, 1, Some(60), None)).await.unwrap();
    assert_eq!(a.result_code, UNKNOWN_SESSION_ID);
    let mut r = ccr("s2", A, Initial, 0, Some(60), None);
    r.destination = Some("1800".into());
    let a = t.ocs.credit_control(r).await.unwrap();
    assert_eq!(a.result_code, RATING_FAILED);
    assert!(matches!(t.ocs.balance("4799999999").await, Err(OcsError::UnknownSubscriber(_))));
}

async fn tcc_releases_a_silent_session(t: TestOcs) {
    funded(&t, A, 100, 0).await;
    t.ocs.credit_control(ccr("s1", A, Initial, 0, Some(600), None)).await.unwrap();
    assert_eq!(t.ocs.balance(A).await.unwrap().available, Money(0));
    t.clock.advance_ms(t.ocs.config().gy.tcc_ms - 1);
    assert_eq!(t.ocs.supervise_once().await.unwrap(), 0);
    t.clock.advance_ms(1);
    assert_eq!(t.ocs.supervise_once().await.unwrap(), 1);
    let b = t.ocs.balance(A).await.unwrap();
    assert_eq!((b.available, b.reserved), (Money(100), Money(0)));
    let a = t.ocs.credit_control(ccr("s1", A, Update, 1, Some(60), Some(600))).await.unwrap();
    assert_eq!(a.result_code, UNKNOWN_SESSION_ID);
    assert_eq!(t.ocs.supervise_once().await.unwrap(), 0);
    t.ocs.check_ledger().await.unwrap();
}

async fn concurrent_sessions_stay_within_the_credit_limit(t: TestOcs) {
    funded(&t, A, 500, 300).await;
    let mut tasks = Vec::new();
    for s in 0..8 {
        let ocs = t.ocs.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("s{s}");
            let mut n = 0;
            ocs.credit_control(ccr(&id, A, Initial, n, Some(120), None)).await.unwrap();
            for _ in 0..4 {
                n += 1;
                // Every gateway overuses its grant: the limit must hold anyway.
                ocs.credit_control(ccr(&id, A, Update, n, Some(120), Some(200))).await.unwrap();
            }
            ocs.credit_control(ccr(&id, A, Termination, n + 1, None, Some(200))).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let b = t.ocs.balance(A).await.unwrap();
    assert!(b.debt <= b.credit_limit, "{b:?}");
    assert_eq!(b.balance, Money(-300), "the account is spent to its limit exactly");
    assert_eq!(b.reserved, Money(0));
    let report = t.ocs.check_ledger().await.unwrap();
    assert_eq!((report.total, report.overdraft), (0, 0));
}

async fn state_survives_a_restart(t: TestOcs) {
    funded(&t, A, 100, 0).await;
    let first = t.ocs.credit_control(ccr("s1", A, Initial, 0, Some(120), None)).await.unwrap();
    t.ocs.put_online_entry(ListEntry { digits: "4790".into(), kind: EntryKind::Prefix }).await.unwrap();
    let ocs = t.reopen().await;
    // The reservation and the session's answer are still there.
    assert_eq!(ocs.balance(A).await.unwrap().reserved, Money(20));
    assert_eq!(ocs.credit_control(ccr("s1", A, Initial, 0, Some(120), None)).await.unwrap(), first);
    assert!(matches!(ocs.charging_decision("4790123"), ChargingDecision::Online { .. }));
    assert_eq!(ocs.tariffs().rules(), common::tariffs().as_slice());
    ocs.check_ledger().await.unwrap();
}

async fn recharge_is_idempotent_and_repays_credit(t: TestOcs) {
    t.ocs.create_account(A, Money(50)).await.unwrap();
    assert!(matches!(t.ocs.create_account(A, Money(0)).await, Err(OcsError::AccountExists(_))));
    let mut sms = ccr("e1", A, Event, 0, None, None);
    sms.service = ocs::Service::Sms;
    assert_eq!(t.ocs.credit_control(sms).await.unwrap().result_code, SUCCESS);
    assert_eq!(t.ocs.balance(A).await.unwrap().debt, Money(50));
    let b = t.ocs.recharge(A, Money(80), Some(T0 + 1000), "pay-1").await.unwrap();
    assert_eq!((b.debt, b.balance), (Money(0), Money(30)));
    let again = t.ocs.recharge(A, Money(80), Some(T0 + 1000), "pay-1").await.unwrap();
    assert_eq!(again, b);
    assert!(t.ocs.set_credit_limit(A, Money(-1)).await.is_err());
    // The recharge's bucket expires; its money is forfeited at the next request.
    t.clock.advance_ms(1000);
    t.ocs.credit_control(ccr("s1", A, Initial, 0, Some(60), None)).await.unwrap();
    let b = t.ocs.balance(A).await.unwrap();
    assert_eq!(b.balance, Money(-10));
    t.ocs.check_ledger().await.unwrap();
}

async fn online_charging_list(t: TestOcs) {
    let ocs = &t.ocs;
    ocs.put_online_entry(ListEntry { digits: "+4790".into(), kind: EntryKind::Prefix }).await.unwrap();
    ocs.put_online_entry(ListEntry { digits: "4791234567".into(), kind: EntryKind::Number }).await.unwrap();
    assert!(ocs.put_online_entry(ListEntry { digits: "47x".into(), kind: EntryKind::Prefix }).await.is_err());
    assert_eq!(
        ocs.charging_decision("4790555"),
        ChargingDecision::Online { matched: ListEntry { digits: "4790".into(), kind: EntryKind::Prefix } }
    );
    assert!(matches!(ocs.charging_decision("4791234567"), ChargingDecision::Online { .. }));
    assert_eq!(ocs.charging_decision("4791234568"), ChargingDecision::Offline);
    assert!(ocs.remove_online_entry("4790").await.unwrap());
    assert_eq!(ocs.charging_decision("4790555"), ChargingDecision::Offline);
    assert_eq!(ocs.online_list().len(), 1);
    let metrics = t.registry.render();
    assert!(metrics.contains("ocs_charging_decisions_total{outcome=\"online\"} 2"), "{metrics}");
    assert!(metrics.contains("ocs_online_list_entries 1"));
}

async fn capacity_admission(t: TestOcs) {
    let ocs = &t.ocs;
    assert_eq!(ocs.load_subscriber(A, 1).await.unwrap(), Admission::Refused { reason: Refusal::NotConfigured });
    ocs.set_capacity(10).await.unwrap();
    assert_eq!(ocs.load_subscriber(A, 6).await.unwrap(), Admission::Admitted { loaded: 6, total: 10 });
    assert_eq!(ocs.load_subscriber(A, 6).await.unwrap(), Admission::AlreadyLoaded { loaded: 6, total: 10 });
    assert_eq!(
        ocs.load_subscriber("4790000002", 5).await.unwrap(),
        Admission::Refused { reason: Refusal::CapacityExhausted { loaded: 6, requested: 5, total: 10 } }
    );
    // Concurrent loads never exceed the total.
    let loads = (0..8).map(|i| {
        let ocs = ocs.clone();
        tokio::spawn(async move { ocs.load_subscriber(&format!("47900001{i:02}"), 1).await.unwrap() })
    });
    let mut admitted = 0;
    for l in loads {
        if matches!(l.await.unwrap(), Admission::Admitted { .. }) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 4);
    assert!(ocs.unload_subscriber(A).await.unwrap());
    assert!(matches!(ocs.load_subscriber("4790000002", 5).await.unwrap(), Admission::Admitted { loaded: 9, .. }));
    assert!(t.registry.render().contains("ocs_capacity_loaded 9"));
}

async fn data_record_split_and_rated_by_mode(t: TestOcs) {
    funded(&t, A, 1000, 0).await;
    let ocs = &t.ocs;
    ocs.set_charging_mode(ANY_SUBSCRIBER, 1, ChargingMode::Volume { price: Money(2), block_octets: 1000 })
        .await
        .unwrap();
    ocs.set_charging_mode(ANY_SUBSCRIBER, 2, ChargingMode::Time { price: Money(3), block_s: 60 }).await.unwrap();
    ocs.set_charging_mode(ANY_SUBSCRIBER, 3, ChargingMode::Flat { fee: Money(100) }).await.unwrap();
    ocs.set_charging_mode(ANY_SUBSCRIBER, 4, ChargingMode::PerEvent { price: Money(7) }).await.unwrap();
    ocs.set_charging_mode(A, 1, ChargingMode::Free).await.unwrap();
    let c = |service_id: u32, octets: u64, duration_s: u64, events: u64| UsageContainer {
        service_id,
        uplink_octets: octets / 2,
        downlink_octets: octets - octets / 2,
        duration_s,
        events,
    };
    let record = |id: &str, who: &str| DataUsageRecord {
        record_id: id.into(),
        subscriber: who.into(),
        start: T0,
        containers: vec![c(1, 5000, 10, 0), c(2, 100, 61, 0), c(3, 9, 9, 0), c(4, 0, 0, 3), c(1, 1, 0, 0)],
    };
    let r = ocs.rate_data_record(&record("r1", A)).await.unwrap();
    let rated: Vec<(u32, i64)> = r.lines.iter().map(|l| (l.service_id, l.rated.0)).collect();
    assert_eq!(rated, vec![(1, 0), (2, 6), (3, 100), (4, 21)]);
    assert_eq!((r.rated, r.charged), (Money(127), Money(127)));
    // The same record again: the stored result, nothing charged.
    assert_eq!(ocs.rate_data_record(&record("r1", A)).await.unwrap(), r);
    // Another record the same day: the flat fee is not charged again.
    let r2 = ocs.rate_data_record(&record("r2", A)).await.unwrap();
    assert_eq!(r2.rated, Money(27));
    assert_eq!(ocs.balance(A).await.unwrap().balance, Money(1000 - 127 - 27));
    funded(&t, "4790000002", 10, 0).await;
    let r3 = ocs.rate_data_record(&record("r3", "4790000002")).await.unwrap();
    assert_eq!(r3.lines[0].rated, Money(12));
    assert_eq!(r3.charged, Money(10), "charged only what the balance holds");
    let mut unknown = record("r4", A);
    unknown.containers.push(c(9, 1, 1, 1));
    assert!(matches!(ocs.rate_data_record(&unknown).await, Err(OcsError::DataCharging(_))));
    assert!(t.registry.render().contains("ocs_data_subrecords_total{mode=\"flat\"} 3"));
    ocs.check_ledger().await.unwrap();
}

async fn partial_cdrs_then_formal_rating(t: TestOcs) {
    funded(&t, A, 65, 0).await;
    let part = |seq, start_s: i64, duration_s, last| PartialCdr {
        call_id: "call-1".into(),
        seq,
        caller: A.into(),
        called: "4791234567".into(),
        start: T0 + start_s * 1000,
        duration_s,
        last,
    };
    let ocs = &t.ocs;
    let o = ocs.partial_cdr(&part(1, 0, 90, false)).await.unwrap();
    assert_eq!(o.decision, PartialDecision::Continue { charged: Money(20) });
    // The last part arrives before the second: no merge yet.
    let o = ocs.partial_cdr(&part(3, 180, 30, true)).await.unwrap();
    assert_eq!((o.decision, o.call.is_none()), (PartialDecision::Continue { charged: Money(10) }, true));
    let o = ocs.partial_cdr(&part(2, 90, 90, false)).await.unwrap();
    assert_eq!(o.decision, PartialDecision::Continue { charged: Money(20) });
    let call = o.call.expect("the call is complete");
    assert_eq!(
        (call.complete.duration_s, call.correction.provisional, call.correction.formal),
        (210, Money(50), Money(40))
    );
    assert_eq!(call.applied, Money(-10));
    assert_eq!(ocs.balance(A).await.unwrap().balance, Money(25));
    // A partial sent again changes nothing.
    let again = ocs.partial_cdr(&part(2, 90, 90, false)).await.unwrap();
    assert_eq!(again.call, Some(call));
    assert_eq!(ocs.balance(A).await.unwrap().balance, Money(25));
    // A second call runs the balance out and is cut off.
    let mut p = part(1, 0, 180, false);
    p.call_id = "call-2".into();
    let o = ocs.partial_cdr(&p).await.unwrap();
    assert_eq!(o.decision, PartialDecision::CutOff { charged: Money(25), uncollected: Money(5) });
    let metrics = t.registry.render();
    assert!(metrics.contains("ocs_partial_cdrs_total{outcome=\"cut_off\"} 1"));
    assert!(metrics.contains("ocs_call_corrections_total{outcome=\"refund\"} 1"));
    ocs.check_ledger().await.unwrap();
}
