//! Known TPDUs decoded and re-encoded, and property tests: any TPDU this codec encodes decodes
//! to itself, and no input makes the decoders panic.

use proptest::prelude::*;
use sms::address::Address;
use sms::tpdu::{Payload, split_smsc};
use sms::udh::{Concat, InformationElement};
use sms::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn sms_submit_hellohello() {
    // SMS-SUBMIT to +46708251358, relative validity AA (4 days), "hellohello", no SMSC prefix.
    let bytes = hex("0011000B916407281553F80000AA0AE8329BFD4697D9EC37");
    let (smsc, tpdu) = split_smsc(&bytes).unwrap();
    assert_eq!(smsc, None);
    let Tpdu::Submit(s) = Tpdu::decode_mo(tpdu).unwrap() else { panic!("not a submit") };
    assert_eq!(s.destination, Address::international("46708251358"));
    assert_eq!(s.validity, Some(ValidityPeriod::Relative(0xAA)));
    assert_eq!(ValidityPeriod::relative_seconds(0xAA), 4 * 86_400);
    assert_eq!(s.user_data.text(s.dcs), "hellohello");
    assert_eq!(Tpdu::Submit(s).encode().unwrap(), tpdu);
}

#[test]
fn sms_deliver_how_are_you() {
    // SMS-DELIVER from +31641600986 through SMSC +31624000000: "How are you?".
    let bytes = hex("07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07");
    let (smsc, tpdu) = split_smsc(&bytes).unwrap();
    assert_eq!(smsc.unwrap().value, "31624000000");
    let Tpdu::Deliver(d) = Tpdu::decode_mt(tpdu).unwrap() else { panic!("not a deliver") };
    assert_eq!(d.originator.value, "31641600986");
    assert!(!d.more_messages);
    assert_eq!(d.user_data.text(d.dcs), "How are you?");
    let t = d.scts;
    assert_eq!((t.year, t.month, t.day, t.hour, t.minute, t.second), (2, 8, 26, 19, 37, 41));
}

#[test]
fn sms_status_report() {
    let bytes = hex("0006D60B911326880736F4111011719551401110117195714000");
    let (_, tpdu) = split_smsc(&bytes).unwrap();
    let Tpdu::StatusReport(r) = Tpdu::decode_mt(tpdu).unwrap() else { panic!("not a status report") };
    assert_eq!(r.message_reference, 0xD6);
    assert_eq!(r.recipient.value, "31628870634");
    assert_eq!(r.status, 0x00, "delivered");
    assert_eq!((r.discharge.hour, r.discharge.minute, r.discharge.second), (17, 59, 17));
    assert_eq!(Tpdu::StatusReport(r).encode().unwrap(), tpdu);
}

/// TP-PI and the optional fields it announces (§9.2.3.27): TP-PID and TP-DCS, TP-UD, a
/// further TP-PI octet skipped; a field announced and missing is an error.
#[test]
fn sms_status_report_with_parameter_indicator() {
    let base = "0006D60B911326880736F4111011719551401110117195714000";
    let bytes = hex(&format!("{base}030041"));
    let (_, tpdu) = split_smsc(&bytes).unwrap();
    let Tpdu::StatusReport(r) = Tpdu::decode_mt(tpdu).unwrap() else { panic!("not a status report") };
    assert_eq!((r.pid, r.dcs, r.user_data.as_ref()), (Some(0x00), Some(DataCoding(0x41)), None));
    assert_eq!(Tpdu::StatusReport(r).encode().unwrap(), tpdu);
    // PI 0x84 (TP-UDL present, another PI octet follows), then PI 0x00, then UDL 5 and "hello".
    let bytes = hex(&format!("{base}840005E8329BFD06"));
    let (_, tpdu) = split_smsc(&bytes).unwrap();
    let Tpdu::StatusReport(r) = Tpdu::decode_mt(tpdu).unwrap() else { panic!("not a status report") };
    let ud = r.user_data.as_ref().unwrap();
    assert_eq!(ud.text(r.data_coding()), "hello");
    for truncated in ["04", "01", "0405"] {
        let bytes = hex(&format!("{base}{truncated}"));
        let (_, tpdu) = split_smsc(&bytes).unwrap();
        assert!(Tpdu::decode_mt(tpdu).is_err(), "PI {truncated}");
    }
}

#[test]
fn concatenated_gsm7_with_fill_bits() {
    let header = UserDataHeader {
        elements: vec![InformationElement::Concat(Concat { reference: 0xCC, wide: false, total: 2, seq: 1 })],
    };
    assert_eq!(header.encode(), hex("050003CC0201"));
    let ud = UserData::gsm7("Hello bank").unwrap().with_header(header.clone());
    let deliver = Tpdu::Deliver(SmsDeliver {
        more_messages: false,
        status_report_indication: false,
        reply_path: false,
        originator: Address::alphanumeric("MyBank"),
        pid: 0,
        dcs: DataCoding::GSM7,
        scts: Timestamp { year: 26, month: 11, day: 23, hour: 17, minute: 5, second: 0, tz_quarters: 4 },
        user_data: ud,
    });
    let bytes = deliver.encode().unwrap();
    // UDHI set; UDL counts 7 septets of header (6 octets + 1 fill bit) plus 10 of text.
    assert_eq!(bytes[0] & 0x40, 0x40);
    let Tpdu::Deliver(back) = Tpdu::decode_mt(&bytes).unwrap() else { panic!() };
    assert_eq!(back.user_data.header.as_ref().unwrap().concat().unwrap().seq, 1);
    assert_eq!(back.user_data.text(back.dcs), "Hello bank");
    assert_eq!(back.originator.value, "MyBank");
    assert_eq!(Tpdu::Deliver(back), deliver);
}

#[test]
fn ucs2_and_sim_data_download() {
    let ud = UserData::ucs2("Привет, 你好");
    assert_eq!(ud.text(DataCoding::UCS2), "Привет, 你好");
    assert_eq!(DataCoding::SIM_DATA_DOWNLOAD.alphabet(), sms::tpdu::Alphabet::EightBit);
    assert_eq!(DataCoding::SIM_DATA_DOWNLOAD.class(), Some(2));
    assert_eq!(DataCoding::UCS2.class(), None);
}

#[test]
fn malformed_input_gets_typed_errors() {
    assert_eq!(Tpdu::decode_mt(&[]), Err(DecodeError::Truncated("first octet")));
    assert!(matches!(Tpdu::decode_mt(&hex("040B9113466100")), Err(DecodeError::Truncated(_))));
    assert!(matches!(Tpdu::decode_mt(&hex("01")), Err(DecodeError::UnsupportedType { mti: 1 })));
    assert!(matches!(Tpdu::decode_mo(&hex("00")), Err(DecodeError::UnsupportedType { mti: 0 })));
    // Trailing garbage after a complete SMS-SUBMIT.
    assert!(matches!(
        Tpdu::decode_mo(&hex("11000B916407281553F80000AA0AE8329BFD4697D9EC37FF")),
        Err(DecodeError::TrailingBytes(1))
    ));
    // A month of 13.
    let mut bad = hex("040B911346610089F60000208062917314080CC8F71D14969741F977FD07");
    bad[12] = 0x31;
    assert_eq!(Tpdu::decode_mt(&bad), Err(DecodeError::Timestamp("month")));
    // An SMSC address of a type octet alone whose high nibble looks like a filler.
    assert_eq!(
        split_smsc(&hex("01F0")).map(|(a, rest)| (a.map(|a| a.value), rest.len())),
        Ok((Some(String::new()), 0))
    );
    assert_eq!(split_smsc(&[20; 30]), Err(DecodeError::AddressLength(38)));
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0u8..100, 1u8..13, 1u8..32, 0u8..24, 0u8..60, 0u8..60, -79i8..80).prop_map(
        |(year, month, day, hour, minute, second, tz_quarters)| Timestamp {
            year,
            month,
            day,
            hour,
            minute,
            second,
            tz_quarters,
        },
    )
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        "[1-9][0-9]{7,14}".prop_map(|d| Address::international(&d)),
        "[A-Za-z0-9 ]{1,11}".prop_map(|t| Address::alphanumeric(&t)),
    ]
}

fn header() -> impl Strategy<Value = Option<UserDataHeader>> {
    proptest::option::of((any::<u16>(), any::<bool>(), 1u8..10, proptest::collection::vec(any::<u8>(), 0..5)).prop_map(
        |(r, wide, total, other)| UserDataHeader {
            elements: vec![
                InformationElement::Concat(Concat { reference: if wide { r } else { r & 0xFF }, wide, total, seq: 1 }),
                InformationElement::Other { iei: 0x70, data: other },
            ],
        },
    ))
}

fn user_data() -> impl Strategy<Value = (DataCoding, UserData)> {
    prop_oneof![
        (header(), proptest::collection::vec(0u8..128, 0..120))
            .prop_map(|(header, s)| (DataCoding::GSM7, UserData { header, payload: Payload::Septets(s) })),
        (header(), proptest::collection::vec(any::<u8>(), 0..120))
            .prop_map(|(header, o)| (DataCoding::EIGHT_BIT, UserData { header, payload: Payload::Octets(o) })),
    ]
}

proptest! {
    #[test]
    fn deliver_round_trips(originator in address(), scts in timestamp(), (dcs, user_data) in user_data(), pid in any::<u8>(), flags in any::<[bool; 3]>()) {
        let t = Tpdu::Deliver(SmsDeliver { more_messages: flags[0], status_report_indication: flags[1], reply_path: flags[2], originator, pid, dcs, scts, user_data });
        // Sizes are drawn to fit, so encoding must succeed.
        let bytes = t.encode().unwrap();
        prop_assert_eq!(Tpdu::decode_mt(&bytes).unwrap(), t);
    }

    #[test]
    fn submit_round_trips(destination in address(), vp in proptest::option::of(prop_oneof![any::<u8>().prop_map(ValidityPeriod::Relative), timestamp().prop_map(ValidityPeriod::Absolute), any::<[u8; 7]>().prop_map(ValidityPeriod::Enhanced)]), (dcs, user_data) in user_data(), mr in any::<u8>(), flags in any::<[bool; 3]>()) {
        let t = Tpdu::Submit(SmsSubmit { reject_duplicates: flags[0], status_report_request: flags[1], reply_path: flags[2], message_reference: mr, destination, pid: 0, dcs, validity: vp, user_data });
        let bytes = t.encode().unwrap();
        prop_assert_eq!(Tpdu::decode_mo(&bytes).unwrap(), t);
    }

    /// The fuzz target's property (fuzz/fuzz_targets/tpdu.rs), here on random and on
    /// corrupted valid input, so that CI exercises it without a nightly toolchain.
    #[test]
    fn decoders_never_panic_and_what_decodes_re_encodes(
        random in proptest::collection::vec(any::<u8>(), 0..200),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut corrupted = hex("0011000B916407281553F80000AA0AE8329BFD4697D9EC37")[1..].to_vec();
        for (at, x) in flips {
            let n = corrupted.len();
            corrupted[at % n] ^= x;
        }
        for bytes in [random, corrupted] {
            let _ = split_smsc(&bytes);
            for decoded in [Tpdu::decode_mt(&bytes), Tpdu::decode_mo(&bytes)].into_iter().flatten() {
                if let Ok(again) = decoded.encode() {
                    let back = match decoded { Tpdu::Submit(_) => Tpdu::decode_mo(&again), _ => Tpdu::decode_mt(&again) };
                    prop_assert_eq!(back.as_ref(), Ok(&decoded));
                }
            }
        }
    }
}
