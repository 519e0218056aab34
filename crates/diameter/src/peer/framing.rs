//! Reading whole messages from a byte stream: the header's Message Length says where each one
//! ends; a length below the header or above the maximum is an error after which the stream
//! cannot be trusted (the header is kept, so that a request can still be answered).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::message::{HEADER_LEN, Header};

/// Why no further message can be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The Message Length is below the header's 20 octets or above the maximum.
    #[error("Message Length {} not within 20..={max}", .header.length)]
    Length { header: Header, max: usize },
}

/// Reads one message into a fresh buffer; `Ok(None)` at a clean end of stream.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<Vec<u8>>, ReadError> {
    let mut head = [0u8; HEADER_LEN];
    match r.read_exact(&mut head[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    r.read_exact(&mut head[1..]).await?;
    let header = Header::parse(&head);
    let len = header.length as usize;
    if len < HEADER_LEN || len > max {
        return Err(ReadError::Length { header, max });
    }
    let mut buf = vec![0u8; len];
    buf[..HEADER_LEN].copy_from_slice(&head);
    r.read_exact(&mut buf[HEADER_LEN..]).await?;
    Ok(Some(buf))
}

/// The writer task's input: a message, or the order to flush and close.
pub(crate) enum Out {
    Message(Vec<u8>),
    Close,
}

async fn write_loop<W: AsyncWrite + Unpin>(w: W, mut rx: mpsc::Receiver<Out>) {
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    'outer: while let Some(out) = rx.recv().await {
        let mut next = Some(out);
        // Everything already queued goes out in one write.
        while let Some(out) = next {
            match out {
                Out::Message(m) => {
                    if w.write_all(&m).await.is_err() {
                        return;
                    }
                }
                Out::Close => break 'outer,
            }
            next = rx.try_recv().ok();
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

/// What one connection's reading half yields: a message, the end of the stream, or an error.
pub(crate) type Frame = Result<Option<Vec<u8>>, ReadError>;

/// Splits `stream` into a writer task fed by the returned sender and a reader task feeding the
/// returned receiver (reading in a task of its own keeps the drivers' selects cancel-safe).
pub(crate) fn spawn_io<S>(
    stream: S,
    max: usize,
) -> (mpsc::Sender<Out>, mpsc::Receiver<Frame>, JoinHandle<()>, JoinHandle<()>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (out, out_rx) = mpsc::channel(4096);
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let (in_tx, frames) = mpsc::channel(256);
    let reader = tokio::spawn(async move {
        let mut rd = BufReader::with_capacity(64 * 1024, rd);
        loop {
            let frame = read_message(&mut rd, max).await;
            let end = !matches!(frame, Ok(Some(_)));
            if in_tx.send(frame).await.is_err() || end {
                return;
            }
        }
    });
    (out, frames, writer, reader)
}
