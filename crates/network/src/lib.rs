//! A simulated switching centre (MSC) and packet gateway (PGW) for many subscribers: the
//! network side of online charging (F4), what `numport network` and `numport bench ocs` run.
//!
//! - Calls: the called number is looked up in the OCS's online-charging list (CN102547642B,
//!   fetched and cached); a listed call is charged online, either over Diameter Gy (CCR-I/U/T,
//!   cut at the granted units on 4012 or Final-Unit-Indication) or on partial CDRs sent every
//!   few minutes of the call (CN102083044A, cut on the OCS's cut-off); the others offline.
//! - Data sessions: Gy with one MSCC per Rating-Group and Service-Identifier, in octets, then a
//!   data usage record with the per-service volumes (CN102083042B).
//! - Every call and session, online or offline, is a record in the offline CDR files billing
//!   reconciles (docs/CDR_FILES.md): [`cdr`] is the format and its parser, [`cdr_file`] writes
//!   and rotates the files.
//!
//! Pure logic ([`cdr`], [`traffic`], [`charging`]) is kept apart from the I/O ([`cdr_file`],
//! [`ocs_api`], [`sim`], [`load`]). The Gy client is `diameter::peer::Client`, with its
//! watchdog and failover to the next OCS address; the domain types of the HTTP API are the
//! `ocs` crate's own.

pub mod cdr;
pub mod cdr_file;
pub mod charging;
pub mod load;
pub mod ocs_api;
pub mod sim;
pub mod traffic;
