//! Domain types of number portability, with no I/O.
//!
//! Everything here is pure: no sockets, no database, no clock of its own (time comes in as
//! [`clock::Millis`]). The clearinghouse and the operator nodes build on these types; the store
//! persists them. Because nothing here can block or fail on the outside world, the porting-order
//! state machine and the cryptography are tested exhaustively and property-tested.
//!
//! - [`msisdn`]: E.164 subscriber numbers, number-range prefixes, routing numbers.
//! - [`operator`]: operator names as they appear on the wire.
//! - [`money`]: integer minor units, and the balanced journal every money movement must be.
//! - [`porting`]: the porting order: states, reason codes, credit information, compensation,
//!   and the transition function with its timeout rules.
//! - [`proof`]: the terminal proof of F1 step 1 (keyed MAC over a single-use nonce).
//! - [`signing`]: HMAC signatures on the clearinghouse's callbacks to operators.
//! - [`clock`]: wall-clock milliseconds behind a trait, so deadlines are tested without sleeping.
//! - `openapi` (feature `openapi`): the OpenAPI schemas of the types above that travel in HTTP bodies.

pub mod clock;
pub mod money;
pub mod msisdn;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod operator;
pub mod porting;
pub mod proof;
pub mod signing;

pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use money::{JournalEntry, Money};
pub use msisdn::{Msisdn, Prefix, RoutingNumber};
pub use operator::OperatorName;
