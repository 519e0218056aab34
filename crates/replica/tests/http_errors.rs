//! Every error `numport npdb`'s HTTP server answers over a real socket has the one JSON shape,
//! also those no handler writes: an unknown route, a method a route does not take (with its
//! `Allow` header), a body over the limit, a malformed body.

use replica::http::MAX_BODY_BYTES;
use replica::{Replica, ReplicaConfig};
use testkit::http::error_answer;

#[tokio::test]
async fn every_error_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = ReplicaConfig {
        clearinghouse_url: Some("http://127.0.0.1:9".into()),
        api_token: Some("key.secret".into()),
        data_dir: Some(dir.path().to_owned()),
        ..ReplicaConfig::default()
    };
    let registry = telemetry::Registry::new();
    let replica = Replica::open(config, &registry).await.unwrap();
    let health: telemetry::HealthCheck = std::sync::Arc::new(|| (true, serde_json::json!({})));
    let app = replica::http::server(replica, Some(registry), health);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, app).into_future());
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");

    let e = error_answer(http.get(url("/v1/nowhere")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (404, "not_found"));

    let e = error_answer(http.get(url("/v1/lookup")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str(), e.allow.as_deref()), (405, "method_not_allowed", Some("POST")));
    let e = error_answer(http.post(url("/v1/lookup/4790000001")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str(), e.allow.as_deref()), (405, "method_not_allowed", Some("GET,HEAD")));
    let e = error_answer(http.post(url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (405, "method_not_allowed"));

    let e = error_answer(http.post(url("/v1/lookup")).body(vec![b' '; MAX_BODY_BYTES + 1]).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (413, "body_too_large"));
    let e = error_answer(http.post(url("/v1/lookup")).body("{not json").send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (400, "malformed_json"));
    // A full batch still fits under the limit.
    let batch = serde_json::json!({ "numbers": vec!["+479000000000001"; replica::http::MAX_BATCH] }).to_string();
    assert!(batch.len() < MAX_BODY_BYTES, "{}", batch.len());
    let e = error_answer(http.post(url("/v1/lookup")).body(batch).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (503, "not_ready"));

    server.abort();
}
