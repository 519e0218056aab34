//! Concatenated messages end to end: `segment` → SMS-DELIVER bytes → `Tpdu::decode_mt` →
//! `Reassembler`, with part counts at the size boundaries, escape sequences and surrogate pairs
//! at part boundaries, parts out of order and repeated, and property tests over any text.

use proptest::prelude::*;
use sms::address::Address;
use sms::tpdu::Payload;
use sms::udh::Concat;
use sms::*;

const ORIGINATOR: &str = "4790000001";

fn deliver(dcs: DataCoding, user_data: UserData) -> Tpdu {
    Tpdu::Deliver(SmsDeliver {
        more_messages: false,
        status_report_indication: false,
        reply_path: false,
        originator: Address::international(ORIGINATOR),
        pid: 0,
        dcs,
        scts: Timestamp { year: 26, month: 3, day: 1, hour: 12, minute: 0, second: 0, tz_quarters: 4 },
        user_data,
    })
}

/// Octets before TP-UD in [`deliver`]'s TPDUs (an empty 7-bit text has no TP-UD at all).
fn ud_offset() -> usize {
    deliver(DataCoding::GSM7, UserData { header: None, payload: Payload::Septets(vec![]) }).encode().unwrap().len()
}

/// Each part as the handset receives it: encoded, checked to fit 140 octets, decoded.
fn over_the_air(segments: &Segments) -> Vec<SmsDeliver> {
    segments
        .parts
        .iter()
        .map(|ud| {
            let bytes = deliver(segments.dcs, ud.clone()).encode().unwrap();
            assert!(bytes.len() - ud_offset() <= 140, "TP-UD of {} octets", bytes.len() - ud_offset());
            let Tpdu::Deliver(d) = Tpdu::decode_mt(&bytes).unwrap() else { panic!("not an SMS-DELIVER") };
            assert_eq!(&d.user_data, ud, "user data survives the air");
            d
        })
        .collect()
}

/// Feeds `received` in the order given; the text must come out at the last part, not before.
fn reassemble(received: &[SmsDeliver]) -> String {
    let mut r = Reassembler::new(4);
    let (last, rest) = received.split_last().unwrap();
    for d in rest {
        assert_eq!(r.receive_deliver(d), None);
    }
    let text = r.receive_deliver(last).expect("complete");
    assert_eq!(r.pending(), 0);
    text
}

fn round_trip(text: &str, reference: Reference) -> Vec<SmsDeliver> {
    let segments = segment(text, reference).unwrap();
    let received = over_the_air(&segments);
    assert_eq!(reassemble(&received), text);
    received
}

fn concat(d: &SmsDeliver) -> Option<Concat> {
    d.user_data.header.as_ref().and_then(UserDataHeader::concat)
}

fn septets(d: &SmsDeliver) -> &[u8] {
    match &d.user_data.payload {
        Payload::Septets(s) => s,
        Payload::Octets(_) => panic!("octets"),
    }
}

fn octets(d: &SmsDeliver) -> &[u8] {
    match &d.user_data.payload {
        Payload::Octets(o) => o,
        Payload::Septets(_) => panic!("septets"),
    }
}

fn parts(text: &str, reference: Reference) -> usize {
    segment(text, reference).unwrap().parts.len()
}

#[test]
fn part_counts_at_the_boundaries() {
    let eight = Reference::Eight(7);
    let sixteen = Reference::Sixteen(0x1234);
    let a = |n| "a".repeat(n);
    assert_eq!(parts("", eight), 1);
    assert_eq!(parts(&a(160), eight), 1);
    assert_eq!(parts(&a(161), eight), 2);
    assert_eq!(parts(&a(306), eight), 2);
    assert_eq!(parts(&a(307), eight), 3);
    assert_eq!(parts(&a(304), sixteen), 2);
    assert_eq!(parts(&a(305), sixteen), 3);
    // Extension characters count as two septets.
    assert_eq!(parts(&"€".repeat(80), eight), 1);
    assert_eq!(parts(&format!("{}a", "€".repeat(80)), eight), 2);
    let uc = |n| "ø".repeat(n) + "ж";
    assert_eq!(parts(&uc(69), eight), 1);
    assert_eq!(parts(&uc(70), eight), 2);
    assert_eq!(parts(&uc(133), eight), 2);
    assert_eq!(parts(&uc(134), eight), 3);
    assert_eq!(parts(&uc(131), sixteen), 2);
    assert_eq!(parts(&uc(132), sixteen), 3);
    // A surrogate pair counts as two units.
    assert_eq!(parts(&"😀".repeat(35), eight), 1);
    assert_eq!(parts(&format!("{}a", "😀".repeat(35)), eight), 2);
}

#[test]
fn single_part_texts_have_no_header() {
    for text in ["", "Hello", &"a".repeat(160), &"€".repeat(80), "Blåbærsyltetøy", "你好", &"😀".repeat(35)] {
        let received = round_trip(text, Reference::Eight(1));
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].user_data.header, None, "{text:?}");
    }
    assert_eq!(segment("Hello", Reference::Eight(1)).unwrap().dcs, DataCoding::GSM7);
    assert_eq!(segment("你好", Reference::Eight(1)).unwrap().dcs, DataCoding::UCS2);
}

#[test]
fn gsm7_parts_are_full_numbered_and_carry_the_reference() {
    let text: String = (0..400).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let received = round_trip(&text, Reference::Eight(0xCC));
    assert_eq!(received.iter().map(|d| septets(d).len()).collect::<Vec<_>>(), [153, 153, 94]);
    for (i, d) in received.iter().enumerate() {
        assert_eq!(concat(d), Some(Concat { reference: 0xCC, wide: false, total: 3, seq: i as u8 + 1 }));
        assert_eq!(d.user_data.header.as_ref().unwrap().encode(), [5, 0, 3, 0xCC, 3, i as u8 + 1]);
    }
    let received = round_trip(&text, Reference::Sixteen(0xBEEF));
    assert_eq!(received.iter().map(|d| septets(d).len()).collect::<Vec<_>>(), [152, 152, 96]);
    for (i, d) in received.iter().enumerate() {
        assert_eq!(concat(d), Some(Concat { reference: 0xBEEF, wide: true, total: 3, seq: i as u8 + 1 }));
    }
}

#[test]
fn gsm7_user_data_with_header_has_fill_bits() {
    // 8-bit reference: 6 header octets + 1 fill bit = 7 septets; 153 + 7 = 160 septets in 140 octets.
    let segments = segment(&"a".repeat(200), Reference::Eight(1)).unwrap();
    let bytes = deliver(segments.dcs, segments.parts[0].clone()).encode().unwrap();
    let ud = &bytes[ud_offset()..];
    assert_eq!(bytes[ud_offset() - 1], 160, "TP-UDL");
    assert_eq!(ud.len(), 140);
    assert_eq!(&ud[..6], [5, 0, 3, 1, 2, 1]);
    assert_eq!(ud[6], 0x61 << 1, "first septet after one fill bit");
    // 16-bit reference: 7 header octets are 8 septets exactly, no fill; 152 + 8 = 160.
    let segments = segment(&"a".repeat(200), Reference::Sixteen(1)).unwrap();
    let bytes = deliver(segments.dcs, segments.parts[0].clone()).encode().unwrap();
    assert_eq!(bytes[ud_offset() - 1], 160);
    assert_eq!(bytes.len() - ud_offset(), 140);
    assert_eq!(bytes[ud_offset() + 7] & 0x7F, 0x61, "first septet without fill");
}

#[test]
fn escape_sequences_are_not_cut() {
    const ESC: u8 = 0x1B;
    for (reference, per_part) in [(Reference::Eight(9), 153), (Reference::Sixteen(9), 152)] {
        for ext in ['€', '{', '}', '[', '\\', '|'] {
            // The escape would be the last septet of part 1: the pair moves to part 2.
            let text = format!("{}{ext}{}", "a".repeat(per_part - 1), "b".repeat(200));
            let received = round_trip(&text, reference);
            assert_eq!(septets(&received[0]).len(), per_part - 1);
            assert_eq!(septets(&received[1])[0], ESC);
            for d in &received {
                assert_eq!(d.user_data.text(d.dcs), gsm7_text_of(d), "each part reads on its own");
                assert_ne!(septets(d).last(), Some(&ESC));
            }
            // The pair fits exactly at the end of part 1.
            let text = format!("{}{ext}{}", "a".repeat(per_part - 2), "b".repeat(200));
            let received = round_trip(&text, reference);
            assert_eq!(septets(&received[0]).len(), per_part);
            assert_eq!(received[0].user_data.text(received[0].dcs).chars().last(), Some(ext));
        }
        // Nothing but extension characters, so every boundary falls on an odd septet count.
        let text = "{€}".repeat(120);
        let received = round_trip(&text, reference);
        assert!(received.iter().all(|d| septets(d).len().is_multiple_of(2) && septets(d).len() <= per_part));
    }
}

fn gsm7_text_of(d: &SmsDeliver) -> String {
    sms::gsm7::decode(septets(d))
}

#[test]
fn ucs2_texts_and_surrogate_pairs_at_boundaries() {
    for text in
        ["Blåbærsyltetøy – på skiva! ".repeat(12), "短信可以分成几个部分发送。".repeat(20), "🇳🇴🎉😀 ok ".repeat(40)]
    {
        assert_eq!(segment(&text, Reference::Eight(42)).unwrap().dcs, DataCoding::UCS2);
        round_trip(&text, Reference::Eight(42));
        round_trip(&text, Reference::Sixteen(4242));
    }
    for (reference, per_part) in [(Reference::Eight(3), 67), (Reference::Sixteen(3), 66)] {
        // The high surrogate would be the last unit of part 1: the pair moves to part 2.
        let text = format!("{}😀{}", "ø".repeat(per_part - 1), "你".repeat(80));
        let received = round_trip(&text, reference);
        assert_eq!(octets(&received[0]).len(), 2 * (per_part - 1));
        assert_eq!(octets(&received[1])[..4], [0xD8, 0x3D, 0xDE, 0x00]);
        for d in &received {
            assert!(!d.user_data.text(d.dcs).contains('\u{FFFD}'), "each part reads on its own");
        }
        // The pair fits exactly.
        let text = format!("{}😀{}", "ø".repeat(per_part - 2), "你".repeat(80));
        let received = round_trip(&text, reference);
        assert_eq!(octets(&received[0]).len(), 2 * per_part);
        // Emoji only: every part holds whole pairs.
        let received = round_trip(&"😀".repeat(100), reference);
        assert!(received.iter().all(|d| octets(d).len().is_multiple_of(4)));
    }
}

#[test]
fn out_of_order_and_repeated_parts() {
    let text = "Your one-time code is 123456. ".repeat(20);
    let received = over_the_air(&segment(&text, Reference::Eight(77)).unwrap());
    assert_eq!(received.len(), 4);
    let mut r = Reassembler::new(8);
    for i in [2, 0, 2, 3, 0] {
        assert_eq!(r.receive_deliver(&received[i]), None);
    }
    assert_eq!(r.pending(), 1);
    assert_eq!(r.receive_deliver(&received[1]), Some(text.clone()));
    assert_eq!(r.pending(), 0);
    // A part repeated after completion starts over rather than completing anything.
    assert_eq!(r.receive_deliver(&received[3]), None);
    assert_eq!(r.pending(), 1);
}

#[test]
fn messages_are_kept_apart_by_originator_reference_and_total() {
    let one = segment(&"x".repeat(200), Reference::Eight(5)).unwrap();
    let two = segment(&"y".repeat(200), Reference::Eight(6)).unwrap();
    let wide = segment(&"z".repeat(200), Reference::Sixteen(5)).unwrap();
    let three_parts = segment(&"w".repeat(400), Reference::Eight(5)).unwrap();
    let mut r = Reassembler::new(8);
    let mut feed = |from: &str, s: &Segments, i: usize| r.receive(from, &s.parts[i], s.dcs);
    assert_eq!(feed("A", &one, 0), None);
    assert_eq!(feed("B", &one, 1), None, "same reference, other originator");
    assert_eq!(feed("A", &two, 1), None);
    assert_eq!(feed("A", &wide, 1), None, "same number, 16-bit reference");
    assert_eq!(feed("A", &three_parts, 1), None, "same reference, other total");
    assert_eq!(feed("A", &one, 1), Some("x".repeat(200)));
    assert_eq!(feed("A", &two, 0), Some("y".repeat(200)));
    assert_eq!(feed("A", &wide, 0), Some("z".repeat(200)));
    assert_eq!(feed("B", &one, 0), Some("x".repeat(200)));
    assert_eq!(feed("A", &three_parts, 0), None);
    assert_eq!(feed("A", &three_parts, 2), Some("w".repeat(400)));
}

#[test]
fn pending_messages_are_bounded_and_the_oldest_goes_first() {
    let messages: Vec<Segments> = (0..4).map(|i| segment(&"m".repeat(200), Reference::Eight(i)).unwrap()).collect();
    let mut r = Reassembler::new(2);
    assert_eq!(r.receive(ORIGINATOR, &messages[0].parts[0], DataCoding::GSM7), None);
    assert_eq!(r.receive(ORIGINATOR, &messages[1].parts[0], DataCoding::GSM7), None);
    assert_eq!(r.receive(ORIGINATOR, &messages[2].parts[0], DataCoding::GSM7), None);
    assert_eq!(r.pending(), 2);
    // Message 0 was dropped: its second part now waits for a first that is gone.
    assert_eq!(r.receive(ORIGINATOR, &messages[0].parts[1], DataCoding::GSM7), None);
    assert_eq!(r.pending(), 2);
    // That evicted message 1, the least recently fed; message 2 is still whole.
    assert_eq!(r.receive(ORIGINATOR, &messages[2].parts[1], DataCoding::GSM7), Some("m".repeat(200)));
    assert_eq!(r.receive(ORIGINATOR, &messages[1].parts[1], DataCoding::GSM7), None);
    // A capacity of zero still holds one message.
    let mut r = Reassembler::new(0);
    assert_eq!(r.receive(ORIGINATOR, &messages[3].parts[0], DataCoding::GSM7), None);
    assert_eq!(r.receive(ORIGINATOR, &messages[3].parts[1], DataCoding::GSM7), Some("m".repeat(200)));
}

#[test]
fn unsegmented_and_invalid_concatenation_read_at_once() {
    let mut r = Reassembler::new(4);
    assert_eq!(r.receive(ORIGINATOR, &UserData::gsm7("plain").unwrap(), DataCoding::GSM7), Some("plain".into()));
    assert_eq!(r.receive(ORIGINATOR, &UserData::ucs2("ære"), DataCoding::UCS2), Some("ære".into()));
    // TS 23.040 §9.2.3.24.1: a total of 0, or a sequence number of 0 or past the total, makes
    // the element void; a total of 1 is a whole message.
    for (total, seq) in [(0, 0), (0, 1), (3, 0), (3, 4), (1, 1)] {
        let header = UserDataHeader {
            elements: vec![InformationElement::Concat(Concat { reference: 1, wide: false, total, seq })],
        };
        let ud = UserData::gsm7("part").unwrap().with_header(header);
        assert_eq!(r.receive(ORIGINATOR, &ud, DataCoding::GSM7), Some("part".into()), "{total}/{seq}");
    }
    assert_eq!(r.pending(), 0);
}

#[test]
fn a_cut_another_sender_made_still_reads_whole() {
    // Parts split inside a surrogate pair and inside an escape sequence, as a careless sender might.
    let cut = |payloads: [Payload; 2], dcs: DataCoding| {
        let mut r = Reassembler::new(1);
        let mut out = None;
        for (i, payload) in payloads.into_iter().enumerate() {
            let header = UserDataHeader {
                elements: vec![InformationElement::Concat(Concat {
                    reference: 1,
                    wide: false,
                    total: 2,
                    seq: i as u8 + 1,
                })],
            };
            out = r.receive(ORIGINATOR, &UserData { header: Some(header), payload }, dcs);
        }
        out
    };
    let units = [0x0061u16, 0xD83D, 0xDE00, 0x0062].map(u16::to_be_bytes).concat();
    let ucs2 = [Payload::Octets(units[..4].to_vec()), Payload::Octets(units[4..].to_vec())];
    assert_eq!(cut(ucs2, DataCoding::UCS2), Some("a😀b".into()));
    let gsm = [Payload::Septets(vec![0x61, 0x1B]), Payload::Septets(vec![0x65, 0x62])];
    assert_eq!(cut(gsm, DataCoding::GSM7), Some("a€b".into()));
}

#[test]
fn more_than_255_parts_is_an_error() {
    assert_eq!(parts(&"a".repeat(255 * 153), Reference::Eight(1)), 255);
    assert_eq!(segment(&"a".repeat(255 * 153 + 1), Reference::Eight(1)), Err(SegmentError::TooManyParts(256)));
    assert_eq!(segment(&"你".repeat(255 * 66 + 1), Reference::Sixteen(1)), Err(SegmentError::TooManyParts(256)));
}

#[test]
fn a_stored_payload_splits_in_its_own_coding() {
    let reference = Reference::Sixteen(0xBEEF);
    let over_the_air_of = |payload: Payload, dcs: DataCoding| {
        let parts = split_payload(payload, dcs, reference).unwrap();
        over_the_air(&Segments { dcs, parts })
    };
    // 8-bit data: 140 octets fit one SMS, 141 need two of at most 133.
    let data: Vec<u8> = (0..=255u8).cycle().take(400).collect();
    assert_eq!(over_the_air_of(Payload::Octets(data[..140].to_vec()), DataCoding::EIGHT_BIT).len(), 1);
    let received = over_the_air_of(Payload::Octets(data.clone()), DataCoding::EIGHT_BIT);
    assert_eq!(received.len(), 4);
    assert_eq!(received.iter().flat_map(|d| octets(d).to_vec()).collect::<Vec<_>>(), data);
    assert!(received.iter().all(|d| octets(d).len() <= 133 && concat(d).is_some_and(|c| c.wide)));
    // UCS-2 stays UCS-2 even where the 7-bit alphabet would do, and a surrogate pair is not cut.
    let text = format!("{}😀{}", "a".repeat(65), "b".repeat(70));
    let ucs2: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let received = over_the_air_of(Payload::Octets(ucs2), DataCoding::UCS2);
    assert_eq!(received.len(), 3);
    assert_eq!(octets(&received[0]).len(), 65 * 2, "the pair moves to the next part");
    assert_eq!(reassemble(&received), text);
    // Septets as stored: an escape sequence is not cut.
    let stored = gsm7::encode(&format!("{}€{}", "x".repeat(151), "y".repeat(10))).unwrap();
    let received = over_the_air_of(Payload::Septets(stored), DataCoding::GSM7);
    assert_eq!((received.len(), septets(&received[0]).len()), (2, 151));
    assert_eq!(
        split_payload(Payload::Octets(vec![0; 255 * 133 + 1]), DataCoding::EIGHT_BIT, reference),
        Err(SegmentError::TooManyParts(256))
    );
}

/// Text drawn from the 7-bit alphabet with extension characters, sometimes with a character
/// outside it (forcing UCS-2), or any Unicode at all.
fn text() -> impl Strategy<Value = String> {
    let gsm = prop_oneof![
        8 => proptest::char::range('a', 'z'),
        2 => proptest::sample::select(vec![' ', '@', '£', 'Ø', 'ß', 'É', '\n', '¤', 'ü']),
        2 => proptest::sample::select(vec!['€', '{', '}', '[', ']', '\\', '^', '~', '|', '\u{0C}']),
    ];
    let wide = proptest::sample::select(vec!['ж', '你', '😀', '🇳', '\u{1B}', '\u{FFFF}', '\u{10FFFF}']);
    prop_oneof![
        proptest::collection::vec(gsm.clone(), 0..700).prop_map(String::from_iter),
        proptest::collection::vec(prop_oneof![10 => gsm, 1 => wide], 0..500).prop_map(String::from_iter),
        proptest::collection::vec(any::<char>(), 0..400).prop_map(String::from_iter),
    ]
}

proptest! {
    #[test]
    fn segment_and_reassemble_give_back_the_text(text in text(), r in any::<u16>(), wide in any::<bool>(), order in proptest::collection::vec(any::<u32>(), 1..40)) {
        let reference = if wide { Reference::Sixteen(r) } else { Reference::Eight(r as u8) };
        let segments = segment(&text, reference).unwrap();
        // `over_the_air` checks each TP-UD is within 140 octets and decodes to what was sent.
        let received = over_the_air(&segments);
        prop_assert_eq!(received.len() == 1, received[0].user_data.header.is_none());
        // Any order, with some parts again before the last one arrives. (After it, a repeat
        // cannot be told from a new message that reuses the reference.)
        let mut keyed: Vec<(u32, &SmsDeliver)> = received.iter().enumerate().map(|(i, d)| (order[i % order.len()] ^ i as u32, d)).collect();
        keyed.sort_by_key(|(k, _)| *k);
        let mut fed: Vec<&SmsDeliver> = keyed.into_iter().map(|(_, d)| d).collect();
        let last = fed.pop().unwrap();
        let repeats: Vec<&SmsDeliver> = fed.iter().enumerate().filter(|(i, _)| order[i % order.len()] % 3 == 0).map(|(_, d)| *d).collect();
        fed.extend(repeats);
        fed.push(last);
        let mut r = Reassembler::new(1);
        let mut out = Vec::new();
        for d in fed {
            out.extend(r.receive_deliver(d));
        }
        prop_assert_eq!(r.pending(), 0);
        prop_assert_eq!(out, vec![text]);
    }
}

/// 8-bit data with an element for the first part only (SIM data download's command packet
/// identifier): parts filled to 140 octets with their headers, the element in part 1 alone,
/// and the octets back whole from `receive_octets`, parts in any order.
#[test]
fn octets_split_with_a_first_part_element_and_come_back_whole() {
    let cpi = udh::InformationElement::command_packet();
    let single = split_octets(&[7; 137], Reference::Eight(1), std::slice::from_ref(&cpi)).unwrap();
    assert_eq!(single.len(), 1, "137 octets and a 3-octet header fit one SMS");
    assert_eq!(single[0].header.as_ref().unwrap().elements, std::slice::from_ref(&cpi));
    for (len, reference, parts) in
        [(138, Reference::Eight(2), 2), (400, Reference::Sixteen(3), 4), (132 + 134, Reference::Eight(4), 2)]
    {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let uds = split_octets(&data, reference, std::slice::from_ref(&cpi)).unwrap();
        assert_eq!(uds.len(), parts, "{len} octets");
        let mut r = Reassembler::new(4);
        let mut whole = None;
        for (i, ud) in uds.iter().enumerate().rev() {
            let bytes = deliver(DataCoding::EIGHT_BIT, ud.clone()).encode().unwrap();
            assert!(bytes.len() - ud_offset() <= 140);
            let header = ud.header.as_ref().unwrap();
            assert_eq!(header.has(udh::IEI_COMMAND_PACKET), i == 0, "part {}", i + 1);
            whole = r.receive_octets(ORIGINATOR, ud, DataCoding::EIGHT_BIT).or(whole);
        }
        assert_eq!(whole, Some(data));
    }
}
