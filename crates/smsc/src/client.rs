//! An SMPP client: binds, then keeps any number of requests outstanding on one connection
//! (each answered by sequence number, in whatever order the SMSC answers), and hands the
//! deliver_sm the SMSC sends (messages, delivery receipts) to the application, which decides
//! the deliver_sm_resp. The interconnect to other operators' SMS centers, the demo's bank and
//! the SMS benchmark speak through it, over plain TCP or TLS ([`ClientTls`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_util::codec::FramedRead;

use crate::BindMode;
use crate::frame::{Frame, FrameError, SmppCodec};
use crate::server::{ReadHalf, WriteHalf, decode_pdu, encode_into, halves, tcp_halves, with_key_log};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("SMPP connection: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake failed: the SMSC's certificate was refused, or it speaks no TLS there.
    #[error("SMPP over TLS to {server}: {reason}")]
    Tls { server: String, reason: String },
    #[error("SMPP framing: {0}")]
    Frame(#[from] FrameError),
    #[error("undecodable answer: {0}")]
    Decode(String),
    #[error("field too long: {0}")]
    Field(&'static str),
    #[error("the SMSC answered {0:?}")]
    Status(CommandStatus),
    #[error("the SMPP connection is closed")]
    Closed,
    /// The SMSC did not answer an enquire_link in time: the link is taken as lost.
    #[error("the SMSC did not answer enquire_link within {0:?}")]
    EnquireLinkUnanswered(Duration),
}

/// A deliver_sm from the SMSC; answer it with [`Incoming::answer`] (dropping it answers
/// ESME_RX_T_APPN, "try again later").
pub struct Incoming {
    pub deliver: DeliverSm,
    answer: Option<oneshot::Sender<CommandStatus>>,
}

impl Incoming {
    pub fn answer(mut self, status: CommandStatus) {
        if let Some(a) = self.answer.take() {
            let _ = a.send(status);
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(a) = self.answer.take() {
            let _ = a.send(CommandStatus::EsmeRxTAppn);
        }
    }
}

type Request = (Pdu, oneshot::Sender<Result<Command, ClientError>>);

/// A bound SMPP session; requests through `&self` run concurrently on the one connection.
pub struct Client {
    requests: mpsc::Sender<Request>,
}

/// Outstanding requests per connection.
const WINDOW: usize = 256;

/// How long the TLS handshake with the SMSC may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the end of a session may take: the SMSC's unbind_resp to an unbind sent when the
/// [`Client`] is dropped, and the SMSC's close after the unbind exchange.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// SMPP over TLS: the client configuration (the CA the SMSC's certificate must chain to, and
/// any client certificate) and the name the certificate must be valid for.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl ClientTls {
    /// The handshake over `tcp`, within [`HANDSHAKE_TIMEOUT`].
    async fn connect(&self, tcp: TcpStream, addr: SocketAddr) -> Result<(ReadHalf, WriteHalf), ClientError> {
        let connector = TlsConnector::from(with_key_log(self.config.clone()));
        let server = addr.to_string();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(self.server_name.clone(), tcp)).await {
            Ok(Ok(stream)) => Ok(halves(stream)),
            Ok(Err(e)) => Err(ClientError::Tls { server, reason: e.to_string() }),
            Err(_) => Err(ClientError::Tls { server, reason: "the handshake did not finish in time".into() }),
        }
    }
}

impl Client {
    /// Connects and binds as a transmitter (SMPP 3.4).
    pub async fn bind_transmitter(addr: SocketAddr, system_id: &str, password: &str) -> Result<Client, ClientError> {
        Ok(Client::bind(addr, system_id, password, BindMode::Transmitter).await?.0)
    }

    /// Connects over plain TCP and binds in `mode` (SMPP 3.4); deliver_sm from the SMSC
    /// arrive on the returned receiver (nothing arrives on a transmitter bind).
    pub async fn bind(
        addr: SocketAddr,
        system_id: &str,
        password: &str,
        mode: BindMode,
    ) -> Result<(Client, mpsc::Receiver<Incoming>), ClientError> {
        Client::bind_over(addr, None, system_id, password, mode).await
    }

    /// As [`Client::bind`], over TLS when `tls` is given.
    pub async fn bind_over(
        addr: SocketAddr,
        tls: Option<&ClientTls>,
        system_id: &str,
        password: &str,
        mode: BindMode,
    ) -> Result<(Client, mpsc::Receiver<Incoming>), ClientError> {
        Client::bind_kept_alive(addr, tls, system_id, password, mode, None).await
    }

    /// As [`Client::bind_over`]; with `enquire_link`, an enquire_link goes out whenever nothing
    /// was sent for that long, so that the SMSC's idle timeout (set above it) never unbinds the
    /// session, and one not answered within that long ends the connection as lost.
    pub async fn bind_kept_alive(
        addr: SocketAddr,
        tls: Option<&ClientTls>,
        system_id: &str,
        password: &str,
        mode: BindMode,
        enquire_link: Option<Duration>,
    ) -> Result<(Client, mpsc::Receiver<Incoming>), ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let halves = match tls {
            Some(tls) => tls.connect(stream, addr).await?,
            None => tcp_halves(stream),
        };
        let (requests, rx) = mpsc::channel(WINDOW);
        let (incoming_tx, incoming) = mpsc::channel(WINDOW);
        tokio::spawn(connection(halves, rx, incoming_tx, enquire_link));
        let client = Client { requests };
        let system_id: COctetString<1, 16> = system_id.parse().map_err(|_| ClientError::Field("system_id"))?;
        let password: COctetString<1, 9> = password.parse().map_err(|_| ClientError::Field("password"))?;
        let v = InterfaceVersion::Smpp3_4;
        let bind: Pdu = match mode {
            BindMode::Transmitter => {
                BindTransmitter::builder().system_id(system_id).password(password).interface_version(v).build().into()
            }
            BindMode::Receiver => {
                BindReceiver::builder().system_id(system_id).password(password).interface_version(v).build().into()
            }
            BindMode::Transceiver => {
                BindTransceiver::builder().system_id(system_id).password(password).interface_version(v).build().into()
            }
        };
        client.call(bind).await?;
        Ok((client, incoming))
    }

    /// Sends `pdu` and waits for its answer; an answer other than ESME_ROK is an error.
    pub async fn call(&self, pdu: impl Into<Pdu>) -> Result<Command, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send((pdu.into(), tx)).await.map_err(|_| ClientError::Closed)?;
        let answer = rx.await.map_err(|_| ClientError::Closed)??;
        if answer.status() != CommandStatus::EsmeRok {
            return Err(ClientError::Status(answer.status()));
        }
        Ok(answer)
    }

    /// Submits and returns the SMSC's message id.
    pub async fn submit_sm(&self, submit: SubmitSm) -> Result<String, ClientError> {
        match self.call(submit).await?.pdu() {
            Some(Pdu::SubmitSmResp(r)) => Ok(r.message_id().as_str().to_owned()),
            other => Err(ClientError::Decode(format!("expected submit_sm_resp, got {other:?}"))),
        }
    }

    /// Submits `text` (GSM 7-bit default alphabet, as octets) from an alphanumeric sender to an
    /// international number, asking for a delivery receipt; returns the SMSC's message id.
    pub async fn submit(&self, sender: &str, destination: &str, text: &[u8]) -> Result<String, ClientError> {
        let submit = SubmitSm::builder()
            .source_addr_ton(Ton::Alphanumeric)
            .source_addr(sender.parse::<COctetString<1, 21>>().map_err(|_| ClientError::Field("source_addr"))?)
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(destination.parse().map_err(|_| ClientError::Field("destination_addr"))?)
            .registered_delivery(RegisteredDelivery::request_all())
            .short_message(OctetString::from_slice(text).map_err(|_| ClientError::Field("short_message"))?)
            .build();
        self.submit_sm(submit).await
    }

    pub async fn unbind(self) -> Result<(), ClientError> {
        self.call(Pdu::Unbind).await.map(drop)
    }
}

/// Owns the socket: writes requests as they come (batched while more are queued), matches
/// answers to requests by sequence number, answers enquire_link, and passes deliver_sm on;
/// with `enquire_link`, sends one when nothing was sent for that long. When the [`Client`] is
/// dropped without unbinding, it unbinds. After an unbind exchange, whichever side began it,
/// it waits for the SMSC to close first (within [`CLOSE_TIMEOUT`]), so that nothing it sends
/// reaches a closed socket and the close is an orderly one on both sides.
async fn connection(
    (read, mut write): (ReadHalf, WriteHalf),
    mut requests: mpsc::Receiver<Request>,
    incoming: mpsc::Sender<Incoming>,
    enquire_link: Option<Duration>,
) {
    // Far enough to never come, without keep-alive.
    let every = enquire_link.unwrap_or(Duration::from_secs(86_400 * 365));
    let mut last_sent = tokio::time::Instant::now();
    // The sequence number of the enquire_link awaiting its answer.
    let mut enquiring: Option<u32> = None;
    let mut frames = FramedRead::new(read, SmppCodec::new(65_536));
    let mut waiting: HashMap<u32, oneshot::Sender<Result<Command, ClientError>>> = HashMap::new();
    let mut answers = futures::stream::FuturesUnordered::new();
    let mut out = BytesMut::with_capacity(4096);
    let mut seq: u32 = 0;
    let mut closing = false;
    // Whether an unbind went out, and until when its answer is awaited once the client is gone.
    let mut unbinding = false;
    let mut close_deadline = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let result: Result<(), ClientError> = async {
        loop {
            if !out.is_empty() {
                write.write_all(&out).await?;
                write.flush().await?;
                out.clear();
                last_sent = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep_until(last_sent + every), if enquire_link.is_some() => {
                    if enquiring.is_some() {
                        return Err(ClientError::EnquireLinkUnanswered(every));
                    }
                    seq = seq.wrapping_add(1).max(1);
                    encode_into(&mut out, &Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLink));
                    enquiring = Some(seq);
                }
                _ = tokio::time::sleep_until(close_deadline), if closing => {
                    return Err(ClientError::Closed);
                }
                r = requests.recv(), if !closing && waiting.len() < WINDOW => {
                    let Some((pdu, reply)) = r else {
                        closing = true;
                        close_deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
                        if !unbinding {
                            seq = seq.wrapping_add(1).max(1);
                            encode_into(&mut out, &Command::new(CommandStatus::EsmeRok, seq, Pdu::Unbind));
                            unbinding = true;
                        }
                        continue;
                    };
                    let mut next = Some((pdu, reply));
                    while let Some((pdu, reply)) = next.take() {
                        unbinding |= matches!(pdu, Pdu::Unbind);
                        seq = seq.wrapping_add(1).max(1);
                        encode_into(&mut out, &Command::new(CommandStatus::EsmeRok, seq, pdu));
                        waiting.insert(seq, reply);
                        if waiting.len() < WINDOW {
                            next = requests.try_recv().ok();
                        }
                    }
                }
                Some((seq, status)) = answers.next(), if !answers.is_empty() => {
                    encode_into(&mut out, &Command::new(status, seq, DeliverSmResp::default()));
                }
                frame = frames.next() => {
                    let (header, frame) = match frame {
                        None => return Ok(()),
                        Some(Err(e)) => return Err(e.into()),
                        Some(Ok(Frame::BadLength(e))) => return Err(e.into()),
                        Some(Ok(Frame::Pdu(header, frame))) => (header, frame),
                    };
                    let seq = header.sequence_number;
                    let cmd = decode_pdu(frame).map_err(ClientError::Decode)?;
                    match cmd.pdu() {
                        Some(Pdu::EnquireLink) => {
                            encode_into(&mut out, &Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp));
                        }
                        Some(Pdu::Unbind) => {
                            encode_into(&mut out, &Command::new(CommandStatus::EsmeRok, seq, Pdu::UnbindResp));
                            write.write_all(&out).await?;
                            write.flush().await?;
                            await_close(&mut frames).await;
                            return Ok(());
                        }
                        Some(Pdu::DeliverSm(_)) => {
                            let Some(Pdu::DeliverSm(deliver)) = cmd.into_parts().pdu else { unreachable!("matched") };
                            let (tx, rx) = oneshot::channel();
                            let _ = incoming.try_send(Incoming { deliver, answer: Some(tx) });
                            answers.push(async move { (seq, rx.await.unwrap_or(CommandStatus::EsmeRxTAppn)) });
                        }
                        Some(Pdu::EnquireLinkResp) if enquiring == Some(seq) => enquiring = None,
                        _ => {
                            let unbind_resp = matches!(cmd.pdu(), Some(Pdu::UnbindResp));
                            if let Some(reply) = waiting.remove(&seq) {
                                let _ = reply.send(Ok(cmd));
                            }
                            if unbind_resp {
                                await_close(&mut frames).await;
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "SMPP client connection ended");
    }
    // Requests still waiting learn that the connection is gone when their senders drop.
}

/// Waits, within [`CLOSE_TIMEOUT`], for the SMSC to close after the unbind exchange; what
/// else arrives is late and dropped.
async fn await_close(frames: &mut FramedRead<ReadHalf, SmppCodec>) {
    let closed = async { while let Some(Ok(_)) = frames.next().await {} };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closed).await;
}
