//! Secrets at rest: the keys the node holds for its subscribers' cards (OTA keys, the
//! SMS-authentication key) are stored sealed, never plain, so that a copy of the database or a
//! backup reveals none of them.
//!
//! A [`Sealer`] holds the node's key-encryption key (`key_encryption_key` in the node's
//! configuration, 32 bytes, hex) and seals each secret with AES-256-GCM under a fresh random
//! nonce. The caller names what the secret is for and whose it is (`context`, e.g.
//! `b"ota-kic:89490200001234567890"`): it is authenticated with the secret, so a sealed value
//! copied into another row, or read as another kind of key, does not open.
//!
//! A sealed value is `01 ‖ key id (4) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`, stored as hex
//! text. The key id is the first four bytes of SHA-256 over the key-encryption key: a value
//! sealed under another key is refused as such ([`SealError::OtherKey`]) rather than as
//! tampered, which is what an operator needs to know after a key change.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// Why a sealed value does not open, or a key-encryption key is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("key_encryption_key must be 64 hex digits (32 bytes)")]
    BadKey,
    #[error("sealed value is not hex")]
    NotHex,
    #[error("sealed value is too short or of unknown version {0}")]
    Malformed(u8),
    #[error("sealed under another key-encryption key (key id {0})")]
    OtherKey(String),
    #[error("sealed value fails authentication (tampered, or sealed for another context)")]
    Tampered,
}

/// The node's key-encryption key, ready to seal and open.
pub struct Sealer {
    cipher: Aes256Gcm,
    key_id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer(key id {})", hex::encode(self.key_id))
    }
}

impl Sealer {
    pub fn new(key_encryption_key: &[u8; 32]) -> Sealer {
        let digest = Sha256::digest(key_encryption_key);
        let mut key_id = [0; KEY_ID_LEN];
        key_id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Sealer { cipher: Aes256Gcm::new(key_encryption_key.into()), key_id }
    }

    /// The key from its configured hex form.
    pub fn from_hex(key_encryption_key: &str) -> Result<Sealer, SealError> {
        let bytes = Zeroizing::new(hex::decode(key_encryption_key.trim()).map_err(|_| SealError::BadKey)?);
        let key: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| SealError::BadKey)?;
        Ok(Sealer::new(key))
    }

    /// A fresh random key-encryption key, hex: what a configuration generator writes.
    pub fn generate_hex() -> String {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        hex::encode(key.as_ref())
    }

    /// `secret` sealed for `context`, as the hex text stored in the database.
    pub fn seal(&self, context: &[u8], secret: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = self.associated_data(context);
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret, aad: &aad })
            .unwrap_or_else(|_| unreachable!("AES-GCM encrypts any message shorter than 64 GiB"));
        let mut sealed = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(&self.key_id);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        hex::encode(sealed)
    }

    /// The secret a [`Sealer::seal`] of the same `context` stored, wiped from memory on drop.
    pub fn open(&self, context: &[u8], sealed_hex: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let sealed = hex::decode(sealed_hex.trim()).map_err(|_| SealError::NotHex)?;
        if sealed.len() < HEADER_LEN + TAG_LEN || sealed[0] != VERSION {
            return Err(SealError::Malformed(sealed.first().copied().unwrap_or(0)));
        }
        let (key_id, rest) = sealed[1..].split_at(KEY_ID_LEN);
        if key_id != self.key_id {
            return Err(SealError::OtherKey(hex::encode(key_id)));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let aad = self.associated_data(context);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered)
    }

    /// The header and the context, both authenticated: a value cannot be moved to another
    /// context nor its header edited.
    fn associated_data(&self, context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(1 + KEY_ID_LEN + context.len());
        aad.push(VERSION);
        aad.extend_from_slice(&self.key_id);
        aad.extend_from_slice(context);
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&[byte; 32])
    }

    #[test]
    fn opens_what_it_sealed() {
        let s = sealer(7);
        let sealed = s.seal(b"ota-kic:8949", b"0123456789abcdef");
        assert_eq!(s.open(b"ota-kic:8949", &sealed).unwrap().as_slice(), b"0123456789abcdef");
        assert!(!sealed.contains(&hex::encode(b"0123456789abcdef")), "the secret is not in the clear");
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let s = sealer(7);
        assert_ne!(s.seal(b"c", b"same secret"), s.seal(b"c", b"same secret"));
    }

    #[test]
    fn another_context_does_not_open() {
        let s = sealer(7);
        let sealed = s.seal(b"ota-kic:8949", b"secret");
        assert_eq!(s.open(b"ota-kid:8949", &sealed), Err(SealError::Tampered));
        assert_eq!(s.open(b"ota-kic:8950", &sealed), Err(SealError::Tampered));
    }

    #[test]
    fn another_key_is_named_as_such() {
        let sealed = sealer(7).seal(b"c", b"secret");
        assert!(matches!(sealer(8).open(b"c", &sealed), Err(SealError::OtherKey(_))));
    }

    #[test]
    fn any_flipped_bit_is_refused() {
        let s = sealer(7);
        let sealed = hex::decode(s.seal(b"c", b"secret")).unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(s.open(b"c", &hex::encode(&bad)).is_err(), "byte {i} flipped still opens");
        }
    }

    #[test]
    fn malformed_values_are_errors() {
        let s = sealer(7);
        assert_eq!(s.open(b"c", "zz"), Err(SealError::NotHex));
        assert_eq!(s.open(b"c", ""), Err(SealError::Malformed(0)));
        assert_eq!(s.open(b"c", &"02".repeat(40)), Err(SealError::Malformed(2)));
    }

    #[test]
    fn configured_keys_are_checked() {
        assert!(Sealer::from_hex(&Sealer::generate_hex()).is_ok());
        assert_eq!(Sealer::from_hex("abcd").unwrap_err(), SealError::BadKey);
        assert_eq!(Sealer::from_hex(&"g".repeat(64)).unwrap_err(), SealError::BadKey);
    }
}
