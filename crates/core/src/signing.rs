//! Signatures on the clearinghouse's callbacks to operators, and the per-operator secrets.
//!
//! `X-Numport-Signature: v1=hex(HMAC-SHA256(secret, timestamp_ms ‖ "." ‖ body))`, with the
//! timestamp in `X-Numport-Timestamp`. The receiver checks the MAC, refuses timestamps outside a
//! tolerance window (stale captures), and remembers message ids it has seen (replays inside it).
//!
//! The clearinghouse stores no callback secret: it derives each from its master key, the
//! operator's name and a version that rotation increments.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::clock::Millis;

type HmacSha256 = Hmac<Sha256>;

pub const SIGNATURE_HEADER: &str = "x-numport-signature";
pub const TIMESTAMP_HEADER: &str = "x-numport-timestamp";
pub const MESSAGE_ID_HEADER: &str = "x-numport-message-id";

/// How far a callback's timestamp may be from the receiver's clock.
pub const DEFAULT_TOLERANCE_MS: Millis = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header missing or not of the form v1=<64 hex digits>")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("timestamp {timestamp} is {skew_ms} ms away from now; at most {tolerance_ms} allowed")]
    Stale { timestamp: Millis, skew_ms: Millis, tolerance_ms: Millis },
}

fn mac(secret: &[u8], timestamp: Millis, body: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// The signature header value for a body sent at `timestamp`.
pub fn sign(secret: &[u8], timestamp: Millis, body: &[u8]) -> String {
    format!("v1={}", hex::encode(mac(secret, timestamp, body)))
}

/// Check a received callback. Replays within the window are the receiver's to refuse by id.
pub fn verify(
    secret: &[u8],
    timestamp: Millis,
    body: &[u8],
    signature: &str,
    now: Millis,
    tolerance_ms: Millis,
) -> Result<(), SignatureError> {
    let hex_sig = signature.strip_prefix("v1=").ok_or(SignatureError::Malformed)?;
    let mut given = [0u8; 32];
    hex::decode_to_slice(hex_sig, &mut given).map_err(|_| SignatureError::Malformed)?;
    let skew_ms = now.saturating_sub(timestamp).saturating_abs();
    if skew_ms > tolerance_ms {
        return Err(SignatureError::Stale { timestamp, skew_ms, tolerance_ms });
    }
    if bool::from(mac(secret, timestamp, body).ct_eq(&given)) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// The callback secret of one operator at one key version: `HMAC(master, "callback" ‖ name ‖ v)`.
pub fn derive_callback_secret(master_key: &[u8], operator: &str, version: i64) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(master_key).unwrap_or_else(|_| unreachable!());
    m.update(b"numport-callback-v1\0");
    m.update(operator.as_bytes());
    m.update(b"\0");
    m.update(&version.to_be_bytes());
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify() {
        let s = sign(b"secret", 1000, b"{}");
        assert_eq!(verify(b"secret", 1000, b"{}", &s, 1000, 10), Ok(()));
        assert_eq!(verify(b"secret", 1000, b"{ }", &s, 1000, 10), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", 1000, b"{}", &s, 1000, 10), Err(SignatureError::Mismatch));
        assert!(matches!(verify(b"secret", 1000, b"{}", &s, 2000, 10), Err(SignatureError::Stale { .. })));
        assert_eq!(verify(b"secret", 1000, b"{}", "v2=00", 1000, 10), Err(SignatureError::Malformed));
        assert_eq!(verify(b"secret", 1000, b"{}", "v1=zz", 1000, 10), Err(SignatureError::Malformed));
    }

    #[test]
    fn derived_secrets_differ_by_operator_and_version() {
        let a1 = derive_callback_secret(b"master", "opa", 1);
        assert_ne!(a1, derive_callback_secret(b"master", "opa", 2));
        assert_ne!(a1, derive_callback_secret(b"master", "opb", 1));
        assert_ne!(a1, derive_callback_secret(b"other", "opa", 1));
        assert_eq!(a1, derive_callback_secret(b"master", "opa", 1));
    }
}
