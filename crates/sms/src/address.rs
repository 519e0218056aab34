//! TP addresses (TS 23.040 §9.1.2.5): type of number, numbering plan, and the digits as
//! swapped semi-octets, or an alphanumeric sender in the 7-bit alphabet.

use crate::{DecodeError, EncodeError, Reader, gsm7};

/// Type of number (3 bits).
pub const TON_UNKNOWN: u8 = 0;
pub const TON_INTERNATIONAL: u8 = 1;
pub const TON_NATIONAL: u8 = 2;
pub const TON_ALPHANUMERIC: u8 = 5;
/// Numbering plan: ISDN/E.164.
pub const NPI_ISDN: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub ton: u8,
    pub npi: u8,
    /// Digits (`0-9*#abc`) or, for [`TON_ALPHANUMERIC`], the text.
    pub value: String,
}

const DIGITS: &[u8; 15] = b"0123456789*#abc";

impl Address {
    /// An international E.164 number (digits without `+`).
    pub fn international(digits: &str) -> Address {
        Address { ton: TON_INTERNATIONAL, npi: NPI_ISDN, value: digits.to_owned() }
    }

    /// An alphanumeric sender such as a bank's name.
    pub fn alphanumeric(text: &str) -> Address {
        Address { ton: TON_ALPHANUMERIC, npi: 0, value: text.to_owned() }
    }

    fn type_octet(&self) -> u8 {
        0x80 | (self.ton & 0x07) << 4 | (self.npi & 0x0F)
    }

    /// The TP-OA/DA/RA form: length in semi-octets, type, value.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.ton == TON_ALPHANUMERIC {
            let septets = gsm7::encode(&self.value).map_err(|_| EncodeError::Address(self.value.clone()))?;
            let packed = gsm7::pack(&septets, 0);
            if packed.len() > 10 {
                return Err(EncodeError::Address(self.value.clone()));
            }
            // Length counts the semi-octets that carry data: 7 bits per septet, rounded up.
            out.push((septets.len() * 7).div_ceil(4) as u8);
            out.push(self.type_octet());
            out.extend_from_slice(&packed);
            return Ok(());
        }
        let digits: Vec<u8> = self
            .value
            .bytes()
            .map(|b| DIGITS.iter().position(|&d| d == b.to_ascii_lowercase()).map(|p| p as u8))
            .collect::<Option<_>>()
            .ok_or_else(|| EncodeError::Address(self.value.clone()))?;
        if digits.len() > 20 {
            return Err(EncodeError::Address(self.value.clone()));
        }
        out.push(digits.len() as u8);
        out.push(self.type_octet());
        out.extend(swap_semi_octets(&digits));
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Address, DecodeError> {
        let len = r.u8("address length")? as usize;
        let toa = r.u8("type of address")?;
        let (ton, npi) = ((toa >> 4) & 0x07, toa & 0x0F);
        if len > 20 {
            return Err(DecodeError::AddressLength(len));
        }
        let octets = r.take(len.div_ceil(2), "address digits")?;
        let value = if ton == TON_ALPHANUMERIC {
            let septets = gsm7::unpack(octets, len * 4 / 7, 0).ok_or(DecodeError::Truncated("address text"))?;
            gsm7::decode(&septets)
        } else {
            let mut s = String::with_capacity(len);
            for i in 0..len {
                let nibble = if i % 2 == 0 { octets[i / 2] & 0x0F } else { octets[i / 2] >> 4 };
                // 0xF is only filler; anything else beyond the table reads as '?'.
                s.push(DIGITS.get(nibble as usize).map_or('?', |&d| d as char));
            }
            s
        };
        Ok(Address { ton, npi, value })
    }
}

/// Digits as swapped semi-octets, padded with 0xF.
pub(crate) fn swap_semi_octets(digits: &[u8]) -> impl Iterator<Item = u8> + '_ {
    digits.chunks(2).map(|p| p[0] | p.get(1).copied().unwrap_or(0x0F) << 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        let mut out = Vec::new();
        Address::international("46708251358").encode(&mut out).unwrap();
        assert_eq!(hex::encode_upper(&out), "0B916407281553F8");
        let back = Address::decode(&mut Reader::new(&out)).unwrap();
        assert_eq!(back, Address::international("46708251358"));

        let mut out = Vec::new();
        Address::alphanumeric("MyBank").encode(&mut out).unwrap();
        let back = Address::decode(&mut Reader::new(&out)).unwrap();
        assert_eq!(back.value, "MyBank");
        assert!(Address::international("12x").encode(&mut Vec::new()).is_err());
    }
}
