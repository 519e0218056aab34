//! The provisioning API: orders in, and how they and the device stand.
//!
//! - `POST /v1/provisioning/orders`: up to [`MAX_ORDERS`] orders, answered 202 once they and
//!   their commands are committed. With an `Idempotency-Key` header, a repeat of the request
//!   queues nothing again and answers the same order ids.
//! - `GET /v1/provisioning/orders/{id}`: an order and each of its commands' outcome.
//! - `GET /v1/provisioning/status`: per category the queue depth, protection state and counts;
//!   per element its last load report; the recent state transitions with their causes.
//! - `GET /v1/provisioning/dead-letters`: commands given up on, with the reason.
//!
//! Every route needs `Authorization: Bearer <token>`, the token whose SHA-256 is the
//! configuration's `[provisioning] token_sha256` (compared in constant time); without one
//! configured the API refuses every request.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use clearinghouse_api::model::ApiError;
use numport_core::Millis;
use provisioning::dispatcher::Status;
use provisioning::{Category, Element, Order};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Accepted, EnqueueError};
use crate::Node;
use crate::error::HttpError;
use crate::store::provisioning::CommandRecord;

/// Adds the bearer scheme the provisioning routes name to the node's document.
pub(crate) struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Most orders one request may carry (500 port-ins are about 50 KB, within the node's 64 KiB body limit).
pub const MAX_ORDERS: usize = 500;
/// Longest idempotency key.
const MAX_KEY: usize = 128;

pub(crate) fn routes() -> OpenApiRouter<Node> {
    OpenApiRouter::new()
        .routes(routes!(submit_orders))
        .routes(routes!(get_order))
        .routes(routes!(status))
        .routes(routes!(dead_letters))
}

pub(crate) fn authorise(node: &Node, headers: &HeaderMap) -> Result<(), HttpError> {
    let expected = hex::decode(node.provisioner().config().token_sha256.trim()).unwrap_or_default();
    if expected.len() != 32 {
        return Err(HttpError::unauthorized("no_token_configured", "the provisioning API has no token configured"));
    }
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| HttpError::unauthorized("missing_token", "Authorization: Bearer <token> is required"))?;
    let digest = Sha256::digest(token.as_bytes());
    if bool::from(digest.as_slice().ct_eq(&expected)) {
        Ok(())
    } else {
        Err(HttpError::unauthorized("bad_token", "the token is not the provisioning API's"))
    }
}

/// The body of `POST /v1/provisioning/orders`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct OrdersRequest {
    pub orders: Vec<Order>,
}

/// The answer: one entry per order, in the request's order.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct OrdersAccepted {
    pub orders: Vec<AcceptedOrder>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct AcceptedOrder {
    pub id: i64,
    /// Commands the order became (0 for a repeat).
    pub commands: usize,
    /// The same request was taken before; this is the order it made then.
    pub duplicate: bool,
}

impl From<Accepted> for AcceptedOrder {
    fn from(a: Accepted) -> AcceptedOrder {
        AcceptedOrder { id: a.id, commands: a.commands, duplicate: a.duplicate }
    }
}

fn enqueue_error(e: EnqueueError) -> HttpError {
    match e {
        EnqueueError::Invalid(m) => HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_order", m),
        EnqueueError::Node(e) => e.into(),
    }
}

/// Queue provisioning orders
///
/// Each order is classified into its instruction category (activation, service, bulk) and
/// expanded into commands for the network elements it touches; the answer comes once all are
/// committed, so an accepted order survives a crash. Orders for one subscriber are executed in
/// the order accepted.
#[utoipa::path(post, path = "/v1/provisioning/orders", tag = "provisioning", operation_id = "submitProvisioningOrders",
    request_body = OrdersRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a repeat of the request answer the same orders instead of queueing them again (at most 128 characters).")),
    responses(
        (status = 202, description = "Orders committed and queued.", body = OrdersAccepted),
        (status = 400, description = "Not a request of orders. Codes: `invalid_request`, `too_many_orders`, `invalid_idempotency_key`.", body = ApiError),
        (status = 401, description = "Codes: `missing_token`, `bad_token`, `no_token_configured`.", body = ApiError),
        (status = 422, description = "An order that cannot be provisioned; none of the request was queued. Code: `invalid_order`.", body = ApiError),
        (status = 500, description = "Internal error. Code: `internal`.", body = ApiError),
    ),
    security(("bearer" = [])))]
pub(crate) async fn submit_orders(
    State(node): State<Node>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<OrdersAccepted>), HttpError> {
    authorise(&node, &headers)?;
    let req: OrdersRequest =
        serde_json::from_slice(&body).map_err(|e| HttpError::bad_request("invalid_request", e.to_string()))?;
    if req.orders.len() > MAX_ORDERS {
        return Err(HttpError::bad_request("too_many_orders", format!("at most {MAX_ORDERS} orders per request")));
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(k.to_owned())
            }
            _ => return Err(HttpError::bad_request("invalid_idempotency_key", "1 to 128 visible ASCII characters")),
        },
    };
    let orders =
        req.orders.into_iter().enumerate().map(|(n, o)| (o, key.as_ref().map(|k| format!("api:{k}:{n}")))).collect();
    let accepted = node.provisioner().enqueue(orders).await.map_err(enqueue_error)?;
    Ok((StatusCode::ACCEPTED, Json(OrdersAccepted { orders: accepted.into_iter().map(Into::into).collect() })))
}

/// An order and its commands.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct OrderView {
    pub id: i64,
    pub category: Category,
    pub order: Order,
    pub created_at: Millis,
    /// `queued` while a command is, then `done`, or `dead` when a command was given up on.
    pub state: String,
    pub commands: Vec<CommandView>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CommandView {
    pub id: i64,
    pub order_id: i64,
    pub category: Category,
    pub element: Element,
    /// The command as sent: `CREATE`, `DELETE`, `SET`, `BAR`, `UNBAR`, with its attributes.
    pub command: String,
    #[schema(value_type = String, example = "4791000001")]
    pub msisdn: numport_core::Msisdn,
    /// `queued`, `done` or `dead`.
    pub state: String,
    /// Why it is dead: the element's refusal (`unknown_subscriber`...) or the last failure.
    pub reason: Option<String>,
    pub done_at: Option<Millis>,
}

impl From<CommandRecord> for CommandView {
    fn from(c: CommandRecord) -> CommandView {
        let params = c.command.params_text();
        let command = if params.is_empty() {
            c.command.verb.as_str().to_owned()
        } else {
            format!("{} {params}", c.command.verb.as_str())
        };
        CommandView {
            id: c.id,
            order_id: c.order_id,
            category: c.category,
            element: c.command.element,
            command,
            msisdn: c.command.msisdn,
            state: c.state,
            reason: c.reason,
            done_at: c.done_at,
        }
    }
}

/// A provisioning order
#[utoipa::path(get, path = "/v1/provisioning/orders/{id}", tag = "provisioning", operation_id = "getProvisioningOrder",
    params(("id" = i64, Path, description = "The order's id.")),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        (status = 401, description = "Codes: `missing_token`, `bad_token`, `no_token_configured`.", body = ApiError),
        (status = 404, description = "No such order. Code: `not_found`.", body = ApiError),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_order(
    State(node): State<Node>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<OrderView>, HttpError> {
    authorise(&node, &headers)?;
    let Some(o) = node.store().provisioning_order(id).await? else {
        return Err(HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such order"));
    };
    let state = if o.commands.iter().any(|c| c.state == "queued") {
        "queued"
    } else if o.commands.iter().any(|c| c.state == "dead") {
        "dead"
    } else {
        "done"
    };
    Ok(Json(OrderView {
        id: o.id,
        category: o.category,
        order: o.order,
        created_at: o.created_at,
        state: state.to_owned(),
        commands: o.commands.into_iter().map(Into::into).collect(),
    }))
}

/// The answer of `GET /v1/provisioning/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusView {
    /// Whether the dispatcher runs (it starts with the node).
    pub running: bool,
    #[serde(flatten)]
    pub dispatcher: Status,
    /// Dead commands in the database, all time.
    pub dead_letters: i64,
    /// Commands in the database per category: queued now, and dead all time.
    pub stored: Vec<CategoryCount>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CategoryCount {
    pub category: Category,
    pub queued: i64,
    pub dead: i64,
}

/// How the provisioning device stands
///
/// Per category its queue depth, protection state (normal, limited, suspended) and counts; per
/// network element the load it last reported; the recent state transitions with their causes.
#[utoipa::path(get, path = "/v1/provisioning/status", tag = "provisioning", operation_id = "getProvisioningStatus",
    responses(
        (status = 200, description = "The device's state.", body = StatusView),
        (status = 401, description = "Codes: `missing_token`, `bad_token`, `no_token_configured`.", body = ApiError),
    ),
    security(("bearer" = [])))]
pub(crate) async fn status(State(node): State<Node>, headers: HeaderMap) -> Result<Json<StatusView>, HttpError> {
    authorise(&node, &headers)?;
    let counts = super::stored_counts(node.store()).await?;
    let dead_letters = counts.iter().filter(|((_, s), _)| s == "dead").map(|(_, n)| n).sum();
    let count = |c: Category, state: &str| counts.get(&(c, state.to_owned())).copied().unwrap_or(0);
    let stored = Category::ALL
        .into_iter()
        .map(|c| CategoryCount { category: c, queued: count(c, "queued"), dead: count(c, "dead") })
        .collect();
    let dispatcher = node.provisioner().status();
    Ok(Json(StatusView {
        running: dispatcher.is_some(),
        dispatcher: dispatcher.unwrap_or_default(),
        dead_letters,
        stored,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Page {
    /// Only commands with a smaller id (the last id of the previous page).
    before: Option<i64>,
    /// At most this many (default 100, at most 1,000).
    limit: Option<i64>,
}

/// Dead letters
///
/// Commands given up on, newest first, each with the reason: the element's refusal, or the
/// last failure once the retries ran out.
#[utoipa::path(get, path = "/v1/provisioning/dead-letters", tag = "provisioning", operation_id = "getProvisioningDeadLetters",
    params(Page),
    responses(
        (status = 200, description = "Dead commands.", body = Vec<CommandView>),
        (status = 401, description = "Codes: `missing_token`, `bad_token`, `no_token_configured`.", body = ApiError),
    ),
    security(("bearer" = [])))]
pub(crate) async fn dead_letters(
    State(node): State<Node>,
    headers: HeaderMap,
    Query(page): Query<Page>,
) -> Result<Json<Vec<CommandView>>, HttpError> {
    authorise(&node, &headers)?;
    let limit = page.limit.unwrap_or(100).clamp(1, 1_000);
    let dead = node.store().provisioning_dead_letters(page.before, limit).await?;
    Ok(Json(dead.into_iter().map(Into::into).collect()))
}
