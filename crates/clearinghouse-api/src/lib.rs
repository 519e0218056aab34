//! The clearinghouse's HTTP/JSON contract (`/v1`), shared by the server, the operator nodes,
//! the demo and the benchmarks, so that both ends of every call use one definition.
//!
//! - [`model`]: request and response bodies, with their OpenAPI schemas (`utoipa::ToSchema`).
//! - [`messages`]: what the clearinghouse sends operators (callbacks and inbox).
//! - [`client`]: a typed client an operator uses, with idempotency keys on every change.

pub mod client;
pub mod messages;
pub mod model;

pub use client::{ClearinghouseClient, ClientError};
pub use messages::{CallbackBody, Envelope, Message};
