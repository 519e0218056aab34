//! Diameter as the OCS's peer reads it from a connection: messages are framed by their
//! Message Length, each decoded with [`Message::decode`], validated against the dictionary
//! ([`validate`]) and decoded as the typed message the peer reads by its command (CER/CEA,
//! DWR/DWA/DPR/DPA, CCR, CCA); an invalid request gets the error answer the peer would send.
//! A length the peer would refuse ends the stream, as it closes the connection.
//!
//! Invariants: a CCR or CCA that decodes re-encodes to a message that validates and decodes to
//! the same value; an error answer is a message that decodes and validates, with the fault's
//! Result-Code.

use diameter::base::{self, Capabilities, Control, Identity};
use diameter::cc::{Cca, Ccr};
use diameter::dict::{self as d, command};
use diameter::message::{HEADER_LEN, Header, Message};
use diameter::validate::validate;

/// The peer's default maximum message size.
const MAX: usize = diameter::peer::DEFAULT_MAX_MESSAGE;

pub fn run(data: &[u8]) {
    let mut rest = data;
    while let Some(prefix) = rest.first_chunk::<4>() {
        let len = Header::stated_length(prefix) as usize;
        if !(HEADER_LEN..=MAX).contains(&len) || len > rest.len() {
            // Decoded anyway, for the errors of a message cut short.
            message(rest);
            return;
        }
        message(&rest[..len]);
        rest = &rest[len..];
    }
}

fn me() -> Identity {
    Identity {
        origin_host: "ocs.numport.test".into(),
        origin_realm: "numport.test".into(),
        host_ip_addresses: vec![std::net::Ipv4Addr::LOCALHOST.into()],
        vendor_id: 0,
        product_name: "numport".into(),
        origin_state_id: 1,
    }
}

fn message(bytes: &[u8]) {
    let Ok(m) = Message::decode(bytes) else { return };
    if let Err(e) = validate(&m) {
        if m.header.is_request() {
            refusal(&m, &e);
        }
        return;
    }
    match m.header.command {
        command::CAPABILITIES_EXCHANGE => {
            if let Ok(c) = Capabilities::decode(&m) {
                let _ = c.offers(d::application::CREDIT_CONTROL);
            }
        }
        command::DEVICE_WATCHDOG | command::DISCONNECT_PEER => {
            let _ = Control::decode(&m);
        }
        command::CREDIT_CONTROL if m.header.is_request() => {
            if let Ok(ccr) = Ccr::decode(&m) {
                let again = ccr.encode(m.header.hop_by_hop, m.header.end_to_end);
                let decoded = Message::decode(&again).expect("an encoded CCR decodes");
                validate(&decoded).unwrap_or_else(|e| panic!("{ccr:?} re-encoded does not validate: {e}"));
                assert_eq!(Ccr::decode(&decoded).as_ref(), Ok(&ccr), "CCR round trip");
            }
        }
        command::CREDIT_CONTROL => {
            if let Ok(cca) = Cca::decode(&m) {
                let request = Header { flags: diameter::message::FLAG_R, ..m.header };
                let again = cca.encode(&request);
                let decoded = Message::decode(&again).expect("an encoded CCA decodes");
                validate(&decoded).unwrap_or_else(|e| panic!("{cca:?} re-encoded does not validate: {e}"));
                assert_eq!(Cca::decode(&decoded).as_ref(), Ok(&cca), "CCA round trip");
            }
        }
        _ => {}
    }
}

/// The error answer to an invalid request decodes, validates and carries the fault's code.
fn refusal(m: &Message<'_>, e: &diameter::Error) {
    let answer = base::error_answer(&m.header, m.body, &me(), e);
    let a = Message::decode(&answer).unwrap_or_else(|x| panic!("error answer to {e} does not decode: {x}"));
    validate(&a).unwrap_or_else(|x| panic!("error answer to {e} does not validate: {x}"));
    let code = a.find(&d::RESULT_CODE).and_then(|r| r.u32().ok());
    assert_eq!(code, Some(e.result_code()), "error answer's Result-Code");
}
