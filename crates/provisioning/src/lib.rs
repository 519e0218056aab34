//! Provisioning with overload protection (F6): the device between an operator's provisioning
//! orders and its network elements.
//!
//! An [`Order`] (activate a ported-in subscriber, open an account, deactivate at port-out,
//! change a plan, bar, a line of a bulk file) is classified into a [`Category`] with a priority
//! and expanded into one [`Command`] per network [`Element`] it touches. Each category is one
//! queue with one [`ProtectionState`], driven by the load the elements report; the state and
//! the priority decide how much of each element's capacity the category may use now.
//!
//! - [`core`]: the logic, free of I/O (no tokio, no sockets, no database; time is a
//!   parameter): orders, classification and expansion, the protection state machine, the pacer
//!   and the allocator, the elements' wire format.
//! - [`element`]: simulated network elements, each a TCP server with a capacity and a latency
//!   that reports its load and counts what it received beyond its capacity.
//! - [`dispatcher`]: the device's sending side (tokio): per-category, per-element ready lists,
//!   order per subscriber, pacing, retries with back-off, dead letters; it records every
//!   outcome through a [`dispatcher::Journal`] the owner of the durable queues provides.
//!
//! Dependencies point down: `numport-core` ← this crate ← `operator` (which owns the durable
//! queues in its database and the HTTP API) ← `numport`.

pub mod core;
pub mod dispatcher;
pub mod element;
mod framing;

pub use crate::core::allocate::{Pacer, allocate};
pub use crate::core::order::{Action, Category, Command, Element, Order, OrderError, Origin, Verb};
pub use crate::core::protection::{ElementLoad, Pressure, Protection, ProtectionState, Thresholds, Transition};
