//! The pieces of the `numport` binary that its tests use too: starting roles as processes
//! ([`launch`]) and a whole clearinghouse-plus-operators system on loopback ([`cluster`]).

pub mod cluster;
pub mod launch;
