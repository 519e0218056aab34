//! The node as a running server: startup registration and catch-up, re-processing of work left
//! by a previous run, graceful shutdown, and the self-service endpoints (no anonymous port-out
//! authorisation among them).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use clearinghouse_api::Message;
use common::*;
use numport_core::porting::{OrderState, Reason};
use numport_core::proof::Nonce;
use numport_core::{Clock, ManualClock};
use operator::{EventKind, Node, OperatorConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn closed(id: i64, number: &str) -> clearinghouse_api::Envelope {
    envelope(
        id,
        Message::OrderClosed {
            order_id: id,
            msisdn: msisdn(number),
            state: OrderState::Cancelled,
            reason: Reason::CancelledBySubscriber,
        },
    )
}

async fn free_port() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn run_registers_catches_up_reprocesses_and_stops() {
    let ch = FakeClearinghouse::start().await;
    for id in 1..=3 {
        ch.push_inbox(closed(id, "4790000001"));
    }
    let n = TestNode::start("opa", &ch).await;
    // Left over by a "previous run": recorded, never processed, not due for a while yet.
    let leftover = closed(100, "4790000002");
    let body = serde_json::to_string(&leftover).unwrap();
    n.store().record_message(100, "order_closed", &body, T0, T0 + 3_600_000).await.unwrap();
    // Message 2 arrived by callback before the crash and was processed then.
    n.send(n.signed(&closed(2, "4790000001"))).await;
    n.wait_processed(2).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(n.node.clone().run(listener, stop.clone()));

    let expected_url = format!("http://{addr}/v1/clearinghouse/callbacks");
    eventually("callback registration", async || {
        ch.calls("/v1/operators/me/callback").iter().any(|c| c.body == json!({"url": expected_url}))
    })
    .await;
    eventually("catch-up", async || n.is_processed(1).await && n.is_processed(3).await).await;
    eventually("startup re-processing", async || n.is_processed(100).await).await;
    eventually("ack", async || ch.calls("/v1/inbox/ack").iter().any(|c| c.body == json!({"up_to": 3}))).await;
    assert_eq!(n.store().inbox_cursor().await.unwrap(), 3);
    let events = n.store().port_events(&msisdn("4790000001")).await.unwrap();
    assert_eq!(events.len(), 3, "message 2 was not processed twice");

    // The real socket serves callbacks and health.
    let http = reqwest::Client::new();
    let e = closed(4, "4790000001");
    let raw = serde_json::to_vec(&e).unwrap();
    let ts = n.clock.now_ms();
    let resp = http
        .post(&expected_url)
        .header("x-numport-timestamp", ts.to_string())
        .header("x-numport-signature", numport_core::signing::sign(&SECRET, ts, &raw))
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    n.wait_processed(4).await;
    let health: serde_json::Value =
        http.get(format!("http://{addr}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["callback_registered"], true);
    assert_eq!(health["operator"], "opa");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.expect("run stops on the token").unwrap().unwrap();

    // A restart reads the inbox from the cursor, not from the beginning.
    let config = OperatorConfig {
        database_url: format!("sqlite://{}/operator-{{name}}.db", n.dir.path().display()),
        ..config("opa", &ch.url())
    };
    let again = Node::open(config, Arc::new(ManualClock::new(T0))).await.unwrap();
    assert_eq!(again.catch_up().await.unwrap(), 0);
    let inbox_reads = ch.calls("/v1/inbox");
    assert_eq!(inbox_reads.last().unwrap().query.as_deref(), Some("after=3&limit=100"));
}

#[tokio::test]
async fn startup_does_not_wait_for_an_unreachable_clearinghouse() {
    let dead = free_port().await;
    let n = TestNode::with_config(config("opa", &format!("http://{dead}"))).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(n.node.clone().run(listener, stop.clone()));
    let health: serde_json::Value = reqwest::get(format!("http://{addr}/healthz")).await.unwrap().json().await.unwrap();
    assert_eq!(health["callback_registered"], false);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn metrics_and_health_routes() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    let (status, body) = n.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // This clearinghouse has no routing feed, so the node's replica never loaded any data.
    assert_eq!(body["status"], "stale");
    assert_eq!(body["npdb"]["ready"], false);
    let resp = tower::ServiceExt::oneshot(n.node.router(), Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("operator_callbacks_received_total 0"), "{text}");
    assert!(text.contains("npdb_stale 1"), "{text}");
}

#[tokio::test]
async fn port_in_is_relayed_to_the_clearinghouse() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opb", &ch).await;
    let nonce = Nonce([9; 16]).to_hex();
    let req = json!({"msisdn": "4790000001", "nonce": nonce, "expiry": T0 + 300_000, "proof": "ab".repeat(32)});
    let (status, body) = n.post_json("/v1/self-service/port-in", &req).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!(order(7, OrderState::AwaitingDeposit)));
    let calls = ch.calls("/v1/porting-orders");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body, req);
    assert_eq!(calls[0].idempotency_key.as_deref(), Some(format!("opb-port-in-4790000001-{nonce}").as_str()));
    let events = n.store().port_events(&msisdn("4790000001")).await.unwrap();
    assert_eq!((events[0].kind, events[0].order_id), (EventKind::PortInRequested, Some(7)));

    // The clearinghouse's refusal reaches the terminal as it was given.
    let refusal = json!({"error": "already_served", "message": "opb already serves 4790000001"});
    ch.answer_with("/v1/porting-orders", StatusCode::UNPROCESSABLE_ENTITY, refusal.clone());
    assert_eq!(n.post_json("/v1/self-service/port-in", &req).await, (StatusCode::UNPROCESSABLE_ENTITY, refusal));

    // Bad requests stop at the node.
    let (status, err) = n.post_json("/v1/self-service/port-in", &json!({"msisdn": "12"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_request");
    let bad_nonce = json!({"msisdn": "4790000001", "nonce": "x".repeat(200), "expiry": T0, "proof": "ab".repeat(32)});
    let (status, err) = n.post_json("/v1/self-service/port-in", &bad_nonce).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "invalid_nonce");
    assert_eq!(ch.calls("/v1/porting-orders").len(), 2);
}

#[tokio::test]
async fn port_in_with_clearinghouse_down_is_502() {
    let dead = free_port().await;
    let n = TestNode::with_config(config("opb", &format!("http://{dead}"))).await;
    let req = json!({"msisdn": "4790000001", "nonce": "00".repeat(16), "expiry": T0, "proof": "ab".repeat(32)});
    let (status, err) = n.post_json("/v1/self-service/port-in", &req).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(err["error"], "clearinghouse_unreachable");
}

#[tokio::test]
async fn no_anonymous_port_out_authorisation_over_http() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    n.add_subscriber("4790000001", Some(&port_key("424242")), [0; 4]).await;
    let req = json!({"msisdn": "4790000001", "nonce": Nonce([0x11; 16]).to_hex(), "recipient": "opb", "expiry": T0});
    let (status, _) = n.post_json("/v1/self-service/port-out-authorisations", &req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(ch.calls("/v1/deposits").is_empty());
}

#[tokio::test]
async fn the_handset_follows_its_port_in_by_nonce() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opb", &ch).await;
    let nonce = Nonce([9; 16]).to_hex();
    let req = json!({"msisdn": "4790000001", "nonce": nonce, "expiry": T0 + 300_000, "proof": "ab".repeat(32)});
    assert_eq!(n.post_json("/v1/self-service/port-in", &req).await.0, StatusCode::CREATED);
    let get = |path: String| n.send(Request::get(path).body(Body::empty()).unwrap());

    let mut o = order(7, OrderState::AwaitingCreditInfo);
    ch.answer_with("/v1/porting-orders/7", StatusCode::OK, json!(o));
    let (status, body) = get(format!("/v1/self-service/port-in/4790000001/{nonce}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"order_id": 7, "msisdn": "4790000001", "donor": "opa", "state": "awaiting_credit_info", "reason": null})
    );

    // A failure to verify reads the same whether the donor's deposit differed or never came:
    // the answer tells nothing about the donor's subscribers.
    for reason in [Reason::ProofMismatch, Reason::DepositTimeout] {
        (o.state, o.reason) = (OrderState::Rejected, Some(reason));
        ch.answer_with("/v1/porting-orders/7", StatusCode::OK, json!(o));
        let (_, body) = get(format!("/v1/self-service/port-in/4790000001/{nonce}")).await;
        assert_eq!((&body["state"], &body["reason"]), (&json!("rejected"), &json!("proof_mismatch")), "{reason}");
    }
    (o.state, o.reason) = (OrderState::Rejected, Some(Reason::ProofExpired));
    ch.answer_with("/v1/porting-orders/7", StatusCode::OK, json!(o));
    let (_, body) = get(format!("/v1/self-service/port-in/4790000001/{nonce}")).await;
    assert_eq!(body["reason"], "proof_expired");

    // Another nonce, or another number, finds nothing; a malformed one is a bad request.
    let other = Nonce([8; 16]).to_hex();
    let (status, err) = get(format!("/v1/self-service/port-in/4790000001/{other}")).await;
    assert_eq!((status, &err["error"]), (StatusCode::NOT_FOUND, &json!("unknown_request")));
    assert_eq!(get(format!("/v1/self-service/port-in/4790000002/{nonce}")).await.0, StatusCode::NOT_FOUND);
    let (status, err) = get("/v1/self-service/port-in/4790000001/xyz".into()).await;
    assert_eq!((status, &err["error"]), (StatusCode::BAD_REQUEST, &json!("invalid_nonce")));
}
