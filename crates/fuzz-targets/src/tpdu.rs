//! What a terminal sends over the air, as the SMS center and the terminal read it: frames of
//! the air interface, the TPDUs inside them (SMS-SUBMIT from a terminal; SMS-DELIVER and
//! SMS-STATUS-REPORT to one), with their addresses, time stamps, user data headers and GSM
//! 7-bit text, and the concatenated parts put back together; and every SMS-DELIVER verified as
//! a handset verifies it (its authentication element, F3).
//!
//! Invariants: a TPDU that decodes and re-encodes decodes to the same value; an air frame
//! re-encodes to its own bytes; septets unpacked and packed again are the same octets; an
//! SMS-DELIVER nobody tagged is never authentic, and one tagged reads authentic once, then
//! replayed.

use sms::air::Frame;
use sms::{Reassembler, Tpdu};

pub fn run(data: &[u8]) {
    tpdus(data);
    air_frame(data);
    septets(data);
    let _ = sms::UserDataHeader::decode(data);
    let _ = sms::tpdu::split_smsc(data);
}

/// The handset's verdict on `d` as it came (whatever its header holds), then on `d` tagged
/// with the key the handset holds.
fn authentication(d: &sms::SmsDeliver) {
    use sms::auth::{HeldKey, SmsAuthKey, Verdict, Verifier};
    let key = SmsAuthKey::new(1, &[0x42; sms::auth::KEY_LEN]).unwrap_or_else(|e| panic!("{e}"));
    let mut handset =
        Verifier { keys: vec![HeldKey { key: key.clone(), accepted_until: None }], ..Verifier::default() };
    let verdict = handset.verify(d, "4790000001", 0);
    assert!(!verdict.is_authentic(), "an untagged SMS-DELIVER read as authentic: {verdict:?}");
    let mut tagged = d.clone();
    key.tag(&mut tagged, "4790000001", 7);
    assert!(handset.verify(&tagged, "4790000001", 0).is_authentic());
    assert_eq!(handset.verify(&tagged, "4790000001", 0), Verdict::Replayed { counter: 7 });
}

fn tpdus(data: &[u8]) {
    let mut parts = Reassembler::new(4);
    for decoded in [Tpdu::decode_mt(data), Tpdu::decode_mo(data)].into_iter().flatten() {
        if let Ok(bytes) = decoded.encode() {
            let again = match decoded {
                Tpdu::Submit(_) => Tpdu::decode_mo(&bytes),
                _ => Tpdu::decode_mt(&bytes),
            };
            assert_eq!(again.as_ref(), Ok(&decoded), "decode(encode(tpdu)) differs; encoded {bytes:02x?}");
        }
        match &decoded {
            Tpdu::Deliver(d) => {
                // Every part of a message, as if each had arrived: the last completes it.
                let _ = parts.receive_deliver(d);
                authentication(d);
            }
            Tpdu::Submit(s) => {
                let _ = parts.receive("fuzz", &s.user_data, s.dcs);
            }
            Tpdu::StatusReport(_) => {}
        }
    }
}

/// A frame as the air link reads it: the length prefix already removed.
fn air_frame(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        let encoded = frame.encode();
        assert_eq!(&encoded[2..], data, "air frame {frame:?} re-encodes to other bytes");
    }
}

/// Septets at every fill: unpack then pack gives back the octets' used bits.
fn septets(data: &[u8]) {
    let Some((&first, octets)) = data.split_first().filter(|(_, octets)| !octets.is_empty()) else { return };
    let fill = usize::from(first % 7);
    let count = (octets.len() * 8).saturating_sub(fill) / 7;
    let septets = sms::gsm7::unpack(octets, count, fill).expect("count fits the octets");
    let packed = sms::gsm7::pack(&septets, fill);
    let bits = fill + count * 7;
    for (i, (&a, &b)) in packed.iter().zip(octets).enumerate() {
        let used = if (i + 1) * 8 <= bits { 0xFF } else { (1u16 << (bits - i * 8)) as u8 - 1 };
        let skip = if i == 0 { (1u16 << fill) as u8 - 1 } else { 0 };
        let mask = used & !skip;
        assert_eq!(a & mask, b & mask, "octet {i} of {octets:02x?} after unpack/pack at fill {fill}");
    }
    let _ = sms::gsm7::decode(&septets);
}
