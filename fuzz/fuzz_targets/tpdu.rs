//! TPDU decoders on arbitrary bytes: never panic, and whatever decodes re-encodes to a TPDU
//! that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sms::Tpdu;

fuzz_target!(|data: &[u8]| {
    for decoded in [Tpdu::decode_mt(data), Tpdu::decode_mo(data)].into_iter().flatten() {
        if let Ok(bytes) = decoded.encode() {
            let again = match decoded {
                Tpdu::Submit(_) => Tpdu::decode_mo(&bytes),
                _ => Tpdu::decode_mt(&bytes),
            };
            assert_eq!(again.as_ref(), Ok(&decoded));
        }
    }
    let _ = sms::tpdu::split_smsc(data);
});
