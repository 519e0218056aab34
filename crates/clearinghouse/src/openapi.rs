//! The clearinghouse's OpenAPI document, generated from the code and served at `GET /openapi.json`.
//!
//! Each `/v1` operation comes from the `#[utoipa::path]` attribute on its handler
//! ([`crate::http`], [`crate::feed`]), which is also what registers the handler's route
//! (`utoipa_axum::routes!`), so a route cannot be added without its operation. The schemas
//! come from the bodies' `ToSchema` derives in `clearinghouse_api`. This module adds what
//! belongs to no handler: the overview (`openapi.md`), the API key scheme, the error answers
//! several operations share, the idempotency and path parameters, the routes served by other
//! crates (`/healthz`, `/metrics`, this document), and the operator callback as a webhook.

use clearinghouse_api::CallbackBody;
use clearinghouse_api::model::ApiError;
use numport_core::Millis;
use numport_core::openapi::UnixMillis;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "numport clearinghouse API", version = "1.0.0", description = include_str!("openapi.md")),
    servers((url = "http://127.0.0.1:8400", description = "Default listen address of `numport clearinghouse`.")),
    security(("bearer" = [])),
    tags(
        (name = "porting", description = "Porting orders (F1 steps 1–6)."),
        (name = "numbers", description = "Number status and return on termination."),
        (name = "account", description = "The caller's settlement account and violations."),
        (name = "inbox", description = "Messages to the operator: inbox polling, acknowledgement, callback registration."),
        (name = "routing", description = "The routing change log and snapshot that replicas follow (F2)."),
        (name = "meta", description = "Unauthenticated operational endpoints."),
    ),
    paths(openapi_json, healthz, metrics),
    components(responses(
        BadRequest, Unauthorized, Forbidden, NotFound, BodyTooLarge, Internal, InvalidQuery, TooManyRequests
    )),
    modifiers(&BearerKey, &Webhooks),
)]
pub(crate) struct ApiDoc;

/// The body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `clearinghouse`.
    #[schema(example = "clearinghouse")]
    pub role: &'static str,
    /// Whether the clearinghouse can serve (its database pool is open).
    pub ok: bool,
    #[schema(value_type = UnixMillis)]
    pub now_ms: Millis,
}

/// The `Idempotency-Key` header of a state-changing request.
#[derive(IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
#[allow(dead_code)] // only its description is used
pub(crate) struct IdempotencyKey(
    /// 1–128 printable ASCII characters (no spaces), unique per operation of the calling
    /// operator. A retry with the same key and the same body gets the stored answer with
    /// `idempotent-replay: true` and acts once; the same key with a different request → 422
    /// `idempotency_key_reused`. Missing or invalid → 400 `missing_idempotency_key`.
    #[param(min_length = 1, max_length = 128, pattern = "^[!-~]{1,128}$", example = "9b2f5c1e-port-4790000001")]
    String,
);

/// The `{id}` of `/v1/porting-orders/{id}/…`.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
#[allow(dead_code)] // only its description is used
pub(crate) struct OrderId(
    /// Porting order id. An id that is not a number, or an order the caller is not party to,
    /// answers 404.
    i64,
);

/// The `{msisdn}` of `/v1/numbers/{msisdn}…`.
#[derive(IntoParams)]
#[into_params(names("msisdn"), parameter_in = Path)]
#[allow(dead_code)] // only its description is used
pub(crate) struct MsisdnPath(
    /// E.164 number, digits only (a leading `+`, URL-encoded as `%2B`, is accepted). Malformed →
    /// 422 `invalid_msisdn`.
    #[param(pattern = r"^\+?[1-9][0-9]{7,14}$", example = "4790000001")]
    String,
);

/// The body is not JSON or could not be read, or the Idempotency-Key header is missing or
/// invalid. Codes: `malformed_json`, `unreadable_body`, `missing_idempotency_key`.
#[derive(ToResponse)]
#[response(example = json!({
    "error": "missing_idempotency_key",
    "message": "an Idempotency-Key header of 1 to 128 printable characters is required"
}))]
#[allow(dead_code)] // only its description is used
pub(crate) struct BadRequest(ApiError);

/// Missing, malformed, unknown or revoked API key. Code: `unauthorized`.
#[derive(ToResponse)]
#[response(
    headers(("www-authenticate" = String, description = "Always `Bearer`.")),
    example = json!({"error": "unauthorized", "message": "missing or invalid credentials"})
)]
#[allow(dead_code)] // only its description is used
pub(crate) struct Unauthorized(ApiError);

/// The caller is party to the order (or asks about the number) but this action is not its to
/// take. Code: `forbidden`.
#[derive(ToResponse)]
#[response(example = json!({"error": "forbidden", "message": "only the recipient decides"}))]
#[allow(dead_code)] // only its description is used
pub(crate) struct Forbidden(ApiError);

/// No such resource, or one the caller may not see (others cannot learn that an order exists).
/// Code: `not_found`.
#[derive(ToResponse)]
#[response(example = json!({"error": "not_found", "message": "porting order not found"}))]
#[allow(dead_code)] // only its description is used
pub(crate) struct NotFound(ApiError);

/// The request body is larger than the limit (`max_body_bytes`, 64 KiB by default). Code:
/// `body_too_large`.
#[derive(ToResponse)]
#[response(example = json!({"error": "body_too_large", "message": "request body larger than 65536 bytes"}))]
#[allow(dead_code)] // only its description is used
pub(crate) struct BodyTooLarge(ApiError);

/// Internal error; the request had no effect and may be retried (with the same
/// Idempotency-Key). Code: `internal`.
#[derive(ToResponse)]
#[response(example = json!({"error": "internal", "message": "internal error; the request had no effect"}))]
#[allow(dead_code)] // only its description is used
pub(crate) struct Internal(ApiError);

/// A query parameter is not a valid integer. Code: `invalid_query`.
#[derive(ToResponse)]
#[allow(dead_code)] // only its description is used
pub(crate) struct InvalidQuery(ApiError);

/// The caller's operator has used up its request rate (a token bucket per operator, the
/// clearinghouse's `rate_limit`). Code: `rate_limited`.
#[derive(ToResponse)]
#[response(
    headers(("retry-after" = String, description = "Whole seconds until a request will be admitted.")),
    example = json!({"error": "rate_limited", "message": "too many requests from this operator; retry in 1 s"})
)]
#[allow(dead_code)] // only its description is used
pub(crate) struct TooManyRequests(ApiError);

/// Every `/v1` operation authenticates its caller, and so may answer 429 `rate_limited`: the
/// answer is added to each of them here, once the router's operations are in the document.
pub(crate) fn rate_limited(doc: &mut utoipa::openapi::OpenApi) {
    let answer = utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_response_name("TooManyRequests"));
    for (_, item) in doc.paths.paths.iter_mut().filter(|(path, _)| path.starts_with("/v1/")) {
        for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
            op.responses.responses.insert("429".into(), answer.clone());
        }
    }
}

/// This OpenAPI document
#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "getOpenApi", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json",
        body = inline(Object))))]
#[allow(dead_code)] // served by `http::router`; declared here for its operation only
fn openapi_json() {}

/// Health check
///
/// 200 while the clearinghouse can serve (its database pool is open), 503 with the same body
/// otherwise.
#[utoipa::path(get, path = "/healthz", tag = "meta", operation_id = "getHealth", security(()), responses(
    (status = 200, description = "Healthy.", body = Health),
    (status = 503, description = "Unhealthy.", body = Health),
))]
#[allow(dead_code)] // served by `telemetry::routes`; declared here for its operation only
fn healthz() {}

/// Prometheus metrics
///
/// Counters and histograms in the Prometheus text exposition format (orders requested, ports
/// completed, compensation settled, violations, callbacks, HTTP requests by route).
#[utoipa::path(get, path = "/metrics", tag = "meta", operation_id = "getMetrics", security(()), responses(
    (status = 200, description = "Metrics.", content_type = "text/plain", body = String),
))]
#[allow(dead_code)] // served by `telemetry::routes`; declared here for its operation only
fn metrics() {}

/// The operator API key: `Authorization: Bearer <key id>.<secret>`.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("<key id>.<secret>")
            .description(Some(
                "An operator API key issued by the portability center, sent as `Authorization: Bearer <key \
                 id>.<secret>`. Missing, wrong or revoked keys → 401 `unauthorized` with `WWW-Authenticate: \
                 Bearer`.",
            ))
            .build();
        doc.components.get_or_insert_with(Default::default).add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// What the clearinghouse sends operators: the `webhooks` of the document.
#[derive(OpenApi)]
#[openapi(paths(operator_callback))]
struct Callbacks;

struct Webhooks;

impl Modify for Webhooks {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let callbacks = Callbacks::openapi();
        if let Some(schemas) = callbacks.components.map(|c| c.schemas) {
            doc.components.get_or_insert_with(Default::default).schemas.extend(schemas);
        }
        doc.webhooks = Some(callbacks.paths);
    }
}

/// Messages to the operator (signed callback)
///
/// Each message (an `Envelope`) is POSTed to the operator's registered callback URL as
/// `application/json`. Messages due for the operator at the same time travel together as a
/// JSON array of envelopes (at most `dispatcher.batch_max`, 64 by default), signed as a whole
/// and acknowledged as a whole. Verify before acting:
/// 1. `x-numport-signature` = `v1=` + lower-case hex of HMAC-SHA256(callback secret,
///    `<x-numport-timestamp>` + `.` + raw body bytes); compare in constant time over the exact
///    bytes received.
/// 2. Refuse a timestamp more than 5 minutes from your clock (stale capture).
/// 3. Drop a message whose id you have already processed (replay or redelivery).
///
/// Answer any 2xx once the message (every message of an array) is durably taken in. Anything
/// else (non-2xx, timeout, connection error) is retried with exponential back-off (by default
/// 0.5 s, doubling per attempt, at most 60 s between attempts) until answered 2xx or
/// acknowledged via `POST /v1/inbox/ack`. Delivery is **at least once** and not strictly
/// ordered: deduplicate by `id`. Every message also stays readable from `GET /v1/inbox`.
#[utoipa::path(post, path = "operatorCallback", operation_id = "operatorCallback", security(()),
    params(
        ("x-numport-timestamp" = String, Header, pattern = "^[0-9]+$", example = "1767225630123",
            description = "When the callback was signed, Unix milliseconds in decimal."),
        ("x-numport-signature" = String, Header, pattern = "^v1=[0-9a-f]{64}$",
            description = "`v1=` + hex(HMAC-SHA256(secret, timestamp + \".\" + body))."),
        ("x-numport-message-id" = String, Header, pattern = "^[0-9]+(,[0-9]+)*$", example = "1017",
            description = "The envelope's `id` in decimal (the deduplication key); for an array, the ids in order, separated by commas."),
    ),
    request_body = CallbackBody,
    responses(
        (status = "2XX", description = "Taken in; not sent again."),
        (status = "default", description = "Not taken in; the message is retried with exponential back-off."),
    ))]
#[allow(dead_code)] // the operator serves it; declared here for its operation only
fn operator_callback() {}
