//! The `/v1` HTTP API.
//!
//! Every state-changing request carries an `Idempotency-Key`; its answer is stored in the
//! transaction that made the change ([`run_idempotent`]), so a retry after a lost response gets
//! the same answer and acts once. Handlers parse bodies themselves so that malformed JSON,
//! wrong fields and oversized bodies all get the JSON error shape, never framework text.

use std::time::Instant;

use crate::store::{idempotency, operators, orders, outbox};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use clearinghouse_api::client::IDEMPOTENCY_KEY_HEADER;
use clearinghouse_api::model::*;
use numport_core::Msisdn;
use numport_db::Connection;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::porting::{order_for, to_api};
use crate::{Clearinghouse, Counts};

const OPENAPI: &str = include_str!("openapi.json");

pub fn router(ch: Clearinghouse) -> Router {
    let health_ch = ch.clone();
    let health: telemetry::HealthCheck = std::sync::Arc::new(move || {
        let ok = !health_ch.db.is_closed();
        (ok, json!({ "role": "clearinghouse", "ok": ok, "now_ms": health_ch.now() }))
    });
    Router::new()
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/v1/porting-orders", post(request_port).get(list_orders))
        .route("/v1/porting-orders/{id}", get(get_order))
        .route("/v1/porting-orders/{id}/audit", get(order_audit))
        .route("/v1/porting-orders/{id}/credit-information", post(credit_information))
        .route("/v1/porting-orders/{id}/decision", post(decide))
        .route("/v1/porting-orders/{id}/cancel", post(cancel))
        .route("/v1/deposits", post(deposit))
        .route("/v1/numbers/{msisdn}", get(number_status))
        .route("/v1/numbers/{msisdn}/return", post(return_number))
        .route("/v1/accounts/me", get(account))
        .route("/v1/violations", get(violations))
        .merge(crate::feed::routes())
        .route("/v1/inbox", get(inbox))
        .route("/v1/inbox/ack", post(ack))
        .route("/v1/operators/me/callback", put(set_callback))
        .merge(telemetry::routes(ch.metrics.registry.clone(), health))
        .fallback(|| async { Error::NotFound("route") })
        .method_not_allowed_fallback(|| async {
            let body =
                ApiError { error: "method_not_allowed".into(), message: "method not allowed on this path".into() };
            (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body))
        })
        .layer(DefaultBodyLimit::max(ch.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(ch.clone(), observe))
        .with_state(ch)
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

/// Run `op` once per (operator, idempotency key): the answer is stored with the change.
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

/// What a request under an idempotency key comes to: an answer stored before, or a new one.
enum Answered {
    Stored(idempotency::StoredResponse),
    New(StatusCode, String),
}

async fn run_idempotent(
    ch: &Clearinghouse,
    caller: &Caller,
    key: &str,
    route: &str,
    raw: &[u8],
    op: Op,
) -> Result<Response> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(raw);
    let hash = hex::encode(hasher.finalize());

    // The request runs, then its answer is stored under the key in the same transaction, in
    // one row that is also the key's claim (`idempotency::record`). A copy of the request that
    // committed first makes that write fail (a copy still running makes it wait), and this one
    // rolls back all it did and gives the stored answer. A copy may also fail earlier, on what
    // the winner changed (the order's state, the number's open order): a failed request looks
    // for a stored answer before it reports its error or, after a conflict with some other
    // transaction (a deadlock victim), runs again from the start.
    // The transaction runs where the database drives it best (`Db::run`).
    let answered = {
        let (ch, caller, key, hash) = (ch.clone(), caller.clone(), key.to_owned(), hash.clone());
        ch.db
            .clone()
            .run(async move {
                let stored = async |ch: &Clearinghouse| -> Result<Option<idempotency::StoredResponse>> {
                    // The writer, not a reader: on SQLite the winner may have committed into a
                    // group commit still open, which this sees, and commits before we replay it.
                    let mut conn = ch.db.acquire().await?;
                    Ok(idempotency::get(&mut conn, caller.operator_id, &key).await?)
                };
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let mut tx = ch.db.begin().await?;
                    let mut counts = Counts::default();
                    let outcome = match ch.execute(&mut tx, &caller, op.clone(), &mut counts).await {
                        Ok((status, value)) => {
                            let body = value.to_string();
                            let recorded = idempotency::record(
                                &mut tx,
                                caller.operator_id,
                                &key,
                                &hash,
                                status.as_u16(),
                                &body,
                                ch.now(),
                            )
                            .await;
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
                                    return Ok::<_, Error>(Answered::New(status, body));
                                }
                                Err(e) if idempotency::key_taken(&e) => {
                                    let stored = stored(&ch).await?.ok_or(Error::NotFound("idempotency record"))?;
                                    return Ok(Answered::Stored(stored));
                                }
                                Err(e) => Error::from(e),
                            }
                        }
                        Err(e) => {
                            tx.rollback().await?;
                            e
                        }
                    };
                    if let Some(stored) = stored(&ch).await? {
                        return Ok(Answered::Stored(stored));
                    }
                    if attempt < 3 && outcome.is_transient() {
                        tracing::debug!(error = %outcome, attempt, "retrying after a conflict with a concurrent request");
                        continue;
                    }
                    return Err(outcome);
                }
            })
            .await?
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

async fn request_port(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let raw = body(b, ch.config.max_body_bytes)?;
    let req: PortingRequest = parse(&raw)?;
    run_idempotent(&ch, &caller, key, "POST /v1/porting-orders", &raw, Op::RequestPort(req)).await
}

async fn deposit(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let raw = body(b, ch.config.max_body_bytes)?;
    let req: DepositRequest = parse(&raw)?;
    run_idempotent(&ch, &caller, key, "POST /v1/deposits", &raw, Op::Deposit(req)).await
}

/// The POSTs on one order (`/v1/porting-orders/{id}/<action>`): same checks, another body.
#[allow(clippy::too_many_arguments)]
async fn order_action<T: DeserializeOwned>(
    ch: Clearinghouse,
    caller: Caller,
    id: String,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
    action: &str,
    empty_body: Option<T>,
    op: fn(i64, T) -> Op,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let raw = body(b, ch.config.max_body_bytes)?;
    let id = order_id(&id)?;
    let req = match empty_body {
        Some(default) if raw.is_empty() => default,
        _ => parse(&raw)?,
    };
    run_idempotent(&ch, &caller, key, &format!("POST /v1/porting-orders/{id}/{action}"), &raw, op(id, req)).await
}

async fn credit_information(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    order_action(ch, caller, id, headers, b, "credit-information", None, Op::CreditInformation).await
}

async fn decide(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    order_action(ch, caller, id, headers, b, "decision", None, Op::Decide).await
}

async fn cancel(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    order_action(ch, caller, id, headers, b, "cancel", Some(CancelRequest { by_subscriber: false }), Op::Cancel).await
}

async fn return_number(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    Path(raw_msisdn): Path<String>,
    headers: HeaderMap,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let key = idempotency_key(&headers)?;
    let raw = body(b, ch.config.max_body_bytes)?;
    let m = msisdn(&raw_msisdn)?;
    run_idempotent(&ch, &caller, key, &format!("POST /v1/numbers/{m}/return"), &raw, Op::ReturnNumber(m)).await
}

#[derive(Deserialize)]
struct ListQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

pub(crate) fn query<T>(q: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    q.map(|Query(v)| v).map_err(|e| Error::invalid("invalid_query", e.body_text()))
}

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

async fn get_order(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Order>> {
    let mut conn = ch.db.read().await?;
    let order = order_for(&mut conn, &caller, order_id(&id)?).await?;
    Ok(axum::Json(to_api(&order)))
}

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

async fn number_status(
    State(ch): State<Clearinghouse>,
    _caller: Caller,
    Path(raw): Path<String>,
) -> Result<axum::Json<NumberStatus>> {
    let m = msisdn(&raw)?;
    let mut conn = ch.db.read().await?;
    Ok(axum::Json(ch.number_status(&mut conn, &m).await?))
}

async fn account(State(ch): State<Clearinghouse>, caller: Caller) -> Result<axum::Json<Account>> {
    let mut conn = ch.db.read().await?;
    Ok(axum::Json(ch.account(&mut conn, &caller).await?))
}

async fn violations(State(ch): State<Clearinghouse>, caller: Caller) -> Result<axum::Json<ViolationList>> {
    let mut conn = ch.db.read().await?;
    Ok(axum::Json(ViolationList { violations: ch.violations(&mut conn, Some(caller.operator_id), 500).await? }))
}

#[derive(Deserialize)]
struct InboxQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

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

async fn ack(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>> {
    let raw = body(b, ch.config.max_body_bytes)?;
    let req: AckRequest = parse(&raw)?;
    let mut tx = ch.db.begin().await?;
    let n = outbox::ack(&mut tx, caller.operator_id, req.up_to, ch.now()).await?;
    tx.commit().await?;
    Ok(axum::Json(json!({ "acknowledged": n })))
}

async fn set_callback(
    State(ch): State<Clearinghouse>,
    caller: Caller,
    b: std::result::Result<Bytes, BytesRejection>,
) -> Result<axum::Json<Value>> {
    let raw = body(b, ch.config.max_body_bytes)?;
    let req: CallbackRequest = parse(&raw)?;
    if let Some(url) = &req.url {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url.len() <= 2048
            && reqwest::Url::parse(url).is_ok();
        if !ok {
            return Err(Error::invalid("invalid_callback_url", "callback URL must be an http:// or https:// URL"));
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
    Ok(axum::Json(json!({ "callback_url": req.url })))
}
