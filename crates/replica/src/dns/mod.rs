//! ENUM over DNS (RFC 6116) with number portability data (RFC 4694), on `hickory-server`.
//!
//! A query for `<reversed digits>.<zone>` (`1.0.0.0.0.0.0.9.7.4.e164.arpa.` for +4790000001)
//! is answered from the replica's index with one NAPTR record:
//!
//! ```text
//! IN NAPTR 100 10 "u" "E2U+pstn:tel" "!^.*$!tel:+4790000001;npdi;rn=D002;rn-context=+47!" .
//! ```
//!
//! `npdi` says the portability data was consulted; `rn` (present only for a ported number, as
//! RFC 4694 §4 specifies) is the serving operator's routing number, a local number whose
//! `rn-context` is the country's code. A never-ported number's URI carries `npdi` alone: its
//! range holder serves it.
//!
//! # Which names exist
//!
//! Resolvers that minimise QNAMEs (RFC 9156) walk down from the apex label by label and, under
//! RFC 8020, take an NXDOMAIN as the end of the tree; so every name above a number must exist.
//! The zone holds:
//!
//! - the apex, with its SOA (serial: the feed checkpoint modulo 2^32, so caches and
//!   secondaries tell versions apart) and NS;
//! - every number the index serves ([`npdb::Index::lookup`]: ported, or in a range, 8 to 15
//!   digits), with its NAPTR record;
//! - every other name above such a number (`9.7.4.e164.arpa.`, [`npdb::Index::serves_below`]):
//!   an empty non-terminal (RFC 8020), which answers NODATA. A range holds numbers of every
//!   length from 8 to 15 digits under its prefix, so a number's name and its ancestors agree.
//!
//! Anything else below the apex is NXDOMAIN. Another record type at a name that exists is
//! NODATA; negative answers carry the SOA in the authority section, whose TTL is the
//! negative TTL (RFC 2308). Zone transfers are REFUSED (the zone is the index, not a file to
//! copy), names outside the zone are REFUSED, anything but a one-question QUERY is FORMERR or
//! NOTIMP, an EDNS version above 0 is BADVERS (RFC 6891), and the DO bit is echoed (RFC
//! 3225). Undecodable datagrams are answered FORMERR when they have a query header and dropped
//! otherwise, so garbage costs the server one failed parse.

mod fast;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{NAPTR, NS, SOA};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use numport_core::Msisdn;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::Replica;
use crate::config::EnumConfig;

/// A TCP client that sends no complete query for this long is disconnected.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a name lies, seen from a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    OutsideZone,
    Apex,
    /// One-digit labels below the apex, read back into number order (`"479"` for
    /// `9.7.4.e164.arpa.`): 1 to 15 digits, a number or a name above numbers.
    Digits(String),
    /// Below the apex but no digit string: a label that is no digit, or more than 15.
    NoNumber,
}

/// Where `name` lies in `zone`: ENUM names are the digits of an E.164 number, one per label,
/// reversed, before the zone.
pub fn place_of(name: &LowerName, zone: &LowerName) -> Place {
    if !zone.zone_of(name) {
        return Place::OutsideZone;
    }
    let own = name.num_labels().saturating_sub(zone.num_labels()) as usize;
    if own == 0 {
        return Place::Apex;
    }
    if own > 15 {
        return Place::NoNumber;
    }
    let mut digits = String::with_capacity(own);
    for label in name.iter().take(own) {
        match label {
            [d @ b'0'..=b'9'] => digits.push(*d as char),
            _ => return Place::NoNumber,
        }
    }
    Place::Digits(digits.chars().rev().collect())
}

/// The ENUM name of a number in `zone` (for clients and tests).
pub fn name_of(msisdn: &Msisdn, zone: &str) -> String {
    let mut name: String = msisdn.as_str().chars().rev().flat_map(|d| [d, '.']).collect();
    name.push_str(zone);
    name
}

/// The tel URI of RFC 4694 for a number: `rn` only where ported.
pub fn tel_uri(msisdn: &str, routing_number: Option<&str>, rn_context: &str) -> String {
    match routing_number {
        Some(rn) => format!("tel:+{msisdn};npdi;rn={rn};rn-context={rn_context}"),
        None => format!("tel:+{msisdn};npdi"),
    }
}

/// The request handler: answers from the replica's index.
pub struct EnumHandler {
    replica: Replica,
    zone: LowerName,
    zone_name: Name,
    nameserver: Name,
    hostmaster: Name,
    rn_context: String,
    ttl: u32,
    negative_ttl: u32,
    fast: fast::FastZone,
}

/// SOA timers for secondaries, which this server has none of (it refuses zone transfers): the
/// common values of RFC 1912 §2.2, so that tools checking them find nothing odd.
const SOA_REFRESH: i32 = 3_600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 1_209_600;

/// A host or mailbox name from the configuration, made fully qualified.
fn config_name(key: &str, value: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(value).map_err(|e| format!("ENUM {key} {value:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name)
}

impl EnumHandler {
    pub fn new(replica: Replica, config: &EnumConfig) -> Result<EnumHandler, String> {
        let zone_name = config_name("zone", &config.zone)?;
        let nameserver = config_name("nameserver", &config.nameserver)?;
        if zone_name.zone_of(&nameserver) {
            return Err(format!(
                "ENUM nameserver {nameserver} lies inside the zone {zone_name}, which holds no address records"
            ));
        }
        let hostmaster = match &config.hostmaster {
            Some(h) => config_name("hostmaster", h)?,
            None => Name::from_ascii("hostmaster")
                .and_then(|n| n.append_domain(&zone_name))
                .map_err(|e| format!("ENUM zone {zone_name}: no room for a hostmaster label: {e}"))?,
        };
        let fast = fast::FastZone {
            labels: zone_name.iter().map(|l| l.to_ascii_lowercase()).collect(),
            rn_context: config.rn_context.clone(),
            ttl: config.ttl,
        };
        Ok(EnumHandler {
            replica,
            fast,
            zone: LowerName::new(&zone_name),
            zone_name,
            nameserver,
            hostmaster,
            rn_context: config.rn_context.clone(),
            ttl: config.ttl,
            negative_ttl: config.negative_ttl,
        })
    }

    /// The apex's SOA. Its serial is the feed checkpoint in RFC 1982 serial arithmetic, which
    /// wraps at 2^32; its TTL and MINIMUM are the negative TTL, so a negative answer is cached
    /// that long (RFC 2308 §5).
    fn soa(&self) -> Record {
        let serial = self.replica.seq() as u32;
        let soa = SOA::new(
            self.nameserver.clone(),
            self.hostmaster.clone(),
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            self.negative_ttl,
        );
        Record::from_rdata(self.zone_name.clone(), self.negative_ttl, RData::SOA(soa))
    }

    fn ns(&self) -> Record {
        Record::from_rdata(self.zone_name.clone(), self.ttl, RData::NS(NS(self.nameserver.clone())))
    }

    fn naptr(&self, name: &LowerName, msisdn: &str, rn: Option<&str>) -> Record {
        let regexp = format!("!^.*$!{}!", tel_uri(msisdn, rn, &self.rn_context));
        let naptr = NAPTR::new(
            100,
            10,
            b"u".to_vec().into_boxed_slice(),
            b"E2U+pstn:tel".to_vec().into_boxed_slice(),
            regexp.into_bytes().into_boxed_slice(),
            Name::root(),
        );
        Record::from_rdata(Name::from(name.clone()), self.ttl, RData::NAPTR(naptr))
    }
}

/// The answer to one query, for either transport to encode.
struct Resolution {
    meta: Metadata,
    answers: Vec<Record>,
    /// The zone's SOA, on negative answers.
    authority: Option<Record>,
}

/// What a name in the zone is (see "Which names exist" above).
enum Node {
    Apex,
    /// A served number, with the tel URI's number and the routing number if it is ported.
    Number {
        msisdn: String,
        ported_to: Option<String>,
    },
    /// A name above served numbers: it exists, with no records.
    EmptyNonTerminal,
    Absent,
}

impl EnumHandler {
    /// What `place` (inside the zone) is in the index.
    fn node(&self, place: Place) -> Node {
        let digits = match place {
            Place::Apex => return Node::Apex,
            Place::Digits(d) => d,
            Place::OutsideZone | Place::NoNumber => return Node::Absent,
        };
        let index = self.replica.read();
        if let Some(route) = digits.parse::<Msisdn>().ok().and_then(|m| index.lookup(&m)) {
            let ported_to = route.ported.then(|| route.routing_number.as_str().to_owned());
            return Node::Number { msisdn: digits, ported_to };
        }
        if index.serves_below(&digits) { Node::EmptyNonTerminal } else { Node::Absent }
    }

    /// Answers a request's header, its EDNS record and its question (`None`: not exactly one
    /// question).
    fn resolve(
        &self,
        request: &Metadata,
        edns: Option<&Edns>,
        query: Option<(&LowerName, RecordType, DNSClass)>,
    ) -> Resolution {
        let metrics = self.replica.metrics();
        let mut meta = Metadata::response_from_request(request);
        meta.authoritative = true;
        let mut done = |code: ResponseCode, authoritative: bool| {
            metrics.enum_errors.inc();
            meta.response_code = code;
            meta.authoritative = authoritative;
            Resolution { meta, answers: Vec::new(), authority: None }
        };
        if request.message_type != MessageType::Query {
            return done(ResponseCode::FormErr, true);
        }
        if request.op_code != OpCode::Query {
            return done(ResponseCode::NotImp, true);
        }
        if edns.is_some_and(|e| e.version() > 0) {
            return done(ResponseCode::BADVERS, true);
        }
        let Some((name, qtype, qclass)) = query else { return done(ResponseCode::FormErr, true) };
        if qclass != DNSClass::IN {
            return done(ResponseCode::Refused, true);
        }
        let place = place_of(name, &self.zone);
        if place == Place::OutsideZone {
            return done(ResponseCode::Refused, false);
        }
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return done(ResponseCode::Refused, true);
        }
        let answers = match self.node(place) {
            Node::Absent => {
                metrics.enum_nxdomain.inc();
                meta.response_code = ResponseCode::NXDomain;
                return Resolution { meta, answers: Vec::new(), authority: Some(self.soa()) };
            }
            Node::Apex => match qtype {
                RecordType::SOA => vec![self.soa()],
                RecordType::NS => vec![self.ns()],
                RecordType::ANY => vec![self.soa(), self.ns()],
                _ => Vec::new(),
            },
            Node::Number { msisdn, ported_to } if matches!(qtype, RecordType::NAPTR | RecordType::ANY) => {
                metrics.enum_answers.inc();
                vec![self.naptr(name, &msisdn, ported_to.as_deref())]
            }
            Node::Number { .. } | Node::EmptyNonTerminal => Vec::new(),
        };
        let authority = answers.is_empty().then(|| self.soa());
        Resolution { meta, answers, authority }
    }

    /// Answers one UDP datagram into `out`; `false` for a datagram that is no DNS query at
    /// all (too short for a header, or itself a response), which is dropped.
    pub fn answer_datagram(&self, datagram: &[u8], out: &mut Vec<u8>) -> bool {
        if self.answer_fast(datagram, out) {
            self.replica.metrics().enum_answers.inc();
            return true;
        }
        match self.answer_general(datagram) {
            Some(bytes) => {
                *out = bytes;
                true
            }
            None => false,
        }
    }

    /// The fast path alone: `true` when `datagram` is the common case and its answer is in
    /// `out`. Whatever it answers, [`EnumHandler::answer_general`] answers alike.
    pub fn answer_fast(&self, datagram: &[u8], out: &mut Vec<u8>) -> bool {
        fast::answer(&self.fast, &self.replica.read(), datagram, out).is_some()
    }

    /// [`EnumHandler::answer_datagram`] through hickory-proto's message types: any datagram,
    /// answered (`Some`) or dropped.
    pub fn answer_general(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        use hickory_server::proto::op::Message;
        let request = match Message::from_vec(datagram) {
            Ok(m) => m,
            Err(_) => {
                // Undecodable: FORMERR if there is a query header to answer, else silence.
                let header = datagram.get(..12)?;
                if header[2] & 0x80 != 0 {
                    return None;
                }
                self.replica.metrics().enum_errors.inc();
                let mut out = header.to_vec();
                out[2] = 0x80 | (header[2] & 0x79); // QR, same opcode and RD
                out[3] = ResponseCode::FormErr.low();
                out[4..12].fill(0);
                return Some(out);
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let name = match request.queries.as_slice() {
            [q] => Some((LowerName::new(q.name()), q.query_type(), q.query_class())),
            _ => None,
        };
        let r = self.resolve(&request.metadata, request.edns.as_ref(), name.as_ref().map(|(n, t, c)| (n, *t, *c)));
        let mut response = Message::new(r.meta.id, MessageType::Response, r.meta.op_code);
        response.metadata = r.meta;
        if let [q] = request.queries.as_slice() {
            response.add_query(q.clone());
        }
        response.add_answers(r.answers);
        if let Some(soa) = r.authority {
            response.add_authority(soa);
        }
        if let Some(e) = response_edns(request.edns.as_ref()) {
            response.set_edns(e);
        }
        response.to_vec().ok()
    }
}

/// The OPT record of an answer to a query that had one: version 0 (the one this server speaks,
/// also in a BADVERS answer), the client's payload size (at least 512), and the client's DO bit
/// (RFC 3225: set only in answers to queries that had it).
fn response_edns(request: Option<&Edns>) -> Option<Edns> {
    request.map(|req| {
        let mut e = Edns::new();
        e.set_max_payload(req.max_payload().max(512));
        e.set_version(0);
        e.set_dnssec_ok(req.flags().dnssec_ok);
        e
    })
}

#[async_trait::async_trait]
impl RequestHandler for EnumHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let edns = response_edns(request.edns.as_ref());
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let info = request.request_info().ok();
        let query = info.as_ref().map(|i| (i.query.name(), i.query.query_type(), i.query.query_class()));
        let r = self.resolve(&request.metadata, request.edns.as_ref(), query);
        send(&mut response, builder.build(r.meta, r.answers.iter(), None, r.authority.as_ref(), None)).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let meta = *message.metadata();
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "ENUM answer not sent");
            let mut meta = meta;
            meta.response_code = ResponseCode::ServFail;
            hickory_server::proto::op::Header { metadata: meta, counts: Default::default() }.into()
        }
    }
}

/// What an ENUM server answered for a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnumAnswer {
    /// The tel URI of the NAPTR record (the regexp's replacement).
    Uri(String),
    NxDomain,
    Other(ResponseCode),
}

/// Asks `server` (UDP) for the NAPTR record of `msisdn` in `zone`: a minimal ENUM client for
/// the demo and the propagation benchmark.
pub async fn query_naptr(server: SocketAddr, msisdn: &Msisdn, zone: &str) -> std::io::Result<EnumAnswer> {
    use hickory_server::proto::op::{Message, Query};
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let name = Name::from_ascii(name_of(msisdn, zone)).map_err(|e| invalid(e.to_string()))?;
    let id: u16 = rand_id();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(name, RecordType::NAPTR));
    let bytes = query.to_vec().map_err(|e| invalid(e.to_string()))?;
    let bind: SocketAddr = if server.is_ipv4() { ([127, 0, 0, 1], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(bind).await?;
    sock.send_to(&bytes, server).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no ENUM answer"))??;
        let Ok(answer) = Message::from_vec(&buf[..n]) else { continue };
        if answer.metadata.id != id {
            continue;
        }
        return Ok(match answer.metadata.response_code {
            ResponseCode::NoError => answer
                .answers
                .iter()
                .find_map(|r| match &r.data {
                    RData::NAPTR(n) => {
                        let re = String::from_utf8_lossy(&n.regexp).into_owned();
                        re.strip_prefix("!^.*$!").and_then(|r| r.strip_suffix('!')).map(str::to_owned)
                    }
                    _ => None,
                })
                .map_or(EnumAnswer::Other(ResponseCode::NoError), EnumAnswer::Uri),
            ResponseCode::NXDomain => EnumAnswer::NxDomain,
            other => EnumAnswer::Other(other),
        });
    }
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now()) as u16
}

/// The ENUM server's sockets: UDP sockets sharing one port (`SO_REUSEPORT`, one per core; the
/// kernel spreads clients across them) and the TCP listener on the same port.
pub struct EnumSockets {
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: TcpListener,
    pub addr: SocketAddr,
}

/// Binds the ENUM server's sockets on `addr` (port 0: any port free for both UDP and TCP).
pub async fn bind(addr: SocketAddr) -> std::io::Result<EnumSockets> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Port 0 picks a port free for UDP, which a TCP listener may hold: then try another.
    let mut attempts = if addr.port() == 0 { 20 } else { 1 };
    let (first, tcp) = loop {
        let first = reuseport_udp(addr)?;
        let bound = first.local_addr()?;
        // TCP (bound without SO_REUSEPORT) before the other UDP sockets: if another server
        // holds the port, this fails here instead of the kernel quietly sharing UDP queries.
        match TcpListener::bind(bound).await {
            Ok(tcp) => break (first, tcp),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts > 1 => attempts -= 1,
            Err(e) => return Err(e),
        }
    };
    let addr = first.local_addr()?;
    let mut udp = vec![first];
    for _ in 1..cores {
        udp.push(reuseport_udp(addr)?);
    }
    Ok(EnumSockets { udp, tcp, addr })
}

/// How often a UDP answering thread looks at the stop token while no query comes.
const UDP_POLL: Duration = Duration::from_millis(200);

fn reuseport_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    // Room for bursts: a full default buffer drops queries before the server sees them.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    socket.set_read_timeout(Some(UDP_POLL))?;
    Ok(socket.into())
}

/// Serves ENUM until `stop` is cancelled: TCP through hickory-server, UDP on one thread per
/// socket.
///
/// Why UDP does not go through hickory-server's `Server` as TCP does: it spawns a task per
/// datagram and sends every answer through a channel to the one task that owns the socket.
/// Measured under `numport bench enum` that design topped out near 80,000 answers/s on the
/// 2-core machine, while the lookup itself is a fraction of a microsecond. A blocking
/// receive–answer–send loop per `SO_REUSEPORT` socket does the same work (decoding and
/// encoding are still hickory-proto's, the answer is the same [`EnumHandler`] logic) without
/// the per-query task and hand-off.
pub async fn serve(handler: EnumHandler, sockets: EnumSockets, stop: CancellationToken) -> Result<(), String> {
    let handler = std::sync::Arc::new(handler);
    let mut threads = Vec::new();
    for (i, socket) in sockets.udp.into_iter().enumerate() {
        let (handler, stop) = (handler.clone(), stop.clone());
        let t = std::thread::Builder::new()
            .name(format!("enum-udp-{i}"))
            .spawn(move || answer_udp(&handler, &socket, &stop))
            .map_err(|e| e.to_string())?;
        threads.push(t);
    }
    let mut server = Server::new(SharedHandler(handler));
    server.register_listener(sockets.tcp, TCP_IDLE_TIMEOUT, 64);
    stop.cancelled().await;
    let tcp = server.shutdown_gracefully().await.map_err(|e| e.to_string());
    let _ = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join()))).await;
    tcp
}

fn answer_udp(handler: &EnumHandler, socket: &std::net::UdpSocket, stop: &CancellationToken) {
    let mut buf = vec![0u8; 4096];
    let mut answer = Vec::with_capacity(512);
    while !stop.is_cancelled() {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) => {
                // ICMP errors from earlier answers surface here; the socket stays usable.
                tracing::debug!(error = %e, "ENUM UDP receive");
                continue;
            }
        };
        if from.port() == 0 {
            continue;
        }
        if handler.answer_datagram(&buf[..n], &mut answer) {
            // An answer larger than a plain UDP message would need truncation; ours are ~150 bytes.
            if let Err(e) = socket.send_to(&answer, from) {
                tracing::debug!(error = %e, %from, "ENUM UDP send");
            }
        }
    }
}

/// The handler shared between the UDP threads and hickory's TCP server.
struct SharedHandler(std::sync::Arc<EnumHandler>);

#[async_trait::async_trait]
impl RequestHandler for SharedHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response: R) -> ResponseInfo {
        self.0.handle_request::<R, T>(request, response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn lower(s: &str) -> LowerName {
        LowerName::new(&Name::from_str(s).unwrap())
    }

    async fn handler() -> (EnumHandler, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::ReplicaConfig {
            clearinghouse_url: Some("http://127.0.0.1:9".into()),
            api_token: Some("key.secret".into()),
            data_dir: Some(dir.path().to_owned()),
            ..Default::default()
        };
        let replica = Replica::open(config, &telemetry::Registry::new()).await.unwrap();
        let ops = [("opa", "D001"), ("opb", "D002")]
            .map(|(n, r)| npdb::Operator { name: n.parse().unwrap(), routing_number: r.parse().unwrap() });
        let mut index = npdb::Index::new(ops, [("4790".parse().unwrap(), "opa".parse().unwrap())]).unwrap();
        index.apply(&"4790000001".parse().unwrap(), &"opb".parse().unwrap()).unwrap();
        replica.install(index, 1, 0);
        (EnumHandler::new(replica, &EnumConfig::default()).unwrap(), dir)
    }

    fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        use hickory_server::proto::op::{Message, Query};
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
        if let Some(payload) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn same_answer_as_the_general_path() {
        use hickory_server::proto::op::Message;
        let (h, _dir) = handler().await;
        let index = h.replica.read();
        for name in
            ["1.0.0.0.0.0.0.9.7.4.e164.arpa.", "2.0.0.0.0.0.0.9.7.4.E164.Arpa.", "1.0.0.0.0.0.0.9.7.4.e164.arpa"]
        {
            for edns in [None, Some(1232), Some(100)] {
                let q = query(name, RecordType::NAPTR, edns);
                let mut fast_bytes = Vec::new();
                fast::answer(&h.fast, &index, &q, &mut fast_bytes).expect("the common case");
                let general = h.answer_general(&q).unwrap();
                let (a, b) = (Message::from_vec(&fast_bytes).unwrap(), Message::from_vec(&general).unwrap());
                assert_eq!(a, b, "{name} {edns:?}");
            }
        }
        // Everything else leaves the fast path.
        let mut out = Vec::new();
        for q in [
            query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::A, None),
            query("0.0.0.0.0.0.0.3.9.7.4.e164.arpa.", RecordType::NAPTR, None),
            query("1.0.0.0.0.0.0.9.7.0.e164.arpa.", RecordType::NAPTR, None),
            query("1.0.0.0.0.0.0.9.7.4.example.com.", RecordType::NAPTR, None),
            query("1.2.3.e164.arpa.", RecordType::NAPTR, None),
        ] {
            assert!(fast::answer(&h.fast, &index, &q, &mut out).is_none());
        }
        // Truncated input anywhere never panics and never takes the fast path.
        let q = query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, Some(1232));
        for cut in 0..q.len() {
            assert!(fast::answer(&h.fast, &index, &q[..cut], &mut out).is_none(), "cut at {cut}");
        }
    }

    /// Found by the `dns_fast` fuzz target: the fast path answered queries whose OPT options
    /// the general path refuses as malformed (FORMERR).
    #[tokio::test]
    async fn opt_options_the_general_path_refuses_leave_the_fast_path() {
        use hickory_server::proto::op::Message;
        let (h, _dir) = handler().await;
        let base = query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, Some(1232));
        assert_eq!(base[base.len() - 2..], [0, 0], "the OPT record has no options and ends the query");
        let with_options = |options: &[u8]| {
            let mut q = base[..base.len() - 2].to_vec();
            q.extend((options.len() as u16).to_be_bytes());
            q.extend(options);
            q
        };
        let mut out = Vec::new();
        for options in [&[0u8][..], &[0, 8, 0, 0], &[0, 10, 0, 8, 1, 2, 3]] {
            let q = with_options(options);
            assert!(!h.answer_fast(&q, &mut out), "{options:?}");
            let general = Message::from_vec(&h.answer_general(&q).unwrap()).unwrap();
            assert_eq!(general.metadata.response_code, ResponseCode::FormErr, "{options:?}");
        }
        // A whole cookie option stays on the fast path, answered alike.
        let q = with_options(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(h.answer_fast(&q, &mut out));
        assert_eq!(Message::from_vec(&out).unwrap(), Message::from_vec(&h.answer_general(&q).unwrap()).unwrap());
    }

    #[tokio::test]
    async fn random_datagrams_never_panic() {
        use proptest::strategy::{Strategy, ValueTree};
        let (h, _dir) = handler().await;
        let valid = query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, Some(1232));
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let bytes = proptest::collection::vec(proptest::num::u8::ANY, 0..200);
        let mut out = Vec::new();
        for _ in 0..2000 {
            let mut d = bytes.new_tree(&mut runner).unwrap().current();
            // Half the cases: a valid query with some bytes flipped.
            if d.first().is_some_and(|b| b & 1 == 0) {
                let mut v = valid.clone();
                for (i, b) in d.iter().enumerate().skip(1).step_by(7) {
                    let at = (*b as usize + i) % v.len();
                    v[at] ^= b;
                }
                d = v;
            }
            let _ = h.answer_datagram(&d, &mut out);
        }
    }

    #[test]
    fn names_and_numbers() {
        let zone = lower("e164.arpa.");
        let digits = |d: &str| Place::Digits(d.into());
        assert_eq!(place_of(&lower("1.0.0.0.0.0.0.9.7.4.e164.arpa."), &zone), digits("4790000001"));
        assert_eq!(place_of(&lower("1.0.0.0.0.0.0.9.7.4.E164.ARPA."), &zone), digits("4790000001"));
        assert_eq!(place_of(&lower("9.7.4.e164.arpa."), &zone), digits("479"));
        assert_eq!(place_of(&lower("1.0.example.com."), &zone), Place::OutsideZone);
        assert_eq!(place_of(&lower("arpa."), &zone), Place::OutsideZone);
        assert_eq!(place_of(&lower("E164.arpa."), &zone), Place::Apex);
        assert_eq!(place_of(&lower("12.0.9.7.4.e164.arpa."), &zone), Place::NoNumber);
        assert_eq!(place_of(&lower("x.0.9.7.4.e164.arpa."), &zone), Place::NoNumber);
        let sixteen = "1.".repeat(16) + "e164.arpa.";
        assert_eq!(place_of(&lower(&sixteen), &zone), Place::NoNumber);
        let m: Msisdn = "4790000001".parse().unwrap();
        assert_eq!(name_of(&m, "e164.arpa."), "1.0.0.0.0.0.0.9.7.4.e164.arpa.");
        assert_eq!(tel_uri("4790000001", Some("D002"), "+47"), "tel:+4790000001;npdi;rn=D002;rn-context=+47");
        assert_eq!(tel_uri("4790000001", None, "+47"), "tel:+4790000001;npdi");
    }

    /// The general path's answer to `q`, decoded.
    fn general(h: &EnumHandler, q: &[u8]) -> hickory_server::proto::op::Message {
        hickory_server::proto::op::Message::from_vec(&h.answer_general(q).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn apex_empty_non_terminals_and_absent_names() {
        let (h, _dir) = handler().await;
        let soa = general(&h, &query("e164.arpa.", RecordType::SOA, None));
        assert_eq!(soa.metadata.response_code, ResponseCode::NoError);
        assert!(soa.metadata.authoritative);
        let RData::SOA(record) = &soa.answers[0].data else { panic!("{soa:?}") };
        assert_eq!((record.serial, record.minimum), (1, 60));
        assert_eq!(&record.mname, &Name::from_str("localhost.").unwrap());
        assert_eq!(&record.rname, &Name::from_str("hostmaster.e164.arpa.").unwrap());
        let ns = general(&h, &query("E164.ARPA.", RecordType::NS, None));
        assert_eq!(ns.answers[0].data, RData::NS(NS(Name::from_str("localhost.").unwrap())));
        assert_eq!(general(&h, &query("e164.arpa.", RecordType::ANY, None)).answers.len(), 2);

        // NODATA with the SOA: another type at the apex or a number, and every name above a
        // number in the range 4790 (and above the 4790 range's nine-digit numbers).
        for (name, rtype) in [
            ("e164.arpa.", RecordType::A),
            ("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::A),
            ("4.e164.arpa.", RecordType::A),
            ("9.7.4.e164.arpa.", RecordType::NAPTR),
            ("0.0.0.0.9.7.4.e164.arpa.", RecordType::NS),
        ] {
            let m = general(&h, &query(name, rtype, None));
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name} {rtype}");
            assert!(m.answers.is_empty(), "{name} {rtype}");
            let RData::SOA(_) = &m.authorities[0].data else { panic!("{name}: {m:?}") };
            assert_eq!(m.authorities[0].ttl, 60, "negative TTL");
        }
        // NXDOMAIN: no served number below, or no number at all.
        for name in ["5.e164.arpa.", "8.7.4.e164.arpa.", "1.9.7.4.e164.arpa.", "x.e164.arpa.", "1.e164.arpa."] {
            let m = general(&h, &query(name, RecordType::NAPTR, None));
            assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert_eq!(m.authorities.len(), 1, "{name}");
        }
        // Zone transfers are refused.
        for rtype in [RecordType::AXFR, RecordType::IXFR] {
            let m = general(&h, &query("e164.arpa.", rtype, None));
            assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        }
    }

    #[tokio::test]
    async fn a_nameserver_inside_the_zone_is_refused() {
        let (h, _dir) = handler().await;
        let config = EnumConfig { nameserver: "ns.E164.arpa.".into(), ..EnumConfig::default() };
        let refused = EnumHandler::new(h.replica.clone(), &config).err().unwrap();
        assert!(refused.contains("inside the zone"), "{refused}");
        let config = EnumConfig { nameserver: "ns.example.net".into(), hostmaster: Some("a..b".into()), ..config };
        assert!(EnumHandler::new(h.replica.clone(), &config).is_err());
    }

    #[tokio::test]
    async fn the_serial_follows_the_checkpoint_modulo_2_32() {
        let (h, _dir) = handler().await;
        let index = npdb::Index::new([], []).unwrap();
        h.replica.install(index, (1 << 32) + 7, 0);
        let m = general(&h, &query("e164.arpa.", RecordType::SOA, None));
        let RData::SOA(record) = &m.answers[0].data else { panic!("{m:?}") };
        assert_eq!(record.serial, 7);
    }

    #[tokio::test]
    async fn edns_versions_and_the_do_bit() {
        use hickory_server::proto::op::Message;
        let (h, _dir) = handler().await;
        let index = h.replica.read();
        let with_opt = |version: u8, dnssec_ok: bool| {
            let mut m =
                Message::from_vec(&query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, Some(1232))).unwrap();
            let mut e = Edns::new();
            e.set_max_payload(1232).set_version(version).set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
            m.to_vec().unwrap()
        };
        for dnssec_ok in [false, true] {
            let q = with_opt(0, dnssec_ok);
            let mut fast_bytes = Vec::new();
            fast::answer(&h.fast, &index, &q, &mut fast_bytes).expect("the common case");
            let (a, b) = (Message::from_vec(&fast_bytes).unwrap(), general(&h, &q));
            assert_eq!(a, b);
            assert_eq!(a.edns.as_ref().unwrap().flags().dnssec_ok, dnssec_ok);
        }
        let q = with_opt(1, true);
        assert!(fast::answer(&h.fast, &index, &q, &mut Vec::new()).is_none());
        let m = general(&h, &q);
        // 16 is BADVERS in an OPT record (hickory's decoder names it by BADSIG, the TSIG meaning).
        assert_eq!(u16::from(m.metadata.response_code), 16);
        let edns = m.edns.as_ref().unwrap();
        assert_eq!((edns.version(), edns.rcode_high(), edns.flags().dnssec_ok), (0, 1, true));
        assert!(m.answers.is_empty());
    }
}
