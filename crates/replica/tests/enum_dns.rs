//! ENUM over real UDP and TCP sockets: answers, negative answers, and hostile input.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use common::*;
use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

struct EnumServer {
    addr: SocketAddr,
    stop: CancellationToken,
    _ch: TestCh,
    _dir: tempfile::TempDir,
    running: Running,
}

impl EnumServer {
    /// A replica with 4790000001 ported to opb, serving ENUM on a free port.
    async fn start() -> EnumServer {
        let ch = TestCh::start().await;
        ch.import("4790000001,opb\n").await;
        let dir = tempfile::tempdir().unwrap();
        let running = Running::start(config(&ch.url, &ch.token, dir.path())).await;
        eventually("bootstrap", || running.replica.seq() == 1).await;
        let sockets = replica::dns::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let handler = replica::dns::EnumHandler::new(running.replica.clone(), &replica::EnumConfig::default()).unwrap();
        let stop = CancellationToken::new();
        let addr = sockets.addr;
        tokio::spawn(replica::dns::serve(handler, sockets, stop.clone()));
        EnumServer { addr, stop, _ch: ch, _dir: dir, running }
    }

    async fn udp(&self, query: &[u8]) -> Option<Message> {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(query, self.addr).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await.ok()?.unwrap();
        Some(Message::from_vec(&buf[..n]).expect("a decodable answer"))
    }
}

impl Drop for EnumServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn query(name: &str, rtype: RecordType, id: u16) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

fn naptr_regexps(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NAPTR(n) => Some(String::from_utf8_lossy(&n.regexp).into_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn naptr_answers_over_udp_and_tcp() {
    let s = EnumServer::start().await;
    let ported = s.udp(&query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, 7)).await.unwrap();
    assert_eq!(ported.metadata.id, 7);
    assert_eq!(ported.metadata.response_code, ResponseCode::NoError);
    assert!(ported.metadata.authoritative);
    assert_eq!(naptr_regexps(&ported), vec!["!^.*$!tel:+4790000001;npdi;rn=D002;rn-context=+47!"]);

    let not_ported = s.udp(&query("2.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, 8)).await.unwrap();
    assert_eq!(naptr_regexps(&not_ported), vec!["!^.*$!tel:+4790000002;npdi!"]);

    let no_range = s.udp(&query("0.0.0.0.0.0.0.3.9.7.4.e164.arpa.", RecordType::NAPTR, 9)).await.unwrap();
    assert_eq!(no_range.metadata.response_code, ResponseCode::NXDomain);
    assert!(no_range.authorities.iter().any(|r| r.record_type() == RecordType::SOA), "SOA for negative caching");

    let nodata = s.udp(&query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::A, 10)).await.unwrap();
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());

    let outside = s.udp(&query("www.example.com.", RecordType::A, 11)).await.unwrap();
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);

    // TCP: two-byte length prefix, same answer.
    let q = query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, 12);
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    tcp.write_all(&q).await.unwrap();
    let len = tcp.read_u16().await.unwrap() as usize;
    let mut buf = vec![0u8; len];
    tcp.read_exact(&mut buf).await.unwrap();
    let answer = Message::from_vec(&buf).unwrap();
    assert_eq!(naptr_regexps(&answer), vec!["!^.*$!tel:+4790000001;npdi;rn=D002;rn-context=+47!"]);
    assert!(s.running.metric("npdb_enum_answers_total") >= 3.0);

    // A second server on the same port is refused, not given a share of the queries.
    assert!(replica::dns::bind(s.addr).await.is_err());
}

#[tokio::test]
async fn garbage_and_malformed_queries_do_not_disturb_the_server() {
    let s = EnumServer::start().await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Random bytes, a truncated header, an oversized datagram, a response instead of a query.
    sock.send_to(b"\xff\x00garbage", s.addr).await.unwrap();
    sock.send_to(&[0u8; 5], s.addr).await.unwrap();
    sock.send_to(&vec![0xAB; 9000], s.addr).await.unwrap();
    let mut q = query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, 20);
    q.truncate(q.len() - 3);
    sock.send_to(&q, s.addr).await.unwrap();

    // Two questions in one query: FORMERR.
    let mut two = Message::new(21, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(Name::from_str("1.0.0.0.0.0.0.9.7.4.e164.arpa.").unwrap(), RecordType::NAPTR));
    two.add_query(Query::query(Name::from_str("2.0.0.0.0.0.0.9.7.4.e164.arpa.").unwrap(), RecordType::NAPTR));
    let formerr = s.udp(&two.to_vec().unwrap()).await.unwrap();
    assert_eq!(formerr.metadata.response_code, ResponseCode::FormErr);

    // An UPDATE (opcode 5): NOTIMP.
    let mut update = Message::new(22, MessageType::Query, OpCode::Update);
    update.add_query(Query::query(Name::from_str("e164.arpa.").unwrap(), RecordType::SOA));
    let notimp = s.udp(&update.to_vec().unwrap()).await.unwrap();
    assert_eq!(notimp.metadata.response_code, ResponseCode::NotImp);

    // A TCP client sending garbage is dropped; another client is served.
    let mut bad = TcpStream::connect(s.addr).await.unwrap();
    bad.write_all(&[0x00, 0x04, 1, 2, 3, 4]).await.unwrap();
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    silent.write_all(&[0x00]).await.unwrap();

    // After all that, good queries are answered.
    for id in 30..40 {
        let ok = s.udp(&query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, id)).await.unwrap();
        assert_eq!(ok.metadata.id, id);
        assert_eq!(naptr_regexps(&ok).len(), 1);
    }
    drop((bad, silent));
}

/// `dig` (BIND's client) reads the answer as real resolvers would, over UDP and TCP.
#[tokio::test]
async fn dig_reads_the_answer() {
    let Some(dig) = testkit::command("dig", "apt-get install dnsutils") else { return };
    client_reads_the_answer(&dig).await;
}

/// `kdig` (Knot's client) reads the answer as real resolvers would, over UDP and TCP.
#[tokio::test]
async fn kdig_reads_the_answer() {
    let Some(kdig) = testkit::command("kdig", "apt-get install knot-dnsutils") else { return };
    client_reads_the_answer(&kdig).await;
}

/// `client` (dig or kdig, which take the same options) asks the ENUM server for a ported
/// number's NAPTR record over UDP, then over TCP; what it prints must be that record.
async fn client_reads_the_answer(client: &std::path::Path) {
    let s = EnumServer::start().await;
    let (ip, port) = (s.addr.ip().to_string(), s.addr.port().to_string());
    for transport in ["+notcp", "+tcp"] {
        let out = tokio::process::Command::new(client)
            .args(["@".to_owned() + &ip, "-p".into(), port.clone(), transport.into(), "+short".into()])
            .args(["1.0.0.0.0.0.0.9.7.4.e164.arpa.", "NAPTR"])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.trim(),
            r#"100 10 "u" "E2U+pstn:tel" "!^.*$!tel:+4790000001;npdi;rn=D002;rn-context=+47!" ."#,
            "{} {transport}: {}",
            client.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
