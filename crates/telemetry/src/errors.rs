//! The one shape of every error a numport HTTP server answers: `{"error": code, "message":
//! text}` ([`ApiError`]), also for the answers the framework writes itself.
//!
//! Handlers answer their own errors in that shape. What reaches no handler, or is refused
//! before one runs, is answered by axum and tower-http as plain text or with no body at all:
//! an unknown route (404), a method the route does not take (405), a body over the limit (413,
//! from `RequestBodyLimit` or a body extractor), an extractor's rejection (400, 415, 422), a
//! timeout (408). [`json_errors`] rewrites those, keeping their status and headers (`Allow`
//! on a 405), so a client reads every error the same way.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use clearinghouse_api::model::ApiError;

/// Longest framework text carried over into `message`; a longer body is not a rejection's.
const MAX_TEXT: usize = 1024;

/// An error answer in the shape every numport server uses.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(ApiError { error: code.to_owned(), message: message.into() })).into_response()
}

/// `router` with every error answer that is not JSON already rewritten into the shape of
/// [`error_response`]. Apply it last, outside every layer that may refuse a request.
pub fn json_errors<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(middleware::from_fn(rewrite))
}

async fn rewrite(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers()) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT).await.ok().and_then(|b| String::from_utf8(b.to_vec()).ok());
    let message = match text.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => default_message(status, &method, &path),
    };
    let body = ApiError { error: code(status), message };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(serde_json::to_vec(&body).unwrap_or_default()))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
    })
}

/// The stable code of an answer the framework wrote, by its status; the codes the servers'
/// own handlers use for the same statuses where they have one.
fn code(status: StatusCode) -> String {
    match status {
        StatusCode::BAD_REQUEST => "bad_request".into(),
        StatusCode::NOT_FOUND => "not_found".into(),
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed".into(),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout".into(),
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large".into(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type".into(),
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request".into(),
        StatusCode::INTERNAL_SERVER_ERROR => "internal".into(),
        other => other.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace([' ', '-'], "_"),
    }
}

fn default_message(status: StatusCode, method: &Method, path: &str) -> String {
    match status {
        StatusCode::NOT_FOUND => format!("no route {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".into(),
        other => other.canonical_reason().unwrap_or("error").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(code(StatusCode::PAYLOAD_TOO_LARGE), "body_too_large");
        assert_eq!(code(StatusCode::TOO_MANY_REQUESTS), "too_many_requests");
        assert_eq!(code(StatusCode::RANGE_NOT_SATISFIABLE), "range_not_satisfiable");
        assert_eq!(code(StatusCode::from_u16(599).unwrap()), "error");
    }

    #[test]
    fn json_is_recognised() {
        let with = |ct: &'static str| HeaderMap::from_iter([(header::CONTENT_TYPE, HeaderValue::from_static(ct))]);
        assert!(is_json(&with("application/json")));
        assert!(is_json(&with("application/problem+json; charset=utf-8")));
        assert!(!is_json(&with("text/plain; charset=utf-8")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
