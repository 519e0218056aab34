//! Checks that hold a server's OpenAPI document to the server: the routes its router serves
//! are the operations its document lists, and an independent validator accepts the document.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// A route as `(METHOD, path)`, the path in axum's and OpenAPI's common `{param}` form.
pub type Route = (String, String);

/// The routes `router` serves, fallbacks aside; `HEAD` is left out (axum answers it wherever
/// it answers `GET`).
///
/// axum has no API that lists a router's routes, so this reads its `Debug` output, the one
/// listing axum gives: route ids with their paths, and each route's `Allow` header. A change of
/// that output's shape makes this find no route, and [`assert_routes_documented`] fails.
pub fn router_routes<S>(router: &axum::Router<S>) -> BTreeSet<Route> {
    let debug = format!("{router:?}");
    // The served routes come before the fallback router's.
    let served = debug.split("fallback_router:").next().unwrap_or_default();
    let (method_routers, paths) = served.split_once("node: Node").unwrap_or_default();
    let id_of = |chunk: &str| chunk.split_once(')').map(|(id, rest)| (id.trim().to_owned(), rest.to_owned()));
    let mut allowed: BTreeMap<String, String> = BTreeMap::new();
    for (id, rest) in method_routers.split("RouteId(").filter_map(id_of) {
        let allow = rest.split_once("allow_header: Bytes(b\"").and_then(|(_, a)| a.split_once('"')).map(|(a, _)| a);
        if let Some(allow) = allow {
            allowed.insert(id, allow.to_owned());
        }
    }
    let mut routes = BTreeSet::new();
    for (id, rest) in paths.split("RouteId(").filter_map(id_of) {
        let Some(path) = rest.split('"').nth(1) else { continue };
        for method in allowed.get(&id).map(String::as_str).unwrap_or_default().split(',') {
            if !method.is_empty() && method != "HEAD" {
                routes.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    routes
}

/// The operations an OpenAPI document lists, as routes.
pub fn document_routes(doc: &serde_json::Value) -> BTreeSet<Route> {
    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// Every route of `router` is an operation of `doc`, and every operation a route.
#[track_caller]
pub fn assert_routes_documented<S>(router: &axum::Router<S>, doc: &serde_json::Value) {
    let served = router_routes(router);
    let documented = document_routes(doc);
    assert!(!served.is_empty(), "found no route in the router's Debug output; has its shape changed?");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes served but not in the OpenAPI document: {undocumented:?}; \
         operations in the document that no route serves: {unserved:?}"
    );
}

/// Validate `doc` with the Python `openapi-spec-validator`, or skip (fail under CI) without it.
#[track_caller]
pub fn validate(doc: &serde_json::Value) {
    if !crate::python_module("openapi_spec_validator", "pip install openapi-spec-validator") {
        return;
    }
    let file = tempfile::Builder::new().suffix(".json").tempfile().expect("temporary file");
    std::fs::write(file.path(), serde_json::to_vec_pretty(doc).expect("serialize the document"))
        .expect("write the document");
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(file.path())
        .output()
        .expect("run python3 -m openapi_spec_validator");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::{get, put};
    use serde_json::json;

    use super::*;

    fn router() -> Router {
        Router::new()
            .route("/a", get(|| async {}).post(|| async {}))
            .merge(Router::new().route("/b/{id}", put(|| async {})))
            .fallback(|| async {})
    }

    fn route(method: &str, path: &str) -> Route {
        (method.to_owned(), path.to_owned())
    }

    #[test]
    fn lists_the_routes_of_a_router() {
        let expected = BTreeSet::from([route("GET", "/a"), route("POST", "/a"), route("PUT", "/b/{id}")]);
        assert_eq!(router_routes(&router()), expected);
    }

    #[test]
    fn a_route_missing_from_the_document_fails() {
        let complete = json!({"paths": {"/a": {"get": {}, "post": {}}, "/b/{id}": {"put": {}}}});
        assert_routes_documented(&router(), &complete);
        let missing = json!({"paths": {"/a": {"get": {}}, "/b/{id}": {"put": {}}}});
        let failed = std::panic::catch_unwind(|| assert_routes_documented(&router(), &missing));
        assert!(failed.is_err());
        let extra = json!({"paths": {"/a": {"get": {}, "post": {}}, "/b/{id}": {"put": {}}, "/c": {"get": {}}}});
        assert!(std::panic::catch_unwind(|| assert_routes_documented(&router(), &extra)).is_err());
    }
}
