//! Test support: a fake clearinghouse on a real port, and an operator node on a temporary
//! SQLite database driven by a manual clock.
//!
//! The fake is a test double of the HTTP peer only: it records every request and answers with
//! canned bodies of the real contract types (or with whatever a test told it to).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clearinghouse_api::model::{Inbox, Order};
use clearinghouse_api::{Envelope, Message};
use numport_core::porting::{OrderKind, OrderState};
use numport_core::proof::{PinStretch, PortKey};
use numport_core::signing::{MESSAGE_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use numport_core::{Clock, ManualClock, Millis, Money, Msisdn, OperatorName};
use operator::{Node, OperatorConfig, OperatorStore, Subscriber};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

pub const SECRET: [u8; 32] = [0x5a; 32];
pub const T0: Millis = 1_750_000_000_000;

/// One request the fake clearinghouse received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub idempotency_key: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct FakeState {
    seen: Vec<Seen>,
    /// path → (status, body): answers that replace the default ones.
    overrides: HashMap<String, (StatusCode, Value)>,
    /// Answer the next N requests with 503.
    fail_next: usize,
    inbox: Vec<Envelope>,
}

/// A stand-in for the clearinghouse's HTTP API.
#[derive(Clone)]
pub struct FakeClearinghouse {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

pub fn msisdn(s: &str) -> Msisdn {
    s.parse().unwrap()
}

pub fn op(s: &str) -> OperatorName {
    s.parse().unwrap()
}

pub fn order(id: i64, state: OrderState) -> Order {
    Order {
        id,
        msisdn: msisdn("4790000001"),
        kind: OrderKind::Port,
        recipient: op("opb"),
        donor: Some(op("opa")),
        state,
        reason: None,
        expiry: T0 + 600_000,
        deadline_at: Some(T0 + 60_000),
        credit: None,
        compensation: None,
        created_at: T0,
        updated_at: T0,
        completed_at: None,
    }
}

impl FakeClearinghouse {
    pub async fn start() -> FakeClearinghouse {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let st = state.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            async move { answer(&st, method, uri, headers, body) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeClearinghouse { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests to exactly this path.
    pub fn calls(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    pub fn answer_with(&self, path: &str, status: StatusCode, body: Value) {
        self.state.lock().unwrap().overrides.insert(path.to_owned(), (status, body));
    }

    pub fn clear_overrides(&self) {
        self.state.lock().unwrap().overrides.clear();
    }

    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn push_inbox(&self, e: Envelope) {
        self.state.lock().unwrap().inbox.push(e);
    }
}

fn answer(st: &Mutex<FakeState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut st = st.lock().unwrap();
    let path = uri.path().to_owned();
    st.seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        idempotency_key: headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if st.fail_next > 0 {
        st.fail_next -= 1;
        let e = json!({"error": "unavailable", "message": "try later"});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(e)).into_response();
    }
    if let Some((status, body)) = st.overrides.get(&path) {
        return (*status, axum::Json(body.clone())).into_response();
    }
    let ok = |v: Value| (StatusCode::OK, axum::Json(v)).into_response();
    match (method.as_str(), path.as_str()) {
        ("POST", "/v1/porting-orders") => {
            (StatusCode::CREATED, axum::Json(json!(order(7, OrderState::AwaitingDeposit)))).into_response()
        }
        ("POST", "/v1/deposits") => ok(json!({"order_id": 7})),
        ("POST", p) if p.ends_with("/credit-information") => ok(json!(order(7, OrderState::AwaitingDecision))),
        ("POST", p) if p.ends_with("/decision") => ok(json!(order(7, OrderState::Completed))),
        ("POST", p) if p.ends_with("/decline") => ok(json!(order(7, OrderState::Rejected))),
        ("GET", "/v1/inbox") => {
            let q = uri.query().unwrap_or_default();
            let param = |name: &str| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .find(|(k, _)| *k == name)
                    .and_then(|(_, v)| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            let (after, limit) = (param("after"), param("limit"));
            let messages: Vec<Envelope> =
                st.inbox.iter().filter(|e| e.id > after).take(limit as usize).cloned().collect();
            ok(json!(Inbox { messages }))
        }
        ("POST", "/v1/inbox/ack") => ok(json!({"acked": true})),
        ("PUT", "/v1/operators/me/callback") => ok(json!({"ok": true})),
        _ => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "not_found", "message": path}))).into_response(),
    }
}

/// An operator node on a fresh SQLite database in a temporary directory.
pub struct TestNode {
    pub node: Node,
    pub clock: ManualClock,
    pub dir: TempDir,
}

pub fn config(name: &str, clearinghouse: &str) -> OperatorConfig {
    OperatorConfig {
        name: op(name),
        clearinghouse_url: clearinghouse.to_owned(),
        api_token: "key.secret".into(),
        callback_secret: hex(&SECRET),
        key_encryption_key: hex(&[0x4b; 32]),
        reprocess_interval_ms: 50,
        plain_http: true,
        npdb: replica::ReplicaConfig {
            // Each configuration its own directory: a restarted node in a test opens a
            // second replica while the first is still alive.
            data_dir: Some(tempfile::tempdir().unwrap().keep()),
            ..OperatorConfig::default().npdb
        },
        ..OperatorConfig::default()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TestNode {
    pub async fn start(name: &str, ch: &FakeClearinghouse) -> TestNode {
        TestNode::with_config(config(name, &ch.url())).await
    }

    pub async fn with_config(mut config: OperatorConfig) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        config.database_url = format!("sqlite://{}/operator-{{name}}.db", dir.path().display());
        let clock = ManualClock::new(T0);
        let node = Node::open(config, Arc::new(clock.clone())).await.unwrap();
        TestNode { node, clock, dir }
    }

    pub fn store(&self) -> &OperatorStore {
        self.node.store()
    }

    /// A callback request for `e`, signed now with the node's secret.
    pub fn signed(&self, e: &Envelope) -> Request<Body> {
        let body = serde_json::to_vec(e).unwrap();
        self.signed_raw(e.id, body, self.clock.now_ms())
    }

    pub fn signed_raw(&self, id: i64, body: Vec<u8>, ts: Millis) -> Request<Body> {
        Request::post("/v1/clearinghouse/callbacks")
            .header("content-type", "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sign(&SECRET, ts, &body))
            .header(MESSAGE_ID_HEADER, id.to_string())
            .body(Body::from(body))
            .unwrap()
    }

    /// Send a request through the node's router; the status and the JSON body (or Null).
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.node.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let req =
            Request::post(path).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
        self.send(req).await
    }

    pub async fn is_processed(&self, id: i64) -> bool {
        self.store().received_message(id).await.unwrap().is_some_and(|m| m.processed_at.is_some())
    }

    /// Wait (up to 3 s) until message `id` is processed.
    pub async fn wait_processed(&self, id: i64) {
        for _ in 0..300 {
            if self.is_processed(id).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("message {id} was not processed");
    }

    pub async fn add_subscriber(&self, number: &str, key: Option<&PortKey>, figures: [i64; 4]) -> Subscriber {
        let s = Subscriber {
            port_key: key.cloned(),
            arrears: Money(figures[0]),
            unbilled_usage: Money(figures[1]),
            contract_remaining: Money(figures[2]),
            deposit_held: Money(figures[3]),
            ..Subscriber::new(msisdn(number), T0)
        };
        self.store().upsert_subscriber(&s).await.unwrap();
        s
    }
}

pub fn port_key(pin: &str) -> PortKey {
    PortKey::derive(b"k-sim-test-000001", pin, b"salt-salt", PinStretch::FAST).unwrap()
}

pub fn envelope(id: i64, message: Message) -> Envelope {
    Envelope { id, created_at: T0, message }
}

/// Wait (up to 3 s) until `f` holds.
pub async fn eventually(what: &str, f: impl AsyncFn() -> bool) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// SMS-center node `name` on `clock`, its replica (ranges 4790 opa, 4791 opb, then `ported`)
/// on disk in `dir`, its database there, with the ESMEs `bank`, `ic-opa` and `ic-opb`, and its
/// configuration changed by `tweak`.
pub async fn sms_node(
    name: &str,
    dir: &std::path::Path,
    clock: &ManualClock,
    ported: &[(&str, &str)],
    tweak: impl FnOnce(&mut OperatorConfig),
) -> Node {
    let npdb = dir.join(format!("npdb-{name}"));
    let ops = [("opa", "D001"), ("opb", "D002")]
        .map(|(n, r)| npdb::Operator { name: n.parse().unwrap(), routing_number: r.parse().unwrap() });
    let ranges = [("4790", "opa"), ("4791", "opb")].map(|(p, o)| (p.parse().unwrap(), o.parse().unwrap()));
    let mut index = npdb::Index::new(ops, ranges).unwrap();
    for (number, serving) in ported {
        index.apply(&number.parse().unwrap(), &serving.parse().unwrap()).unwrap();
    }
    replica::disk::install_index(&npdb, &index, ported.len() as i64, 0).unwrap();
    let mut config = OperatorConfig {
        database_url: format!("sqlite://{}/operator-{{name}}.db", dir.display()),
        npdb: replica::ReplicaConfig { data_dir: Some(npdb), ..config(name, "http://127.0.0.1:9").npdb },
        ..config(name, "http://127.0.0.1:9")
    };
    tweak(&mut config);
    let node = Node::open(config, Arc::new(clock.clone())).await.unwrap();
    for (esme, password) in [("bank", "s3cret"), ("ic-opa", "icpw"), ("ic-opb", "icpw")] {
        node.store().upsert_esme(&smsc::EsmeAccount::new(esme, password, 1000).unwrap(), T0).await.unwrap();
    }
    node
}

/// `node` served on `smpp` (and an air listener of its own) until `stop`; its air address.
pub async fn serve(
    node: &Node,
    smpp: tokio::net::TcpListener,
    stop: &tokio_util::sync::CancellationToken,
) -> SocketAddr {
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let air = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let air_addr = air.local_addr().unwrap();
    let listeners =
        operator::Listeners { http, enum_dns: None, smpp: Some(smpp), smpp_tls: None, air: Some(air), gy: None };
    tokio::spawn(node.clone().serve(listeners, stop.clone()));
    air_addr
}

/// A listener on a free loopback port, and its address.
pub async fn smpp_listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}
