//! The SMPP side of the operator's SMS center (F3): the server that enterprises (ESMEs, such as
//! a bank) and other operators' SMS centers bind to, and the client that the interconnect, the
//! demo's bank and the SMS benchmark speak through. SMPP 3.4 and 5.0 share the wire format of
//! every PDU served here; PDU bodies are decoded and encoded with `rusmpp` (5.0, a superset),
//! framing is ours ([`frame`]), so that an undecodable PDU is answered with generic_nack and the
//! connection stays in step.
//!
//! - [`server`]: binds (with the `sc_interface_version` negotiated), submits handed to a
//!   [`server::SubmitHandler`] within a window, throttling, timeouts, and
//!   [`server::Receivers`] through which the application sends deliver_sm (delivery receipts;
//!   on an interconnect, messages).
//! - [`operations`]: submit_multi, data_sm, query_sm, cancel_sm, replace_sm and outbind, in
//!   the handler's terms: every message submission reaches it as one submit_sm.
//! - [`client`]: a bind with any number of requests outstanding, and the deliver_sm it receives.
//!
//! Both speak plain TCP or TLS (rustls; the configurations come from the caller, built by
//! `numport-tls` from PEM files). With `SSLKEYLOGFILE` set in the environment, both write
//! their TLS secrets to that file, so that Wireshark can decrypt a capture; unset, nothing is
//! written.
//! - [`esme`]: ESME accounts, with passwords kept as Argon2id hashes, and their rate limits.
//! - [`bind_guard`]: failed binds locked out per system_id and per address, and sessions
//!   capped per ESME.
//! - [`receipt`]: the customary delivery-receipt text.
//! - [`time`]: SMPP's absolute and relative time fields.
//!
//! Routing by the portability replica, durable store-and-forward, delivery to terminals and the
//! interconnect links live in the operator node (`operator::sms_center`), which implements the
//! handler.

pub mod bind_guard;
pub mod client;
pub mod esme;
pub mod frame;
pub mod operations;
pub mod receipt;
pub mod server;
pub mod time;

pub use bind_guard::{LockoutConfig, LockoutScope, Observer, Refusal, SmppObserver};
pub use esme::{DefaultAlphabet, EsmeAccount, EsmeDirectory};
pub use operations::MessageStatus;
pub use server::{
    BindMode, ChannelHandler, DeliverError, Endpoints, Receivers, SmppConfig, SubmitHandler, Submitted, serve,
};

/// The SMPP library this crate speaks through, for handlers that read submits.
pub use rusmpp;
