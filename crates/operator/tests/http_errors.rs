//! Every error the operator node answers over a real socket has the one JSON shape, also those
//! no handler writes: an unknown route, a method a route does not take (with its `Allow`
//! header), a body over the limit, a malformed body.

mod common;

use common::{FakeClearinghouse, TestNode};
use operator::node::MAX_BODY_BYTES;
use testkit::http::error_answer;

#[tokio::test]
async fn every_error_is_json() {
    let ch = FakeClearinghouse::start().await;
    let n = TestNode::start("opa", &ch).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, n.node.router()).into_future());
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");

    let e = error_answer(http.get(url("/v1/nowhere")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (404, "not_found"));

    let e = error_answer(http.get(url("/v1/clearinghouse/callbacks")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str(), e.allow.as_deref()), (405, "method_not_allowed", Some("POST")));
    let e = error_answer(http.get(url("/v1/lookup")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str(), e.allow.as_deref()), (405, "method_not_allowed", Some("POST")));
    let e = error_answer(http.delete(url("/metrics")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str(), e.allow.as_deref()), (405, "method_not_allowed", Some("GET,HEAD")));

    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let e = error_answer(http.post(url("/v1/clearinghouse/callbacks")).body(big.clone()).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (413, "body_too_large"));
    let e = error_answer(http.post(url("/v1/lookup")).body(big).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (413, "body_too_large"));

    let e = error_answer(http.post(url("/v1/lookup")).body("{not json").send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (400, "malformed_json"));

    assert_eq!(http.get(url("/healthz")).send().await.unwrap().status(), 200);
    server.abort();
}
