//! The responder: accepts connections and drives one [`PeerState`] per connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tracing::{debug, info, warn};

use super::framing::{Out, ReadError, spawn_io};
use super::state::{CloseReason, Outgoing, PeerState, Received, State, Step, Timers};
use super::{CreditControlHandler, DEFAULT_MAX_MESSAGE, Identifiers};
use crate::base::{self, Capabilities, Control, DisconnectCause, Identity};
use crate::cc::Ccr;
use crate::dict::{application, command, result};
use crate::message::{Header, Message};
use crate::validate::validate;

/// A peer allowed to connect: its Origin-Host and Origin-Realm (compared case-insensitively,
/// as DiameterIdentity is a host name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    pub origin_host: String,
    pub origin_realm: String,
}

/// The responder's configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub identity: Identity,
    /// The peers whose CER is accepted; any other is answered 3010 and disconnected.
    pub peers: Vec<KnownPeer>,
    pub timers: Timers,
    /// Messages above this many octets close the connection.
    pub max_message: usize,
    /// Credit-Control requests of one connection in the handler at once; beyond it the
    /// connection is not read until one is answered (TCP pushes back on the peer).
    pub max_outstanding: usize,
    /// TLS from the first octet (RFC 6733 §2.1: TLS/TCP), as numport-tls builds it.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ServerConfig {
    /// Default timers and maximum size, plain TCP.
    pub fn new(identity: Identity, peers: Vec<KnownPeer>) -> Self {
        ServerConfig {
            identity,
            peers,
            timers: Timers::default(),
            max_message: DEFAULT_MAX_MESSAGE,
            max_outstanding: 1024,
            tls: None,
        }
    }

    /// The Result-Code a CER earns: 3010 from a peer not configured, 5010 without
    /// Credit-Control among its applications, else 2001.
    pub fn check_cer(&self, cer: &Capabilities) -> u32 {
        let known = self.peers.iter().any(|p| {
            p.origin_host.eq_ignore_ascii_case(&cer.origin_host)
                && p.origin_realm.eq_ignore_ascii_case(&cer.origin_realm)
        });
        if !known {
            result::UNKNOWN_PEER
        } else if !cer.offers(application::CREDIT_CONTROL) {
            result::NO_COMMON_APPLICATION
        } else {
            result::SUCCESS
        }
    }
}

/// Serves Diameter on `listener` until `shutdown` turns true (or its sender goes): then every
/// open connection sends a DPR and closes when the DPA comes (or after Tw).
pub async fn serve<H: CreditControlHandler>(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let acceptor = config.tls.clone().map(TlsAcceptor::from);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: keep serving.
                    warn!(error = %e, "diameter accept");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = super::stopped(&mut shutdown) => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let (config, handler, shutdown, acceptor) =
            (config.clone(), handler.clone(), shutdown.clone(), acceptor.clone());
        tokio::spawn(async move {
            match acceptor {
                None => connection(stream, addr, config, handler, shutdown).await,
                Some(acceptor) => tls_connection(acceptor, stream, addr, config, handler, shutdown).await,
            }
        });
    }
}

async fn tls_connection<H: CreditControlHandler>(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
    config: Arc<ServerConfig>,
    handler: Arc<H>,
    shutdown: watch::Receiver<bool>,
) {
    match tokio::time::timeout(config.timers.capabilities_exchange, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => connection(tls, addr, config, handler, shutdown).await,
        Ok(Err(e)) => debug!(%addr, error = %e, "diameter TLS handshake"),
        Err(_) => debug!(%addr, "diameter TLS handshake timed out"),
    }
}

/// One connection's context.
struct Conn<H> {
    config: Arc<ServerConfig>,
    handler: Arc<H>,
    peer: PeerState,
    out: mpsc::Sender<Out>,
    ids: Identifiers,
    addr: SocketAddr,
    outstanding: Arc<tokio::sync::Semaphore>,
}

async fn connection<S, H>(
    stream: S,
    addr: SocketAddr,
    config: Arc<ServerConfig>,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
    H: CreditControlHandler,
{
    let (out, mut frames, writer, reader) = spawn_io(stream, config.max_message);
    let peer = PeerState::responder(Instant::now(), config.timers);
    let outstanding = Arc::new(tokio::sync::Semaphore::new(config.max_outstanding.max(1)));
    let mut c = Conn { config, handler, peer, out, ids: Identifiers::new(), addr, outstanding };
    let reason = loop {
        let deadline = tokio::time::Instant::from_std(c.peer.deadline());
        let step = tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(Some(bytes))) => c.on_frame(&bytes).await,
                Some(Ok(None)) | None => break None,
                Some(Err(ReadError::Length { header, max })) => {
                    c.refuse_oversized(&header, max).await;
                    break None;
                }
                Some(Err(ReadError::Io(e))) => {
                    debug!(addr = %c.addr, error = %e, "diameter read");
                    break None;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let step = c.peer.on_timer(Instant::now());
                c.execute(step, None).await
            }
            _ = super::stopped(&mut shutdown), if c.peer.state() == State::Open => {
                let step = c.peer.stop(Instant::now());
                c.execute(step, None).await
            }
        };
        if let Some(reason) = step {
            break Some(reason);
        }
    };
    info!(addr = %c.addr, ?reason, "diameter peer connection closed");
    let _ = c.out.send(Out::Close).await;
    drop(c);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    reader.abort();
}

impl<H: CreditControlHandler> Conn<H> {
    fn me(&self) -> &Identity {
        &self.config.identity
    }

    async fn send(&self, bytes: Vec<u8>) {
        let _ = self.out.send(Out::Message(bytes)).await;
    }

    /// A message above the maximum: answered 5012 if a request (the rest of it is never read).
    async fn refuse_oversized(&self, header: &Header, max: usize) {
        warn!(addr = %self.addr, length = header.length, max, "diameter message over the maximum size");
        if header.is_request() && header.length as usize > max {
            let msg = format!("message of {} octets above the maximum of {max}", header.length);
            self.send(base::answer_with(header, &[], self.me(), result::UNABLE_TO_COMPLY, &msg, None)).await;
        }
    }

    /// Handles one whole message; `Some` when the connection is to close.
    async fn on_frame(&mut self, bytes: &[u8]) -> Option<CloseReason> {
        let message = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                let header = Header::parse(bytes[..crate::message::HEADER_LEN].try_into().ok()?);
                return self.refuse(&header, &bytes[crate::message::HEADER_LEN..], &e).await;
            }
        };
        let h = message.header;
        if h.is_request()
            && let Err(e) = validate(&message)
        {
            return self.refuse(&h, message.body, &e).await;
        }
        let received = match (h.command, h.is_request()) {
            (command::CAPABILITIES_EXCHANGE, true) => match Capabilities::decode(&message) {
                Ok(cer) => {
                    let result_code = self.config.check_cer(&cer);
                    if result_code != result::SUCCESS {
                        warn!(addr = %self.addr, host = %cer.origin_host, realm = %cer.origin_realm, result_code, "diameter CER refused");
                    }
                    Received::Cer { result_code }
                }
                Err(e) => return self.refuse(&h, message.body, &e).await,
            },
            (command::CAPABILITIES_EXCHANGE, false) => Received::Cea { result_code: 0 },
            (command::DEVICE_WATCHDOG, true) => Received::Dwr,
            (command::DEVICE_WATCHDOG, false) => Received::Dwa,
            (command::DISCONNECT_PEER, true) => Received::Dpr,
            (command::DISCONNECT_PEER, false) => Received::Dpa,
            (_, true) => Received::Request,
            (_, false) => Received::Answer,
        };
        let step = self.peer.on_receive(Instant::now(), received);
        self.execute(step, Some(&message)).await
    }

    /// Answers `header`'s request with the fault `e`; before the capabilities exchange, closes.
    async fn refuse(&mut self, header: &Header, body: &[u8], e: &crate::Error) -> Option<CloseReason> {
        debug!(addr = %self.addr, error = %e, "diameter message refused");
        if header.is_request() {
            self.send(base::error_answer(header, body, self.me(), e)).await;
        }
        if self.peer.state() == State::WaitCer {
            return Some(CloseReason::MessageBeforeCer);
        }
        None
    }

    async fn execute(&mut self, step: Step, message: Option<&Message<'_>>) -> Option<CloseReason> {
        if let Some(send) = step.send {
            let bytes = self.encode(send, message);
            self.send(bytes).await;
        }
        if step.deliver
            && let Some(m) = message
            && m.header.is_request()
        {
            self.dispatch(m).await;
        }
        step.close
    }

    fn encode(&self, send: Outgoing, message: Option<&Message<'_>>) -> Vec<u8> {
        let me = self.me();
        let request = message.map(|m| m.header);
        match (send, request) {
            (Outgoing::Cea(code), Some(h)) => {
                let mut cea = Capabilities::of(me, &[application::CREDIT_CONTROL]);
                cea.result_code = Some(code);
                if code != result::SUCCESS {
                    cea.error_message = Some(
                        if code == result::UNKNOWN_PEER { "peer not configured" } else { "no common application" }
                            .into(),
                    );
                }
                cea.encode_answer(&h)
            }
            (Outgoing::Dwa, Some(h)) => Control::answer(me, command::DEVICE_WATCHDOG).encode_answer(&h),
            (Outgoing::Dpa, Some(h)) => Control::answer(me, command::DISCONNECT_PEER).encode_answer(&h),
            (Outgoing::Refusal(code), Some(h)) => {
                let body = message.map_or(&[][..], |m| m.body);
                base::answer_with(&h, body, me, code, "capabilities exchange (CER) not done", None)
            }
            (Outgoing::Dwr, _) => {
                Control::request(me, command::DEVICE_WATCHDOG, None).encode_request(self.ids.next(), self.ids.next())
            }
            (Outgoing::Dpr, _) => Control::request(me, command::DISCONNECT_PEER, Some(DisconnectCause::Rebooting))
                .encode_request(self.ids.next(), self.ids.next()),
            // A responder sends no CER, and answers need the request they answer.
            (Outgoing::Cer | Outgoing::Cea(_) | Outgoing::Dwa | Outgoing::Dpa | Outgoing::Refusal(_), _) => Vec::new(),
        }
    }

    /// An application request in the open state: a CCR goes to the handler, anything else is
    /// refused (3007 for another application, 3001 for another command).
    async fn dispatch(&mut self, m: &Message<'_>) {
        let h = m.header;
        let refusal = if h.application != application::CREDIT_CONTROL {
            Some((result::APPLICATION_UNSUPPORTED, "application not supported"))
        } else if h.command != command::CREDIT_CONTROL {
            Some((result::COMMAND_UNSUPPORTED, "command not supported"))
        } else {
            None
        };
        if let Some((code, text)) = refusal {
            self.send(base::answer_with(&h, m.body, self.me(), code, text, None)).await;
            return;
        }
        let ccr = match Ccr::decode(m) {
            Ok(ccr) => ccr,
            Err(e) => {
                self.send(base::error_answer(&h, m.body, self.me(), &e)).await;
                return;
            }
        };
        let Ok(permit) = self.outstanding.clone().acquire_owned().await else { return };
        let (handler, config, out) = (self.handler.clone(), self.config.clone(), self.out.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut cca = handler.credit_control(ccr).await;
            cca.origin_host.clone_from(&config.identity.origin_host);
            cca.origin_realm.clone_from(&config.identity.origin_realm);
            let _ = out.send(Out::Message(cca.encode(&h))).await;
        });
    }
}
