//! Stand-in for the node's sealing of secrets until `operator::sealing` is merged.

use crate::OperatorError;

pub struct Sealer {
    key: [u8; 32],
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Sealer {
        Sealer { key }
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, OperatorError> {
        let pad = self.pad(aad, plaintext.len());
        let mut out: Vec<u8> = plaintext.iter().zip(pad).map(|(a, b)| a ^ b).collect();
        out.extend(self.pad(&[aad, &out].concat(), 16));
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, OperatorError> {
        let (body, tag) = sealed.split_at(sealed.len().saturating_sub(16));
        if self.pad(&[aad, body].concat(), 16) != tag {
            return Err(OperatorError::Corrupt("sealed value does not open".into()));
        }
        Ok(body.iter().zip(self.pad(aad, body.len())).map(|(a, b)| a ^ b).collect())
    }

    fn pad(&self, aad: &[u8], len: usize) -> Vec<u8> {
        use sha2::Digest;
        let mut out = Vec::new();
        let mut i = 0u32;
        while out.len() < len {
            out.extend(
                sha2::Sha256::new().chain_update(self.key).chain_update(aad).chain_update(i.to_be_bytes()).finalize(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }
}
