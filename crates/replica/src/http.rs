//! Lookups over HTTP: `GET /v1/lookup/{number}` and the batch form `POST /v1/lookup`.
//!
//! Every answer carries the checkpoint it was read at (`seq`) and whether the replica is
//! `stale`, so a caller can tell "B serves it" from "B served it when we last heard".
//!
//! The handlers' `#[utoipa::path]` attributes are their OpenAPI operations and, through
//! `utoipa_axum::routes!`, their routes: every server that merges [`api`] documents them.
//! [`server`] is what `numport npdb` serves, with its own `/openapi.json`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clearinghouse_api::model::ApiError;
use numport_core::Msisdn;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{Answer, Replica, Status};

/// Most numbers one batch request may ask for.
pub const MAX_BATCH: usize = 10_000;

/// Largest request body `numport npdb` reads: a full batch of numbers with a `+` and quotes
/// each, and room for white space.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The lookup routes with their OpenAPI operations, state applied (merge into any server's
/// router).
pub fn api(replica: Replica) -> OpenApiRouter {
    OpenApiRouter::new().routes(routes!(lookup_one)).routes(routes!(lookup_batch)).with_state(replica)
}

/// The lookup routes, state applied, without their operations.
pub fn routes(replica: Replica) -> Router {
    api(replica).split_for_parts().0
}

/// Serve `doc` at `GET /openapi.json`.
pub fn openapi_route(doc: &utoipa::openapi::OpenApi) -> Router {
    let doc = Bytes::from(doc.to_pretty_json().unwrap_or_default());
    Router::new().route(
        "/openapi.json",
        get(move || std::future::ready(([(header::CONTENT_TYPE, "application/json")], doc.clone()))),
    )
}

/// The body of a standalone replica's `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `npdb`.
    #[schema(example = "npdb")]
    pub role: &'static str,
    /// `ok`, `stale` (serving what it has while the clearinghouse is unreachable) or
    /// `not_ready` (no routing data loaded yet; answered 503).
    #[schema(example = "ok")]
    pub status: &'static str,
    pub npdb: Status,
}

impl Health {
    pub fn of(replica: &Replica) -> Health {
        let npdb = replica.status();
        let status = if !npdb.ready {
            "not_ready"
        } else if npdb.stale {
            "stale"
        } else {
            "ok"
        };
        Health { role: "npdb", status, npdb }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "numport portability replica (npdb) API",
        version = "1.0.0",
        description = "Number lookups from the local replica of the clearinghouse's routing data (F2), as \
                       `numport npdb` serves them. Every answer says at which change-log sequence number it was \
                       read (`seq`) and whether the replica has lost the clearinghouse (`stale`)."
    ),
    tags(
        (name = "lookup", description = "Who serves a number."),
        (name = "meta", description = "Operational endpoints."),
    ),
    paths(openapi_json, healthz, metrics)
)]
struct ServerDoc;

/// Everything `numport npdb` serves over HTTP: the lookups, `/healthz` and `/metrics` (from
/// `telemetry`, with `health`) and `/openapi.json`, bodies up to [`MAX_BODY_BYTES`], every
/// error in the JSON shape ([`telemetry::json_errors`]). `metrics`: the registry `/metrics`
/// serves here; `None` when it is served on a listener of its own (`metrics_listen`).
pub fn server(replica: Replica, metrics: Option<telemetry::Registry>, health: telemetry::HealthCheck) -> Router {
    let (routes, doc) = OpenApiRouter::with_openapi(ServerDoc::openapi()).merge(api(replica)).split_for_parts();
    let observability = match metrics {
        Some(registry) => telemetry::routes(registry, health),
        None => telemetry::health_routes(health),
    };
    let routes = routes.merge(openapi_route(&doc)).merge(observability).layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    telemetry::json_errors(routes)
}

/// This OpenAPI document
#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "getOpenApi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json",
        body = inline(Object))))]
#[allow(dead_code)] // served by `openapi_route`; declared here for its operation only
fn openapi_json() {}

/// Health check
///
/// 200 once the replica has routing data, 503 with the same body before.
#[utoipa::path(get, path = "/healthz", tag = "meta", operation_id = "getHealth", responses(
    (status = 200, description = "Ready.", body = Health),
    (status = 503, description = "No routing data loaded yet.", body = Health),
))]
#[allow(dead_code)] // served by `telemetry::routes`; declared here for its operation only
fn healthz() {}

/// Prometheus metrics
///
/// Counters and gauges in the Prometheus text exposition format (lookups, `npdb_stale`, the
/// applied sequence number, …).
#[utoipa::path(get, path = "/metrics", tag = "meta", operation_id = "getMetrics", responses(
    (status = 200, description = "Metrics.", content_type = "text/plain", body = String),
))]
#[allow(dead_code)] // served by `telemetry::routes`; declared here for its operation only
fn metrics() {}

use telemetry::error_response as error;

fn not_ready() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the replica has not loaded any routing data yet")
}

/// A lookup's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Lookup {
    #[serde(flatten)]
    pub answer: Answer,
    /// The change-log sequence number the answer was read at.
    pub seq: i64,
    /// Whether the replica has lost the clearinghouse (the answer may be out of date).
    pub stale: bool,
}

/// Who serves a number
#[utoipa::path(get, path = "/v1/lookup/{msisdn}", tag = "lookup", operation_id = "lookup",
    params(("msisdn" = String, Path, description = "E.164 number (a leading `+` is accepted).", example = "4790000001")),
    responses(
        (status = 200, description = "The serving operator.", body = Lookup),
        (status = 400, description = "Not an E.164 number. Code: `invalid_number`.", body = ApiError),
        (status = 404, description = "No known number range holds the number. Code: `unknown_number`.", body = ApiError),
        (status = 503, description = "No routing data loaded yet. Code: `not_ready`.", body = ApiError),
    ))]
async fn lookup_one(State(replica): State<Replica>, Path(number): Path<String>) -> Response {
    replica.metrics().http_lookups.inc();
    let Ok(msisdn) = number.parse::<Msisdn>() else {
        return error(StatusCode::BAD_REQUEST, "invalid_number", format!("{number:?} is not an E.164 number"));
    };
    if !replica.is_ready() {
        return not_ready();
    }
    let seq = replica.seq();
    match replica.lookup(&msisdn) {
        Some(answer) => axum::Json(Lookup { answer, seq, stale: replica.is_stale() }).into_response(),
        None => error(StatusCode::NOT_FOUND, "unknown_number", format!("{msisdn} is in no known number range")),
    }
}

/// Numbers to look up, at most 10000.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"numbers": ["4790000001", "4791000002"]}))]
pub struct BatchRequest {
    #[schema(max_items = 10000)]
    numbers: Vec<String>,
}

/// One number's answer in a batch, in the order asked.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Found {
        msisdn: String,
        operator: String,
        routing_number: String,
        /// Served by someone other than its range holder.
        ported: bool,
    },
    Failed {
        msisdn: String,
        /// `invalid_number` or `unknown_number`.
        error: &'static str,
    },
}

/// A batch's answers, all read at one sequence number.
#[derive(Serialize, ToSchema)]
pub struct BatchAnswer {
    /// The change-log sequence number the answers were read at.
    pub seq: i64,
    /// Whether the replica has lost the clearinghouse (the answers may be out of date).
    pub stale: bool,
    pub results: Vec<BatchItem>,
}

/// Who serves each of many numbers
#[utoipa::path(post, path = "/v1/lookup", tag = "lookup", operation_id = "lookupBatch",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One answer per number asked, in order.", body = BatchAnswer),
        (status = 400, description = "Not a batch request, or too many numbers. Codes: `malformed_json`, `batch_too_large`.",
            body = ApiError),
        (status = 503, description = "No routing data loaded yet. Code: `not_ready`.", body = ApiError),
    ))]
async fn lookup_batch(State(replica): State<Replica>, body: Bytes) -> Response {
    let req: BatchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()),
    };
    if req.numbers.len() > MAX_BATCH {
        return error(StatusCode::BAD_REQUEST, "batch_too_large", format!("at most {MAX_BATCH} numbers per request"));
    }
    replica.metrics().http_lookups.inc_by(req.numbers.len() as u64);
    if !replica.is_ready() {
        return not_ready();
    }
    let keys: Vec<Option<u64>> =
        req.numbers.iter().map(|n| n.parse::<Msisdn>().ok().map(|m| npdb::key_of(&m))).collect();
    let flat: Vec<u64> = keys.iter().map(|k| k.unwrap_or(0)).collect();
    let mut hits = vec![None; flat.len()];
    let (seq, results) = {
        let index = replica.read();
        index.lookup_batch(&flat, &mut hits);
        let results: Vec<BatchItem> = req
            .numbers
            .into_iter()
            .zip(keys.iter().zip(&hits))
            .map(|(msisdn, (key, hit))| match (key, hit) {
                (None, _) => BatchItem::Failed { msisdn, error: "invalid_number" },
                (Some(_), None) => BatchItem::Failed { msisdn, error: "unknown_number" },
                (Some(_), Some(hit)) => {
                    let route = index.route(*hit);
                    BatchItem::Found {
                        msisdn,
                        operator: route.name.to_string(),
                        routing_number: route.routing_number.to_string(),
                        ported: route.ported,
                    }
                }
            })
            .collect();
        (replica.seq(), results)
    };
    axum::Json(BatchAnswer { seq, stale: replica.is_stale(), results }).into_response()
}
