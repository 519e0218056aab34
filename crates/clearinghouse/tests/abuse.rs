//! Porting that no party can obstruct or abuse, through the real HTTP API on SQLite and
//! PostgreSQL: failed verifications charged to the party responsible (never to the number),
//! the donor's decline, deposits nobody used expiring, each operator's request rate, and
//! callbacks refused to addresses that are not public.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clearinghouse::ClearinghouseConfig;
use clearinghouse::config::{RateLimit, VerificationPolicy};
use clearinghouse_api::messages::Message;
use clearinghouse_api::model::*;
use common::{T0, Terminal, TestCh};
use numport_core::porting::{CreditInfo, DeclineReason, OrderState, Reason, ViolationKind};
use numport_core::{Clock, Money};
use numport_db::Backend;

/// The subscriber's number, with the key of someone else: what an impostor (or a donor
/// computing with the wrong key) proves.
fn impostor(term: &Terminal) -> Terminal {
    Terminal { msisdn: term.msisdn.clone(), key: Terminal::new("4799999999").key }
}

fn kinds(v: &ViolationList) -> Vec<ViolationKind> {
    v.violations.iter().map(|v| v.kind).collect()
}

async fn count(t: &TestCh, table: &str) -> i64 {
    let mut conn = t.ch.db.acquire().await.unwrap();
    numport_db::sql::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut conn).await.unwrap()
}

/// Run a port of `term` to `recipient` (opa the donor) to completion.
async fn port_completes(t: &TestCh, term: &Terminal, recipient: &common::Operator, key: &str) {
    let req = term.request(&recipient.name, t.clock.now_ms());
    let o = recipient.client.request_port(&req, &format!("{key}-r")).await.unwrap();
    assert_eq!(o.state, OrderState::AwaitingDeposit, "{o:?}");
    t.a.client.deposit(&term.deposit_for(&req, &recipient.name), &format!("{key}-d")).await.unwrap();
    let credit = CreditInformationRequest { credit: CreditInfo::default() };
    let o = t.a.client.credit_information(o.id, &credit, &format!("{key}-c")).await.unwrap();
    let accept = DecisionRequest { accept: true, compensation: Some(Money(0)) };
    recipient.client.decide(o.id, &accept, &format!("{key}-x")).await.unwrap();
    assert_eq!(t.settled(recipient, o.id).await.state, OrderState::Completed);
}

/// opc sends requests for opa's subscriber with proofs it made up. Each disagrees with the
/// donor's deposit of the true proof and is charged to opc; past its limit opc is refused and
/// recorded as a violator. The number is not locked: opb, with the subscriber's proof, ports
/// it. Past its total limit opc is refused for every number.
async fn a_bogus_requester_is_refused_and_the_subscriber_still_ports(backend: Backend) {
    let config = ClearinghouseConfig {
        verification: VerificationPolicy { max_failures_per_number: 3, max_failures_total: 4, ..Default::default() },
        ..common::test_config()
    };
    let Some(t) = TestCh::start_with(backend, config).await else { return };
    let term = Terminal::new("4790000001");
    let bogus = impostor(&term);
    for i in 0..3 {
        let req = bogus.request(&t.c.name, T0);
        let o = t.c.client.request_port(&req, &format!("bogus{i}")).await.unwrap();
        assert_eq!(o.state, OrderState::AwaitingDeposit, "attempt {i} goes on");
        // The donor deposits the subscriber's true proof for what it was asked.
        t.a.client.deposit(&term.deposit_for(&req, &t.c.name), &format!("dep{i}")).await.unwrap();
        let o = t.c.client.order(o.id).await.unwrap();
        assert_eq!((o.state, o.reason), (OrderState::Rejected, Some(Reason::ProofMismatch)));
    }
    let refused = t.c.client.request_port(&bogus.request(&t.c.name, T0), "bogus3").await.unwrap();
    assert_eq!((refused.state, refused.reason), (OrderState::Rejected, Some(Reason::TooManyAttempts)));
    let charged = t.c.client.violations().await.unwrap();
    assert_eq!(kinds(&charged), [ViolationKind::TooManyAttempts]);
    assert_eq!(charged.violations[0].order_id, refused.id);
    assert!(t.a.client.violations().await.unwrap().violations.is_empty(), "the honest donor is not charged");
    assert_eq!(t.ch.metrics.violations.get(), 1, "counted in the supervision figures");

    // The legitimate recipient is not refused, and the port completes.
    port_completes(&t, &term, &t.b, "real").await;
    assert!(t.b.client.violations().await.unwrap().violations.is_empty());
    assert_eq!(t.c.client.number(&term.msisdn).await.unwrap().serving_operator, t.b.name);

    // One more failure, on another number, takes opc to its total: it is refused everywhere,
    // and everyone else still is not.
    let other = Terminal::new("4790000002");
    let req = impostor(&other).request(&t.c.name, T0);
    let o = t.c.client.request_port(&req, "other").await.unwrap();
    t.a.client.deposit(&other.deposit_for(&req, &t.c.name), "other-d").await.unwrap();
    assert_eq!(t.c.client.order(o.id).await.unwrap().reason, Some(Reason::ProofMismatch));
    let third = Terminal::new("4791000003");
    let o = t.c.client.request_port(&third.request(&t.c.name, T0), "third").await.unwrap();
    assert_eq!(o.reason, Some(Reason::TooManyAttempts));
    assert_eq!(kinds(&t.c.client.violations().await.unwrap()), [ViolationKind::TooManyAttempts; 2]);
    let o = t.a.client.request_port(&third.request(&t.a.name, T0), "third-a").await.unwrap();
    assert_eq!(o.state, OrderState::AwaitingDeposit);
    // After the window opc may ask again.
    t.clock.advance_ms(t.ch.config.verification.failure_window_ms + 1);
    let o = t.c.client.request_port(&other.request(&t.c.name, t.clock.now_ms()), "later").await.unwrap();
    assert_eq!(o.state, OrderState::AwaitingDeposit);
}

/// A donor deposits wrong proofs for its subscriber. The first disagreement is charged to the
/// requester (nothing yet tells the two apart); once the donor's deposits for the number have
/// disagreed with a second requester, the donor is charged and recorded, and the requesters
/// are not: the legitimate recipient is never refused.
async fn a_donor_depositing_wrong_proofs_is_the_violator(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000005");
    let wrong = impostor(&term);
    let mut n = 0;
    let mut mismatch = async |recipient: &common::Operator| {
        n += 1;
        let req = term.request(&recipient.name, T0);
        let o = recipient.client.request_port(&req, &format!("r{n}")).await.unwrap();
        assert_eq!(o.state, OrderState::AwaitingDeposit, "request {n} is not refused");
        t.a.client.deposit(&wrong.deposit_for(&req, &recipient.name), &format!("d{n}")).await.unwrap();
        assert_eq!(recipient.client.order(o.id).await.unwrap().reason, Some(Reason::ProofMismatch));
    };
    mismatch(&t.b).await;
    mismatch(&t.c).await;
    for _ in 0..4 {
        mismatch(&t.b).await;
    }
    let charged = t.a.client.violations().await.unwrap();
    assert_eq!(kinds(&charged), [ViolationKind::DepositMismatch; 5]);
    assert!(charged.violations.iter().all(|v| v.step == OrderState::AwaitingDeposit));
    assert!(t.b.client.violations().await.unwrap().violations.is_empty());
    assert!(t.c.client.violations().await.unwrap().violations.is_empty());
    // opb was charged once only (its first request): it may still ask.
    let o = t.b.client.request_port(&term.request(&t.b.name, T0), "still").await.unwrap();
    assert_eq!(o.state, OrderState::AwaitingDeposit);
}

/// A port request for a number in the donor's range that it has no subscriber for: the donor
/// declines with the reason, the order ends at once, and nobody is charged.
async fn a_donor_declines_without_being_charged(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let term = Terminal::new("4790000777");
    let o = t.b.client.request_port(&term.request(&t.b.name, T0), "r").await.unwrap();
    assert_eq!(o.state, OrderState::AwaitingDeposit);
    let why = DeclineRequest { reason: DeclineReason::UnknownSubscriber };
    assert_eq!(t.b.client.decline(o.id, &why, "b").await.unwrap_err().code(), Some("forbidden"));
    assert_eq!(t.c.client.decline(o.id, &why, "c").await.unwrap_err().code(), Some("not_found"));
    let declined = t.a.client.decline(o.id, &why, "d1").await.unwrap();
    assert_eq!((declined.state, declined.reason), (OrderState::Rejected, Some(Reason::UnknownSubscriber)));
    // The same request again gets the same answer; another is too late.
    assert_eq!(t.a.client.decline(o.id, &why, "d1").await.unwrap(), declined);
    assert_eq!(t.a.client.decline(o.id, &why, "d2").await.unwrap_err().code(), Some("invalid_state"));
    for op in [&t.a, &t.b] {
        let closed = t.messages(op, "order_closed").await;
        assert!(matches!(&closed[..], [Message::OrderClosed { reason: Reason::UnknownSubscriber, .. }]), "{closed:?}");
    }
    // Past the deposit deadline nothing is left to supervise, and nobody was charged.
    t.clock.advance_ms(t.ch.config.deadlines.deposit_ms + 1);
    assert_eq!(t.ch.supervise_once().await.unwrap(), 0);
    for op in [&t.a, &t.b, &t.c] {
        assert!(op.client.violations().await.unwrap().violations.is_empty(), "{}", op.name);
    }
    // Once the deposit matched, the order is no longer the donor's to decline.
    let term = Terminal::new("4790000778");
    let req = term.request(&t.b.name, t.clock.now_ms());
    let o = t.b.client.request_port(&req, "r2").await.unwrap();
    t.a.client.deposit(&term.deposit_for(&req, &t.b.name), "dep2").await.unwrap();
    let why = DeclineRequest { reason: DeclineReason::NumberNotActive };
    assert_eq!(t.a.client.decline(o.id, &why, "d3").await.unwrap_err().code(), Some("invalid_state"));
    // An unknown reason code is refused.
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/porting-orders/{}/decline", t.url, o.id))
        .bearer_auth(&t.a.token)
        .header("idempotency-key", "d4")
        .json(&serde_json::json!({"reason": "busy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert_eq!(resp.json::<ApiError>().await.unwrap().error, "invalid_request");
}

/// Deposits nobody used are deleted past their retention, failed verifications past their
/// window; an order still waiting keeps its rendezvous row.
async fn deposits_nobody_used_expire(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let policy = t.ch.config.verification;
    let term = Terminal::new("4790000010");
    let unused = term.request(&t.b.name, T0);
    t.a.client.deposit(&term.deposit_for(&unused, &t.b.name), "unused").await.unwrap();
    let used = term.request(&t.b.name, T0);
    let o = t.b.client.request_port(&used, "used").await.unwrap();
    t.a.client.deposit(&term.deposit_for(&used, &t.b.name), "used-d").await.unwrap();
    t.b.client.cancel(o.id, &CancelRequest { by_subscriber: true }, "cancel").await.unwrap();
    let waiting = Terminal::new("4790000011");
    t.b.client.request_port(&waiting.request(&t.b.name, T0), "waiting").await.unwrap();
    let mismatched = Terminal::new("4790000012");
    let req = impostor(&mismatched).request(&t.c.name, T0);
    t.c.client.request_port(&req, "bogus").await.unwrap();
    t.a.client.deposit(&mismatched.deposit_for(&req, &t.c.name), "bogus-d").await.unwrap();
    assert_eq!((count(&t, "proof_deposits").await, count(&t, "verification_failures").await), (4, 1));

    t.clock.advance_ms(policy.deposit_retention_ms);
    assert_eq!(t.ch.expire_once(1000).await.unwrap().deposits, 0, "kept for the whole retention");
    t.clock.advance_ms(1);
    let expired = t.ch.expire_once(1000).await.unwrap();
    assert_eq!((expired.deposits, expired.failures), (3, 0));
    assert_eq!(count(&t, "proof_deposits").await, 1, "the waiting order's row stays");
    t.clock.advance_ms(policy.failure_window_ms);
    let expired = t.ch.expire_once(1000).await.unwrap();
    assert_eq!((expired.deposits, expired.failures), (0, 1));
    assert_eq!(count(&t, "verification_failures").await, 0);
}

/// Each operator has its bucket: past it, 429 `rate_limited` with `Retry-After`, in the API's
/// error shape; another operator is not held up, and time refills the bucket.
async fn requests_past_the_rate_are_refused_with_429(backend: Backend) {
    let config = ClearinghouseConfig { rate_limit: RateLimit { per_second: 2, burst: 3 }, ..common::test_config() };
    let Some(t) = TestCh::start_with(backend, config).await else { return };
    for _ in 0..3 {
        t.a.client.account().await.unwrap();
    }
    let resp =
        reqwest::Client::new().get(format!("{}/v1/accounts/me", t.url)).bearer_auth(&t.a.token).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["message"].as_str().unwrap().contains("retry in 1 s"), "{body}");
    let err = t.a.client.request_port(&Terminal::new("4791000001").request(&t.a.name, T0), "k").await.unwrap_err();
    assert_eq!(err.code(), Some("rate_limited"));
    t.b.client.account().await.unwrap();
    t.clock.advance_ms(500);
    t.a.client.account().await.unwrap();
    assert_eq!(t.a.client.account().await.unwrap_err().code(), Some("rate_limited"));
}

/// A loopback receiver that answers 200 and counts the requests it got.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/cb",
        axum::routing::post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("127.0.0.1:{port}"), hits)
}

async fn operator_id(t: &TestCh, name: &str) -> i64 {
    let mut conn = t.ch.db.acquire().await.unwrap();
    clearinghouse::store::operators::by_name(&mut conn, name).await.unwrap().unwrap().id
}

/// Wait until every message for `operator` has been attempted at least once.
async fn attempted(t: &TestCh, operator: i64) -> Vec<(Option<i64>, Option<String>)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut conn = t.ch.db.acquire().await.unwrap();
        let rows = numport_db::sql::query(
            "SELECT delivered_at, attempts, last_error FROM messages WHERE operator_id = $1 ORDER BY id",
        )
        .bind(operator)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        drop(conn);
        let done = !rows.is_empty()
            && rows.iter().all(|r| {
                r.try_get::<Option<i64>, _>("delivered_at").unwrap().is_some()
                    || r.try_get::<i64, _>("attempts").unwrap() > 0
            });
        if done {
            return rows
                .iter()
                .map(|r| (r.try_get("delivered_at").unwrap(), r.try_get("last_error").unwrap()))
                .collect();
        }
        assert!(std::time::Instant::now() < deadline, "messages not attempted within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn callback_config(allow: bool) -> ClearinghouseConfig {
    let mut c = ClearinghouseConfig {
        deposit_reminder_ms: 0,
        allow_private_callback_addresses: allow,
        ..common::test_config()
    };
    c.dispatcher.poll_interval_ms = 10;
    c.dispatcher.request_timeout_ms = 1_000;
    c
}

/// Callback URLs naming loopback, private, link-local or shared addresses are refused at
/// registration; one that got in anyway (or a name resolving to loopback) is never called.
async fn callbacks_to_private_addresses_are_refused(backend: Backend) {
    let Some(t) = TestCh::start_with(backend, callback_config(false)).await else { return };
    let (addr, hits) = receiver().await;
    let port = addr.rsplit(':').next().unwrap();
    for url in [
        format!("http://{addr}/cb"),
        format!("http://localhost:{port}/cb"),
        format!("http://[::1]:{port}/cb"),
        "http://10.1.2.3/cb".into(),
        "http://192.168.0.1/cb".into(),
        "http://100.64.0.1/cb".into(),
        "http://169.254.169.254/latest/meta-data".into(),
        "http://[fd00::1]/cb".into(),
        "http://0.0.0.0/cb".into(),
    ] {
        let err = t.a.client.set_callback(Some(&url)).await.unwrap_err();
        assert_eq!(err.code(), Some("callback_address_not_public"), "{url}");
    }
    assert_eq!(t.a.client.set_callback(Some("ftp://8.8.8.8/")).await.unwrap_err().code(), Some("invalid_callback_url"));

    // Registered behind the check's back: an address literal, and a name resolving to loopback.
    let (a, b) = (operator_id(&t, "opa").await, operator_id(&t, "opb").await);
    let mut conn = t.ch.db.acquire().await.unwrap();
    let ops = clearinghouse::store::operators::set_callback_url;
    ops(&mut conn, a, Some(&format!("http://{addr}/cb"))).await.unwrap();
    ops(&mut conn, b, Some(&format!("http://localhost:{port}/cb"))).await.unwrap();
    drop(conn);
    // A request gives opa a deposit request, and the recipient opb the order's closing.
    let o = t.b.client.request_port(&Terminal::new("4790000020").request(&t.b.name, T0), "r").await.unwrap();
    t.b.client.cancel(o.id, &CancelRequest { by_subscriber: false }, "c").await.unwrap();
    t.ch.wake_dispatcher();
    for op in [a, b] {
        for (delivered, error) in attempted(&t, op).await {
            assert_eq!(delivered, None);
            assert!(error.is_some_and(|e| e.starts_with("callback")), "the failure is recorded");
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the loopback receiver");
    // The messages wait in the inbox.
    assert!(!t.messages(&t.a, "deposit_requested").await.is_empty());
}

/// With private addresses allowed by configuration, a loopback callback is registered and
/// called.
async fn callbacks_to_loopback_when_allowed(backend: Backend) {
    let Some(t) = TestCh::start_with(backend, callback_config(true)).await else { return };
    let (addr, hits) = receiver().await;
    t.a.client.set_callback(Some(&format!("http://{addr}/cb"))).await.unwrap();
    t.b.client.request_port(&Terminal::new("4790000021").request(&t.b.name, T0), "r").await.unwrap();
    let a = operator_id(&t, "opa").await;
    assert!(attempted(&t, a).await.iter().all(|(delivered, _)| delivered.is_some()));
    assert!(hits.load(Ordering::SeqCst) > 0);
}

on_both_backends!(
    a_bogus_requester_is_refused_and_the_subscriber_still_ports,
    a_donor_depositing_wrong_proofs_is_the_violator,
    a_donor_declines_without_being_charged,
    deposits_nobody_used_expire,
    requests_past_the_rate_are_refused_with_429,
    callbacks_to_private_addresses_are_refused,
    callbacks_to_loopback_when_allowed,
);
