//! SMS on the air interface: the 3GPP TS 23.040 transfer-layer PDUs (TPDUs) that travel between
//! a terminal and its SMS center, as real bytes, so that user data headers are what a real
//! network carries and what tshark decodes. Concatenation is implemented; other information
//! elements (the SIM data download of F7) are carried through as they are; F3's authentication
//! element is read and written by [`auth`].
//!
//! - [`tpdu`]: SMS-SUBMIT (terminal → SMSC), SMS-DELIVER and SMS-STATUS-REPORT (SMSC →
//!   terminal), with addresses, time stamps, validity periods and data coding.
//! - [`udh`]: user data headers and their information elements (concatenation 8- and 16-bit;
//!   the authentication element; the command and response packet identifiers of SIM data
//!   download).
//! - [`auth`]: F3's authentication element: the SMS center tags each SMS-DELIVER with a
//!   counter and a MAC under the subscriber's key; the handset tells authentic SMS from those
//!   of a pseudo base station and from replays.
//! - [`mod@concat`]: long texts split into concatenated parts, and the parts put back together.
//! - [`gsm7`]: the GSM 7-bit default alphabet and septet packing.
//! - [`air`]: the frames of the simulated air interface (attach with a SIM challenge, TPDUs
//!   in both directions with their acknowledgements).
//!
//! Decoding returns [`DecodeError`] for any malformed input and never panics (property tests
//! and a fuzz target hold it to that).

pub mod address;
pub mod air;
pub mod auth;
pub mod concat;
pub mod gsm7;
pub mod tpdu;
pub mod udh;

pub use address::Address;
pub use concat::{Reassembler, Reference, SegmentError, Segments, segment, split_octets, split_payload};
pub use tpdu::{DataCoding, SmsDeliver, SmsStatusReport, SmsSubmit, Timestamp, Tpdu, UserData, ValidityPeriod};
pub use udh::{Concat, InformationElement, UserDataHeader};

/// Why bytes are not a TPDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("TPDU ends early: {0} missing")]
    Truncated(&'static str),
    #[error("{0} bytes after the end of the TPDU")]
    TrailingBytes(usize),
    #[error("message type {mti} is not one this side receives")]
    UnsupportedType { mti: u8 },
    #[error("address of {0} digits (at most 20)")]
    AddressLength(usize),
    #[error("time stamp field out of range: {0}")]
    Timestamp(&'static str),
    #[error("user data header: {0}")]
    UserDataHeader(&'static str),
    #[error("user data length {0} exceeds 140 octets")]
    UserDataLength(usize),
}

/// Why a TPDU cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("user data of {0} octets exceeds 140")]
    TooLong(usize),
    #[error("address {0:?} is not encodable")]
    Address(String),
    #[error("user data header of {0} octets exceeds 139")]
    HeaderTooLong(usize),
    #[error("character {0:?} is not in the GSM 7-bit alphabet")]
    Unencodable(char),
    #[error(
        "the payload does not match data coding 0x{0:02x} (septets need the 7-bit alphabet, octets 8-bit or UCS-2)"
    )]
    CodingMismatch(u8),
}

/// A byte reader that turns running out of input into [`DecodeError::Truncated`].
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.at).ok_or(DecodeError::Truncated(what))?;
        self.at += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let s = self.bytes.get(self.at..self.at + n).ok_or(DecodeError::Truncated(what))?;
        self.at += n;
        Ok(s)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}
