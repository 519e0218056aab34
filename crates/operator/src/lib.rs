//! A mobile operator's node. Today it holds the subscriber accounts, the portability adapter,
//! which answers the clearinghouse as donor and as recipient with no person in the loop (F1),
//! the portability replica (F2), and the first part of the SMS center (F3: SMPP submits
//! recorded with their route); online charging, billing and provisioning join it as further
//! modules.
//!
//! The node is one HTTP server ([`Node::run`]) over its own database ([`OperatorStore`],
//! SQLite by default, PostgreSQL by URL). What comes in: signed callbacks from the
//! clearinghouse, and terminals' self-service requests. What goes out: calls to the
//! clearinghouse through the typed `clearinghouse_api` client, each with an idempotency key.
//!
//! - [`config`]: [`OperatorConfig`], the recipient's [`RecipientPolicy`].
//! - [`node`]: [`Node`], the shared handle: state, router, background tasks, shutdown.
//! - [`portability`]: the F1 adapter: callbacks, message handling, inbox catch-up, self-service.
//! - [`sms_center`]: SMPP submits routed by the replica and recorded before they are acknowledged.
//! - [`store`]: every SQL statement: subscribers, received messages, porting events, SMS.
//!
//! Architecture invariants: a callback is verified over its raw bytes before it is parsed;
//! it is recorded before it is acknowledged and processed after; SQL lives only in [`store`].

pub mod air;
pub mod config;
pub mod error;
mod metrics;
pub mod node;
pub mod openapi;
pub mod portability;
pub mod sms_center;
pub mod store;

pub use config::{OperatorConfig, RecipientPolicy};
pub use error::OperatorError;
pub use node::{Listeners, Node};
pub use portability::PortOutAuthorisation;
pub use store::{OperatorStore, Subscriber, SubscriberStatus};
