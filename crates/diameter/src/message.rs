//! The message header (RFC 6733 §3) and a message as a header over a borrowed body of AVPs.

use crate::avp::{Avp, AvpIter};
use crate::dict::AvpDef;
use crate::error::Error;

/// The header's length; the AVPs start after it.
pub const HEADER_LEN: usize = 20;

/// Request: clear in an answer.
pub const FLAG_R: u8 = 0x80;
/// Proxiable.
pub const FLAG_P: u8 = 0x40;
/// Error: an answer carrying a protocol error (3xxx).
pub const FLAG_E: u8 = 0x20;
/// Potentially retransmitted: a request sent again after a failover or a reconnection.
pub const FLAG_T: u8 = 0x10;
/// Flags RFC 6733 reserves.
pub const FLAGS_RESERVED: u8 = 0x0f;

/// The 20-octet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    /// Message Length: header and AVPs, a multiple of 4.
    pub length: u32,
    pub flags: u8,
    pub command: u32,
    pub application: u32,
    /// Matches an answer to its request on one connection.
    pub hop_by_hop: u32,
    /// Detects duplicates end to end (with Origin-Host).
    pub end_to_end: u32,
}

impl Header {
    /// A version 1 request header (length filled in when the message is written).
    pub fn request(command: u32, application: u32, hop_by_hop: u32, end_to_end: u32) -> Self {
        Header { version: 1, length: 0, flags: FLAG_R | FLAG_P, command, application, hop_by_hop, end_to_end }
    }

    /// The header of the answer to a request with this header: version 1 (whatever the
    /// request said), R and T cleared, P kept, E set for a protocol error (3xxx).
    pub fn answer(&self, result_code: u32) -> Self {
        let e = if crate::dict::result::is_protocol_error(result_code) { FLAG_E } else { 0 };
        Header { version: 1, length: 0, flags: (self.flags & FLAG_P) | e, ..*self }
    }

    /// The Message Length stated by the first 4 octets of a message (for framing a stream).
    pub fn stated_length(prefix: &[u8; 4]) -> u32 {
        u32::from_be_bytes([0, prefix[1], prefix[2], prefix[3]])
    }

    /// Reads the header's fields, without checking them.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            version: b[0],
            length: word(0) & 0x00ff_ffff,
            flags: b[4],
            command: word(4) & 0x00ff_ffff,
            application: word(8),
            hop_by_hop: word(12),
            end_to_end: word(16),
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&((u32::from(self.version) << 24) | (self.length & 0x00ff_ffff)).to_be_bytes());
        out.extend_from_slice(&((u32::from(self.flags) << 24) | (self.command & 0x00ff_ffff)).to_be_bytes());
        out.extend_from_slice(&self.application.to_be_bytes());
        out.extend_from_slice(&self.hop_by_hop.to_be_bytes());
        out.extend_from_slice(&self.end_to_end.to_be_bytes());
    }

    pub fn is_request(&self) -> bool {
        self.flags & FLAG_R != 0
    }

    pub fn is_retransmission(&self) -> bool {
        self.flags & FLAG_T != 0
    }

    pub fn is_error(&self) -> bool {
        self.flags & FLAG_E != 0
    }
}

/// A whole message: its header and its AVPs, borrowed from the buffer it was read into.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub header: Header,
    pub body: &'a [u8],
}

impl<'a> Message<'a> {
    /// Checks the header of exactly one message (version, length, flags) and borrows its body.
    /// The AVPs are checked as they are read ([`Message::avps`], [`crate::validate`]).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        let Some((head, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(Error::Truncated(bytes.len()));
        };
        let header = Header::parse(head);
        if header.version != 1 {
            return Err(Error::Version(header.version));
        }
        let stated = header.length;
        if stated as usize != bytes.len() || !stated.is_multiple_of(4) {
            return Err(Error::MessageLength { stated, actual: bytes.len() });
        }
        if header.flags & FLAGS_RESERVED != 0 || (header.is_request() && header.is_error()) {
            return Err(Error::HeaderBits(header.flags));
        }
        Ok(Message { header, body })
    }

    /// The top-level AVPs in order.
    pub fn avps(&self) -> AvpIter<'a> {
        AvpIter::new(self.body, HEADER_LEN)
    }

    /// The first top-level AVP `def`, if present (framing errors count as absent; validation
    /// reports them).
    pub fn find(&self, def: &AvpDef) -> Option<Avp<'a>> {
        self.avps().map_while(Result::ok).find(|a| a.code == def.code && a.vendor == def.vendor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            version: 1,
            length: 20,
            flags: FLAG_R | FLAG_T,
            command: 272,
            application: 4,
            hop_by_hop: 7,
            end_to_end: 9,
        };
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out.len(), HEADER_LEN);
        let m = Message::decode(&out).unwrap();
        assert_eq!(m.header, h);
        assert!(m.header.is_request() && m.header.is_retransmission());
        assert_eq!(h.answer(3007).flags, FLAG_E);
        assert_eq!(h.answer(2001).flags, 0);
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        let mut good = Vec::new();
        Header::request(280, 0, 1, 1).write(&mut good);
        good[3] = 20;
        assert_eq!(Message::decode(&good[..19]).unwrap_err(), Error::Truncated(19));
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(Message::decode(&v2).unwrap_err().result_code(), 5011);
        let mut long = good.clone();
        long[3] = 24;
        assert_eq!(Message::decode(&long).unwrap_err().result_code(), 5015);
        let mut bits = good.clone();
        bits[4] |= 0x01;
        assert_eq!(Message::decode(&bits).unwrap_err().result_code(), 3008);
        let mut e_on_request = good.clone();
        e_on_request[4] |= FLAG_E;
        assert_eq!(Message::decode(&e_on_request).unwrap_err(), Error::HeaderBits(FLAG_R | FLAG_P | FLAG_E));
    }
}
