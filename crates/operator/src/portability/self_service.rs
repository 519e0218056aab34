//! The terminal-facing endpoints of F1 at the recipient: where a subscriber's handset starts a
//! port and follows it.
//!
//! - `POST /v1/self-service/port-in`: the terminal verification request
//!   `{msisdn, nonce, expiry, proof}`, relayed to the clearinghouse; answers 201 with the new
//!   porting order, or the clearinghouse's error as it gave it.
//! - `GET /v1/self-service/port-in/{msisdn}/{nonce}`: how that order stands.
//!
//! Neither needs a login: the request is authenticated by its proof, which only the SIM key
//! and the PIN make, and which the clearinghouse verifies against the donor's deposit before
//! anything happens to the number; the status is given to whoever knows the nonce, that is,
//! to the terminal that made it. No answer depends on whether the number is a subscriber of
//! its donor: opening the order involves only the clearinghouse's routing record, and the
//! status reports every failure to verify as `proof_mismatch` ([`handset_view`]).
//!
//! The donor's side, the port-out authorisation, goes from the handset by SMS to the donor's
//! service number over the air interface ([`super::authorisation`]).
//!
//! The port-in request derives its idempotency key from the request (the nonce is single-use),
//! so a terminal that retries after a lost answer gets the same order, not a second one.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use clearinghouse_api::model::{ApiError, Order, PortingRequest};
use numport_core::porting::{OrderState, Reason};
use numport_core::proof::Nonce;
use numport_core::{Msisdn, OperatorName};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::error::HttpError;
use crate::store::{EventKind, NewPortEvent};
use crate::{Node, OperatorError};

/// How a handset's port-in stands, as the handset may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PortInStatus {
    pub order_id: i64,
    pub msisdn: Msisdn,
    pub donor: Option<OperatorName>,
    pub state: OrderState,
    /// Why the order ended; `null` while it is open and once it completed.
    pub reason: Option<Reason>,
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::bad_request("invalid_request", e.to_string()))
}

fn relay(node: &Node, call: &str, e: clearinghouse_api::ClientError) -> HttpError {
    node.inner.metrics.clearinghouse_failure(call);
    OperatorError::from(e).into()
}

fn nonce_of(hex: &str) -> Result<Nonce, HttpError> {
    Nonce::from_hex(hex).map_err(|e| HttpError::bad_request("invalid_nonce", e.to_string()))
}

/// Request a port-in (recipient)
///
/// The terminal verification request, relayed to the clearinghouse under an idempotency key
/// derived from it (a retry gets the same order). It is authenticated by its proof, which only
/// the subscriber's SIM key and PIN can make: the clearinghouse verifies it against the
/// donor's deposit before the number moves.
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
    let nonce = nonce_of(&req.nonce)?;
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
            detail: json!({ "state": order.state, "reason": order.reason, "nonce": nonce.to_hex() }),
            at: node.now(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(order)))
}

/// Follow a port-in (recipient)
///
/// The order opened by the port-in request with this number and nonce, as the clearinghouse
/// has it now. Knowing the nonce is the credential: the terminal made it.
#[utoipa::path(get, path = "/v1/self-service/port-in/{msisdn}/{nonce}", tag = "portability",
    operation_id = "portInStatus",
    params(
        ("msisdn" = String, Path, description = "The number of the port-in request."),
        ("nonce" = String, Path, description = "Its nonce, 16 bytes in hex."),
    ),
    responses(
        (status = 200, description = "How the order stands.", body = PortInStatus),
        (status = 400, description = "Not a number or nonce. Codes: `invalid_request`, `invalid_nonce`.", body = ApiError),
        (status = 404, description = "No port-in request with this number and nonce. Code: `unknown_request`.", body = ApiError),
        (status = 502, description = "The clearinghouse could not be reached. Code: `clearinghouse_unreachable`.", body = ApiError),
        (status = 500, description = "Internal error. Code: `internal`.", body = ApiError),
    ))]
pub(crate) async fn port_in_status(
    State(node): State<Node>,
    Path((msisdn, nonce)): Path<(String, String)>,
) -> Result<Json<PortInStatus>, HttpError> {
    let msisdn: Msisdn = msisdn.parse().map_err(|e| HttpError::bad_request("invalid_request", format!("{e}")))?;
    let nonce = nonce_of(&nonce)?.to_hex();
    let events = node.inner.store.port_events(&msisdn).await?;
    let order_id = events
        .iter()
        .rev()
        .find(|e| e.kind == EventKind::PortInRequested && e.detail["nonce"].as_str() == Some(&nonce))
        .and_then(|e| e.order_id)
        .ok_or_else(|| {
            HttpError::new(StatusCode::NOT_FOUND, "unknown_request", "no port-in request with this number and nonce")
        })?;
    let order = node.inner.client.order(order_id).await.map_err(|e| relay(&node, "order", e))?;
    Ok(Json(handset_view(&order)))
}

/// The order as the handset sees it. A failure to verify the proof, whether the donor's
/// deposit differed or never came (the donor has no such subscriber, or declined), is reported
/// as `proof_mismatch`, so that an anonymous caller's requests tell it nothing about which
/// numbers are the donor's subscribers. The other reasons concern the request itself or come
/// after a verified proof.
pub fn handset_view(order: &Order) -> PortInStatus {
    let told = order.reason.filter(|r| {
        matches!(
            r,
            Reason::UnknownNumber
                | Reason::AlreadyServed
                | Reason::ProofExpired
                | Reason::NonceReused
                | Reason::TooManyAttempts
                | Reason::PortInProgress
                | Reason::PortedTooRecently
                | Reason::InsufficientFunds
                | Reason::DecisionTimeout
                | Reason::RefusedByRecipient
                | Reason::CancelledByRecipient
                | Reason::CancelledBySubscriber
        )
    });
    let (state, reason) = match (order.reason, told) {
        (Some(_), None) => (OrderState::Rejected, Some(Reason::ProofMismatch)),
        _ => (order.state, told),
    };
    PortInStatus { order_id: order.id, msisdn: order.msisdn.clone(), donor: order.donor.clone(), state, reason }
}
