//! The OpenAPI document a standalone replica (`numport npdb`) serves: it lists exactly the
//! server's routes, and an independent validator accepts it.

mod common;

use common::{Running, TestCh, config};

async fn served(r: &Running) -> (axum::Router, serde_json::Value) {
    let health: telemetry::HealthCheck = std::sync::Arc::new(|| (true, serde_json::Value::Null));
    let app = replica::http::server(r.replica.clone(), Some(r.registry.clone()), health);
    let req = axum::http::Request::get("/openapi.json").body(axum::body::Body::empty()).unwrap();
    let resp = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    (app, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn standalone_document_matches_routes_and_validates() {
    let ch = TestCh::start().await;
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(config(&ch.url, "nokey.nosecret", dir.path())).await;
    let (app, doc) = served(&r).await;
    testkit::openapi::assert_routes_documented(&app, &doc);
    testkit::openapi::validate(&doc);
    r.shut().await;
}
