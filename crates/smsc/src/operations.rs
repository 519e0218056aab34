//! The message operations an ESME sends besides submit_sm (SMPP 5.0 §4.5–4.6), put in the terms
//! a [`SubmitHandler`](crate::SubmitHandler) takes, and their responses.
//!
//! - Every message submission (submit_sm, each SME destination of a submit_multi, data_sm)
//!   reaches the handler as one submit_sm: the same fields, the destination it is for, and the
//!   request's TLVs as they came (data_sm's body is its message_payload TLV; its validity, if
//!   any, the qos_time_to_live TLV). So one path stores messages, whatever PDU carried them.
//! - submit_multi: each destination is a message of its own. submit_multi_resp carries the id
//!   of the first destination accepted, and an unsuccess_sme for each one refused with the
//!   status its submit_sm would have had. This SMS center keeps no distribution lists: a
//!   distribution list name is refused ESME_RINVDLNAME.
//! - query_sm, cancel_sm and replace_sm name a message by its id, and reach only the messages
//!   of the ESME that asks.
//! - outbind is what an SMS center sends to an ESME to ask it to bind; an ESME never sends it
//!   to an SMS center, so the server answers it generic_nack ESME_RINVCMDID.

use rusmpp::decode::DecodeError;
use rusmpp::fields::SmppField;
use rusmpp::pdus::parts::SubmitSmParts;
use rusmpp::pdus::{DataSm, DataSmResp, QuerySmResp, SubmitMulti, SubmitMultiResp, SubmitSm, SubmitSmResp};
use rusmpp::tlvs::{Tlv, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DestAddress, InterfaceVersion, MessageState, Npi, Ton, UnsuccessSme};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};

/// Where a message stands, as query_sm_resp reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageStatus {
    pub state: MessageState,
    /// When the message reached its final state (Unix ms); `None` while it has not.
    pub final_date: Option<i64>,
    /// Network-specific error code, 0 for none.
    pub error_code: u8,
}

/// The submit_sm of one destination of a submit_multi, or the unsuccess_sme that refuses it.
pub(crate) type Destination = Result<SubmitSm, UnsuccessSme>;

/// A submit_multi as one submit_sm per destination, in the order of its dest_address list.
pub(crate) fn destinations(multi: SubmitMulti) -> Vec<Destination> {
    let p = multi.into_parts();
    p.dest_address
        .into_iter()
        .map(|d| match d {
            DestAddress::SmeAddress(a) => Ok(SubmitSm::from_parts(SubmitSmParts {
                service_type: p.service_type.clone(),
                source_addr_ton: p.source_addr_ton,
                source_addr_npi: p.source_addr_npi,
                source_addr: p.source_addr.clone(),
                dest_addr_ton: a.dest_addr_ton,
                dest_addr_npi: a.dest_addr_npi,
                destination_addr: a.destination_addr,
                esm_class: p.esm_class,
                protocol_id: p.protocol_id,
                priority_flag: p.priority_flag,
                schedule_delivery_time: p.schedule_delivery_time.clone(),
                validity_period: p.validity_period.clone(),
                registered_delivery: p.registered_delivery,
                replace_if_present_flag: p.replace_if_present_flag,
                data_coding: p.data_coding,
                sm_default_msg_id: p.sm_default_msg_id,
                sm_length: p.sm_length,
                short_message: p.short_message.clone(),
                tlvs: p.tlvs.clone(),
            })),
            DestAddress::DistributionListName(l) => {
                Err(UnsuccessSme::new(Ton::Unknown, Npi::Unknown, l.dl_name, CommandStatus::EsmeRinvdlname))
            }
        })
        .collect()
}

/// The unsuccess_sme of a destination its submit_sm was refused for.
pub(crate) fn unsuccess(submit: &SubmitSm, status: CommandStatus) -> UnsuccessSme {
    UnsuccessSme::new(submit.dest_addr_ton, submit.dest_addr_npi, submit.destination_addr.clone(), status)
}

/// A data_sm as the submit_sm of the same message: no schedule, the default validity unless
/// its qos_time_to_live TLV says otherwise, the body in its message_payload TLV.
pub(crate) fn data_sm_as_submit(data: DataSm) -> SubmitSm {
    let p = data.into_parts();
    SubmitSm::from_parts(SubmitSmParts {
        service_type: p.service_type,
        source_addr_ton: p.source_addr_ton,
        source_addr_npi: p.source_addr_npi,
        source_addr: p.source_addr,
        dest_addr_ton: p.dest_addr_ton,
        dest_addr_npi: p.dest_addr_npi,
        destination_addr: p.destination_addr,
        esm_class: p.esm_class,
        protocol_id: 0,
        priority_flag: Default::default(),
        schedule_delivery_time: Default::default(),
        validity_period: Default::default(),
        registered_delivery: p.registered_delivery,
        replace_if_present_flag: Default::default(),
        data_coding: p.data_coding,
        sm_default_msg_id: 0,
        sm_length: 0,
        short_message: OctetString::default(),
        tlvs: p.tlvs,
    })
}

/// Whether a request carries its body twice, in short_message and in a message_payload TLV,
/// which SMPP forbids ("must not be used simultaneously"): refused ESME_RINVTLVVAL.
pub(crate) fn body_twice<'a>(short_message: &OctetString<0, 255>, tlvs: impl IntoIterator<Item = &'a Tlv>) -> bool {
    !short_message.as_ref().is_empty()
        && tlvs.into_iter().any(|t| matches!(t.value(), Some(TlvValue::MessagePayload(_))))
}

/// The status SMPP names for a request whose body failed to decode in a time field: a
/// malformed schedule_delivery_time (ESME_RINVSCHED) or validity_period (ESME_RINVEXPIRY).
/// `None` for any other fault, which stays a generic_nack.
pub(crate) fn time_field_status(error: &DecodeError) -> Option<CommandStatus> {
    if error.field_exists(SmppField::schedule_delivery_time) {
        Some(CommandStatus::EsmeRinvsched)
    } else if error.field_exists(SmppField::validity_period) {
        Some(CommandStatus::EsmeRinvexpiry)
    } else {
        None
    }
}

/// The error answer to request `id`: its own response type where it has one, else
/// generic_nack.
pub(crate) fn error_response(id: CommandId, status: CommandStatus, seq: u32) -> Command {
    let pdu: Pdu = match id {
        CommandId::SubmitSm => SubmitSmResp::default().into(),
        CommandId::SubmitMulti => SubmitMultiResp::default().into(),
        CommandId::DataSm => DataSmResp::default().into(),
        CommandId::QuerySm => QuerySmResp::default().into(),
        CommandId::CancelSm => Pdu::CancelSmResp,
        CommandId::ReplaceSm => Pdu::ReplaceSmResp,
        _ => Pdu::GenericNack,
    };
    Command::new(status, seq, pdu)
}

/// A message id as the responses carry it (at most 64 characters).
pub(crate) fn message_id(id: &str) -> COctetString<1, 65> {
    id.parse().unwrap_or_default()
}

/// The submit_multi_resp of the destinations' outcomes (each a message id, or the
/// unsuccess_sme refusing it): the first id accepted, and every refusal.
pub(crate) fn submit_multi_resp(outcomes: Vec<Result<String, UnsuccessSme>>) -> SubmitMultiResp {
    let first = outcomes.iter().find_map(|o| o.as_ref().ok()).map(|id| message_id(id)).unwrap_or_default();
    let refused = outcomes.into_iter().filter_map(Result::err).collect();
    SubmitMultiResp::new(first, refused, Vec::new())
}

/// The query_sm_resp for message `id` in `status`.
pub(crate) fn query_sm_resp(id: COctetString<1, 65>, status: MessageStatus) -> QuerySmResp {
    let final_date = status.final_date.map(crate::time::format_absolute).and_then(|t| t.parse().ok());
    QuerySmResp::new(id, final_date.unwrap_or_default(), status.state, status.error_code)
}

/// The sc_interface_version a bind_*_resp carries for a client of `version`: none for SMPP
/// 3.3 and earlier (3.3 has no TLVs), 3.4 for a 3.4 client, 5.0 (what this server speaks)
/// for 5.0 and later.
pub(crate) fn sc_interface_version(version: InterfaceVersion) -> Option<InterfaceVersion> {
    match u8::from(version) {
        v if v < 0x34 => None,
        v if v < 0x50 => Some(InterfaceVersion::Smpp3_4),
        _ => Some(InterfaceVersion::Smpp5_0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::decode::DecodeWithLength;
    use rusmpp::encode::Length;
    use rusmpp::encode::owned::Encode;

    #[test]
    fn interface_versions() {
        assert_eq!(sc_interface_version(InterfaceVersion::from(0x33)), None);
        assert_eq!(sc_interface_version(InterfaceVersion::from(0x00)), None);
        assert_eq!(sc_interface_version(InterfaceVersion::from(0x34)), Some(InterfaceVersion::Smpp3_4));
        assert_eq!(sc_interface_version(InterfaceVersion::from(0x50)), Some(InterfaceVersion::Smpp5_0));
        assert_eq!(sc_interface_version(InterfaceVersion::from(0x51)), Some(InterfaceVersion::Smpp5_0));
    }

    /// A submit_sm body with `schedule` and `validity` written as given (NUL-terminated).
    fn submit_body(schedule: &str, validity: &str) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"\0\x01\x01src\0\x01\x01dst\0\0\0\0");
        for field in [schedule, validity] {
            b.extend_from_slice(field.as_bytes());
            b.push(0);
        }
        b.extend_from_slice(&[0, 0, 0, 0, 2, b'h', b'i']);
        b
    }

    fn decode_error(body: Vec<u8>) -> DecodeError {
        let mut frame = Vec::new();
        frame.extend_from_slice(&(16 + body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&4u32.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(&body);
        let mut bytes = bytes::BytesMut::from(&frame[4..]);
        let len = bytes.len();
        Command::decode(&mut bytes, len).expect_err("the body is malformed")
    }

    #[test]
    fn malformed_time_fields_are_told_apart() {
        let ok = submit_body("", "000001000000000R");
        let mut frame = bytes::BytesMut::from(&ok[..]);
        let len = frame.len();
        assert!(SubmitSm::decode(&mut frame, len).is_ok());
        assert_eq!(time_field_status(&decode_error(submit_body("", "5"))), Some(CommandStatus::EsmeRinvexpiry));
        assert_eq!(time_field_status(&decode_error(submit_body("7R", ""))), Some(CommandStatus::EsmeRinvsched));
    }

    #[test]
    fn distribution_lists_are_refused_and_destinations_keep_the_message() {
        use rusmpp::values::{DistributionListName, SmeAddress};
        let multi = SubmitMulti::builder()
            .source_addr("MyBank".parse().unwrap())
            .dest_address(vec![
                DestAddress::SmeAddress(SmeAddress::new(Ton::International, Npi::Isdn, "4790000001".parse().unwrap())),
                DestAddress::DistributionListName(DistributionListName::new("staff".parse().unwrap())),
            ])
            .short_message(OctetString::from_slice(b"hello").unwrap())
            .build();
        let d = destinations(multi);
        let first = d[0].as_ref().unwrap();
        assert_eq!(first.destination_addr.as_str(), "4790000001");
        assert_eq!(first.short_message().as_ref(), b"hello");
        assert_eq!(first.source_addr.as_str(), "MyBank");
        // What the handler gets encodes and decodes as a submit_sm.
        let mut out = bytes::BytesMut::new();
        first.encode(&mut out);
        let len = out.len();
        assert_eq!(len, first.length());
        assert_eq!(&SubmitSm::decode(&mut out, len).unwrap().0, first);
        assert_eq!(d[1].as_ref().unwrap_err().error_status_code, CommandStatus::EsmeRinvdlname);
    }
}
