//! The operator's SMS center (F3), first part: the SMPP server that enterprises (ESMEs, such as
//! a bank) bind to and submit through. SMPP 3.4 and 5.0 share the wire format of every PDU
//! served here; PDU bodies are decoded and encoded with `rusmpp` (5.0, a superset), framing is
//! ours ([`frame`]).
//!
//! Still to come (issue 4): routing by the portability replica, durable store-and-forward,
//! delivery receipts, the interconnect to other operators' SMS centers, and the air interface.

pub mod client;
pub mod esme;
pub mod frame;
pub mod receipt;
pub mod server;
pub mod time;

pub use esme::{EsmeAccount, EsmeDirectory};
pub use server::{BindMode, ChannelHandler, DeliverError, Receivers, SmppConfig, SubmitHandler, Submitted, serve};

/// The SMPP library this crate speaks through, for handlers that read submits.
pub use rusmpp;
