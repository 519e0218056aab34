//! The portability replica (F2): every operator's local copy of who serves each number.
//!
//! A replica follows the clearinghouse's routing change feed ([`follower`]), keeps the
//! [`npdb::Index`] current in memory, persists a snapshot and a journal of applied changes
//! ([`disk`]), and answers lookups over HTTP ([`http`]) and ENUM/DNS ([`dns`]). It runs inside
//! every operator node and standalone as `numport npdb` (e.g. next to an SMS router).
//!
//! Lookups never wait for the network: while the clearinghouse is unreachable the replica
//! answers from what it has and says so (`stale` in `/healthz`, `npdb_stale` in `/metrics`,
//! and in every HTTP answer).

mod config;
pub mod disk;
pub mod dns;
pub mod follower;
pub mod http;
mod replica;

pub use config::{EnumConfig, ReplicaConfig};
pub use follower::{FeedGap, check_page};
pub use replica::{Answer, Replica, ReplicaError, Status, apply_change};
