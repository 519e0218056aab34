//! SMPP framing: a PDU is a 4-byte big-endian command_length (counting itself), then the
//! command_id, command_status and sequence_number, then the body.
//!
//! The framing is ours rather than rusmpp's tokio codec because a server must answer a PDU it
//! cannot decode (generic_nack with that PDU's sequence number) and then go on reading the same
//! connection. Framing by length keeps the stream in step whatever the body holds; rusmpp then
//! decodes the body of each whole frame.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

pub const HEADER_LEN: usize = 16;

/// Why no PDU could be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("command_length {length} is shorter than a header")]
    TooShort { length: u32, header: Header },
    #[error("command_length {length} exceeds the {max}-byte limit")]
    TooLong { length: u32, max: usize, header: Header },
}

/// The fixed header, readable even when the body is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub command_length: u32,
    pub command_id: u32,
    pub command_status: u32,
    pub sequence_number: u32,
}

impl Header {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Header { command_length: word(0), command_id: word(4), command_status: word(8), sequence_number: word(12) }
    }
}

/// One unit of the byte stream: a whole PDU (header included), or a header whose
/// command_length cannot be trusted. After [`Frame::BadLength`] the stream is out of step: the
/// reader answers it (the header still carries a sequence number) and closes.
#[derive(Debug)]
pub enum Frame {
    Pdu(Header, BytesMut),
    BadLength(FrameError),
}

/// The SMPP framing as a [`Decoder`], so a session can wait for the next PDU inside
/// `select!` without losing bytes (reading through a codec is cancellation-safe).
#[derive(Debug, Clone)]
pub struct SmppCodec {
    max: usize,
    /// Set once a bad length was seen: nothing after it is read.
    poisoned: bool,
}

impl SmppCodec {
    /// Accepts PDUs of at most `max` bytes.
    pub fn new(max: usize) -> SmppCodec {
        SmppCodec { max, poisoned: false }
    }
}

impl Decoder for SmppCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if self.poisoned || src.len() < 4 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let len = length as usize;
        if len < HEADER_LEN {
            // A short length is still answered with its sequence number if one follows.
            let have = len.max(4);
            if src.len() < have {
                return Ok(None);
            }
            let mut head = [0u8; HEADER_LEN];
            head[..have].copy_from_slice(&src[..have]);
            self.poisoned = true;
            src.clear();
            return Ok(Some(Frame::BadLength(FrameError::TooShort { length, header: Header::parse(&head) })));
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        if len > self.max {
            let head: [u8; HEADER_LEN] = src[..HEADER_LEN].try_into().expect("length checked");
            self.poisoned = true;
            src.clear();
            return Ok(Some(Frame::BadLength(FrameError::TooLong {
                length,
                max: self.max,
                header: Header::parse(&head),
            })));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let frame = src.split_to(len);
        let head: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().expect("length checked");
        Ok(Some(Frame::Pdu(Header::parse(&head), frame)))
    }
}

/// Whether `buf` already holds a whole PDU, so a writer may wait to batch its answer with the
/// next one's.
pub fn holds_whole_pdu(buf: &[u8]) -> bool {
    buf.len() >= 4 && buf.len() >= u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
}
