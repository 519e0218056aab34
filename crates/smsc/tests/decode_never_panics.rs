//! rusmpp's decoder, as the server calls it, on random and on corrupted real PDUs: it must
//! return an error, never panic (a panic would drop the ESME's connection).

use bytes::{Buf, BytesMut};
use proptest::prelude::*;
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::Length;
use rusmpp::encode::owned::Encode;
use rusmpp::pdus::{BindTransmitter, SubmitSm};
use rusmpp::types::OctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};

/// A valid bind_transmitter and submit_sm, framed as on the wire.
fn samples() -> [Vec<u8>; 2] {
    let bind = BindTransmitter::builder()
        .system_id("bank".parse().unwrap())
        .password("s3cret".parse().unwrap())
        .interface_version(InterfaceVersion::Smpp3_4)
        .build();
    let submit = SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr("MyBank".parse().unwrap())
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr("4790000001".parse().unwrap())
        .short_message(OctetString::from_slice(b"Your code is 123456").unwrap())
        .build();
    [Pdu::from(bind), Pdu::from(submit)].map(|pdu| {
        let c = Command::new(CommandStatus::EsmeRok, 1, pdu);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&((4 + c.length()) as u32).to_be_bytes());
        c.encode(&mut buf);
        buf.to_vec()
    })
}

fn decode(frame: &[u8]) {
    let mut b = BytesMut::from(frame);
    if b.len() < 4 {
        return;
    }
    b.advance(4);
    let len = b.len();
    let _ = Command::decode(&mut b, len);
}

proptest! {
    #[test]
    fn random_bodies(body in proptest::collection::vec(any::<u8>(), 0..300), id in prop_oneof![Just(2u32), Just(4), Just(9), Just(0x103), Just(5), any::<u32>()]) {
        let mut frame = ((16 + body.len()) as u32).to_be_bytes().to_vec();
        frame.extend(id.to_be_bytes());
        frame.extend([0u8; 8]);
        frame.extend(body);
        decode(&frame);
    }

    #[test]
    fn corrupted_real_pdus(which in 0usize..2, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let mut frame = samples()[which].clone();
        for (at, x) in flips {
            let n = frame.len();
            // Leave command_length alone: the framing has checked it before decoding.
            let at = 4 + at % (n - 4);
            frame[at] ^= x;
        }
        let keep = 16 + cut % (frame.len() - 15);
        frame.truncate(keep);
        decode(&frame);
    }
}

#[test]
fn the_samples_are_valid_pdus() {
    for frame in samples() {
        assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len());
        let mut b = BytesMut::from(&frame[4..]);
        let len = b.len();
        Command::decode(&mut b, len).unwrap();
    }
}
