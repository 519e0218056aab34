//! What can be wrong with a message, and the answer each fault earns (RFC 6733 §7.1).

use crate::dict::{self, result};

/// A malformed or unacceptable message. Each fault maps to the Result-Code the answer carries
/// ([`Error::result_code`]) and, where RFC 6733 §7.5 asks for one, to the content of the
/// Failed-AVP ([`Error::failed_avp`]): the offending AVP, or for a missing or cut-short one an
/// AVP of its code with a zero-filled value of the minimum length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Fewer octets than the header.
    #[error("{0} octets: shorter than the 20-octet Diameter header")]
    Truncated(usize),
    /// A version other than 1.
    #[error("Diameter version {0}, not 1")]
    Version(u8),
    /// The Message Length disagrees with the octets, is not a multiple of 4, or is below 20.
    #[error("Message Length {stated} with {actual} octets")]
    MessageLength { stated: u32, actual: usize },
    /// The Message Length is above what this node accepts.
    #[error("Message Length {stated} above the maximum of {max} octets")]
    Oversized { stated: u32, max: usize },
    /// Reserved command flags set, or E on a request.
    #[error("invalid command flags {0:#04x}")]
    HeaderBits(u8),
    /// An AVP header cut short, or an AVP Length below its header or beyond its container.
    #[error("AVP {code} (vendor {vendor}) at offset {offset}: AVP Length {length} does not fit")]
    AvpLength { code: u32, vendor: u32, flags: u8, length: u32, offset: usize },
    /// A value whose length the AVP's data format does not allow.
    #[error("{name}: {len} octets of data")]
    AvpDataLength { name: &'static str, len: usize, failed: Vec<u8> },
    /// Reserved AVP flags set, or M set where the dictionary says it must not be.
    #[error("AVP {code} (vendor {vendor}): invalid flags {flags:#04x}")]
    AvpBits { code: u32, vendor: u32, flags: u8, failed: Vec<u8> },
    /// An AVP this node does not know, with the M flag set.
    #[error("unsupported mandatory AVP {code} (vendor {vendor})")]
    AvpUnsupported { code: u32, vendor: u32, failed: Vec<u8> },
    /// A value the AVP cannot take (bad UTF-8, an unknown enumeration, a bad address).
    #[error("{name}: invalid value")]
    InvalidValue { name: &'static str, failed: Vec<u8> },
    /// A required AVP is absent.
    #[error("{} missing", .0.name)]
    Missing(&'static dict::AvpDef),
    /// An AVP that may occur once occurs again.
    #[error("{name} occurs more than once")]
    TooMany { name: &'static str, failed: Vec<u8> },
}

impl Error {
    /// The Result-Code of the answer to a request with this fault.
    pub fn result_code(&self) -> u32 {
        match self {
            Error::Truncated(_) | Error::MessageLength { .. } => result::INVALID_MESSAGE_LENGTH,
            Error::Oversized { .. } => result::UNABLE_TO_COMPLY,
            Error::Version(_) => result::UNSUPPORTED_VERSION,
            Error::HeaderBits(_) => result::INVALID_HDR_BITS,
            Error::AvpLength { .. } | Error::AvpDataLength { .. } => result::INVALID_AVP_LENGTH,
            Error::AvpBits { .. } => result::INVALID_AVP_BITS,
            Error::AvpUnsupported { .. } => result::AVP_UNSUPPORTED,
            Error::InvalidValue { .. } => result::INVALID_AVP_VALUE,
            Error::Missing(_) => result::MISSING_AVP,
            Error::TooMany { .. } => result::AVP_OCCURS_TOO_MANY_TIMES,
        }
    }

    /// The AVP the answer's Failed-AVP carries, encoded, if the fault names one.
    pub fn failed_avp(&self) -> Option<Vec<u8>> {
        match self {
            Error::AvpDataLength { failed, .. }
            | Error::AvpBits { failed, .. }
            | Error::AvpUnsupported { failed, .. }
            | Error::InvalidValue { failed, .. }
            | Error::TooMany { failed, .. } => Some(failed.clone()),
            Error::AvpLength { code, vendor, flags, .. } => Some(zero_filled(*code, *vendor, *flags)),
            Error::Missing(def) => Some(zero_filled(def.code, def.vendor, def.flags())),
            _ => None,
        }
    }
}

/// An AVP of `code` with a zero-filled value of the minimum length of its format (RFC 6733
/// §7.5: what Failed-AVP holds for a missing AVP or one whose length cannot be trusted).
fn zero_filled(code: u32, vendor: u32, flags: u8) -> Vec<u8> {
    let len = dict::lookup(code, vendor).and_then(|d| d.ty.fixed_len()).unwrap_or(0);
    let mut w = crate::avp::Writer::avps(Vec::new());
    w.raw_avp(code, flags, vendor, &[0u8; 8][..len]);
    w.finish()
}
