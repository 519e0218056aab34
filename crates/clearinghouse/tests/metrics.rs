//! `/metrics` scraped over the clearinghouse's real socket after a port, read back by the
//! Python reference parser (independent of the library that wrote it).

mod common;

use clearinghouse_api::model::{CreditInformationRequest, DecisionRequest};
use common::{Terminal, TestCh};
use numport_core::Money;
use numport_core::porting::{CreditInfo, OrderState, Reason};
use numport_db::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_the_reference_parser() {
    if !testkit::python_module("prometheus_client", "pip install prometheus-client") {
        return;
    }
    let Some(t) = TestCh::start(Backend::Sqlite).await else { return };
    let term = Terminal::new("4790000001");
    let req = term.request(&t.b.name, common::T0);
    let order = t.b.client.request_port(&req, "k1").await.unwrap();
    t.a.client.deposit(&term.deposit_for(&req, &t.b.name), "d1").await.unwrap();
    let credit = CreditInformationRequest {
        credit: CreditInfo {
            arrears: Money(0),
            unbilled_usage: Money(0),
            contract_remaining: Money(500),
            deposit_held: Money(0),
        },
    };
    t.a.client.credit_information(order.id, &credit, "c1").await.unwrap();
    let decision = DecisionRequest { accept: true, compensation: Some(Money(500)) };
    t.b.client.decide(order.id, &decision, "x1").await.unwrap();
    assert_eq!(t.settled(&t.b, order.id).await.state, OrderState::Completed);
    // A request for a number the recipient serves already is closed at once.
    let own = Terminal::new("4791000001");
    let refused = t.b.client.request_port(&own.request(&t.b.name, common::T0), "k2").await.unwrap();
    assert_eq!(refused.reason, Some(Reason::AlreadyServed));
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{}/v1/nowhere", t.url)).send().await.unwrap().status(), 404);

    let resp = http.get(format!("{}/metrics", t.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let m = telemetry::reference::parse(&resp.text().await.unwrap()).unwrap();
    m.check_typed();

    for (family, kind) in [
        ("numport_orders_requested", "counter"),
        ("numport_ports_completed", "counter"),
        ("numport_compensation_settled_minor_units", "counter"),
        ("numport_violations", "counter"),
        ("numport_orders_closed", "counter"),
        ("numport_callbacks_delivered", "counter"),
        ("numport_callbacks_failed", "counter"),
        ("numport_settlement_batches", "counter"),
        ("numport_http_requests", "counter"),
        ("numport_callback_duration_seconds", "histogram"),
        ("numport_settlement_batch_duration_seconds", "histogram"),
        ("numport_http_request_duration_seconds", "histogram"),
    ] {
        assert_eq!(m.family(family).kind, kind, "{family}");
    }
    assert_eq!(m.value("numport_orders_requested_total", &[]), Some(2.0));
    assert_eq!(m.value("numport_orders_closed_total", &[("reason", "already_served")]), Some(1.0));
    assert_eq!(m.value("numport_ports_completed_total", &[]), Some(1.0));
    assert_eq!(m.value("numport_compensation_settled_minor_units_total", &[]), Some(500.0));
    assert_eq!(m.value("numport_violations_total", &[]), Some(0.0));
    let batches = m.value("numport_settlement_batches_total", &[]).unwrap();
    assert!(batches >= 1.0, "{batches}");
    assert_eq!(m.value("numport_settlement_batch_duration_seconds_count", &[]), Some(batches));

    let route = "/v1/porting-orders/{id}/decision";
    let decided = [("method", "POST"), ("route", route), ("status", "200")];
    assert_eq!(m.value("numport_http_requests_total", &decided), Some(1.0));
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(m.value("numport_http_requests_total", &unmatched), Some(1.0));
    let timed = m.value("numport_http_request_duration_seconds_count", &[("route", route)]);
    assert_eq!(timed, Some(1.0));
    let took = m.value("numport_http_request_duration_seconds_sum", &[("route", route)]).unwrap();
    assert!((0.0..60.0).contains(&took), "{took}");
    for histogram in ["numport_http_request_duration_seconds", "numport_settlement_batch_duration_seconds"] {
        m.family(histogram).check_histogram();
    }
}
