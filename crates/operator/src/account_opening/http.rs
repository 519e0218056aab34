//! The self-service account API and page. No login: a person opens an account with the card
//! in hand, and the account's random id is what lets them follow it.
//!
//! - `POST /v1/accounts`: identity and ICCID in, 202 with the account's id once it is
//!   committed (number and card assigned); with an `Idempotency-Key`, a repeat answers the
//!   same account.
//! - `GET /v1/accounts/{id}`: its progress, until `sim_written` (or `failed`, with the reason).
//! - `GET /self-service`: the page ([`PAGE`]) that does both from a browser.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use clearinghouse_api::model::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AccountRequest, AccountState, AccountView, Refusal};
use crate::Node;
use crate::error::HttpError;

/// Longest idempotency key.
const MAX_KEY: usize = 128;

/// The self-service page: plain HTML and a little script, no outside assets.
pub const PAGE: &str = include_str!("page.html");

pub(crate) fn routes() -> OpenApiRouter<Node> {
    OpenApiRouter::new().routes(routes!(open_account)).routes(routes!(get_account)).routes(routes!(page))
}

/// The self-service page
///
/// Plain HTML and a little script, no outside assets: the form that opens an account and the
/// account's progress until its card is written.
#[utoipa::path(get, path = "/self-service", tag = "accounts", operation_id = "getSelfServicePage",
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)))]
pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}

/// The answer of `POST /v1/accounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountOpened {
    /// The account's id: `GET /v1/accounts/{id}` follows it.
    pub id: String,
    pub state: AccountState,
    pub msisdn: String,
    /// An earlier copy of this request (same Idempotency-Key and body) opened it.
    pub repeat: bool,
}

fn refusal(e: Refusal) -> HttpError {
    let message = e.to_string();
    match e {
        Refusal::Identity(_) => HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_identity", message),
        Refusal::CardUnavailable => HttpError::new(StatusCode::CONFLICT, "card_unavailable", message),
        Refusal::KeyReused => HttpError::new(StatusCode::CONFLICT, "idempotency_key_reused", message),
        Refusal::PoolExhausted => HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "numbers_exhausted", message),
        Refusal::Unavailable(_) => HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message),
        Refusal::Node(e) => e.into(),
    }
}

/// Open an account
///
/// A person with one of the operator's blank cards gives their identity and the card's ICCID.
/// The answer comes once the account is committed: a number from the node's pool and the card
/// assigned, the subscriber created, its provisioning and the writing of the card over the air
/// queued. Every invalid field is reported at once (`invalid_identity`, each as
/// `field: problem`).
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", operation_id = "openAccount",
    request_body = AccountRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a repeat of the request answer the same account instead of opening another (at most 128 characters).")),
    responses(
        (status = 202, description = "Account opened; its card is being written.", body = AccountOpened),
        (status = 400, description = "Not an account request. Codes: `invalid_request`, `invalid_idempotency_key`.", body = ApiError),
        (status = 409, description = "Codes: `card_unavailable` (no blank card with this ICCID), `idempotency_key_reused` (the key came with another body).", body = ApiError),
        (status = 422, description = "A field is invalid. Code: `invalid_identity`.", body = ApiError),
        (status = 503, description = "Codes: `numbers_exhausted`, `unavailable` (no number pool or key-encryption key configured).", body = ApiError),
        (status = 500, description = "Internal error. Code: `internal`.", body = ApiError),
    ))]
pub(crate) async fn open_account(
    State(node): State<Node>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<AccountOpened>), HttpError> {
    let request: AccountRequest =
        serde_json::from_slice(&body).map_err(|e| HttpError::bad_request("invalid_request", e.to_string()))?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(k.to_owned())
            }
            _ => return Err(HttpError::bad_request("invalid_idempotency_key", "1 to 128 visible ASCII characters")),
        },
    };
    let opened = super::open(&node, &request, key).await.map_err(refusal)?;
    let view = super::progress(&node, &opened.id)
        .await?
        .ok_or_else(|| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error"))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AccountOpened { id: opened.id, state: view.state, msisdn: view.msisdn, repeat: opened.repeat }),
    ))
}

/// An account's progress
///
/// `allocated` (number and card assigned), `provisioned` (active on the network elements),
/// `sim_written` (and the card confirmed its new contents with a proof of receipt), or
/// `failed` with the reason.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts", operation_id = "getAccount",
    params(("id" = String, Path, description = "The account's id, as `POST /v1/accounts` gave it.")),
    responses(
        (status = 200, description = "The account.", body = AccountView),
        (status = 404, description = "No such account. Code: `not_found`.", body = ApiError),
    ))]
pub(crate) async fn get_account(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, HttpError> {
    let view = if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        super::progress(&node, &id).await?
    } else {
        None
    };
    view.map(Json).ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such account"))
}
