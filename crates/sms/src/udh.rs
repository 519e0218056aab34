//! User data headers (TS 23.040 §9.2.3.24): a length octet, then information elements, each
//! an identifier, a length and data. Concatenation and F3's authentication element
//! ([`crate::auth`]) are decoded; every other element, and an authentication element that is
//! malformed, is kept as it came, so a header survives decode and encode byte for byte.

use crate::DecodeError;
use crate::auth::{AuthElement, IEI_SMS_AUTH};

/// IEI of a concatenated short message with an 8-bit reference.
pub const IEI_CONCAT_8: u8 = 0x00;
/// IEI of a concatenated short message with a 16-bit reference.
pub const IEI_CONCAT_16: u8 = 0x08;
/// IEI of the command packet identifier (CPI) of SIM data download (TS 31.115 §4.2): empty;
/// the secured command packet follows the header.
pub const IEI_COMMAND_PACKET: u8 = 0x70;
/// IEI of the response packet identifier (RPI) of a proof of receipt (TS 31.115 §4.4): empty;
/// the secured response packet follows the header.
pub const IEI_RESPONSE_PACKET: u8 = 0x71;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InformationElement {
    Concat(Concat),
    /// The SMS center's authentication element (IEI [`IEI_SMS_AUTH`]).
    Auth(AuthElement),
    Other {
        iei: u8,
        data: Vec<u8>,
    },
}

/// One part of a concatenated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    pub reference: u16,
    /// The reference travels in 16 bits (IEI 0x08) rather than 8 (IEI 0x00).
    pub wide: bool,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDataHeader {
    pub elements: Vec<InformationElement>,
}

impl InformationElement {
    /// The command packet identifier (IEI 0x70, no data).
    pub fn command_packet() -> InformationElement {
        InformationElement::Other { iei: IEI_COMMAND_PACKET, data: Vec::new() }
    }

    /// The response packet identifier (IEI 0x71, no data).
    pub fn response_packet() -> InformationElement {
        InformationElement::Other { iei: IEI_RESPONSE_PACKET, data: Vec::new() }
    }

    /// Its length in the header: identifier, length octet and data.
    pub fn encoded_len(&self) -> usize {
        match self {
            InformationElement::Concat(c) if c.wide => 6,
            InformationElement::Concat(_) => 5,
            InformationElement::Auth(_) => crate::auth::ELEMENT_OCTETS,
            InformationElement::Other { data, .. } => 2 + data.len(),
        }
    }
}

impl UserDataHeader {
    /// Whether an element with identifier `iei` is present (concatenation: 0x00 or 0x08).
    pub fn has(&self, iei: u8) -> bool {
        self.elements.iter().any(|e| match e {
            InformationElement::Concat(c) => iei == if c.wide { IEI_CONCAT_16 } else { IEI_CONCAT_8 },
            InformationElement::Auth(_) => iei == IEI_SMS_AUTH,
            InformationElement::Other { iei: i, .. } => *i == iei,
        })
    }

    pub fn concat(&self) -> Option<Concat> {
        self.elements.iter().find_map(|e| match e {
            InformationElement::Concat(c) => Some(*c),
            InformationElement::Auth(_) | InformationElement::Other { .. } => None,
        })
    }

    /// The header's bytes, length octet (UDHL) first.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8];
        for e in &self.elements {
            match e {
                InformationElement::Concat(c) if c.wide => {
                    out.extend([IEI_CONCAT_16, 4]);
                    out.extend(c.reference.to_be_bytes());
                    out.extend([c.total, c.seq]);
                }
                InformationElement::Concat(c) => out.extend([IEI_CONCAT_8, 3, c.reference as u8, c.total, c.seq]),
                InformationElement::Auth(a) => {
                    out.extend([IEI_SMS_AUTH, crate::auth::ELEMENT_LEN as u8]);
                    out.extend(a.encode());
                }
                InformationElement::Other { iei, data } => {
                    out.extend([*iei, data.len() as u8]);
                    out.extend_from_slice(data);
                }
            }
        }
        out[0] = (out.len() - 1) as u8;
        out
    }

    /// Decodes a header from the start of `ud`; returns it and its length with the UDHL octet.
    pub fn decode(ud: &[u8]) -> Result<(UserDataHeader, usize), DecodeError> {
        let len = *ud.first().ok_or(DecodeError::UserDataHeader("no header length"))? as usize;
        let body = ud.get(1..1 + len).ok_or(DecodeError::UserDataHeader("longer than the user data"))?;
        let mut elements = Vec::new();
        let mut at = 0;
        while at < body.len() {
            let (iei, l) = match body.get(at..at + 2) {
                Some(&[i, l]) => (i, l as usize),
                _ => return Err(DecodeError::UserDataHeader("element cut short")),
            };
            let data = body.get(at + 2..at + 2 + l).ok_or(DecodeError::UserDataHeader("element longer than header"))?;
            elements.push(match (iei, data) {
                (IEI_CONCAT_8, &[r, total, seq]) => {
                    InformationElement::Concat(Concat { reference: r as u16, wide: false, total, seq })
                }
                (IEI_CONCAT_16, &[r1, r2, total, seq]) => InformationElement::Concat(Concat {
                    reference: u16::from_be_bytes([r1, r2]),
                    wide: true,
                    total,
                    seq,
                }),
                (IEI_SMS_AUTH, data) => AuthElement::decode(data)
                    .map_or_else(|_| InformationElement::Other { iei, data: data.to_vec() }, InformationElement::Auth),
                _ => InformationElement::Other { iei, data: data.to_vec() },
            });
            at += 2 + l;
        }
        Ok((UserDataHeader { elements }, 1 + len))
    }
}
