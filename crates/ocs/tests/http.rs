//! The OCS's HTTP API on a loopback socket: the bearer token, accounts and idempotent
//! recharges, and each seed method through its route.

mod common;

use common::{T0, TestOcs};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "ocs-secret-token";

async fn api(t: TestOcs) {
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(TOKEN))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = telemetry::json_errors(ocs::http::router(t.ocs.clone(), &hash));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| http.request(method, format!("{base}{path}")).bearer_auth(TOKEN);

    let r = http.get(format!("{base}/v1/ocs/online-list")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http.get(format!("{base}/v1/ocs/online-list")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "bad_token");

    let r = call(reqwest::Method::POST, "/v1/ocs/accounts")
        .json(&json!({"msisdn": "4790000001", "credit_limit": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r =
        call(reqwest::Method::POST, "/v1/ocs/accounts").json(&json!({"msisdn": "4790000001"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let recharge = || {
        call(reqwest::Method::POST, "/v1/ocs/accounts/4790000001/recharges")
            .header("Idempotency-Key", "pay-1")
            .json(&json!({"amount": 1250}))
    };
    let first: Value = recharge().send().await.unwrap().json().await.unwrap();
    let again: Value = recharge().send().await.unwrap().json().await.unwrap();
    assert_eq!((first["balance"].as_i64(), &first), (Some(1250), &again));
    let r = call(reqwest::Method::POST, "/v1/ocs/accounts/4790000001/recharges")
        .json(&json!({"amount": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = call(reqwest::Method::GET, "/v1/ocs/accounts/4799999999").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // CN102547642B
    let r =
        call(reqwest::Method::PUT, "/v1/ocs/online-list/4790").json(&json!({"kind": "prefix"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let d: Value =
        call(reqwest::Method::GET, "/v1/ocs/charging-decision/+4790123456").send().await.unwrap().json().await.unwrap();
    assert_eq!(d, json!({"charging": "online", "matched": {"digits": "4790", "kind": "prefix"}}));
    let r =
        call(reqwest::Method::PUT, "/v1/ocs/online-list/47x").json(&json!({"kind": "prefix"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // CN101425910A
    call(reqwest::Method::PUT, "/v1/ocs/capacity").json(&json!({"total": 3})).send().await.unwrap();
    let a: Value = call(reqwest::Method::POST, "/v1/ocs/capacity/loads")
        .json(&json!({"msisdn": "4790000002", "weight": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        a,
        json!({"admission": "refused", "reason": {"reason": "capacity_exhausted", "loaded": 0, "requested": 4, "total": 3}})
    );
    // CN102083042B
    let r = call(reqwest::Method::PUT, "/v1/ocs/charging-modes/*/7")
        .json(&json!({"mode": "per_event", "price": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let record = json!({"record_id": "r1", "subscriber": "4790000001", "start": T0,
        "containers": [{"service_id": 7, "uplink_octets": 0, "downlink_octets": 0, "duration_s": 0, "events": 2}]});
    let rated: Value =
        call(reqwest::Method::POST, "/v1/ocs/data-records").json(&record).send().await.unwrap().json().await.unwrap();
    assert_eq!(rated["charged"], 60);
    // CN102083044A
    let p = json!({"call_id": "c1", "seq": 1, "caller": "4790000001", "called": "4791234567", "start": T0, "duration_s": 30, "last": true});
    let o: Value =
        call(reqwest::Method::POST, "/v1/ocs/partial-cdrs").json(&p).send().await.unwrap().json().await.unwrap();
    assert_eq!(o["decision"], json!({"decision": "continue", "charged": 10}));
    assert_eq!(o["call"]["applied"], 0);
    let b: Value =
        call(reqwest::Method::GET, "/v1/ocs/accounts/4790000001").send().await.unwrap().json().await.unwrap();
    assert_eq!(b["balance"], 1250 - 60 - 10);
}

both_backends! {
    http_api => api;
}
