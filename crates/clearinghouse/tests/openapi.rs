//! The OpenAPI document the clearinghouse serves: it lists exactly the router's routes, and an
//! independent validator accepts it.

mod common;

use common::TestCh;
use numport_db::Backend;

async fn served_document(t: &TestCh) -> serde_json::Value {
    let resp = reqwest::get(format!("{}/openapi.json", t.url)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.unwrap()
}

#[tokio::test]
async fn every_route_is_documented_and_every_operation_routed() {
    let Some(t) = TestCh::start(Backend::Sqlite).await else { return };
    let doc = served_document(&t).await;
    testkit::openapi::assert_routes_documented(&clearinghouse::http::router(t.ch.clone()), &doc);
}

#[tokio::test]
async fn served_document_is_valid_openapi() {
    let Some(t) = TestCh::start(Backend::Sqlite).await else { return };
    let doc = served_document(&t).await;
    assert_eq!(doc, serde_json::to_value(clearinghouse::http::openapi()).unwrap());
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    testkit::openapi::validate(&doc);
}

/// What the document promises of the API as a whole: the API key and the rate limit's 429 on
/// every `/v1` operation, the idempotency key on every state-changing one but the
/// acknowledgement and the callback registration, and the callback to operators as a webhook.
#[test]
fn document_states_the_conventions() {
    let doc = serde_json::to_value(clearinghouse::http::openapi()).unwrap();
    assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = op.get("security") == Some(&serde_json::json!([{}]));
            assert_eq!(public, !path.starts_with("/v1/"), "{method} {path}: security {:?}", op.get("security"));
            let idempotent = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key" && p["required"] == true));
            let expected = method == "post" && path != "/v1/inbox/ack";
            assert_eq!(idempotent, expected, "{method} {path}: Idempotency-Key");
            let rate_limited = op["responses"].get("429").is_some();
            assert_eq!(rate_limited, path.starts_with("/v1/"), "{method} {path}: 429 rate_limited");
        }
    }
    assert!(doc["webhooks"]["operatorCallback"]["post"]["requestBody"].is_object());
}
