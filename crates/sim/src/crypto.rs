//! The OTA keys and what TS 102 225 does with them: ciphering in CBC mode with a zero initial
//! value (§5.1.2: AES, or triple DES with two or three keys), and the cryptographic checksum
//! (§5.1.3: AES-CMAC, or triple-DES CBC-MAC), 8 octets long.
//!
//! Single DES is not offered at all: a key of the wrong length is refused, and so is a
//! triple-DES key whose parts repeat (which is single DES in disguise), since a 56-bit key is
//! found by brute force in days, as the 2013 OTA attacks showed.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockCipher, BlockDecrypt, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, InnerIvInit, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use cmac::{Cmac, Mac};
use des::{TdesEde2, TdesEde3};
use serde::{Deserialize, Serialize};

/// AES-CMAC over `parts`, cut to its leftmost [`CC_LEN`] octets.
macro_rules! aes_cmac {
    ($cipher:ty, $key:expr, $parts:expr) => {{
        let mut mac = <Cmac<$cipher> as KeyInit>::new_from_slice($key)
            .unwrap_or_else(|_| unreachable!("key length checked by Key::new"));
        for p in $parts {
            mac.update(p);
        }
        let tag = mac.finalize().into_bytes();
        let mut out = [0; CC_LEN];
        out.copy_from_slice(&tag[..CC_LEN]);
        out
    }};
}

/// Length of the cryptographic checksum in the packets (TS 102 225 §5.1.3.1: the
/// leftmost 8 octets of AES-CMAC; the last CBC block of triple DES).
pub const CC_LEN: usize = 8;

/// A ciphering or checksum algorithm of TS 102 225.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// AES-CBC for ciphering, AES-CMAC for the checksum; a 16-, 24- or 32-octet key.
    Aes,
    /// Triple DES (EDE) with two keys, 16 octets: the older cards.
    TripleDes2Key,
    /// Triple DES (EDE) with three keys, 24 octets.
    TripleDes3Key,
}

impl Algorithm {
    /// The cipher's block: what ciphered data is padded to.
    pub fn block_len(self) -> usize {
        match self {
            Algorithm::Aes => 16,
            Algorithm::TripleDes2Key | Algorithm::TripleDes3Key => 8,
        }
    }

    /// Bits 4..1 of KIc and KID for this algorithm (TS 102 225 §5.1.2, §5.1.3.1).
    pub fn coding(self) -> u8 {
        match self {
            Algorithm::Aes => 0b0010,
            Algorithm::TripleDes2Key => 0b0101,
            Algorithm::TripleDes3Key => 0b1001,
        }
    }
}

/// Why key bytes are not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{algorithm:?} takes no key of {len} octets")]
    Length { algorithm: Algorithm, len: usize },
    #[error("the triple-DES key repeats a part, which makes it single DES")]
    SingleDes,
}

/// A KIc or KID key with its algorithm. `Debug` shows the key check value, never the key.
/// Deserialising checks it as [`Key::new`] does, so a card file cannot smuggle in a key of
/// the wrong length or single DES.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeyRepr", into = "KeyRepr")]
pub struct Key {
    algorithm: Algorithm,
    bytes: Vec<u8>,
}

/// A [`Key`] as a card file holds it.
#[derive(Serialize, Deserialize)]
struct KeyRepr {
    algorithm: Algorithm,
    #[serde(with = "hex_bytes")]
    bytes: Vec<u8>,
}

impl TryFrom<KeyRepr> for Key {
    type Error = KeyError;

    fn try_from(r: KeyRepr) -> Result<Key, KeyError> {
        Key::new(r.algorithm, &r.bytes)
    }
}

impl From<Key> for KeyRepr {
    fn from(k: Key) -> KeyRepr {
        KeyRepr { algorithm: k.algorithm, bytes: k.bytes }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, KCV {})", self.algorithm, hex::encode_upper(self.check_value()))
    }
}

impl Key {
    pub fn new(algorithm: Algorithm, bytes: &[u8]) -> Result<Key, KeyError> {
        let ok = match algorithm {
            Algorithm::Aes => matches!(bytes.len(), 16 | 24 | 32),
            Algorithm::TripleDes2Key => bytes.len() == 16,
            Algorithm::TripleDes3Key => bytes.len() == 24,
        };
        if !ok {
            return Err(KeyError::Length { algorithm, len: bytes.len() });
        }
        if algorithm != Algorithm::Aes {
            // Parity bits (bit 1 of each octet) do not count in a DES key.
            let part = |i: usize| bytes[i * 8..i * 8 + 8].iter().map(|b| b & 0xFE).collect::<Vec<_>>();
            let parts = bytes.len() / 8;
            if part(0) == part(1) || (parts == 3 && part(1) == part(2)) {
                return Err(KeyError::SingleDes);
            }
        }
        Ok(Key { algorithm, bytes: bytes.to_vec() })
    }

    /// An AES key (16, 24 or 32 octets).
    pub fn aes(bytes: &[u8]) -> Result<Key, KeyError> {
        Key::new(Algorithm::Aes, bytes)
    }

    /// A triple-DES key: two keys in 16 octets, three in 24.
    pub fn triple_des(bytes: &[u8]) -> Result<Key, KeyError> {
        let algorithm = if bytes.len() == 24 { Algorithm::TripleDes3Key } else { Algorithm::TripleDes2Key };
        Key::new(algorithm, bytes)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key's octets, for a store that seals them.
    pub fn expose_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key check value, as card vendors print it beside a key so that the two ends can
    /// compare keys without showing them: the first 3 octets of the key enciphering a block of
    /// 0x01 octets (AES, as GlobalPlatform does) or of zeros (triple DES).
    pub fn check_value(&self) -> [u8; 3] {
        let mut block = match self.algorithm {
            Algorithm::Aes => vec![0x01; 16],
            _ => vec![0; 8],
        };
        self.encrypt_block(&mut block);
        [block[0], block[1], block[2]]
    }

    fn encrypt_block(&self, block: &mut [u8]) {
        fn one<C: BlockEncrypt + KeyInit>(key: &[u8], block: &mut [u8]) {
            block_cipher::<C>(key).encrypt_block(GenericArray::from_mut_slice(block));
        }
        match (self.algorithm, self.bytes.len()) {
            (Algorithm::Aes, 16) => one::<Aes128>(&self.bytes, block),
            (Algorithm::Aes, 24) => one::<Aes192>(&self.bytes, block),
            (Algorithm::Aes, _) => one::<Aes256>(&self.bytes, block),
            (Algorithm::TripleDes2Key, _) => one::<TdesEde2>(&self.bytes, block),
            (Algorithm::TripleDes3Key, _) => one::<TdesEde3>(&self.bytes, block),
        }
    }

    /// Enciphers `data` in place in CBC mode with a zero initial value. `data` is whole
    /// blocks (the packet codec pads it).
    pub(crate) fn encrypt_cbc(&self, data: &mut [u8]) {
        debug_assert_eq!(data.len() % self.algorithm.block_len(), 0);
        match (self.algorithm, self.bytes.len()) {
            (Algorithm::Aes, 16) => cbc_encrypt::<Aes128>(&self.bytes, data),
            (Algorithm::Aes, 24) => cbc_encrypt::<Aes192>(&self.bytes, data),
            (Algorithm::Aes, _) => cbc_encrypt::<Aes256>(&self.bytes, data),
            (Algorithm::TripleDes2Key, _) => cbc_encrypt::<TdesEde2>(&self.bytes, data),
            (Algorithm::TripleDes3Key, _) => cbc_encrypt::<TdesEde3>(&self.bytes, data),
        }
    }

    /// Deciphers `data` (whole blocks) in place, CBC with a zero initial value.
    pub(crate) fn decrypt_cbc(&self, data: &mut [u8]) {
        debug_assert_eq!(data.len() % self.algorithm.block_len(), 0);
        match (self.algorithm, self.bytes.len()) {
            (Algorithm::Aes, 16) => cbc_decrypt::<Aes128>(&self.bytes, data),
            (Algorithm::Aes, 24) => cbc_decrypt::<Aes192>(&self.bytes, data),
            (Algorithm::Aes, _) => cbc_decrypt::<Aes256>(&self.bytes, data),
            (Algorithm::TripleDes2Key, _) => cbc_decrypt::<TdesEde2>(&self.bytes, data),
            (Algorithm::TripleDes3Key, _) => cbc_decrypt::<TdesEde3>(&self.bytes, data),
        }
    }

    /// The cryptographic checksum of `parts` taken as one message: AES-CMAC cut to its
    /// leftmost 8 octets, or the last block of triple-DES CBC over the message padded with
    /// zeros to whole blocks.
    pub(crate) fn checksum(&self, parts: &[&[u8]]) -> [u8; CC_LEN] {
        match (self.algorithm, self.bytes.len()) {
            (Algorithm::Aes, 16) => aes_cmac!(Aes128, &self.bytes, parts),
            (Algorithm::Aes, 24) => aes_cmac!(Aes192, &self.bytes, parts),
            (Algorithm::Aes, _) => aes_cmac!(Aes256, &self.bytes, parts),
            (Algorithm::TripleDes2Key, _) => cbc_mac(&block_cipher::<TdesEde2>(&self.bytes), parts),
            (Algorithm::TripleDes3Key, _) => cbc_mac(&block_cipher::<TdesEde3>(&self.bytes), parts),
        }
    }
}

/// The block cipher under `key`, whose length [`Key::new`] checked.
fn block_cipher<C: KeyInit>(key: &[u8]) -> C {
    C::new_from_slice(key).unwrap_or_else(|_| unreachable!("key length checked by Key::new"))
}

fn cbc_encrypt<C: BlockCipher + BlockEncrypt + KeyInit>(key: &[u8], data: &mut [u8]) {
    let mut enc = cbc::Encryptor::<C>::inner_iv_init(block_cipher::<C>(key), &Default::default());
    for block in data.chunks_exact_mut(C::block_size()) {
        enc.encrypt_block_mut(GenericArray::from_mut_slice(block));
    }
}

fn cbc_decrypt<C: BlockCipher + BlockDecrypt + KeyInit>(key: &[u8], data: &mut [u8]) {
    let mut dec = cbc::Decryptor::<C>::inner_iv_init(block_cipher::<C>(key), &Default::default());
    for block in data.chunks_exact_mut(C::block_size()) {
        dec.decrypt_block_mut(GenericArray::from_mut_slice(block));
    }
}

/// CBC-MAC with a zero initial value over `parts`, zero-padded to whole 8-octet blocks.
fn cbc_mac<C: BlockEncrypt>(cipher: &C, parts: &[&[u8]]) -> [u8; CC_LEN] {
    let mut state = [0u8; 8];
    let mut fill = 0;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        state[fill] ^= b;
        fill += 1;
        if fill == 8 {
            cipher.encrypt_block(GenericArray::from_mut_slice(&mut state));
            fill = 0;
        }
    }
    if fill > 0 {
        cipher.encrypt_block(GenericArray::from_mut_slice(&mut state));
    }
    state
}

/// A check value for a secret that is no block-cipher key (K_sim, the SMS-authentication
/// key): the first 3 octets of SHA-256 over a label and the secret, so that two ends can
/// compare such keys without showing them.
pub fn secret_check_value(secret: &[u8]) -> [u8; 3] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(b"numport-kcv").chain_update(secret).finalize();
    [digest[0], digest[1], digest[2]]
}

/// Serde of key octets as a hex string.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode_upper(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_des_and_wrong_lengths_are_refused() {
        assert_eq!(Key::triple_des(&[0x11; 16]), Err(KeyError::SingleDes));
        let mut k = [0x11u8; 24];
        k[..8].fill(0x22);
        assert_eq!(Key::triple_des(&k), Err(KeyError::SingleDes), "K2 = K3");
        assert_eq!(Key::triple_des(&[1; 8]), Err(KeyError::Length { algorithm: Algorithm::TripleDes2Key, len: 8 }));
        assert!(matches!(Key::aes(&[1; 20]), Err(KeyError::Length { .. })));
        assert!(Key::aes(&[1; 32]).is_ok());
    }

    #[test]
    fn a_stored_key_is_checked_when_read() {
        let k = Key::aes(&[7; 16]).unwrap();
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<Key>(&json).unwrap(), k);
        let short = json.replace(&"07".repeat(16), &"07".repeat(5));
        assert!(serde_json::from_str::<Key>(&short).is_err());
        let des = r#"{"algorithm":"triple_des2_key","bytes":"11111111111111111111111111111111"}"#;
        assert!(serde_json::from_str::<Key>(des).unwrap_err().to_string().contains("single DES"));
    }

    #[test]
    fn debug_shows_the_check_value_not_the_key() {
        let k = Key::aes(&hex::decode("000102030405060708090a0b0c0d0e0f").unwrap()).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("0001020304"), "{shown}");
        assert!(shown.contains("KCV"));
    }

    /// FIPS 197 Appendix C.1 (AES-128) and NIST SP 800-38B example 2 (CMAC, 16 octets),
    /// through the CBC path with one block and the checksum cut to 8 octets.
    #[test]
    fn aes_known_answers() {
        let k = Key::aes(&hex::decode("000102030405060708090a0b0c0d0e0f").unwrap()).unwrap();
        let mut block = hex::decode("00112233445566778899aabbccddeeff").unwrap();
        k.encrypt_cbc(&mut block);
        assert_eq!(hex::encode(&block), "69c4e0d86a7b0430d8cdb78070b4c55a");
        k.decrypt_cbc(&mut block);
        assert_eq!(hex::encode(&block), "00112233445566778899aabbccddeeff");

        let k = Key::aes(&hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap()).unwrap();
        let m = hex::decode("6bc1bee22e409f96e93d7e117393172a").unwrap();
        assert_eq!(hex::encode(k.checksum(&[&m[..5], &m[5..]])), "070a16b46b4d4144");
    }
}
