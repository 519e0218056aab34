//! The SMS-PP TPDUs as an independent dissector reads them: tshark's GSM SMS dissector must
//! see SIM data download (TP-PID 0x7F, class-2 8-bit coding), the (U)SIM toolkit security
//! header (IEI 0x70 / 0x71) and the concatenation elements, and no malformed packet. The
//! TPDUs go in a pcapng file of link type USER0 with the direction of each (the dissector
//! tells an SMS-SUBMIT from an SMS-SUBMIT-REPORT by it), decoded as `gsm_sms`.

use std::path::Path;

use sim::packet::{CommandHeader, KeyIdentifier, OtaKeys, Spi, Tar, encode_command_packet};
use sim::sms_pp::{command_tpdus, por_submit};
use sim::{Algorithm, apdu};
use sms::{Address, Reference, Timestamp, Tpdu};
use testkit::capture::{PROBLEMS, tshark};

/// The dissector for link type USER0 (DLT 147).
const USER_DLT: &str = r#"uat:user_dlts:"User 0 (DLT=147)","gsm_sms","0","","0","""#;
const DLT_USER0: u16 = 147;

/// A pcapng block: type, length, body padded to 32 bits, length.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    let mut out = Vec::with_capacity(len as usize);
    out.extend(kind.to_le_bytes());
    out.extend(len.to_le_bytes());
    out.extend(body);
    out.resize(8 + padded, 0);
    out.extend(len.to_le_bytes());
    out
}

/// A pcapng file of TPDUs, each with its direction: `true` from the terminal (inbound to the
/// network), `false` to it.
fn write_pcapng(path: &Path, tpdus: &[(bool, Vec<u8>)]) {
    let mut file = block(0x0A0D_0D0A, &[&0x1A2B_3C4Du32.to_le_bytes()[..], &[1, 0, 0, 0], &[0xFF; 8]].concat());
    file.extend(block(1, &[&DLT_USER0.to_le_bytes()[..], &[0, 0], &65535u32.to_le_bytes()].concat()));
    for (mo, tpdu) in tpdus {
        let mut body = Vec::new();
        for word in [0u32, 0, 0, tpdu.len() as u32, tpdu.len() as u32] {
            body.extend(word.to_le_bytes());
        }
        body.extend(tpdu);
        body.resize(body.len().div_ceil(4) * 4, 0);
        // epb_flags: direction 01 inbound, 10 outbound; then the end of options.
        let direction: u32 = if *mo { 1 } else { 2 };
        body.extend([2, 0, 4, 0]);
        body.extend(direction.to_le_bytes());
        body.extend([0, 0, 0, 0]);
        file.extend(block(6, &body));
    }
    std::fs::write(path, file).unwrap();
}

#[test]
fn sms_pp_tpdus_decode_as_sim_data_download() {
    let Some(_) = testkit::command("tshark", "apt-get install tshark") else { return };
    let keys = OtaKeys::aes(&[0x4B; 16], &[0x1D; 16]).unwrap();
    let header = CommandHeader {
        spi: Spi::SECURE,
        kic: KeyIdentifier::new(1, Algorithm::Aes),
        kid: KeyIdentifier::new(1, Algorithm::Aes),
        tar: Tar::RFM_SIM,
        counter: 1,
    };
    let server = Address::international("4790009999");
    let scts = Timestamp { year: 26, month: 12, day: 7, hour: 14, minute: 0, second: 0, tz_quarters: 4 };
    let short = encode_command_packet(&keys, &header, &apdu::select(0x3F00)).unwrap();
    let long_script: Vec<u8> = (0..12).flat_map(|_| apdu::update_binary(0, &[0x55; 17])).collect();
    let long = encode_command_packet(&keys, &header, &long_script).unwrap();
    let mut tpdus: Vec<(bool, Vec<u8>)> = Vec::new();
    tpdus.extend(command_tpdus(&server, &short, Reference::Eight(1), scts).unwrap().into_iter().map(|t| (false, t)));
    let parts = command_tpdus(&server, &long, Reference::Sixteen(0x0102), scts).unwrap();
    assert!(parts.len() >= 2);
    tpdus.extend(parts.into_iter().map(|t| (false, t)));
    let por = vec![0x00, 0x0E, 0x0A, 0xB0, 0x00, 0x10, 0, 0, 0, 0, 1, 0, 0, 0x01, 0x90, 0x00];
    let submit = por_submit(&server, &por, 9).unwrap();
    tpdus.push((true, Tpdu::Submit(submit).encode().unwrap()));

    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("sms-pp.pcapng");
    write_pcapng(&pcap, &tpdus);
    let problems = tshark(&pcap, &["-o", USER_DLT, "-Y", PROBLEMS, "-T", "fields", "-e", "frame.number"]);
    assert_eq!(problems, Vec::<String>::new(), "malformed or warned");
    let fields = ["gsm_sms.tp-mti", "gsm_sms.tp-pid", "gsm_sms.dcs.message_class", "gsm_sms.ie_identifier"];
    let mut args = vec!["-o", USER_DLT, "-Y", "gsm_sms", "-T", "fields", "-E", "separator=;"];
    args.extend(fields.iter().flat_map(|f| ["-e", f]));
    let frames: Vec<Vec<String>> =
        tshark(&pcap, &args).iter().map(|l| l.split(';').map(str::to_owned).collect()).collect();
    assert_eq!(frames.len(), tpdus.len(), "every frame is a GSM SMS TPDU: {frames:?}");
    for (frame, (mo, _)) in frames.iter().zip(&tpdus) {
        let [mti, pid, class, _] = &frame[..] else { panic!("{frame:?}") };
        assert_eq!(number(mti), u32::from(*mo), "SMS-SUBMIT from the card, SMS-DELIVER to it: {frame:?}");
        assert_eq!((number(pid), number(class)), (0x7F, 2), "SIM data download, class 2: {frame:?}");
    }
    // The security header: in the single SMS, the first part of the long one, and the PoR.
    let with = |iei| frames.iter().filter(|f| f[3].split(',').any(|e| number(e) == iei)).count();
    assert_eq!((with(0x70), with(0x71)), (2, 1), "{frames:?}");
}

/// A number as tshark prints it: decimal or 0x-prefixed hex.
fn number(s: &str) -> u32 {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}
