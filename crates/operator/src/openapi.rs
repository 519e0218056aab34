//! The operator node's OpenAPI document, generated from the code and served at
//! `GET /openapi.json`.
//!
//! The portability adapter's operations come from the `#[utoipa::path]` attributes on its
//! handlers and the lookups' from the replica's ([`replica::http::api`]); each attribute also
//! registers its handler's route (`utoipa_axum::routes!`). This module adds the document's
//! overview and the routes served by other crates: `/healthz` and `/metrics` (`telemetry`)
//! and the document itself.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::provisioner::http::BearerScheme;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "numport operator node API",
        version = "1.0.0",
        description = "A mobile operator's node: the portability adapter's endpoints (the clearinghouse's \
                       signed callbacks, and the self-service endpoints where a subscriber's handset starts a \
                       port, F1), number lookups from the node's replica of the routing data (F2), provisioning \
                       (F6), and self-service account opening with its OTA server (F7). The node refuses \
                       request bodies over 64 KiB (413)."
    ),
    servers((url = "http://127.0.0.1:8500", description = "Default listen address of an operator node.")),
    tags(
        (name = "portability", description = "The node's side of a porting order (F1)."),
        (name = "lookup", description = "Who serves a number, from the node's replica (F2)."),
        (name = "provisioning", description = "Provisioning orders for the network elements, with overload protection (F6)."),
        (name = "accounts", description = "Self-service account opening: a person with a blank card opens an account and the card is written over the air (F7)."),
        (name = "ota", description = "The OTA server's jobs: cards written with secured packets over SMS, their proofs of receipt (F7)."),
        (name = "meta", description = "Operational endpoints."),
    ),
    paths(openapi_json, healthz, metrics),
    modifiers(&BearerScheme)
)]
pub(crate) struct NodeDoc;

/// The body of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok`, or `stale` while the replica has lost the clearinghouse.
    #[schema(example = "ok")]
    pub status: &'static str,
    pub operator: numport_core::OperatorName,
    /// Whether the callback URL has been registered at the clearinghouse since start.
    pub callback_registered: bool,
    /// Messages recorded but not yet processed.
    pub unprocessed_messages: i64,
    pub npdb: replica::Status,
}

/// This OpenAPI document
#[utoipa::path(get, path = "/openapi.json", tag = "meta", operation_id = "getOpenApi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", content_type = "application/json",
        body = inline(Object))))]
#[allow(dead_code)] // served by `Node::router`; declared here for its operation only
fn openapi_json() {}

/// Health check
///
/// Always 200 while the node serves; `status` says whether its replica is current.
#[utoipa::path(get, path = "/healthz", tag = "meta", operation_id = "getHealth", responses(
    (status = 200, description = "The node's state.", body = Health),
))]
#[allow(dead_code)] // served by `telemetry::routes`; declared here for its operation only
fn healthz() {}

/// Prometheus metrics
///
/// Counters, gauges and histograms in the Prometheus text exposition format (callbacks,
/// messages processed, calls to the clearinghouse, lookups, the SMS center).
#[utoipa::path(get, path = "/metrics", tag = "meta", operation_id = "getMetrics", responses(
    (status = 200, description = "Metrics.", content_type = "text/plain", body = String),
))]
#[allow(dead_code)] // served by `telemetry::routes`; declared here for its operation only
fn metrics() {}
