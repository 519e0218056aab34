//! Long messages. A body longer than one SMS (a `message_payload`, or a text an ESME did not
//! split) is stored whole, as submitted, and split only on its way to the handset:
//! [`crate::air`] sends it as concatenated SMS-DELIVERs, each with a user data header whose
//! concatenation element (IEI 0x08, a 16-bit reference) lets the handset put it back
//! together. Across an interconnect it travels whole, in one submit_sm's `message_payload`
//! (see `interconnect::submit_of`).
//!
//! An ESME that splits a message itself may say so with the `sar_*` TLVs instead of a header
//! of its own; [`with_sar_header`] turns them into the header the handset needs.
//!
//! What cannot be carried is refused at submit, never acknowledged and then dropped
//! ([`check`]): a body that needs more than 255 SMS (the most a concatenation element
//! numbers); one that opens with a header of
//! its submitter's (esm_class UDHI) and does not fit one SMS, since no concatenation element
//! can be added to someone else's header; and, for a number another operator serves, one
//! whose submit_sm to that operator would not fit a PDU as long as this SMS center's own
//! `[smpp] max_pdu`.

use sms::udh::{Concat, InformationElement, UserDataHeader};
use smsc::rusmpp::CommandStatus;
use smsc::rusmpp::pdus::SubmitSm;
use smsc::rusmpp::tlvs::TlvValue;

use super::Refusal;
use crate::store::sms::NewSms;

/// What a forwarding submit_sm needs besides the body: the header, its fields at their
/// longest, the message_payload TLV's header and our origin reference TLV.
const FORWARD_OVERHEAD: usize = 256;

/// SMPP esm_class bit: the short message opens with a user data header.
pub const UDHI: u8 = 0x40;

/// The esm_class and body of a submit whose segment the `sar_*` TLVs describe: the body
/// behind a concatenation element made of them (in front of the submitter's own header if it
/// sent one without such an element), with UDHI set. A submit without them is returned as
/// it came. Only some of the three: ESME_RMISSINGTLV; a total of 0 or a sequence number
/// outside 1..=total: ESME_RINVTLVVAL.
pub(crate) fn with_sar_header(submit: &SubmitSm, esm_class: u8, body: Vec<u8>) -> Result<(u8, Vec<u8>), CommandStatus> {
    let (mut reference, mut total, mut seq) = (None, None, None);
    for tlv in submit.tlvs() {
        match tlv.value() {
            Some(TlvValue::SarMsgRefNum(r)) => reference = Some(*r),
            Some(TlvValue::SarTotalSegments(t)) => total = Some(*t),
            Some(TlvValue::SarSegmentSeqnum(s)) => seq = Some(*s),
            _ => {}
        }
    }
    let (reference, total, seq) = match (reference, total, seq) {
        (None, None, None) => return Ok((esm_class, body)),
        (Some(r), Some(t), Some(s)) => (r, t, s),
        _ => return Err(CommandStatus::EsmeRmissingtlv),
    };
    if total == 0 || seq == 0 || seq > total {
        return Err(CommandStatus::EsmeRinvtlvval);
    }
    let concat = InformationElement::Concat(Concat { reference, wide: true, total, seq });
    let (mut header, rest) = if esm_class & UDHI != 0 {
        let (h, len) = UserDataHeader::decode(&body).map_err(|_| CommandStatus::EsmeRinvesmclass)?;
        (h, &body[len..])
    } else {
        (UserDataHeader::default(), &body[..])
    };
    if header.concat().is_some() {
        // The submitter's own concatenation element says the same; it stands.
        return Ok((esm_class, body));
    }
    header.elements.insert(0, concat);
    Ok((esm_class | UDHI, [header.encode(), rest.to_vec()].concat()))
}

/// The SMS-DELIVERs `m` takes on the air, if it can be carried: see the module's limits.
/// Every message is checked, whichever way it came in and wherever it goes, since the next
/// SMS center delivers it with the same code.
pub(crate) fn check(m: &NewSms, max_pdu: usize) -> Result<usize, Refusal> {
    let parts = crate::air::deliveries(m.esm_class, m.data_coding, &m.payload).ok_or(Refusal::MessageLength)?;
    if m.route == "interconnect" && m.payload.len() + FORWARD_OVERHEAD > max_pdu {
        return Err(Refusal::MessageLength);
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use smsc::rusmpp::tlvs::MessageSubmissionRequestTlvValue as Tlv;
    use smsc::rusmpp::types::OctetString;

    use super::*;

    /// A submit of `body` with `tlvs`.
    fn submit(body: &[u8], tlvs: Vec<Tlv>) -> SubmitSm {
        let b = SubmitSm::builder().short_message(OctetString::from_slice(body).unwrap());
        tlvs.into_iter().fold(b, |b, t| b.push_tlv(t)).build()
    }

    fn sar(reference: u16, total: u8, seq: u8) -> Vec<Tlv> {
        vec![Tlv::SarMsgRefNum(reference), Tlv::SarTotalSegments(total), Tlv::SarSegmentSeqnum(seq)]
    }

    #[test]
    fn sar_tlvs_become_a_concatenation_element() {
        let s = submit(b"part", sar(0x1234, 3, 2));
        assert_eq!(
            with_sar_header(&s, 0, b"part".to_vec()),
            Ok((UDHI, [&[6, 8, 4, 0x12, 0x34, 3, 2][..], b"part"].concat()))
        );
        // In front of the submitter's own header (here an application port element).
        let ports = [4u8, 0x05, 2, 0x0B, 0x84];
        let body = [&ports[..], b"vcard"].concat();
        let (esm, out) = with_sar_header(&submit(&body, sar(7, 2, 1)), UDHI, body.clone()).unwrap();
        let (header, len) = UserDataHeader::decode(&out).unwrap();
        assert_eq!((esm, &out[len..]), (UDHI, &b"vcard"[..]));
        assert_eq!(header.concat(), Some(Concat { reference: 7, wide: true, total: 2, seq: 1 }));
        assert_eq!(header.elements[1], InformationElement::Other { iei: 0x05, data: vec![0x0B, 0x84] });
        // A header with its own concatenation element stands as it is.
        let own = [&[5u8, 0, 3, 9, 2, 2][..], b"x"].concat();
        assert_eq!(with_sar_header(&submit(&own, sar(1, 2, 1)), UDHI, own.clone()), Ok((UDHI, own)));
        // Without sar_* TLVs nothing changes.
        assert_eq!(with_sar_header(&submit(b"plain", vec![]), 0, b"plain".to_vec()), Ok((0, b"plain".to_vec())));
    }

    #[test]
    fn partial_or_inconsistent_sar_tlvs_are_refused() {
        let missing = submit(b"x", vec![Tlv::SarMsgRefNum(1), Tlv::SarTotalSegments(2)]);
        assert_eq!(with_sar_header(&missing, 0, b"x".to_vec()), Err(CommandStatus::EsmeRmissingtlv));
        for (total, seq) in [(0, 0), (2, 0), (2, 3)] {
            let s = submit(b"x", sar(1, total, seq));
            assert_eq!(with_sar_header(&s, 0, b"x".to_vec()), Err(CommandStatus::EsmeRinvtlvval), "{total}/{seq}");
        }
        let broken = submit(&[9, 0], sar(1, 2, 1));
        assert_eq!(with_sar_header(&broken, UDHI, vec![9, 0]), Err(CommandStatus::EsmeRinvesmclass));
    }
}
