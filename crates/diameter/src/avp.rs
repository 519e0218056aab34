//! AVPs (RFC 6733 §4.1): a borrowing reader that never copies a value, the typed accessors of
//! the data formats, and a writer that appends AVPs, grouped ones included, to one buffer.

use std::net::IpAddr;

use crate::dict::{self, AvpDef, AvpType, IETF};
use crate::error::Error;

/// Vendor-Specific: a Vendor-Id field follows the length.
pub const FLAG_V: u8 = 0x80;
/// Mandatory: a receiver that does not know the AVP must refuse the message.
pub const FLAG_M: u8 = 0x40;
/// Protected (end-to-end security; unused and deprecated by RFC 6733).
pub const FLAG_P: u8 = 0x20;
/// Flags RFC 6733 reserves, which must be zero.
pub const FLAGS_RESERVED: u8 = 0x1f;

/// One AVP as it lies in the message: its data borrowed, its whole encoding kept for Failed-AVP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Avp<'a> {
    pub code: u32,
    pub flags: u8,
    /// 0 when the V flag is clear.
    pub vendor: u32,
    pub data: &'a [u8],
    /// The AVP's octets from its code to the end of its data (no padding).
    pub raw: &'a [u8],
}

impl<'a> Avp<'a> {
    pub fn is_mandatory(&self) -> bool {
        self.flags & FLAG_M != 0
    }

    /// The dictionary's definition, if this node knows the AVP.
    pub fn def(&self) -> Option<&'static AvpDef> {
        dict::lookup(self.code, self.vendor)
    }

    fn name(&self) -> &'static str {
        self.def().map_or("unknown AVP", |d| d.name)
    }

    fn bad_length(&self) -> Error {
        Error::AvpDataLength { name: self.name(), len: self.data.len(), failed: self.raw.to_vec() }
    }

    fn bad_value(&self) -> Error {
        Error::InvalidValue { name: self.name(), failed: self.raw.to_vec() }
    }

    pub fn u32(&self) -> Result<u32, Error> {
        self.data.try_into().map(u32::from_be_bytes).map_err(|_| self.bad_length())
    }

    pub fn u64(&self) -> Result<u64, Error> {
        self.data.try_into().map(u64::from_be_bytes).map_err(|_| self.bad_length())
    }

    pub fn i32(&self) -> Result<i32, Error> {
        self.data.try_into().map(i32::from_be_bytes).map_err(|_| self.bad_length())
    }

    pub fn i64(&self) -> Result<i64, Error> {
        self.data.try_into().map(i64::from_be_bytes).map_err(|_| self.bad_length())
    }

    /// UTF8String, DiameterIdentity and DiameterURI.
    pub fn str(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.data).map_err(|_| self.bad_value())
    }

    pub fn string(&self) -> Result<String, Error> {
        self.str().map(str::to_owned)
    }

    /// An Enumerated value mapped through `f`, or 5004 when `f` does not know it.
    pub fn enumerated<T>(&self, f: impl FnOnce(u32) -> Option<T>) -> Result<T, Error> {
        f(self.u32()?).ok_or_else(|| self.bad_value())
    }

    /// Address (RFC 6733 §4.3.1): address family 1 (IPv4) or 2 (IPv6), then the address.
    pub fn address(&self) -> Result<IpAddr, Error> {
        match self.data {
            [0, 1, a @ ..] => <[u8; 4]>::try_from(a).map(IpAddr::from).map_err(|_| self.bad_length()),
            [0, 2, a @ ..] => <[u8; 16]>::try_from(a).map(IpAddr::from).map_err(|_| self.bad_length()),
            [_, _, ..] => Err(self.bad_value()),
            _ => Err(self.bad_length()),
        }
    }

    /// The AVPs a Grouped AVP holds.
    pub fn grouped(&self) -> AvpIter<'a> {
        AvpIter::new(self.data, 0)
    }

    /// Whether the data has the length this AVP's format needs (for the known fixed-size ones).
    pub fn check_format(&self, ty: AvpType) -> Result<(), Error> {
        match ty {
            AvpType::Address => self.address().map(|_| ()),
            AvpType::Utf8String | AvpType::DiameterIdentity | AvpType::DiameterUri | AvpType::IpFilterRule => {
                self.str().map(|_| ())
            }
            _ => match ty.fixed_len() {
                Some(n) if n != self.data.len() => Err(self.bad_length()),
                _ => Ok(()),
            },
        }
    }
}

/// The AVPs of a message body or of a Grouped AVP, in order. After the first framing error the
/// iterator yields that error and then ends.
#[derive(Debug, Clone)]
pub struct AvpIter<'a> {
    rest: &'a [u8],
    /// Offset of `rest` within the message, for errors.
    offset: usize,
}

impl<'a> AvpIter<'a> {
    pub fn new(bytes: &'a [u8], offset: usize) -> Self {
        AvpIter { rest: bytes, offset }
    }

    fn next_avp(&mut self) -> Result<Avp<'a>, Error> {
        let b = self.rest;
        let cut = |code, vendor, flags, length| Error::AvpLength { code, vendor, flags, length, offset: self.offset };
        if b.len() < 8 {
            let code = if b.len() >= 4 { u32::from_be_bytes([b[0], b[1], b[2], b[3]]) } else { 0 };
            return Err(cut(code, IETF, 0, 0));
        }
        let code = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let flags = b[4];
        let length = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        let (vendor, header) = if flags & FLAG_V != 0 {
            if b.len() < 12 {
                return Err(cut(code, IETF, flags, length));
            }
            (u32::from_be_bytes([b[8], b[9], b[10], b[11]]), 12)
        } else {
            (IETF, 8)
        };
        let len = length as usize;
        if len < header || len > b.len() {
            return Err(cut(code, vendor, flags, length));
        }
        let padded = (len + 3) & !3;
        let avp = Avp { code, flags, vendor, data: &b[header..len], raw: &b[..len] };
        // The last AVP's padding may be absent only if nothing follows (lenient, as peers are).
        let step = padded.min(b.len());
        self.rest = &b[step..];
        self.offset += step;
        Ok(avp)
    }
}

impl<'a> Iterator for AvpIter<'a> {
    type Item = Result<Avp<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.next_avp();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

/// Appends AVPs (after a message header, or alone) to a buffer; [`Writer::finish`] fills in the
/// Message Length. Grouped AVPs are written in place, their length patched when they close.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    /// Where the message header starts, if this writes a message.
    message_at: Option<usize>,
}

impl Writer {
    /// A writer of bare AVPs (the content of a Failed-AVP, a test's body), appending to `buf`.
    pub fn avps(buf: Vec<u8>) -> Self {
        Writer { buf, message_at: None }
    }

    /// A writer of a message with this header (its length is set by [`Writer::finish`]).
    pub fn message(mut buf: Vec<u8>, header: &crate::message::Header) -> Self {
        let at = buf.len();
        header.write(&mut buf);
        Writer { buf, message_at: Some(at) }
    }

    /// Starts an AVP, returning where it begins for [`Writer::close`].
    fn open(&mut self, code: u32, flags: u8, vendor: u32) -> usize {
        let at = self.buf.len();
        let flags = if vendor != IETF { flags | FLAG_V } else { flags & !FLAG_V };
        self.buf.extend_from_slice(&code.to_be_bytes());
        self.buf.extend_from_slice(&[flags, 0, 0, 0]);
        if vendor != IETF {
            self.buf.extend_from_slice(&vendor.to_be_bytes());
        }
        at
    }

    /// Ends the AVP begun at `at`: patches its length and pads it to 4 octets.
    fn close(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u32;
        self.buf[at + 5..at + 8].copy_from_slice(&len.to_be_bytes()[1..]);
        let pad = (4 - self.buf.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
    }

    /// An AVP with these header fields and data, exactly as given.
    pub fn raw_avp(&mut self, code: u32, flags: u8, vendor: u32, data: &[u8]) {
        let at = self.open(code, flags, vendor);
        self.buf.extend_from_slice(data);
        self.close(at);
    }

    /// Already-encoded AVPs (a Failed-AVP's content, a Proxy-Info echoed), re-padded.
    pub fn encoded(&mut self, avps: &[u8]) {
        self.buf.extend_from_slice(avps);
        let pad = (4 - self.buf.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
    }

    pub fn bytes(&mut self, def: &AvpDef, data: &[u8]) {
        self.raw_avp(def.code, def.flags(), def.vendor, data);
    }

    pub fn str(&mut self, def: &AvpDef, s: &str) {
        self.bytes(def, s.as_bytes());
    }

    pub fn u32(&mut self, def: &AvpDef, v: u32) {
        self.bytes(def, &v.to_be_bytes());
    }

    pub fn u64(&mut self, def: &AvpDef, v: u64) {
        self.bytes(def, &v.to_be_bytes());
    }

    pub fn i32(&mut self, def: &AvpDef, v: i32) {
        self.bytes(def, &v.to_be_bytes());
    }

    pub fn i64(&mut self, def: &AvpDef, v: i64) {
        self.bytes(def, &v.to_be_bytes());
    }

    pub fn address(&mut self, def: &AvpDef, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.bytes(def, &[&[0, 1][..], &a.octets()].concat()),
            IpAddr::V6(a) => self.bytes(def, &[&[0, 2][..], &a.octets()].concat()),
        }
    }

    /// A Grouped AVP whose members `members` writes.
    pub fn grouped(&mut self, def: &AvpDef, members: impl FnOnce(&mut Writer)) {
        let at = self.open(def.code, def.flags(), def.vendor);
        members(self);
        self.close(at);
    }

    /// The bytes; for a message, with its Message Length set.
    pub fn finish(mut self) -> Vec<u8> {
        if let Some(at) = self.message_at {
            let len = (self.buf.len() - at) as u32;
            self.buf[at + 1..at + 4].copy_from_slice(&len.to_be_bytes()[1..]);
        }
        self.buf
    }
}
