//! SMPP as the SMS center reads it from a socket: the bytes are framed by [`SmppCodec`] (until
//! the stream is out of step), each whole frame is decoded with the server's
//! [`decode_pdu`], and the fields the SMS center then reads are parsed: the time fields of a
//! submit (`schedule_delivery_time`, `validity_period`), the text of a `data_coding` 0
//! message, and a `deliver_sm` as a delivery receipt (what an interconnect peer sends).
//!
//! Invariants: a frame is exactly `command_length` bytes; a decoded PDU encodes to a frame that
//! decodes and encodes to the same bytes.

use bytes::BytesMut;
use smsc::frame::{Frame, SmppCodec};
use smsc::rusmpp::encode::Length;
use smsc::rusmpp::{Command, Pdu};
use smsc::server::{decode_pdu, encode_into};
use tokio_util::codec::Decoder;

/// The server's default `max_pdu`.
const MAX_PDU: usize = 4096;

pub fn run(data: &[u8]) {
    let mut codec = SmppCodec::new(MAX_PDU);
    let mut stream = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut stream) {
        let Frame::Pdu(header, bytes) = frame else { continue };
        assert_eq!(header.command_length as usize, bytes.len(), "a frame is command_length bytes");
        let length = bytes.len();
        if let Ok(command) = decode_pdu(bytes) {
            // rusmpp decodes some PDUs whose fields end before command_length, or whose TLV
            // value_length overstates the value, and keeps the stated length: such a PDU is read
            // leniently, and its re-encoding is not the wire form of anything.
            if 4 + command.length() == length {
                round_trip(&command);
            }
            read_fields(&command);
        }
    }
}

/// What the server decodes, it encodes to bytes that decode and encode to the same bytes. (Not
/// to the same value: rusmpp reads a body-less PDU that came with a body as one without its
/// PDU, and encodes both alike.)
fn round_trip(command: &Command) {
    let encode = |c: &Command| {
        let mut out = BytesMut::new();
        encode_into(&mut out, c);
        out
    };
    let bytes = encode(command);
    let again = decode_pdu(bytes.clone()).unwrap_or_else(|e| panic!("{command:?} encoded as {bytes:02x?}: {e}"));
    assert_eq!(encode(&again), bytes, "encode(decode(encode(pdu))) differs: {command:?} then {again:?}");
}

/// The fields the SMS center parses after the PDU decodes.
fn read_fields(command: &Command) {
    const NOW_MS: i64 = 1_780_000_000_000;
    match command.pdu() {
        Some(Pdu::SubmitSm(s)) => {
            for field in [s.schedule_delivery_time.as_str(), s.validity_period.as_str()] {
                let _ = smsc::time::parse_smpp_time(field, NOW_MS);
            }
            if u8::from(s.data_coding) == 0 {
                default_alphabet(s.short_message().as_ref());
            }
        }
        Some(Pdu::DeliverSm(d)) => {
            let text = String::from_utf8_lossy(d.short_message().as_ref());
            let _ = smsc::receipt::Receipt::parse(&text);
        }
        _ => {}
    }
}

/// `data_coding` 0: septets as sent (GSM 03.38), or Latin-1 for an ESME configured so.
fn default_alphabet(octets: &[u8]) {
    if sms::gsm7::check_unpacked(octets).is_ok() {
        let text = sms::gsm7::decode(octets);
        if let Ok(septets) = sms::gsm7::encode(&text) {
            assert_eq!(sms::gsm7::decode(&septets), text, "GSM text re-encodes to other text");
        }
    }
    if let Ok(septets) = sms::gsm7::from_latin1(octets) {
        assert_eq!(sms::gsm7::to_latin1(&septets).as_deref(), Ok(octets), "Latin-1 through septets changes");
    }
}
