//! Bounded lines over a byte stream, for both ends of the element protocol.
//!
//! `tokio_util`'s `LinesCodec` bounds a line, but a `FramedRead` ends the stream at the first
//! decoder error; an over-long line here is reported as an item instead, and the codec skips it
//! to its end, so the connection stays in step.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

use crate::core::wire::MAX_LINE;

/// One line, or the news that one was too long (and skipped).
pub(crate) type Line = Result<String, TooLong>;

#[derive(Debug)]
pub(crate) struct TooLong;

pub(crate) struct BoundedLines(LinesCodec);

impl BoundedLines {
    pub(crate) fn new() -> BoundedLines {
        BoundedLines(LinesCodec::new_with_max_length(MAX_LINE))
    }
}

impl Decoder for BoundedLines {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        match self.0.decode(src) {
            Ok(line) => Ok(line.map(|l| Ok(l.trim_end_matches('\r').to_owned()))),
            Err(LinesCodecError::MaxLineLengthExceeded) => Ok(Some(Err(TooLong))),
            Err(LinesCodecError::Io(e)) => Err(e),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Line>, std::io::Error> {
        match self.0.decode_eof(src) {
            Ok(line) => Ok(line.map(Ok)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Ok(Some(Err(TooLong))),
            Err(LinesCodecError::Io(e)) => Err(e),
        }
    }
}
