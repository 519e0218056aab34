//! SMPP PDU bodies, as the SMS center decodes each length-checked frame: never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsc::rusmpp::Command;
use smsc::rusmpp::decode::DecodeWithLength;

fuzz_target!(|data: &[u8]| {
    let mut body = bytes::BytesMut::from(data);
    let len = body.len();
    let _ = Command::decode(&mut body, len);
});
