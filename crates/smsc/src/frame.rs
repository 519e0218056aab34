//! SMPP framing: a PDU is a 4-byte big-endian command_length (counting itself), then the
//! command_id, command_status and sequence_number, then the body.
//!
//! The framing is ours rather than rusmpp's tokio codec because a server must answer a PDU it
//! cannot decode (generic_nack with that PDU's sequence number) and then go on reading the same
//! connection. Framing by length keeps the stream in step whatever the body holds; rusmpp then
//! decodes the body of each whole frame.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

pub const HEADER_LEN: usize = 16;

/// Why no PDU could be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("command_length {length} is shorter than a header")]
    TooShort { length: u32, header: Header },
    #[error("command_length {length} exceeds the {max}-byte limit")]
    TooLong { length: u32, max: usize, header: Header },
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
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

/// Reads one whole PDU (header included). A too-short or too-long command_length is an error
/// that still carries the header; the caller answers it and closes, since the stream can no
/// longer be trusted to be in step.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<(Header, BytesMut), FrameError> {
    let mut head = [0u8; HEADER_LEN];
    match r.read_exact(&mut head[..4]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    // A short length still has to be answered with its sequence number if one follows.
    let rest = if (length as usize) < HEADER_LEN { (length as usize).saturating_sub(4) } else { HEADER_LEN - 4 };
    r.read_exact(&mut head[4..4 + rest]).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Closed,
        _ => e.into(),
    })?;
    let header = Header::parse(&head);
    if (length as usize) < HEADER_LEN {
        return Err(FrameError::TooShort { length, header });
    }
    if length as usize > max {
        return Err(FrameError::TooLong { length, max, header });
    }
    let mut frame = BytesMut::with_capacity(length as usize);
    frame.extend_from_slice(&head);
    frame.resize(length as usize, 0);
    r.read_exact(&mut frame[HEADER_LEN..]).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Closed,
        _ => e.into(),
    })?;
    Ok((header, frame))
}
