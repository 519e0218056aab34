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
//! range holder serves it. A number in no known range is NXDOMAIN; another record type at a
//! number that exists is NODATA; both carry the zone's SOA (serial = the feed checkpoint) for
//! negative caching. Names outside the zone are REFUSED, anything but a one-question QUERY
//! is FORMERR or NOTIMP, and undecodable datagrams are dropped by hickory before they reach
//! this handler, so garbage costs the server one failed parse.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{NAPTR, SOA};
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

/// Why an ENUM name is no number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    OutsideZone,
    NotANumber,
}

/// The E.164 number an ENUM name stands for: the labels before the zone, each one digit,
/// reversed. `zone_labels` is the zone's label count.
pub fn number_of(name: &LowerName, zone: &LowerName) -> Result<String, NameError> {
    if !zone.zone_of(name) {
        return Err(NameError::OutsideZone);
    }
    let own = name.num_labels().saturating_sub(zone.num_labels()) as usize;
    if !(1..=15).contains(&own) {
        return Err(NameError::NotANumber);
    }
    let mut digits = Vec::with_capacity(own);
    for label in name.iter().take(own) {
        match label {
            [d @ b'0'..=b'9'] => digits.push(*d),
            _ => return Err(NameError::NotANumber),
        }
    }
    digits.reverse();
    String::from_utf8(digits).map_err(|_| NameError::NotANumber)
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
    rn_context: String,
    ttl: u32,
}

impl EnumHandler {
    pub fn new(replica: Replica, config: &EnumConfig) -> Result<EnumHandler, String> {
        let zone_name = Name::from_ascii(&config.zone).map_err(|e| format!("ENUM zone {:?}: {e}", config.zone))?;
        let mut zone_name = zone_name;
        zone_name.set_fqdn(true);
        Ok(EnumHandler {
            replica,
            zone: LowerName::new(&zone_name),
            zone_name,
            rn_context: config.rn_context.clone(),
            ttl: config.ttl,
        })
    }

    fn soa(&self) -> Record {
        let host =
            Name::from_ascii("npdb").and_then(|n| n.append_domain(&self.zone_name)).unwrap_or_else(|_| Name::root());
        let mail = Name::from_ascii("hostmaster")
            .and_then(|n| n.append_domain(&self.zone_name))
            .unwrap_or_else(|_| Name::root());
        let serial = self.replica.seq() as u32;
        let soa = SOA::new(host, mail, serial, 300, 60, 86_400, self.ttl);
        Record::from_rdata(self.zone_name.clone(), self.ttl, RData::SOA(soa))
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

#[async_trait::async_trait]
impl RequestHandler for EnumHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let metrics = self.replica.metrics();
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = true;
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e.set_version(0);
            e
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let error = |code: ResponseCode| {
            metrics.enum_errors.inc();
            code
        };
        let code = if request.metadata.message_type != MessageType::Query {
            Some(error(ResponseCode::FormErr))
        } else if request.metadata.op_code != OpCode::Query {
            Some(error(ResponseCode::NotImp))
        } else {
            None
        };
        let info = match (code, request.request_info()) {
            (None, Ok(info)) => info,
            (code, _) => {
                meta.response_code = code.unwrap_or_else(|| error(ResponseCode::FormErr));
                return send(&mut response, builder.build_no_records(meta)).await;
            }
        };
        let query = info.query;
        if query.query_class() != DNSClass::IN {
            meta.response_code = error(ResponseCode::Refused);
            return send(&mut response, builder.build_no_records(meta)).await;
        }
        let digits = match number_of(query.name(), &self.zone) {
            Ok(d) => Some(d),
            Err(NameError::OutsideZone) => {
                meta.response_code = error(ResponseCode::Refused);
                meta.authoritative = false;
                return send(&mut response, builder.build_no_records(meta)).await;
            }
            Err(NameError::NotANumber) => None,
        };
        let answer = digits.as_deref().and_then(|d| d.parse::<Msisdn>().ok()).and_then(|m| self.replica.lookup(&m));
        let soa = self.soa();
        match answer {
            None => {
                metrics.enum_nxdomain.inc();
                meta.response_code = ResponseCode::NXDomain;
                send(&mut response, builder.build(meta, None, None, Some(&soa), None)).await
            }
            Some(a) if matches!(query.query_type(), RecordType::NAPTR | RecordType::ANY) => {
                metrics.enum_answers.inc();
                let rn = a.ported.then_some(a.routing_number.as_str());
                let record = self.naptr(query.name(), a.msisdn.as_str(), rn);
                send(&mut response, builder.build(meta, Some(&record), None, None, None)).await
            }
            Some(_) => send(&mut response, builder.build(meta, None, None, Some(&soa), None)).await,
        }
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

/// Binds the ENUM server's UDP socket and TCP listener on `addr` (port 0: any free port, the
/// same for both when possible). Returns the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let udp = UdpSocket::bind(addr).await?;
    let bound = udp.local_addr()?;
    let tcp = TcpListener::bind(bound).await?;
    Ok((udp, tcp, bound))
}

/// Serves ENUM on the given sockets until `stop` is cancelled.
pub async fn serve(
    handler: EnumHandler,
    udp: UdpSocket,
    tcp: TcpListener,
    stop: CancellationToken,
) -> Result<(), String> {
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, 64);
    stop.cancelled().await;
    server.shutdown_gracefully().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn lower(s: &str) -> LowerName {
        LowerName::new(&Name::from_str(s).unwrap())
    }

    #[test]
    fn names_and_numbers() {
        let zone = lower("e164.arpa.");
        assert_eq!(number_of(&lower("1.0.0.0.0.0.0.9.7.4.e164.arpa."), &zone), Ok("4790000001".into()));
        assert_eq!(number_of(&lower("1.0.0.0.0.0.0.9.7.4.E164.ARPA."), &zone), Ok("4790000001".into()));
        assert_eq!(number_of(&lower("1.0.example.com."), &zone), Err(NameError::OutsideZone));
        assert_eq!(number_of(&lower("e164.arpa."), &zone), Err(NameError::NotANumber));
        assert_eq!(number_of(&lower("12.0.9.7.4.e164.arpa."), &zone), Err(NameError::NotANumber));
        assert_eq!(number_of(&lower("x.0.9.7.4.e164.arpa."), &zone), Err(NameError::NotANumber));
        let sixteen = "1.".repeat(16) + "e164.arpa.";
        assert_eq!(number_of(&lower(&sixteen), &zone), Err(NameError::NotANumber));
        let m: Msisdn = "4790000001".parse().unwrap();
        assert_eq!(name_of(&m, "e164.arpa."), "1.0.0.0.0.0.0.9.7.4.e164.arpa.");
        assert_eq!(tel_uri("4790000001", Some("D002"), "+47"), "tel:+4790000001;npdi;rn=D002;rn-context=+47");
        assert_eq!(tel_uri("4790000001", None, "+47"), "tel:+4790000001;npdi");
    }
}
