//! ENUM over real UDP and TCP sockets: answers, negative answers, and hostile input; BIND's
//! and Knot's clients reading them, and Unbound resolving numbers through the server with
//! strict QNAME minimisation.

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use common::*;
use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use testkit::capture::{Capture, PROBLEMS, tshark};
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

    /// One query over TCP (two-byte length prefix), and its answer.
    async fn tcp(&self, query: &[u8]) -> Message {
        let mut tcp = TcpStream::connect(self.addr).await.unwrap();
        tcp.write_all(&(query.len() as u16).to_be_bytes()).await.unwrap();
        tcp.write_all(query).await.unwrap();
        let len = tcp.read_u16().await.unwrap() as usize;
        let mut buf = vec![0u8; len];
        tcp.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).expect("a decodable answer")
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

    // The apex and the names above numbers exist: what a resolver minimising QNAMEs asks first.
    let apex = s.udp(&query("e164.arpa.", RecordType::SOA, 13)).await.unwrap();
    assert_eq!(apex.answers.len(), 1);
    assert_eq!(apex.answers[0].record_type(), RecordType::SOA);
    let above = s.udp(&query("9.7.4.e164.arpa.", RecordType::A, 14)).await.unwrap();
    assert_eq!((above.metadata.response_code, above.answers.len()), (ResponseCode::NoError, 0));

    // A zone transfer is refused over UDP and TCP.
    let axfr = s.udp(&query("e164.arpa.", RecordType::AXFR, 15)).await.unwrap();
    assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);
    let axfr = s.tcp(&query("e164.arpa.", RecordType::AXFR, 16)).await;
    assert_eq!((axfr.metadata.id, axfr.metadata.response_code), (16, ResponseCode::Refused));

    // TCP: two-byte length prefix, same answer.
    let answer = s.tcp(&query("1.0.0.0.0.0.0.9.7.4.e164.arpa.", RecordType::NAPTR, 12)).await;
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

/// What `client` (dig or kdig) prints for `args` asked of `server`.
async fn ask(client: &std::path::Path, server: SocketAddr, args: &[&str]) -> String {
    let out = tokio::process::Command::new(client)
        .args([format!("@{}", server.ip()), "-p".into(), server.port().to_string()])
        .args(args)
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// dig reads the zone's apex, an empty non-terminal, a refused transfer, BADVERS and the
/// echoed DO bit as a resolver would.
#[tokio::test]
async fn dig_reads_the_apex_and_negative_answers() {
    let Some(dig) = testkit::command("dig", "apt-get install dnsutils") else { return };
    let s = EnumServer::start().await;
    let soa = ask(&dig, s.addr, &["+short", "e164.arpa.", "SOA"]).await;
    assert_eq!(soa.trim(), "localhost. hostmaster.e164.arpa. 1 3600 600 1209600 60");
    let ns = ask(&dig, s.addr, &["+short", "E164.ARPA.", "NS"]).await;
    assert_eq!(ns.trim(), "localhost.");

    // An empty non-terminal: NOERROR, no answer, the SOA for negative caching, authoritative.
    for transport in ["+notcp", "+tcp"] {
        let ent = ask(&dig, s.addr, &[transport, "9.7.4.e164.arpa.", "NAPTR"]).await;
        assert!(ent.contains("status: NOERROR"), "{ent}");
        assert!(ent.contains("flags: qr aa") && ent.contains("ANSWER: 0, AUTHORITY: 1"), "{ent}");
        assert!(ent.contains("e164.arpa.\t\t60\tIN\tSOA\tlocalhost. hostmaster.e164.arpa. 1 "), "{ent}");
    }
    let absent = ask(&dig, s.addr, &["3.9.7.4.e164.arpa.", "NAPTR"]).await;
    assert!(absent.contains("status: NXDOMAIN") && absent.contains("AUTHORITY: 1"), "{absent}");

    let axfr = ask(&dig, s.addr, &["e164.arpa.", "AXFR"]).await;
    assert!(axfr.contains("Transfer failed"), "{axfr}");

    // EDNS version 1: BADVERS, with an OPT record of version 0 (dig must not retry with 0).
    for transport in ["+notcp", "+tcp"] {
        let badvers = ask(&dig, s.addr, &[transport, "+edns=1", "+noednsnegotiation", "e164.arpa.", "SOA"]).await;
        assert!(badvers.contains("status: BADVERS") && badvers.contains("EDNS: version: 0"), "{badvers}");
    }

    // The DO bit comes back on the fast path (UDP, a number's NAPTR) and the general one.
    for (transport, name) in [
        ("+notcp", "1.0.0.0.0.0.0.9.7.4.e164.arpa."),
        ("+tcp", "1.0.0.0.0.0.0.9.7.4.e164.arpa."),
        ("+notcp", "e164.arpa."),
    ] {
        let with_do = ask(&dig, s.addr, &[transport, "+dnssec", name, "NAPTR"]).await;
        assert!(with_do.contains("EDNS: version: 0, flags: do;"), "{transport} {name}: {with_do}");
        let without = ask(&dig, s.addr, &[transport, name, "NAPTR"]).await;
        assert!(without.contains("EDNS: version: 0, flags:;"), "{transport} {name}: {without}");
    }
}

/// tshark decodes a capture of the ENUM server's answers (a ported and a non-ported number's
/// NAPTR, the apex's SOA and NS, an empty non-terminal, NXDOMAIN, a refused transfer, BADVERS
/// and the DO bit, over UDP and TCP) and finds every answer, and no malformed packet or
/// expert warning.
#[tokio::test]
async fn tshark_decodes_the_enum_answers_without_malformed_packets() {
    let Some(dig) = testkit::command("dig", "apt-get install dnsutils") else { return };
    let Some(_) = testkit::command("tshark", "apt-get install tshark") else { return };
    let s = EnumServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("enum.pcapng");
    let Some(capture) = Capture::start(&format!("port {}", s.addr.port()), &pcap).await else { return };
    let asked: &[&[&str]] = &[
        &["1.0.0.0.0.0.0.9.7.4.e164.arpa.", "NAPTR"],
        &["2.0.0.0.0.0.0.9.7.4.e164.arpa.", "NAPTR"],
        &["+dnssec", "1.0.0.0.0.0.0.9.7.4.e164.arpa.", "NAPTR"],
        &["e164.arpa.", "SOA"],
        &["e164.arpa.", "NS"],
        &["9.7.4.e164.arpa.", "NAPTR"],
        &["3.9.7.4.e164.arpa.", "NAPTR"],
        &["+edns=1", "+noednsnegotiation", "e164.arpa.", "SOA"],
        &["e164.arpa.", "AXFR"],
    ];
    for transport in ["+notcp", "+tcp"] {
        for args in asked {
            ask(&dig, s.addr, &[&[transport][..], args].concat()).await;
        }
    }
    let pcap = capture.stop().await;
    let (udp, tcp) = (format!("udp.port=={},dns", s.addr.port()), format!("tcp.port=={},dns", s.addr.port()));
    let answers =
        tshark(&pcap, &["-d", &udp, "-d", &tcp, "-Y", "dns.flags.response == 1", "-T", "fields", "-e", "dns.id"]);
    // Each question once over UDP and once over TCP (dig asks the AXFR over TCP both times).
    assert_eq!(answers.len(), 2 * asked.len(), "answers tshark decoded: {answers:?}");
    let problems = tshark(
        &pcap,
        &["-d", &udp, "-d", &tcp, "-Y", PROBLEMS, "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message"],
    );
    assert_eq!(problems, Vec::<String>::new(), "malformed packets or expert warnings");
}

/// kdig reads the apex and a refused transfer, over UDP and TCP.
#[tokio::test]
async fn kdig_reads_the_apex_and_a_refused_transfer() {
    let Some(kdig) = testkit::command("kdig", "apt-get install knot-dnsutils") else { return };
    let s = EnumServer::start().await;
    for transport in ["+notcp", "+tcp"] {
        let soa = ask(&kdig, s.addr, &[transport, "+short", "e164.arpa.", "SOA"]).await;
        assert_eq!(soa.trim(), "localhost. hostmaster.e164.arpa. 1 3600 600 1209600 60", "{transport}");
        let ent = ask(&kdig, s.addr, &[transport, "4.e164.arpa.", "A"]).await;
        assert!(ent.contains("status: NOERROR") && ent.contains("ANSWER: 0; AUTHORITY: 1"), "{ent}");
    }
    let axfr = ask(&kdig, s.addr, &["e164.arpa.", "AXFR"]).await;
    assert!(axfr.contains("REFUSED"), "{axfr}");
}

/// Unbound, Debian's recursive resolver, run as a resolver for the ENUM zone on a loopback
/// port: strict QNAME minimisation, and the zone stubbed to the replica's ENUM server.
struct Unbound {
    addr: SocketAddr,
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl Unbound {
    async fn start(program: &std::path::Path, zone: &str, server: SocketAddr) -> Unbound {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        // No DNSSEC validation: the zone is unsigned, and so is its stub.
        let config = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-ip6: no\n  access-control: 127.0.0.0/8 allow\n  \
             chroot: \"\"\n  username: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  logfile: \"{d}/unbound.log\"\n  \
             use-syslog: no\n  verbosity: 1\n  num-threads: 1\n  do-not-query-localhost: no\n  \
             module-config: \"iterator\"\n  qname-minimisation: yes\n  qname-minimisation-strict: yes\n\
             remote-control:\n  control-enable: no\n\
             stub-zone:\n  name: \"{zone}\"\n  stub-addr: {}@{}\n",
            server.ip(),
            server.port()
        );
        let conf = dir.path().join("unbound.conf");
        std::fs::write(&conf, config).unwrap();
        let child = tokio::process::Command::new(program)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        Unbound { addr: SocketAddr::from(([127, 0, 0, 1], port)), child, dir }
    }

    /// What Unbound logged, for a failing assertion's message.
    fn log(&self) -> String {
        ["stderr", "unbound.log"]
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .join("\n")
    }
}

/// A loopback port free for UDP and TCP at the time of asking.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A ported and a non-ported number resolve through Unbound with strict QNAME minimisation,
/// which asks for every name from the apex down and gives up on the first NXDOMAIN (RFC
/// 8020); a number in no range is NXDOMAIN.
#[tokio::test]
async fn unbound_resolves_numbers_with_strict_qname_minimisation() {
    let Some(unbound) = testkit::command("unbound", "apt-get install unbound") else { return };
    let Some(dig) = testkit::command("dig", "apt-get install dnsutils") else { return };
    let s = EnumServer::start().await;
    let mut resolver = Unbound::start(&unbound, "e164.arpa.", s.addr).await;
    // Up when it answers; a question outside the zone would go to the root servers.
    let mut up = false;
    for _ in 0..50 {
        if ask(&dig, resolver.addr, &["+time=1", "+tries=1", "e164.arpa.", "SOA"]).await.contains("status: NOERROR") {
            up = true;
            break;
        }
        if let Ok(Some(status)) = resolver.child.try_wait() {
            panic!("unbound exited with {status}: {}", resolver.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(up, "unbound did not answer: {}", resolver.log());

    for (name, want) in [
        ("1.0.0.0.0.0.0.9.7.4.e164.arpa.", r#""!^.*$!tel:+4790000001;npdi;rn=D002;rn-context=+47!""#),
        ("2.0.0.0.0.0.0.9.7.4.e164.arpa.", r#""!^.*$!tel:+4790000002;npdi!""#),
    ] {
        let out = ask(&dig, resolver.addr, &[name, "NAPTR"]).await;
        assert!(out.contains("status: NOERROR"), "{name}: {out}\n{}", resolver.log());
        let short = ask(&dig, resolver.addr, &["+short", name, "NAPTR"]).await;
        assert_eq!(short.trim(), format!(r#"100 10 "u" "E2U+pstn:tel" {want} ."#), "{name}");
    }
    let absent = ask(&dig, resolver.addr, &["0.0.0.0.0.0.0.3.9.7.4.e164.arpa.", "NAPTR"]).await;
    assert!(absent.contains("status: NXDOMAIN"), "{absent}\n{}", resolver.log());
    // The ported number's name and its parent still resolve after that NXDOMAIN next to them.
    let again = ask(&dig, resolver.addr, &["+short", "1.0.0.0.0.0.0.9.7.4.e164.arpa.", "NAPTR"]).await;
    assert!(again.contains("rn=D002"), "{again}");
}
