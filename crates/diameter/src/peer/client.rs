//! The initiator: one connection at a time to the first OCS address that answers, with CER,
//! watchdog, and failover to the next address when the connection or its watchdog fails.
//! Requests still unanswered at a failover are sent again on the next connection with the T
//! flag (same End-to-End identifier, new Hop-by-Hop), so the OCS can tell a retransmission.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tracing::{debug, info, warn};

use super::framing::{Out, ReadError, spawn_io};
use super::state::{CloseReason, Outgoing, PeerState, Received, State, Timers};
use super::{DEFAULT_MAX_MESSAGE, Identifiers};
use crate::base::{Capabilities, Control, DisconnectCause, Identity};
use crate::cc::{Cca, Ccr};
use crate::dict::{application, command};
use crate::message::Message;

/// TLS to the OCS: the client configuration (numport-tls) and the name its certificate carries.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

/// The initiator's configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub identity: Identity,
    pub destination_realm: String,
    /// The OCS addresses, in order of preference: the next one is tried when one fails.
    pub servers: Vec<SocketAddr>,
    pub timers: Timers,
    /// How long [`Client::credit_control`] waits for its answer, failovers included.
    pub request_timeout: Duration,
    /// Pause before connecting again after a failure.
    pub reconnect_delay: Duration,
    pub max_message: usize,
    pub tls: Option<ClientTls>,
}

impl ClientConfig {
    pub fn new(identity: Identity, destination_realm: &str, servers: Vec<SocketAddr>) -> Self {
        ClientConfig {
            identity,
            destination_realm: destination_realm.to_owned(),
            servers,
            timers: Timers::default(),
            request_timeout: Duration::from_secs(10),
            reconnect_delay: Duration::from_millis(200),
            max_message: DEFAULT_MAX_MESSAGE,
            tls: None,
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the client is stopped")]
    Stopped,
    #[error("undecodable answer: {0}")]
    Answer(#[from] crate::Error),
}

struct Request {
    ccr: Ccr,
    reply: oneshot::Sender<Result<Cca, ClientError>>,
}

/// A Gy client. Cheap to share (`Arc<Client>`); requests from many tasks go out on one
/// connection.
pub struct Client {
    requests: mpsc::Sender<Request>,
    open: watch::Receiver<Option<SocketAddr>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl Client {
    /// Starts connecting to the first server.
    pub fn start(config: ClientConfig) -> Client {
        let (requests, rx) = mpsc::channel(4096);
        let (open_tx, open) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let timeout = config.request_timeout;
        let task = tokio::spawn(supervise(config, rx, open_tx, stop_rx));
        Client { requests, open, stop, task, timeout }
    }

    /// The OCS address of the open connection, if there is one.
    pub fn connected(&self) -> Option<SocketAddr> {
        *self.open.borrow()
    }

    /// Waits until a connection is open (capabilities exchanged), for at most `limit`.
    pub async fn wait_open(&self, limit: Duration) -> Option<SocketAddr> {
        let mut open = self.open.clone();
        let r = tokio::time::timeout(limit, open.wait_for(Option::is_some)).await;
        r.ok().and_then(|r| r.ok()).and_then(|a| *a)
    }

    /// Sends `ccr` (its Origin-Host, Origin-Realm and Destination-Realm are the client's) and
    /// waits for its answer, across failovers, up to the request timeout. A `ccr` marked
    /// `retransmitted` goes out with the T flag from its first sending: a gateway sending again
    /// a request whose answer it did not get.
    pub async fn credit_control(&self, ccr: Ccr) -> Result<Cca, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.requests.send(Request { ccr, reply }).await.map_err(|_| ClientError::Stopped)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ClientError::Stopped),
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }

    /// Disconnects with DPR/DPA and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A request sent or waiting to be sent.
struct Pending {
    ccr: Ccr,
    reply: oneshot::Sender<Result<Cca, ClientError>>,
    sent: bool,
}

struct Supervisor {
    config: ClientConfig,
    open: watch::Sender<Option<SocketAddr>>,
    /// By End-to-End identifier.
    pending: HashMap<u32, Pending>,
    ids: Identifiers,
}

async fn supervise(
    config: ClientConfig,
    requests: mpsc::Receiver<Request>,
    open: watch::Sender<Option<SocketAddr>>,
    stop: watch::Receiver<bool>,
) {
    let (mut requests, mut stop) = (requests, stop);
    let mut s = Supervisor { config, open, pending: HashMap::new(), ids: Identifiers::new() };
    for attempt in 0.. {
        // Stopped, or the Client dropped (its sender gone).
        if *stop.borrow() || stop.has_changed().is_err() || s.config.servers.is_empty() {
            break;
        }
        let addr = s.config.servers[attempt % s.config.servers.len()];
        let connect = tokio::time::timeout(s.config.timers.capabilities_exchange, TcpStream::connect(addr));
        let stopped = match connect.await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                match s.config.tls.clone() {
                    None => s.run(tcp, addr, &mut requests, &mut stop).await,
                    Some(tls) => {
                        let connector = TlsConnector::from(tls.config);
                        match connector.connect(tls.server_name, tcp).await {
                            Ok(stream) => s.run(stream, addr, &mut requests, &mut stop).await,
                            Err(e) => {
                                warn!(%addr, error = %e, "diameter TLS handshake");
                                false
                            }
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                warn!(%addr, error = %e, "diameter connect");
                false
            }
            Err(_) => {
                warn!(%addr, "diameter connect timed out");
                false
            }
        };
        s.open.send_replace(None);
        if stopped {
            break;
        }
        let _ = tokio::time::timeout(s.config.reconnect_delay, super::stopped(&mut stop)).await;
    }
    for (_, p) in s.pending.drain() {
        let _ = p.reply.send(Err(ClientError::Stopped));
    }
}

impl Supervisor {
    /// Drives one connection; true when the client was stopped, false on a failure (failover).
    async fn run<S: AsyncRead + AsyncWrite + Send + 'static>(
        &mut self,
        stream: S,
        addr: SocketAddr,
        requests: &mut mpsc::Receiver<Request>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let (out, mut frames, writer, reader) = spawn_io(stream, self.config.max_message);
        let (mut peer, _) = PeerState::initiator(Instant::now(), self.config.timers);
        let me = self.config.identity.clone();
        let cer =
            Capabilities::of(&me, &[application::CREDIT_CONTROL]).encode_request(self.ids.next(), self.ids.next());
        let _ = out.send(Out::Message(cer)).await;
        // Hop-by-Hop identifier of each request on this connection → its End-to-End identifier.
        let mut in_flight: HashMap<u32, u32> = HashMap::new();
        let (mut stopping, mut requests_closed) = (false, false);
        let reason = loop {
            let deadline = tokio::time::Instant::from_std(peer.deadline());
            let open = peer.state() == State::Open;
            let close = tokio::select! {
                frame = frames.recv() => match frame {
                    Some(Ok(Some(bytes))) => {
                        let was_open = peer.state() == State::Open;
                        let close = self.on_frame(&bytes, &mut peer, &out, &mut in_flight).await;
                        if !was_open && peer.state() == State::Open {
                            info!(%addr, "diameter connection open");
                            self.open.send_replace(Some(addr));
                            self.flush(&out, &mut in_flight).await;
                        }
                        close
                    }
                    Some(Err(ReadError::Length { header, max })) => {
                        warn!(%addr, length = header.length, max, "diameter answer over the maximum size");
                        Some(CloseReason::WatchdogExpired)
                    }
                    Some(Ok(None)) | Some(Err(ReadError::Io(_))) | None => Some(CloseReason::WatchdogExpired),
                },
                request = requests.recv(), if !stopping && !requests_closed => match request {
                    Some(r) => {
                        let e2e = self.ids.next();
                        self.pending.insert(e2e, Pending { ccr: r.ccr, reply: r.reply, sent: false });
                        if open {
                            self.send(e2e, &out, &mut in_flight).await;
                        }
                        None
                    }
                    // The Client is gone: its stop sender too, which the branch below hears.
                    None => { requests_closed = true; None }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.pending.retain(|_, p| !p.reply.is_closed());
                    let step = peer.on_timer(Instant::now());
                    if step.send == Some(Outgoing::Dwr) {
                        let dwr = Control::request(&me, command::DEVICE_WATCHDOG, None);
                        let _ = out.send(Out::Message(dwr.encode_request(self.ids.next(), self.ids.next()))).await;
                    }
                    step.close
                }
                _ = super::stopped(stop), if !stopping => {
                    stopping = true;
                    let step = peer.stop(Instant::now());
                    if step.send == Some(Outgoing::Dpr) {
                        let dpr = Control::request(&me, command::DISCONNECT_PEER, Some(DisconnectCause::Rebooting));
                        let _ = out.send(Out::Message(dpr.encode_request(self.ids.next(), self.ids.next()))).await;
                    }
                    step.close
                }
            };
            if let Some(reason) = close {
                break reason;
            }
        };
        info!(%addr, ?reason, "diameter connection closed");
        let _ = out.send(Out::Close).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        reader.abort();
        stopping
    }

    /// Sends every pending request on a connection just opened: T-flagged if an earlier
    /// connection carried it.
    async fn flush(&mut self, out: &mpsc::Sender<Out>, in_flight: &mut HashMap<u32, u32>) {
        self.pending.retain(|_, p| !p.reply.is_closed());
        let ids: Vec<u32> = self.pending.keys().copied().collect();
        for e2e in ids {
            self.send(e2e, out, in_flight).await;
        }
    }

    /// Sends the pending request `e2e` with a new Hop-by-Hop identifier.
    async fn send(&mut self, e2e: u32, out: &mpsc::Sender<Out>, in_flight: &mut HashMap<u32, u32>) {
        let Some(p) = self.pending.get_mut(&e2e) else { return };
        p.ccr.retransmitted |= p.sent;
        p.sent = true;
        p.ccr.origin_host.clone_from(&self.config.identity.origin_host);
        p.ccr.origin_realm.clone_from(&self.config.identity.origin_realm);
        p.ccr.destination_realm.clone_from(&self.config.destination_realm);
        let hop = self.ids.next();
        in_flight.insert(hop, e2e);
        let bytes = p.ccr.encode(hop, e2e);
        let _ = out.send(Out::Message(bytes)).await;
    }

    async fn on_frame(
        &mut self,
        bytes: &[u8],
        peer: &mut PeerState,
        out: &mpsc::Sender<Out>,
        in_flight: &mut HashMap<u32, u32>,
    ) -> Option<CloseReason> {
        let message = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "diameter: undecodable message from the OCS");
                return None;
            }
        };
        let h = message.header;
        let me = &self.config.identity;
        let received = match (h.command, h.is_request()) {
            (command::CAPABILITIES_EXCHANGE, false) => match Capabilities::decode(&message) {
                Ok(cea) => Received::Cea { result_code: cea.result_code.unwrap_or(0) },
                Err(_) => Received::Cea { result_code: 0 },
            },
            (command::DEVICE_WATCHDOG, true) => Received::Dwr,
            (command::DEVICE_WATCHDOG, false) => Received::Dwa,
            (command::DISCONNECT_PEER, true) => Received::Dpr,
            (command::DISCONNECT_PEER, false) => Received::Dpa,
            (command::CAPABILITIES_EXCHANGE, true) => Received::Cer { result_code: 0 },
            (_, true) => Received::Request,
            (_, false) => Received::Answer,
        };
        let step = peer.on_receive(Instant::now(), received);
        let reply = match step.send {
            Some(Outgoing::Dwa) => Some(Control::answer(me, command::DEVICE_WATCHDOG).encode_answer(&h)),
            Some(Outgoing::Dpa) => Some(Control::answer(me, command::DISCONNECT_PEER).encode_answer(&h)),
            _ => None,
        };
        if let Some(r) = reply {
            let _ = out.send(Out::Message(r)).await;
        }
        if step.deliver && !h.is_request() {
            self.answer(&message, in_flight);
        }
        step.close
    }

    fn answer(&mut self, message: &Message<'_>, in_flight: &mut HashMap<u32, u32>) {
        let Some(e2e) = in_flight.remove(&message.header.hop_by_hop) else { return };
        let Some(p) = self.pending.remove(&e2e) else { return };
        let _ = p.reply.send(Cca::decode(message).map_err(ClientError::from));
    }
}
