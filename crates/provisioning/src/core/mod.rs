//! The device's logic, free of I/O: no sockets, no database, no tokio. Time is a parameter.
//!
//! - [`order`]: orders, their [`Category`](order::Category), and their expansion into
//!   [`Command`](order::Command)s per [`Element`](order::Element).
//! - [`protection`]: the per-category state machine with hysteresis and the pressure it reads.
//! - [`allocate`]: the pacer that keeps an element within its capacity and the priority
//!   allocation of its budget.
//! - [`wire`]: the elements' line protocol.

pub mod allocate;
pub mod order;
pub mod protection;
pub mod wire;
