//! What reaches the SIM over the air, as the card reads it: a command packet (TS 102 225 /
//! TS 31.115) through the card's security checks, and the same bytes as the SMS-DELIVER of a
//! SIM data download through reassembly to the card; the same bytes as a compact remote file
//! management script run on an open card; and as a proof of receipt read by the OTA server.
//!
//! Invariants: a packet the card refuses changes nothing on it; a refused packet's PoR
//! carries no checksum (RHL 10), so a forger learns nothing signed; a script runs at most as
//! many APDUs as it holds; data sealed in a command packet opens to the same header and data.

use sim::packet::{
    CommandHeader, CounterMode, KeyIdentifier, OtaKeys, PorStatus, Spi, Tar, decode_response_packet,
    encode_command_packet, open_command_packet, parse_command_header,
};
use sim::sms_pp::DataDownload;
use sim::uicc::{Card, Personalisation, SecurityLevel};
use sim::{Algorithm, apdu};
use sms::Tpdu;

/// The fuzzing card's key set (version 1), also what the seeds are sealed with.
pub fn keys() -> OtaKeys {
    OtaKeys::aes(&[0x4B; 16], &[0x1D; 16]).unwrap_or_else(|_| unreachable!("16-octet AES keys"))
}

/// A card as the terminal holds it: AES keys at version 1, the default security level.
pub fn card() -> Card {
    Card::personalise(&Personalisation {
        imsi: "242019000000001".into(),
        k_sim: vec![0x5A; 16],
        ota_keys: vec![(1, keys())],
        msisdn: Some("+4790000001".into()),
        spn: Some("Operator A".into()),
        smsc: Some("+4790000000".into()),
        sms_auth: Some((1, vec![0x77; 32])),
    })
    .unwrap_or_else(|e| unreachable!("a valid personalisation: {e}"))
}

pub fn run(data: &[u8]) {
    secure_card(data);
    open_card(data);
    data_download(data);
    script(data);
    por(data);
    seal(data);
}

/// The default card: nothing forged gets through, nothing refused is signed.
fn secure_card(data: &[u8]) {
    let mut c = card();
    let before = c.clone();
    let out = c.receive_command_packet(data);
    if out.status != PorStatus::Ok {
        assert_eq!(c, before, "a refused packet ({}) changed the card", out.status);
    }
    // Only a packet whose checksum verified reaches the counter check and the script.
    let authenticated = matches!(
        out.status,
        PorStatus::Ok | PorStatus::CounterLow | PorStatus::CounterHigh | PorStatus::CounterBlocked
    );
    if let Some(por) = &out.por
        && !authenticated
    {
        assert_eq!(por.get(2), Some(&10), "a PoR to an unauthenticated packet carries a checksum: {por:02x?}");
    }
    let _ = parse_command_header(data);
    let _ = open_command_packet(&keys(), data);
}

/// A card that takes packets without checksum, ciphering or counter, so that the fuzzer's
/// packets reach the script executor.
fn open_card(data: &[u8]) {
    let mut c = card();
    c.set_minimum_security(SecurityLevel { checksum: false, ciphering: false, counter: CounterMode::None });
    let before = c.clone();
    let out = c.receive_command_packet(data);
    if out.status != PorStatus::Ok {
        assert_eq!(c, before, "a refused packet ({}) changed the card", out.status);
    }
    let _ = Card::from_bytes(&c.to_bytes()).unwrap_or_else(|e| panic!("the card does not read back: {e}"));
}

/// The bytes as an SMS-DELIVER to the card, and twice (a repeated part).
fn data_download(data: &[u8]) {
    let Ok(Tpdu::Deliver(d)) = Tpdu::decode_mt(data) else { return };
    let mut c = card();
    let mut download = DataDownload::default();
    for _ in 0..2 {
        if let Some(reception) = download.deliver(&mut c, &d, 1)
            && let Some(submit) = reception.por
        {
            let encoded = Tpdu::Submit(submit).encode().unwrap_or_else(|e| panic!("the PoR does not encode: {e}"));
            assert!(encoded.len() <= 176, "PoR TPDU of {} octets", encoded.len());
        }
    }
}

/// The bytes as a compact RFM script on the card.
fn script(data: &[u8]) {
    let mut c = card();
    let result = c.run_script(data);
    let commands = apdu::parse_script(data).map_or(0, |s| s.len());
    assert!(usize::from(result.executed) <= commands.max(1), "{} executed of {commands}", result.executed);
    let _ = apdu::ScriptResult::decode(data);
}

/// The bytes as a PoR the server reads, under each PoR setting.
fn por(data: &[u8]) {
    let keys = keys();
    for octets in [[0x16, 0x39], [0x16, 0x29], [0x16, 0x21], [0x06, 0x01]] {
        let _ = decode_response_packet(&keys, &Spi::from_bytes(octets), data);
    }
}

/// The bytes as secured data (and the first five as the counter): sealed and opened again.
fn seal(data: &[u8]) {
    let counter = data.iter().take(5).fold(0u64, |n, &b| n << 8 | u64::from(b));
    let algorithm = Algorithm::Aes;
    let header = CommandHeader {
        spi: Spi::SECURE,
        kic: KeyIdentifier::new(1, algorithm),
        kid: KeyIdentifier::new(1, algorithm),
        tar: Tar::RFM_SIM,
        counter,
    };
    let Ok(packet) = encode_command_packet(&keys(), &header, data) else { return };
    let opened = open_command_packet(&keys(), &packet).unwrap_or_else(|e| panic!("a sealed packet does not open: {e}"));
    assert_eq!((opened.header, opened.secured_data.as_slice()), (header, data));
}
