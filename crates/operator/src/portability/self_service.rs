//! The terminal-facing endpoints of F1: where a subscriber's handset starts a port.
//!
//! - `POST /v1/self-service/port-in` (recipient): the terminal verification request
//!   `{msisdn, nonce, expiry, proof}`, relayed to the clearinghouse; answers 201 with the new
//!   porting order, or the clearinghouse's error as it gave it.
//! - `POST /v1/self-service/port-out-authorisations` (donor's customer-service channel): the
//!   terminal hands its donor the nonce `{msisdn, nonce, recipient, expiry}`; the donor computes
//!   the expected proof from the subscriber's port key and deposits it. The proof is never
//!   returned: only the clearinghouse sees it, so this endpoint gives a caller nothing to forge.
//!
//! Both derive their idempotency key from the request (the nonce is single-use), so a terminal
//! that retries after a lost answer gets the same order or deposit, not a second one.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use clearinghouse_api::model::{ApiError, DepositAccepted, DepositRequest, Order, PortingRequest};
use numport_core::openapi::UnixMillis;
use numport_core::proof::Nonce;
use numport_core::{Millis, Msisdn, OperatorName};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::HttpError;
use crate::store::{EventKind, NewPortEvent, SubscriberStatus};
use crate::{Node, OperatorError};

/// A terminal's authorisation of a port-out, given to its donor (F1 step 2, donor side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortOutAuthorisation {
    pub msisdn: Msisdn,
    /// The terminal's nonce, 16 bytes in hex: the one it sends with its port-in request.
    #[schema(pattern = "^[0-9a-fA-F]{32}$", example = "00112233445566778899aabbccddeeff")]
    pub nonce: String,
    /// The operator the subscriber ports to; bound into the proof.
    pub recipient: OperatorName,
    /// End of the proof's validity (Unix ms); bound into the proof.
    #[schema(value_type = UnixMillis)]
    pub expiry: Millis,
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::bad_request("invalid_request", e.to_string()))
}

fn relay(node: &Node, call: &str, e: clearinghouse_api::ClientError) -> HttpError {
    node.inner.metrics.clearinghouse_failure(call);
    OperatorError::from(e).into()
}

/// Request a port-in (recipient)
///
/// The terminal verification request, relayed to the clearinghouse under an idempotency key
/// derived from it (a retry gets the same order).
#[utoipa::path(post, path = "/v1/self-service/port-in", tag = "portability", operation_id = "portIn",
    request_body = PortingRequest,
    responses(
        (status = 201, description = "The porting order the clearinghouse opened.", body = Order),
        (status = 400, description = "Not a porting request. Codes: `invalid_request`, `invalid_nonce`.", body = ApiError),
        (status = 502, description = "The clearinghouse could not be reached. Code: `clearinghouse_unreachable`.", body = ApiError),
        (status = 500, description = "Internal error. Code: `internal`.", body = ApiError),
        (status = "default", description = "An error the clearinghouse answered, relayed with its status and body.", body = ApiError),
    ))]
pub(crate) async fn port_in(State(node): State<Node>, body: Bytes) -> Result<(StatusCode, Json<Order>), HttpError> {
    let req: PortingRequest = parse_json(&body)?;
    // A well-formed nonce also keeps the idempotency key within the clearinghouse's 128 chars.
    let nonce = Nonce::from_hex(&req.nonce).map_err(|e| HttpError::bad_request("invalid_nonce", e.to_string()))?;
    let idem = format!("{}-port-in-{}-{}", node.name(), req.msisdn, nonce.to_hex());
    let order = node.inner.client.request_port(&req, &idem).await.map_err(|e| relay(&node, "request_port", e))?;
    tracing::info!(node = %node.name(), order_id = order.id, msisdn = %req.msisdn, state = %order.state, "port-in requested");
    node.inner
        .store
        .record_event(&NewPortEvent {
            message_id: None,
            kind: EventKind::PortInRequested,
            order_id: Some(order.id),
            msisdn: req.msisdn.clone(),
            counterpart: order.donor.clone(),
            detail: json!({ "state": order.state, "reason": order.reason }),
            at: node.now(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(order)))
}

/// Authorise a port-out (donor)
///
/// The terminal hands its donor the nonce of its port-in request; the node computes the
/// expected proof from the subscriber's port key and deposits it at the clearinghouse. The
/// proof is never returned.
#[utoipa::path(post, path = "/v1/self-service/port-out-authorisations", tag = "portability",
    operation_id = "authorisePortOut",
    request_body = PortOutAuthorisation,
    responses(
        (status = 200, description = "The proof is deposited.", body = DepositAccepted),
        (status = 400, description = "Not an authorisation. Codes: `invalid_request`, `invalid_nonce`.", body = ApiError),
        (status = 404, description = "The number is not an active subscriber of this node. Code: `unknown_subscriber`.",
            body = ApiError),
        (status = 409, description = "The subscriber has no port key. Code: `no_port_key`.", body = ApiError),
        (status = 502, description = "The clearinghouse could not be reached. Code: `clearinghouse_unreachable`.", body = ApiError),
        (status = 500, description = "Internal error. Code: `internal`.", body = ApiError),
        (status = "default", description = "An error the clearinghouse answered, relayed with its status and body.", body = ApiError),
    ))]
pub(crate) async fn port_out_authorisation(
    State(node): State<Node>,
    body: Bytes,
) -> Result<Json<DepositAccepted>, HttpError> {
    let req: PortOutAuthorisation = parse_json(&body)?;
    let nonce = Nonce::from_hex(&req.nonce).map_err(|e| HttpError::bad_request("invalid_nonce", e.to_string()))?;
    let sub = node.inner.store.subscriber(&req.msisdn).await?;
    let sub = match sub {
        Some(s) if s.status == SubscriberStatus::Active => s,
        _ => {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                "unknown_subscriber",
                format!("{} is not a subscriber of {}", req.msisdn, node.name()),
            ));
        }
    };
    let Some(key) = sub.port_key else {
        return Err(HttpError::new(
            StatusCode::CONFLICT,
            "no_port_key",
            format!("{} has no port key provisioned", req.msisdn),
        ));
    };
    let proof = key.prove(&nonce, &req.msisdn, &req.recipient, req.expiry);
    let deposit = DepositRequest { msisdn: req.msisdn.clone(), nonce: nonce.to_hex(), proof: proof.to_hex() };
    // At most 32 + 6 + 15 + 1 + 32 characters: within the clearinghouse's 128. Reusing the
    // nonce for another recipient or expiry changes the body, which the clearinghouse refuses
    // under the same key, as it should.
    let idem = format!("{}-auth-{}-{}", node.name(), req.msisdn, deposit.nonce);
    let accepted = node.inner.client.deposit(&deposit, &idem).await.map_err(|e| relay(&node, "deposit", e))?;
    tracing::info!(node = %node.name(), msisdn = %req.msisdn, recipient = %req.recipient, "port-out authorised, proof deposited");
    node.inner
        .store
        .record_event(&NewPortEvent {
            message_id: None,
            kind: EventKind::Deposit,
            order_id: accepted.order_id,
            msisdn: req.msisdn.clone(),
            counterpart: Some(req.recipient.clone()),
            detail: json!({ "matched_order": accepted.order_id, "expiry": req.expiry, "channel": "self_service" }),
            at: node.now(),
        })
        .await?;
    Ok(Json(accepted))
}
