//! `/metrics` scraped over the node's real socket after callbacks, read back by the Python
//! reference parser (independent of the library that wrote it). The node's registry also holds
//! its replica's `npdb_*` figures.

mod common;

use std::time::Duration;

use clearinghouse_api::Message;
use common::*;
use numport_core::Clock;
use numport_core::porting::{OrderState, Reason};
use numport_core::signing::{SIGNATURE_HEADER, sign};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn metrics_parse_with_the_reference_parser() {
    if !testkit::python_module("prometheus_client", "pip install prometheus-client") {
        return;
    }
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(n.node.clone().run(listener, stop.clone()));

    let closed = envelope(
        1,
        Message::OrderClosed {
            order_id: 11,
            msisdn: msisdn("4790000001"),
            state: OrderState::Failed,
            reason: Reason::DepositTimeout,
        },
    );
    assert!(n.send(n.signed(&closed)).await.0.is_success());
    assert!(n.send(n.signed(&closed)).await.0.is_success(), "a duplicate is acknowledged");
    let body = serde_json::to_vec(&envelope(2, closed.message.clone())).unwrap();
    let now = n.clock.now_ms();
    let mut forged = n.signed_raw(2, body.clone(), now);
    forged.headers_mut().insert(SIGNATURE_HEADER, sign(&[1; 32], now, &body).parse().unwrap());
    assert!(n.send(forged).await.0.is_client_error());
    n.wait_processed(1).await;

    // The replica's `npdb_stale` is brought up to date by a health check.
    assert_eq!(reqwest::get(format!("http://{addr}/healthz")).await.unwrap().status(), 200);
    let resp = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let m = telemetry::reference::parse(&resp.text().await.unwrap()).unwrap();
    m.check_typed();
    // A family with labels appears with its first series: these are the ones this traffic made.
    for (family, kind) in [
        ("operator_callbacks_received", "counter"),
        ("operator_callbacks_duplicate", "counter"),
        ("operator_callbacks_rejected", "counter"),
        ("operator_messages_unprocessed", "gauge"),
        ("operator_messages_processed", "counter"),
        ("operator_message_processing_seconds", "histogram"),
        ("operator_sms_commits", "counter"),
        ("operator_sms_changes", "counter"),
        ("operator_sms_commit_seconds", "histogram"),
        ("npdb_changes_applied", "counter"),
        ("npdb_enum_answers", "counter"),
        ("npdb_stale", "gauge"),
        ("npdb_ported_numbers", "gauge"),
    ] {
        assert_eq!(m.family(family).kind, kind, "{family}");
    }
    assert_eq!(m.value("operator_callbacks_received_total", &[]), Some(2.0));
    assert_eq!(m.value("operator_callbacks_duplicate_total", &[]), Some(1.0));
    assert_eq!(m.value("operator_callbacks_rejected_total", &[("reason", "bad_signature")]), Some(1.0));
    let done = [("kind", "order_closed"), ("outcome", "done")];
    assert_eq!(m.value("operator_messages_processed_total", &done), Some(1.0));
    let timed = m.value("operator_message_processing_seconds_count", &[("kind", "order_closed")]);
    assert_eq!(timed, Some(1.0));
    m.family("operator_message_processing_seconds").check_histogram();
    // This clearinghouse has no routing feed: the replica holds nothing and says so.
    assert_eq!(m.value("npdb_stale", &[]), Some(1.0));
    assert_eq!(m.value("npdb_ported_numbers", &[]), Some(0.0));

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}

/// `metrics_listen` moves `/metrics` off the API listener (`/healthz` stays); and a node with
/// neither `[tls]` nor `plain_http = true` does not serve.
#[tokio::test]
async fn metrics_on_their_own_listener_and_no_plain_http_by_omission() {
    let ch = FakeClearinghouse::start().await;
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let n =
        TestNode::with_config(operator::OperatorConfig { metrics_listen: Some(metrics), ..config("opa", &ch.url()) })
            .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(n.node.clone().run(listener, stop.clone()));
    let mut scraped = None;
    for _ in 0..100 {
        if let Ok(resp) = reqwest::get(format!("http://{metrics}/metrics")).await {
            scraped = Some(resp.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(scraped.expect("the metrics listener answers").contains("operator_"));
    assert_eq!(reqwest::get(format!("http://{addr}/metrics")).await.unwrap().status(), 404);
    assert_eq!(reqwest::get(format!("http://{addr}/healthz")).await.unwrap().status(), 200);
    stop.cancel();
    server.await.unwrap().unwrap();

    let n = TestNode::with_config(operator::OperatorConfig { plain_http: false, ..config("opb", &ch.url()) }).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = n.node.clone().run(listener, CancellationToken::new()).await.unwrap_err();
    assert!(err.to_string().contains("plain_http = true"), "{err}");
}
