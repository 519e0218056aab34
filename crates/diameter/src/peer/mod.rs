//! The Diameter peer over TCP or TLS (tokio): the [`state`] machine driven by real sockets.
//!
//! - [`serve`] is the responder an OCS runs: it checks each CER (Origin-Host and Origin-Realm
//!   against the configured peers, 3010 otherwise; Auth-Application-Id 4 offered, 5010
//!   otherwise), refuses and closes a connection whose first message is not a CER, answers
//!   DWR and DPR, sends DWR after Tw of silence and closes a peer that does not answer it,
//!   validates each request against the dictionary (5001, 5014, 5004, 3009, with Failed-AVP),
//!   answers requests of other applications with 3007 and unknown commands with 3001, and
//!   closes a connection that sends a message above the maximum size (after answering it with
//!   5012 when it is a request). Credit-Control requests go to a [`CreditControlHandler`],
//!   several at a time: answers go out in the order they are ready.
//! - [`Client`] is the initiator a gateway or switching centre runs: CER, watchdog, failover to
//!   the next configured OCS address when the connection or its watchdog fails, and the
//!   requests still unanswered sent again there with the T flag.

mod client;
mod framing;
mod server;
pub mod state;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use client::{Client, ClientConfig, ClientError, ClientTls};
pub use framing::ReadError;
pub use server::{KnownPeer, ServerConfig, serve};
pub use state::Timers;

use crate::cc::{Cca, Ccr};

/// What the OCS implements: the answer to one Credit-Control request. Called concurrently for
/// requests of different sessions, and for a retransmission (`ccr.retransmitted`) of a request
/// that may already have been answered: the handler must answer it as it did the first time.
pub trait CreditControlHandler: Send + Sync + 'static {
    fn credit_control(&self, ccr: Ccr) -> impl Future<Output = Cca> + Send;
}

/// The default maximum size of a message: far above any CCR (a few hundred octets), far below
/// what would let a peer make the node buffer megabytes.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// Hop-by-Hop and End-to-End identifiers. RFC 6733 §3 asks the End-to-End identifier to start
/// with the low 12 bits of the time in its high 12 bits, so that a restarted node does not
/// reuse identifiers its peers may still hold.
#[derive(Debug)]
pub(crate) struct Identifiers {
    next: AtomicU32,
}

impl Identifiers {
    pub(crate) fn new() -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let seed = ((now.as_secs() as u32 & 0xfff) << 20) | (now.subsec_nanos() & 0xfffff);
        Identifiers { next: AtomicU32::new(seed) }
    }

    pub(crate) fn next(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// Resolves when `stop` turns true or its sender goes (without holding the watch's lock).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}
