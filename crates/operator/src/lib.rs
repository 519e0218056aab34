//! A mobile operator's node: the subscriber accounts, the portability adapter, which answers the
//! clearinghouse as donor and as recipient with no person in the loop (F1), the portability
//! replica (F2), and the SMS center with its SMPP server, interconnect links and air interface
//! (F3's routing half).
//!
//! The node is one HTTP server ([`Node::run`]) over its own database ([`OperatorStore`],
//! SQLite by default, PostgreSQL by URL, opened through the storage engine), plus the sockets
//! it is given for ENUM, SMPP and the air interface. What comes in: signed callbacks from the
//! clearinghouse, terminals' self-service requests, ESMEs' and other operators' submits, and
//! attached terminals. What goes out: calls to the clearinghouse through the typed
//! `clearinghouse_api` client, each with an idempotency key; short messages to terminals and to
//! other operators' SMS centers; delivery receipts.
//!
//! - [`config`]: [`OperatorConfig`], the recipient's [`RecipientPolicy`].
//! - [`node`]: [`Node`], the shared handle: state, router, background tasks, shutdown.
//! - [`portability`]: the F1 adapter: callbacks, message handling, inbox catch-up, self-service.
//! - [`sms_center`]: submits routed by the replica and committed before they are acknowledged,
//!   then delivered to terminals or forwarded over an interconnect, with receipts, retries and
//!   expiry.
//! - [`air`]: the simulated air interface terminals attach to, which also carries their port-out
//!   authorisations to the service number.
//! - [`account_opening`]: self-service account opening (F7): identity, number and card
//!   assigned, subscriber provisioned, card written over the air; its API and page.
//! - [`ota`]: the OTA server (F7): secured packets to cards through the SMS center, their
//!   proofs of receipt, durable jobs with retries; the card stock with sealed keys.
//! - [`provisioner`]: provisioning with overload protection (F6): the order API, the durable
//!   per-category queues, the dispatcher to the network elements, and the orders the node's
//!   ports make.
//! - [`online_charging`]: the OCS the node embeds (F4), on its own database, serving Gy.
//! - [`sealing`]: subscribers' card keys sealed at rest under the node's key-encryption key.
//! - [`store`]: every SQL statement: subscribers, received messages, porting events, SMS.
//!
//! Architecture invariants: a callback is verified over its raw bytes before it is parsed;
//! it is recorded before it is acknowledged and processed after; a short message is committed
//! before it is acknowledged; SQL lives only in [`store`].

pub mod account_opening;
pub mod air;
pub mod config;
pub mod error;
mod metrics;
pub mod node;
pub mod online_charging;
pub mod openapi;
pub mod ota;
pub mod portability;
pub mod provisioner;
pub mod sealing;
pub mod sms_center;
pub mod store;

pub use config::{OperatorConfig, RecipientPolicy};
pub use error::OperatorError;
pub use node::{Listeners, Node};
pub use portability::{AuthorisationRefusal, PortInStatus, PortOutText, PortTextError};
pub use store::{EventKind, OperatorStore, Subscriber, SubscriberStatus};
