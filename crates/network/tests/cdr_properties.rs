//! The CDR file format under random input: any valid file round-trips through the writer and
//! the parser, and corrupt bytes (flipped, cut, inserted, random) are a typed error, never a
//! panic, and never read as a different valid file.

use network::cdr::{self, Cause, Cdr, Charging, FileHeader, RecordType, ServiceVolume};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.;:_-]{1,24}"
}

fn cdr() -> impl Strategy<Value = Cdr> {
    let kind = prop_oneof![Just(RecordType::Voice), Just(RecordType::Data)];
    let charging = prop_oneof![Just(Charging::Online), Just(Charging::PartialCdr), Just(Charging::Offline)];
    let cause = prop_oneof![
        Just(Cause::Normal),
        Just(Cause::CreditLimit),
        Just(Cause::FinalUnits),
        Just(Cause::CutOff),
        Just(Cause::Failure)
    ];
    let service = (any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(|(rg, sid, up, down)| {
        ServiceVolume { rating_group: rg, service_id: sid, uplink_octets: up, downlink_octets: down }
    });
    (
        (kind, text(), "[0-9]{1,15}", "[a-z0-9]{0,15}", any::<i64>(), any::<u64>()),
        (charging, cause, prop_oneof![Just(String::new()), text()], any::<u32>(), any::<Option<u32>>()),
        proptest::collection::vec(service, 0..4),
    )
        .prop_map(
            |(
                (record_type, id, served, other, start_ms, duration_s),
                (charging, cause, session, partials, code),
                services,
            )| {
                Cdr {
                    record_type,
                    record_id: id,
                    served,
                    other_party: other,
                    start_ms,
                    duration_s,
                    charging,
                    cause,
                    session_id: session,
                    partials,
                    result_code: code,
                    services,
                }
            },
        )
}

fn file(records: &[Cdr]) -> Vec<u8> {
    let mut text = FileHeader { node: "msc.test".into(), file_seq: 1, opened_ms: 0 }.encode().unwrap();
    for r in records {
        r.encode_into(&mut text).unwrap();
    }
    let digest = Sha256::digest(text.as_bytes());
    text.push_str(&cdr::trailer(records.len() as u64, &digest, 1));
    text.into_bytes()
}

proptest! {
    #[test]
    fn valid_files_round_trip(records in proptest::collection::vec(cdr(), 0..20)) {
        let parsed = cdr::parse(&file(&records)).unwrap();
        prop_assert_eq!(parsed.records, records);
    }

    #[test]
    fn corrupt_files_are_errors(
        records in proptest::collection::vec(cdr(), 1..8),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        how in 0..3u8,
    ) {
        let good = file(&records);
        let i = at.index(good.len());
        let mut bad = good.clone();
        match how {
            0 => bad[i] = byte,
            1 => bad.truncate(i),
            _ => bad.insert(i, byte),
        }
        if bad != good {
            // The checksum covers every byte before the trailer; a change in the trailer
            // breaks its count, digest or shape. Either way: an error, not another file.
            match cdr::parse(&bad) {
                Err(_) => {}
                Ok(f) => prop_assert_eq!(f.records, records),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = cdr::parse(&bytes);
    }

    #[test]
    fn random_lines_never_panic(lines in proptest::collection::vec("[ -~]{0,80}", 0..8)) {
        let mut text = String::from("#numport-cdr,1,msc.test,1,0\n");
        text.push_str(cdr::COLUMNS);
        text.push('\n');
        for l in lines {
            text.push_str(&l);
            text.push('\n');
        }
        let _ = cdr::parse(text.as_bytes());
    }
}
