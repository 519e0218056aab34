//! The pieces of the `numport` binary that its tests use too: starting roles as processes
//! ([`launch`]), a whole clearinghouse-plus-operators system on loopback ([`cluster`]), and
//! the port key a handset shares with its home operator ([`handset`]), and one node with
//! account opening and blank cards in stock ([`ota_node`]).

pub mod cluster;
pub mod handset;
pub mod launch;
pub mod ota_node;

/// The log filter when none is given. hickory-server logs every DNS request at `info`, which
/// at ENUM rates costs more than answering; its warnings and errors still show.
pub const DEFAULT_LOG: &str = "info,hickory_server=warn";
