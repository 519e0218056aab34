//! Online charging (F4): the credit-control domain the Diameter Gy layer calls.
//!
//! The Diameter codec and peer live in their own crate; this one knows CCRs and CCAs only as
//! domain structs ([`CreditControlRequest`], [`CreditControlAnswer`]) and answers them through
//! [`Ocs::credit_control`]. Its design, from the inside out:
//!
//! - Pure modules, no I/O, tested exhaustively: [`rating`] (tariffs by destination prefix and
//!   time of day, compiled to a trie so rating allocates nothing), [`balance`] (buckets,
//!   reservations, credit limit, double-entry journal), [`session`] (RFC 4006 per MSCC,
//!   retransmissions, Tcc), and the four seed methods: [`partial_cdr`] (CN102083044A),
//!   [`online_list`] (CN102547642B), [`capacity`] (CN101425910A), [`data_charging`]
//!   (CN102083042B).
//! - [`store`]: the OCS's tables through `numport-db` (SQLite or PostgreSQL), migrations of its
//!   own, and the group commit's rows and statements.
//! - [`engine`]: the accounts and open sessions in memory, the authoritative copy of the one
//!   OCS process that owns the database. A request changes its account under the account's
//!   lock, so concurrent sessions on one account are serialised and cannot overrun its credit
//!   limit; its effects (account row, journal, session with its answer) go to one writer that
//!   commits whatever has queued in one transaction, and the answer is returned only once that
//!   commits. A retransmission gets the stored answer, waiting for its commit if need be.
//! - [`Ocs`] ([`service`]): the service the Gy server and the operator node's API call, with its
//!   metrics; [`gy`] maps the `diameter` crate's CCR and CCA to the domain structs and is the
//!   Diameter server's Credit-Control handler; [`http`] is the JSON API of accounts, recharges,
//!   tariffs and the seed methods; [`server`] serves Gy and supervises sessions for whichever
//!   role hosts the OCS; [`bench`] measures rating alone and credit control in process.

pub mod balance;
pub mod bench;
pub mod capacity;
pub mod data_charging;
pub mod engine;
pub mod gy;
pub mod http;
pub mod metrics;
pub mod online_list;
pub mod partial_cdr;
pub mod rating;
pub mod server;
pub mod service;
pub mod session;
pub mod store;

pub use balance::{Account, AccountId, Ledger};
pub use rating::{Service, TariffRule, TariffTable, TimeBand, UnitKind};
pub use service::{Ocs, OcsConfig, OcsError};
pub use session::{
    CreditControlAnswer, CreditControlRequest, FinalUnitAction, GyPolicy, MsccAnswer, MsccRequest, RequestType,
    ServiceUnits, SubscriptionId, SubscriptionIdType, result_code,
};
