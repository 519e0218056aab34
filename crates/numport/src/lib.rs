//! The pieces of the `numport` binary that its tests use too: starting roles as processes
//! ([`launch`]) and a whole clearinghouse-plus-operators system on loopback ([`cluster`]).

pub mod cluster;
pub mod launch;

/// The log filter when none is given. hickory-server logs every DNS request at `info`, which
/// at ENUM rates costs more than answering; its warnings and errors still show.
pub const DEFAULT_LOG: &str = "info,hickory_server=warn";
