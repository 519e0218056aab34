//! tshark reads SMS-DELIVERs and SMS-STATUS-REPORTs carrying the SMS authentication element
//! (IEI 0xD4, SC-specific use) as it reads any: every TPDU decodes, the element shows as an
//! element of the user data header with its 13 octets (in a status report, the user data
//! TP-PI announces), the concatenation element beside it, and nothing is malformed. The TPDUs
//! are this crate's, tagged as the SMS center tags them.

use sms::address::Address;
use sms::auth::{ELEMENT_OCTETS, IEI_SMS_AUTH, SmsAuthKey};
use sms::concat::{Reference, split_payload_leaving};
use sms::tpdu::{DataCoding, Payload, SmsDeliver, SmsStatusReport, Timestamp, Tpdu, UserData};
use testkit::capture::{DLT_USER0, PROBLEMS, tshark, tshark_user_dlt, write_pcap};

fn deliver(originator: Address, dcs: DataCoding, user_data: UserData) -> SmsDeliver {
    SmsDeliver {
        more_messages: false,
        status_report_indication: false,
        reply_path: false,
        originator,
        pid: 0,
        dcs,
        scts: Timestamp { year: 26, month: 12, day: 7, hour: 13, minute: 30, second: 5, tz_quarters: 4 },
        user_data,
    }
}

fn report(status: u8) -> SmsStatusReport {
    let ts = Timestamp { year: 26, month: 12, day: 7, hour: 13, minute: 30, second: 5, tz_quarters: 4 };
    SmsStatusReport {
        more_messages: false,
        qualifier_command: false,
        message_reference: 42,
        recipient: Address::international("4791000005"),
        scts: ts,
        discharge: Timestamp { second: 9, ..ts },
        status,
        pid: None,
        dcs: None,
        user_data: None,
    }
}

#[test]
fn tshark_decodes_tagged_tpdus_without_malformed_packets() {
    let Some(_) = testkit::command("tshark", "apt-get install tshark") else { return };
    let key = SmsAuthKey::new(1, &[0x42; 32]).unwrap();
    let mut tpdus = Vec::new();
    let mut counter = 1;
    let tag = |mut d: SmsDeliver, counter: &mut u32| {
        key.tag(&mut d, "4790000002", *counter);
        *counter += 1;
        Tpdu::Deliver(d).encode().unwrap()
    };
    // A bank's one-part SMS in the 7-bit alphabet, and a UCS-2 one from a number.
    tpdus.push(tag(
        deliver(Address::alphanumeric("MyBank"), DataCoding::GSM7, UserData::gsm7("Your code is 123456").unwrap()),
        &mut counter,
    ));
    tpdus.push(tag(
        deliver(Address::international("4791000005"), DataCoding::UCS2, UserData::ucs2("Hei fra Tromsø 🌌")),
        &mut counter,
    ));
    // A long statement in three parts, each with its concatenation element and its own tag.
    let septets = sms::gsm7::encode(&"Kontoutskrift: saldo 1234,50 NOK. ".repeat(11)).unwrap();
    let parts =
        split_payload_leaving(Payload::Septets(septets), DataCoding::GSM7, Reference::Sixteen(0x0102), ELEMENT_OCTETS)
            .unwrap();
    assert_eq!(parts.len(), 3);
    for ud in parts {
        tpdus.push(tag(deliver(Address::alphanumeric("MyBank"), DataCoding::GSM7, ud), &mut counter));
    }
    // Status reports: "delivered" and "expired", the element in the user data TP-PI announces,
    // one of them with TP-PID and TP-DCS present.
    for (status, pi_fields) in [(0x00, false), (0x46, true)] {
        let mut r = report(status);
        if pi_fields {
            (r.pid, r.dcs) = (Some(0), Some(DataCoding::GSM7));
        }
        key.tag(&mut r, "4790000002", counter);
        counter += 1;
        tpdus.push(Tpdu::StatusReport(r).encode().unwrap());
    }

    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("tpdus.pcap");
    write_pcap(&pcap, DLT_USER0, &tpdus);
    let dlt = tshark_user_dlt("gsm_sms");
    let fields = |filter: &str, field: &str| tshark(&pcap, &["-o", &dlt, "-Y", filter, "-T", "fields", "-e", field]);

    assert_eq!(fields("gsm_sms", "gsm_sms.tp-mti").len(), tpdus.len(), "every TPDU decodes as SMS");
    assert!(fields(PROBLEMS, "frame.number").is_empty(), "malformed or warned: {:?}", fields(PROBLEMS, "frame.number"));
    let ieis = fields("gsm_sms", "gsm_sms.ie_identifier");
    let data = fields("gsm_sms", "gsm_sms.ie_data");
    assert_eq!((ieis.len(), data.len()), (tpdus.len(), tpdus.len()));
    let auth = format!("0x{IEI_SMS_AUTH:02x}");
    for (i, tpdu) in tpdus.iter().enumerate() {
        let ieis: Vec<&str> = ieis[i].split(',').collect();
        assert_eq!(ieis.last(), Some(&auth.as_str()), "TPDU {i}: the element comes last in {ieis:?}");
        let concatenated = (2..5).contains(&i);
        assert_eq!(ieis.len(), if concatenated { 2 } else { 1 }, "TPDU {i}: {ieis:?}");
        // tshark reads the element's 13 octets as they were encoded.
        let element = match Tpdu::decode_mt(tpdu) {
            Ok(Tpdu::Deliver(d)) => sms::auth::element(&d),
            Ok(Tpdu::StatusReport(r)) => sms::auth::element(&r),
            other => panic!("TPDU {i}: {other:?}"),
        };
        let element = element.unwrap().expect("tagged");
        let shown = data[i].split(',').next_back().unwrap().replace(':', "");
        assert_eq!(shown, hex::encode(element.encode()), "TPDU {i}");
    }
}
