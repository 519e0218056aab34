//! The OCS's HTTP API (JSON), for the operator's business side: accounts and recharges, the
//! tariffs, and the four seed methods. `numport ocs` serves it beside `/metrics`; a node that
//! embeds the OCS can merge [`router`] into its own.
//!
//! - `POST /v1/ocs/accounts` `{msisdn, credit_limit}`; `GET /v1/ocs/accounts/{msisdn}`: the balance.
//! - `POST /v1/ocs/accounts/{msisdn}/recharges` `{amount, expires_at?}`, with an
//!   `Idempotency-Key` header (required): a repeat recharges nothing.
//! - `PUT /v1/ocs/tariffs`: the tariff rules, replaced as a whole.
//! - `GET /v1/ocs/online-list`, `PUT|DELETE /v1/ocs/online-list/{digits}` `{kind}`,
//!   `GET /v1/ocs/charging-decision/{called}` (CN102547642B).
//! - `PUT /v1/ocs/capacity` `{total}`, `POST /v1/ocs/capacity/loads` `{msisdn, weight}`,
//!   `DELETE /v1/ocs/capacity/loads/{msisdn}` (CN101425910A).
//! - `PUT /v1/ocs/charging-modes/{subscriber}/{service_id}`, `POST /v1/ocs/data-records`
//!   (CN102083042B).
//! - `POST /v1/ocs/partial-cdrs` (CN102083044A).
//!
//! Amounts are integer minor units (`"amount": 1250` is 12.50). Every route needs `Authorization: Bearer <token>`, the token whose SHA-256 (hex) the router
//! is given, compared in constant time; with none given every request is refused. Errors have
//! the shape of every numport server's (`telemetry::error_response`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use numport_core::{Millis, Money};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::balance::BalanceError;
use crate::data_charging::{ChargingMode, DataUsageRecord};
use crate::online_list::{EntryKind, ListEntry};
use crate::partial_cdr::PartialCdr;
use crate::rating::TariffRule;
use crate::{Ocs, OcsError};

/// Longest idempotency key.
const MAX_KEY: usize = 128;

#[derive(Clone)]
struct Api {
    ocs: Ocs,
    token_sha256: Arc<[u8]>,
}

/// The API's routes on `ocs`, for the token whose SHA-256 is `token_sha256` (hex).
pub fn router(ocs: Ocs, token_sha256: &str) -> Router {
    let token_sha256 = hex::decode(token_sha256.trim()).unwrap_or_default().into();
    Router::new()
        .route("/v1/ocs/accounts", post(create_account))
        .route("/v1/ocs/accounts/{msisdn}", get(balance))
        .route("/v1/ocs/accounts/{msisdn}/recharges", post(recharge))
        .route("/v1/ocs/tariffs", put(set_tariffs))
        .route("/v1/ocs/online-list", get(online_list))
        .route("/v1/ocs/online-list/{digits}", put(put_online_entry).delete(remove_online_entry))
        .route("/v1/ocs/charging-decision/{called}", get(charging_decision))
        .route("/v1/ocs/capacity", put(set_capacity))
        .route("/v1/ocs/capacity/loads", post(load_subscriber))
        .route("/v1/ocs/capacity/loads/{msisdn}", axum::routing::delete(unload_subscriber))
        .route("/v1/ocs/charging-modes/{subscriber}/{service_id}", put(set_charging_mode))
        .route("/v1/ocs/data-records", post(rate_data_record))
        .route("/v1/ocs/partial-cdrs", post(partial_cdr))
        .with_state(Api { ocs, token_sha256 })
}

/// An error answer.
pub struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        telemetry::error_response(self.0, self.1, self.2)
    }
}

impl From<OcsError> for ApiError {
    fn from(e: OcsError) -> ApiError {
        let (status, code) = match &e {
            OcsError::UnknownSubscriber(_) => (StatusCode::NOT_FOUND, "unknown_subscriber"),
            OcsError::AccountExists(_) => (StatusCode::CONFLICT, "account_exists"),
            OcsError::Balance(BalanceError::InsufficientFunds { .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds")
            }
            OcsError::Store(_) | OcsError::Balance(BalanceError::Invariant(_)) => {
                tracing::error!(error = %e, "OCS API");
                return ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into());
            }
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        };
        ApiError(status, code, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn authorise(api: &Api, headers: &HeaderMap) -> ApiResult<()> {
    let unauthorised = |code, m: &str| ApiError(StatusCode::UNAUTHORIZED, code, m.into());
    if api.token_sha256.len() != 32 {
        return Err(unauthorised("no_token_configured", "the OCS API has no token configured"));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorised("missing_token", "Authorization: Bearer <token> is required"))?;
    if bool::from(Sha256::digest(token.as_bytes()).as_slice().ct_eq(&api.token_sha256)) {
        Ok(())
    } else {
        Err(unauthorised("bad_token", "the token is not the OCS API's"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    msisdn: String,
    #[serde(default)]
    credit_limit: Money,
}

async fn create_account(
    State(api): State<Api>,
    headers: HeaderMap,
    Json(body): Json<NewAccount>,
) -> ApiResult<Response> {
    authorise(&api, &headers)?;
    api.ocs.create_account(&body.msisdn, body.credit_limit).await?;
    Ok((StatusCode::CREATED, Json(api.ocs.balance(&body.msisdn).await?)).into_response())
}

async fn balance(State(api): State<Api>, headers: HeaderMap, Path(msisdn): Path<String>) -> ApiResult<Response> {
    authorise(&api, &headers)?;
    Ok(Json(api.ocs.balance(&msisdn).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recharge {
    amount: Money,
    expires_at: Option<Millis>,
}

async fn recharge(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(msisdn): Path<String>,
    Json(body): Json<Recharge>,
) -> ApiResult<Response> {
    authorise(&api, &headers)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY)
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "idempotency_key",
                "an Idempotency-Key of 1 to 128 characters is required".into(),
            )
        })?;
    Ok(Json(api.ocs.recharge(&msisdn, body.amount, body.expires_at, &format!("api:{key}")).await?).into_response())
}

async fn set_tariffs(
    State(api): State<Api>,
    headers: HeaderMap,
    Json(rules): Json<Vec<TariffRule>>,
) -> ApiResult<StatusCode> {
    authorise(&api, &headers)?;
    api.ocs.set_tariffs(rules).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn online_list(State(api): State<Api>, headers: HeaderMap) -> ApiResult<Response> {
    authorise(&api, &headers)?;
    Ok(Json(api.ocs.online_list()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kind {
    kind: EntryKind,
}

async fn put_online_entry(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(digits): Path<String>,
    Json(body): Json<Kind>,
) -> ApiResult<StatusCode> {
    authorise(&api, &headers)?;
    api.ocs.put_online_entry(ListEntry { digits, kind: body.kind }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_online_entry(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(digits): Path<String>,
) -> ApiResult<StatusCode> {
    authorise(&api, &headers)?;
    match api.ocs.remove_online_entry(&digits).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError(StatusCode::NOT_FOUND, "not_listed", format!("{digits} is not on the list"))),
    }
}

async fn charging_decision(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(called): Path<String>,
) -> ApiResult<Response> {
    authorise(&api, &headers)?;
    Ok(Json(api.ocs.charging_decision(&called)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Capacity {
    total: u64,
}

async fn set_capacity(State(api): State<Api>, headers: HeaderMap, Json(body): Json<Capacity>) -> ApiResult<StatusCode> {
    authorise(&api, &headers)?;
    api.ocs.set_capacity(body.total).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Load {
    msisdn: String,
    weight: u64,
}

async fn load_subscriber(State(api): State<Api>, headers: HeaderMap, Json(body): Json<Load>) -> ApiResult<Response> {
    authorise(&api, &headers)?;
    Ok(Json(api.ocs.load_subscriber(&body.msisdn, body.weight).await?).into_response())
}

async fn unload_subscriber(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(msisdn): Path<String>,
) -> ApiResult<StatusCode> {
    authorise(&api, &headers)?;
    match api.ocs.unload_subscriber(&msisdn).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError(StatusCode::NOT_FOUND, "not_loaded", format!("{msisdn} is not loaded"))),
    }
}

async fn set_charging_mode(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((subscriber, service_id)): Path<(String, u32)>,
    Json(mode): Json<ChargingMode>,
) -> ApiResult<StatusCode> {
    authorise(&api, &headers)?;
    api.ocs.set_charging_mode(&subscriber, service_id, mode).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rate_data_record(
    State(api): State<Api>,
    headers: HeaderMap,
    Json(record): Json<DataUsageRecord>,
) -> ApiResult<Response> {
    authorise(&api, &headers)?;
    Ok(Json(api.ocs.rate_data_record(&record).await?).into_response())
}

async fn partial_cdr(State(api): State<Api>, headers: HeaderMap, Json(p): Json<PartialCdr>) -> ApiResult<Response> {
    authorise(&api, &headers)?;
    Ok(Json(api.ocs.partial_cdr(&p).await?).into_response())
}
