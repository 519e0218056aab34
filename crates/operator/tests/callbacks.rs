//! The callback endpoint: signatures, replays, malformed and oversized bodies, and what each
//! message makes the node do, checked against a fake clearinghouse on a real port.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use clearinghouse_api::Message;
use common::*;
use numport_core::porting::{CreditInfo, OrderState, Reason};
use numport_core::proof::Nonce;
use numport_core::signing::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use numport_core::{Clock, Money, OperatorName};
use operator::{EventKind, OperatorConfig, RecipientPolicy, SubscriberStatus};
use serde_json::json;

fn closed(id: i64) -> clearinghouse_api::Envelope {
    envelope(
        id,
        Message::OrderClosed {
            order_id: 11,
            msisdn: msisdn("4790000001"),
            state: OrderState::Failed,
            reason: Reason::DepositTimeout,
        },
    )
}

fn credit_query(id: i64, number: &str) -> clearinghouse_api::Envelope {
    envelope(
        id,
        Message::CreditQuery { order_id: 42, msisdn: msisdn(number), recipient: op("opb"), deadline_at: T0 + 60_000 },
    )
}

#[tokio::test]
async fn signed_callback_is_accepted_and_processed() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    let (status, body) = n.send(n.signed(&closed(1))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"received": true, "id": 1}));
    n.wait_processed(1).await;
    let events = n.store().port_events(&msisdn("4790000001")).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::OrderClosed);
    assert_eq!(events[0].message_id, Some(1));
    assert_eq!(events[0].detail["reason"], "deposit_timeout");
    let metrics = n.node.metrics().render();
    assert!(metrics.contains("operator_callbacks_received_total 1"), "{metrics}");
    assert!(
        metrics.contains("operator_messages_processed_total{kind=\"order_closed\",outcome=\"done\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_stale_and_missing_signatures_are_refused() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    let body = serde_json::to_vec(&closed(1)).unwrap();
    let now = T0;

    // Signed with another secret.
    let mut req = n.signed_raw(1, body.clone(), now);
    req.headers_mut().insert(SIGNATURE_HEADER, sign(b"not the secret", now, &body).parse().unwrap());
    let (status, err) = n.send(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"], "bad_signature");

    // Body changed after signing.
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[pos] = b'2';
    let mut req = n.signed_raw(1, body.clone(), now);
    *req.body_mut() = Body::from(tampered);
    assert_eq!(n.send(req).await.0, StatusCode::UNAUTHORIZED);

    // Stale: signed correctly, but too long ago (and too far ahead).
    let tolerance = OperatorConfig::default().signature_tolerance_ms;
    let (status, err) = n.send(n.signed_raw(1, body.clone(), now - tolerance - 1)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"], "stale");
    assert_eq!(n.send(n.signed_raw(1, body.clone(), now + tolerance + 1)).await.0, StatusCode::UNAUTHORIZED);

    // Missing headers.
    for missing in [SIGNATURE_HEADER, TIMESTAMP_HEADER] {
        let mut req = n.signed_raw(1, body.clone(), now);
        req.headers_mut().remove(missing);
        let (status, err) = n.send(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "without {missing}");
        assert_eq!(err["error"], "missing_signature");
    }

    // Malformed signature and timestamp.
    let mut req = n.signed_raw(1, body.clone(), now);
    req.headers_mut().insert(SIGNATURE_HEADER, "v1=zz".parse().unwrap());
    assert_eq!(n.send(req).await.0, StatusCode::UNAUTHORIZED);
    let mut req = n.signed_raw(1, body.clone(), now);
    req.headers_mut().insert(TIMESTAMP_HEADER, "yesterday".parse().unwrap());
    assert_eq!(n.send(req).await.0, StatusCode::UNAUTHORIZED);

    // Nothing was recorded, and the refusals were counted.
    assert!(n.store().received_message(1).await.unwrap().is_none());
    let metrics = n.node.metrics().render();
    assert!(metrics.contains("operator_callbacks_rejected_total{reason=\"bad_signature\"} 2"), "{metrics}");
    assert!(metrics.contains("operator_callbacks_rejected_total{reason=\"stale\"} 2"), "{metrics}");
    assert!(metrics.contains("operator_callbacks_rejected_total{reason=\"missing_signature\"} 2"), "{metrics}");

    // The clock moved on: a signature made "now" for the node is still accepted.
    n.clock.advance_ms(tolerance * 3);
    assert_eq!(n.send(n.signed(&closed(1))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn node_without_secret_refuses_every_callback() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::with_config(OperatorConfig { callback_secret: String::new(), ..config("opa", &ch.url()) }).await;
    let (status, err) = n.send(n.signed(&closed(1))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err["error"], "no_secret");
}

#[tokio::test]
async fn replayed_envelope_is_processed_once() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    n.add_subscriber("4790000001", None, [100, 0, 0, 0]).await;
    let e = credit_query(5, "4790000001");
    assert_eq!(n.send(n.signed(&e)).await, (StatusCode::OK, json!({"received": true, "id": 5})));
    n.wait_processed(5).await;
    // The same message again (a retry or a captured replay, freshly signed or not).
    n.clock.advance_ms(1000);
    assert_eq!(n.send(n.signed(&e)).await, (StatusCode::OK, json!({"duplicate": true})));
    let body = serde_json::to_vec(&e).unwrap();
    assert_eq!(n.send(n.signed_raw(5, body, T0)).await, (StatusCode::OK, json!({"duplicate": true})));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(ch.calls("/v1/porting-orders/42/credit-information").len(), 1);
    assert!(n.node.metrics().render().contains("operator_callbacks_duplicate_total 2"));
}

#[tokio::test]
async fn malformed_json_is_400_and_oversized_body_is_413() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    for body in [&b"{not json"[..], br#"{"id": 1, "created_at": 0, "message": {"kind": "unheard_of"}}"#, b"\xff\xfe"] {
        let (status, err) = n.send(n.signed_raw(1, body.to_vec(), T0)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
        assert_eq!(err["error"], "malformed");
    }
    let big = vec![b' '; 65 * 1024];
    let (status, _) = n.send(n.signed_raw(1, big, T0)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(n.store().received_message(1).await.unwrap().is_none());
}

#[tokio::test]
async fn credit_query_is_answered_with_the_subscribers_figures() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    n.add_subscriber("4790000001", None, [1200, 340, 5000, 1000]).await;
    n.send(n.signed(&credit_query(9, "4790000001"))).await;
    n.wait_processed(9).await;
    let calls = ch.calls("/v1/porting-orders/42/credit-information");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].idempotency_key.as_deref(), Some("opa-msg-9"));
    let expected = CreditInfo {
        arrears: Money(1200),
        unbilled_usage: Money(340),
        contract_remaining: Money(5000),
        deposit_held: Money(1000),
    };
    assert_eq!(calls[0].body, json!({ "credit": expected }));

    // A number this node does not serve: all zeros.
    n.send(n.signed(&credit_query(10, "4790000099"))).await;
    n.wait_processed(10).await;
    let calls = ch.calls("/v1/porting-orders/42/credit-information");
    assert_eq!(calls[1].body, json!({ "credit": CreditInfo::default() }));
    assert_eq!(calls[1].idempotency_key.as_deref(), Some("opa-msg-10"));
}

fn credit_information(id: i64, compensation: i64) -> clearinghouse_api::Envelope {
    envelope(
        id,
        Message::CreditInformation {
            order_id: 77,
            msisdn: msisdn("4790000001"),
            donor: op("opa"),
            credit: CreditInfo { contract_remaining: Money(compensation), ..CreditInfo::default() },
            compensation: Money(compensation),
            donor_defaulted: false,
            deadline_at: T0 + 60_000,
        },
    )
}

#[tokio::test]
async fn credit_information_is_accepted_or_refused_by_policy() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::with_config(OperatorConfig {
        policy: RecipientPolicy { max_compensation: Money(5000) },
        ..config("opb", &ch.url())
    })
    .await;
    n.send(n.signed(&credit_information(1, 5000))).await;
    n.wait_processed(1).await;
    n.send(n.signed(&credit_information(2, 5001))).await;
    n.wait_processed(2).await;
    let calls = ch.calls("/v1/porting-orders/77/decision");
    assert_eq!(calls.len(), 2);
    let by_key = |k: &str| calls.iter().find(|c| c.idempotency_key.as_deref() == Some(k)).unwrap().body.clone();
    assert_eq!(by_key("opb-msg-1"), json!({"accept": true, "compensation": 5000}));
    assert_eq!(by_key("opb-msg-2"), json!({"accept": false, "compensation": null}));
    let kinds: Vec<EventKind> =
        n.store().port_events(&msisdn("4790000001")).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Accepted, EventKind::Refused]);
}

#[tokio::test]
async fn deposit_requested_deposits_the_expected_proof() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    let key = port_key("123456");
    n.add_subscriber("4790000001", Some(&key), [0; 4]).await;
    let nonce = Nonce([0x3c; 16]);
    let recipient: OperatorName = op("opb");
    let expiry = T0 + 300_000;
    let e = envelope(
        3,
        Message::DepositRequested {
            order_id: 8,
            msisdn: msisdn("4790000001"),
            nonce: nonce.to_hex(),
            recipient: recipient.clone(),
            expiry,
            deadline_at: T0 + 60_000,
        },
    );
    n.send(n.signed(&e)).await;
    n.wait_processed(3).await;
    let calls = ch.calls("/v1/deposits");
    assert_eq!(calls.len(), 1);
    let proof = key.prove(&nonce, &msisdn("4790000001"), &recipient, expiry);
    assert_eq!(calls[0].body, json!({"msisdn": "4790000001", "nonce": nonce.to_hex(), "proof": proof.to_hex()}));
    assert_eq!(calls[0].idempotency_key.as_deref(), Some("opa-msg-3"));

    // Unknown subscriber: nothing deposited; the order is declined with the reason, so that it
    // ends at once instead of at its deadline.
    let e = envelope(
        4,
        Message::DepositRequested {
            order_id: 9,
            msisdn: msisdn("4790000002"),
            nonce: nonce.to_hex(),
            recipient,
            expiry,
            deadline_at: T0 + 60_000,
        },
    );
    n.send(n.signed(&e)).await;
    n.wait_processed(4).await;
    assert_eq!(ch.calls("/v1/deposits").len(), 1);
    let declined = ch.calls("/v1/porting-orders/9/decline");
    assert_eq!(declined.len(), 1);
    assert_eq!(declined[0].body, json!({"reason": "unknown_subscriber"}));
    assert_eq!(declined[0].idempotency_key.as_deref(), Some("opa-msg-4"));
    let row = n.store().received_message(4).await.unwrap().unwrap();
    assert_eq!(row.last_error.as_deref(), Some("unknown_subscriber"));

    // A subscriber without a port key: declined too, with its own reason.
    n.add_subscriber("4790000003", None, [0; 4]).await;
    let e = envelope(
        5,
        Message::DepositRequested {
            order_id: 10,
            msisdn: msisdn("4790000003"),
            nonce: nonce.to_hex(),
            recipient: op("opb"),
            expiry,
            deadline_at: T0 + 60_000,
        },
    );
    n.send(n.signed(&e)).await;
    n.wait_processed(5).await;
    assert_eq!(ch.calls("/v1/porting-orders/10/decline")[0].body, json!({"reason": "no_port_key"}));
    assert_eq!(ch.calls("/v1/deposits").len(), 1);
}

#[tokio::test]
async fn conflict_from_the_clearinghouse_counts_as_processed() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    ch.answer_with(
        "/v1/porting-orders/42/credit-information",
        StatusCode::CONFLICT,
        json!({"error": "invalid_state", "message": "order is failed"}),
    );
    n.send(n.signed(&credit_query(1, "4790000001"))).await;
    n.wait_processed(1).await;
    let row = n.store().received_message(1).await.unwrap().unwrap();
    assert_eq!(row.last_error.as_deref(), Some("invalid_state: order is failed"));
    assert!(n.node.metrics().render().contains("outcome=\"moved_on\"} 1"));
}

#[tokio::test]
async fn port_completion_and_confirmation_change_subscriber_status() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    // Donor side: a settled port-out.
    n.add_subscriber("4790000001", Some(&port_key("111111")), [10, 20, 30, 0]).await;
    let confirmed = envelope(
        1,
        Message::CompensationConfirmed {
            order_id: 5,
            msisdn: msisdn("4790000001"),
            recipient: op("opb"),
            compensation: Money(60),
        },
    );
    n.send(n.signed(&confirmed)).await;
    n.wait_processed(1).await;
    let s = n.store().subscriber(&msisdn("4790000001")).await.unwrap().unwrap();
    assert_eq!(s.status, SubscriberStatus::PortedOut);
    assert_eq!(s.arrears, Money(10), "the row stays for the final bill");

    // Recipient side: a completed port-in, also over a number with a stale row.
    for (id, number) in [(2, "4790000002"), (3, "4790000001")] {
        let completed = envelope(
            id,
            Message::PortCompleted {
                order_id: 6,
                msisdn: msisdn(number),
                donor: op("opc"),
                routing_number: "d2".into(),
                seq: id,
            },
        );
        n.send(n.signed(&completed)).await;
        n.wait_processed(id).await;
        let s = n.store().subscriber(&msisdn(number)).await.unwrap().unwrap();
        assert_eq!(s.status, SubscriberStatus::Active);
        assert_eq!((s.port_key, s.arrears), (None, Money(0)));
    }
    let events = n.store().port_events(&msisdn("4790000001")).await.unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::PortOut, EventKind::PortIn]);

    let returned = envelope(4, Message::NumberReturned { msisdn: msisdn("4790000003"), from: op("opb"), seq: 9 });
    n.send(n.signed(&returned)).await;
    n.wait_processed(4).await;
    let events = n.store().port_events(&msisdn("4790000003")).await.unwrap();
    assert_eq!(events[0].kind, EventKind::NumberReturned);
    assert_eq!(events[0].counterpart, Some(op("opb")));
}

#[tokio::test]
async fn reprocessor_picks_up_recorded_but_unprocessed_messages() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    n.add_subscriber("4790000001", None, [7, 0, 0, 0]).await;

    // As if the node had died between recording and processing.
    let e = credit_query(21, "4790000001");
    let body = serde_json::to_string(&e).unwrap();
    n.store().record_message(21, "credit_query", &body, T0, T0 + 2000).await.unwrap();
    assert_eq!(n.node.reprocess().await.unwrap(), 0, "not due yet");
    n.clock.advance_ms(2000);

    // The clearinghouse is briefly unavailable: the attempt fails and is scheduled again.
    ch.fail_next(1);
    assert_eq!(n.node.reprocess().await.unwrap(), 0);
    let row = n.store().received_message(21).await.unwrap().unwrap();
    assert_eq!((row.processed_at, row.attempts), (None, 1));
    assert!(row.next_attempt_at > n.clock.now_ms());
    assert_eq!(n.node.reprocess().await.unwrap(), 0, "backing off");

    n.clock.advance_ms(60_000);
    assert_eq!(n.node.reprocess().await.unwrap(), 1);
    assert!(n.is_processed(21).await);
    let calls = ch.calls("/v1/porting-orders/42/credit-information");
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.idempotency_key.as_deref() == Some("opa-msg-21")), "same key on retry");
    assert_eq!(n.node.reprocess().await.unwrap(), 0);
}

#[tokio::test]
async fn a_batch_of_envelopes_is_recorded_at_once_and_each_processed_once() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    n.add_subscriber("4790000001", None, [100, 0, 0, 0]).await;
    n.add_subscriber("4790000002", Some(&port_key("222222")), [0, 0, 0, 0]).await;
    let confirmed = envelope(
        32,
        Message::CompensationConfirmed {
            order_id: 5,
            msisdn: msisdn("4790000002"),
            recipient: op("opb"),
            compensation: Money(0),
        },
    );
    let batch = [credit_query(31, "4790000001"), confirmed, closed(33)];
    let body = serde_json::to_vec(&batch).unwrap();
    let (status, answer) = n.send(n.signed_raw(31, body.clone(), T0)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({"received": [31, 32, 33], "duplicate": []}));
    // The port-out confirmation and the closed order need nothing but the node's database:
    // they are processed by the time the callback is answered.
    assert!(n.is_processed(32).await && n.is_processed(33).await);
    let s = n.store().subscriber(&msisdn("4790000002")).await.unwrap().unwrap();
    assert_eq!(s.status, SubscriberStatus::PortedOut);
    n.wait_processed(31).await;
    // Each envelope is recorded with its own text.
    let row = n.store().received_message(31).await.unwrap().unwrap();
    assert_eq!(serde_json::from_str::<clearinghouse_api::Envelope>(&row.body).unwrap(), batch[0]);

    // The same batch again, and one overlapping it: only the new message acts.
    assert_eq!(n.send(n.signed_raw(31, body, T0)).await.1, json!({"received": [], "duplicate": [31, 32, 33]}));
    let overlap = serde_json::to_vec(&[closed(33), closed(34)]).unwrap();
    assert_eq!(n.send(n.signed_raw(33, overlap, T0)).await.1, json!({"received": [34], "duplicate": [33]}));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(ch.calls("/v1/porting-orders/42/credit-information").len(), 1);
    let events = n.store().port_events(&msisdn("4790000001")).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == EventKind::OrderClosed).count(), 2, "messages 33 and 34, once each");
}

#[tokio::test]
async fn a_batch_with_one_bad_envelope_is_refused_whole() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    let good = serde_json::to_string(&closed(1)).unwrap();
    for body in [
        format!("[{good}, {{\"id\": 2, \"created_at\": 0, \"message\": {{\"kind\": \"unheard_of\"}}}}]"),
        format!("[{good}, 17]"),
        format!("[{good}"),
        "[]".to_owned(),
    ] {
        let (status, err) = n.send(n.signed_raw(1, body.clone().into_bytes(), T0)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["error"], "malformed");
    }
    assert!(n.store().received_message(1).await.unwrap().is_none(), "nothing of a refused batch is recorded");
}
