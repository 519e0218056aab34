//! The OpenAPI document the operator node serves: it lists exactly the router's routes, and an
//! independent validator accepts it.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{FakeClearinghouse, TestNode};

async fn served_document(n: &TestNode) -> serde_json::Value {
    let (status, doc) = n.send(Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    doc
}

#[tokio::test]
async fn every_route_is_documented_and_every_operation_routed() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    let doc = served_document(&n).await;
    testkit::openapi::assert_routes_documented(&n.node.router(), &doc);
    // The callback route is where the node registers its callback URL.
    assert!(doc["paths"][operator::config::CALLBACK_PATH]["post"].is_object());
}

#[tokio::test]
async fn served_document_is_valid_openapi() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    let doc = served_document(&n).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    testkit::openapi::validate(&doc);
}
