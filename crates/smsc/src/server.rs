//! The SMPP server: one task per ESME connection.
//!
//! A connection must bind (transmitter, receiver or transceiver) with a known system_id and its
//! password within `bind_timeout`; three failed binds close it. Once bound, submit_sm is
//! accepted (transmitter and transceiver) up to the ESME's rate, and each accepted message is
//! handed to the [`SubmitHandler`], whose message id is answered in submit_sm_resp. A PDU
//! that cannot be decoded gets generic_nack with its sequence number and the connection goes
//! on; a command_length the framing cannot trust gets generic_nack and the connection closes.
//! A connection silent for `idle_timeout` is unbound and closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::Length;
use rusmpp::encode::owned::Encode;
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, SubmitSm, SubmitSmResp};
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::esme::{EsmeDirectory, TokenBucket};
use crate::frame::{FrameError, read_frame};

#[derive(Debug, Clone)]
pub struct SmppConfig {
    /// The system_id the SMSC answers binds with.
    pub system_id: String,
    /// Largest PDU accepted (a submit_sm with a full message and TLVs fits in ~500 bytes).
    pub max_pdu: usize,
    pub bind_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_failed_binds: u32,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            system_id: "numport".into(),
            max_pdu: 4096,
            bind_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
            max_failed_binds: 3,
        }
    }
}

/// Where accepted submits go. `accept` returns the message id for submit_sm_resp, or the
/// error status to answer with; the server answers only after it returns, so an implementation
/// that commits the message before returning makes every acknowledged submit durable.
pub trait SubmitHandler: Send + Sync + 'static {
    fn accept(
        &self,
        system_id: &str,
        submit: &SubmitSm,
    ) -> impl std::future::Future<Output = Result<String, CommandStatus>> + Send;
}

/// A message an ESME submitted, with the id it was given ([`ChannelHandler`]).
#[derive(Debug)]
pub struct Submitted {
    pub message_id: String,
    pub system_id: String,
    pub submit: SubmitSm,
}

/// Hands submits to a channel, numbering them from the start time (for tests and tools; it
/// keeps nothing across a restart).
pub struct ChannelHandler {
    tx: mpsc::Sender<Submitted>,
    next: AtomicU64,
    epoch: u64,
}

impl ChannelHandler {
    pub fn new(tx: mpsc::Sender<Submitted>) -> ChannelHandler {
        let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        ChannelHandler { tx, next: AtomicU64::new(0), epoch }
    }
}

impl SubmitHandler for ChannelHandler {
    async fn accept(&self, system_id: &str, submit: &SubmitSm) -> Result<String, CommandStatus> {
        let message_id = format!("{:x}{:08x}", self.epoch, self.next.fetch_add(1, Ordering::Relaxed));
        let m = Submitted { message_id: message_id.clone(), system_id: system_id.to_owned(), submit: submit.clone() };
        self.tx.send(m).await.map_err(|_| CommandStatus::EsmeRsyserr)?;
        Ok(message_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindMode {
    fn can_submit(self) -> bool {
        matches!(self, BindMode::Transmitter | BindMode::Transceiver)
    }
}

struct Shared<H> {
    config: SmppConfig,
    directory: EsmeDirectory,
    handler: H,
}

/// Serves SMPP on `listener` until `stop` is cancelled; accepted submits go to `handler`.
pub async fn serve<H: SubmitHandler>(
    listener: TcpListener,
    config: SmppConfig,
    directory: EsmeDirectory,
    handler: H,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let shared = Arc::new(Shared { config, directory, handler });
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = listener.accept() => r?,
        };
        // Beyond the connection limit a client is closed at once: a bind flood cannot starve
        // the ESMEs already bound.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "SMPP connection refused: connection limit reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = session(stream, &shared, stop).await {
                tracing::debug!(%peer, error = %e, "SMPP session ended");
            }
            drop(permit);
        });
    }
}

fn command(status: CommandStatus, seq: u32, pdu: impl Into<Pdu>) -> Command {
    Command::new(status, seq, pdu)
}

pub(crate) async fn send(stream: &mut (impl AsyncWriteExt + Unpin), c: &Command) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(4 + c.length());
    buf.extend_from_slice(&((4 + c.length()) as u32).to_be_bytes());
    c.encode(&mut buf);
    stream.write_all(&buf).await
}

async fn session<H: SubmitHandler>(
    stream: TcpStream,
    shared: &Shared<H>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let config = &shared.config;
    let mut bound: Option<(String, BindMode, TokenBucket)> = None;
    let mut failed_binds = 0;
    loop {
        let timeout = if bound.is_some() { config.idle_timeout } else { config.bind_timeout };
        let frame = tokio::select! {
            _ = stop.cancelled() => {
                send(&mut write, &command(CommandStatus::EsmeRok, 0, Pdu::Unbind)).await?;
                return Ok(());
            }
            r = tokio::time::timeout(timeout, read_frame(&mut read, config.max_pdu)) => r,
        };
        let (header, mut frame) = match frame {
            Err(_elapsed) => {
                tracing::debug!("SMPP client idle: unbinding");
                send(&mut write, &command(CommandStatus::EsmeRok, 0, Pdu::Unbind)).await?;
                return Ok(());
            }
            Ok(Err(FrameError::Closed)) => return Ok(()),
            Ok(Err(FrameError::TooShort { header, .. } | FrameError::TooLong { header, .. })) => {
                let nack = command(CommandStatus::EsmeRinvcmdlen, header.sequence_number, Pdu::GenericNack);
                send(&mut write, &nack).await?;
                return Ok(());
            }
            Ok(Err(FrameError::Io(e))) => return Err(e),
            Ok(Ok(f)) => f,
        };
        let seq = header.sequence_number;
        frame.advance(4);
        let body_len = frame.len();
        let decoded = Command::decode(&mut frame, body_len);
        let cmd = match decoded {
            Ok((cmd, _)) => cmd,
            Err(e) => {
                tracing::debug!(error = %e, command_id = header.command_id, "undecodable SMPP PDU");
                send(&mut write, &command(CommandStatus::EsmeRsyserr, seq, Pdu::GenericNack)).await?;
                continue;
            }
        };
        let reply = match (cmd.pdu(), &mut bound) {
            (Some(Pdu::EnquireLink), _) => Some(command(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp)),
            (Some(Pdu::Unbind), _) => {
                send(&mut write, &command(CommandStatus::EsmeRok, seq, Pdu::UnbindResp)).await?;
                return Ok(());
            }
            (Some(Pdu::BindTransmitter(_) | Pdu::BindReceiver(_) | Pdu::BindTransceiver(_)), Some(_)) => {
                Some(bind_resp(cmd.pdu(), CommandStatus::EsmeRalybnd, seq, &config.system_id))
            }
            (Some(p @ (Pdu::BindTransmitter(_) | Pdu::BindReceiver(_) | Pdu::BindTransceiver(_))), None) => {
                let (system_id, password, mode) = match p {
                    Pdu::BindTransmitter(b) => (b.system_id.as_str(), b.password.as_str(), BindMode::Transmitter),
                    Pdu::BindReceiver(b) => (b.system_id.as_str(), b.password.as_str(), BindMode::Receiver),
                    Pdu::BindTransceiver(b) => (b.system_id.as_str(), b.password.as_str(), BindMode::Transceiver),
                    _ => unreachable!("matched above"),
                };
                let status = match shared.directory.get(system_id) {
                    None => CommandStatus::EsmeRinvsysid,
                    Some(account) => {
                        // Argon2 takes milliseconds: verify off the async workers.
                        let (checked, pw) = (account.clone(), password.to_owned());
                        if tokio::task::spawn_blocking(move || checked.verify(&pw)).await.unwrap_or(false) {
                            bound = Some((system_id.to_owned(), mode, TokenBucket::new(account.max_submits_per_s)));
                            tracing::info!(system_id, ?mode, "ESME bound");
                            CommandStatus::EsmeRok
                        } else {
                            CommandStatus::EsmeRinvpaswd
                        }
                    }
                };
                let resp = bind_resp(cmd.pdu(), status, seq, &config.system_id);
                if status != CommandStatus::EsmeRok {
                    failed_binds += 1;
                    if failed_binds >= config.max_failed_binds {
                        send(&mut write, &resp).await?;
                        return Ok(());
                    }
                }
                Some(resp)
            }
            (Some(_), None) => Some(generic_or_resp(&cmd, CommandStatus::EsmeRinvbndsts, seq)),
            (Some(Pdu::SubmitSm(submit)), Some((system_id, mode, bucket))) => {
                let status = if !mode.can_submit() {
                    CommandStatus::EsmeRinvbndsts
                } else if !bucket.take(Instant::now()) {
                    CommandStatus::EsmeRthrottled
                } else {
                    CommandStatus::EsmeRok
                };
                if status == CommandStatus::EsmeRok {
                    match shared.handler.accept(system_id, submit).await {
                        Ok(message_id) => {
                            let id = message_id.parse::<COctetString<1, 65>>().unwrap_or_default();
                            Some(command(CommandStatus::EsmeRok, seq, SubmitSmResp::new(id, Vec::new())))
                        }
                        Err(status) => Some(command(status, seq, SubmitSmResp::default())),
                    }
                } else {
                    Some(command(status, seq, SubmitSmResp::default()))
                }
            }
            // Responses from the ESME (deliver_sm_resp, …) are not awaited by anything yet.
            (Some(p), Some(_)) if is_response(p.command_id()) => None,
            (_, Some(_)) => Some(command(CommandStatus::EsmeRinvcmdid, seq, Pdu::GenericNack)),
            (None, _) => Some(command(CommandStatus::EsmeRinvcmdid, seq, Pdu::GenericNack)),
        };
        if let Some(r) = reply {
            send(&mut write, &r).await?;
        }
    }
}

fn is_response(id: CommandId) -> bool {
    u32::from(id) & 0x8000_0000 != 0
}

/// The error answer to a PDU sent before binding: its own response type where it has one.
fn generic_or_resp(cmd: &Command, status: CommandStatus, seq: u32) -> Command {
    match cmd.pdu() {
        Some(Pdu::SubmitSm(_)) => command(status, seq, SubmitSmResp::default()),
        _ => command(status, seq, Pdu::GenericNack),
    }
}

fn bind_resp(pdu: Option<&Pdu>, status: CommandStatus, seq: u32, system_id: &str) -> Command {
    let id = system_id.parse::<COctetString<1, 16>>().unwrap_or_default();
    match pdu {
        Some(Pdu::BindReceiver(_)) => command(status, seq, BindReceiverResp::new(id, None)),
        Some(Pdu::BindTransceiver(_)) => command(status, seq, BindTransceiverResp::new(id, None)),
        _ => command(status, seq, BindTransmitterResp::new(id, None)),
    }
}
