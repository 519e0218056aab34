//! The simulated air interface between a terminal and its operator's node: how a handset
//! attaches and how TPDUs travel. Real networks carry TPDUs inside RP/CP layers over a radio
//! channel; here a TCP link carries the same TPDU bytes in small length-prefixed frames, so
//! the TPDUs, their headers and F3's authentication element are real.
//!
//! Frame: a 2-byte big-endian length (of what follows), a 1-byte type, the body.
//!
//! | type | frame | body |
//! |---|---|---|
//! | 0x01 | `Attach` | IMSI (15 ASCII digits) |
//! | 0x02 | `Challenge` | 16-byte random nonce |
//! | 0x03 | `Response` | 32-byte HMAC-SHA256(K_sim, "numport-attach" ‖ nonce ‖ IMSI) |
//! | 0x04 | `Attached` | MSISDN (ASCII digits) |
//! | 0x05 | `Rejected` | cause (1 byte) |
//! | 0x10 | `Deliver` | 4-byte reference, SMS-DELIVER or SMS-STATUS-REPORT TPDU (MT) |
//! | 0x11 | `DeliverAck` | 4-byte reference, 1-byte cause (0 = stored) |
//! | 0x12 | `Submit` | 4-byte reference, SMS-SUBMIT TPDU (MO) |
//! | 0x13 | `SubmitAck` | 4-byte reference, 1-byte cause (0 = accepted) |
//!
//! The SIM key never crosses the link: the node proves nothing, the terminal proves it holds
//! `K_sim` by answering a fresh nonce, so a captured exchange cannot be replayed.

/// Largest body: a TPDU is at most 176 octets; 1 KiB leaves room and bounds what a hostile
/// peer can make the other side buffer.
pub const MAX_BODY: usize = 1024;

pub const CAUSE_OK: u8 = 0;
/// Attach: unknown IMSI or wrong response.
pub const CAUSE_AUTH_FAILED: u8 = 1;
/// Deliver: the terminal's memory is full; try later.
pub const CAUSE_MEMORY_FULL: u8 = 0x16;

/// The terminal's answer to an attach challenge: HMAC-SHA256(K_sim, "numport-attach" ‖ nonce ‖
/// IMSI). Binding the IMSI keeps one SIM's answer from serving another's attach.
pub fn attach_proof(k_sim: &[u8], nonce: &[u8; 16], imsi: &str) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(k_sim)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"numport-attach");
    mac.update(nonce);
    mac.update(imsi.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Checks an attach answer in constant time.
pub fn verify_attach_proof(k_sim: &[u8], nonce: &[u8; 16], imsi: &str, answer: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq;
    attach_proof(k_sim, nonce, imsi).ct_eq(answer).into()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Attach { imsi: String },
    Challenge { nonce: [u8; 16] },
    Response { mac: [u8; 32] },
    Attached { msisdn: String },
    Rejected { cause: u8 },
    Deliver { reference: u32, tpdu: Vec<u8> },
    DeliverAck { reference: u32, cause: u8 },
    Submit { reference: u32, tpdu: Vec<u8> },
    SubmitAck { reference: u32, cause: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("{0} frame has a malformed body")]
    Body(&'static str),
}

impl Frame {
    /// The frame's bytes, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, body): (u8, Vec<u8>) = match self {
            Frame::Attach { imsi } => (0x01, imsi.as_bytes().to_vec()),
            Frame::Challenge { nonce } => (0x02, nonce.to_vec()),
            Frame::Response { mac } => (0x03, mac.to_vec()),
            Frame::Attached { msisdn } => (0x04, msisdn.as_bytes().to_vec()),
            Frame::Rejected { cause } => (0x05, vec![*cause]),
            Frame::Deliver { reference, tpdu } => (0x10, [&reference.to_be_bytes()[..], tpdu].concat()),
            Frame::DeliverAck { reference, cause } => (0x11, [&reference.to_be_bytes()[..], &[*cause]].concat()),
            Frame::Submit { reference, tpdu } => (0x12, [&reference.to_be_bytes()[..], tpdu].concat()),
            Frame::SubmitAck { reference, cause } => (0x13, [&reference.to_be_bytes()[..], &[*cause]].concat()),
        };
        let len = (body.len() + 1) as u16;
        let mut out = Vec::with_capacity(3 + body.len());
        out.extend(len.to_be_bytes());
        out.push(kind);
        out.extend(body);
        out
    }

    /// Decodes a frame from its type byte and body (the length prefix already removed).
    pub fn decode(frame: &[u8]) -> Result<Frame, FrameError> {
        let (&kind, body) = frame.split_first().ok_or(FrameError::Empty)?;
        if body.len() > MAX_BODY {
            return Err(FrameError::TooLong(body.len()));
        }
        let digits = |what, min: usize, max: usize| {
            let s = std::str::from_utf8(body).map_err(|_| FrameError::Body(what))?;
            if (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
                Ok(s.to_owned())
            } else {
                Err(FrameError::Body(what))
            }
        };
        let reference = |what| -> Result<(u32, &[u8]), FrameError> {
            let (r, rest) = body.split_first_chunk::<4>().ok_or(FrameError::Body(what))?;
            Ok((u32::from_be_bytes(*r), rest))
        };
        let cause = |what, rest: &[u8]| match rest {
            [c] => Ok(*c),
            _ => Err(FrameError::Body(what)),
        };
        Ok(match kind {
            0x01 => Frame::Attach { imsi: digits("attach", 6, 15)? },
            0x02 => Frame::Challenge { nonce: body.try_into().map_err(|_| FrameError::Body("challenge"))? },
            0x03 => Frame::Response { mac: body.try_into().map_err(|_| FrameError::Body("response"))? },
            0x04 => Frame::Attached { msisdn: digits("attached", 8, 15)? },
            0x05 => Frame::Rejected { cause: cause("rejected", body)? },
            0x10 => {
                let (reference, tpdu) = reference("deliver")?;
                Frame::Deliver { reference, tpdu: tpdu.to_vec() }
            }
            0x11 => {
                let (reference, rest) = reference("deliver ack")?;
                Frame::DeliverAck { reference, cause: cause("deliver ack", rest)? }
            }
            0x12 => {
                let (reference, tpdu) = reference("submit")?;
                Frame::Submit { reference, tpdu: tpdu.to_vec() }
            }
            0x13 => {
                let (reference, rest) = reference("submit ack")?;
                Frame::SubmitAck { reference, cause: cause("submit ack", rest)? }
            }
            other => return Err(FrameError::UnknownType(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips() {
        let frames = [
            Frame::Attach { imsi: "242019000000001".into() },
            Frame::Challenge { nonce: [7; 16] },
            Frame::Response { mac: [9; 32] },
            Frame::Attached { msisdn: "4790000001".into() },
            Frame::Rejected { cause: CAUSE_AUTH_FAILED },
            Frame::Deliver { reference: 42, tpdu: vec![0x04, 0x0B] },
            Frame::DeliverAck { reference: 42, cause: CAUSE_OK },
            Frame::Submit { reference: 7, tpdu: vec![0x11, 0x00] },
            Frame::SubmitAck { reference: 7, cause: CAUSE_MEMORY_FULL },
        ];
        for f in frames {
            let bytes = f.encode();
            let len = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
            assert_eq!(len, bytes.len() - 2);
            assert_eq!(Frame::decode(&bytes[2..]), Ok(f));
        }
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
        assert_eq!(Frame::decode(&[0x77]), Err(FrameError::UnknownType(0x77)));
        assert_eq!(Frame::decode(&[0x01, b'1', b'x']), Err(FrameError::Body("attach")));
        assert_eq!(Frame::decode(&[0x02, 1, 2]), Err(FrameError::Body("challenge")));
        assert_eq!(Frame::decode(&[0x11, 0, 0, 0]), Err(FrameError::Body("deliver ack")));
        assert!(matches!(Frame::decode(&[0x10; 2000]), Err(FrameError::TooLong(_))));
    }

    #[test]
    fn attach_proof_binds_key_nonce_and_imsi() {
        let (k, n) = (b"k-sim-of-242019000000001", [3u8; 16]);
        let p = attach_proof(k, &n, "242019000000001");
        assert!(verify_attach_proof(k, &n, "242019000000001", &p));
        assert!(!verify_attach_proof(b"another key", &n, "242019000000001", &p));
        assert!(!verify_attach_proof(k, &[4; 16], "242019000000001", &p), "a replayed answer fails a new nonce");
        assert!(!verify_attach_proof(k, &n, "242019000000002", &p));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = Frame::decode(&bytes);
        }
    }
}
