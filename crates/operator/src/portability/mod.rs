//! The portability adapter (F1): the node's side of a porting order, as donor and as recipient.
//!
//! Everything the clearinghouse asks of an operator arrives as a signed callback and is
//! answered without a person in the loop, so that a donor has no step at which to obstruct a
//! port and a recipient decides by a stated policy:
//!
//! | message | role | the node's answer |
//! |---|---|---|
//! | `deposit_requested` | donor | compute the expected terminal proof from the subscriber's port key and deposit it |
//! | `credit_query` | donor | the subscriber's arrears, unbilled usage, contract remainder and deposit |
//! | `credit_information` | recipient | accept (paying the compensation) if within `policy.max_compensation`, else refuse |
//! | `compensation_confirmed` | donor | mark the subscriber ported out |
//! | `port_completed` | recipient | make the number an active subscriber |
//! | `order_closed`, `number_returned` | both | record |
//!
//! Delivery is at-least-once and may be replayed, so a callback is checked (signature, age),
//! recorded by message id (a known id is a duplicate and changes nothing), acknowledged, and
//! only then processed. A recorded message is durable work: if processing fails or the process
//! dies, the re-processor takes it up again, and every call it makes to the clearinghouse
//! carries an idempotency key derived from the message id, so a retry never acts twice.
//!
//! - [`callbacks`]: the callback endpoint (verification, replay guard).
//! - [`handler`]: what each message does.
//! - [`sync`]: callback registration, inbox catch-up, the re-processor.
//! - [`self_service`]: the terminal-facing endpoints of the recipient (port-in request, its status).
//! - [`authorisation`]: the donor's side, the port-out authorisation a terminal sends by SMS to
//!   the service number.

pub mod authorisation;
pub mod callbacks;
pub mod handler;
pub mod self_service;
pub mod sync;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Node;

pub use authorisation::{AuthorisationRefusal, PortOutText, PortTextError};
pub use self_service::PortInStatus;

/// The routes of the portability adapter, with their OpenAPI operations.
pub(crate) fn routes() -> OpenApiRouter<Node> {
    OpenApiRouter::new()
        .routes(routes!(callbacks::receive))
        .routes(routes!(self_service::port_in))
        .routes(routes!(self_service::port_in_status))
}
