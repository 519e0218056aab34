//! The terminal proof of F1 step 1, built so that seeing it does not help anyone forge another.
//!
//! The patent has the terminal "encrypt" a random number with the subscriber's 6-digit service
//! PIN. Whoever sees both can try all 10^6 PINs offline, so here (DESIGN.md §4):
//!
//! ```text
//! K     = HMAC-SHA256(K_sim, Argon2id(PIN, salt))          the port key, per subscriber
//! proof = HMAC-SHA256(K, "numport-port-v1" ‖ nonce ‖ msisdn ‖ recipient ‖ expiry)
//! ```
//!
//! `K_sim` is a per-SIM secret written at provisioning and known to the home (donor) operator,
//! which keeps only `K` (a derived key, never the PIN). An observer of `(nonce, proof)` learns
//! nothing that helps with a different nonce, number, recipient or expiry; the clearinghouse
//! makes nonces single-use and bounds the expiry window and the attempts per number.

use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::clock::Millis;
use crate::msisdn::Msisdn;
use crate::operator::OperatorName;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a terminal nonce.
pub const NONCE_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("argon2 parameters rejected: {0}")]
    Params(String),
    #[error("salt must be 8 to 64 bytes")]
    Salt,
    #[error("{what} must be {len} hex-encoded bytes")]
    Encoding { what: &'static str, len: usize },
}

/// Argon2id cost for stretching the PIN. The default is OWASP's (19 MiB, 2 passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinStretch {
    pub memory_kib: u32,
    pub passes: u32,
}

impl Default for PinStretch {
    fn default() -> Self {
        PinStretch { memory_kib: 19 * 1024, passes: 2 }
    }
}

impl PinStretch {
    /// The cheapest Argon2id allows; for load generators that create many subscribers.
    pub const FAST: PinStretch = PinStretch { memory_kib: 8, passes: 1 };
}

/// A subscriber's port key `K`; what the donor stores instead of the PIN.
#[derive(Clone, PartialEq, Eq)]
pub struct PortKey([u8; 32]);

impl std::fmt::Debug for PortKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortKey(..)")
    }
}

impl PortKey {
    /// `K = HMAC-SHA256(K_sim, Argon2id(PIN, salt))`.
    pub fn derive(k_sim: &[u8], pin: &str, salt: &[u8], cost: PinStretch) -> Result<PortKey, ProofError> {
        if !(8..=64).contains(&salt.len()) {
            return Err(ProofError::Salt);
        }
        let params =
            Params::new(cost.memory_kib, cost.passes, 1, Some(32)).map_err(|e| ProofError::Params(e.to_string()))?;
        let mut stretched = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(pin.as_bytes(), salt, &mut stretched)
            .map_err(|e| ProofError::Params(e.to_string()))?;
        Ok(PortKey(hmac(k_sim, &[&stretched])))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> PortKey {
        PortKey(bytes)
    }

    pub fn from_hex(s: &str) -> Result<PortKey, ProofError> {
        decode_fixed(s, "port key").map(PortKey)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The proof for one porting request.
    pub fn prove(&self, nonce: &Nonce, msisdn: &Msisdn, recipient: &OperatorName, expiry: Millis) -> Proof {
        let m = msisdn.as_str().as_bytes();
        let r = recipient.as_str().as_bytes();
        Proof(hmac(
            &self.0,
            &[b"numport-port-v1", &nonce.0, &[m.len() as u8], m, &[r.len() as u8], r, &expiry.to_be_bytes()],
        ))
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn decode_fixed<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], ProofError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| ProofError::Encoding { what, len: N })?;
    Ok(out)
}

/// The terminal's single-use random number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl Nonce {
    pub fn from_hex(s: &str) -> Result<Nonce, ProofError> {
        decode_fixed(s, "nonce").map(Nonce)
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A terminal proof (or the donor's deposit of the expected one).
#[derive(Debug, Clone, Copy)]
pub struct Proof(pub [u8; 32]);

impl Proof {
    pub fn from_hex(s: &str) -> Result<Proof, ProofError> {
        decode_fixed(s, "proof").map(Proof)
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl PartialEq for Proof {
    /// Constant time, so that timing does not leak how much of a guess was right.
    fn eq(&self, other: &Proof) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Proof {}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PortKey {
        PortKey::derive(b"k-sim-0123456789", "123456", b"salt-salt", PinStretch::FAST).unwrap()
    }

    #[test]
    fn same_inputs_same_proof() {
        let n = Nonce([7; 16]);
        let m: Msisdn = "4790000001".parse().unwrap();
        let r: OperatorName = "opb".parse().unwrap();
        assert_eq!(key().prove(&n, &m, &r, 1000), key().prove(&n, &m, &r, 1000));
    }

    #[test]
    fn every_input_changes_the_proof() {
        let k = key();
        let n = Nonce([7; 16]);
        let m: Msisdn = "4790000001".parse().unwrap();
        let r: OperatorName = "opb".parse().unwrap();
        let p = k.prove(&n, &m, &r, 1000);
        assert_ne!(p, k.prove(&Nonce([8; 16]), &m, &r, 1000));
        assert_ne!(p, k.prove(&n, &"4790000002".parse().unwrap(), &r, 1000));
        assert_ne!(p, k.prove(&n, &m, &"opc".parse().unwrap(), 1000));
        assert_ne!(p, k.prove(&n, &m, &r, 1001));
        let other_pin = PortKey::derive(b"k-sim-0123456789", "123457", b"salt-salt", PinStretch::FAST).unwrap();
        assert_ne!(p, other_pin.prove(&n, &m, &r, 1000));
        let other_sim = PortKey::derive(b"k-sim-0123456780", "123456", b"salt-salt", PinStretch::FAST).unwrap();
        assert_ne!(p, other_sim.prove(&n, &m, &r, 1000));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let n = Nonce([0xab; 16]);
        assert_eq!(Nonce::from_hex(&n.to_hex()).unwrap(), n);
        assert!(Nonce::from_hex("abcd").is_err());
        assert!(Proof::from_hex("zz").is_err());
        assert!(PortKey::derive(b"k", "1", b"short", PinStretch::FAST).is_err());
    }
}
