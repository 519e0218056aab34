//! The virtual card under OTA: what it writes, what it refuses and with which PoR status, and
//! that a refused packet never gets a signed or ciphered answer.

use sim::apdu::{self, ScriptResult, fid, sw};
use sim::packet::{
    CommandHeader, CounterMode, Integrity, KeyIdentifier, OtaKeys, PorRequest, PorStatus, ResponsePacket, Spi, Tar,
    decode_response_packet, encode_command_packet,
};
use sim::sms_pp::{DataDownload, command_delivers, por_from_submit};
use sim::uicc::{Card, Personalisation, SecurityLevel};
use sim::{Algorithm, Key};
use sms::{Address, Reference, Timestamp};

const IMSI: &str = "242019000000001";

fn keys() -> OtaKeys {
    OtaKeys::aes(&[0x4B; 16], &[0x1D; 16]).unwrap()
}

fn des_keys() -> OtaKeys {
    let h = |s: &str| hex::decode(s).unwrap();
    OtaKeys::triple_des(&h("0123456789abcdeffedcba9876543210"), &h("00112233445566778899aabbccddeeff")).unwrap()
}

fn card() -> Card {
    Card::personalise(&Personalisation {
        imsi: IMSI.into(),
        k_sim: vec![0x5A; 16],
        ota_keys: vec![(1, keys()), (2, des_keys())],
        msisdn: Some("+4790000001".into()),
        spn: Some("Operator A".into()),
        smsc: Some("+4790000000".into()),
        sms_auth: Some((1, vec![0x77; 32])),
    })
    .unwrap()
}

fn header(counter: u64) -> CommandHeader {
    CommandHeader {
        spi: Spi::SECURE,
        kic: KeyIdentifier::new(1, Algorithm::Aes),
        kid: KeyIdentifier::new(1, Algorithm::Aes),
        tar: Tar::RFM_SIM,
        counter,
    }
}

fn write_spn(name: &str) -> Vec<u8> {
    [
        apdu::select(fid::DF_GSM),
        apdu::select(fid::EF_SPN),
        apdu::update_binary(0, &sim::files::encode_spn(name, 1).unwrap()),
    ]
    .concat()
}

/// The card's PoR as the server reads it.
fn por(card_keys: &OtaKeys, spi: &Spi, por: &[u8]) -> ResponsePacket {
    decode_response_packet(card_keys, spi, por).unwrap()
}

#[test]
fn a_secured_script_writes_the_card_and_is_answered_with_a_signed_por() {
    let mut c = card();
    assert_eq!(c.spn().as_deref(), Some("Operator A"));
    let script = [
        write_spn("Operator B"),
        apdu::select(fid::EF_SMSP),
        apdu::update_record(1, &sim::files::encode_smsp_record("+4791000000").unwrap()),
        apdu::select(fid::EF_MSISDN),
        apdu::update_record(1, &sim::files::encode_msisdn_record("+4791000007").unwrap()),
        apdu::read_record(1, 28),
    ]
    .concat();
    let packet = encode_command_packet(&keys(), &header(1), &script).unwrap();
    let out = c.receive_command_packet(&packet);
    assert_eq!(out.status, PorStatus::Ok);
    let r = por(&keys(), &Spi::SECURE, out.por.as_deref().unwrap());
    assert!(r.authenticated);
    assert_eq!((r.status, r.counter, r.tar), (PorStatus::Ok, 1, Tar::RFM_SIM));
    let result = ScriptResult::decode(&r.additional_data).unwrap();
    assert_eq!((result.executed, result.last_sw), (8, sw::OK));
    assert_eq!(result.last_data, sim::files::encode_msisdn_record("+4791000007").unwrap());
    assert_eq!(c.spn().as_deref(), Some("Operator B"));
    assert_eq!(c.smsc().as_deref(), Some("+4791000000"));
    assert_eq!(c.msisdn().as_deref(), Some("+4791000007"));
    assert_eq!(c.imsi().as_deref(), Some(IMSI));
    assert_eq!(c.counter(Tar::RFM_SIM), 1);
}

#[test]
fn a_replayed_counter_is_refused_also_after_a_restart() {
    let mut c = card();
    let first = encode_command_packet(&keys(), &header(5), &write_spn("First")).unwrap();
    assert_eq!(c.receive_command_packet(&first).status, PorStatus::Ok);
    // The attacker replays it after the operator wrote something else.
    let second = encode_command_packet(&keys(), &header(6), &write_spn("Second")).unwrap();
    assert_eq!(c.receive_command_packet(&second).status, PorStatus::Ok);
    let out = c.receive_command_packet(&first);
    assert_eq!(out.status, PorStatus::CounterLow);
    // The packet was authentic, so the answer may be signed; nothing ran.
    let r = por(&keys(), &Spi::SECURE, out.por.as_deref().unwrap());
    assert_eq!((r.status, r.authenticated, r.additional_data.len()), (PorStatus::CounterLow, true, 0));
    assert_eq!(c.spn().as_deref(), Some("Second"));

    let mut restarted = Card::from_bytes(&c.to_bytes()).unwrap();
    assert_eq!(restarted, c);
    assert_eq!(restarted.receive_command_packet(&second).status, PorStatus::CounterLow);
    assert_eq!(restarted.spn().as_deref(), Some("Second"));
}

#[test]
fn counter_exactly_one_higher() {
    let mut c = card();
    let spi = Spi { counter: CounterMode::OneHigher, ..Spi::SECURE };
    let send = |c: &mut Card, n| {
        let p = encode_command_packet(&keys(), &CommandHeader { spi, ..header(n) }, &write_spn("x")).unwrap();
        c.receive_command_packet(&p).status
    };
    assert_eq!(send(&mut c, 1), PorStatus::Ok);
    assert_eq!(send(&mut c, 3), PorStatus::CounterHigh);
    assert_eq!(send(&mut c, 1), PorStatus::CounterLow);
    assert_eq!(send(&mut c, 2), PorStatus::Ok);
}

#[test]
fn the_last_counter_blocks() {
    let mut c = card();
    let p = encode_command_packet(&keys(), &header(sim::packet::COUNTER_MAX), &[]).unwrap();
    assert_eq!(c.receive_command_packet(&p).status, PorStatus::Ok);
    let p = encode_command_packet(&keys(), &header(1), &[]).unwrap();
    assert_eq!(c.receive_command_packet(&p).status, PorStatus::CounterBlocked);
}

/// A PoR the card answers in clear: no checksum (RHL 10), not ciphered, with the status.
fn assert_plain(out: &sim::uicc::Outcome, status: PorStatus) {
    assert_eq!(out.status, status);
    let bytes = out.por.as_deref().unwrap();
    assert_eq!(bytes[2], 10, "RHL of a PoR without checksum");
    assert_eq!(bytes[12], status.code(), "status in clear");
    let r = decode_response_packet(&keys(), &Spi::SECURE, bytes).unwrap();
    assert_eq!((r.status, r.authenticated), (status, false));
}

#[test]
fn wrong_keys_or_a_bad_checksum_get_a_plain_por_and_change_nothing() {
    let mut c = card();
    let before = c.clone();
    let wrong_kid = OtaKeys { kid: Key::aes(&[0x99; 16]).unwrap(), ..keys() };
    let wrong_kic = OtaKeys { kic: Key::aes(&[0x99; 16]).unwrap(), ..keys() };
    for k in [wrong_kid, wrong_kic] {
        let p = encode_command_packet(&k, &header(1), &write_spn("Forged")).unwrap();
        assert_plain(&c.receive_command_packet(&p), PorStatus::ChecksumFailed);
    }
    let mut p = encode_command_packet(&keys(), &header(1), &write_spn("Forged")).unwrap();
    let last = p.len() - 1;
    p[last] ^= 0x80;
    assert_plain(&c.receive_command_packet(&p), PorStatus::ChecksumFailed);
    assert_eq!(c, before, "nothing written, no counter moved");
}

#[test]
fn below_the_security_level_unknown_tar_or_key_version_are_refused_in_clear() {
    let mut c = card();
    let plain_keys = keys();
    let refuse = |c: &mut Card, hdr: CommandHeader, status| {
        let p = encode_command_packet(&plain_keys, &hdr, &write_spn("x")).unwrap();
        assert_plain(&c.receive_command_packet(&p), status);
    };
    let no_cipher = Spi { ciphering: false, ..Spi::SECURE };
    let no_cc = Spi { integrity: Integrity::None, ..Spi::SECURE };
    let no_counter = Spi { counter: CounterMode::None, ..Spi::SECURE };
    let unchecked = Spi { counter: CounterMode::Available, ..Spi::SECURE };
    for spi in [no_cipher, no_cc, no_counter, unchecked] {
        refuse(&mut c, CommandHeader { spi, ..header(1) }, PorStatus::InsufficientSecurityLevel);
    }
    refuse(&mut c, CommandHeader { tar: Tar([0xB0, 0x00, 0x20]), ..header(1) }, PorStatus::TarUnknown);
    let v9 = KeyIdentifier::new(9, Algorithm::Aes);
    refuse(&mut c, CommandHeader { kic: v9, kid: v9, ..header(1) }, PorStatus::SecurityError);
    assert_eq!(c.spn().as_deref(), Some("Operator A"));
}

#[test]
fn a_card_that_accepts_unsigned_packets_answers_them_in_clear() {
    let mut c = card();
    c.set_minimum_security(SecurityLevel { checksum: false, ciphering: false, counter: CounterMode::None });
    let spi = Spi { integrity: Integrity::None, ciphering: false, counter: CounterMode::None, ..Spi::SECURE };
    let p = encode_command_packet(&keys(), &CommandHeader { spi, ..header(0) }, &write_spn("Open")).unwrap();
    let out = c.receive_command_packet(&p);
    assert_eq!(out.status, PorStatus::Ok);
    assert_eq!(out.por.as_ref().unwrap()[2], 10, "no checksum on the answer to an unsigned packet");
    assert_eq!(c.spn().as_deref(), Some("Open"));
}

#[test]
fn por_settings_decide_whether_the_card_answers() {
    let mut c = card();
    let none = Spi { por: PorRequest::None, ..Spi::SECURE };
    let on_error = Spi { por: PorRequest::OnError, ..Spi::SECURE };
    let p = encode_command_packet(&keys(), &CommandHeader { spi: none, ..header(1) }, &write_spn("a")).unwrap();
    assert_eq!(c.receive_command_packet(&p).por, None);
    let p = encode_command_packet(&keys(), &CommandHeader { spi: on_error, ..header(2) }, &write_spn("b")).unwrap();
    assert_eq!(c.receive_command_packet(&p).por, None);
    let replay = c.receive_command_packet(&p);
    assert_eq!(replay.status, PorStatus::CounterLow);
    assert!(replay.por.is_some());
}

#[test]
fn scripts_stop_at_the_first_error_and_keys_are_never_read() {
    let mut c = card();
    let script = [
        apdu::select(fid::DF_NUMPORT),
        apdu::select(fid::EF_KSIM),
        apdu::read_binary(0, 16),
        apdu::update_binary(0, &[0; 16]),
    ]
    .concat();
    let p = encode_command_packet(&keys(), &header(1), &script).unwrap();
    let r = por(&keys(), &Spi::SECURE, c.receive_command_packet(&p).por.as_deref().unwrap());
    let result = ScriptResult::decode(&r.additional_data).unwrap();
    assert_eq!((result.executed, result.last_sw), (3, sw::SECURITY_STATUS_NOT_SATISFIED));
    assert_eq!(c.k_sim(), &[0x5A; 16], "the update after the failure did not run");

    // Keys can be written over the air (a port-in gives new ones), not read.
    let script = [apdu::select_path(&[fid::DF_NUMPORT, fid::EF_SMS_AUTH]), apdu::update_binary(0, &[2])].concat();
    let p = encode_command_packet(&keys(), &header(2), &script).unwrap();
    assert_eq!(c.receive_command_packet(&p).status, PorStatus::Ok);
    assert_eq!(c.sms_auth_key(), Some((2, &[0x77; 32][..])));
}

#[test]
fn apdu_status_words() {
    let mut c = card();
    let mut run = |script: Vec<u8>| c.run_script(&script);
    let r = run(apdu::select(0x6F99));
    assert_eq!((r.executed, r.last_sw), (1, sw::FILE_NOT_FOUND));
    let r = run([apdu::select(fid::DF_GSM), apdu::select(fid::EF_MSISDN), apdu::read_record(3, 28)].concat());
    assert_eq!(r.last_sw, sw::RECORD_NOT_FOUND);
    let r = run([apdu::select(fid::DF_GSM), apdu::select(fid::EF_MSISDN), apdu::update_record(1, &[0; 5])].concat());
    assert_eq!(r.last_sw, sw::WRONG_LENGTH);
    let r = run([apdu::select(fid::DF_GSM), apdu::select(fid::EF_SPN), apdu::read_binary(16, 5)].concat());
    assert_eq!(r.last_sw, sw::WRONG_PARAMETERS);
    let r = run([apdu::select(fid::DF_GSM), apdu::select(fid::EF_SPN), apdu::read_record(1, 17)].concat());
    assert_eq!(r.last_sw, sw::INCOMPATIBLE_FILE_STRUCTURE);
    let r = run(apdu::read_binary(0, 1));
    assert_eq!(r.last_sw, sw::NO_EF_SELECTED);
    let r = run(vec![0x00, 0x44, 0, 0, 0]);
    assert_eq!(r.last_sw, sw::INS_NOT_SUPPORTED);
    let r = run(vec![0x80, 0xA4, 0, 0, 2, 0x3F, 0]);
    assert_eq!(r.last_sw, sw::CLA_NOT_SUPPORTED);
    let r = run([apdu::select_path(&[fid::DF_GSM, fid::EF_IMSI]), apdu::read_binary(0, 9)].concat());
    assert_eq!((r.last_sw, r.last_data), (sw::OK, sim::files::encode_imsi(IMSI).unwrap().to_vec()));
    // From DF GSM to its sibling DF and back up to the MF by FID.
    let r = run([apdu::select(fid::DF_GSM), apdu::select(fid::DF_NUMPORT), apdu::select(fid::MF)].concat());
    assert_eq!((r.executed, r.last_sw), (3, sw::OK));
}

fn scts() -> Timestamp {
    Timestamp { year: 26, month: 12, day: 7, hour: 14, minute: 0, second: 0, tz_quarters: 4 }
}

#[test]
fn a_packet_over_several_sms_is_put_back_together() {
    let mut c = card();
    let mut script = Vec::new();
    for i in 1..=2u8 {
        script.extend(apdu::select_path(&[fid::DF_GSM, fid::EF_SMSP]));
        script.extend(apdu::update_record(i, &sim::files::encode_smsp_record("+4791000000").unwrap()));
        script.extend(apdu::select_path(&[fid::DF_GSM, fid::EF_MSISDN]));
        script.extend(apdu::update_record(i, &sim::files::encode_msisdn_record("+4791000042").unwrap()));
    }
    let packet = encode_command_packet(&keys(), &header(1), &script).unwrap();
    let server = Address::international("4790009999");
    let delivers = command_delivers(&server, &packet, Reference::Eight(7), scts()).unwrap();
    assert!(delivers.len() >= 2, "{} parts", delivers.len());
    let mut download = DataDownload::default();
    // Last part first, and the first part twice.
    let mut order: Vec<_> = delivers.iter().rev().collect();
    order.push(&delivers[0]);
    let mut receptions = Vec::new();
    for (mr, d) in order.into_iter().enumerate() {
        receptions.extend(download.deliver(&mut c, d, mr as u8));
    }
    assert_eq!(receptions.len(), 1, "one packet, processed once");
    let submit = receptions[0].por.as_ref().unwrap();
    assert_eq!(submit.destination, server);
    let r = por(&keys(), &Spi::SECURE, &por_from_submit(submit).unwrap());
    assert_eq!(r.status, PorStatus::Ok);
    assert_eq!(c.msisdn().as_deref(), Some("+4791000042"));
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use sms::tpdu::{DataCoding, Payload, SmsDeliver, UserData};
    use sms::udh::{InformationElement, UserDataHeader};

    proptest! {
        /// Any bytes as a command packet, and any SMS-PP user data: the card answers or stays
        /// silent, never panics, and changes nothing without a valid packet.
        #[test]
        fn hostile_packets_never_crash_the_card(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut c = card();
            let before = c.clone();
            let out = c.receive_command_packet(&bytes);
            prop_assert_ne!(out.status, PorStatus::Ok);
            prop_assert_eq!(&c, &before);
            let deliver = SmsDeliver {
                more_messages: false,
                status_report_indication: false,
                reply_path: false,
                originator: Address::international("4790009999"),
                pid: 0x7F,
                dcs: DataCoding::SIM_DATA_DOWNLOAD,
                scts: scts(),
                user_data: UserData {
                    header: Some(UserDataHeader { elements: vec![InformationElement::command_packet()] }),
                    payload: Payload::Octets(bytes.iter().copied().take(137).collect()),
                },
            };
            let _ = DataDownload::default().deliver(&mut c, &deliver, 0);
            prop_assert_eq!(&c, &before);
        }

        /// A valid packet with any octet changed or cut: refused, file system untouched.
        #[test]
        fn corrupted_packets_change_nothing(flip in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>()) {
            let mut c = card();
            let before = c.clone();
            let p = encode_command_packet(&keys(), &header(1), &write_spn("Forged")).unwrap();
            let mut changed = p.clone();
            changed[flip.index(p.len())] ^= 1 << bit;
            prop_assert_ne!(c.receive_command_packet(&changed).status, PorStatus::Ok);
            prop_assert_ne!(c.receive_command_packet(&p[..cut.index(p.len())]).status, PorStatus::Ok);
            prop_assert_eq!(&c, &before);
        }
    }
}
