//! Provisioning (F6) inside a node: orders over the HTTP API, durable queues on SQLite and
//! PostgreSQL, the node's simulated elements on real sockets, dead letters, and the orders the
//! node's own ports make.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use clearinghouse_api::Message;
use common::*;
use numport_db::testing::TempDatabase;
use operator::OperatorConfig;
use provisioning::Element;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "provisioning-token-0001";

fn with_token(mut config: OperatorConfig) -> OperatorConfig {
    config.provisioning.token_sha256 = hex(&Sha256::digest(TOKEN.as_bytes()));
    config
}

/// A node serving on a loopback socket (so its provisioning runs), with the token configured.
async fn serving(config: OperatorConfig) -> (TestNode, CancellationToken) {
    let n = TestNode::with_config(with_token(config)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(n.node.clone().run(listener, stop.clone()));
    eventually("provisioning running", async || n.node.provisioner().status().is_some()).await;
    (n, stop)
}

async fn call(n: &TestNode, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map(|b| Body::from(b.to_string())).unwrap_or_default();
    n.send(req.body(body).unwrap()).await
}

async fn order_state(n: &TestNode, id: i64) -> Value {
    call(n, "GET", &format!("/v1/provisioning/orders/{id}"), Some(TOKEN), None).await.1
}

async fn wait_order(n: &TestNode, id: i64, state: &str) -> Value {
    for _ in 0..500 {
        let o = order_state(n, id).await;
        if o["state"] == state {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("order {id} never {state}: {}", order_state(n, id).await);
}

fn port_in(number: &str) -> Value {
    json!({ "msisdn": number, "action": "port_in", "imsi": "242010000000001", "plan": "basic" })
}

/// Orders in, executed on every element, visible in the order, the status and the metrics.
async fn orders_round_trip(config: OperatorConfig) {
    let (n, stop) = serving(config).await;
    let (status, body) = call(&n, "POST", "/v1/provisioning/orders", None, Some(json!({ "orders": [] }))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("missing_token")));
    let (status, _) = call(&n, "GET", "/v1/provisioning/status", Some("wrong"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bad = json!({ "orders": [{ "msisdn": "4791000001", "action": "plan_change", "plan": "has space" }] });
    let (status, body) = call(&n, "POST", "/v1/provisioning/orders", Some(TOKEN), Some(bad)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_order")));

    let orders = json!({ "orders": [
        port_in("4791000001"),
        { "msisdn": "4791000001", "action": "plan_change", "plan": "gold" },
        { "msisdn": "4791000001", "action": "bar" },
    ] });
    let req = Request::post("/v1/provisioning/orders")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("idempotency-key", "batch-1")
        .header("content-type", "application/json")
        .body(Body::from(orders.to_string()))
        .unwrap();
    let (status, accepted) = n.send(req).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let ids: Vec<i64> = accepted["orders"].as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()).collect();
    assert_eq!(accepted["orders"][0]["commands"], 3);
    let last = wait_order(&n, ids[2], "done").await;
    assert_eq!(last["commands"][0]["command"], "BAR");
    let first = order_state(&n, ids[0]).await;
    assert_eq!((first["state"].as_str(), first["category"].as_str()), (Some("done"), Some("activation")));

    // The elements hold what was ordered, in order: created, plan changed, barred.
    let elements = n.node.provisioner().simulated();
    let hlr = elements.iter().find(|e| e.kind() == Element::Hlr).unwrap();
    let r = hlr.subscriber(&msisdn("4791000001")).unwrap();
    assert!(r.barred);
    assert_eq!((r.attributes["imsi"].as_str(), r.attributes["plan"].as_str()), ("242010000000001", "gold"));

    // The same request again queues nothing and answers the same orders.
    let req = Request::post("/v1/provisioning/orders")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("idempotency-key", "batch-1")
        .body(Body::from(orders.to_string()))
        .unwrap();
    let (_, again) = n.send(req).await;
    assert_eq!(again["orders"][0]["id"], ids[0]);
    assert_eq!(again["orders"][0]["duplicate"], true);

    let (status, s) = call(&n, "GET", "/v1/provisioning/status", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["running"], true);
    let activation = s["categories"].as_array().unwrap().iter().find(|c| c["category"] == "activation").unwrap();
    assert_eq!((activation["state"].as_str(), activation["executed"].as_u64()), (Some("normal"), Some(3)));
    assert_eq!(s["elements"].as_array().unwrap().len(), 3);
    assert!(s["elements"][0]["load"]["capacity"].as_u64().unwrap() > 0);

    let text = eventually_metrics(&n).await;
    assert!(text.contains("operator_provisioning_queue_depth{category=\"activation\"} 0"), "{text}");
    assert!(
        text.contains("operator_provisioning_commands_total{category=\"service\",outcome=\"executed\"} 3"),
        "{text}"
    );
    stop.cancel();
}

/// `/metrics` once the provisioning figures are in it (refreshed every 500 ms).
async fn eventually_metrics(n: &TestNode) -> String {
    for _ in 0..300 {
        let text = n.node.metrics().render();
        if text.contains("operator_provisioning_commands_total{category=\"service\",outcome=\"executed\"} 3") {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    n.node.metrics().render()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_round_trip_sqlite() {
    let ch = FakeClearinghouse::start().await;
    orders_round_trip(config("opa", &ch.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_round_trip_postgres() {
    let Some(db) = TempDatabase::create().await else { return };
    let ch = FakeClearinghouse::start().await;
    let mut c = config("opa", &ch.url());
    c.database_url = db.url().to_owned();
    // `with_config` points the node at SQLite; this test opens the node on PostgreSQL itself.
    let dir = tempfile::tempdir().unwrap();
    let clock = numport_core::ManualClock::new(T0);
    let node = operator::Node::open(with_token(c), std::sync::Arc::new(clock.clone())).await.unwrap();
    let n = TestNode { node, clock, dir };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(n.node.clone().run(listener, stop.clone()));
    eventually("provisioning running", async || n.node.provisioner().status().is_some()).await;
    let (status, accepted) = call(
        &n,
        "POST",
        "/v1/provisioning/orders",
        Some(TOKEN),
        Some(json!({ "orders": [port_in("4791000002"), { "msisdn": "4791000003", "action": "unbar" }] })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    wait_order(&n, accepted["orders"][0]["id"].as_i64().unwrap(), "done").await;
    let dead = wait_order(&n, accepted["orders"][1]["id"].as_i64().unwrap(), "dead").await;
    assert_eq!(dead["commands"][0]["reason"], "unknown_subscriber");
    stop.cancel();
    n.node.store().close().await;
    db.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_are_dead_lettered_with_their_reason() {
    let ch = FakeClearinghouse::start().await;
    let (n, stop) = serving(config("opa", &ch.url())).await;
    let (_, accepted) = call(
        &n,
        "POST",
        "/v1/provisioning/orders",
        Some(TOKEN),
        Some(json!({ "orders": [{ "msisdn": "4791000009", "action": "plan_change", "plan": "gold" }] })),
    )
    .await;
    let id = accepted["orders"][0]["id"].as_i64().unwrap();
    let order = wait_order(&n, id, "dead").await;
    for c in order["commands"].as_array().unwrap() {
        assert_eq!((c["state"].as_str(), c["reason"].as_str()), (Some("dead"), Some("unknown_subscriber")), "{c}");
    }
    let (status, dead) = call(&n, "GET", "/v1/provisioning/dead-letters?limit=10", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!((dead[0]["element"].as_str(), dead[0]["command"].as_str()), (Some("charging"), Some("SET plan=gold")));
    assert_eq!(dead[1]["element"], "hlr");
    let (_, s) = call(&n, "GET", "/v1/provisioning/status", Some(TOKEN), None).await;
    assert_eq!(s["dead_letters"], 2);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_activates_and_a_port_out_deactivates() {
    let ch = FakeClearinghouse::start().await;
    let (n, stop) = serving(config("opb", &ch.url())).await;
    let number = msisdn("4790000005");
    let completed = Message::PortCompleted {
        order_id: 6,
        msisdn: number.clone(),
        donor: op("opa"),
        routing_number: "d2".into(),
        seq: 1,
    };
    assert!(n.send(n.signed(&envelope(1, completed.clone()))).await.0.is_success());
    let elements = n.node.provisioner().simulated();
    let on_all = async || elements.iter().all(|e| e.subscriber(&number).is_some());
    eventually("activation on every element", on_all).await;
    let hlr = elements.iter().find(|e| e.kind() == Element::Hlr).unwrap();
    assert_eq!(hlr.subscriber(&number).unwrap().attributes["imsi"], "999004790000005");
    // A redelivered callback makes no second order.
    assert!(n.send(n.signed(&envelope(1, completed))).await.0.is_success());

    let confirmed = Message::CompensationConfirmed {
        order_id: 7,
        msisdn: number.clone(),
        recipient: op("opc"),
        compensation: numport_core::Money(100),
    };
    assert!(n.send(n.signed(&envelope(2, confirmed))).await.0.is_success());
    let off_all = async || elements.iter().all(|e| e.subscriber(&number).is_none());
    eventually("deactivation on every element", off_all).await;
    // An element applies a command before the dispatcher records its outcome: wait for the
    // record, then check that nothing more was executed.
    let executed = async || {
        let (_, s) = call(&n, "GET", "/v1/provisioning/status", Some(TOKEN), None).await;
        s["categories"].as_array().unwrap().iter().map(|c| c["executed"].as_u64().unwrap()).sum::<u64>()
    };
    eventually("six outcomes recorded", async || executed().await >= 6).await;
    assert_eq!(executed().await, 6, "one activation and one deactivation, three commands each");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_orders_are_sent_after_a_restart() {
    let ch = FakeClearinghouse::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = with_token(config("opa", &ch.url()));
    c.database_url = format!("sqlite://{}/operator-restart.db", dir.path().display());
    // First life: the elements are unreachable, so everything stays queued.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut unreachable = c.clone();
    unreachable.provisioning.hlr = Some(closed);
    unreachable.provisioning.smsc = Some(closed);
    unreachable.provisioning.charging = Some(closed);
    let clock = numport_core::ManualClock::new(T0);
    let node = operator::Node::open(unreachable, std::sync::Arc::new(clock.clone())).await.unwrap();
    let n = TestNode { node, clock: clock.clone(), dir: tempfile::tempdir().unwrap() };
    let stop = CancellationToken::new();
    let run =
        tokio::spawn(n.node.clone().run(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), stop.clone()));
    eventually("provisioning running", async || n.node.provisioner().status().is_some()).await;
    let orders: Vec<Value> = (0..50).map(|i| port_in(&format!("47910{i:05}"))).collect();
    let (status, _) = call(&n, "POST", "/v1/provisioning/orders", Some(TOKEN), Some(json!({ "orders": orders }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    stop.cancel();
    run.await.unwrap().unwrap();
    n.node.store().close().await;
    drop(n);

    // Second life, with its own simulated elements: all 150 commands are executed.
    let node = operator::Node::open(c, std::sync::Arc::new(clock.clone())).await.unwrap();
    let n = TestNode { node, clock, dir: tempfile::tempdir().unwrap() };
    let stop = CancellationToken::new();
    tokio::spawn(n.node.clone().run(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), stop.clone()));
    eventually("provisioning running", async || n.node.provisioner().status().is_some()).await;
    for id in 1..=50 {
        wait_order(&n, id, "done").await;
    }
    assert_eq!(n.node.provisioner().simulated()[0].subscriber_count(), 50);
    stop.cancel();
}
