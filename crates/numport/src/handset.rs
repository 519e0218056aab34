//! What a handset and its home operator share about porting: the port key's derivation.
//!
//! `K = HMAC-SHA256(K_sim, Argon2id(PIN, salt))` ([`PortKey::derive`]) needs a salt that the
//! SIM and the home operator both know without exchanging anything: it is the SIM's IMSI.
//! The operator derives `K` once at provisioning, with an Argon2 cost of its choosing
//! ([`PinStretch`]), and stores only `K`; the handset must stretch the PIN at the same cost.

use numport_core::proof::{PinStretch, PortKey, ProofError};

/// The port key of the SIM `imsi` with secret `k_sim`, for the subscriber's `pin`.
pub fn port_key(k_sim: &[u8], pin: &str, imsi: &str, cost: PinStretch) -> Result<PortKey, ProofError> {
    PortKey::derive(k_sim, pin, imsi.as_bytes(), cost)
}
