//! Lookups over HTTP: `GET /v1/lookup/{number}` and the batch form `POST /v1/lookup`.
//!
//! Every answer carries the checkpoint it was read at (`seq`) and whether the replica is
//! `stale`, so a caller can tell "B serves it" from "B served it when we last heard".

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use numport_core::Msisdn;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Replica;

/// Most numbers one batch request may ask for.
pub const MAX_BATCH: usize = 10_000;

/// The lookup routes, with their state applied (merge into any server's router).
pub fn routes(replica: Replica) -> Router {
    Router::new()
        .route("/v1/lookup/{msisdn}", get(lookup_one))
        .route("/v1/lookup", post(lookup_batch))
        .with_state(replica)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": code, "message": message.into() }))).into_response()
}

fn not_ready() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the replica has not loaded any routing data yet")
}

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
        Some(a) => {
            let mut body = serde_json::to_value(&a).unwrap_or_default();
            body["seq"] = seq.into();
            body["stale"] = replica.is_stale().into();
            axum::Json(body).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "unknown_number", format!("{msisdn} is in no known number range")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    numbers: Vec<String>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum BatchItem {
    Found { msisdn: String, operator: String, routing_number: String, ported: bool },
    Failed { msisdn: String, error: &'static str },
}

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
    axum::Json(json!({ "seq": seq, "stale": replica.is_stale(), "results": results })).into_response()
}
