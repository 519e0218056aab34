//! The `/v1` HTTP API.
//!
//! Every state-changing request carries an `Idempotency-Key`; its answer is stored in the
//! transaction that made the change ([`run_idempotent`]), so a retry after a lost response gets
//! the same answer and acts once. Handlers parse bodies themselves so that malformed JSON,
//! wrong fields and oversized bodies all get the JSON error shape, never framework text.
//!
//! Each handler's `#[utoipa::path]` attribute is both its entry in the OpenAPI document
//! ([`crate::openapi`]) and, through `utoipa_axum::routes!`, its route.

use std::time::Instant;

use crate::store::{idempotency, operators, orders, outbox};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clearinghouse_api::client::IDEMPOTENCY_KEY_HEADER;
use clearinghouse_api::model::*;
use numport_core::Msisdn;
use numport_db::Connection;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::openapi::{
    ApiDoc, BadRequest, BodyTooLarge, Forbidden, Health, IdempotencyKey, Internal, InvalidQuery, MsisdnPath, NotFound,
    OrderId, Unauthorized,
};
use crate::porting::{order_for, to_api};
use crate::{Clearinghouse, Counts};

/// The API's routes with their OpenAPI operations, before state and layers.
fn api() -> OpenApiRouter<Clearinghouse> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(request_port, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(order_audit))
        .routes(routes!(credit_information))
        .routes(routes!(decide))
        .routes(routes!(decline))
        .routes(routes!(cancel))
        .routes(routes!(deposit))
        .routes(routes!(number_status))
        .routes(routes!(return_number))
        .routes(routes!(account))
        .routes(routes!(violations))
        .merge(crate::feed::routes())
        .routes(routes!(inbox))
        .routes(routes!(ack))
        .routes(routes!(set_callback, callback_status))
}

/// The OpenAPI document of the clearinghouse's API, as `GET /openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().split_for_parts().1;
    crate::openapi::rate_limited(&mut doc);
    doc
}

pub fn router(ch: Clearinghouse) -> Router {
    let health_ch = ch.clone();
    let health: telemetry::HealthCheck = std::sync::Arc::new(move || {
        let ok = !health_ch.db.is_closed();
        let body = Health { role: "clearinghouse", ok, now_ms: health_ch.now() };
        (ok, serde_json::to_value(body).unwrap_or_default())
    });
    let (api, mut doc) = api().split_for_parts();
    crate::openapi::rate_limited(&mut doc);
    let doc = Bytes::from(doc.to_pretty_json().unwrap_or_default());
    let routes = api
        .route(
            "/openapi.json",
            get(move || std::future::ready(([(header::CONTENT_TYPE, "application/json")], doc.clone()))),
        )
        .merge(match ch.config.metrics_listen {
            None => telemetry::routes(ch.metrics.registry.clone(), health),
            Some(_) => telemetry::health_routes(health),
        })
        .layer(DefaultBodyLimit::max(ch.config.max_body_bytes));
    telemetry::json_errors(routes).layer(middleware::from_fn_with_state(ch.clone(), observe)).with_state(ch)
}

/// Count and time every request by route and status.
async fn observe(State(ch): State<Clearinghouse>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let started = Instant::now();
    let resp = next.run(req).await;
    ch.metrics.http_request(method.as_str(), &route, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

fn body(b: std::result::Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::TooLarge(limit)
        } else {
            Error::bad_request("unreadable_body", e.body_text())
        }
    })
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::invalid("invalid_request", e.to_string()),
        _ => Error::bad_request("malformed_json", e.to_string()),
    })
}

fn order_id(raw: &str) -> Result<i64> {
    raw.parse().map_err(|_| Error::NotFound("porting order"))
}

fn msisdn(raw: &str) -> Result<Msisdn> {
    raw.parse().map_err(|e: numport_core::msisdn::NumberError| Error::invalid("invalid_msisdn", e.to_string()))
}

/// A state-changing operation, run by [`run_idempotent`] in one transaction.
#[derive(Clone)]
enum Op {
    RequestPort(PortingRequest),
    Deposit(DepositRequest),
    CreditInformation(i64, CreditInformationRequest),
    Decide(i64, DecisionRequest),
    Decline(i64, DeclineRequest),
    Cancel(i64, CancelRequest),
    ReturnNumber(Msisdn),
}

fn to_value(v: impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Store(numport_db::StoreError::Corrupt(e.to_string())))
}

impl Clearinghouse {
    async fn execute(
        &self,
        conn: &mut Connection,
        caller: &Caller,
        op: Op,
        counts: &mut Counts,
    ) -> Result<(StatusCode, Value)> {
        Ok(match op {
            Op::RequestPort(r) => (StatusCode::CREATED, to_value(self.request_port(conn, caller, &r, counts).await?)?),
            Op::Deposit(r) => (StatusCode::OK, to_value(self.deposit(conn, caller, &r, counts).await?)?),
            Op::CreditInformation(id, r) => {
                (StatusCode::OK, to_value(self.credit_information(conn, caller, id, &r, counts).await?)?)
            }
            Op::Decide(id, r) => (StatusCode::OK, to_value(self.decide(conn, caller, id, &r, counts).await?)?),
            Op::Decline(id, r) => (StatusCode::OK, to_value(self.decline(conn, caller, id, &r, counts).await?)?),
            Op::Cancel(id, r) => (StatusCode::OK, to_value(self.cancel(conn, caller, id, &r, counts).await?)?),
            Op::ReturnNumber(m) => (StatusCode::OK, to_value(self.return_number(conn, caller, &m).await?)?),
        })
    }
}

fn json_response(status: StatusCode, body: String, replay: bool) -> Response {
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if replay {
        resp.headers_mut().insert("idempotent-replay", HeaderValue::from_static("true"));
    }
    resp
}

fn idempotency_key(headers: &HeaderMap) -> Result<&str> {
    headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|k| (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Error::bad_request(
                "missing_idempotency_key",
                "an Idempotency-Key header of 1 to 128 printable characters is required",
            )
        })
}

/// What every state-changing request carries besides its caller: its idempotency key and its
/// body as received (what the key's answer is bound to). The key is checked first, then the
/// body read, each failing with its own error.
struct Idempotent {
    key: String,
    raw: Bytes,
}

impl Idempotent {
    fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        parse(&self.raw)
    }
}

impl FromRequest<Clearinghouse> for Idempotent {
    type Rejection = Error;

    async fn from_request(req: Request, ch: &Clearinghouse) -> Result<Idempotent> {
        let key = idempotency_key(req.headers())?.to_owned();
        let raw = body(Bytes::from_request(req, ch).await, ch.config.max_body_bytes)?;
        Ok(Idempotent { key, raw })
    }
}

/// A POST on one order, `/v1/porting-orders/{id}/<action>`, by body type.
trait OrderAction: DeserializeOwned {
    /// The last segment of the path.
    const ACTION: &'static str;
    /// What an empty body means, where it may be empty.
    fn empty() -> Option<Self> {
        None
    }
    fn op(self, order_id: i64) -> Op;
}

impl OrderAction for CreditInformationRequest {
    const ACTION: &'static str = "credit-information";
    fn op(self, order_id: i64) -> Op {
        Op::CreditInformation(order_id, self)
    }
}

impl OrderAction for DecisionRequest {
    const ACTION: &'static str = "decision";
    fn op(self, order_id: i64) -> Op {
        Op::Decide(order_id, self)
    }
}

impl OrderAction for DeclineRequest {
    const ACTION: &'static str = "decline";
    fn op(self, order_id: i64) -> Op {
        Op::Decline(order_id, self)
    }
}

impl OrderAction for CancelRequest {
    const ACTION: &'static str = "cancel";
    fn empty() -> Option<Self> {
        Some(CancelRequest { by_subscriber: false })
    }
    fn op(self, order_id: i64) -> Op {
        Op::Cancel(order_id, self)
    }
}

/// A POST on one order, checked in the order the API answers its errors: the caller, the
/// idempotency key, the body's size, the order id (404 if not a number), then the body.
struct OrderRequest<T> {
    caller: Caller,
    id: i64,
    request: Idempotent,
    body: T,
}

impl<T: OrderAction> FromRequest<Clearinghouse> for OrderRequest<T> {
    /// A response rather than an [`Error`], so that a path axum cannot decode is refused as
    /// axum's own `Path` extractor refuses it.
    type Rejection = Response;

    async fn from_request(req: Request, ch: &Clearinghouse) -> std::result::Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let caller = Caller::from_request_parts(&mut parts, ch).await.map_err(IntoResponse::into_response)?;
        let Path(raw_id) =
            Path::<String>::from_request_parts(&mut parts, ch).await.map_err(IntoResponse::into_response)?;
        let request = Idempotent::from_request(Request::from_parts(parts, body), ch)
            .await
            .map_err(IntoResponse::into_response)?;
        let id = order_id(&raw_id).map_err(IntoResponse::into_response)?;
        let body = match T::empty() {
            Some(default) if request.raw.is_empty() => default,
            _ => request.parse().map_err(IntoResponse::into_response)?,
        };
        Ok(OrderRequest { caller, id, request, body })
    }
}

impl<T: OrderAction> OrderRequest<T> {
    async fn run(self, ch: &Clearinghouse) -> Result<Response> {
        let route = format!("POST /v1/porting-orders/{}/{}", self.id, T::ACTION);
        let Idempotent { key, raw } = self.request;
        run_idempotent(ch, &self.caller, &key, &route, &raw, self.body.op(self.id)).await
    }
}

/// What a request under an idempotency key comes to: an answer stored before, or a new one.
enum Answered {
    Stored(idempotency::StoredResponse),
    New(StatusCode, String),
}

/// Run `op` once per (operator, idempotency key): the answer is stored with the change, and a
/// request that repeats a key gets the answer stored under it (if it is the same request).
async fn run_idempotent(
    ch: &Clearinghouse,
    caller: &Caller,
    key: &str,
    route: &str,
    raw: &[u8],
    op: Op,
) -> Result<Response> {
    let hash = request_hash(route, raw);
    // The transaction runs where the database drives it best (`Db::run`).
    let answered = {
        let (ch, caller, key, hash) = (ch.clone(), caller.clone(), key.to_owned(), hash.clone());
        ch.db.clone().run(async move { answer(&ch, &caller, &key, &hash, op).await }).await?
    };
    match answered {
        Answered::Stored(stored) => {
            if stored.request_hash != hash {
                return Err(Error::invalid(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                ));
            }
            let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            Ok(json_response(status, stored.body, true))
        }
        Answered::New(status, body) => {
            ch.wake_dispatcher();
            Ok(json_response(status, body, false))
        }
    }
}

/// What a stored answer is bound to: the route (with its path parameters) and the raw body.
fn request_hash(route: &str, raw: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(raw);
    hex::encode(hasher.finalize())
}

/// The outcome of one [`attempt`]: an answer, or the error the operation failed with (the
/// caller still looks for a stored answer, or runs it again).
enum Attempt {
    Answered(Answered),
    Failed(Error),
}

/// Run `op` until it is answered.
///
/// The request runs, then its answer is stored under the key in the same transaction, in one
/// row that is also the key's claim (`idempotency::record`). A copy of the request that
/// committed first makes that write fail (a copy still running makes it wait), and this one
/// rolls back all it did and gives the stored answer. A copy may also fail earlier, on what the
/// winner changed (the order's state, the number's open order): a failed request looks for a
/// stored answer before it reports its error or, after a conflict with some other transaction
/// (a deadlock victim), runs again from the start, up to three times in all.
async fn answer(ch: &Clearinghouse, caller: &Caller, key: &str, hash: &str, op: Op) -> Result<Answered> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let failure = match attempt(ch, caller, key, hash, op.clone()).await? {
            Attempt::Answered(answered) => return Ok(answered),
            Attempt::Failed(e) => e,
        };
        if let Some(stored) = stored_answer(ch, caller, key).await? {
            return Ok(Answered::Stored(stored));
        }
        if attempts < 3 && failure.is_transient() {
            tracing::debug!(error = %failure, attempt = attempts, "retrying after a conflict with a concurrent request");
            continue;
        }
        return Err(failure);
    }
}

/// One transaction: run `op` and store its answer under the key. An error of this function
/// itself (beginning or rolling back the transaction, reading the winner's answer) ends the
/// request at once.
async fn attempt(ch: &Clearinghouse, caller: &Caller, key: &str, hash: &str, op: Op) -> Result<Attempt> {
    let mut tx = ch.db.begin().await?;
    let mut counts = Counts::default();
    let (status, value) = match ch.execute(&mut tx, caller, op, &mut counts).await {
        Ok(answer) => answer,
        Err(e) => {
            tx.rollback().await?;
            return Ok(Attempt::Failed(e));
        }
    };
    let body = value.to_string();
    let recorded = idempotency::record(&mut tx, caller.operator_id, key, hash, status.as_u16(), &body, ch.now()).await;
    let committed = match recorded {
        Ok(()) => tx.commit().await,
        Err(e) => tx.rollback().await.and(Err(e)),
    };
    match committed {
        // Counted once committed: a request run again counts once.
        Ok(()) => {
            if counts.queued_settlements() {
                ch.wake_settler();
            }
            ch.metrics.add(counts);
            Ok(Attempt::Answered(Answered::New(status, body)))
        }
        Err(e) if idempotency::key_taken(&e) => {
            let stored = stored_answer(ch, caller, key).await?.ok_or(Error::NotFound("idempotency record"))?;
            Ok(Attempt::Answered(Answered::Stored(stored)))
        }
        Err(e) => Ok(Attempt::Failed(Error::from(e))),
    }
}

/// The answer stored under the caller's key, if a request under it committed.
async fn stored_answer(ch: &Clearinghouse, caller: &Caller, key: &str) -> Result<Option<idempotency::StoredResponse>> {
    // The writer, not a reader: on SQLite the winner may have committed into a group commit
    // still open, which this sees, and commits before we replay it.
    let mut conn = ch.db.acquire().await?;
    Ok(idempotency::get(&mut conn, caller.operator_id, key).await?)
}

/// Open a porting order (terminal verification request)
///
/// F1 step 1, by the **recipient**. Opens an order for the number and answers it (201) whatever
/// the outcome of the checks:
/// - `awaiting_deposit`: the donor has been asked (`deposit_requested`) to deposit the expected
///   proof;
/// - `awaiting_credit_info`: the donor's deposit was already there and matched; the donor has
///   been sent a `credit_query`;
/// - `rejected` with `reason` `proof_mismatch` (the deposit was there and differs),
///   `unknown_number`, `already_served`, `proof_expired`, `port_in_progress`,
///   `too_many_attempts` or `ported_too_recently`. A rejected order is recorded and audited.
///   `too_many_attempts` means the caller itself had too many failed verifications (of this
///   number, or in all) within the window; it is also recorded as the caller's violation.
///
/// When the caller holds the number's range the order is a `port_back`. Only malformed requests
/// and a reused nonce are refused outright.
#[utoipa::path(post, path = "/v1/porting-orders", tag = "porting", operation_id = "requestPort",
    params(IdempotencyKey),
    request_body = PortingRequest,
    responses(
        (status = 201, description = "The order, possibly already `rejected` with a reason.", body = Order,
            headers(("idempotent-replay" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key (nothing was done again); absent otherwise."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, description = "Refused. Codes: `nonce_reused`, `port_in_progress`.", body = ApiError,
            example = json!({"error": "nonce_reused", "message": "this nonce was already used for this number"})),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "Invalid request. Codes: `invalid_nonce`, `invalid_proof`, `invalid_request`, `idempotency_key_reused`.",
            body = ApiError, example = json!({"error": "invalid_proof", "message": "proof must be 64 hex digits"})),
        (status = 500, response = Internal),
    ))]
async fn request_port(State(ch): State<Clearinghouse>, caller: Caller, request: Idempotent) -> Result<Response> {
    let req: PortingRequest = request.parse()?;
    run_idempotent(&ch, &caller, &request.key, "POST /v1/porting-orders", &request.raw, Op::RequestPort(req)).await
}

/// Deposit the expected proof (donor)
///
/// F1 step 2, by the operator **serving the number** (the donor). If an order waits for this
/// number and nonce, it is verified at once (→ `awaiting_credit_info`, or `rejected` /
/// `proof_mismatch`) and its id is returned; otherwise the deposit waits for the recipient's
/// request. Depositing the same proof again is harmless.
#[utoipa::path(post, path = "/v1/deposits", tag = "porting", operation_id = "depositProof",
    params(IdempotencyKey),
    request_body = DepositRequest,
    responses(
        (status = 200, description = "Deposit recorded.", body = DepositAccepted,
            headers(("idempotent-replay" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key (nothing was done again); absent otherwise."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The caller does not serve the number. Code: `forbidden`.", body = ApiError),
        (status = 409, description = "A different proof is already deposited for this number and nonce. Code: `deposit_exists`.",
            body = ApiError),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "Invalid request. Codes: `invalid_nonce`, `invalid_proof`, `invalid_request`, `idempotency_key_reused`.",
            body = ApiError),
        (status = 500, response = Internal),
    ))]
async fn deposit(State(ch): State<Clearinghouse>, caller: Caller, request: Idempotent) -> Result<Response> {
    let req: DepositRequest = request.parse()?;
    run_idempotent(&ch, &caller, &request.key, "POST /v1/deposits", &request.raw, Op::Deposit(req)).await
}

/// Answer the credit query (donor)
///
/// F1 step 4, by the **donor** only, while the order is `awaiting_credit_info`. The order moves
/// to `awaiting_decision` and the recipient gets a `credit_information` message with the implied
/// compensation.
#[utoipa::path(post, path = "/v1/porting-orders/{id}/credit-information", tag = "porting",
    operation_id = "giveCreditInformation",
    params(OrderId, IdempotencyKey),
    request_body = CreditInformationRequest,
    responses(
        (status = 200, description = "The order, now `awaiting_decision`.", body = Order,
            headers(("idempotent-replay" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key (nothing was done again); absent otherwise."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "The order is not awaiting credit information (already answered, timed out or closed). Code: `invalid_state`.",
            body = ApiError),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "Invalid request. Codes: `invalid_credit_information`, `invalid_request`, `idempotency_key_reused`.",
            body = ApiError,
            example = json!({"error": "invalid_credit_information", "message": "credit information has a negative arrears"})),
        (status = 500, response = Internal),
    ))]
async fn credit_information(
    State(ch): State<Clearinghouse>,
    request: OrderRequest<CreditInformationRequest>,
) -> Result<Response> {
    request.run(&ch).await
}

/// Accept or refuse (recipient)
///
/// F1 steps 5–6, by the **recipient** only, while the order is `awaiting_decision`.
/// - Refusal → `refused` / `refused_by_recipient`.
/// - Acceptance must confirm the compensation implied by the credit information,
///   `max(0, arrears + unbilled_usage + contract_remaining − deposit_held)`; the order is then
///   `settling`, and the settler debits the recipient's account, credits the donor's, routes
///   the number to the recipient and logs the change → `completed` (`compensation_confirmed`
///   to the donor, `port_completed` to the recipient), in one transaction with the other orders
///   waiting. If the recipient's account cannot pay → `rejected` / `insufficient_funds` (at
///   once, or at settlement if another of its settlements took the funds first).
#[utoipa::path(post, path = "/v1/porting-orders/{id}/decision", tag = "porting", operation_id = "decide",
    params(OrderId, IdempotencyKey),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "The order: `settling` (accepted; `completed` once settled, announced by `port_completed`), `refused`, or `rejected` / `insufficient_funds`.",
            body = Order, headers(("idempotent-replay" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key (nothing was done again); absent otherwise."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "The order is not awaiting a decision. Code: `invalid_state`.", body = ApiError,
            example = json!({"error": "invalid_state", "message": "order is completed, not awaiting_decision"})),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "Invalid request. Codes: `compensation_mismatch`, `invalid_request`, `idempotency_key_reused`.",
            body = ApiError,
            example = json!({"error": "compensation_mismatch", "message": "the credit information implies a compensation of 344.50 (minor units 34450)"})),
        (status = 500, response = Internal),
    ))]
async fn decide(State(ch): State<Clearinghouse>, request: OrderRequest<DecisionRequest>) -> Result<Response> {
    request.run(&ch).await
}

/// Decline an order awaiting the deposit (donor)
///
/// F1 step 2, by the **donor** only, while the order is `awaiting_deposit`: the donor cannot
/// deposit a proof for this number and says why (`unknown_subscriber`, `number_not_active`,
/// `no_port_key`). The order ends `rejected` with that code as its reason, both parties get
/// `order_closed`, and nobody is charged: only a donor that lets the deposit deadline pass is.
#[utoipa::path(post, path = "/v1/porting-orders/{id}/decline", tag = "porting", operation_id = "declineOrder",
    params(OrderId, IdempotencyKey),
    request_body = DeclineRequest,
    responses(
        (status = 200, description = "The order, now `rejected` with the donor's reason.", body = Order,
            headers(("idempotent-replay" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key (nothing was done again); absent otherwise."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "The order is not awaiting the deposit (verified, timed out or closed). Code: `invalid_state`.",
            body = ApiError),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "Invalid request (e.g. an unknown reason code). Codes: `invalid_request`, `idempotency_key_reused`.",
            body = ApiError),
        (status = 500, response = Internal),
    ))]
async fn decline(State(ch): State<Clearinghouse>, request: OrderRequest<DeclineRequest>) -> Result<Response> {
    request.run(&ch).await
}

/// Withdraw an order (recipient)
///
/// By the **recipient** only (on its own account or relaying the subscriber's withdrawal),
/// while the order is open. The donor cannot cancel. Both parties get `order_closed`. An empty
/// body means `{"by_subscriber": false}`.
#[utoipa::path(post, path = "/v1/porting-orders/{id}/cancel", tag = "porting", operation_id = "cancelOrder",
    params(OrderId, IdempotencyKey),
    request_body(content = Option<CancelRequest>, description = "May be empty."),
    responses(
        (status = 200, description = "The order, now `cancelled`.", body = Order,
            headers(("idempotent-replay" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key (nothing was done again); absent otherwise."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "The order is already closed. Code: `invalid_state`.", body = ApiError),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "Invalid request. Codes: `invalid_request`, `idempotency_key_reused`.", body = ApiError),
        (status = 500, response = Internal),
    ))]
async fn cancel(State(ch): State<Clearinghouse>, request: OrderRequest<CancelRequest>) -> Result<Response> {
    request.run(&ch).await
}

/// Return a terminated ported number to its range holder
///
/// By the operator serving a **ported** number, when the subscription is terminated: the number
/// goes back to its range holder, the change is logged, and the range holder gets a
/// `number_returned` message. The body is an empty object, or empty.
#[utoipa::path(post, path = "/v1/numbers/{msisdn}/return", tag = "numbers", operation_id = "returnNumber",
    params(MsisdnPath, IdempotencyKey),
    request_body(content = Option<Object>, description = "An empty object (or no body).", example = json!({})),
    responses(
        (status = 200, description = "The number is back with its range holder.", body = NumberReturned,
            headers(("idempotent-replay" = String, description = "`true` when this is the stored answer to an earlier request with the same Idempotency-Key (nothing was done again); absent otherwise."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The caller is not the operator serving this ported number (or the number is not ported). Code: `forbidden`.",
            body = ApiError),
        (status = 404, description = "No number range holds the number. Code: `not_found`.", body = ApiError),
        (status = 409, description = "The number has an open porting order. Code: `port_in_progress`.", body = ApiError),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "Invalid request. Codes: `invalid_msisdn`, `idempotency_key_reused`.", body = ApiError),
        (status = 500, response = Internal),
    ))]
async fn return_number(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    Path(raw_msisdn): Path<String>,
    request: Idempotent,
) -> Result<Response> {
    let m = msisdn(&raw_msisdn)?;
    let route = format!("POST /v1/numbers/{m}/return");
    run_idempotent(&ch, &caller, &request.key, &route, &request.raw, Op::ReturnNumber(m)).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only orders with an id lower than this.
    before: Option<i64>,
    /// At most this many orders (clamped to 1..500; 100 if absent).
    #[param(minimum = 1, maximum = 500, default = 100)]
    limit: Option<i64>,
}

pub(crate) fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    q.map(|Query(v)| v).map_err(|e| Error::invalid("invalid_query", e.body_text()))
}

/// List the caller's orders
///
/// Orders the caller is party to, as recipient or donor, newest first. Page with `before` = the
/// last id received.
#[utoipa::path(get, path = "/v1/porting-orders", tag = "porting", operation_id = "listOrders",
    params(ListQuery),
    responses(
        (status = 200, description = "The orders, newest first.", body = OrderList),
        (status = 401, response = Unauthorized),
        (status = 422, response = InvalidQuery),
        (status = 500, response = Internal),
    ))]
async fn list_orders(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    q: std::result::Result<Query<ListQuery>, QueryRejection>,
) -> Result<axum::Json<OrderList>> {
    let q = query(q)?;
    let mut conn = ch.db.read().await?;
    let list = orders::list_for_operator(&mut conn, caller.operator_id, q.before, q.limit.unwrap_or(100).clamp(1, 500))
        .await?;
    Ok(axum::Json(OrderList { orders: list.iter().map(to_api).collect() }))
}

/// Read an order
#[utoipa::path(get, path = "/v1/porting-orders/{id}", tag = "porting", operation_id = "getOrder",
    params(OrderId),
    responses(
        (status = 200, description = "The order.", body = Order),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ))]
async fn get_order(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Order>> {
    let mut conn = ch.db.read().await?;
    let order = order_for(&mut conn, &caller, order_id(&id)?).await?;
    Ok(axum::Json(to_api(&order)))
}

/// An order's audit trail
///
/// Every recorded action and state change of the order, oldest first.
#[utoipa::path(get, path = "/v1/porting-orders/{id}/audit", tag = "porting", operation_id = "getOrderAudit",
    params(OrderId),
    responses(
        (status = 200, description = "The audit trail.", body = AuditTrail),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    ))]
async fn order_audit(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<AuditTrail>> {
    let mut conn = ch.db.read().await?;
    let order = order_for(&mut conn, &caller, order_id(&id)?).await?;
    let entries = crate::store::audit::for_order(&mut conn, order.id)
        .await?
        .into_iter()
        .map(|e| AuditEntry {
            at: e.at,
            actor: e.actor,
            action: e.action,
            from_state: e.from_state,
            to_state: e.to_state,
            detail: serde_json::from_str(&e.detail).unwrap_or(Value::String(e.detail)),
        })
        .collect();
    Ok(axum::Json(AuditTrail { order_id: order.id, entries }))
}

/// Who serves a number
///
/// The authoritative record. Any operator may ask: routing data is shared by design (F2).
#[utoipa::path(get, path = "/v1/numbers/{msisdn}", tag = "numbers", operation_id = "getNumberStatus",
    params(MsisdnPath),
    responses(
        (status = 200, description = "The number's status.", body = NumberStatus),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No number range holds the number. Code: `not_found`.", body = ApiError),
        (status = 422, description = "Not a valid E.164 number. Code: `invalid_msisdn`.", body = ApiError),
        (status = 500, response = Internal),
    ))]
async fn number_status(
    State(ch): State<Clearinghouse>,
    _caller: Caller,
    Path(raw): Path<String>,
) -> Result<axum::Json<NumberStatus>> {
    let m = msisdn(&raw)?;
    let mut conn = ch.db.read().await?;
    Ok(axum::Json(ch.number_status(&mut conn, &m).await?))
}

/// The caller's settlement account
#[utoipa::path(get, path = "/v1/accounts/me", tag = "account", operation_id = "getAccount",
    responses(
        (status = 200, description = "Balance and latest postings.", body = Account),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
    ))]
async fn account(State(ch): State<Clearinghouse>, caller: Caller) -> Result<axum::Json<Account>> {
    let mut conn = ch.db.read().await?;
    Ok(axum::Json(ch.account(&mut conn, &caller).await?))
}

/// The caller's own violations
///
/// Deadlines it missed, requests it made after too many failed verifications, and deposits of
/// its held responsible for failed verifications (`kind`).
#[utoipa::path(get, path = "/v1/violations", tag = "account", operation_id = "listViolations",
    responses(
        (status = 200, description = "Violations, newest first (up to 500).", body = ViolationList),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
    ))]
async fn violations(State(ch): State<Clearinghouse>, caller: Caller) -> Result<axum::Json<ViolationList>> {
    let mut conn = ch.db.read().await?;
    Ok(axum::Json(ViolationList { violations: ch.violations(&mut conn, Some(caller.operator_id), 500).await? }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct InboxQuery {
    /// Only messages with an id greater than this (0 if absent).
    after: Option<i64>,
    /// At most this many messages (clamped to 1..1000; 100 if absent).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// Read messages (polling)
///
/// The caller's messages with an id greater than `after`, ascending, whether or not already
/// delivered by callback. Same `Envelope` as the callbacks. Poll with `after` = the last id
/// processed, then acknowledge with `POST /v1/inbox/ack`.
#[utoipa::path(get, path = "/v1/inbox", tag = "inbox", operation_id = "readInbox",
    params(InboxQuery),
    responses(
        (status = 200, description = "Messages in ascending id order.", body = Inbox),
        (status = 401, response = Unauthorized),
        (status = 422, response = InvalidQuery),
        (status = 500, response = Internal),
    ))]
async fn inbox(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    q: std::result::Result<Query<InboxQuery>, QueryRejection>,
) -> Result<axum::Json<Inbox>> {
    let q = query(q)?;
    let mut conn = ch.db.read().await?;
    let messages = ch.inbox(&mut conn, &caller, q.after.unwrap_or(0), q.limit.unwrap_or(100)).await?;
    Ok(axum::Json(Inbox { messages }))
}

/// Acknowledge messages
///
/// Mark every message up to and including `up_to` as processed: the clearinghouse stops calling
/// back about them. Needs no Idempotency-Key (it is naturally idempotent).
#[utoipa::path(post, path = "/v1/inbox/ack", tag = "inbox", operation_id = "ackInbox",
    request_body = AckRequest,
    responses(
        (status = 200, description = "How many messages were newly acknowledged.", body = AckResult),
        (status = 400, description = "The body is not JSON or could not be read. Codes: `malformed_json`, `unreadable_body`.",
            body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "Invalid request. Code: `invalid_request`.", body = ApiError),
        (status = 500, response = Internal),
    ))]
async fn ack(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<AckResult>> {
    let raw = body(b, ch.config.max_body_bytes)?;
    let req: AckRequest = parse(&raw)?;
    let mut tx = ch.db.begin().await?;
    let acknowledged = outbox::ack(&mut tx, caller.operator_id, req.up_to, ch.now()).await?;
    tx.commit().await?;
    Ok(axum::Json(AckResult { acknowledged }))
}

/// The callback URL and its deliveries
///
/// The registered URL, the caller's messages not yet delivered, and why the latest failed
/// delivery failed: a URL the clearinghouse cannot reach shows here, not only in its log.
#[utoipa::path(get, path = "/v1/operators/me/callback", tag = "inbox", operation_id = "getCallback",
    responses(
        (status = 200, description = "The callback URL and how its deliveries fare.", body = CallbackStatus),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
    ))]
async fn callback_status(State(ch): State<Clearinghouse>, caller: Caller) -> Result<axum::Json<CallbackStatus>> {
    let mut conn = ch.db.read().await?;
    let callback_url = operators::by_id(&mut conn, caller.operator_id).await?.callback_url;
    let (undelivered, last_error) = outbox::undelivered(&mut conn, caller.operator_id).await?;
    Ok(axum::Json(CallbackStatus { callback_url, undelivered, last_error }))
}

/// Register (or clear) the callback URL
///
/// Where the clearinghouse POSTs the caller's messages (see `webhooks.operatorCallback`).
/// Setting it makes every undelivered message due at once. The host must be public: a
/// loopback, private, link-local or reserved address (or a name resolving to one) is refused
/// here and again at each delivery, unless the clearinghouse's configuration allows them. `null` stops callbacks; messages
/// stay readable from the inbox.
#[utoipa::path(put, path = "/v1/operators/me/callback", tag = "inbox", operation_id = "setCallback",
    request_body = CallbackRequest,
    responses(
        (status = 200, description = "The callback URL now registered.", body = CallbackSet),
        (status = 400, description = "The body is not JSON or could not be read. Codes: `malformed_json`, `unreadable_body`.",
            body = ApiError),
        (status = 401, response = Unauthorized),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "Invalid request. Codes: `invalid_callback_url`, `callback_address_not_public` (the host is or resolves to a loopback, private, link-local or reserved address, refused unless the clearinghouse's configuration allows them), `invalid_request`.", body = ApiError,
            example = json!({"error": "invalid_callback_url", "message": "callback URL must be an http:// or https:// URL"})),
        (status = 500, response = Internal),
    ))]
async fn set_callback(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<CallbackSet>> {
    let raw = body(b, ch.config.max_body_bytes)?;
    let req: CallbackRequest = parse(&raw)?;
    if let Some(url) = &req.url {
        use crate::callback_address::{Refused, check_registration};
        match check_registration(url, ch.config.allow_private_callback_addresses).await {
            Ok(()) => {}
            Err(Refused::NotHttp) => {
                return Err(Error::invalid("invalid_callback_url", "callback URL must be an http:// or https:// URL"));
            }
            Err(e) => return Err(Error::invalid("callback_address_not_public", e.to_string())),
        }
    }
    let now = ch.now();
    let mut tx = ch.db.begin().await?;
    operators::set_callback_url(&mut tx, caller.operator_id, req.url.as_deref()).await?;
    outbox::make_due(&mut tx, caller.operator_id, now).await?;
    crate::store::audit::append(
        &mut tx,
        now,
        &caller.actor(),
        "callback_url_set",
        None,
        None,
        None,
        &json!({ "url": req.url }).to_string(),
    )
    .await?;
    tx.commit().await?;
    ch.wake_dispatcher();
    Ok(axum::Json(CallbackSet { callback_url: req.url }))
}
