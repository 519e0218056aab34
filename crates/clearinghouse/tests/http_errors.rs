//! Every error the clearinghouse answers has the one JSON shape, also those no handler writes:
//! an unknown route, a method a route does not take (with its `Allow` header), a body over the
//! limit, a malformed body, on `/v1` and on the telemetry routes; on SQLite and PostgreSQL.

mod common;

use common::TestCh;
use numport_db::Backend;
use testkit::http::error_answer;

async fn every_error_is_json(backend: Backend) {
    let Some(t) = TestCh::start(backend).await else { return };
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", t.url);
    let token =
        clearinghouse::admin::issue_credentials(&t.ch.db, &[7u8; 32], "opb", 0, common::T0).await.unwrap().api_token;

    let e = error_answer(http.get(url("/v1/nowhere")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (404, "not_found"));
    let e = error_answer(http.get(url("/")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (404, "not_found"));

    let e = error_answer(http.delete(url("/v1/deposits")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str(), e.allow.as_deref()), (405, "method_not_allowed", Some("POST")));
    let e = error_answer(http.post(url("/metrics")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str(), e.allow.as_deref()), (405, "method_not_allowed", Some("GET,HEAD")));
    let e = error_answer(http.put(url("/healthz")).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (405, "method_not_allowed"));

    let post = |body: Vec<u8>| {
        http.post(url("/v1/porting-orders"))
            .bearer_auth(&token)
            .header("idempotency-key", "k")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let e = error_answer(post(vec![b' '; t.ch.config.max_body_bytes + 1]).await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (413, "body_too_large"));
    let e = error_answer(post(b"{not json".to_vec()).await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (400, "malformed_json"));
    let e = error_answer(http.get(url("/v1/inbox?after=x")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((e.status, e.code.as_str()), (422, "invalid_query"));

    // The routes still answer what they answered.
    assert_eq!(http.get(url("/healthz")).send().await.unwrap().status(), 200);
    let metrics = http.get(url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
}

on_both_backends!(every_error_is_json);
