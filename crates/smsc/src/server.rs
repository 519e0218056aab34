//! The SMPP server: one task per ESME connection.
//!
//! A connection must bind (transmitter, receiver or transceiver) with a known system_id and its
//! password (an unknown system_id is answered as a wrong password, after the same work)
//! within `bind_timeout` of connecting, whatever else it sends meanwhile (an
//! enquire_link is answered but does not extend it); three failed binds close it. Once bound, submit_sm is
//! accepted (transmitter and transceiver) up to the ESME's rate, and each accepted message is
//! handed to the [`SubmitHandler`], whose message id is answered in submit_sm_resp. A PDU
//! that cannot be decoded gets generic_nack with its sequence number and the connection goes
//! on; a command_length the framing cannot trust gets generic_nack and the connection closes.
//! A connection silent for `idle_timeout` is unbound and closed.
//!
//! The server listens on plain TCP, on TLS (as SMSCs offer SMPP over TLS, on a port of its
//! own), or both ([`Endpoints`]); a TLS session's handshake runs in the session's task, within
//! `bind_timeout`, so a client that stalls it holds up nothing but its own connection slot.
//!
//! Up to `window` submits of a session are in the handler at once, and their responses go out
//! in the order they finish (as SMPP allows); a client that keeps more outstanding is simply
//! not read from until one finishes. Receiver and transceiver sessions are registered in
//! [`Receivers`], through which the application sends deliver_sm (delivery receipts; on an
//! interconnect, messages) and learns the ESME's deliver_sm_resp.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::Length;
use rusmpp::encode::owned::Encode;
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSm, SubmitSmResp};
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::esme::{EsmeDirectory, TokenBucket, verify_bind};
use crate::frame::{Frame, FrameError, SmppCodec, holds_whole_pdu};

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
    /// Requests outstanding at once in each direction of a session: submits in the handler,
    /// and deliver_sm awaiting the ESME's response.
    pub window: usize,
    /// How long a deliver_sm may wait for its response.
    pub response_timeout: Duration,
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
            window: 64,
            response_timeout: Duration::from_secs(10),
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

    fn can_receive(self) -> bool {
        matches!(self, BindMode::Receiver | BindMode::Transceiver)
    }
}

/// A deliver_sm on its way to a bound session, with where to report the ESME's answer.
struct Outbound {
    pdu: DeliverSm,
    answer: oneshot::Sender<CommandStatus>,
}

/// Why a deliver_sm got no answer from the ESME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    #[error("no receiver or transceiver session of that ESME is bound")]
    NotBound,
    #[error("the session closed before the ESME answered")]
    Closed,
    #[error("the ESME did not answer in time")]
    Timeout,
}

/// A receiving session's id and its queue of deliver_sm.
type SessionQueue = (u64, mpsc::Sender<Outbound>);

/// The bound receiver and transceiver sessions, by system_id; cheap to clone.
#[derive(Clone, Default)]
pub struct Receivers {
    inner: Arc<Mutex<HashMap<String, Vec<SessionQueue>>>>,
    next: Arc<AtomicU64>,
}

/// Removes a session from [`Receivers`] when the session ends.
struct Registration {
    receivers: Receivers,
    system_id: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.receivers.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sessions) = map.get_mut(&self.system_id) {
            sessions.retain(|(id, _)| *id != self.id);
            if sessions.is_empty() {
                map.remove(&self.system_id);
            }
        }
    }
}

impl Receivers {
    pub fn new() -> Receivers {
        Receivers::default()
    }

    fn register(&self, system_id: &str, window: usize) -> (Registration, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(window);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(system_id.to_owned()).or_default().push((id, tx));
        (Registration { receivers: self.clone(), system_id: system_id.to_owned(), id }, rx)
    }

    /// Whether the ESME has a session that can take deliver_sm.
    pub fn is_bound(&self, system_id: &str) -> bool {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).contains_key(system_id)
    }

    /// Sends `pdu` to one of the ESME's receiving sessions (taking turns) and returns the
    /// command_status of its deliver_sm_resp.
    pub async fn deliver(
        &self,
        system_id: &str,
        pdu: DeliverSm,
        timeout: Duration,
    ) -> Result<CommandStatus, DeliverError> {
        let session = {
            let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let sessions = map.get(system_id).ok_or(DeliverError::NotBound)?;
            let turn = self.next.fetch_add(1, Ordering::Relaxed) as usize % sessions.len();
            sessions[turn].1.clone()
        };
        let (answer, answered) = oneshot::channel();
        let outcome = tokio::time::timeout(timeout, async {
            session.send(Outbound { pdu, answer }).await.map_err(|_| DeliverError::Closed)?;
            answered.await.map_err(|_| DeliverError::Closed)
        })
        .await;
        outcome.unwrap_or(Err(DeliverError::Timeout))
    }
}

struct Shared<H> {
    config: SmppConfig,
    directory: EsmeDirectory,
    handler: H,
    receivers: Receivers,
}

/// Where the server accepts connections: plain TCP, TLS, or both. Sessions on either share the
/// ESME directory, the handler and the receivers. A bare [`TcpListener`] is plain TCP only.
#[derive(Default)]
pub struct Endpoints {
    pub plain: Option<TcpListener>,
    /// The TLS listener and the server's certificate and key (and, for mutual TLS, the CA
    /// its clients' certificates must chain to).
    pub tls: Option<(TcpListener, Arc<ServerConfig>)>,
}

impl From<TcpListener> for Endpoints {
    fn from(plain: TcpListener) -> Endpoints {
        Endpoints { plain: Some(plain), tls: None }
    }
}

/// A session's halves: of a TCP stream, or of a TLS stream over one.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// The halves of a TCP stream, or of the TLS stream over it.
pub(crate) fn halves<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> (ReadHalf, WriteHalf) {
    let (read, write) = tokio::io::split(stream);
    (Box::new(read), Box::new(write))
}

/// The halves of a TCP stream, split without the lock [`halves`] takes.
pub(crate) fn tcp_halves(stream: TcpStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = stream.into_split();
    (Box::new(read), Box::new(write))
}

/// Serves SMPP on `endpoints` until `stop` is cancelled; accepted submits go to `handler`, and
/// receiving sessions are registered in `receivers`.
pub async fn serve<H: SubmitHandler>(
    endpoints: impl Into<Endpoints>,
    config: SmppConfig,
    directory: EsmeDirectory,
    handler: H,
    receivers: Receivers,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let Endpoints { plain, tls } = endpoints.into();
    let (tls_listener, acceptor) = match tls {
        Some((listener, config)) => (Some(listener), Some(TlsAcceptor::from(config))),
        None => (None, None),
    };
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let shared = Arc::new(Shared { config, directory, handler, receivers });
    loop {
        let (stream, peer, tls) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = accept(plain.as_ref()) => r.map(|(s, p)| (s, p, None))?,
            r = accept(tls_listener.as_ref()) => r.map(|(s, p)| (s, p, acceptor.clone()))?,
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
            let halves = match tls {
                None => tcp_halves(stream),
                Some(acceptor) => match handshake(&acceptor, stream, shared.config.bind_timeout).await {
                    Ok(halves) => halves,
                    Err(e) => return tracing::debug!(%peer, error = %e, "SMPP TLS handshake failed"),
                },
            };
            if let Err(e) = Handler::new(halves, &shared).run(&stop).await {
                tracing::debug!(%peer, error = %e, "SMPP session ended");
            }
            drop(permit);
        });
    }
}

/// The next connection on `listener`; never, without one.
async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// The server's side of a TLS handshake, given up after `timeout`.
async fn handshake(acceptor: &TlsAcceptor, stream: TcpStream, timeout: Duration) -> io::Result<(ReadHalf, WriteHalf)> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(tls) => Ok(halves(tls?)),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake not finished within the bind timeout")),
    }
}

fn command(status: CommandStatus, seq: u32, pdu: impl Into<Pdu>) -> Command {
    Command::new(status, seq, pdu)
}

/// Appends `c`, framed, to `out`.
pub fn encode_into(out: &mut BytesMut, c: &Command) {
    out.extend_from_slice(&((4 + c.length()) as u32).to_be_bytes());
    c.encode(out);
}

/// Decodes the body of a whole PDU `frame` (header included).
pub fn decode_pdu(mut frame: BytesMut) -> Result<Command, String> {
    frame.advance(4);
    let len = frame.len();
    Command::decode(&mut frame, len).map(|(c, _)| c).map_err(|e| e.to_string())
}

/// What a bound session is: who, how, and at what rate it may submit.
struct Bound {
    system_id: Arc<str>,
    mode: BindMode,
    bucket: TokenBucket,
    /// Present for receiver and transceiver sessions; dropping it unregisters the session.
    registration: Option<Registration>,
}

type Reply<'a> = Pin<Box<dyn Future<Output = Command> + Send + 'a>>;

/// Whether a session goes on after a step, or closes (what it buffered is written first).
type Flow = ControlFlow<()>;

/// What a session waits for, and the first of them that happens.
enum Event {
    /// The server is stopping.
    Stop,
    /// A submit left the handler, with its submit_sm_resp.
    Reply(Command),
    /// The application has a deliver_sm for this ESME.
    Deliver(Outbound),
    /// A frame arrived from the ESME, or the connection ended (`None`) or failed.
    Frame(Option<io::Result<Frame>>),
    /// The bind timeout passed without a bind, or nothing was heard for the idle timeout.
    Idle,
}

/// One ESME connection: its socket, what the ESME is bound as, and the requests in flight in
/// each direction. [`Handler::run`] waits for the next [`Event`] and hands it to the method for
/// it; each PDU kind the ESME sends has its own method.
struct Handler<'a, H> {
    shared: &'a Shared<H>,
    frames: FramedRead<ReadHalf, SmppCodec>,
    write: WriteHalf,
    /// Encoded PDUs not yet written.
    out: BytesMut,
    bound: Option<Bound>,
    failed_binds: u32,
    /// Submits in the handler, each resolving to its response.
    replies: FuturesUnordered<Reply<'a>>,
    /// deliver_sm sent and not yet answered, by sequence number.
    awaiting: HashMap<u32, oneshot::Sender<CommandStatus>>,
    /// The deliver_sm queue of a bound receiver or transceiver session.
    outbound: Option<mpsc::Receiver<Outbound>>,
    /// The sequence number of the last request this side sent.
    next_seq: u32,
    /// When the connection was accepted: the bind timeout runs from here, whatever the
    /// client sends before binding.
    connected_at: Instant,
    last_heard: Instant,
}

impl<'a, H: SubmitHandler> Handler<'a, H> {
    fn new((read, write): (ReadHalf, WriteHalf), shared: &'a Shared<H>) -> Self {
        Handler {
            shared,
            frames: FramedRead::new(read, SmppCodec::new(shared.config.max_pdu)),
            write,
            out: BytesMut::with_capacity(4096),
            bound: None,
            failed_binds: 0,
            replies: FuturesUnordered::new(),
            awaiting: HashMap::new(),
            outbound: None,
            next_seq: 0,
            connected_at: Instant::now(),
            last_heard: Instant::now(),
        }
    }

    /// Serves the connection until the ESME closes it or unbinds, it idles, a bind fails too
    /// often, or `stop` is cancelled.
    async fn run(mut self, stop: &CancellationToken) -> io::Result<()> {
        loop {
            // Answers are batched into one write while more requests are already buffered.
            if !self.out.is_empty() && (!holds_whole_pdu(self.frames.read_buffer()) || self.out.len() > 16 * 1024) {
                self.flush().await?;
            }
            let flow = match self.next_event(stop).await {
                Event::Stop => self.unbind().await?,
                Event::Reply(reply) => self.replied(reply),
                Event::Deliver(outbound) => self.send_deliver(outbound),
                Event::Frame(frame) => self.received(frame).await?,
                Event::Idle => {
                    tracing::debug!("SMPP client idle: unbinding");
                    self.unbind().await?
                }
            };
            if flow.is_break() {
                return Ok(());
            }
        }
    }

    /// Waits for the next event. The ESME is not read from while `window` submits are in the
    /// handler, and is sent no deliver_sm while `window` of them await an answer.
    async fn next_event(&mut self, stop: &CancellationToken) -> Event {
        let config = &self.shared.config;
        let deadline = match self.bound {
            Some(_) => self.last_heard + config.idle_timeout,
            None => self.connected_at + config.bind_timeout,
        };
        let idle_deadline = tokio::time::Instant::from_std(deadline);
        let may_send = self.outbound.is_some() && self.awaiting.len() < config.window;
        let outbound = &mut self.outbound;
        tokio::select! {
            biased;
            _ = stop.cancelled() => Event::Stop,
            Some(reply) = self.replies.next(), if !self.replies.is_empty() => Event::Reply(reply),
            Some(o) = async { outbound.as_mut()?.recv().await }, if may_send => Event::Deliver(o),
            frame = self.frames.next(), if self.replies.len() < config.window => Event::Frame(frame),
            _ = tokio::time::sleep_until(idle_deadline), if self.replies.is_empty() => Event::Idle,
        }
    }

    /// Buffers a submit's response, and those of the other submits already finished.
    fn replied(&mut self, reply: Command) -> Flow {
        self.push(&reply);
        while let Some(Some(reply)) = self.replies.next().now_or_never() {
            self.push(&reply);
        }
        ControlFlow::Continue(())
    }

    /// Buffers a deliver_sm from the application and keeps where its answer goes.
    fn send_deliver(&mut self, o: Outbound) -> Flow {
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.push(&command(CommandStatus::EsmeRok, self.next_seq, o.pdu));
        self.awaiting.retain(|_, answer| !answer.is_closed());
        self.awaiting.insert(self.next_seq, o.answer);
        ControlFlow::Continue(())
    }

    /// Takes a frame from the ESME: a length the framing cannot trust closes the session, an
    /// undecodable PDU is nacked, and a decoded one is answered.
    async fn received(&mut self, frame: Option<io::Result<Frame>>) -> io::Result<Flow> {
        self.last_heard = Instant::now();
        let (header, frame) = match frame {
            None => return Ok(ControlFlow::Break(())),
            Some(Err(e)) => return Err(e),
            Some(Ok(Frame::BadLength(FrameError::TooShort { header, .. } | FrameError::TooLong { header, .. }))) => {
                let nack = command(CommandStatus::EsmeRinvcmdlen, header.sequence_number, Pdu::GenericNack);
                return self.close_with(&nack).await;
            }
            Some(Ok(Frame::Pdu(header, frame))) => (header, frame),
        };
        let seq = header.sequence_number;
        match decode_pdu(frame) {
            Ok(cmd) => self.dispatch(cmd, seq).await,
            Err(e) => {
                tracing::debug!(error = %e, command_id = header.command_id, "undecodable SMPP PDU");
                self.push(&command(CommandStatus::EsmeRsyserr, seq, Pdu::GenericNack));
                Ok(ControlFlow::Continue(()))
            }
        }
    }

    /// Answers one decoded PDU from the ESME.
    async fn dispatch(&mut self, cmd: Command, seq: u32) -> io::Result<Flow> {
        match cmd.pdu() {
            Some(Pdu::Unbind) => return self.unbind_requested(seq).await,
            Some(Pdu::DeliverSmResp(_) | Pdu::GenericNack) if is_response(cmd.id()) => {
                if let Some(answer) = self.awaiting.remove(&seq) {
                    let _ = answer.send(cmd.status());
                }
            }
            Some(p @ (Pdu::BindTransmitter(_) | Pdu::BindReceiver(_) | Pdu::BindTransceiver(_))) => {
                return self.bind(p, seq).await;
            }
            Some(Pdu::EnquireLink) => self.push(&command(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp)),
            Some(_) if self.bound.is_none() => self.push(&generic_or_resp(&cmd, CommandStatus::EsmeRinvbndsts, seq)),
            Some(Pdu::SubmitSm(_)) => self.submit(cmd, seq),
            // Other responses from the ESME (enquire_link_resp, unbind_resp) need no action.
            Some(_) if is_response(cmd.id()) => {}
            _ => self.push(&command(CommandStatus::EsmeRinvcmdid, seq, Pdu::GenericNack)),
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Answers unbind after the submits still in the handler, and closes.
    async fn unbind_requested(&mut self, seq: u32) -> io::Result<Flow> {
        self.push(&command(CommandStatus::EsmeRok, seq, Pdu::UnbindResp));
        while let Some(reply) = self.replies.next().await {
            self.push(&reply);
        }
        self.close().await
    }

    /// Answers a bind; after `max_failed_binds` failures the session closes.
    async fn bind(&mut self, pdu: &Pdu, seq: u32) -> io::Result<Flow> {
        let config = &self.shared.config;
        let status = if self.bound.is_some() {
            CommandStatus::EsmeRalybnd
        } else {
            match authenticate(self.shared, pdu).await {
                Ok(bound) => {
                    self.bound_as(bound);
                    CommandStatus::EsmeRok
                }
                Err(status) => {
                    self.failed_binds += 1;
                    status
                }
            }
        };
        let resp = bind_resp(pdu, status, seq, &config.system_id);
        if status != CommandStatus::EsmeRok && self.failed_binds >= config.max_failed_binds {
            return self.close_with(&resp).await;
        }
        self.push(&resp);
        Ok(ControlFlow::Continue(()))
    }

    /// Records the bind; a receiving session is registered for deliver_sm.
    fn bound_as(&mut self, mut bound: Bound) {
        if bound.mode.can_receive() {
            let (registration, rx) = self.shared.receivers.register(&bound.system_id, self.shared.config.window);
            bound.registration = Some(registration);
            self.outbound = Some(rx);
        }
        self.bound = Some(bound);
    }

    /// Hands a submit_sm to the handler (its response is buffered when the handler returns),
    /// or refuses it at once when the session may not submit or is over its rate.
    fn submit(&mut self, cmd: Command, seq: u32) {
        let b = self.bound.as_mut().expect("only bound sessions get here");
        let status = if !b.mode.can_submit() {
            CommandStatus::EsmeRinvbndsts
        } else if !b.bucket.take(Instant::now()) {
            CommandStatus::EsmeRthrottled
        } else {
            CommandStatus::EsmeRok
        };
        if status != CommandStatus::EsmeRok {
            return self.push(&command(status, seq, SubmitSmResp::default()));
        }
        let Some(Pdu::SubmitSm(submit)) = cmd.into_parts().pdu else { unreachable!("dispatched as submit_sm") };
        let (shared, system_id) = (self.shared, b.system_id.clone());
        self.replies.push(Box::pin(async move {
            match shared.handler.accept(&system_id, &submit).await {
                Ok(message_id) => {
                    let id = message_id.parse::<COctetString<1, 65>>().unwrap_or_default();
                    command(CommandStatus::EsmeRok, seq, SubmitSmResp::new(id, Vec::new()))
                }
                Err(status) => command(status, seq, SubmitSmResp::default()),
            }
        }));
    }

    /// Sends unbind (the server stops, or the ESME idled) and closes.
    async fn unbind(&mut self) -> io::Result<Flow> {
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        let unbind = command(CommandStatus::EsmeRok, self.next_seq, Pdu::Unbind);
        self.close_with(&unbind).await
    }

    /// Buffers `last`, writes what is buffered, and closes.
    async fn close_with(&mut self, last: &Command) -> io::Result<Flow> {
        self.push(last);
        self.close().await
    }

    /// Writes what is buffered and closes (over TLS with close_notify, so the client can tell
    /// the end from a cut connection).
    async fn close(&mut self) -> io::Result<Flow> {
        self.flush().await?;
        let _ = tokio::time::timeout(self.shared.config.idle_timeout, self.write.shutdown()).await;
        Ok(ControlFlow::Break(()))
    }

    fn push(&mut self, c: &Command) {
        encode_into(&mut self.out, c);
    }

    async fn flush(&mut self) -> io::Result<()> {
        write_out(&mut self.write, &mut self.out, self.shared.config.idle_timeout).await
    }
}

/// Writes what is buffered; a client that does not read for `timeout` is given up.
async fn write_out(
    write: &mut (impl AsyncWriteExt + Unpin),
    out: &mut BytesMut,
    timeout: Duration,
) -> std::io::Result<()> {
    let written = async {
        write.write_all(out).await?;
        // TLS may hold the end of what was written: out with it (nothing to do on TCP).
        write.flush().await
    };
    match tokio::time::timeout(timeout, written).await {
        Ok(r) => {
            out.clear();
            r
        }
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "SMPP client does not read")),
    }
}

/// Checks a bind's credentials; Argon2 takes milliseconds, so off the async workers.
/// Refused binds are all answered ESME_RINVPASWD, whether the system_id exists or not.
async fn authenticate<H>(shared: &Shared<H>, pdu: &Pdu) -> Result<Bound, CommandStatus> {
    let (system_id, password, mode) = match pdu {
        Pdu::BindTransmitter(b) => (b.system_id.as_str(), b.password.as_str(), BindMode::Transmitter),
        Pdu::BindReceiver(b) => (b.system_id.as_str(), b.password.as_str(), BindMode::Receiver),
        Pdu::BindTransceiver(b) => (b.system_id.as_str(), b.password.as_str(), BindMode::Transceiver),
        _ => return Err(CommandStatus::EsmeRinvcmdid),
    };
    let account = shared.directory.get(system_id).cloned();
    let (checked, pw) = (account.clone(), password.to_owned());
    let verified = tokio::task::spawn_blocking(move || verify_bind(checked.as_ref(), &pw)).await.unwrap_or(false);
    // An unknown system_id and a wrong password get the same answer after the same work.
    let Some(account) = account.filter(|_| verified) else { return Err(CommandStatus::EsmeRinvpaswd) };
    tracing::info!(system_id, ?mode, "ESME bound");
    Ok(Bound {
        system_id: system_id.into(),
        mode,
        bucket: TokenBucket::new(account.max_submits_per_s),
        registration: None,
    })
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

fn bind_resp(pdu: &Pdu, status: CommandStatus, seq: u32, system_id: &str) -> Command {
    let id = system_id.parse::<COctetString<1, 16>>().unwrap_or_default();
    match pdu {
        Pdu::BindReceiver(_) => command(status, seq, BindReceiverResp::new(id, None)),
        Pdu::BindTransceiver(_) => command(status, seq, BindTransceiverResp::new(id, None)),
        _ => command(status, seq, BindTransmitterResp::new(id, None)),
    }
}
