//! The SMPP server: one task per ESME connection.
//!
//! A connection must bind (transmitter, receiver or transceiver) with a known system_id and its
//! password (an unknown system_id is answered as a wrong password, after the same work)
//! within `bind_timeout` of connecting, whatever else it sends meanwhile (an
//! enquire_link is answered but does not extend it); three failed binds close it. Failed binds
//! lock their system_id and their address out for a while, and an ESME holds at most its
//! `max_sessions` ([`crate::bind_guard`]). Once bound, submit_sm is
//! accepted (transmitter and transceiver) up to the ESME's rate, and each accepted message is
//! handed to the [`SubmitHandler`], whose message id is answered in submit_sm_resp. A PDU
//! that cannot be decoded gets generic_nack with its sequence number and the connection goes
//! on; a command_length the framing cannot trust gets generic_nack and the connection closes.
//! A connection silent for `idle_timeout` is unbound, and closed once the ESME's unbind_resp
//! arrives (or `response_timeout` passes): an orderly close, with nothing left unread.
//!
//! Beside submit_sm, a bound transmitter or transceiver sends submit_multi and data_sm (each
//! message handed to the handler as a submit_sm) and query_sm, cancel_sm and replace_sm
//! ([`crate::operations`]); before a bind, and on a receiver, each gets ESME_RINVBNDSTS in its
//! own response type. A request whose schedule_delivery_time or validity_period cannot be
//! decoded gets its own response with ESME_RINVSCHED or ESME_RINVEXPIRY, not generic_nack; an
//! outbind (an SMS center's request, never an ESME's) gets generic_nack. The bind's answer
//! carries the sc_interface_version negotiated.
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
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rusmpp::decode::{DecodeError, DecodeWithLength};
use rusmpp::encode::Length;
use rusmpp::encode::owned::Encode;
use rusmpp::pdus::{
    BindReceiverResp, BindTransceiverResp, BindTransmitterResp, CancelSm, DataSmResp, DeliverSm, QuerySm, ReplaceSm,
    SubmitSm, SubmitSmResp,
};
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{KeyLogFile, ServerConfig};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::bind_guard::{BindGuard, LockoutConfig, Observer, Refusal, SessionSlot};
use crate::esme::{EsmeDirectory, TokenBucket, verify_bind};
use crate::frame::{Frame, FrameError, SmppCodec, holds_whole_pdu};
use crate::operations::{self, MessageStatus, error_response};

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
    /// How long a deliver_sm may wait for its response, and an unbind the server sends for
    /// its unbind_resp.
    pub response_timeout: Duration,
    /// When failed binds lock a system_id or an address out.
    pub lockout: LockoutConfig,
    /// Told of refused connections and binds, and of lockouts.
    pub observer: Observer,
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
            lockout: LockoutConfig::default(),
            observer: Observer::default(),
        }
    }
}

/// Where accepted submits go, and the questions about them. `accept` returns the message id
/// for submit_sm_resp, or the error status to answer with; the server answers only after it
/// returns, so an implementation that commits the message before returning makes every
/// acknowledged submit durable. submit_sm, each destination of a submit_multi and data_sm all
/// come to `accept` as a submit_sm ([`crate::operations`]).
///
/// `query`, `cancel` and `replace` answer query_sm, cancel_sm and replace_sm for the messages
/// of ESME `system_id`; a handler that keeps no messages leaves them as they are, answering
/// ESME_RQUERYFAIL, ESME_RCANCELFAIL and ESME_RREPLACEFAIL.
pub trait SubmitHandler: Send + Sync + 'static {
    fn accept(
        &self,
        system_id: &str,
        submit: &SubmitSm,
    ) -> impl std::future::Future<Output = Result<String, CommandStatus>> + Send;

    fn query(
        &self,
        _system_id: &str,
        _query: &QuerySm,
    ) -> impl std::future::Future<Output = Result<MessageStatus, CommandStatus>> + Send {
        async { Err(CommandStatus::EsmeRqueryfail) }
    }

    fn cancel(
        &self,
        _system_id: &str,
        _cancel: &CancelSm,
    ) -> impl std::future::Future<Output = Result<(), CommandStatus>> + Send {
        async { Err(CommandStatus::EsmeRcancelfail) }
    }

    fn replace(
        &self,
        _system_id: &str,
        _replace: &ReplaceSm,
    ) -> impl std::future::Future<Output = Result<(), CommandStatus>> + Send {
        async { Err(CommandStatus::EsmeRreplacefail) }
    }
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
    guard: Arc<BindGuard>,
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
        Some((listener, config)) => (Some(listener), Some(TlsAcceptor::from(with_key_log(config)))),
        None => (None, None),
    };
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let guard = BindGuard::new(config.lockout, config.observer.clone());
    let shared = Arc::new(Shared { config, directory, handler, receivers, guard });
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
            shared.config.observer.refused(Refusal::ConnectionLimit);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shared, stop) = (shared.clone(), stop.clone());
        let accepted_at = Instant::now();
        tokio::spawn(async move {
            let halves = match tls {
                None => tcp_halves(stream),
                Some(acceptor) => match handshake(&acceptor, stream, shared.config.bind_timeout).await {
                    Ok(halves) => halves,
                    Err(e) => return tracing::debug!(%peer, error = %e, "SMPP TLS handshake failed"),
                },
            };
            if let Err(e) = Handler::new(halves, &shared, peer.ip(), accepted_at).run(&stop).await {
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

/// `config`, writing its sessions' secrets to the file `SSLKEYLOGFILE` names when that variable
/// is set (for decrypting a capture; NSS key log format), and untouched when it is not.
pub(crate) fn with_key_log<C: KeyLogged>(config: Arc<C>) -> Arc<C> {
    if std::env::var_os("SSLKEYLOGFILE").is_none() {
        return config;
    }
    let mut config = Arc::unwrap_or_clone(config);
    config.set_key_log(Arc::new(KeyLogFile::new()));
    Arc::new(config)
}

/// A rustls configuration with a key log: the server's and the client's.
pub(crate) trait KeyLogged: Clone {
    fn set_key_log(&mut self, key_log: Arc<KeyLogFile>);
}

impl KeyLogged for ServerConfig {
    fn set_key_log(&mut self, key_log: Arc<KeyLogFile>) {
        self.key_log = key_log;
    }
}

impl KeyLogged for tokio_rustls::rustls::ClientConfig {
    fn set_key_log(&mut self, key_log: Arc<KeyLogFile>) {
        self.key_log = key_log;
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
pub fn decode_pdu(frame: BytesMut) -> Result<Command, String> {
    decode_command(frame).map_err(|e| e.to_string())
}

/// Decodes a framed PDU; the error names the field at fault.
fn decode_command(mut frame: BytesMut) -> Result<Command, DecodeError> {
    frame.advance(4);
    let len = frame.len();
    Command::decode(&mut frame, len).map(|(c, _)| c)
}

/// What a bound session is: who, how, and at what rate it may submit.
struct Bound {
    system_id: Arc<str>,
    mode: BindMode,
    bucket: TokenBucket,
    /// Present for receiver and transceiver sessions; dropping it unregisters the session.
    registration: Option<Registration>,
    /// Counts the session against the ESME's `max_sessions` while it lives.
    _slot: SessionSlot,
}

type Reply<'a> = Pin<Box<dyn Future<Output = Command> + Send + 'a>>;

/// The longest a session waits for the ESME's close after its own ([`Handler::close_after_unbind`]).
const LINGER: Duration = Duration::from_secs(2);

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
    /// Where the connection comes from: failed binds are counted per address.
    peer: IpAddr,
    /// When the connection was accepted: the bind timeout runs from here, whatever the
    /// client sends before binding (TLS handshake included).
    connected_at: Instant,
    last_heard: Instant,
}

impl<'a, H: SubmitHandler> Handler<'a, H> {
    fn new((read, write): (ReadHalf, WriteHalf), shared: &'a Shared<H>, peer: IpAddr, connected_at: Instant) -> Self {
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
            peer,
            connected_at,
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
                Event::Stop => self.stop().await?,
                Event::Reply(reply) => self.replied(reply),
                Event::Deliver(outbound) => self.send_deliver(outbound),
                Event::Frame(frame) => self.received(frame).await?,
                Event::Idle if self.bound.is_none() => {
                    tracing::debug!(peer = %self.peer, "SMPP client not bound within the bind timeout: closing");
                    self.unbind_unbound().await?
                }
                Event::Idle => {
                    tracing::debug!(peer = %self.peer, "SMPP client idle: unbinding");
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
        let deadline = self.deadline();
        // Checked first: a client that always has a PDU buffered must not keep the timer from
        // ever being polled.
        if self.replies.is_empty() && deadline <= Instant::now() {
            return Event::Idle;
        }
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

    /// When the session times out: the bind timeout counted from the connection while unbound,
    /// the idle timeout counted from the last PDU heard once bound.
    fn deadline(&self) -> Instant {
        match self.bound {
            Some(_) => self.last_heard + self.shared.config.idle_timeout,
            None => self.connected_at + self.shared.config.bind_timeout,
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
        match decode_command(frame) {
            Ok(cmd) => self.dispatch(cmd, seq).await,
            Err(e) => {
                tracing::debug!(error = %e, command_id = header.command_id, "undecodable SMPP PDU");
                self.push(&self.undecodable(header.command_id, &e, seq));
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
            // An SMS center's request to an ESME: never an ESME's to an SMS center.
            Some(Pdu::Outbind(_)) => self.push(&command(CommandStatus::EsmeRinvcmdid, seq, Pdu::GenericNack)),
            Some(_) if self.bound.is_none() => self.push(&error_response(cmd.id(), CommandStatus::EsmeRinvbndsts, seq)),
            Some(Pdu::SubmitSm(_)) => self.submit(cmd, seq),
            Some(Pdu::SubmitMulti(_)) => self.submit_multi(cmd, seq),
            Some(Pdu::DataSm(_)) => self.data_sm(cmd, seq),
            Some(Pdu::QuerySm(_) | Pdu::CancelSm(_) | Pdu::ReplaceSm(_)) => self.about_message(cmd, seq),
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
        self.close_after_unbind().await
    }

    /// Answers a bind; after `max_failed_binds` failures the session closes.
    async fn bind(&mut self, pdu: &Pdu, seq: u32) -> io::Result<Flow> {
        let config = &self.shared.config;
        let status = if self.bound.is_some() {
            CommandStatus::EsmeRalybnd
        } else {
            match authenticate(self.shared, pdu, self.peer).await {
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

    /// The answer to a PDU that did not decode: a request with a malformed time field gets its
    /// own response with the status SMPP names for it (ESME_RINVBNDSTS before a bind);
    /// anything else generic_nack.
    fn undecodable(&self, command_id: u32, e: &DecodeError, seq: u32) -> Command {
        let id = CommandId::from(command_id);
        match operations::time_field_status(e) {
            Some(_) if self.bound.is_none() => error_response(id, CommandStatus::EsmeRinvbndsts, seq),
            Some(status) => error_response(id, status, seq),
            None => command(CommandStatus::EsmeRsyserr, seq, Pdu::GenericNack),
        }
    }

    /// The session's system_id if it may send `messages` requests about messages now (bound
    /// to submit, within its rate); else the status to refuse with.
    fn admit(&mut self, messages: u32) -> Result<Arc<str>, CommandStatus> {
        let b = self.bound.as_mut().expect("only bound sessions get here");
        if !b.mode.can_submit() {
            Err(CommandStatus::EsmeRinvbndsts)
        } else if !b.bucket.take_n(Instant::now(), messages) {
            Err(CommandStatus::EsmeRthrottled)
        } else {
            Ok(b.system_id.clone())
        }
    }

    /// Hands a submit_sm to the handler (its response is buffered when the handler returns),
    /// or refuses it at once when the session may not submit, is over its rate, or the body
    /// comes twice.
    fn submit(&mut self, cmd: Command, seq: u32) {
        let Some(Pdu::SubmitSm(submit)) = cmd.into_parts().pdu else { unreachable!("dispatched as submit_sm") };
        let admitted =
            self.admit(1).and_then(|id| match operations::body_twice(submit.short_message(), submit.tlvs()) {
                true => Err(CommandStatus::EsmeRinvtlvval),
                false => Ok(id),
            });
        let system_id = match admitted {
            Ok(id) => id,
            Err(status) => return self.push(&error_response(CommandId::SubmitSm, status, seq)),
        };
        let shared = self.shared;
        self.replies.push(Box::pin(async move {
            match shared.handler.accept(&system_id, &submit).await {
                Ok(id) => {
                    command(CommandStatus::EsmeRok, seq, SubmitSmResp::new(operations::message_id(&id), Vec::new()))
                }
                Err(status) => command(status, seq, SubmitSmResp::default()),
            }
        }));
    }

    /// Hands each destination of a submit_multi to the handler as a submit_sm (one token of the
    /// rate each), all at once, and answers with their outcomes.
    fn submit_multi(&mut self, cmd: Command, seq: u32) {
        let Some(Pdu::SubmitMulti(multi)) = cmd.into_parts().pdu else { unreachable!("dispatched as submit_multi") };
        let admitted = match multi.number_of_dests() {
            0 => Err(CommandStatus::EsmeRinvnumdests),
            n => self.admit(u32::from(n)),
        };
        let admitted = admitted.and_then(|id| match operations::body_twice(multi.short_message(), multi.tlvs()) {
            true => Err(CommandStatus::EsmeRinvtlvval),
            false => Ok(id),
        });
        let system_id = match admitted {
            Ok(id) => id,
            Err(status) => return self.push(&error_response(CommandId::SubmitMulti, status, seq)),
        };
        let (shared, destinations) = (self.shared, operations::destinations(multi));
        self.replies.push(Box::pin(async move {
            let outcomes = futures::future::join_all(destinations.iter().map(|d| async {
                match d {
                    Ok(submit) => shared
                        .handler
                        .accept(&system_id, submit)
                        .await
                        .map_err(|status| operations::unsuccess(submit, status)),
                    Err(refused) => Err(refused.clone()),
                }
            }))
            .await;
            command(CommandStatus::EsmeRok, seq, operations::submit_multi_resp(outcomes))
        }));
    }

    /// Hands a data_sm to the handler as the submit_sm of the same message.
    fn data_sm(&mut self, cmd: Command, seq: u32) {
        let Some(Pdu::DataSm(data)) = cmd.into_parts().pdu else { unreachable!("dispatched as data_sm") };
        let system_id = match self.admit(1) {
            Ok(id) => id,
            Err(status) => return self.push(&error_response(CommandId::DataSm, status, seq)),
        };
        let (shared, submit) = (self.shared, operations::data_sm_as_submit(data));
        self.replies.push(Box::pin(async move {
            match shared.handler.accept(&system_id, &submit).await {
                Ok(id) => {
                    command(CommandStatus::EsmeRok, seq, DataSmResp::new(operations::message_id(&id), Vec::new()))
                }
                Err(status) => command(status, seq, DataSmResp::default()),
            }
        }));
    }

    /// Hands query_sm, cancel_sm or replace_sm to the handler; each counts against the rate,
    /// as each costs the store a look.
    fn about_message(&mut self, cmd: Command, seq: u32) {
        let id = cmd.id();
        let system_id = match self.admit(1) {
            Ok(system_id) => system_id,
            Err(status) => return self.push(&error_response(id, status, seq)),
        };
        let shared = self.shared;
        let reply: Reply<'a> = match cmd.into_parts().pdu {
            Some(Pdu::QuerySm(q)) => Box::pin(async move {
                match shared.handler.query(&system_id, &q).await {
                    Ok(status) => command(CommandStatus::EsmeRok, seq, operations::query_sm_resp(q.message_id, status)),
                    Err(status) => error_response(CommandId::QuerySm, status, seq),
                }
            }),
            Some(Pdu::CancelSm(c)) => Box::pin(async move {
                let status = shared.handler.cancel(&system_id, &c).await.err().unwrap_or(CommandStatus::EsmeRok);
                command(status, seq, Pdu::CancelSmResp)
            }),
            Some(Pdu::ReplaceSm(r)) if operations::body_twice(r.short_message(), r.message_payload_tlv()) => {
                return self.push(&command(CommandStatus::EsmeRinvtlvval, seq, Pdu::ReplaceSmResp));
            }
            Some(Pdu::ReplaceSm(r)) => Box::pin(async move {
                let status = shared.handler.replace(&system_id, &r).await.err().unwrap_or(CommandStatus::EsmeRok);
                command(status, seq, Pdu::ReplaceSmResp)
            }),
            _ => unreachable!("dispatched as query_sm, cancel_sm or replace_sm"),
        };
        self.replies.push(reply);
    }

    /// The server stops: the answers of the submits still in the handler go out (within
    /// `response_timeout`), then the session is unbound.
    async fn stop(&mut self) -> io::Result<Flow> {
        let answered = async {
            while let Some(reply) = self.replies.next().await {
                encode_into(&mut self.out, &reply);
            }
        };
        let _ = tokio::time::timeout(self.shared.config.response_timeout, answered).await;
        match self.bound {
            Some(_) => self.unbind().await,
            None => self.unbind_unbound().await,
        }
    }

    /// Sends unbind (the server stops, or the ESME idled), waits up to `response_timeout` for
    /// the ESME's unbind_resp and closes: the ESME has read everything by then, so the close
    /// is an orderly one on both sides (no reset in the middle of its answer).
    async fn unbind(&mut self) -> io::Result<Flow> {
        let seq = self.send_unbind();
        self.flush().await?;
        let timeout = self.shared.config.response_timeout;
        if tokio::time::timeout(timeout, self.unbind_resp(seq)).await.is_err() {
            tracing::debug!(peer = %self.peer, "no unbind_resp within the response timeout: closing");
        }
        self.close_after_unbind().await
    }

    /// Closes after an unbind exchange, then waits (within `response_timeout`, at most
    /// [`LINGER`]) for the ESME to close its side: a socket closed at once would answer
    /// whatever the ESME still sends, such as its TLS close_notify, with a reset.
    async fn close_after_unbind(&mut self) -> io::Result<Flow> {
        let flow = self.close().await?;
        // Unbound: the ESME's session slot and its receiver registration are free again.
        self.bound = None;
        self.outbound = None;
        let drained = async { while let Some(Ok(_)) = self.frames.next().await {} };
        let _ = tokio::time::timeout(self.shared.config.response_timeout.min(LINGER), drained).await;
        Ok(flow)
    }

    /// Unbinds a connection that never bound, and closes without waiting for the answer: it
    /// holds its connection slot no longer than the bind timeout, whatever it sends.
    async fn unbind_unbound(&mut self) -> io::Result<Flow> {
        self.send_unbind();
        self.close().await
    }

    /// Buffers an unbind; returns its sequence number.
    fn send_unbind(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        self.push(&command(CommandStatus::EsmeRok, self.next_seq, Pdu::Unbind));
        self.next_seq
    }

    /// Reads until the answer to the unbind numbered `seq`, the ESME's own unbind (answered),
    /// or the end of the connection. Answers to deliver_sm still reach the application; requests
    /// are late and left unanswered.
    async fn unbind_resp(&mut self, seq: u32) {
        while let Some(Ok(Frame::Pdu(header, _))) = self.frames.next().await {
            match CommandId::from(header.command_id) {
                CommandId::UnbindResp if header.sequence_number == seq => return,
                CommandId::DeliverSmResp => {
                    if let Some(answer) = self.awaiting.remove(&header.sequence_number) {
                        let _ = answer.send(CommandStatus::from(header.command_status));
                    }
                }
                CommandId::Unbind => {
                    let resp = command(CommandStatus::EsmeRok, header.sequence_number, Pdu::UnbindResp);
                    self.push(&resp);
                    let _ = self.flush().await;
                    return;
                }
                _ => {}
            }
        }
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
        let _ = tokio::time::timeout(self.write_timeout(), self.write.shutdown()).await;
        Ok(ControlFlow::Break(()))
    }

    /// How long a write may wait for the client to read: the idle timeout once bound, and no
    /// later than the bind timeout (past it, a moment) before.
    fn write_timeout(&self) -> Duration {
        let config = &self.shared.config;
        match self.bound {
            Some(_) => config.idle_timeout,
            None => self.deadline().saturating_duration_since(Instant::now()).max(Duration::from_millis(100)),
        }
    }

    fn push(&mut self, c: &Command) {
        encode_into(&mut self.out, c);
    }

    async fn flush(&mut self) -> io::Result<()> {
        let timeout = self.write_timeout();
        write_out(&mut self.write, &mut self.out, timeout).await
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

/// Checks a bind from `peer`. A locked-out system_id or address is refused at once with
/// ESME_RBINDFAIL (no Argon2 work, whatever the password); otherwise the credentials are
/// checked (Argon2 takes milliseconds, so off the async workers), and refused binds are all
/// answered ESME_RINVPASWD, whether the system_id exists or not, and counted towards a
/// lockout. A bind beyond the ESME's `max_sessions` gets ESME_RBINDFAIL.
async fn authenticate<H>(shared: &Shared<H>, pdu: &Pdu, peer: IpAddr) -> Result<Bound, CommandStatus> {
    let (system_id, password, mode) = match pdu {
        Pdu::BindTransmitter(b) => (b.system_id.as_str(), b.password.as_str(), BindMode::Transmitter),
        Pdu::BindReceiver(b) => (b.system_id.as_str(), b.password.as_str(), BindMode::Receiver),
        Pdu::BindTransceiver(b) => (b.system_id.as_str(), b.password.as_str(), BindMode::Transceiver),
        _ => return Err(CommandStatus::EsmeRinvcmdid),
    };
    if !shared.guard.admits(system_id, peer) {
        tracing::info!(system_id, %peer, "SMPP bind refused: locked out");
        return Err(CommandStatus::EsmeRbindfail);
    }
    let account = shared.directory.get(system_id).cloned();
    let (checked, pw) = (account.clone(), password.to_owned());
    let turn = shared.guard.verifying().await;
    let verified = tokio::task::spawn_blocking(move || verify_bind(checked.as_ref(), &pw)).await.unwrap_or(false);
    drop(turn);
    // An unknown system_id and a wrong password get the same answer after the same work.
    let Some(account) = account.filter(|_| verified) else {
        tracing::info!(system_id, %peer, "SMPP bind refused: wrong credentials");
        shared.guard.failed(system_id, peer);
        return Err(CommandStatus::EsmeRinvpaswd);
    };
    shared.guard.succeeded(system_id);
    let Some(slot) = shared.guard.open_session(system_id, account.max_sessions) else {
        let max_sessions = account.max_sessions;
        tracing::warn!(system_id, %peer, max_sessions, "SMPP bind refused: the ESME holds its sessions");
        return Err(CommandStatus::EsmeRbindfail);
    };
    tracing::info!(system_id, ?mode, %peer, "ESME bound");
    Ok(Bound {
        system_id: system_id.into(),
        mode,
        bucket: TokenBucket::new(account.max_submits_per_s),
        registration: None,
        _slot: slot,
    })
}

fn is_response(id: CommandId) -> bool {
    u32::from(id) & 0x8000_0000 != 0
}

/// The bind_*_resp to `pdu`; a successful one carries the sc_interface_version negotiated
/// ([`operations::sc_interface_version`]).
fn bind_resp(pdu: &Pdu, status: CommandStatus, seq: u32, system_id: &str) -> Command {
    let id = system_id.parse::<COctetString<1, 16>>().unwrap_or_default();
    let asked = match pdu {
        Pdu::BindReceiver(b) => b.interface_version,
        Pdu::BindTransceiver(b) => b.interface_version,
        Pdu::BindTransmitter(b) => b.interface_version,
        _ => Default::default(),
    };
    let version = operations::sc_interface_version(asked).filter(|_| status == CommandStatus::EsmeRok);
    match pdu {
        Pdu::BindReceiver(_) => command(status, seq, BindReceiverResp::new(id, version)),
        Pdu::BindTransceiver(_) => command(status, seq, BindTransceiverResp::new(id, version)),
        _ => command(status, seq, BindTransmitterResp::new(id, version)),
    }
}
