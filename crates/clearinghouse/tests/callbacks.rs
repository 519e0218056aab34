//! The dispatcher's callbacks, received by small HTTP servers inside the test: every message
//! is signed with the operator's callback secret over the exact body, names itself in
//! `x-numport-message-id`, and is delivered at least once: a receiver that fails or times out
//! gets it again later (the same id may come more than once; none is lost). Messages due for
//! one operator at once come together, as a JSON array under one signature.
//!
//! Retry back-off is measured on the clearinghouse's clock, which the tests drive.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clearinghouse::ClearinghouseConfig;
use clearinghouse::config::DispatcherConfig;
use clearinghouse_api::Envelope;
use clearinghouse_api::model::{CreditInformationRequest, DecisionRequest};
use common::{Operator, Terminal, TestCh};
use numport_core::porting::{CreditInfo, OrderState};
use numport_core::signing::{
    DEFAULT_TOLERANCE_MS, MESSAGE_ID_HEADER, SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER, verify,
};
use numport_core::{Clock, Money};
use numport_db::Backend;

/// One callback as the receiver got it, and what it answered.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
    /// The id of a single envelope (-1 for an array or a body that is neither).
    envelope_id: i64,
    /// Every envelope's id, in the body's order.
    envelope_ids: Vec<i64>,
    answered: u16,
}

/// How a receiver answers the `n`-th delivery (from 1) of a message id: after how long, with
/// which status.
type Plan = Arc<dyn Fn(i64, usize) -> (Duration, u16) + Send + Sync>;

#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

#[derive(Clone)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Delivery>>>,
    plan: Plan,
}

async fn receive(State(s): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let envelope_id = serde_json::from_slice::<Envelope>(&body).map(|e| e.id).unwrap_or(-1);
    let envelope_ids = match serde_json::from_slice::<Vec<Envelope>>(&body) {
        Ok(batch) => batch.iter().map(|e| e.id).collect(),
        Err(_) => vec![envelope_id],
    };
    let first = envelope_ids[0];
    let nth = 1 + s.got.lock().unwrap().iter().filter(|d| d.envelope_ids[0] == first).count();
    let (delay, status) = (s.plan)(first, nth);
    // Recorded on arrival, before answering: a receiver that times out has still seen it.
    s.got.lock().unwrap().push(Delivery { headers, body, envelope_id, envelope_ids, answered: status });
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start(plan: Plan) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/callbacks", axum::routing::post(receive))
            .with_state(ReceiverState { got: got.clone(), plan });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/callbacks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got }
    }

    fn always_ok() -> Plan {
        Arc::new(|_, _| (Duration::ZERO, 200))
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Ids answered 2xx at least once.
    fn acknowledged(&self) -> BTreeSet<i64> {
        let ok = self.deliveries().into_iter().filter(|d| (200..300).contains(&d.answered));
        ok.flat_map(|d| d.envelope_ids).collect()
    }
}

/// One envelope per callback, so that a receiver's plan acts on each message by its id.
fn config() -> ClearinghouseConfig {
    let mut c = batch_config();
    c.dispatcher.batch_max = 1;
    c
}

fn batch_config() -> ClearinghouseConfig {
    ClearinghouseConfig {
        // Deposit reminders go out at once, so every message of a port is a callback here.
        deposit_reminder_ms: 0,
        dispatcher: DispatcherConfig {
            base_backoff_ms: 100,
            max_backoff_ms: 400,
            lease_ms: 5_000,
            poll_interval_ms: 10,
            request_timeout_ms: 500,
            ..DispatcherConfig::default()
        },
        ..common::test_config()
    }
}

async fn pending(t: &TestCh) -> i64 {
    let mut conn = t.ch.db.acquire().await.unwrap();
    clearinghouse::store::outbox::pending_count(&mut conn).await.unwrap()
}

/// Wait (real time, bounded) until `done`, moving the clearinghouse's clock on by `step_ms`
/// each round so that back-off and leases run out.
async fn wait_until<F, Fut>(t: &TestCh, step_ms: i64, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if done().await {
            return;
        }
        t.clock.advance_ms(step_ms);
        t.ch.wake_dispatcher();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// An operator's whole inbox, by message id.
async fn inbox(op: &Operator) -> BTreeMap<i64, Envelope> {
    op.client.inbox(0, 1000).await.unwrap().messages.into_iter().map(|e| (e.id, e)).collect()
}

fn secret(op: &Operator) -> Vec<u8> {
    hex::decode(&op.callback_secret).unwrap()
}

/// Check one delivery's signature and identity against the operator's secret and inbox.
fn check_delivery(t: &TestCh, d: &Delivery, op: &Operator, other: &Operator, inbox: &BTreeMap<i64, Envelope>) {
    let h = |name: &str| {
        d.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{name} missing: {:?}", d.headers))
            .to_owned()
    };
    let ts: i64 = h(TIMESTAMP_HEADER).parse().unwrap();
    let sig = h(SIGNATURE_HEADER);
    let now = t.clock.now_ms();
    assert_eq!(
        verify(&secret(op), ts, &d.body, &sig, now, DEFAULT_TOLERANCE_MS),
        Ok(()),
        "signature of message {}",
        d.envelope_id
    );
    assert_eq!(
        verify(&secret(other), ts, &d.body, &sig, now, DEFAULT_TOLERANCE_MS),
        Err(SignatureError::Mismatch),
        "another operator's secret"
    );
    let mut tampered = d.body.to_vec();
    tampered.push(b' ');
    assert_eq!(
        verify(&secret(op), ts, &tampered, &sig, now, DEFAULT_TOLERANCE_MS),
        Err(SignatureError::Mismatch),
        "a changed body"
    );
    assert_eq!(h(MESSAGE_ID_HEADER), d.envelope_id.to_string());
    assert_eq!(h("content-type"), "application/json");
    let envelope: Envelope = serde_json::from_slice(&d.body).unwrap();
    assert_eq!(Some(&envelope), inbox.get(&envelope.id), "the callback carries the inbox's message");
}

/// A → B, through every step of the API.
async fn port(t: &TestCh, number: &str, contract: i64) -> i64 {
    let term = Terminal::new(number);
    let req = term.request(&t.b.name, t.clock.now_ms());
    let o = t.b.client.request_port(&req, &format!("r-{number}")).await.unwrap();
    t.a.client.deposit(&term.deposit_for(&req, &t.b.name), &format!("d-{number}")).await.unwrap();
    let info = CreditInformationRequest {
        credit: CreditInfo { contract_remaining: Money(contract), ..CreditInfo::default() },
    };
    t.a.client.credit_information(o.id, &info, &format!("c-{number}")).await.unwrap();
    let done = t
        .b
        .client
        .decide(o.id, &DecisionRequest { accept: true, compensation: Some(Money(contract)) }, &format!("x-{number}"))
        .await
        .unwrap();
    assert_eq!(done.state, OrderState::Settling);
    assert_eq!(t.settled(&t.b, o.id).await.state, OrderState::Completed);
    o.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_signed_and_carry_the_message_id() {
    let t = TestCh::start_with(Backend::Sqlite, config()).await.unwrap();
    let (ra, rb) = (Receiver::start(Receiver::always_ok()).await, Receiver::start(Receiver::always_ok()).await);
    t.a.client.set_callback(Some(&ra.url)).await.unwrap();
    t.b.client.set_callback(Some(&rb.url)).await.unwrap();
    let order = port(&t, "4790000301", 450).await;
    wait_until(&t, 0, "every message delivered", || async { pending(&t).await == 0 }).await;

    let (ia, ib) = (inbox(&t.a).await, inbox(&t.b).await);
    let kinds = |i: &BTreeMap<i64, Envelope>| i.values().map(|e| e.message.kind()).collect::<Vec<_>>();
    assert_eq!(kinds(&ia), ["deposit_requested", "credit_query", "compensation_confirmed"]);
    assert_eq!(kinds(&ib), ["credit_information", "port_completed"]);
    assert!(ia.values().chain(ib.values()).all(|e| e.message.order_id() == Some(order)));
    for d in ra.deliveries() {
        check_delivery(&t, &d, &t.a, &t.b, &ia);
    }
    for d in rb.deliveries() {
        check_delivery(&t, &d, &t.b, &t.a, &ib);
    }
    // Each operator got all of its own messages and nobody else's.
    assert_eq!(ra.acknowledged(), ia.keys().copied().collect());
    assert_eq!(rb.acknowledged(), ib.keys().copied().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_for_a_callback_url_and_are_then_delivered() {
    let t = TestCh::start_with(Backend::Sqlite, config()).await.unwrap();
    // No URL yet: the message stays in the outbox (and the inbox).
    let term = Terminal::new("4790000302");
    t.b.client.request_port(&term.request(&t.b.name, t.clock.now_ms()), "r").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pending(&t).await, 1);
    // Registering the URL makes it due at once: no clock movement needed.
    let ra = Receiver::start(Receiver::always_ok()).await;
    t.a.client.set_callback(Some(&ra.url)).await.unwrap();
    wait_until(&t, 0, "delivery after registration", || async { pending(&t).await == 0 }).await;
    let ia = inbox(&t.a).await;
    assert_eq!(ra.acknowledged(), ia.keys().copied().collect());
    for d in ra.deliveries() {
        check_delivery(&t, &d, &t.a, &t.b, &ia);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_message_again() {
    let t = TestCh::start_with(Backend::Sqlite, config()).await.unwrap();
    // 500 on the first two deliveries of every message, then 200.
    let ra = Receiver::start(Arc::new(|_, nth| (Duration::ZERO, if nth <= 2 { 500 } else { 200 }))).await;
    t.a.client.set_callback(Some(&ra.url)).await.unwrap();
    let term = Terminal::new("4790000303");
    t.b.client.request_port(&term.request(&t.b.name, t.clock.now_ms()), "r").await.unwrap();

    // Without the clock moving, the back-off never runs out: one attempt only.
    wait_until(&t, 0, "the first attempt", || async { !ra.deliveries().is_empty() }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ra.deliveries().len(), 1, "retried before its back-off ran out");
    wait_until(&t, 50, "delivery after two failures", || async { pending(&t).await == 0 }).await;

    let ia = inbox(&t.a).await;
    let (id, _) = ia.first_key_value().unwrap();
    let got = ra.deliveries();
    assert_eq!(
        got.iter().map(|d| (d.envelope_id, d.answered)).collect::<Vec<_>>(),
        [(*id, 500), (*id, 500), (*id, 200)]
    );
    for d in &got {
        check_delivery(&t, d, &t.a, &t.b, &ia);
    }
    let mut conn = t.ch.db.acquire().await.unwrap();
    let (attempts, delivered_at, last_error): (i64, Option<i64>, Option<String>) =
        numport_db::sql::query_as("SELECT attempts, delivered_at, last_error FROM messages WHERE id = $1")
            .bind(*id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(attempts, 3);
    assert!(delivered_at.is_some());
    assert!(last_error.unwrap_or_default().contains("500"), "the failure is remembered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_at_least_once_never_lost() {
    let t = TestCh::start_with(Backend::Sqlite, config()).await.unwrap();
    // A receiver that fails or answers too late (after the dispatcher's 500 ms timeout) on
    // the first deliveries, by a fixed pattern over message ids.
    let plan: Plan = Arc::new(|id, nth| match (id % 4, nth) {
        (0, 1) => (Duration::ZERO, 503),
        (1, 1) => (Duration::from_millis(800), 200),
        (2, 1 | 2) => (Duration::ZERO, 500),
        _ => (Duration::ZERO, 200),
    });
    let (ra, rb) = (Receiver::start(plan.clone()).await, Receiver::start(plan).await);
    t.a.client.set_callback(Some(&ra.url)).await.unwrap();
    t.b.client.set_callback(Some(&rb.url)).await.unwrap();
    for i in 0..6 {
        port(&t, &format!("479000040{i}"), 100 * i).await;
    }
    wait_until(&t, 100, "every message delivered", || async { pending(&t).await == 0 }).await;

    let (ia, ib) = (inbox(&t.a).await, inbox(&t.b).await);
    assert_eq!(ia.len() + ib.len(), 6 * 5);
    for (r, op, other, inbox) in [(&ra, &t.a, &t.b, &ia), (&rb, &t.b, &t.a, &ib)] {
        let got = r.deliveries();
        for d in &got {
            check_delivery(&t, d, op, other, inbox);
        }
        // Nothing lost: every message of the operator was answered 2xx at least once.
        assert_eq!(r.acknowledged(), inbox.keys().copied().collect(), "messages of {}", op.name);
        // The ones answered too late came again although the receiver had answered 200.
        for id in inbox.keys().filter(|id| *id % 4 == 1) {
            let oks = got.iter().filter(|d| d.envelope_id == *id && d.answered == 200).count();
            assert!(oks >= 2, "message {id}, answered late, was delivered {oks} time(s) with 200");
        }
        for id in inbox.keys().filter(|id| *id % 4 == 2) {
            let n = got.iter().filter(|d| d.envelope_id == *id).count();
            assert!(n >= 3, "message {id} failed twice, so it came at least three times ({n})");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_due_at_once_travel_in_one_signed_callback_and_are_retried_together() {
    let t = TestCh::start_with(Backend::Sqlite, batch_config()).await.unwrap();
    // Four orders' deposit requests wait for A's callback URL: once it is registered they are
    // all due at once. The receiver refuses the first callback and takes the second.
    for i in 0..4 {
        let term = Terminal::new(&format!("479000050{i}"));
        t.b.client.request_port(&term.request(&t.b.name, t.clock.now_ms()), &format!("r{i}")).await.unwrap();
    }
    let ra = Receiver::start(Arc::new(|_, nth| (Duration::ZERO, if nth == 1 { 503 } else { 200 }))).await;
    t.a.client.set_callback(Some(&ra.url)).await.unwrap();
    wait_until(&t, 100, "delivery of the batch", || async { pending(&t).await == 0 }).await;

    let ia = inbox(&t.a).await;
    let ids: Vec<i64> = ia.keys().copied().collect();
    assert_eq!(ids.len(), 4);
    let got = ra.deliveries();
    assert_eq!(
        got.iter().map(|d| (d.envelope_ids.clone(), d.answered)).collect::<Vec<_>>(),
        [(ids.clone(), 503), (ids.clone(), 200)],
        "one callback carried all four, and all four came again"
    );
    let listed = ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(",");
    for d in &got {
        let ts: i64 = d.headers[TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
        let sig = d.headers[SIGNATURE_HEADER].to_str().unwrap();
        let now = t.clock.now_ms();
        assert_eq!(verify(&secret(&t.a), ts, &d.body, sig, now, DEFAULT_TOLERANCE_MS), Ok(()));
        assert_eq!(verify(&secret(&t.b), ts, &d.body, sig, now, DEFAULT_TOLERANCE_MS), Err(SignatureError::Mismatch));
        assert_eq!(d.headers[MESSAGE_ID_HEADER].to_str().unwrap(), listed);
        let batch: Vec<Envelope> = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(batch, ia.values().cloned().collect::<Vec<_>>(), "the inbox's messages, in order");
    }
    let mut conn = t.ch.db.acquire().await.unwrap();
    let rows: Vec<(Option<i64>, Option<String>)> =
        numport_db::sql::query_as("SELECT delivered_at, last_error FROM messages ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), 4);
    for (delivered_at, last_error) in rows {
        assert!(delivered_at.is_some());
        // The attempt made before the URL was registered may finish after the refused
        // callback; its outcome is the older one and must not overwrite the newer.
        let last_error = last_error.unwrap_or_default();
        assert!(last_error.contains("503"), "each message remembers the refused callback: {last_error}");
    }
}

/// A callback URL nobody answers at is reported: in the operator's callback status, in the
/// failure counter, and with the cause, while the message waits in the inbox.
async fn an_unreachable_callback_url_is_reported(backend: Backend) {
    let Some(t) = TestCh::start_with(backend, config()).await else { return };
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}/v1/clearinghouse/callbacks");
    t.a.client.set_callback(Some(&url)).await.unwrap();
    let fresh = t.a.client.callback_status().await.unwrap();
    assert_eq!((fresh.callback_url.as_deref(), fresh.undelivered, fresh.last_error), (Some(url.as_str()), 0, None));

    let term = Terminal::new("4790000309");
    t.b.client.request_port(&term.request(&t.b.name, t.clock.now_ms()), "r").await.unwrap();
    wait_until(&t, 0, "a failed attempt", || async { t.ch.metrics.callbacks_failed.get() > 0 }).await;
    let status = t.a.client.callback_status().await.unwrap();
    assert_eq!(status.undelivered, 1);
    let error = status.last_error.expect("the failure is shown");
    assert!(error.contains("callback failed") && error.contains("onnect"), "{error}");
    assert_eq!(inbox(&t.a).await.len(), 1, "the message waits in the inbox");
    let other = t.b.client.callback_status().await.unwrap();
    assert_eq!((other.callback_url, other.last_error), (None, None), "each operator sees its own");
}

on_both_backends!(an_unreachable_callback_url_is_reported);
