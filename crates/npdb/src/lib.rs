//! The portability database of an operator node or SMS router (F2): which operator serves a
//! number now, and the routing number to reach it.
//!
//! The answer comes from two sources, checked in this order:
//!
//! 1. the **ported-number exceptions**, one record per number whose serving operator differs from
//!    its range holder (millions of them in a national database), and
//! 2. the **number ranges**, prefix → range-holding operator, matched longest prefix first (a few
//!    hundred or thousand prefixes).
//!
//! [`index::Index`] holds both in memory and does no I/O; following the clearinghouse's change
//! feed, persisting checkpoints and serving HTTP/ENUM are the replica's business, built on top.
//! [`snapshot`] is the text format of a whole index (wire, disk and bulk import).
//! [`mod@bench`] measures the index (`numport bench lookup`).

pub mod bench;
pub mod index;
mod ported;
mod ranges;
pub mod snapshot;

pub use index::{Hit, Index, IndexError, OpId, Operator, Route, key_of};
