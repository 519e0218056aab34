//! Validation of a received message against the dictionary, before any typed decoding: every
//! AVP at every depth is framed correctly, has no reserved flag and honours its M-flag rule, is
//! known if it is mandatory, and has a value its format allows. The first fault is returned,
//! which the peer answers with its Result-Code and Failed-AVP (RFC 6733 §6.2, §7). The content
//! of a Failed-AVP is not checked: it is the offending AVPs a peer sends back.

use crate::avp::{AvpIter, FLAG_M, FLAGS_RESERVED};
use crate::dict::{AvpType, MRule};
use crate::error::Error;
use crate::message::Message;

/// Grouped AVPs nest at most this deep (Gy needs 4: MSCC, USU, CC-Money, Unit-Value); deeper
/// nesting is refused, which bounds the recursion whatever the input.
pub const MAX_DEPTH: usize = 8;

/// Checks every AVP of `message` against the dictionary.
pub fn validate(message: &Message<'_>) -> Result<(), Error> {
    walk(message.avps(), 0)
}

fn walk(avps: AvpIter<'_>, depth: usize) -> Result<(), Error> {
    for avp in avps {
        let avp = avp?;
        let bits = || Error::AvpBits { code: avp.code, vendor: avp.vendor, flags: avp.flags, failed: avp.raw.to_vec() };
        // P (RFC 6733 §4.1: SHOULD be 0) is tolerated; the reserved bits are not.
        if avp.flags & FLAGS_RESERVED != 0 {
            return Err(bits());
        }
        let Some(def) = avp.def() else {
            if avp.flags & FLAG_M != 0 {
                return Err(Error::AvpUnsupported { code: avp.code, vendor: avp.vendor, failed: avp.raw.to_vec() });
            }
            continue;
        };
        if def.m == MRule::MustNot && avp.flags & FLAG_M != 0 {
            return Err(bits());
        }
        // Failed-AVP holds copies of offending AVPs (unknown, malformed): opaque by definition.
        if def.code == crate::dict::FAILED_AVP.code && def.vendor == crate::dict::IETF {
            continue;
        }
        if def.ty == AvpType::Grouped {
            if depth + 1 >= MAX_DEPTH {
                return Err(Error::InvalidValue { name: def.name, failed: avp.raw.to_vec() });
            }
            walk(avp.grouped(), depth + 1)?;
        } else {
            avp.check_format(def.ty)?;
        }
    }
    Ok(())
}
